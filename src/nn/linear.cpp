#include "ember/nn/linear.hpp"

#include <cmath>

#include "ember/nn/functional.hpp"
#include "ember/nn/init.hpp"
#include "ember/ops/factory.hpp"

namespace ember::nn {

template <FloatingElement T>
Linear<T>::Linear(int64_t in, int64_t out, LinearOptions options) : in_features(in), out_features(out) {
  if (in < 0 || out < 0) {
    throw ValueError("Linear: feature counts must be >= 0, got in_features=" + std::to_string(in) +
                     ", out_features=" + std::to_string(out));
  }
  weight = this->register_parameter("weight", empty<T>({out, in}));
  if (weight.numel() > 0) {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
  }
  if (options.bias) {
    bias = this->register_parameter("bias", empty<T>({out}));
    const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

template <FloatingElement T>
Tensor<T> Linear<T>::forward(const Tensor<T>& x) {
  // Named here, with the layer's sizes, because a head swapped for transfer learning that does not
  // fit the features before it fails here first.
  if (x.dim() == 0 || x.size(-1) != in_features) {
    throw ShapeError("Linear(" + extra_repr() + "): input " + x.shape().str() + " has " +
                     (x.dim() == 0 ? std::string("no feature dimension") : std::to_string(x.size(-1)) + " features") +
                     ", expected in_features=" + std::to_string(in_features));
  }
  return functional::linear(x, weight, bias);
}

template <FloatingElement T>
std::string Linear<T>::extra_repr() const {
  return "in_features=" + std::to_string(in_features) + ", out_features=" +
         std::to_string(out_features) + ", bias=" + (bias.defined() ? "True" : "False");
}

template class Linear<float>;
template class Linear<double>;

}  // namespace ember::nn
