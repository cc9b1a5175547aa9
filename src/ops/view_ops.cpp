// The tensor's own ops: copies, conversions, views and in-place fills, each with its backward.
#include <algorithm>
#include <numeric>

#include "trace.hpp"
#include "common.hpp"

namespace ember {

using detail::cat_str;
using detail::require_defined;
using detail::make_view;
using detail::new_tensor;
using detail::wrap_dim;

namespace {
std::string format_value_any(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

template <Element T>
std::vector<T> Tensor<T>::to_vector() const {
  require_defined(*this, "to_vector");
  std::vector<T> out(static_cast<size_t>(numel()));
  if (!out.empty()) detail::copy_into_contiguous(*this, out.data());
  return out;
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
  detail::TracedOp traced;
  Tensor<T> out = clone();
  // The same values in the same order: for deploy's plans, whose values are always contiguous
  // (a permuted view is a copy there), an alias. (Not clone itself: ops clone to write into.)
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->view(*this, out);
  }
  return out;
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
  detail::TracedOp traced;
  Tensor<T> out = make_view(*this, target, st, storage_offset());
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      autograd::record(out, "view", {this},
                       [in_shape = shape()](const Tensor<T>& g) { return g.reshape(in_shape); });
    }
  }
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->view(*this, out);
  }
  return out;
}

template <Element T>
Tensor<T> Tensor<T>::reshape(const Shape& requested) const {
  require_defined(*this, "reshape");
  Shape target = infer_shape(requested, numel(), shape(), "reshape");
  Shape st;
  if (view_strides(shape(), strides(), target, st)) return view(target);
  detail::TracedOp traced;
  Tensor<T> out = clone().view(target);
  if constexpr (std::is_same_v<T, float>) {  // as contiguous(): a view in a plan
    if (detail::OpTracer* t = traced.tracer()) t->view(*this, out);
  }
  return out;
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
  detail::TracedOp traced;
  Tensor<T> out = make_view(*this, target, st, storage_offset());
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(*this)) {
      autograd::record(out, "unsqueeze", {this},
                       [d](const Tensor<T>& g) { return g.squeeze(d); });
    }
  }
  // A size-1 dim inserted: the same elements in the same order, a view for deploy's plans.
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->view(*this, out);
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
  detail::TracedOp traced;
  Tensor<T> out = make_view(*this, new_shape, new_strides, storage_offset());
  if constexpr (std::is_same_v<T, float>) {
    if (detail::OpTracer* t = traced.tracer()) t->permute(*this, perm, out);
  }
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
  // Written so that a huge step cannot overflow: with two or more elements, step < n.
  const int64_t len = end == start ? 0 : (end - start - 1) / step + 1;
  Shape new_shape = shape();
  Shape new_strides = strides();
  new_shape[d] = len;
  new_strides[d] = len > 1 ? strides()[d] * step : strides()[d];
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
  if (start < 0 || start > n || length < 0 || length > n - start) {  // no start + length: it can overflow
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

// Writing into a view of a tensor in the autograd graph would need the base's history rebased onto
// the write (PyTorch's CopySlices): without that the base passes gradient through the values that
// were overwritten. So such a write is refused, before anything is written, as the in-place math
// ops refuse it (apply_inplace).
template <Element T>
void check_view_write_allowed(const Tensor<T>& t, bool src_requires_grad, const char* op) {
  if (autograd::grad_mode_enabled() && t.impl()->is_view && (t.requires_grad() || src_requires_grad)) {
    throw AutogradError(cat_str(op, ": writing into a view (shape ", t.shape(), ") of a tensor in the autograd graph "
                                "is not supported; build the result out of place (e.g. with where or cat), or write "
                                "under NoGradGuard"));
  }
}
}  // namespace

template <Element T>
Tensor<T>& Tensor<T>::fill_(T value) {
  require_defined(*this, "fill_");
  check_inplace_allowed(*this, "fill_");
  check_view_write_allowed(*this, false, "fill_");
  detail::require_no_internal_overlap(*this, "fill_");
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
  check_view_write_allowed(*this, src.requires_grad(), "copy_");
  detail::require_no_internal_overlap(*this, "copy_");
  if (detail::broadcast_shapes(src.shape(), shape(), "copy_") != shape()) {
    throw ShapeError(cat_str("copy_: source of shape ", src.shape(),
                             " does not broadcast to the destination shape ", shape()));
  }
  detail::copy_strided(src, *this);
  impl_->storage->bump_version();
  if constexpr (FloatingElement<T>) {
    if (autograd::needs_grad(src)) {
      Tensor<T> self = *this;
      autograd::record(self, "copy_", {&src}, [src_shape = src.shape()](const Tensor<T>& g) {
        return sum_to(g, src_shape);
      });
      impl_->storage->bump_history();  // views taken before lead to the old history
    } else if (impl_->autograd && impl_->autograd->grad_fn) {
      detach_();
    }
  }
  return *this;
}

