// Normalisation layers and Embedding: parameters, buffers and running statistics; the functions
// they call are in src/ops/normalization.cpp.
#include "ember/nn/normalization.hpp"

#include <string>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/nn/init.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/shape_ops.hpp"

namespace ember::nn {

// ---- Modules -----------------------------------------------------------------------------------

namespace {
// BatchNorm's and InstanceNorm's parameters and buffers, with PyTorch's names and initial values.
template <class Norm>
void register_norm_state(Norm& m, int64_t n, bool affine, bool track_running_stats) {
  using T = typename decltype(m.weight)::value_type;
  if (affine) {
    m.weight = m.register_parameter("weight", ones<T>({n}));
    m.bias = m.register_parameter("bias", zeros<T>({n}));
  }
  if (track_running_stats) {
    m.running_mean = m.register_buffer("running_mean", zeros<T>({n}));
    m.running_var = m.register_buffer("running_var", ones<T>({n}));
    m.num_batches_tracked = m.register_buffer("num_batches_tracked", zeros<int64_t>({}));
  }
}

// Embedding's and EmbeddingBag's table: N(0, 1), the padding_idx row zero, as PyTorch's.
template <FloatingElement T>
Tensor<T> embedding_table(const char* layer, int64_t num, int64_t dim, int64_t pad) {
  if (num <= 0 || dim <= 0) throw ValueError(std::string(layer) + ": sizes must be positive");
  if (pad >= num) {
    throw ValueError(std::string(layer) + ": padding_idx " + std::to_string(pad) + " must be < num_embeddings " +
                     std::to_string(num));
  }
  Tensor<T> table = empty<T>({num, dim});
  init::normal_(table);
  if (pad >= 0) table.select(0, pad).zero_();
  return table;
}
}  // namespace

template <FloatingElement T>
BatchNorm<T>::BatchNorm(int64_t n, BatchNormOptions o, int64_t min_dims, int64_t max_dims, const char* name)
    : num_features(n), options(o), min_dims_(min_dims), max_dims_(max_dims), name_(name) {
  if (n <= 0) throw ValueError(name_ + ": num_features must be positive, got " + std::to_string(n));
  register_norm_state(*this, n, o.affine, o.track_running_stats);
}

template <FloatingElement T>
Tensor<T> BatchNorm<T>::forward(const Tensor<T>& x) {
  return normalize(x, Tensor<T>(), false);
}

template <FloatingElement T>
Tensor<T> BatchNorm<T>::forward_relu(const Tensor<T>& x, const Tensor<T>& residual) {
  return normalize(x, residual, true);
}

template <FloatingElement T>
Tensor<T> BatchNorm<T>::normalize(const Tensor<T>& x, const Tensor<T>& residual, bool relu) {
  if (!x.defined() || x.dim() < min_dims_ || x.dim() > max_dims_) {
    throw ShapeError(name_ + ": expected a " + std::to_string(min_dims_) +
                     (min_dims_ == max_dims_ ? "" : " or " + std::to_string(max_dims_)) + "-D input, got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (x.shape()[1] != num_features) {
    throw ShapeError(name_ + ": input " + x.shape().str() + " has " + std::to_string(x.shape()[1]) +
                     " channels, expected " + std::to_string(num_features));
  }
  if (relu && residual.defined() && residual.shape() != x.shape()) {
    throw ShapeError(name_ + ": forward_relu's residual " + residual.shape().str() + " must have the input's shape " +
                     x.shape().str());
  }
  // The batch is counted once the call has succeeded: a failed call leaves the module as it was.
  const bool counts = this->is_training() && options.track_running_stats;
  const int64_t tracked = counts ? num_batches_tracked.item() + 1 : 0;
  const double momentum = counts && options.momentum < 0 ? 1.0 / static_cast<double>(tracked) : options.momentum;
  const bool batch_statistics = this->is_training() || !options.track_running_stats;
  Tensor<T> y;
  if (group_sum_ && this->is_training()) {
    y = synchronized_forward(x, momentum);
    if (relu) y = ember::relu(residual.defined() ? y + residual : y);
  } else if (relu) {
    y = functional::batch_norm_relu(x, running_mean, running_var, weight, bias, batch_statistics, momentum,
                                    options.eps, residual);
  } else {
    y = functional::batch_norm(x, running_mean, running_var, weight, bias, batch_statistics, momentum, options.eps);
  }
  if (counts) {
    NoGradGuard no_grad;
    num_batches_tracked.copy_(scalar_tensor<int64_t>(tracked));
  }
  return y;
}

template <FloatingElement T>
void BatchNorm<T>::synchronize_statistics(GroupSum group_sum, std::string type_name) {
  group_sum_ = std::move(group_sum);
  if (group_sum_) {
    name_ = std::move(type_name);
    min_dims_ = 2;
    max_dims_ = 5;
  }
}

// Two passes over the ranks (the sum for the mean, then the centred squares for the variance),
// not E[x^2] - E[x]^2 in one: that difference loses float precision when the mean is large. The
// statistics are built from differentiable ops around a differentiable group sum, so backward
// sums the ranks' gradient terms without a formula of its own.
template <FloatingElement T>
Tensor<T> BatchNorm<T>::synchronized_forward(const Tensor<T>& x, double momentum) {
  std::vector<int64_t> dims{0};
  std::vector<int64_t> stat_dims(static_cast<size_t>(x.dim()), 1);
  stat_dims[1] = num_features;
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  const Shape stat_shape(stat_dims);
  const double local_count = static_cast<double>(x.numel() / num_features);
  Tensor<T> sums = group_sum_(cat({x.sum(dims), full<T>(Shape{1}, static_cast<T>(local_count))}));
  Tensor<T> count = sums.narrow(0, num_features, 1);
  const double n = static_cast<double>(count.detach().item());
  if (n <= 1) {
    throw ValueError(name_ + ": expected more than 1 value per channel across the ranks when training, got input " +
                     x.shape().str());
  }
  Tensor<T> mean = sums.narrow(0, 0, num_features) / count;
  Tensor<T> centered = x - mean.view(stat_shape);
  Tensor<T> var = group_sum_((centered * centered).sum(dims)) / count;
  Tensor<T> y = centered * (var + options.eps).pow(-0.5).view(stat_shape);
  if (options.affine) y = y * weight.view(stat_shape) + bias.view(stat_shape);
  if (options.track_running_stats) {
    NoGradGuard no_grad;
    running_mean.mul_(1 - momentum).add_(mean.detach() * momentum);
    running_var.mul_(1 - momentum).add_(var.detach() * (momentum * n / (n - 1)));
  }
  return y;
}

template <FloatingElement T>
std::string BatchNorm<T>::extra_repr() const {
  return std::to_string(num_features) + ", eps=" + std::to_string(options.eps) +
         ", momentum=" + std::to_string(options.momentum) + ", affine=" + (options.affine ? "True" : "False");
}

template <FloatingElement T>
InstanceNorm<T>::InstanceNorm(int64_t n, InstanceNormOptions o, int64_t spatial_dims, const char* name)
    : num_features(n), options(o), spatial_dims_(spatial_dims), name_(name) {
  if (n <= 0) throw ValueError(name_ + ": num_features must be positive, got " + std::to_string(n));
  register_norm_state(*this, n, o.affine, o.track_running_stats);
}

template <FloatingElement T>
Tensor<T> InstanceNorm<T>::forward(const Tensor<T>& x) {
  const int64_t unbatched = spatial_dims_ + 1;
  if (!x.defined() || x.dim() < unbatched || x.dim() > unbatched + 1) {
    throw ShapeError(name_ + ": expected a " + std::to_string(unbatched) + "-D (unbatched) or " +
                     std::to_string(unbatched + 1) + "-D input, got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (x.dim() == unbatched) return forward(x.unsqueeze(0)).squeeze(0);
  // Without affine parameters or running statistics nothing is per channel (PyTorch then only warns).
  if ((options.affine || options.track_running_stats) && x.shape()[1] != num_features) {
    throw ShapeError(name_ + ": input " + x.shape().str() + " has " + std::to_string(x.shape()[1]) +
                     " channels, expected " + std::to_string(num_features));
  }
  return functional::instance_norm(x, running_mean, running_var, weight, bias,
                                   this->is_training() || !options.track_running_stats, options.momentum,
                                   options.eps);
}

template <FloatingElement T>
std::string InstanceNorm<T>::extra_repr() const {
  return std::to_string(num_features) + ", eps=" + std::to_string(options.eps) +
         ", momentum=" + std::to_string(options.momentum) + ", affine=" + (options.affine ? "True" : "False") +
         ", track_running_stats=" + (options.track_running_stats ? "True" : "False");
}

template <FloatingElement T>
LayerNorm<T>::LayerNorm(Shape ns, LayerNormOptions o) : normalized_shape(ns), options(o) {
  checked_numel(ns, "LayerNorm");
  if (o.elementwise_affine) {
    weight = this->register_parameter("weight", ones<T>(ns));
    bias = this->register_parameter("bias", zeros<T>(ns));
  }
}

template <FloatingElement T>
Tensor<T> LayerNorm<T>::forward(const Tensor<T>& x) {
  return functional::layer_norm(x, normalized_shape, weight, bias, options.eps);
}

template <FloatingElement T>
std::string LayerNorm<T>::extra_repr() const {
  std::string s("(");
  for (int64_t i = 0; i < normalized_shape.size(); ++i) {
    s.append(std::to_string(normalized_shape[i])).append(",");
  }
  return s.append("), eps=").append(std::to_string(options.eps));
}

template <FloatingElement T>
GroupNorm<T>::GroupNorm(int64_t g, int64_t c, LayerNormOptions o) : num_groups(g), num_channels(c), options(o) {
  if (g <= 0 || c <= 0 || c % g != 0) {
    throw ValueError("GroupNorm: num_channels " + std::to_string(c) + " must be divisible by num_groups " +
                     std::to_string(g));
  }
  if (o.elementwise_affine) {
    weight = this->register_parameter("weight", ones<T>({c}));
    bias = this->register_parameter("bias", zeros<T>({c}));
  }
}

template <FloatingElement T>
Tensor<T> GroupNorm<T>::forward(const Tensor<T>& x) {
  return functional::group_norm(x, num_groups, weight, bias, options.eps);
}

template <FloatingElement T>
RMSNorm<T>::RMSNorm(Shape ns, double e, bool affine) : normalized_shape(ns), eps(e) {
  if (affine) weight = this->register_parameter("weight", ones<T>(ns));
}

template <FloatingElement T>
Tensor<T> RMSNorm<T>::forward(const Tensor<T>& x) {
  return functional::rms_norm(x, normalized_shape, weight, eps);
}

template <FloatingElement T>
Embedding<T>::Embedding(int64_t num, int64_t dim, int64_t pad)
    : num_embeddings(num), embedding_dim(dim), padding_idx(pad) {
  weight = this->register_parameter("weight", embedding_table<T>("Embedding", num, dim, pad));
}

template <FloatingElement T>
Tensor<T> Embedding<T>::forward_indices(const Tensor<int64_t>& indices) {
  return functional::embedding(indices, weight, padding_idx);
}

template <FloatingElement T>
EmbeddingBag<T>::EmbeddingBag(int64_t num, int64_t dim, const EmbeddingBagOptions& o)
    : num_embeddings(num), embedding_dim(dim), options(o) {
  weight = this->register_parameter("weight", embedding_table<T>("EmbeddingBag", num, dim, o.padding_idx));
}

template <FloatingElement T>
Tensor<T> EmbeddingBag<T>::forward_indices(const Tensor<int64_t>& input, const Tensor<int64_t>& offsets,
                                           const Tensor<T>& per_sample_weights) {
  return functional::embedding_bag(input, weight, offsets, options, per_sample_weights);
}

#define EMBER_INSTANTIATE(T)                                                                       \
  template class BatchNorm<T>;                                                                     \
  template class InstanceNorm<T>;                                                                  \
  template class LayerNorm<T>;                                                                     \
  template class GroupNorm<T>;                                                                     \
  template class RMSNorm<T>;                                                                       \
  template class Embedding<T>;                                                                     \
  template class EmbeddingBag<T>;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn
