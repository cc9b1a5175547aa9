// Tensor<T>: element access, autograd plumbing, copies and views.
#include "ember/core/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <sstream>

#include "../autograd/engine.hpp"
#include "../ops/common.hpp"

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

using detail::cat_str;
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
  return Tensor<T>(base.impl_ptr());
}

namespace {
std::string format_value_any(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void require_defined(const TensorBase& t, const char* op) {
  if (!t.defined()) throw ValueError(std::string(op) + ": the tensor is undefined");
}
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
std::vector<T> Tensor<T>::to_vector() const {
  require_defined(*this, "to_vector");
  std::vector<T> out(static_cast<size_t>(numel()));
  if (!out.empty()) detail::copy_into_contiguous(*this, out.data());
  return out;
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
void Tensor<T>::backward(const Tensor<T>& gradient, bool retain_graph, bool create_graph) const {
  require_defined(*this, "backward");
  if constexpr (!FloatingElement<T>) {
    throw TypeError(cat_str("backward: a ", dtype_name(dtype_of<T>), " tensor has no gradient"));
  } else {
    const TensorBase root[1] = {*this}, root_grad[1] = {gradient};
    autograd::run_backward(root, root_grad, retain_graph || create_graph, create_graph, nullptr, nullptr);
  }
}

template <Element T>
void Tensor<T>::retain_grad() const {
  require_defined(*this, "retain_grad");
  if (!requires_grad()) {
    throw AutogradError("retain_grad: the tensor does not require grad");
  }
  if constexpr (!FloatingElement<T>) return;
  if (is_leaf()) return;  // leaves keep their grad anyway
  auto& meta = *impl_->autograd;
  if (meta.retains_grad) return;
  meta.retains_grad = true;
  std::weak_ptr<TensorImpl> weak = impl_;
  grad_fn()->add_pre_hook([weak](const TensorBase& g) -> TensorBase {
    if (auto impl = weak.lock()) {
      auto& m = *impl->autograd;
      if constexpr (FloatingElement<T>) {
        if (!m.grad.defined()) {
          m.grad = Tensor<T>::from_base(g).detach().clone();
        } else {
          m.grad = Tensor<T>::from_base(m.grad) + Tensor<T>::from_base(g).detach();
        }
      }
    }
    return TensorBase();
  });
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
    if (impl_->autograd->grad_fn) autograd::release_node(std::move(impl_->autograd->grad_fn));
  }
  return *this;
}

// ---- Copies and conversion --------------------------------------------------------------------

template <Element T>
Tensor<T> Tensor<T>::clone() const {
  require_defined(*this, "clone");
  Tensor<T> out = new_tensor<T>(shape(), "clone");
  if (numel() > 0) detail::copy_into_contiguous(*this, out.data_ptr());
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      autograd::record(out, "clone", {this}, [](const Tensor<T>& g) { return g; });
    }
  }
  return out;
}

template <Element T>
Tensor<T> Tensor<T>::contiguous() const {
  require_defined(*this, "contiguous");
  if (is_contiguous()) return *this;
  return clone();
}

template <Element T>
template <Element U>
Tensor<U> Tensor<T>::to() const {
  require_defined(*this, "to");
  if constexpr (std::is_same_v<T, U>) {
    return *this;
  } else {
    Tensor<U> out = new_tensor<U>(shape(), "to");
    std::vector<T> src = to_vector();
    U* dst = out.data_ptr();
    for (size_t i = 0; i < src.size(); ++i) {
      if constexpr (std::is_floating_point_v<T> && std::is_integral_v<U>) {
        // Out-of-range float-to-integer conversion is undefined behaviour in C++: refuse it.
        const double v = static_cast<double>(src[i]);
        if (!(v > static_cast<double>(std::numeric_limits<U>::min()) - 1.0 &&
              v < static_cast<double>(std::numeric_limits<U>::max()) + 1.0)) {
          throw ValueError(cat_str("to: element ", i, " (", format_value_any(v), ") does not fit ",
                                   dtype_name(dtype_of<U>)));
        }
      }
      dst[i] = static_cast<U>(src[i]);
    }
    if constexpr (FloatingElement<T> && FloatingElement<U>) {
      if (autograd::needs_grad(*this)) {
        autograd::record(out, "to", {this},
                         [](const Tensor<U>& g) { return TensorBase(g.template to<T>()); });
      }
    }
    return out;
  }
}

// ---- Views ------------------------------------------------------------------------------------

namespace {

// Infers a -1 entry and checks the element count.
Shape infer_shape(const Shape& requested, int64_t numel, const Shape& from, const char* op) {
  Shape s = requested;
  int64_t infer = -1;
  int64_t known = 1;
  for (int64_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) throw ShapeError(cat_str(op, ": only one dim can be -1, got ", requested));
      infer = i;
    } else if (s[i] < 0) {
      throw ShapeError(cat_str(op, ": invalid size ", s[i], " at dim ", i, " in ", requested));
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0) {
      throw ShapeError(cat_str(op, ": shape ", requested, " is invalid for input of shape ", from,
                               " (", numel, " elements)"));
    }
    s[infer] = numel / known;
  }
  if (checked_numel(s, op) != numel) {
    throw ShapeError(cat_str(op, ": shape ", requested, " is invalid for input of shape ", from,
                             " (", numel, " elements)"));
  }
  return s;
}

// Strides for viewing (shape, strides) as `target` without a copy, or false if impossible.
bool view_strides(const Shape& shape, const Shape& strides, const Shape& target, Shape& out) {
  out = Shape::filled(target.size(), 1);
  int64_t numel = shape.numel();
  if (numel <= 1) {
    out = contiguous_strides(target);
    return true;
  }
  // Walk groups of old dims that are contiguous among themselves and match them with new dims.
  int64_t view_d = target.size() - 1;
  int64_t chunk_base_stride = strides.size() ? strides.back() : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = shape.size() - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || target[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= target[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

template <Element T>
Tensor<T> Tensor<T>::view(const Shape& requested) const {
  require_defined(*this, "view");
  Shape target = infer_shape(requested, numel(), shape(), "view");
  Shape st;
  if (!view_strides(shape(), strides(), target, st)) {
    throw ShapeError(cat_str("view: a tensor of shape ", shape(), " with strides ", strides(),
                             " cannot be viewed as ", target, "; use reshape() (it copies)"));
  }
  Tensor<T> out = make_view(*this, target, st, storage_offset());
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      autograd::record(out, "view", {this},
                       [in_shape = shape()](const Tensor<T>& g) { return g.reshape(in_shape); });
    }
  }
  return out;
}

template <Element T>
Tensor<T> Tensor<T>::reshape(const Shape& requested) const {
  require_defined(*this, "reshape");
  Shape target = infer_shape(requested, numel(), shape(), "reshape");
  Shape st;
  if (view_strides(shape(), strides(), target, st)) return view(target);
  return clone().view(target);
}

template <Element T>
Tensor<T> Tensor<T>::flatten(int64_t start_dim, int64_t end_dim) const {
  require_defined(*this, "flatten");
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten");
  int64_t e = wrap_dim(end_dim, dim(), "flatten");
  if (s > e) {
    throw IndexError(cat_str("flatten: start_dim ", start_dim, " comes after end_dim ", end_dim,
                             " for shape ", shape()));
  }
  Shape target;
  for (int64_t d = 0; d < s; ++d) target.push_back(shape()[d]);
  int64_t p = 1;
  for (int64_t d = s; d <= e; ++d) p *= shape()[d];
  target.push_back(p);
  for (int64_t d = e + 1; d < dim(); ++d) target.push_back(shape()[d]);
  return reshape(target);
}

template <Element T>
Tensor<T> Tensor<T>::squeeze() const {
  require_defined(*this, "squeeze");
  Shape target;
  for (int64_t d : shape())
    if (d != 1) target.push_back(d);
  return reshape(target);
}

template <Element T>
Tensor<T> Tensor<T>::squeeze(int64_t dim) const {
  require_defined(*this, "squeeze");
  if (this->dim() == 0) return *this;
  int64_t d = wrap_dim(dim, this->dim(), "squeeze");
  if (shape()[d] != 1) return *this;
  Shape target = shape();
  target.erase(d);
  return reshape(target);
}

template <Element T>
Tensor<T> Tensor<T>::unsqueeze(int64_t dim) const {
  require_defined(*this, "unsqueeze");
  int64_t d = wrap_dim(dim, this->dim() + 1, "unsqueeze");
  Shape target = shape();
  Shape st = strides();
  int64_t inner = d < this->dim() ? shape()[d] * strides()[d] : 1;
  target.insert(d, 1);
  st.insert(d, inner);
  Tensor<T> out = make_view(*this, target, st, storage_offset());
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      autograd::record(out, "unsqueeze", {this},
                       [d](const Tensor<T>& g) { return g.squeeze(d); });
    }
  }
  return out;
}

template <Element T>
Tensor<T> Tensor<T>::permute(const Shape& dims) const {
  require_defined(*this, "permute");
  if (dims.size() != dim()) {
    throw ShapeError(cat_str("permute: ", dims.size(), " dims given for a tensor of shape ",
                             shape()));
  }
  Shape perm, new_shape, new_strides;
  std::vector<bool> used(static_cast<size_t>(dim()), false);
  for (int64_t i = 0; i < dim(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    if (used[static_cast<size_t>(d)]) {
      throw ShapeError(cat_str("permute: dim ", d, " repeats in ", dims));
    }
    used[static_cast<size_t>(d)] = true;
    perm.push_back(d);
    new_shape.push_back(shape()[d]);
    new_strides.push_back(strides()[d]);
  }
  Tensor<T> out = make_view(*this, new_shape, new_strides, storage_offset());
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      Shape inverse = perm;
      for (int64_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = i;
      autograd::record(out, "permute", {this},
                       [inverse](const Tensor<T>& g) { return g.permute(inverse); });
    }
  }
  return out;
}

template <Element T>
Tensor<T> Tensor<T>::transpose(int64_t dim0, int64_t dim1) const {
  require_defined(*this, "transpose");
  if (dim() == 0) return *this;
  int64_t a = wrap_dim(dim0, dim(), "transpose");
  int64_t b = wrap_dim(dim1, dim(), "transpose");
  Shape perm;
  for (int64_t i = 0; i < dim(); ++i) perm.push_back(i);
  std::swap(perm[a], perm[b]);
  return permute(perm);
}

template <Element T>
Tensor<T> Tensor<T>::t() const {
  require_defined(*this, "t");
  if (dim() > 2) {
    throw ShapeError(cat_str("t: expected a tensor with at most 2 dims, got shape ", shape(),
                             "; use transpose(dim0, dim1)"));
  }
  return dim() < 2 ? *this : transpose(0, 1);
}

template <Element T>
Tensor<T> Tensor<T>::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  require_defined(*this, "slice");
  int64_t d = wrap_dim(dim, this->dim(), "slice");
  if (step <= 0) throw ValueError(cat_str("slice: step must be positive, got ", step));
  const int64_t n = shape()[d];
  auto clampi = [n](int64_t v) {
    if (v < 0) v += n;
    return std::clamp<int64_t>(v, 0, n);
  };
  start = clampi(start);
  end = std::max(clampi(end), start);
  const int64_t len = (end - start + step - 1) / step;
  Shape new_shape = shape();
  Shape new_strides = strides();
  new_shape[d] = len;
  new_strides[d] = strides()[d] * step;
  Tensor<T> out = make_view(*this, new_shape, new_strides, storage_offset() + start * strides()[d]);
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      autograd::record(out, "slice", {this},
                       [in_shape = shape(), d, start, step](const Tensor<T>& g) {
                         return detail::slice_backward(g, in_shape, d, start, step);
                       });
    }
  }
  return out;
}

template <Element T>
Tensor<T> Tensor<T>::narrow(int64_t dim, int64_t start, int64_t length) const {
  require_defined(*this, "narrow");
  int64_t d = wrap_dim(dim, this->dim(), "narrow");
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start + length > n) {
    throw IndexError(cat_str("narrow: start ", start, " and length ", length,
                             " do not fit dim ", d, " of size ", n, " (shape ", shape(), ")"));
  }
  return slice(d, start, start + length);
}

template <Element T>
Tensor<T> Tensor<T>::select(int64_t dim, int64_t index) const {
  require_defined(*this, "select");
  int64_t d = wrap_dim(dim, this->dim(), "select");
  const int64_t n = shape()[d];
  if (index < -n || index >= n) {
    throw IndexError(cat_str("select: index ", index, " is out of range for dim ", d, " of size ",
                             n, " (shape ", shape(), ")"));
  }
  if (index < 0) index += n;
  return slice(d, index, index + 1).squeeze(d);
}

template <Element T>
Tensor<T> Tensor<T>::expand(const Shape& requested) const {
  require_defined(*this, "expand");
  if (requested.size() < dim()) {
    throw ShapeError(cat_str("expand: target ", requested, " has fewer dims than shape ", shape()));
  }
  const int64_t lead = requested.size() - dim();
  Shape new_shape = requested;
  Shape new_strides = Shape::filled(requested.size(), 0);
  for (int64_t i = 0; i < requested.size(); ++i) {
    int64_t want = requested[i];
    if (i < lead) {
      if (want < 0) {
        throw ShapeError(cat_str("expand: -1 is not allowed for the new leading dim ", i, " in ",
                                 requested));
      }
      continue;
    }
    int64_t have = shape()[i - lead];
    if (want == -1) want = have;
    new_shape[i] = want;
    if (have == want) {
      new_strides[i] = strides()[i - lead];
    } else if (have != 1) {
      throw ShapeError(cat_str("expand: shape ", shape(), " cannot be expanded to ", requested,
                               ": dim ", i, " has size ", have, " (only size-1 dims expand)"));
    }
  }
  checked_numel(new_shape, "expand");
  if (new_shape == shape()) return *this;
  Tensor<T> out = make_view(*this, new_shape, new_strides, storage_offset());
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      autograd::record(out, "expand", {this},
                       [in_shape = shape()](const Tensor<T>& g) { return sum_to(g, in_shape); });
    }
  }
  return out;
}