template <Element T>
Tensor<T> Tensor<T>::index(std::initializer_list<indexing::TensorIndex> indices) const {
  require_defined(*this, "index");
  if (static_cast<int64_t>(indices.size()) > dim()) {
    throw IndexError(cat_str("index: ", indices.size(), " indices for a tensor of shape ", shape()));
  }
  Tensor<T> out = *this;
  int64_t d = 0;  // the dim of `out` the next index applies to
  for (const indexing::TensorIndex& ix : indices) {
    if (!ix.is_slice) {
      out = out.select(d, ix.integer);  // the dim goes away
      continue;
    }
    const int64_t n = out.shape()[d];
    const indexing::Slice& sl = ix.slice;
    if (sl.step <= 0) throw ValueError(cat_str("index: slice step must be positive, got ", sl.step));
    out = out.slice(d, sl.start.value_or(0), sl.stop.value_or(n), sl.step);
    ++d;
  }
  return out;
}

template <Element T>
Tensor<T>& Tensor<T>::index_put_(std::initializer_list<indexing::TensorIndex> indices, const Tensor<T>& value) {
  Tensor<T> target = index(indices);
  target.copy_(value);
  return *this;
}

template <Element T>
Tensor<T>& Tensor<T>::index_put_(std::initializer_list<indexing::TensorIndex> indices, T value) {
  Tensor<T> target = index(indices);
  target.fill_(value);
  return *this;
}

#define EMBER_INSTANTIATE_VIEW_OPS(T)                                                \
  template std::vector<T> Tensor<T>::to_vector() const;                               \
  template Tensor<T> Tensor<T>::clone() const;                                        \
  template Tensor<T> Tensor<T>::contiguous() const;                                   \
  template Tensor<float> Tensor<T>::to<float>() const;                                \
  template Tensor<double> Tensor<T>::to<double>() const;                              \
  template Tensor<int64_t> Tensor<T>::to<int64_t>() const;                            \
  template Tensor<int32_t> Tensor<T>::to<int32_t>() const;                            \
  template Tensor<uint8_t> Tensor<T>::to<uint8_t>() const;                            \
  template Tensor<T> Tensor<T>::view(const Shape&) const;                             \
  template Tensor<T> Tensor<T>::reshape(const Shape&) const;                          \
  template Tensor<T> Tensor<T>::flatten(int64_t, int64_t) const;                      \
  template Tensor<T> Tensor<T>::squeeze() const;                                      \
  template Tensor<T> Tensor<T>::squeeze(int64_t) const;                               \
  template Tensor<T> Tensor<T>::unsqueeze(int64_t) const;                             \
  template Tensor<T> Tensor<T>::permute(const Shape&) const;                          \
  template Tensor<T> Tensor<T>::transpose(int64_t, int64_t) const;                    \
  template Tensor<T> Tensor<T>::t() const;                                            \
  template Tensor<T> Tensor<T>::slice(int64_t, int64_t, int64_t, int64_t) const;      \
  template Tensor<T> Tensor<T>::narrow(int64_t, int64_t, int64_t) const;              \
  template Tensor<T> Tensor<T>::select(int64_t, int64_t) const;                       \
  template Tensor<T> Tensor<T>::expand(const Shape&) const;                           \
  template Tensor<T> Tensor<T>::index_select(int64_t, const Tensor<int64_t>&) const;  \
  template Tensor<T> Tensor<T>::gather(int64_t, const Tensor<int64_t>&) const;        \
  template std::vector<Tensor<T>> Tensor<T>::split(int64_t, int64_t) const;           \
  template std::vector<Tensor<T>> Tensor<T>::chunk(int64_t, int64_t) const;           \
  template Tensor<T>& Tensor<T>::fill_(T);                                            \
  template Tensor<T>& Tensor<T>::zero_();                                             \
  template Tensor<T>& Tensor<T>::copy_(const Tensor<T>&);                             \
  template Tensor<T> Tensor<T>::index(std::initializer_list<indexing::TensorIndex>) const; \
  template Tensor<T>& Tensor<T>::index_put_(std::initializer_list<indexing::TensorIndex>, const Tensor<T>&); \
  template Tensor<T>& Tensor<T>::index_put_(std::initializer_list<indexing::TensorIndex>, T);
EMBER_INSTANTIATE_VIEW_OPS(float)
EMBER_INSTANTIATE_VIEW_OPS(double)
EMBER_INSTANTIATE_VIEW_OPS(int64_t)
EMBER_INSTANTIATE_VIEW_OPS(int32_t)
EMBER_INSTANTIATE_VIEW_OPS(uint8_t)
EMBER_INSTANTIATE_VIEW_OPS(int8_t)
#undef EMBER_INSTANTIATE_VIEW_OPS

}  // namespace ember
