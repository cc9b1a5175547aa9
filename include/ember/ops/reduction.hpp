#pragma once
// Reductions, softmax and norms. `dims` may be negative (counted from the end); an empty dims
// list reduces over all dims.
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember {

template <FloatingElement T>
Tensor<T> sum(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
template <FloatingElement T>
Tensor<T> mean(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
template <FloatingElement T>
Tensor<T> var(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false,
              int64_t correction = 1);
template <FloatingElement T>
Tensor<T> std(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false,
              int64_t correction = 1);
template <FloatingElement T>
Tensor<T> prod(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
/// Max/min over all elements (gradient split evenly among ties, as PyTorch's amax).
template <FloatingElement T>
Tensor<T> amax(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
template <FloatingElement T>
Tensor<T> amin(const Tensor<T>& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
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
