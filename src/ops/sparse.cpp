// Sparse (CSR) matrices and their product with dense ones.
#include "ember/ops/sparse.hpp"

#include <algorithm>
#include <atomic>
#include <limits>

#include "common.hpp"

namespace ember {

using autograd::needs_grad;
using autograd::record_bilinear;
using detail::cat_str;
using detail::new_tensor;
using detail::require;

template <FloatingElement T>
void CsrMatrix<T>::check(const char* op) const {
  if (rows < 0 || cols < 0)
    throw ShapeError(cat_str(op, ": a sparse matrix of shape [", rows, ", ", cols, "]"));
  if (!row_offsets.defined() || !col_indices.defined() || !values.defined()) {
    throw ValueError(cat_str(op, ": a sparse matrix needs row_offsets, col_indices and values"));
  }
  if (row_offsets.dim() != 1 || row_offsets.numel() != rows + 1 || col_indices.dim() != 1 ||
      values.dim() != 1 || col_indices.numel() != values.numel()) {
    throw ShapeError(cat_str(op, ": a [", rows, ", ", cols, "] CSR matrix needs row_offsets [",
                             rows + 1, "] and col_indices and values of one length, got ",
                             row_offsets.shape(), ", ", col_indices.shape(), " and ",
                             values.shape()));
  }
  // One pass with no branch inside (products call this on every forward), then the offending
  // row looked up only when something is wrong. Column indices are checked where they are used.
  const Tensor<int64_t> offsets = row_offsets.contiguous();
  const int64_t* o = offsets.data_ptr();
  const int64_t nnz = values.numel();
  bool ascending = true;
  for (int64_t r = 0; r < rows; ++r) ascending &= o[r + 1] >= o[r];
  if (o[0] != 0 || o[rows] != nnz) {
    throw IndexError(cat_str(op, ": row_offsets must run from 0 to nnz = ", nnz, ", got ", o[0],
                             " .. ", o[rows]));
  }
  if (!ascending) {
    for (int64_t r = 0; r < rows; ++r) {
      if (o[r + 1] < o[r]) {
        throw IndexError(
            cat_str(op, ": row_offsets decrease at row ", r, " (", o[r], " then ", o[r + 1], ")"));
      }
    }
  }
}

namespace {

[[noreturn]] void bad_column(const char* op, const Tensor<int32_t>& col_indices, int64_t cols) {
  const std::vector<int32_t> c = col_indices.to_vector();
  for (size_t j = 0; j < c.size(); ++j) {
    if (c[j] < 0 || c[j] >= cols) {
      throw IndexError(
          cat_str(op, ": column index ", c[j], " at nonzero ", j, " is outside [0, ", cols, ")"));
    }
  }
  throw IndexError(cat_str(op, ": a column index is outside [0, ", cols, ")"));
}

void check_columns(const char* op, const Tensor<int32_t>& col_indices, int64_t cols) {
  const Tensor<int32_t> c = col_indices.contiguous();
  const int32_t* p = c.data_ptr();
  bool bad = false;
  for (int64_t j = 0; j < c.numel(); ++j) bad |= p[j] < 0 || p[j] >= cols;
  if (bad) bad_column(op, col_indices, cols);
}

// The row of each nonzero, from the offsets.
Tensor<int64_t> row_of_each(const Tensor<int64_t>& row_offsets, int64_t nnz) {
  const std::vector<int64_t> offsets = row_offsets.to_vector();
  std::vector<int64_t> rows(static_cast<size_t>(nnz));
  for (size_t r = 0; r + 1 < offsets.size(); ++r) {
    std::fill(rows.begin() + offsets[r], rows.begin() + offsets[r + 1], static_cast<int64_t>(r));
  }
  return tensor<int64_t>(std::move(rows), {nnz});
}

}  // namespace

template <FloatingElement T>
CsrMatrix<T> CsrMatrix<T>::t() const {
  check("CsrMatrix::t");
  check_columns("CsrMatrix::t", col_indices, cols);
  const int64_t nnz = this->nnz();
  const std::vector<int64_t> offsets = row_offsets.to_vector();
  const std::vector<int32_t> columns = col_indices.to_vector();
  // A counting sort by column, stable, so each new row keeps the old rows' ascending order.
  std::vector<int64_t> t_offsets(static_cast<size_t>(cols) + 1, 0);
  for (int32_t c : columns) ++t_offsets[static_cast<size_t>(c) + 1];
  for (size_t c = 0; c < static_cast<size_t>(cols); ++c) t_offsets[c + 1] += t_offsets[c];
  std::vector<int64_t> next(t_offsets.begin(), t_offsets.end() - 1),
      order(static_cast<size_t>(nnz));
  std::vector<int32_t> t_columns(static_cast<size_t>(nnz));
  for (size_t r = 0; r + 1 < offsets.size(); ++r) {
    for (int64_t j = offsets[r]; j < offsets[r + 1]; ++j) {
      const int64_t at = next[static_cast<size_t>(columns[static_cast<size_t>(j)])]++;
      order[static_cast<size_t>(at)] = j;
      t_columns[static_cast<size_t>(at)] = static_cast<int32_t>(r);
    }
  }
  CsrMatrix out;
  out.rows = cols;
  out.cols = rows;
  out.row_offsets = tensor<int64_t>(std::move(t_offsets), {cols + 1});
  out.col_indices = tensor<int32_t>(std::move(t_columns), {nnz});
  out.values = values.index_select(0, tensor<int64_t>(std::move(order), {nnz}));
  return out;
}

template <FloatingElement T>
Tensor<T> CsrMatrix<T>::to_dense() const {
  check("CsrMatrix::to_dense");
  check_columns("CsrMatrix::to_dense", col_indices, cols);
  const std::vector<int64_t> row = row_of_each(row_offsets, nnz()).to_vector();
  const std::vector<int32_t> column = col_indices.to_vector();
  std::vector<int64_t> flat(row.size());
  for (size_t j = 0; j < flat.size(); ++j) flat[j] = row[j] * cols + column[j];
  return scatter_add(zeros<T>({rows * cols}), 0, tensor<int64_t>(std::move(flat), {nnz()}), values)
      .reshape({rows, cols});
}

template <FloatingElement T>
CsrMatrix<T> to_csr(const Tensor<T>& dense) {
  require(dense, "to_csr");
  if (dense.dim() != 2)
    throw ShapeError(cat_str("to_csr: expected a 2-D tensor, got ", dense.shape()));
  const int64_t rows = dense.shape()[0], cols = dense.shape()[1];
  if (cols > std::numeric_limits<int32_t>::max()) {
    throw ShapeError(
        cat_str("to_csr: ", dense.shape(), " has more columns than 32-bit column indices reach"));
  }
  const Tensor<T> c = dense.detach().contiguous();
  const T* p = c.data_ptr();
  std::vector<int64_t> offsets{0}, flat;
  std::vector<int32_t> columns;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) {
      if (p[r * cols + k] != T(0) || p[r * cols + k] != p[r * cols + k]) {
        flat.push_back(r * cols + k);
        columns.push_back(static_cast<int32_t>(k));
      }
    }
    offsets.push_back(static_cast<int64_t>(flat.size()));
  }
  const int64_t nnz = static_cast<int64_t>(flat.size());
  CsrMatrix<T> out;
  out.rows = rows;
  out.cols = cols;
  out.row_offsets = tensor<int64_t>(std::move(offsets), {rows + 1});
  out.col_indices = tensor<int32_t>(std::move(columns), {nnz});
  out.values =
      dense.reshape({rows * cols}).index_select(0, tensor<int64_t>(std::move(flat), {nnz}));
  return out;
}

