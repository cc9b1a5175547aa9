#pragma once
// Convolutions over NCHW tensors (conv1d works on NCL). They run as im2col + the backend GEMM,
// one sample per task on the thread pool.
//
// Note [Convolution gradients]
// conv2d, conv2d_input_grad and conv2d_weight_grad are three ops whose backward formulas are
// written with each other, so every derivative of a convolution (any order) is again a
// convolution: y = conv2d(x, w) has dx = conv2d_input_grad(dy, w) and dw = conv2d_weight_grad(x, dy);
// conv_transpose2d is conv2d_input_grad used forwards.
#include <array>
#include <cstdint>

#include "ember/core/tensor.hpp"

namespace ember {

/// A size given as one number for both dims or as {height, width}.
struct IntPair {
  int64_t h, w;
  IntPair(int64_t v) : h(v), w(v) {}  // NOLINT: `.stride = 2` reads as in PyTorch
  IntPair(int64_t a, int64_t b) : h(a), w(b) {}
};

/// Geometry of a 2-D convolution. Padding may differ per side (padding "same" with an even
/// kernel pads more at the bottom and right, as PyTorch); a negative bottom or right padding
/// crops (conv_transpose2d's output_padding).
struct Conv2dGeometry {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 4> padding{0, 0, 0, 0};  // top, bottom, left, right
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};

/// x [N, C, H, W], weight [O, C / groups, kh, kw], bias [O] or undefined -> [N, O, Ho, Wo].
template <FloatingElement T>
Tensor<T> conv2d(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias,
                 const Conv2dGeometry& geometry);
/// The gradient of conv2d with respect to its input, for an input of spatial size input_hw.
template <FloatingElement T>
Tensor<T> conv2d_input_grad(const Tensor<T>& grad_out, const Tensor<T>& weight,
                            std::array<int64_t, 2> input_hw, const Conv2dGeometry& geometry);
/// The gradient of conv2d with respect to its weight, of shape weight_shape.
template <FloatingElement T>
Tensor<T> conv2d_weight_grad(const Tensor<T>& x, const Tensor<T>& grad_out, const Shape& weight_shape,
                             const Conv2dGeometry& geometry);

}  // namespace ember
