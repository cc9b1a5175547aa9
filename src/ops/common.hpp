#pragma once
// Internal helpers shared by the op implementations: output allocation, views, dim wrapping,
// broadcasting and the strided loop that hands 1-D runs to the backend.
#include <array>
#include <cstdio>
#include <limits>
#include <utility>
#include <string>
#include <vector>

#include "ember/autograd/record.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/reduction.hpp"
#include "ember/ops/shape_ops.hpp"
#include "../backend/scalar_ops.hpp"
#include "../core/internal.hpp"

namespace ember::detail {

/// Elements per parallel chunk for cheap elementwise work.
inline constexpr int64_t kElementwiseGrain = 32768;

/// Throws ValueError naming `op` when an input is an undefined tensor.
inline void require(const TensorBase& t, const char* op) {
  if (!t.defined()) throw ValueError(std::string(op) + ": an input tensor is undefined");
}

/// Maps a possibly negative dim into [0, rank); throws IndexError naming the op.
int64_t wrap_dim(int64_t dim, int64_t rank, const char* op);
/// Wraps and de-duplicates a dims list (empty = all dims); returns a sorted list.
std::vector<int64_t> wrap_dims(const std::vector<int64_t>& dims, int64_t rank, const char* op);

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
/// Strides that read `t` as if it had shape `out` (stride 0 on broadcast dims). `out` must be a
/// broadcast of t's shape.
Shape broadcast_strides(const TensorBase& t, const Shape& out);

/// Loop structure over `shape` for N operands with their element strides, with size-1 dims
/// dropped and mergeable neighbouring dims coalesced. The innermost dim is the "run".
template <size_t N>
struct StridedLoop {
  int64_t rank = 0;
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];
  int64_t numel = 1;

  StridedLoop(const Shape& shape, const std::array<const Shape*, N>& st) {
    for (int64_t d = 0; d < shape.size(); ++d) {
      numel *= shape[d];
      if (shape[d] == 1) continue;
      if (rank > 0) {
        bool mergeable = true;
        for (size_t k = 0; k < N; ++k)
          if (strides[k][rank - 1] != (*st[k])[d] * shape[d]) mergeable = false;
        if (mergeable) {
          sizes[rank - 1] *= shape[d];
          for (size_t k = 0; k < N; ++k) strides[k][rank - 1] = (*st[k])[d];
          continue;
        }
      }
      sizes[rank] = shape[d];
      for (size_t k = 0; k < N; ++k) strides[k][rank] = (*st[k])[d];
      ++rank;
    }
  }

  int64_t inner_size() const { return rank == 0 ? 1 : sizes[rank - 1]; }

  /// Calls f(n, offsets, inner_strides) over every run on the calling thread.
  template <class F>
  void run_serial(F&& f) const {
    run(std::forward<F>(f), std::numeric_limits<int64_t>::max());
  }

  /// Calls f(n, offsets, inner_strides) over every run, in parallel chunks when large.
  template <class F>
  void run(F&& f, int64_t grain = kElementwiseGrain) const {
    if (numel == 0) return;
    std::array<int64_t, N> inner{};
    for (size_t k = 0; k < N; ++k) inner[k] = rank == 0 ? 0 : strides[k][rank - 1];
    const int64_t n_inner = inner_size();
    const int64_t n_outer = numel / n_inner;
    if (n_outer == 1) {
      // One long run: split it into pieces.
      detail::parallel_for(0, n_inner, grain, [&](int64_t b, int64_t e) {
        std::array<int64_t, N> off{};
        for (size_t k = 0; k < N; ++k) off[k] = b * inner[k];
        f(e - b, off, inner);
      });
      return;
    }
    const int64_t outer_grain = std::max<int64_t>(1, grain / std::max<int64_t>(n_inner, 1));
    detail::parallel_for(0, n_outer, outer_grain, [&](int64_t b, int64_t e) {
      const int64_t outer_rank = rank - 1;
      int64_t idx[kMaxDims];
      std::array<int64_t, N> off{};
      int64_t rem = b;
      for (int64_t d = outer_rank - 1; d >= 0; --d) {
        idx[d] = rem % sizes[d];
        rem /= sizes[d];
        for (size_t k = 0; k < N; ++k) off[k] += idx[d] * strides[k][d];
      }
      for (int64_t i = b; i < e; ++i) {
        f(n_inner, off, inner);
        for (int64_t d = outer_rank - 1; d >= 0; --d) {  // odometer step
          for (size_t k = 0; k < N; ++k) off[k] += strides[k][d];
          if (++idx[d] < sizes[d]) break;
          for (size_t k = 0; k < N; ++k) off[k] -= sizes[d] * strides[k][d];
          idx[d] = 0;
        }
      }
    });
  }
};

template <class T>
inline T backend_identity(backend::Reduce op) {
  return backend::scalar::reduce_identity<T>(op);
}
template <class T>
inline T backend_merge(backend::Reduce op, T a, T b) {
  return backend::scalar::reduce_merge(op, a, b);
}

/// Copies any view of `src` into the contiguous buffer `dst` (same shape).
template <Element T>
void copy_into_contiguous(const Tensor<T>& src, T* dst);

/// Writes `src` (broadcast to dst's shape) into the view `dst`.
template <Element T>
void copy_strided(const Tensor<T>& src, const Tensor<T>& dst);

/// Gradient of x.slice(dim, start, ..., step) for an input of `in_shape`: zeros with `g`
/// written at the sliced positions (differentiable in g).
template <FloatingElement T>
Tensor<T> slice_backward(const Tensor<T>& g, const Shape& in_shape, int64_t dim, int64_t start,
                         int64_t step);

/// Reduces `x` over `dims` (wrapped, sorted) without autograd.
template <FloatingElement T>
Tensor<T> reduce_raw(const Tensor<T>& x, backend::Reduce op, const std::vector<int64_t>& dims,
                     bool keepdim);

/// Shape with `dims` (sorted) removed, or set to 1 when keepdim.
Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim);

/// `g` (with reduced dims removed) reshaped so that it broadcasts against the input again.
template <FloatingElement T>
Tensor<T> unsqueeze_reduced(const Tensor<T>& g, const Shape& in_shape,
                            const std::vector<int64_t>& dims, bool keepdim);

}  // namespace ember::detail

namespace ember {
/// ReLU's gradient: g where the ReLU's result r is positive, in one pass; differentiable in g.
template <FloatingElement T>
Tensor<T> relu_backward(const Tensor<T>& g, const Tensor<T>& r);
}  // namespace ember
