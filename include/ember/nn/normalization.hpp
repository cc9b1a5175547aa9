#pragma once
// BatchNorm1d/2d, LayerNorm, GroupNorm and RMSNorm, with PyTorch's parameter and buffer names
// (weight, bias, running_mean, running_var, num_batches_tracked). (Embedding, in
// ember/nn/embedding.hpp, is included here too for programs that found it here.)
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ember/nn/embedding.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/normalization.hpp"

namespace ember::nn {

namespace functional {
using ember::batch_norm;
using ember::batch_norm_relu;
using ember::embedding;
using ember::embedding_bag;
using ember::group_norm;
using ember::instance_norm;
using ember::layer_norm;
using ember::rms_norm;
}  // namespace functional

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;  // < 0: cumulative moving average (PyTorch's momentum=None)
  bool affine = true;
  bool track_running_stats = true;
};

template <FloatingElement T = float>
class BatchNorm : public Module<T> {
 public:
  BatchNorm(int64_t num_features, BatchNormOptions options, int64_t min_dims, int64_t max_dims,
            const char* name);
  Tensor<T> forward(const Tensor<T>& x) override;
  /// relu(forward(x) + residual) (residual optional, of x's shape), with the passes fused where
  /// the batch norm allows it (functional::batch_norm_relu; not while synchronized across ranks).
  /// Hooks are the caller's to check: this runs none (BasicBlock calls it for a batch norm that
  /// has none).
  Tensor<T> forward_relu(const Tensor<T>& x, const Tensor<T>& residual = Tensor<T>());
  std::string type_name() const override { return name_; }
  std::string extra_repr() const override;

  /// The sum of a tensor over the ranks that share the batch, differentiably (SyncBatchNorm and
  /// convert_sync_batch_norm in ember/distributed set it). While it is set, training normalises
  /// with the mean and variance of the whole batch across those ranks; the module then shows
  /// itself as `type_name` and takes 2-D to 5-D input, as PyTorch's SyncBatchNorm.
  using GroupSum = std::function<Tensor<T>(const Tensor<T>&)>;
  void synchronize_statistics(GroupSum group_sum, std::string type_name = "SyncBatchNorm");

  Tensor<T> weight, bias, running_mean, running_var;
  Tensor<int64_t> num_batches_tracked;
  int64_t num_features;
  BatchNormOptions options;

 private:
  Tensor<T> normalize(const Tensor<T>& x, const Tensor<T>& residual, bool relu);
  Tensor<T> synchronized_forward(const Tensor<T>& x, double momentum);
  int64_t min_dims_, max_dims_;
  std::string name_;
  GroupSum group_sum_;
};

template <FloatingElement T = float>
class BatchNorm1d : public BatchNorm<T> {
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm<T>(num_features, options, 2, 3, "BatchNorm1d") {}
};
template <FloatingElement T = float>
class BatchNorm2d : public BatchNorm<T> {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm<T>(num_features, options, 4, 4, "BatchNorm2d") {}
};
BatchNorm1d(int64_t)->BatchNorm1d<float>;
BatchNorm1d(int64_t, BatchNormOptions)->BatchNorm1d<float>;
BatchNorm2d(int64_t)->BatchNorm2d<float>;
BatchNorm2d(int64_t, BatchNormOptions)->BatchNorm2d<float>;

/// PyTorch's InstanceNorm defaults: no affine parameters, no running statistics.
struct InstanceNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = false;
  bool track_running_stats = false;
};

/// InstanceNorm1d / InstanceNorm2d: batch statistics per sample and channel (instance_norm),
/// the running ones in eval mode when tracked; an input without its batch dim ([C, L] / [C, H, W])
/// is a batch of one. State dict as PyTorch's: weight, bias (affine), running_mean, running_var,
/// num_batches_tracked (track_running_stats; PyTorch registers it and never counts).
template <FloatingElement T = float>
class InstanceNorm : public Module<T> {
 public:
  InstanceNorm(int64_t num_features, InstanceNormOptions options, int64_t spatial_dims, const char* name);
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return name_; }
  std::string extra_repr() const override;

  Tensor<T> weight, bias, running_mean, running_var;
  Tensor<int64_t> num_batches_tracked;
  int64_t num_features;
  InstanceNormOptions options;

 private:
  int64_t spatial_dims_;
  std::string name_;
};

template <FloatingElement T = float>
class InstanceNorm1d : public InstanceNorm<T> {
 public:
  explicit InstanceNorm1d(int64_t num_features, InstanceNormOptions options = {})
      : InstanceNorm<T>(num_features, options, 1, "InstanceNorm1d") {}
};
template <FloatingElement T = float>
class InstanceNorm2d : public InstanceNorm<T> {
 public:
  explicit InstanceNorm2d(int64_t num_features, InstanceNormOptions options = {})
      : InstanceNorm<T>(num_features, options, 2, "InstanceNorm2d") {}
};
InstanceNorm1d(int64_t)->InstanceNorm1d<float>;
InstanceNorm1d(int64_t, InstanceNormOptions)->InstanceNorm1d<float>;
InstanceNorm2d(int64_t)->InstanceNorm2d<float>;
InstanceNorm2d(int64_t, InstanceNormOptions)->InstanceNorm2d<float>;

struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;
};

template <FloatingElement T = float>
class LayerNorm : public Module<T> {
 public:
  explicit LayerNorm(Shape normalized_shape, LayerNormOptions options = {});
  explicit LayerNorm(int64_t normalized_size, LayerNormOptions options = {})
      : LayerNorm(Shape{normalized_size}, options) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;

  Tensor<T> weight, bias;
  Shape normalized_shape;
  LayerNormOptions options;
};
LayerNorm(Shape)->LayerNorm<float>;
LayerNorm(Shape, LayerNormOptions)->LayerNorm<float>;
LayerNorm(int)->LayerNorm<float>;
LayerNorm(int, LayerNormOptions)->LayerNorm<float>;

template <FloatingElement T = float>
class GroupNorm : public Module<T> {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, LayerNormOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "GroupNorm"; }

  Tensor<T> weight, bias;
  int64_t num_groups, num_channels;
  LayerNormOptions options;
};
GroupNorm(int64_t, int64_t)->GroupNorm<float>;

template <FloatingElement T = float>
class RMSNorm : public Module<T> {
 public:
  explicit RMSNorm(Shape normalized_shape, double eps = 1e-6, bool elementwise_affine = true);
  explicit RMSNorm(int64_t normalized_size, double eps = 1e-6, bool elementwise_affine = true)
      : RMSNorm(Shape{normalized_size}, eps, elementwise_affine) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "RMSNorm"; }

  Tensor<T> weight;
  Shape normalized_shape;
  double eps;
};
RMSNorm(Shape)->RMSNorm<float>;
RMSNorm(int)->RMSNorm<float>;


extern template class BatchNorm<float>;
extern template class BatchNorm<double>;
extern template class InstanceNorm<float>;
extern template class InstanceNorm<double>;
extern template class LayerNorm<float>;
extern template class LayerNorm<double>;
extern template class GroupNorm<float>;
extern template class GroupNorm<double>;
extern template class RMSNorm<float>;
extern template class RMSNorm<double>;

}  // namespace ember::nn
