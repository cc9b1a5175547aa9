#pragma once
// The activations of torch.nn.functional that are not kernels of the op table: composites of
// differentiable ops (so they differentiate to any order) with PyTorch's formulas, including its
// gradients at the kinks (hardtanh passes none at its bounds, hardswish has x / 3 + 1 / 2 there).
#include <cstdint>

#include "ember/core/generator.hpp"
#include "ember/core/tensor.hpp"

namespace ember {

/// clamp(x, min_val, max_val), with gradient only strictly between the bounds (torch's hardtanh).
template <FloatingElement T>
Tensor<T> hardtanh(const Tensor<T>& x, double min_val = -1.0, double max_val = 1.0);
/// hardtanh(x, 0, 6).
template <FloatingElement T>
Tensor<T> relu6(const Tensor<T>& x);
/// relu6(x + 3) / 6.
template <FloatingElement T>
Tensor<T> hardsigmoid(const Tensor<T>& x);
/// x relu6(x + 3) / 6 (MobileNetV3's activation).
template <FloatingElement T>
Tensor<T> hardswish(const Tensor<T>& x);
/// scale elu(x, alpha) with the self-normalising constants of Klambauer et al. (torch's selu).
template <FloatingElement T>
Tensor<T> selu(const Tensor<T>& x);
/// max(0, x) + min(0, alpha (exp(x / alpha) - 1)); alpha must not be 0.
template <FloatingElement T>
Tensor<T> celu(const Tensor<T>& x, double alpha = 1.0);
/// log(sigmoid(x)), as -softplus(-x) (no overflow for large |x|).
template <FloatingElement T>
Tensor<T> logsigmoid(const Tensor<T>& x);
/// x / (1 + |x|).
template <FloatingElement T>
Tensor<T> softsign(const Tensor<T>& x);
/// x - lambd above lambd, x + lambd below -lambd, 0 between (lambd >= 0).
template <FloatingElement T>
Tensor<T> softshrink(const Tensor<T>& x, double lambd = 0.5);
/// x where |x| > lambd, 0 elsewhere (lambd >= 0).
template <FloatingElement T>
Tensor<T> hardshrink(const Tensor<T>& x, double lambd = 0.5);
/// x - tanh(x).
template <FloatingElement T>
Tensor<T> tanhshrink(const Tensor<T>& x);
/// x where x > threshold, `value` elsewhere (torch.nn.functional.threshold).
template <FloatingElement T>
Tensor<T> threshold(const Tensor<T>& x, double threshold, double value);
/// softmax(-x, dim).
template <FloatingElement T>
Tensor<T> softmin(const Tensor<T>& x, int64_t dim);
/// Randomized leaky ReLU (Xu et al. 2015): in training each negative element is multiplied by its
/// own slope drawn uniformly from [lower, upper] (from `gen`, or the default generator), in
/// evaluation by (lower + upper) / 2, as torch.nn.functional.rrelu.
template <FloatingElement T>
Tensor<T> rrelu(const Tensor<T>& x, double lower = 1.0 / 8.0, double upper = 1.0 / 3.0, bool training = false,
                Generator* gen = nullptr);
/// max(0, x) + weight min(0, x), weight of one element or one per channel (dim 1 of x; a 0-D or
/// 1-D x has one channel), as torch.nn.functional.prelu. Differentiable in x and weight.
template <FloatingElement T>
Tensor<T> prelu(const Tensor<T>& x, const Tensor<T>& weight);
/// a sigmoid(b), a and b the two halves of x along dim (its size must be even).
template <FloatingElement T>
Tensor<T> glu(const Tensor<T>& x, int64_t dim = -1);

}  // namespace ember
