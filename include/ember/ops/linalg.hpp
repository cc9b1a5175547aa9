#pragma once
// Matrix products, and cdist (distances between rows, one product for the Euclidean ones).
#include "ember/core/tensor.hpp"

namespace ember {

/// torch.matmul: 1-D x 1-D is a dot product; 2-D x 2-D a matrix product; a 1-D operand is
/// promoted to a matrix and the added dim removed afterwards; batch dims broadcast.
template <FloatingElement T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b);
/// [n, k] x [k, m] only.
template <FloatingElement T>
Tensor<T> mm(const Tensor<T>& a, const Tensor<T>& b);
/// torch.addmm: beta * input + alpha * (mat1 x mat2) for mat1 [n, k] and mat2 [k, m], input
/// broadcast to [n, m] (a bias [m], say). With beta = 0 the input is not read, as PyTorch.
template <FloatingElement T>
Tensor<T> addmm(const Tensor<T>& input, const Tensor<T>& mat1, const Tensor<T>& mat2, double beta = 1.0,
                double alpha = 1.0);
/// [b, n, k] x [b, k, m] only.
template <FloatingElement T>
Tensor<T> bmm(const Tensor<T>& a, const Tensor<T>& b);
/// [n] x [m] -> [n, m].
template <FloatingElement T>
Tensor<T> outer(const Tensor<T>& a, const Tensor<T>& b);
/// Dot product of two 1-D tensors.
template <FloatingElement T>
Tensor<T> dot(const Tensor<T>& a, const Tensor<T>& b);

/// How cdist computes Euclidean distances (torch.cdist's compute_mode): through one matrix
/// product, sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, 0)), faster for many rows but cancelling for
/// nearby points, or from the differences.
enum class CdistMode {
  MmIfNecessary,  // the product when p = 2 and either side has more than 25 rows (PyTorch's default)
  AlwaysMm,       // the product whenever p = 2
  NeverMm,        // the differences
};

/// torch.cdist: the p-norm distances between the rows of x1 [..., P, M] and x2 [..., R, M], as
/// [..., P, R] (batch dims broadcast). p >= 0: 0 counts the differing coordinates, infinity is
/// the largest difference. Gradients as PyTorch's: 0 where a distance is 0; for p = infinity each
/// coordinate at the largest difference gets the whole gradient.
template <FloatingElement T>
Tensor<T> cdist(const Tensor<T>& x1, const Tensor<T>& x2, double p = 2.0,
                CdistMode mode = CdistMode::MmIfNecessary);

}  // namespace ember