template <FloatingElement T>
Tensor<T> sparse_mm(const CsrMatrix<T>& a, const Tensor<T>& b) {
  a.check("sparse_mm");
  require(b, "sparse_mm");
  if (b.dim() != 2 || b.shape()[0] != a.cols) {
    throw ShapeError(cat_str("sparse_mm: a sparse ", a.shape(), " times ", b.shape(),
                             ": expected a 2-D dense [", a.cols, ", n]"));
  }
  const int64_t m = a.rows, n = b.shape()[1];
  Tensor<T> out = new_tensor<T>({m, n}, "sparse_mm");
  if (m > 0 && n > 0) {
    const Tensor<T> bc = b.detach().contiguous(), values = a.values.detach().contiguous();
    const Tensor<int64_t> offsets = a.row_offsets.contiguous();
    const Tensor<int32_t> cols = a.col_indices.contiguous();
    const int64_t* po = offsets.data_ptr();
    const int32_t* pc = cols.data_ptr();
    const T* pv = values.data_ptr();
    const T* pb = bc.data_ptr();
    T* pout = out.data_ptr();
    const auto& kern = backend::kernels<T>();
    // Rows per task for about 2^16 multiply-adds each (at least one row).
    const int64_t per_row = std::max<int64_t>(1, (a.nnz() * n) / m);
    std::atomic<bool> columns_in_range{true};
    detail::parallel_for(0, m, std::max<int64_t>(1, (int64_t(1) << 16) / per_row),
                         [&](int64_t begin, int64_t end) {
                           if (!kern.csr_mm(end - begin, n, a.cols, po + begin, pc, pv, pb, n,
                                            pout + begin * n, n)) {
                             columns_in_range.store(false, std::memory_order_relaxed);
                           }
                         });
    if (!columns_in_range.load()) bad_column("sparse_mm", a.col_indices, a.cols);
  }
  if (needs_grad(a.values, b)) {
    record_bilinear(
        out, "sparse_mm", a.values, b,
        [offsets = a.row_offsets, cols = a.col_indices](const Tensor<T>& g, const Tensor<T>& b) {
          // d/d values[j] = sum_i g[row(j)][i] * b[col(j)][i]
          const int64_t nnz = cols.numel();
          return (g.index_select(0, row_of_each(offsets, nnz)) *
                  b.index_select(0, cols.template to<int64_t>()))
              .sum(1);
        },
        [rows = a.rows, width = a.cols, offsets = a.row_offsets, cols = a.col_indices](
            const Tensor<T>& g, const Tensor<T>& values) {
          return sparse_mm(CsrMatrix<T>{rows, width, offsets, cols, values}.t(), g);
        });
  }
  return out;
}

template struct CsrMatrix<float>;
template struct CsrMatrix<double>;
template CsrMatrix<float> to_csr(const Tensor<float>&);
template CsrMatrix<double> to_csr(const Tensor<double>&);
template Tensor<float> sparse_mm(const CsrMatrix<float>&, const Tensor<float>&);
template Tensor<double> sparse_mm(const CsrMatrix<double>&, const Tensor<double>&);

}  // namespace ember
