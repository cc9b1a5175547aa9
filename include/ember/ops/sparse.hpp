#pragma once
// Sparse matrices in compressed sparse row (CSR) form and their product with dense matrices, the
// arithmetic of nn::SparseLinear (a heavily pruned Linear that skips its zeros).
#include <cstdint>

#include "ember/core/tensor.hpp"

namespace ember {

/// A [rows, cols] matrix held by its nonzeros, row by row, as torch.sparse_csr_tensor holds one:
/// row r's entries are values[row_offsets[r] .. row_offsets[r + 1]) in the columns col_indices
/// names over the same range. `values` carries autograd, so products built on it differentiate
/// to the nonzeros (and from there to a dense tensor they were taken from, see to_csr).
template <FloatingElement T>
struct CsrMatrix {
  int64_t rows = 0, cols = 0;
  Tensor<int64_t> row_offsets;  // [rows + 1], from 0 up to nnz
  Tensor<int32_t> col_indices;  // [nnz], each in [0, cols)
  Tensor<T> values;             // [nnz]

  int64_t nnz() const noexcept { return values.defined() ? values.numel() : 0; }
  Shape shape() const { return {rows, cols}; }
  /// Throws ShapeError or IndexError naming `op` unless the arrays describe a [rows, cols]
  /// matrix: the lengths above, offsets starting at 0, never decreasing and ending at nnz, and
  /// columns in range. Every op taking a CsrMatrix checks it first.
  void check(const char* op) const;
  /// The transpose, in CSR (its values are these, reordered: differentiable).
  CsrMatrix t() const;
  /// The dense matrix (differentiable in values).
  Tensor<T> to_dense() const;
};

/// The nonzeros of a 2-D tensor (NaN counts as nonzero), column-ascending within each row
/// (torch's Tensor.to_sparse_csr()); the values are differentiable with respect to `dense`.
template <FloatingElement T>
CsrMatrix<T> to_csr(const Tensor<T>& dense);

/// a [m, k] times dense b [k, n], a dense [m, n] (torch.sparse.mm), differentiable in a.values
/// and b. Each sum runs in the order of the row's nonzeros, the same bits on every ISA.
template <FloatingElement T>
Tensor<T> sparse_mm(const CsrMatrix<T>& a, const Tensor<T>& b);

extern template struct CsrMatrix<float>;
extern template struct CsrMatrix<double>;

}  // namespace ember
