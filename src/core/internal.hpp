#pragma once
// Internal helpers of the tensor handle, shared with the layers above: allocation, views, dim
// wrapping and error messages.
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>

#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"

namespace ember::detail {

/// Throws ValueError naming `op` when the tensor it is called on is undefined.
inline void require_defined(const TensorBase& t, const char* op) {
  if (!t.defined()) throw ValueError(std::string(op) + ": the tensor is undefined");
}

/// Throws ValueError naming `op` when `t` is to be written in place but several of its elements
/// share memory (a dim of size > 1 with stride 0, as expand makes): the result would depend on
/// the order of the writes. PyTorch refuses these too.
inline void require_no_internal_overlap(const TensorBase& t, const char* op) {
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.shape()[d] > 1 && t.strides()[d] == 0) {
      throw ValueError(std::string(op) + ": more than one element of the written-to tensor (shape " +
                       t.shape().str() + ", strides " + t.strides().str() +
                       ") refers to a single memory location; clone() it first");
    }
  }
}

/// A fresh contiguous tensor of `shape` (uninitialised).
template <Element T>
Tensor<T> new_tensor(const Shape& shape, const char* op = "empty") {
  auto impl = std::make_shared<TensorImpl>();
  const int64_t nbytes = checked_nbytes(shape, sizeof(T), op);
  impl->numel = nbytes / static_cast<int64_t>(sizeof(T));
  impl->storage = Storage::allocate(static_cast<size_t>(nbytes));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype_of<T>;
  return Tensor<T>(std::move(impl));
}

/// Working memory for an op's kernels (column matrices, partial sums), uninitialised, from the
/// caching allocator of Note [Memory]: a std::vector zeroed each buffer before the kernels
/// overwrote it, and asked the system allocator for it on every call.
template <class T>
class Scratch {
 public:
  explicit Scratch(int64_t n) : storage_(Storage::allocate(static_cast<size_t>(n) * sizeof(T))) {}
  T* data() const noexcept { return static_cast<T*>(storage_->data()); }

 private:
  std::shared_ptr<Storage> storage_;
};

/// Makes `target` (every handle to it) the tensor `source` is: its storage, geometry and autograd
/// history (a non-leaf on source's node, or no history). For reparametrizations whose owners keep
/// the handle: ember::prune makes a module's `weight` member weight_orig * weight_mask before each
/// forward. Both must have one dtype.
void rebind(const TensorBase& target, const TensorBase& source);

/// A view of `src`'s storage (no autograd wiring; callers record it).
template <Element T>
Tensor<T> make_view(const Tensor<T>& src, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = src.impl()->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->numel = shape.numel();
  impl->dtype = dtype_of<T>;
  impl->is_view = true;
  return Tensor<T>(std::move(impl));
}

/// `fresh` (a new contiguous tensor nobody else refers to) under another shape of the same element
/// count, as a tensor of its own rather than a view.
template <Element T>
Tensor<T> adopt_as(const Tensor<T>& fresh, const Shape& shape) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = fresh.impl()->storage;
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->numel = fresh.numel();
  impl->dtype = dtype_of<T>;
  return Tensor<T>(std::move(impl));
}


inline std::string to_piece(const std::string& s) { return s; }
inline std::string to_piece(const char* s) { return s; }
inline std::string to_piece(const Shape& s) { return s.str(); }
template <class N>
  requires std::is_arithmetic_v<N>
std::string to_piece(N n) {
  if constexpr (std::is_floating_point_v<N>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(n));
    return buf;
  } else {
    return std::to_string(n);
  }
}

/// Concatenates strings, shapes and numbers into an error message.
template <class... Args>
std::string cat_str(const Args&... args) {
  std::string s;
  ((s += to_piece(args)), ...);
  return s;
}

}  // namespace ember::detail
