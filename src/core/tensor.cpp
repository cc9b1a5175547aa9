// Tensor<T>: element access, autograd plumbing, copies and views.
#include "ember/core/tensor.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <sstream>

#include "ember/autograd/record.hpp"
#include "internal.hpp"

namespace ember {

TensorImpl::TensorImpl() = default;
TensorImpl::~TensorImpl() = default;

bool TensorImpl::is_contiguous() const noexcept {
  int64_t expected = 1;
  for (int64_t d = shape.size() - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

namespace detail {
int64_t wrap_dim(int64_t dim, int64_t rank, const char* op) {
  const int64_t lo = rank == 0 ? -1 : -rank;
  const int64_t hi = rank == 0 ? 0 : rank - 1;
  if (dim < lo || dim > hi) {
    throw IndexError(cat_str(op, ": dim ", dim, " is out of range for a tensor with ", rank,
                             " dims (expected ", lo, "..", hi, ")"));
  }
  if (rank == 0) return 0;
  return dim < 0 ? dim + rank : dim;
}

}  // namespace detail

using detail::cat_str;
using detail::require_defined;
using detail::make_view;
using detail::new_tensor;
using detail::wrap_dim;

template <Element T>
Tensor<T>::Tensor(std::shared_ptr<TensorImpl> impl) : TensorBase(std::move(impl)) {
  if (impl_ && impl_->dtype != dtype_of<T>) {
    throw TypeError(cat_str("Tensor: a ", dtype_name(impl_->dtype), " tensor cannot be viewed as ",
                            dtype_name(dtype_of<T>)));
  }
}

template <Element T>
Tensor<T> Tensor<T>::from_base(const TensorBase& base) {
  return Tensor<T>(base.impl_ptr());  // the constructor refuses another element type
}

namespace {
}  // namespace

// ---- Shape and elements ---------------------------------------------------------------------

template <Element T>
int64_t Tensor<T>::size(int64_t dim) const {
  require_defined(*this, "size");
  return impl_->shape[wrap_dim(dim, this->dim(), "size")];
}

template <Element T>
int64_t Tensor<T>::stride(int64_t dim) const {
  require_defined(*this, "stride");
  return impl_->strides[wrap_dim(dim, this->dim(), "stride")];
}

template <Element T>
T* Tensor<T>::data_ptr() const noexcept {
  if (!impl_ || !impl_->storage || impl_->storage->data() == nullptr) return nullptr;
  return static_cast<T*>(impl_->storage->data()) + impl_->offset;
}

template <Element T>
T* Tensor<T>::data() const {
  require_defined(*this, "data");
  if (!is_contiguous()) {
    throw ValueError(cat_str("data: the tensor of shape ", shape(), " with strides ", strides(),
                             " is not contiguous; call contiguous() first"));
  }
  return data_ptr();
}

template <Element T>
T Tensor<T>::item() const {
  require_defined(*this, "item");
  if (numel() != 1) {
    throw ValueError(cat_str("item: expected a tensor with one element, got shape ", shape(),
                             " (", numel(), " elements)"));
  }
  return *data_ptr();
}

template <Element T>
T Tensor<T>::at(const std::vector<int64_t>& index) const {
  require_defined(*this, "at");
  if (static_cast<int64_t>(index.size()) != dim()) {
    throw IndexError(cat_str("at: ", index.size(), " indices for a tensor of shape ", shape()));
  }
  int64_t off = 0;
  for (int64_t d = 0; d < dim(); ++d) {
    int64_t i = index[d];
    int64_t n = impl_->shape[d];
    if (i < -n || i >= n) {
      throw IndexError(cat_str("at: index ", i, " is out of range for dim ", d, " of size ", n,
                               " (shape ", shape(), ")"));
    }
    if (i < 0) i += n;
    off += i * impl_->strides[d];
  }
  return data_ptr()[off];
}

template <Element T>
T Tensor<T>::at(std::initializer_list<int64_t> index) const {
  return at(std::vector<int64_t>(index));
}

template <Element T>
uint64_t Tensor<T>::version() const noexcept {
  return impl_ && impl_->storage ? impl_->storage->version() : 0;
}

// ---- Autograd ---------------------------------------------------------------------------------

template <Element T>
bool Tensor<T>::requires_grad() const noexcept {
  return autograd::requires_grad_of(*this);
}

template <Element T>
Tensor<T>& Tensor<T>::requires_grad_(bool on) {
  require_defined(*this, "requires_grad_");
  if constexpr (!FloatingElement<T>) {
    if (on) {
      throw TypeError(cat_str("requires_grad_: only float32 and float64 tensors can require "
                              "grad, this one is ", dtype_name(dtype_of<T>)));
    }
  }
  if (!on && grad_fn()) {
    throw AutogradError("requires_grad_: cannot turn off gradients of a non-leaf tensor; use "
                        "detach() instead");
  }
  autograd::autograd_meta(*impl_).requires_grad = on;
  return *this;
}

template <Element T>
Tensor<T> Tensor<T>::grad() const {
  if (!impl_ || !impl_->autograd) return Tensor<T>();
  return Tensor<T>::from_base(impl_->autograd->grad);
}

template <Element T>
void Tensor<T>::set_grad(const Tensor<T>& g) const {
  require_defined(*this, "set_grad");
  if (g.defined() && g.shape() != shape()) {
    throw ShapeError(cat_str("set_grad: gradient of shape ", g.shape(), " for a tensor of shape ",
                             shape()));
  }
  autograd::autograd_meta(*impl_).grad = g;
}

template <Element T>
bool Tensor<T>::is_leaf() const noexcept {
  return !impl_ || !impl_->autograd || !impl_->autograd->grad_fn;
}

template <Element T>
std::shared_ptr<autograd::Node> Tensor<T>::grad_fn() const noexcept {
  return impl_ && impl_->autograd ? impl_->autograd->grad_fn : nullptr;
}

template <Element T>
void Tensor<T>::register_hook(Hook hook) const {
  require_defined(*this, "register_hook");
  if (!requires_grad()) {
    throw AutogradError("register_hook: cannot register a hook on a tensor that does not require "
                        "grad");
  }
  auto erased = [hook = std::move(hook)](const TensorBase& g) -> TensorBase {
    return hook(Tensor<T>::from_base(g));
  };
  if (is_leaf()) {
    impl_->autograd->hooks.push_back(std::move(erased));
  } else {
    grad_fn()->add_pre_hook(std::move(erased));
  }
}

template <Element T>
uint64_t Tensor<T>::register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const {
  require_defined(*this, "register_post_accumulate_grad_hook");
  if (!requires_grad() || !is_leaf()) {
    throw AutogradError("register_post_accumulate_grad_hook: the tensor must be a leaf that requires grad (got " +
                        std::string(requires_grad() ? "a non-leaf" : "a tensor that does not require grad") + ")");
  }
  static std::atomic<uint64_t> next_id{1};
  const uint64_t id = next_id.fetch_add(1, std::memory_order_relaxed);
  impl_->autograd->post_accumulate_hooks.emplace_back(
      id, [hook = std::move(hook)](const TensorBase& leaf) { hook(Tensor<T>::from_base(leaf)); });
  return id;
}

template <Element T>
void Tensor<T>::remove_post_accumulate_grad_hook(uint64_t id) const {
  if (!defined() || !impl_->autograd) return;
  auto& hooks = impl_->autograd->post_accumulate_hooks;
  std::erase_if(hooks, [id](const auto& entry) { return entry.first == id; });
}

template <Element T>
Tensor<T> Tensor<T>::detach() const {
  require_defined(*this, "detach");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->offset = impl_->offset;
  impl->numel = impl_->numel;
  impl->dtype = impl_->dtype;
  impl->is_view = impl_->is_view;
  return Tensor<T>(std::move(impl));
}

template <Element T>
Tensor<T>& Tensor<T>::detach_() {
  require_defined(*this, "detach_");
  if (impl_->autograd) {
    impl_->autograd->requires_grad = false;
    if (impl_->autograd->grad_fn) {
      autograd::release_node(std::move(impl_->autograd->grad_fn));
      // Views taken before still lead to the released history (Note [Stale views]).
      if (!impl_->is_view && impl_->storage) impl_->storage->bump_history();
    }
  }
  return *this;
}

// ---- Printing ---------------------------------------------------------------------------------

namespace {

template <class T>
std::string format_value(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[64];
    double a = std::fabs(static_cast<double>(v));
    if (a != 0 && (a >= 1e8 || a < 1e-4)) {
      std::snprintf(buf, sizeof buf, "%.4e", static_cast<double>(v));
    } else {
      std::snprintf(buf, sizeof buf, "%.4f", static_cast<double>(v));
    }
    return buf;
  } else {
    return std::to_string(static_cast<int64_t>(v));
  }
}

constexpr int64_t kSummarizeThreshold = 1000;
constexpr int64_t kEdgeItems = 3;

template <class T>
void print_rec(std::ostringstream& os, const T* base, const Shape& shape, const Shape& strides,
               int64_t d, int64_t offset, bool summarize, size_t width, int indent) {
  if (d == shape.size()) {
    std::string s = format_value(base[offset]);
    os << std::string(width > s.size() ? width - s.size() : 0, ' ') << s;
    return;
  }
  os << '[';
  const int64_t n = shape[d];
  const bool cut = summarize && n > 2 * kEdgeItems;
  for (int64_t i = 0; i < n; ++i) {
    if (cut && i == kEdgeItems) {
      os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - kEdgeItems;
    }
    print_rec(os, base, shape, strides, d + 1, offset + i * strides[d], summarize, width,
              indent + 1);
    if (i + 1 < n) {
      if (d + 1 == shape.size()) {
        os << ", ";
      } else {
        os << ',' << std::string(static_cast<size_t>(shape.size() - d - 1), '\n')
           << std::string(static_cast<size_t>(indent + 1), ' ');
      }
    }
  }
  os << ']';
}

}  // namespace

template <Element T>
std::string Tensor<T>::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  const bool summarize = numel() > kSummarizeThreshold;
  size_t width = 0;
  // Width of the widest printed value, so that columns line up.
  std::vector<T> values = to_vector();
  for (size_t i = 0; i < values.size(); ++i) {
    if (summarize && i > 4096) break;
    width = std::max(width, format_value(values[i]).size());
  }
  if (numel() == 0) {
    os << "[]";
  } else {
    print_rec(os, data_ptr(), shape(), strides(), 0, 0, summarize, width, 7);
  }
  os << ", shape=" << shape().str() << ", dtype=" << dtype_name(dtype_of<T>);
  if (requires_grad()) os << (is_leaf() ? ", requires_grad=true" : ", grad_fn=" + grad_fn()->name());
  os << ')';
  return os.str();
}

template <Element T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t) {
  return os << t.str();
}

