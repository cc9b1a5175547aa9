#pragma once
// Internal: softmax and layer norm of one contiguous row, and interpolate's resampling of one
// axis, as backend kernel calls. The ops (src/ops/reduction.cpp, normalization.cpp,
// upsampling.cpp) and the inference plans' steps (src/deploy/plan_run.cpp) both call these, so a
// plan gives the op's bits.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ember/backend/kernels.hpp"

namespace ember::detail {

/// y = softmax(x) (or log_softmax) over n values; y must not overlap x. n >= 1.
template <class T>
void softmax_row(const backend::Kernels<T>& k, int64_t n, const T* x, T* y, bool log) {
  using backend::Binary;
  using backend::Reduce;
  using backend::Unary;
  const T max = k.reduce(Reduce::Max, n, x, 1);
  k.binary(Binary::Sub, {}, n, x, 1, &max, 0, y);  // shifted
  k.unary(Unary::Exp, {}, n, y, 1, y);
  const T sum = k.reduce(Reduce::Sum, n, y, 1);
  if (!log) {
    k.binary(Binary::Div, {}, n, y, 1, &sum, 0, y);
    return;
  }
  // log_softmax: shifted - log(sum(exp(shifted))).
  T log_sum;
  k.unary(Unary::Log, {}, 1, &sum, 1, &log_sum);
  k.binary(Binary::Sub, {}, n, x, 1, &max, 0, y);
  k.binary(Binary::Sub, {}, n, y, 1, &log_sum, 0, y);
}

/// dx = the gradient of softmax (or log_softmax) over n values, from its output y and the
/// gradient g of y: y * (g - sum(g * y)), or g - exp(y) * sum(g). dx overlaps neither. n >= 1.
template <class T>
void softmax_backward_row(const backend::Kernels<T>& k, int64_t n, const T* g, const T* y, T* dx, bool log) {
  using backend::Binary;
  using backend::Reduce;
  if (!log) {
    k.binary(Binary::Mul, {}, n, g, 1, y, 1, dx);
    const T dot = k.reduce(Reduce::Sum, n, dx, 1);
    k.binary(Binary::Sub, {}, n, g, 1, &dot, 0, dx);
    k.binary(Binary::Mul, {}, n, y, 1, dx, 1, dx);
    return;
  }
  const T sum = k.reduce(Reduce::Sum, n, g, 1);
  k.unary(backend::Unary::Exp, {}, n, y, 1, dx);
  k.binary(Binary::Mul, {}, n, dx, 1, &sum, 0, dx);
  k.binary(Binary::Sub, {}, n, g, 1, dx, 1, dx);
}

/// y = (x - mean) / sqrt(var + eps) * weight + bias over d values (weight, bias may be null);
/// returns the row's mean and 1 / sqrt(var + eps) in *mean and *rstd. d >= 1.
template <class T>
void layer_norm_row(const backend::Kernels<T>& k, int64_t d, const T* x, const T* weight, const T* bias, double eps,
                    T* y, T* mean, T* rstd) {
  const T m = static_cast<T>(k.reduce(backend::Reduce::Sum, d, x, 1) / static_cast<double>(d));
  double centred = 0, sq = 0;  // second pass about the mean: no cancellation
  k.centered_sums(d, x, m, nullptr, &centred, &sq);
  const double var = std::max(0.0, sq / double(d) - (centred / double(d)) * (centred / double(d)));
  const T rs = static_cast<T>(1.0 / std::sqrt(var + eps));
  k.affine2(d, x, rs, nullptr, T(0), -m * rs, y);
  if (weight != nullptr) k.binary(backend::Binary::Mul, {}, d, y, 1, weight, 1, y);
  if (bias != nullptr) k.binary(backend::Binary::Add, {}, d, y, 1, bias, 1, y);
  *mean = m;
  *rstd = rs;
}

/// One axis of interpolate: y [planes, out, inner] from x [planes, in, inner], position o read
/// from index i0[o] (near and far null: nearest) or as i0[o] * near[o] + i1[o] * far[o], each
/// product and the sum rounded as the kernels' multiply and add are (what the op's
/// index_select, multiply and add compute). `second` holds max(out, inner) values for the linear
/// modes; y must not overlap x.
template <class T, class Index>
void resample_axis(const backend::Kernels<T>& k, int64_t planes, int64_t in, int64_t out, int64_t inner, const T* x,
                   const Index* i0, const Index* i1, const T* near, const T* far, T* y, T* second) {
  using backend::Binary;
  const bool linear = near != nullptr;
  for (int64_t p = 0; p < planes; ++p) {
    const T* xp = x + p * in * inner;
    T* yp = y + p * out * inner;
    if (inner == 1) {  // the positions gathered, then weighted as vectors
      for (int64_t o = 0; o < out; ++o) yp[o] = xp[i0[o]];
      if (!linear) continue;
      for (int64_t o = 0; o < out; ++o) second[o] = xp[i1[o]];
      k.binary(Binary::Mul, {}, out, yp, 1, near, 1, yp);
      k.binary(Binary::Mul, {}, out, second, 1, far, 1, second);
      k.binary(Binary::Add, {}, out, yp, 1, second, 1, yp);
      continue;
    }
    for (int64_t o = 0; o < out; ++o) {
      T* row = yp + o * inner;
      if (!linear) {
        std::copy(xp + i0[o] * inner, xp + (i0[o] + 1) * inner, row);
        continue;
      }
      k.binary(Binary::Mul, {}, inner, xp + i0[o] * inner, 1, near + o, 0, row);
      k.binary(Binary::Mul, {}, inner, xp + i1[o] * inner, 1, far + o, 0, second);
      k.binary(Binary::Add, {}, inner, row, 1, second, 1, row);
    }
  }
}

}  // namespace ember::detail
