#pragma once
// Pooling over NCHW tensors (NCL for 1-d) with PyTorch's arguments and output sizes. max_pool2d
// finds the window maxima on the backend and its gradient is a scatter-add of the indices (a
// window wholly in the padding, which dilation allows, gives -inf as in PyTorch, and no gradient);
// average pooling is a depthwise convolution with a constant kernel divided by PyTorch's window
// counts; adaptive average pooling is two averaging matrix products, adaptive max pooling the
// maxima of its bins.
#include <cstdint>

#include "ember/core/tensor.hpp"
#include "ember/ops/conv.hpp"

namespace ember {

struct MaxPool2dOptions {
  IntPair stride = 0;  // 0: the kernel size, as PyTorch's default
  IntPair padding = 0;
  IntPair dilation = 1;
  bool ceil_mode = false;
};

struct AvgPool2dOptions {
  IntPair stride = 0;  // 0: the kernel size
  IntPair padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};

template <FloatingElement T>
Tensor<T> max_pool2d(const Tensor<T>& x, IntPair kernel_size, const MaxPool2dOptions& options = {});
template <FloatingElement T>
Tensor<T> max_pool1d(const Tensor<T>& x, int64_t kernel_size, const MaxPool2dOptions& options = {});
template <FloatingElement T>
Tensor<T> avg_pool2d(const Tensor<T>& x, IntPair kernel_size, const AvgPool2dOptions& options = {});
/// avg_pool2d over [N, C, L] (the options' width components).
template <FloatingElement T>
Tensor<T> avg_pool1d(const Tensor<T>& x, int64_t kernel_size, const AvgPool2dOptions& options = {});
/// adaptive_avg_pool2d over [N, C, L] to output_size values.
template <FloatingElement T>
Tensor<T> adaptive_avg_pool1d(const Tensor<T>& x, int64_t output_size);
/// Averages over the bins PyTorch uses: bin i covers [floor(i H / out), ceil((i + 1) H / out)).
template <FloatingElement T>
Tensor<T> adaptive_avg_pool2d(const Tensor<T>& x, IntPair output_size);
/// The maximum of each of adaptive_avg_pool2d's bins, and (with_indices) its index in the H x W
/// plane, as torch.nn.functional.adaptive_max_pool2d(return_indices=True); the gradient goes to
/// that element (the first of equal maxima).
template <FloatingElement T>
Tensor<T> adaptive_max_pool2d(const Tensor<T>& x, IntPair output_size);
template <FloatingElement T>
ValuesIndices<T> adaptive_max_pool2d_with_indices(const Tensor<T>& x, IntPair output_size);
/// adaptive_max_pool2d over [N, C, L] (indices along L).
template <FloatingElement T>
Tensor<T> adaptive_max_pool1d(const Tensor<T>& x, int64_t output_size);
template <FloatingElement T>
ValuesIndices<T> adaptive_max_pool1d_with_indices(const Tensor<T>& x, int64_t output_size);

}  // namespace ember
