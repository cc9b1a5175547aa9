#include "ember/nn/linear.hpp"

#include <cmath>
#include <cstdio>

#include "ember/nn/functional.hpp"
#include "ember/nn/init.hpp"
#include "ember/ops/factory.hpp"

namespace ember::nn {

namespace {

// Named here, with the layer's sizes, because a head swapped for transfer learning that does not
// fit the features before it fails here first.
template <FloatingElement T>
void require_features(const Module<T>& layer, const Tensor<T>& x, int64_t in_features) {
  if (x.dim() == 0 || x.size(-1) != in_features) {
    throw ShapeError(layer.type_name() + "(" + layer.extra_repr() + "): input " + x.shape().str() + " has " +
                     (x.dim() == 0 ? std::string("no feature dimension") : std::to_string(x.size(-1)) + " features") +
                     ", expected in_features=" + std::to_string(in_features));
  }
}

}  // namespace

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
  require_features(*this, x, in_features);
  return functional::linear(x, weight, bias);
}

template <FloatingElement T>
std::string Linear<T>::extra_repr() const {
  return "in_features=" + std::to_string(in_features) + ", out_features=" +
         std::to_string(out_features) + ", bias=" + (bias.defined() ? "True" : "False");
}

template <FloatingElement T>
SparseLinear<T>::SparseLinear(const Tensor<T>& weight, const Tensor<T>& bias_) {
  if (!weight.defined() || weight.dim() != 2) {
    throw ShapeError("SparseLinear: expected a 2-D weight [out_features, in_features], got " +
                     (weight.defined() ? weight.shape().str() : std::string("an undefined tensor")));
  }
  out_features = weight.shape()[0];
  in_features = weight.shape()[1];
  if (bias_.defined() && (bias_.dim() != 1 || bias_.shape()[0] != out_features)) {
    throw ShapeError("SparseLinear: bias " + bias_.shape().str() + " for a weight " + weight.shape().str() +
                     ", expected [" + std::to_string(out_features) + "]");
  }
  const CsrMatrix<T> csr = to_csr(weight.detach());
  weight_values = this->register_parameter("weight_values", csr.values.clone());
  weight_col_indices = this->register_buffer("weight_col_indices", csr.col_indices);
  weight_row_offsets = this->register_buffer("weight_row_offsets", csr.row_offsets);
  if (bias_.defined()) bias = this->register_parameter("bias", bias_.detach().clone());
}

template <FloatingElement T>
CsrMatrix<T> SparseLinear<T>::weight() const {
  return CsrMatrix<T>{out_features, in_features, weight_row_offsets, weight_col_indices, weight_values};
}

template <FloatingElement T>
Tensor<T> SparseLinear<T>::forward(const Tensor<T>& x) {
  require_features(*this, x, in_features);
  return functional::sparse_linear(x, weight(), bias);
}

template <FloatingElement T>
std::string SparseLinear<T>::extra_repr() const {
  const int64_t all = in_features * out_features, nnz = weight_values.numel();
  char density[32];
  std::snprintf(density, sizeof density, "%.4f", all > 0 ? static_cast<double>(nnz) / static_cast<double>(all) : 0.0);
  return "in_features=" + std::to_string(in_features) + ", out_features=" + std::to_string(out_features) +
         ", bias=" + (bias.defined() ? "True" : "False") + ", nnz=" + std::to_string(nnz) + ", density=" + density;
}

template class Linear<float>;
template class Linear<double>;
template class SparseLinear<float>;
template class SparseLinear<double>;

}  // namespace ember::nn
