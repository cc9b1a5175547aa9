// Normalisation layers and Embedding: parameters, buffers and running statistics; the functions
// they call are in src/ops/normalization.cpp.
#include "ember/nn/normalization.hpp"

#include <string>

#include "ember/autograd/grad_mode.hpp"
#include "ember/core/error.hpp"
#include "ember/nn/init.hpp"
#include "ember/ops/factory.hpp"

namespace ember::nn {

// ---- Modules -----------------------------------------------------------------------------------

template <FloatingElement T>
BatchNorm<T>::BatchNorm(int64_t n, BatchNormOptions o, int64_t min_dims, int64_t max_dims, const char* name)
    : num_features(n), options(o), min_dims_(min_dims), max_dims_(max_dims), name_(name) {
  if (n <= 0) throw ValueError(name_ + ": num_features must be positive, got " + std::to_string(n));
  if (o.affine) {
    weight = this->register_parameter("weight", ones<T>({n}));
    bias = this->register_parameter("bias", zeros<T>({n}));
  }
  if (o.track_running_stats) {
    running_mean = this->register_buffer("running_mean", zeros<T>({n}));
    running_var = this->register_buffer("running_var", ones<T>({n}));
    num_batches_tracked = this->register_buffer("num_batches_tracked", zeros<int64_t>({}));
  }
}

template <FloatingElement T>
Tensor<T> BatchNorm<T>::forward(const Tensor<T>& x) {
  if (!x.defined() || x.dim() < min_dims_ || x.dim() > max_dims_) {
    throw ShapeError(name_ + ": expected a " + std::to_string(min_dims_) +
                     (min_dims_ == max_dims_ ? "" : " or " + std::to_string(max_dims_)) + "-D input, got " +
                     (x.defined() ? x.shape().str() : std::string("undefined")));
  }
  if (x.shape()[1] != num_features) {
    throw ShapeError(name_ + ": input " + x.shape().str() + " has " + std::to_string(x.shape()[1]) +
                     " channels, expected " + std::to_string(num_features));
  }
  double momentum = options.momentum;
  if (this->is_training() && options.track_running_stats) {
    NoGradGuard no_grad;
    num_batches_tracked.copy_(scalar_tensor<int64_t>(num_batches_tracked.item() + 1));
    if (momentum < 0) momentum = 1.0 / static_cast<double>(num_batches_tracked.item());
  }
  return functional::batch_norm(x, running_mean, running_var, weight, bias,
                                this->is_training() || !options.track_running_stats, momentum, options.eps);
}

template <FloatingElement T>
std::string BatchNorm<T>::extra_repr() const {
  return std::to_string(num_features) + ", eps=" + std::to_string(options.eps) +
         ", momentum=" + std::to_string(options.momentum) + ", affine=" + (options.affine ? "True" : "False");
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
  if (num <= 0 || dim <= 0) throw ValueError("Embedding: sizes must be positive");
  if (pad >= num) {
    throw ValueError("Embedding: padding_idx " + std::to_string(pad) + " must be < num_embeddings " +
                     std::to_string(num));
  }
  weight = this->register_parameter("weight", empty<T>({num, dim}));
  init::normal_(weight);
  if (pad >= 0) {
    NoGradGuard no_grad;
    weight.select(0, pad).zero_();
  }
}

template <FloatingElement T>
Tensor<T> Embedding<T>::forward_indices(const Tensor<int64_t>& indices) {
  return functional::embedding(indices, weight, padding_idx);
}

#define EMBER_INSTANTIATE(T)                                                                       \
  template class BatchNorm<T>;                                                                     \
  template class LayerNorm<T>;                                                                     \
  template class GroupNorm<T>;                                                                     \
  template class RMSNorm<T>;                                                                       \
  template class Embedding<T>;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn
