#pragma once
// Internal: the forward of conv2d on raw pointers, shared by the op (src/ops/conv.cpp) and the
// inference plan (src/deploy), which must compute the same bits without allocating; no tensors
// (it is part of ember::runtime).
#include <cstdint>

#include "ember/backend/kernels.hpp"
#include "ember/core/shape.hpp"
#include "ember/ops/conv.hpp"

namespace ember::detail {

struct ConvDims {
  int64_t n, c, h, w;   // input
  int64_t o, kh, kw;    // weight
  int64_t ho, wo;       // output
  int64_t g, cg, og;    // groups, channels per group in and out
  int64_t k() const { return cg * kh * kw; }
  int64_t hw_out() const { return ho * wo; }
};

/// The dims of conv2d(x, weight) with `geometry`, checked (errors name `op`).
ConvDims conv_dims(const char* op, const Shape& x, const Shape& weight, const Conv2dGeometry& geometry);

/// One image of the convolution, for the backend's im2col / col2im.
backend::ConvShape conv_shape(const ConvDims& d, const Conv2dGeometry& geometry);
/// A 1x1, stride-1, unpadded convolution reads its input directly as the GEMM operand.
bool is_pointwise(const ConvDims& d, const Conv2dGeometry& geometry);
/// Whether the convolution runs on the backend's flat kernels, without a column matrix (Note
/// [Flat convolution] in src/backend/conv_flat.inl). Pointwise convolutions are plain GEMMs.
template <class T>
bool use_flat(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& geometry,
              const backend::ConvShape& cs);
/// Samples per task: enough GEMM work per task to pay for the hand-off.
int64_t sample_grain(const ConvDims& d);

/// How a convolution runs on kernels `k`: on the flat kernels, as a GEMM on the input itself
/// (pointwise), or through a column matrix of cols_elements() values per sample.
template <class T>
struct ConvForward {
  ConvDims d;
  backend::ConvShape shape;
  bool pointwise = false;
  bool flat = false;
  int64_t cols_elements() const { return pointwise || flat ? 0 : d.k() * d.hw_out(); }
};
template <class T>
ConvForward<T> conv_forward_setup(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& geometry);

/// out[b .. e) = conv(x, w) for samples b .. e (no bias); `cols` holds cols_elements() values
/// (unused when zero). The flat path threads over the samples it is given.
template <class T>
void conv_forward_samples(const backend::Kernels<T>& k, const ConvForward<T>& f, const T* x, const T* w, T* out,
                          int64_t b, int64_t e, T* cols);

}  // namespace ember::detail
