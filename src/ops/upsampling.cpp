// interpolate: per spatial dim, the source indices (and for the linear modes the two neighbours and
// their weights) that PyTorch computes, applied with index_select.
#include "ember/ops/upsampling.hpp"

#include <algorithm>
#include <cmath>

#include "common.hpp"
#include "rows.hpp"
#include "trace.hpp"
#include "ember/autograd/record.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/shape.hpp"
#include "ember/core/storage.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"

namespace ember {

using detail::cat_str;

namespace {

// PyTorch's compute_scales_value: the inverse of a given scale factor, else input / output.
template <class T>
T source_scale(std::optional<double> scale_factor, int64_t in, int64_t out) {
  return scale_factor ? static_cast<T>(1.0 / *scale_factor) : static_cast<T>(in) / static_cast<T>(out);
}

struct Axis {
  int64_t in = 0, out = 0;
  std::optional<double> scale_factor;
};

// x resampled along `dim` to `out` positions by the tables (near and far empty: nearest) without
// building a graph: the same products and sums as the differentiable form below, in one pass per
// plane (src/ops/rows.hpp, which the inference plans run too).
template <FloatingElement T>
Tensor<T> resampled(const Tensor<T>& x, int64_t dim, int64_t out, const std::vector<int64_t>& i0,
                    const std::vector<int64_t>& i1, const std::vector<T>& near, const std::vector<T>& far) {
  Shape out_shape = x.shape();
  out_shape[dim] = out;
  Tensor<T> y = detail::new_tensor<T>(out_shape, "interpolate");
  if (y.numel() == 0) return y;
  const Tensor<T> xc = x.contiguous();
  int64_t planes = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) planes *= x.shape()[d];
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  const bool linear = !near.empty();
  const int64_t in = x.shape()[dim], grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(out * inner, 1));
  const auto& k = backend::kernels<T>();
  detail::parallel_for(0, planes, grain, [&](int64_t b, int64_t e) {
    std::vector<T> second(linear ? static_cast<size_t>(std::max(out, inner)) : 0);
    detail::resample_axis(k, e - b, in, out, inner, xc.data_ptr() + b * in * inner, i0.data(),
                          linear ? i1.data() : nullptr, linear ? near.data() : nullptr, linear ? far.data() : nullptr,
                          y.data_ptr() + b * out * inner, second.data());
  });
  return y;
}

// One spatial dim `dim` of x resampled to axis.out values; its tables go to `traced` when given.
template <FloatingElement T>
Tensor<T> resample(const Tensor<T>& x, int64_t dim, const Axis& axis, const std::string& mode, bool align_corners,
                   std::vector<detail::ResampleAxis>* traced) {
  const int64_t in = axis.in, out = axis.out;
  if (in == out && !axis.scale_factor) return x;  // PyTorch's identity shortcut (same indices, weights 1 and 0)
  std::vector<int64_t> i0(static_cast<size_t>(out));
  if (mode == "nearest" || mode == "nearest-exact") {
    // nearest_idx / nearest_exact_idx, in float as PyTorch computes them for float inputs.
    const float scale = source_scale<float>(axis.scale_factor, in, out);
    const float offset = mode == "nearest" ? 0.0f : 0.5f;
    for (int64_t o = 0; o < out; ++o) {
      const int64_t src = static_cast<int64_t>(std::floor((static_cast<float>(o) + offset) * scale));
      i0[static_cast<size_t>(o)] = std::min(src, in - 1);
    }
    if (traced != nullptr) traced->push_back({dim, i0, {}, {}, {}});
    if (!autograd::needs_grad(x)) return resampled(x, dim, out, i0, {}, {}, {});
    return x.index_select(dim, tensor<int64_t>(i0));
  }
  // area_pixel_compute_scale and area_pixel_compute_source_index (non-cubic), in T.
  std::vector<int64_t> i1(static_cast<size_t>(out));
  std::vector<T> w1(static_cast<size_t>(out));
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : source_scale<T>(axis.scale_factor, in, out);
  for (int64_t o = 0; o < out; ++o) {
    const T src = align_corners ? scale * static_cast<T>(o)
                                : std::max(scale * (static_cast<T>(o) + T(0.5)) - T(0.5), T(0));
    const int64_t lo = std::min(static_cast<int64_t>(src), in - 1);
    i0[static_cast<size_t>(o)] = lo;
    i1[static_cast<size_t>(o)] = lo + (lo < in - 1 ? 1 : 0);
    w1[static_cast<size_t>(o)] = std::clamp(src - static_cast<T>(lo), T(0), T(1));
  }
  // 1 - far in T: what the tensor op `1.0 - far` rounds to.
  std::vector<T> w0(static_cast<size_t>(out));
  for (size_t o = 0; o < w0.size(); ++o) w0[o] = T(1) - w1[o];
  if constexpr (std::is_same_v<T, float>) {
    if (traced != nullptr) traced->push_back({dim, i0, i1, w0, w1});
  }
  if (!autograd::needs_grad(x)) return resampled(x, dim, out, i0, i1, w0, w1);
  Shape wshape = Shape::filled(x.dim(), 1);
  wshape[dim] = out;
  return x.index_select(dim, tensor<int64_t>(i0)) * tensor<T>(w0, wshape) +
         x.index_select(dim, tensor<int64_t>(i1)) * tensor<T>(w1, wshape);
}

}  // namespace

template <FloatingElement T>
Tensor<T> interpolate(const Tensor<T>& x, const InterpolateOptions& o) {
  detail::TracedOp traced;
  detail::require(x, "interpolate");
  const std::string& mode = o.mode;
  const bool linear = mode == "linear" || mode == "bilinear";
  if (!linear && mode != "nearest" && mode != "nearest-exact") {
    throw ValueError(cat_str("interpolate: mode \"", mode,
                             "\" is not supported (expected nearest, nearest-exact, linear or bilinear)"));
  }
  if (x.dim() != 3 && x.dim() != 4) {
    throw ShapeError(cat_str("interpolate: input ", x.shape(), " must be 3-D [N, C, L] or 4-D [N, C, H, W]"));
  }
  const int64_t spatial = x.dim() - 2;
  if ((mode == "linear" && spatial != 1) || (mode == "bilinear" && spatial != 2)) {
    throw ShapeError(cat_str("interpolate: mode \"", mode, "\" needs a ", mode == "linear" ? "3-D" : "4-D",
                             " input, got ", x.shape()));
  }
  if (o.align_corners && !linear) {
    throw ValueError(cat_str("interpolate: align_corners applies to the linear modes only, not \"", mode, "\""));
  }
  if (o.size.empty() == o.scale_factor.empty()) {
    throw ValueError("interpolate: give exactly one of size and scale_factor");
  }
  const size_t given = o.size.empty() ? o.scale_factor.size() : o.size.size();
  if (given != 1 && given != static_cast<size_t>(spatial)) {
    throw ShapeError(cat_str("interpolate: ", given, o.size.empty() ? " scale factors" : " sizes", " for ", spatial,
                             " spatial dims of the input ", x.shape()));
  }
  std::vector<Axis> axes(static_cast<size_t>(spatial));
  for (int64_t d = 0; d < spatial; ++d) {
    Axis& a = axes[static_cast<size_t>(d)];
    a.in = x.shape()[2 + d];
    const size_t k = given == 1 ? 0 : static_cast<size_t>(d);
    if (!o.size.empty()) {
      a.out = o.size[k];
    } else {
      const double f = o.scale_factor[k];
      if (!(f > 0) || !std::isfinite(f)) {
        throw ValueError(cat_str("interpolate: scale_factor must be positive and finite, got ", f));
      }
      a.scale_factor = f;
      const double want = std::floor(static_cast<double>(a.in) * f);
      if (want > 0x1p62) {  // beyond int64's reach (and any tensor's): refused before the cast
        throw ShapeError(cat_str("interpolate: scale_factor ", f, " makes spatial dim ", d, " of ", x.shape(),
                                 " larger than 2^62"));
      }
      a.out = static_cast<int64_t>(want);
    }
    if (a.out <= 0 || a.in <= 0) {
      throw ShapeError(cat_str("interpolate: input ", x.shape(), " gives an empty output (size ", a.out,
                               " of spatial dim ", d, "); sizes must be positive"));
    }
  }
  // The output and the per-axis index tables are checked against the allocation limit before any
  // is built: a size from a typo is an error naming interpolate, not a failed std::vector.
  Shape out_shape = x.shape();
  for (int64_t d = 0; d < spatial; ++d) out_shape[2 + d] = axes[static_cast<size_t>(d)].out;
  int64_t largest = checked_nbytes(out_shape, sizeof(T), "interpolate");
  for (const Axis& a : axes) largest = std::max(largest, checked_nbytes(Shape{a.out}, sizeof(int64_t), "interpolate"));
  if (largest > max_allocation_bytes()) {
    throw ValueError(cat_str("interpolate: the output ", out_shape, " of input ", x.shape(), " needs ", largest,
                             " bytes, more than the allocation limit of ", max_allocation_bytes(), " bytes"));
  }
  std::vector<detail::ResampleAxis> tables;
  detail::OpTracer* tracer = nullptr;
  if constexpr (std::is_same_v<T, float>) tracer = traced.tracer();
  Tensor<T> y = x;
  for (int64_t d = 0; d < spatial; ++d) {
    y = resample(y, 2 + d, axes[static_cast<size_t>(d)], mode, o.align_corners.value_or(false),
                 tracer != nullptr ? &tables : nullptr);
  }
  if (y.is_same(x)) y = x.clone();  // a new tensor, as PyTorch returns, even for the identity
  if constexpr (std::is_same_v<T, float>) {
    if (tracer != nullptr) tracer->interpolate(x, tables, y);
  }
  return y;
}

template Tensor<float> interpolate(const Tensor<float>&, const InterpolateOptions&);
template Tensor<double> interpolate(const Tensor<double>&, const InterpolateOptions&);

}  // namespace ember
