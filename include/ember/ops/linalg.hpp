#pragma once
// Matrix products.
#include "ember/core/tensor.hpp"

namespace ember {

/// torch.matmul: 1-D x 1-D is a dot product; 2-D x 2-D a matrix product; a 1-D operand is
/// promoted to a matrix and the added dim removed afterwards; batch dims broadcast.
template <FloatingElement T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b);
/// [n, k] x [k, m] only.
template <FloatingElement T>
Tensor<T> mm(const Tensor<T>& a, const Tensor<T>& b);
/// [b, n, k] x [b, k, m] only.
template <FloatingElement T>
Tensor<T> bmm(const Tensor<T>& a, const Tensor<T>& b);
/// [n] x [m] -> [n, m].
template <FloatingElement T>
Tensor<T> outer(const Tensor<T>& a, const Tensor<T>& b);
/// Dot product of two 1-D tensors.
template <FloatingElement T>
Tensor<T> dot(const Tensor<T>& a, const Tensor<T>& b);

}  // namespace ember
