// Normalisation layers, as composites of differentiable primitives (their gradients, through the
// batch statistics too, come from autograd), and Embedding.
#include "ember/nn/normalization.hpp"

#include <cmath>

#include "../ops/common.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/nn/init.hpp"

namespace ember::nn {

using detail::cat_str;

namespace functional {

namespace {
// [1, C, 1, ...] for broadcasting per-channel vectors against x [N, C, ...].
Shape channel_shape(const Shape& x) {
  Shape s = Shape::filled(x.size(), 1);
  s[1] = x[1];
  return s;
}
}  // namespace

template <FloatingElement T>
Tensor<T> batch_norm(const Tensor<T>& x, Tensor<T> running_mean, Tensor<T> running_var, const Tensor<T>& weight,
                     const Tensor<T>& bias, bool training, double momentum, double eps) {
  if (!x.defined() || x.dim() < 2) throw ShapeError("batch_norm: input must be [N, C, ...]");
  const int64_t c = x.shape()[1];
  for (const Tensor<T>* t : std::initializer_list<const Tensor<T>*>{&running_mean, &running_var, &weight, &bias}) {
    if (t->defined() && (t->dim() != 1 || t->shape()[0] != c)) {
      throw ShapeError(cat_str("batch_norm: per-channel tensor of shape ", t->shape(), " for ", c,
                               " channels (input ", x.shape(), ")"));
    }
  }
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  const Shape cs = channel_shape(x.shape());
  Tensor<T> xhat;
  const bool use_batch = training || !running_mean.defined() || !running_var.defined();
  if (use_batch) {
    const int64_t count = x.numel() / std::max<int64_t>(c, 1);
    if (training && count <= 1) {
      throw ValueError(cat_str("batch_norm: expected more than 1 value per channel when training, got input ",
                               x.shape()));
    }
    Tensor<T> mean = ember::mean(x, dims, true);
    Tensor<T> var = ember::var(x, dims, true, 0);
    if (training && running_mean.defined() && running_var.defined()) {
      NoGradGuard no_grad;
      const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
      running_mean.mul_(1.0 - momentum).add_(mean.detach().reshape({c}), momentum);
      running_var.mul_(1.0 - momentum).add_(var.detach().reshape({c}), momentum * unbias);
    }
    xhat = (x - mean) * rsqrt(var + eps);
  } else {
    xhat = (x - running_mean.reshape(cs)) * rsqrt(running_var.reshape(cs) + eps);
  }
  if (weight.defined()) xhat = xhat * weight.reshape(cs);
  if (bias.defined()) xhat = xhat + bias.reshape(cs);
  return xhat;
}

template <FloatingElement T>
Tensor<T> layer_norm(const Tensor<T>& x, const Shape& ns, const Tensor<T>& weight, const Tensor<T>& bias,
                     double eps) {
  if (!x.defined()) throw ValueError("layer_norm: the input is undefined");
  const int64_t k = ns.size();
  bool fits = k >= 1 && x.dim() >= k;
  for (int64_t i = 0; fits && i < k; ++i) fits = x.shape()[x.dim() - k + i] == ns[i];
  if (!fits) {
    throw ShapeError(cat_str("layer_norm: input ", x.shape(), " does not end with the normalized shape ", ns));
  }
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < k; ++i) dims.push_back(x.dim() - k + i);
  Tensor<T> mean = ember::mean(x, dims, true);
  Tensor<T> y = (x - mean) * rsqrt(ember::var(x, dims, true, 0) + eps);
  if (weight.defined()) y = y * weight;
  if (bias.defined()) y = y + bias;
  return y;
}

template <FloatingElement T>
Tensor<T> group_norm(const Tensor<T>& x, int64_t groups, const Tensor<T>& weight, const Tensor<T>& bias,
                     double eps) {
  if (!x.defined() || x.dim() < 2) throw ShapeError("group_norm: input must be [N, C, ...]");
  const int64_t n = x.shape()[0], c = x.shape()[1];
  if (groups <= 0 || c % groups != 0) {
    throw ValueError(cat_str("group_norm: ", c, " channels are not divisible into ", groups, " groups"));
  }
  Tensor<T> xr = x.reshape({n, groups, -1});
  Tensor<T> y = ((xr - xr.mean(2, true)) * rsqrt(ember::var(xr, {2}, true, 0) + eps)).reshape(x.shape());
  const Shape cs = channel_shape(x.shape());
  if (weight.defined()) y = y * weight.reshape(cs);
  if (bias.defined()) y = y + bias.reshape(cs);
  return y;
}

template <FloatingElement T>
Tensor<T> rms_norm(const Tensor<T>& x, const Shape& ns, const Tensor<T>& weight, double eps) {
  if (!x.defined()) throw ValueError("rms_norm: the input is undefined");
  const int64_t k = ns.size();
  bool fits = k >= 1 && x.dim() >= k;
  for (int64_t i = 0; fits && i < k; ++i) fits = x.shape()[x.dim() - k + i] == ns[i];
  if (!fits) throw ShapeError(cat_str("rms_norm: input ", x.shape(), " does not end with ", ns));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < k; ++i) dims.push_back(x.dim() - k + i);
  Tensor<T> y = x * rsqrt(ember::mean(x * x, dims, true) + eps);
  return weight.defined() ? y * weight : y;
}

template <FloatingElement T>
Tensor<T> embedding(const Tensor<int64_t>& indices, const Tensor<T>& weight, int64_t padding_idx) {
  if (!indices.defined() || !weight.defined() || weight.dim() != 2) {
    throw ShapeError("embedding: expected indices and a 2-D weight [num_embeddings, dim]");
  }
  Shape out_shape = indices.shape();
  out_shape.push_back(weight.shape()[1]);
  Tensor<int64_t> flat = indices.reshape({-1});
  Tensor<T> rows = weight.index_select(0, flat);
  if (padding_idx >= 0) {
    // Rows at padding_idx keep their value but get no gradient.
    Tensor<uint8_t> pad = tensor<uint8_t>([&] {
      std::vector<uint8_t> m;
      for (int64_t v : flat.to_vector()) m.push_back(v == padding_idx);
      return m;
    }(), {flat.numel(), 1});
    rows = where(pad, weight.detach().index_select(0, flat), rows);
  }
  return rows.reshape(out_shape);
}

}  // namespace functional

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
  template Tensor<T> functional::batch_norm(const Tensor<T>&, Tensor<T>, Tensor<T>, const Tensor<T>&, \
                                            const Tensor<T>&, bool, double, double);               \
  template Tensor<T> functional::layer_norm(const Tensor<T>&, const Shape&, const Tensor<T>&,      \
                                            const Tensor<T>&, double);                             \
  template Tensor<T> functional::group_norm(const Tensor<T>&, int64_t, const Tensor<T>&,           \
                                            const Tensor<T>&, double);                             \
  template Tensor<T> functional::rms_norm(const Tensor<T>&, const Shape&, const Tensor<T>&, double); \
  template Tensor<T> functional::embedding(const Tensor<int64_t>&, const Tensor<T>&, int64_t);     \
  template class BatchNorm<T>;                                                                     \
  template class LayerNorm<T>;                                                                     \
  template class GroupNorm<T>;                                                                     \
  template class RMSNorm<T>;                                                                       \
  template class Embedding<T>;
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE

}  // namespace ember::nn
