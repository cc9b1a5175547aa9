#pragma once
// Reductions, softmax and norms. `dims` may be negative (counted from the end); an empty dims
// list reduces over all dims.
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember {

/// sum, mean, prod, and amax / amin (the gradient split evenly among ties, as PyTorch's): the op
/// table's EMBER_REDUCTION rows (include/ember/ops/op_table.def).
#define EMBER_REDUCTION(name) \
  template <FloatingElement T> \
  Tensor<T> name(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
#include "ember/ops/op_table.def"

/// Integer tensors (labels, masks): the exact sum of all elements in int64, as PyTorch sums
/// integers and bools (ValueError when it overflows), and the largest / smallest element
/// (ValueError for an empty tensor).
template <Element T>
  requires(!FloatingElement<T>)
Tensor<int64_t> sum(const Tensor<T>& x);
template <Element T>
  requires(!FloatingElement<T>)
Tensor<T> amax(const Tensor<T>& x);
template <Element T>
  requires(!FloatingElement<T>)
Tensor<T> amin(const Tensor<T>& x);
/// Whether every / some element is nonzero (a 0-d uint8 tensor, torch's bool), any element type.
template <Element T>
Tensor<uint8_t> all(const Tensor<T>& x);
template <Element T>
Tensor<uint8_t> any(const Tensor<T>& x);
/// torch.equal: the same shape and equal elements (NaN equals nothing).
template <Element T>
bool equal(const Tensor<T>& a, const Tensor<T>& b);

/// torch.topk: the k largest (largest = false: smallest) elements along dim, in descending
/// (ascending) order, with their indices; among equal values the lower index comes first, and
/// NaN counts as the largest value, as PyTorch. The values are differentiable (a gather).
template <FloatingElement T>
ValuesIndices<T> topk(const Tensor<T>& x, int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true);

/// torch.sort: the elements along dim in ascending (descending = true: descending) order, with
/// their indices. The order is stable (equal values keep their index order, torch.sort's
/// stable = true) and NaN sorts as the largest value, as PyTorch; any element type. The values
/// are differentiable (a gather). A 0-d tensor gives itself and index 0.
template <Element T>
ValuesIndices<T> sort(const Tensor<T>& x, int64_t dim = -1, bool descending = false);
/// torch.argsort: the indices of sort(x, dim, descending).
template <Element T>
Tensor<int64_t> argsort(const Tensor<T>& x, int64_t dim = -1, bool descending = false);

template <FloatingElement T>
Tensor<T> var(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false,
              int64_t correction = 1);
template <FloatingElement T>
Tensor<T> std(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false,
              int64_t correction = 1);
/// Values and indices (first occurrence) of the max/min along `dim`; gradient to the index.
template <FloatingElement T>
ValuesIndices<T> max(const Tensor<T>& x, int64_t dim, bool keepdim = false);
template <FloatingElement T>
ValuesIndices<T> min(const Tensor<T>& x, int64_t dim, bool keepdim = false);
template <FloatingElement T>
Tensor<int64_t> argmax(const Tensor<T>& x, int64_t dim, bool keepdim = false);
template <FloatingElement T>
Tensor<int64_t> argmin(const Tensor<T>& x, int64_t dim, bool keepdim = false);
template <FloatingElement T>
Tensor<T> logsumexp(const Tensor<T>& x, const std::vector<int64_t>& dims, bool keepdim = false);
/// p-norm over all elements (p = 2 by default; p = inf allowed).
template <FloatingElement T>
Tensor<T> norm(const Tensor<T>& x, double p = 2.0);
template <FloatingElement T>
Tensor<T> norm(const Tensor<T>& x, double p, const std::vector<int64_t>& dims, bool keepdim = false);

/// Numerically stable softmax / log-softmax along `dim`.
template <FloatingElement T>
Tensor<T> softmax(const Tensor<T>& x, int64_t dim);
template <FloatingElement T>
Tensor<T> log_softmax(const Tensor<T>& x, int64_t dim);

}  // namespace ember
