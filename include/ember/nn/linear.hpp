#pragma once
// Linear, Identity and Flatten.
#include "ember/nn/module.hpp"
#include "ember/ops/sparse.hpp"

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

/// A Linear holding only the nonzeros of its weight (CSR), for heavily pruned layers: the same
/// y = x W^T + b through sparse_linear, faster than the dense product above a sparsity that
/// docs/benchmarks.md reports (prune::sparsify swaps layers past it). The nonzeros train (the
/// parameter weight_values; the zeros stay zero); the pattern is the buffers weight_col_indices
/// (int32) and weight_row_offsets (int64), so a state dict loads only into a SparseLinear of the
/// same pattern. Keep the dense, masked layer (ember::prune) to save in PyTorch's layout.
template <FloatingElement T = float>
class SparseLinear : public Module<T> {
 public:
  /// The nonzeros of `weight` [out_features, in_features] (copied) and `bias` (undefined: none).
  SparseLinear(const Tensor<T>& weight, const Tensor<T>& bias);
  explicit SparseLinear(const Linear<T>& dense) : SparseLinear(dense.weight, dense.bias) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string type_name() const override { return "SparseLinear"; }
  std::string extra_repr() const override;
  /// The weight as a CsrMatrix over the registered tensors (values differentiable).
  CsrMatrix<T> weight() const;
  /// The dense [out_features, in_features] weight, zeros included.
  Tensor<T> dense_weight() const { return weight().to_dense(); }

  Tensor<T> weight_values;
  Tensor<int32_t> weight_col_indices;
  Tensor<int64_t> weight_row_offsets;
  Tensor<T> bias;  // undefined without bias
  int64_t in_features, out_features;
};
SparseLinear(const Linear<float>&)->SparseLinear<float>;
SparseLinear(const Linear<double>&)->SparseLinear<double>;

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

/// Splits dim into `sizes` (one of them may be -1), as torch.nn.Unflatten.
template <FloatingElement T = float>
class Unflatten : public Module<T> {
 public:
  Unflatten(int64_t dim, std::vector<int64_t> sizes) : dim_(dim), sizes_(std::move(sizes)) {
    if (sizes_.empty()) throw ValueError("Unflatten: expected at least one size");
  }
  Tensor<T> forward(const Tensor<T>& x) override {
    if (!x.defined() || x.dim() == 0) throw ShapeError("Unflatten: expected an input with at least one dim");
    const int64_t d = dim_ < 0 ? dim_ + x.dim() : dim_;
    if (d < 0 || d >= x.dim()) {
      throw IndexError("Unflatten: dim " + std::to_string(dim_) + " is out of range for input " + x.shape().str());
    }
    std::vector<int64_t> shape(x.shape().begin(), x.shape().begin() + d);
    int64_t known = 1, unknown = 0;
    for (int64_t s : sizes_) {
      if (s == -1) {
        ++unknown;
      } else {
        known *= s;
      }
      shape.push_back(s);
    }
    const int64_t n = x.shape()[d];
    if (unknown > 1 || (unknown == 0 && known != n) || (unknown == 1 && (known <= 0 || n % known != 0))) {
      std::string sizes;
      for (int64_t s : sizes_) sizes += (sizes.empty() ? "" : ", ") + std::to_string(s);
      throw ShapeError("Unflatten: dim " + std::to_string(d) + " of input " + x.shape().str() + " (size " +
                       std::to_string(n) + ") cannot be split into (" + sizes + ")");
    }
    shape.insert(shape.end(), x.shape().begin() + d + 1, x.shape().end());
    return x.reshape(Shape(shape));
  }
  std::string type_name() const override { return "Unflatten"; }
  std::string extra_repr() const override {
    std::string s = "dim=" + std::to_string(dim_) + ", unflattened_size=(";
    for (size_t i = 0; i < sizes_.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes_[i]);
    return s + (sizes_.size() == 1 ? ",)" : ")");
  }

 private:
  int64_t dim_;
  std::vector<int64_t> sizes_;
};

extern template class Linear<float>;
extern template class Linear<double>;
extern template class SparseLinear<float>;
extern template class SparseLinear<double>;

}  // namespace ember::nn
