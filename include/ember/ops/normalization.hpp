#pragma once
// Normalisation and embedding lookups as functions (ember::nn's BatchNorm, LayerNorm, GroupNorm,
// RMSNorm, Embedding and EmbeddingBag call them; nn::functional names them too). batch_norm (also
// with a ReLU: batch_norm_relu) and layer_norm are fused nodes with their own backward (Note [Fused
// batch norm], Note [Batch norm with ReLU], Note [Fused layer norm] in src/ops/normalization.cpp);
// the others are composites of differentiable primitives.
#include <cstdint>

#include "ember/core/tensor.hpp"

namespace ember {

/// x [N, C, ...]: normalises over every dim but C. In training, batch statistics are used and
/// the running ones updated in place (with the unbiased variance, as PyTorch); otherwise the
/// running statistics are used. momentum < 0 means a cumulative average.
template <FloatingElement T>
Tensor<T> batch_norm(const Tensor<T>& x, Tensor<T> running_mean, Tensor<T> running_var,
                     const Tensor<T>& weight, const Tensor<T>& bias, bool training,
                     double momentum = 0.1, double eps = 1e-5);
/// relu(batch_norm(x, ...) + residual) (residual optional; broadcast as `+` does), as one node
/// where residual is undefined or of x's shape: a ResNet block's batch norm, shortcut and ReLU
/// with the passes of the separate ops fused, and the same values (Note [Batch norm with ReLU]).
template <FloatingElement T>
Tensor<T> batch_norm_relu(const Tensor<T>& x, Tensor<T> running_mean, Tensor<T> running_var,
                          const Tensor<T>& weight, const Tensor<T>& bias, bool training, double momentum = 0.1,
                          double eps = 1e-5, const Tensor<T>& residual = Tensor<T>());
/// Normalises over the last dims given by normalized_shape.
template <FloatingElement T>
Tensor<T> layer_norm(const Tensor<T>& x, const Shape& normalized_shape, const Tensor<T>& weight = Tensor<T>(),
                     const Tensor<T>& bias = Tensor<T>(), double eps = 1e-5);
template <FloatingElement T>
Tensor<T> group_norm(const Tensor<T>& x, int64_t num_groups, const Tensor<T>& weight = Tensor<T>(),
                     const Tensor<T>& bias = Tensor<T>(), double eps = 1e-5);
/// x [N, C, ...]: normalises each sample's channel over its spatial dims (torch.instance_norm).
/// With use_input_stats false the running statistics are used instead; when given and
/// use_input_stats is true they are updated in place with the batch's mean of the per-sample
/// statistics.
template <FloatingElement T>
Tensor<T> instance_norm(const Tensor<T>& x, Tensor<T> running_mean = Tensor<T>(), Tensor<T> running_var = Tensor<T>(),
                        const Tensor<T>& weight = Tensor<T>(), const Tensor<T>& bias = Tensor<T>(),
                        bool use_input_stats = true, double momentum = 0.1, double eps = 1e-5);
/// x / sqrt(mean(x^2 over the last dims) + eps) * weight.
template <FloatingElement T>
Tensor<T> rms_norm(const Tensor<T>& x, const Shape& normalized_shape, const Tensor<T>& weight = Tensor<T>(),
                   double eps = 1e-6);
/// Rows of weight picked by indices; rows at padding_idx get no gradient.
template <FloatingElement T>
Tensor<T> embedding(const Tensor<int64_t>& indices, const Tensor<T>& weight, int64_t padding_idx = -1);

enum class EmbeddingBagMode { Sum, Mean, Max };

struct EmbeddingBagOptions {
  EmbeddingBagMode mode = EmbeddingBagMode::Mean;
  /// offsets holds one more entry than there are bags, the last the input's length (as in the
  /// CSR layout).
  bool include_last_offset = false;
  /// Entries equal to it are left out of their bags (and of a mean's count); < 0: none.
  int64_t padding_idx = -1;
};

/// torch.nn.functional.embedding_bag: the sum, mean or maximum of the rows of weight [num, dim]
/// picked by each bag of indices, as [bags, dim] without the rows in between. Bags are the rows
/// of a 2-D input [bags, n] (offsets undefined), or runs of a 1-D input starting at offsets [bags]
/// (offsets[0] = 0, non-decreasing). An empty bag gives zeros. per_sample_weights (as the input,
/// Sum only) scale each row before the sum. Gradients go to the weight (to each bag's maximum in
/// Max mode) and to per_sample_weights.
template <FloatingElement T>
Tensor<T> embedding_bag(const Tensor<int64_t>& input, const Tensor<T>& weight,
                        const Tensor<int64_t>& offsets = Tensor<int64_t>(), const EmbeddingBagOptions& options = {},
                        const Tensor<T>& per_sample_weights = Tensor<T>());

}  // namespace ember
