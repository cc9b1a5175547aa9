#pragma once
// Linear, Identity and Flatten.
#include "ember/nn/module.hpp"

namespace ember::nn {

struct LinearOptions {
  bool bias = true;
};

/// y = x W^T + b with W [out_features, in_features] and b [out_features], initialised as
/// PyTorch's nn.Linear (kaiming_uniform_ with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in)) for both).
template <FloatingElement T = float>
class Linear : public Module<T> {
 public:
  Linear(int64_t in_features, int64_t out_features, LinearOptions options = {});
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;

  Tensor<T> weight;
  Tensor<T> bias;  // undefined without bias
  int64_t in_features, out_features;
};
Linear(int64_t, int64_t)->Linear<float>;
Linear(int64_t, int64_t, LinearOptions)->Linear<float>;

template <FloatingElement T = float>
class Identity : public Module<T> {
 public:
  Tensor<T> forward(const Tensor<T>& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

struct FlattenOptions {
  int64_t start_dim = 1;
  int64_t end_dim = -1;
};

template <FloatingElement T = float>
class Flatten : public Module<T> {
 public:
  explicit Flatten(FlattenOptions options = {}) : options_(options) {}
  Tensor<T> forward(const Tensor<T>& x) override { return x.flatten(options_.start_dim, options_.end_dim); }
  const FlattenOptions& options() const noexcept { return options_; }
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override {
    return "start_dim=" + std::to_string(options_.start_dim) + ", end_dim=" + std::to_string(options_.end_dim);
  }

 private:
  FlattenOptions options_;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace ember::nn
