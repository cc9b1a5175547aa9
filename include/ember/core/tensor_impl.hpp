#pragma once
// TensorImpl: the state behind a tensor handle. Views share `storage` and differ in
// shape/strides/offset. `autograd` is allocated only for tensors that take part in autograd.
#include <memory>

#include "ember/core/dtype.hpp"
#include "ember/core/shape.hpp"
#include "ember/core/storage.hpp"

namespace ember {

namespace autograd {
struct AutogradMeta;
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;  // in elements
  int64_t numel = 0;
  DType dtype = DType::Float32;
  bool is_view = false;  // shares storage with the tensor it was made from
  std::unique_ptr<autograd::AutogradMeta> autograd;

  TensorImpl();
  ~TensorImpl();
  bool is_contiguous() const noexcept;
};

/// The element-type-erased handle every Tensor<T> derives from; autograd passes gradients as this.
class TensorBase {
 public:
  TensorBase() = default;
  explicit TensorBase(std::shared_ptr<TensorImpl> impl) noexcept : impl_(std::move(impl)) {}

  bool defined() const noexcept { return impl_ != nullptr; }
  DType dtype() const noexcept { return impl_->dtype; }
  const Shape& shape() const noexcept { return impl_->shape; }
  const Shape& strides() const noexcept { return impl_->strides; }
  int64_t numel() const noexcept { return impl_->numel; }
  int64_t dim() const noexcept { return impl_->shape.size(); }
  int64_t storage_offset() const noexcept { return impl_->offset; }
  bool is_contiguous() const noexcept { return impl_->is_contiguous(); }

  TensorImpl* impl() const noexcept { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const noexcept { return impl_; }
  /// Whether two handles are the same tensor (not equal values).
  bool is_same(const TensorBase& o) const noexcept { return impl_ == o.impl_; }

 protected:
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace ember