namespace detail {

void rebind(const TensorBase& target, const TensorBase& source) {
  TensorImpl& t = *target.impl();
  const TensorImpl& s = *source.impl();
  if (&t == &s) return;
  if (t.dtype != s.dtype) throw TypeError("rebind: the tensors differ in dtype");
  t.storage = s.storage;
  t.shape = s.shape;
  t.strides = s.strides;
  t.offset = s.offset;
  t.numel = s.numel;
  t.is_view = s.is_view;
  std::unique_ptr<autograd::AutogradMeta> meta;
  if (s.autograd && s.autograd->grad_fn) {
    meta = std::make_unique<autograd::AutogradMeta>();
    meta->requires_grad = true;
    meta->grad_fn = s.autograd->grad_fn;
  }
  t.autograd = std::move(meta);
}

}  // namespace detail

#define EMBER_INSTANTIATE_TENSOR(T)                                       \
  template class Tensor<T>;                                               \
  template std::ostream& operator<< <T>(std::ostream&, const Tensor<T>&);
EMBER_INSTANTIATE_TENSOR(float)
EMBER_INSTANTIATE_TENSOR(double)
EMBER_INSTANTIATE_TENSOR(int64_t)
EMBER_INSTANTIATE_TENSOR(int32_t)
EMBER_INSTANTIATE_TENSOR(uint8_t)
EMBER_INSTANTIATE_TENSOR(int8_t)
#undef EMBER_INSTANTIATE_TENSOR

}  // namespace ember
