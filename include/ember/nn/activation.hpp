#pragma once
// Activations as modules, with PyTorch's names and defaults.
#include <sstream>
#include <string>
#include <string_view>

#include "ember/nn/module.hpp"
#include "ember/ops/activation.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
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
EMBER_SIMPLE_ACTIVATION(ReLU6, ember::relu6(x))
EMBER_SIMPLE_ACTIVATION(Hardsigmoid, ember::hardsigmoid(x))
EMBER_SIMPLE_ACTIVATION(Hardswish, ember::hardswish(x))
EMBER_SIMPLE_ACTIVATION(SELU, ember::selu(x))
EMBER_SIMPLE_ACTIVATION(LogSigmoid, ember::logsigmoid(x))
EMBER_SIMPLE_ACTIVATION(Softsign, ember::softsign(x))
EMBER_SIMPLE_ACTIVATION(Tanhshrink, ember::tanhshrink(x))
#undef EMBER_SIMPLE_ACTIVATION

namespace detail {
// "name=value, ..." with the values as C++ streams them (0.25, 1, -1).
inline std::string numbers_repr(std::initializer_list<std::pair<const char*, double>> fields) {
  std::ostringstream s;
  const char* sep = "";
  for (const auto& [name, value] : fields) {
    s << sep << name << "=" << value;
    sep = ", ";
  }
  return s.str();
}
}  // namespace detail

template <FloatingElement T = float>
class ELU : public Module<T> {
 public:
  explicit ELU(double alpha = 1.0) : alpha_(alpha) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::elu(x, alpha_); }
  std::string type_name() const override { return "ELU"; }
  std::string extra_repr() const override { return detail::numbers_repr({{"alpha", alpha_}}); }

 private:
  double alpha_;
};

template <FloatingElement T = float>
class CELU : public Module<T> {
 public:
  explicit CELU(double alpha = 1.0) : alpha_(alpha) {
    if (alpha == 0.0) throw ValueError("CELU: alpha must not be 0");
  }
  Tensor<T> forward(const Tensor<T>& x) override { return ember::celu(x, alpha_); }
  std::string type_name() const override { return "CELU"; }
  std::string extra_repr() const override { return detail::numbers_repr({{"alpha", alpha_}}); }

 private:
  double alpha_;
};

template <FloatingElement T = float>
class Softplus : public Module<T> {
 public:
  explicit Softplus(double beta = 1.0, double threshold = 20.0) : beta_(beta), threshold_(threshold) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::softplus(x, beta_, threshold_); }
  std::string type_name() const override { return "Softplus"; }
  std::string extra_repr() const override {
    return detail::numbers_repr({{"beta", beta_}, {"threshold", threshold_}});
  }

 private:
  double beta_, threshold_;
};

template <FloatingElement T = float>
class Hardtanh : public Module<T> {
 public:
  explicit Hardtanh(double min_val = -1.0, double max_val = 1.0) : min_(min_val), max_(max_val) {
    if (min_val > max_val) {
      throw ValueError("Hardtanh: min_val " + std::to_string(min_val) + " is greater than max_val " +
                       std::to_string(max_val));
    }
  }
  Tensor<T> forward(const Tensor<T>& x) override { return ember::hardtanh(x, min_, max_); }
  std::string type_name() const override { return "Hardtanh"; }
  std::string extra_repr() const override { return detail::numbers_repr({{"min_val", min_}, {"max_val", max_}}); }

 private:
  double min_, max_;
};

template <FloatingElement T = float>
class Softshrink : public Module<T> {
 public:
  explicit Softshrink(double lambd = 0.5) : lambd_(lambd) {
    if (!(lambd >= 0.0)) throw ValueError("Softshrink: lambd must be >= 0, got " + std::to_string(lambd));
  }
  Tensor<T> forward(const Tensor<T>& x) override { return ember::softshrink(x, lambd_); }
  std::string type_name() const override { return "Softshrink"; }
  std::string extra_repr() const override { return detail::numbers_repr({{"lambd", lambd_}}); }

 private:
  double lambd_;
};

template <FloatingElement T = float>
class Hardshrink : public Module<T> {
 public:
  explicit Hardshrink(double lambd = 0.5) : lambd_(lambd) {
    if (!(lambd >= 0.0)) throw ValueError("Hardshrink: lambd must be >= 0, got " + std::to_string(lambd));
  }
  Tensor<T> forward(const Tensor<T>& x) override { return ember::hardshrink(x, lambd_); }
  std::string type_name() const override { return "Hardshrink"; }
  std::string extra_repr() const override { return detail::numbers_repr({{"lambd", lambd_}}); }

 private:
  double lambd_;
};

/// x where x > threshold, `value` elsewhere.
template <FloatingElement T = float>
class Threshold : public Module<T> {
 public:
  Threshold(double threshold, double value) : threshold_(threshold), value_(value) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::threshold(x, threshold_, value_); }
  std::string type_name() const override { return "Threshold"; }
  std::string extra_repr() const override {
    return detail::numbers_repr({{"threshold", threshold_}, {"value", value_}});
  }

 private:
  double threshold_, value_;
};

/// Random negative slopes in [lower, upper] while training, their mean in evaluation.
template <FloatingElement T = float>
class RReLU : public Module<T> {
 public:
  explicit RReLU(double lower = 1.0 / 8.0, double upper = 1.0 / 3.0) : lower_(lower), upper_(upper) {
    if (!(lower <= upper)) {
      throw ValueError("RReLU: lower " + std::to_string(lower) + " is greater than upper " + std::to_string(upper));
    }
  }
  Tensor<T> forward(const Tensor<T>& x) override { return ember::rrelu(x, lower_, upper_, this->is_training()); }
  std::string type_name() const override { return "RReLU"; }
  std::string extra_repr() const override { return detail::numbers_repr({{"lower", lower_}, {"upper", upper_}}); }

 private:
  double lower_, upper_;
};

/// Learnable leaky slope: one (num_parameters = 1) or one per channel, parameter "weight" of
/// [num_parameters] initialised to `init`, as torch.nn.PReLU.
template <FloatingElement T = float>
class PReLU : public Module<T> {
 public:
  explicit PReLU(int64_t num_parameters = 1, double init = 0.25) {
    if (num_parameters <= 0) {
      throw ValueError("PReLU: num_parameters must be positive, got " + std::to_string(num_parameters));
    }
    weight = this->register_parameter("weight", full<T>({num_parameters}, static_cast<T>(init)));
  }
  Tensor<T> forward(const Tensor<T>& x) override { return ember::prelu(x, weight); }
  std::string type_name() const override { return "PReLU"; }
  std::string extra_repr() const override { return "num_parameters=" + std::to_string(weight.numel()); }

  Tensor<T> weight;
};

template <FloatingElement T = float>
class GLU : public Module<T> {
 public:
  explicit GLU(int64_t dim = -1) : dim_(dim) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::glu(x, dim_); }
  std::string type_name() const override { return "GLU"; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 private:
  int64_t dim_;
};

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
class Softmin : public Module<T> {
 public:
  explicit Softmin(int64_t dim) : dim_(dim) {}
  Tensor<T> forward(const Tensor<T>& x) override { return ember::softmin(x, dim_); }
  std::string type_name() const override { return "Softmin"; }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 private:
  int64_t dim_;
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
