// Reductions of integer tensors (labels, predictions, masks) on the backend's integer kernels,
// all / any / equal for every element type, and the comparison members.
#include <limits>

#include "common.hpp"

namespace ember {

using detail::cat_str;
using detail::require;

namespace {

// One contiguous pass: f(n, pointer) over x's elements in row-major order.
template <Element T, class F>
void over_elements(const Tensor<T>& x, F&& f) {
  const Tensor<T> c = x.contiguous();
  if (c.numel() > 0) f(c.numel(), c.data_ptr());
}

}  // namespace

template <Element T>
  requires(!FloatingElement<T>)
Tensor<int64_t> sum(const Tensor<T>& x) {
  require(x, "sum");
  int64_t total = 0;
  over_elements(x, [&](int64_t n, const T* p) {
    if (!backend::integer_kernels<T>().sum(n, p, 1, &total)) {
      throw ValueError(cat_str("sum: the sum of the ", dtype_name(dtype_of<T>), " tensor of shape ", x.shape(),
                               " overflows int64"));
    }
  });
  return scalar_tensor<int64_t>(total);
}

namespace {
template <Element T>
Tensor<T> integer_extreme(const Tensor<T>& x, bool is_max) {
  const char* name = is_max ? "amax" : "amin";
  require(x, name);
  if (x.numel() == 0) {
    throw ValueError(cat_str(name, ": the tensor of shape ", x.shape(), " is empty (no identity for ", name, ")"));
  }
  T best{};
  over_elements(x, [&](int64_t n, const T* p) {
    best = p[0];
    backend::integer_kernels<T>().extreme(is_max, n, p, 1, &best);
  });
  return scalar_tensor<T>(best);
}

// The number of nonzero elements.
template <Element T>
int64_t nonzero_count(const Tensor<T>& x) {
  if constexpr (FloatingElement<T>) {
    return nonzero_count(ne(x, 0.0));
  } else {
    int64_t count = 0;
    over_elements(x, [&](int64_t n, const T* p) { backend::integer_kernels<T>().count_nonzero(n, p, 1, &count); });
    return count;
  }
}
}  // namespace

template <Element T>
  requires(!FloatingElement<T>)
Tensor<T> amax(const Tensor<T>& x) {
  return integer_extreme(x, true);
}

template <Element T>
  requires(!FloatingElement<T>)
Tensor<T> amin(const Tensor<T>& x) {
  return integer_extreme(x, false);
}

template <Element T>
Tensor<uint8_t> all(const Tensor<T>& x) {
  require(x, "all");
  return scalar_tensor<uint8_t>(nonzero_count(x) == x.numel() ? 1 : 0);
}

template <Element T>
Tensor<uint8_t> any(const Tensor<T>& x) {
  require(x, "any");
  return scalar_tensor<uint8_t>(nonzero_count(x) > 0 ? 1 : 0);
}

template <Element T>
bool equal(const Tensor<T>& a, const Tensor<T>& b) {
  require(a, "equal");
  require(b, "equal");
  if (a.shape() != b.shape()) return false;
  return nonzero_count(ne(a, b)) == 0;
}

template <Element T>
Tensor<int64_t> Tensor<T>::sum() const requires(!FloatingElement<T>) { return ember::sum(*this); }
// One member for every element type (constrained overloads of one signature trip clang 14's
// explicit instantiation): the float reductions (NaN propagates) or the integer ones.
template <Element T>
Tensor<T> Tensor<T>::max() const {
  return ember::amax(*this);
}
template <Element T>
Tensor<T> Tensor<T>::min() const {
  return ember::amin(*this);
}
template <Element T>
Tensor<uint8_t> Tensor<T>::all() const { return ember::all(*this); }
template <Element T>
Tensor<uint8_t> Tensor<T>::any() const { return ember::any(*this); }
template <Element T>
Tensor<uint8_t> Tensor<T>::eq(const Tensor& other) const { return ember::eq(*this, other); }
template <Element T>
Tensor<uint8_t> Tensor<T>::ne(const Tensor& other) const { return ember::ne(*this, other); }
template <Element T>
Tensor<uint8_t> Tensor<T>::lt(const Tensor& other) const { return ember::lt(*this, other); }
template <Element T>
Tensor<uint8_t> Tensor<T>::le(const Tensor& other) const { return ember::le(*this, other); }
template <Element T>
Tensor<uint8_t> Tensor<T>::gt(const Tensor& other) const { return ember::gt(*this, other); }
template <Element T>
Tensor<uint8_t> Tensor<T>::ge(const Tensor& other) const { return ember::ge(*this, other); }
template <Element T>
Tensor<uint8_t> Tensor<T>::eq(double other) const { return ember::eq(*this, other); }
template <Element T>
Tensor<uint8_t> Tensor<T>::ne(double other) const { return ember::ne(*this, other); }

#define EMBER_INSTANTIATE_ANY(T)                                \
  template Tensor<uint8_t> all(const Tensor<T>&);               \
  template Tensor<uint8_t> any(const Tensor<T>&);               \
  template bool equal(const Tensor<T>&, const Tensor<T>&);      \
  template Tensor<uint8_t> Tensor<T>::all() const;              \
  template Tensor<uint8_t> Tensor<T>::any() const;              \
  template Tensor<uint8_t> Tensor<T>::eq(const Tensor&) const;  \
  template Tensor<uint8_t> Tensor<T>::ne(const Tensor&) const;  \
  template Tensor<uint8_t> Tensor<T>::lt(const Tensor&) const;  \
  template Tensor<uint8_t> Tensor<T>::le(const Tensor&) const;  \
  template Tensor<uint8_t> Tensor<T>::gt(const Tensor&) const;  \
  template Tensor<uint8_t> Tensor<T>::ge(const Tensor&) const;  \
  template Tensor<uint8_t> Tensor<T>::eq(double) const;         \
  template Tensor<uint8_t> Tensor<T>::ne(double) const;
#define EMBER_INSTANTIATE_INTEGER(T)                     \
  EMBER_INSTANTIATE_ANY(T)                               \
  template Tensor<int64_t> sum(const Tensor<T>&);        \
  template Tensor<T> amax(const Tensor<T>&);             \
  template Tensor<T> amin(const Tensor<T>&);             \
  template Tensor<int64_t> Tensor<T>::sum() const;       \
  template Tensor<T> Tensor<T>::max() const;             \
  template Tensor<T> Tensor<T>::min() const;
#define EMBER_INSTANTIATE_FLOAT_EXTREMES(T)  \
  template Tensor<T> Tensor<T>::max() const; \
  template Tensor<T> Tensor<T>::min() const;
EMBER_INSTANTIATE_ANY(float)
EMBER_INSTANTIATE_ANY(double)
EMBER_INSTANTIATE_FLOAT_EXTREMES(float)
EMBER_INSTANTIATE_FLOAT_EXTREMES(double)
EMBER_INSTANTIATE_INTEGER(int64_t)
EMBER_INSTANTIATE_INTEGER(int32_t)
EMBER_INSTANTIATE_INTEGER(uint8_t)
EMBER_INSTANTIATE_INTEGER(int8_t)
#undef EMBER_INSTANTIATE_FLOAT_EXTREMES
#undef EMBER_INSTANTIATE_INTEGER
#undef EMBER_INSTANTIATE_ANY

}  // namespace ember