template <Element T>
Tensor<T> Tensor<T>::index_select(int64_t dim, const Tensor<int64_t>& index) const {
  return ember::index_select(*this, dim, index);
}

template <Element T>
Tensor<T> Tensor<T>::gather(int64_t dim, const Tensor<int64_t>& index) const {
  return ember::gather(*this, dim, index);
}

template <Element T>
std::vector<Tensor<T>> Tensor<T>::split(int64_t split_size, int64_t dim) const {
  require_defined(*this, "split");
  int64_t d = wrap_dim(dim, this->dim(), "split");
  if (split_size <= 0) {
    throw ValueError(cat_str("split: split_size must be positive, got ", split_size));
  }
  std::vector<Tensor<T>> out;
  const int64_t n = shape()[d];
  for (int64_t s = 0; s < n; s += split_size) out.push_back(narrow(d, s, std::min(split_size, n - s)));
  if (n == 0) out.push_back(*this);
  return out;
}

template <Element T>
std::vector<Tensor<T>> Tensor<T>::chunk(int64_t chunks, int64_t dim) const {
  require_defined(*this, "chunk");
  if (chunks <= 0) throw ValueError(cat_str("chunk: chunks must be positive, got ", chunks));
  int64_t d = wrap_dim(dim, this->dim(), "chunk");
  const int64_t n = shape()[d];
  return split(std::max<int64_t>(1, (n + chunks - 1) / chunks), d);
}

// ---- In-place fills and copies ---------------------------------------------------------------

namespace {
template <Element T>
void check_inplace_allowed(const Tensor<T>& t, const char* op) {
  if (autograd::grad_mode_enabled() && t.requires_grad() && t.is_leaf()) {
    throw AutogradError(cat_str(op, ": a leaf tensor that requires grad (shape ", t.shape(),
                                ") is used in an in-place operation; do it under NoGradGuard"));
  }
}
}  // namespace

template <Element T>
Tensor<T>& Tensor<T>::fill_(T value) {
  require_defined(*this, "fill_");
  check_inplace_allowed(*this, "fill_");
  Tensor<T> src = new_tensor<T>({}, "fill_");
  *src.data_ptr() = value;
  detail::copy_strided(src, *this);
  impl_->storage->bump_version();
  if (impl_->autograd && impl_->autograd->grad_fn) detach_();
  return *this;
}

template <Element T>
Tensor<T>& Tensor<T>::zero_() {
  return fill_(T(0));
}

template <Element T>
Tensor<T>& Tensor<T>::copy_(const Tensor<T>& src) {
  require_defined(*this, "copy_");
  require_defined(src, "copy_");
  check_inplace_allowed(*this, "copy_");
  if (detail::broadcast_shapes(src.shape(), shape(), "copy_") != shape()) {
    throw ShapeError(cat_str("copy_: source of shape ", src.shape(),
                             " does not broadcast to the destination shape ", shape()));
  }
  detail::copy_strided(src, *this);
  impl_->storage->bump_version();
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(src)) {
      if (impl_->is_view) {
        throw AutogradError(cat_str("copy_: copying a tensor that requires grad into a view (shape ",
                                    shape(), ") is not supported; build the result out of place"));
      }
      Tensor<T> self = *this;
      autograd::record(self, "copy_", {&src}, [src_shape = src.shape()](const Tensor<T>& g) {
        return sum_to(g, src_shape);
      });
    } else if (impl_->autograd && impl_->autograd->grad_fn) {
      detach_();
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

#define EMBER_INSTANTIATE_TENSOR(T)                                       \
  template class Tensor<T>;                                               \
  template std::ostream& operator<< <T>(std::ostream&, const Tensor<T>&); \
  template Tensor<float> Tensor<T>::to<float>() const;                    \
  template Tensor<double> Tensor<T>::to<double>() const;                  \
  template Tensor<int64_t> Tensor<T>::to<int64_t>() const;                \
  template Tensor<int32_t> Tensor<T>::to<int32_t>() const;                \
  template Tensor<uint8_t> Tensor<T>::to<uint8_t>() const;
EMBER_INSTANTIATE_TENSOR(float)
EMBER_INSTANTIATE_TENSOR(double)
EMBER_INSTANTIATE_TENSOR(int64_t)
EMBER_INSTANTIATE_TENSOR(int32_t)
EMBER_INSTANTIATE_TENSOR(uint8_t)
#undef EMBER_INSTANTIATE_TENSOR

}  // namespace ember
