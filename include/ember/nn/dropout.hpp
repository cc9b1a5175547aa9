#pragma once
#include <string>

#include "ember/nn/functional.hpp"
#include "ember/nn/module.hpp"

namespace ember::nn {

/// Zeroes each element with probability p while training (scaling the rest by 1 / (1 - p));
/// the identity in eval mode.
template <FloatingElement T = float>
class Dropout : public Module<T> {
 public:
  explicit Dropout(double p = 0.5) : p_(p) {
    if (!(p >= 0.0 && p <= 1.0)) throw ValueError("Dropout: p must be in [0, 1], got " + std::to_string(p));
  }
  Tensor<T> forward(const Tensor<T>& x) override {
    return functional::dropout(x, p_, this->is_training());
  }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override { return "p=" + std::to_string(p_); }

 private:
  double p_;
};

/// Zeroes whole channels with probability p while training (torch.nn.Dropout2d).
template <FloatingElement T = float>
class Dropout2d : public Module<T> {
 public:
  explicit Dropout2d(double p = 0.5) : p_(p) {
    if (!(p >= 0.0 && p <= 1.0)) throw ValueError("Dropout2d: p must be in [0, 1], got " + std::to_string(p));
  }
  Tensor<T> forward(const Tensor<T>& x) override {
    return functional::dropout2d(x, p_, this->is_training());
  }
  std::string type_name() const override { return "Dropout2d"; }
  std::string extra_repr() const override { return "p=" + std::to_string(p_); }

 private:
  double p_;
};

}  // namespace ember::nn
