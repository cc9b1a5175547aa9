#pragma once
// Activations as modules, with PyTorch's names and defaults.
#include <string>
#include <string_view>

#include "ember/nn/module.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/reduction.hpp"

namespace ember::nn {

#define EMBER_SIMPLE_ACTIVATION(Name, expr)                                              \
  template <FloatingElement T = float>                                                   \
  class Name : public Module<T> {                                                        \
   public:                                                                               \
    Tensor<T> forward(const Tensor<T>& x) override { return expr; }                      \
    std::string type_name() const override { return #Name; }                             \
  };
EMBER_SIMPLE_ACTIVATION(ReLU, ember::relu(x))
EMBER_SIMPLE_ACTIVATION(SiLU, ember::silu(x))
EMBER_SIMPLE_ACTIVATION(Sigmoid, ember::sigmoid(x))
EMBER_SIMPLE_ACTIVATION(Tanh, ember::tanh(x))
EMBER_SIMPLE_ACTIVATION(Mish, ember::mish(x))
#undef EMBER_SIMPLE_ACTIVATION

template <FloatingElement T = float>
class LeakyReLU : public Module<T> {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::leaky_relu(x, slope_); }
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override { return "negative_slope=" + std::to_string(slope_); }

 private:
  double slope_;
};

/// approximate: "none" (exact erf form, the default as in PyTorch) or "tanh".
template <FloatingElement T = float>
class GELU : public Module<T> {
 public:
  // A string_view: GCC 12 at -O3 warns (maybe-uninitialized) about comparing a std::string built
  // from the default literal.
  explicit GELU(std::string_view approximate = "none") : approximate_(approximate) {
    if (approximate != "none" && approximate != "tanh") {
      throw ValueError("GELU: approximate must be \"none\" or \"tanh\", got \"" + approximate_ + "\"");
    }
  }
  Tensor<T> forward(const Tensor<T>& x) override { return ember::gelu(x, approximate_.c_str()); }
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override { return approximate_ == "none" ? "" : "approximate='tanh'"; }

 private:
  std::string approximate_;
};

template <FloatingElement T = float>
class Softmax : public Module<T> {
 public:
  explicit Softmax(int64_t dim) : dim_(dim) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::softmax(x, dim_); }
  std::string type_name() const override { return "Softmax"; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 private:
  int64_t dim_;
};

template <FloatingElement T = float>
class LogSoftmax : public Module<T> {
 public:
  explicit LogSoftmax(int64_t dim) : dim_(dim) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::log_softmax(x, dim_); }
  std::string type_name() const override { return "LogSoftmax"; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 private:
  int64_t dim_;
};

}  // namespace ember::nn
