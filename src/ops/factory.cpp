// Tensor factories and random sampling.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "common.hpp"

namespace ember {

using detail::cat_str;
using detail::new_tensor;

namespace {
template <Element T>
Tensor<T> finish(Tensor<T> t, bool requires_grad) {
  if (requires_grad) t.requires_grad_(true);
  return t;
}

Generator& pick(Generator* gen) { return gen ? *gen : default_generator(); }
}  // namespace

template <Element T>
Tensor<T> tensor(std::vector<T> values, const Shape& shape, bool requires_grad) {
  const int64_t n = checked_numel(shape, "tensor");
  if (static_cast<int64_t>(values.size()) != n) {
    throw ShapeError(cat_str("tensor: ", values.size(), " values for shape ", shape, " (", n,
                             " elements)"));
  }
  Tensor<T> t = new_tensor<T>(shape, "tensor");
  if (n > 0) std::copy(values.begin(), values.end(), t.data_ptr());
  return finish(t, requires_grad);
}

template <Element T>
Tensor<T> tensor(std::vector<T> values) {
  const int64_t n = static_cast<int64_t>(values.size());
  return tensor<T>(std::move(values), Shape{n}, false);
}

template <Element T>
Tensor<T> scalar_tensor(T value, bool requires_grad) {
  return tensor<T>(std::vector<T>{value}, Shape{}, requires_grad);
}

template <Element T>
Tensor<T> empty(const Shape& shape, bool requires_grad) {
  return finish(new_tensor<T>(shape, "empty"), requires_grad);
}

template <Element T>
Tensor<T> full(const Shape& shape, T value, bool requires_grad) {
  Tensor<T> t = new_tensor<T>(shape, "full");
  std::fill_n(t.data_ptr(), t.numel(), value);
  return finish(t, requires_grad);
}

template <Element T>
Tensor<T> zeros(const Shape& shape, bool requires_grad) {
  return full<T>(shape, T(0), requires_grad);
}

template <Element T>
Tensor<T> ones(const Shape& shape, bool requires_grad) {
  return full<T>(shape, T(1), requires_grad);
}

template <Element T>
Tensor<T> arange(double start, double end, double step) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step)) {
    throw ValueError(cat_str("arange: need finite start/end and a non-zero step, got (", start,
                             ", ", end, ", ", step, ")"));
  }
  if ((end - start) / step < 0) {
    throw ValueError(cat_str("arange: the step ", step, " moves away from end ", end,
                             " (start ", start, ")"));
  }
  const double count = std::ceil((end - start) / step);
  if (count > 9.0e18) throw ShapeError("arange: too many elements");
  const int64_t n = static_cast<int64_t>(count);
  Tensor<T> t = new_tensor<T>({n}, "arange");
  T* p = t.data_ptr();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  return t;
}

template <Element T>
Tensor<T> arange(double end) {
  return arange<T>(0.0, end, 1.0);
}

template <FloatingElement T>
Tensor<T> linspace(double start, double end, int64_t steps) {
  if (steps < 0) throw ValueError(cat_str("linspace: steps must be >= 0, got ", steps));
  Tensor<T> t = new_tensor<T>({steps}, "linspace");
  T* p = t.data_ptr();
  const double step = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0.0;
  // Fill from both ends, as PyTorch, so that the last value is exactly `end`.
  const int64_t half = steps / 2;
  for (int64_t i = 0; i < steps; ++i) {
    p[i] = static_cast<T>(i < half ? start + step * static_cast<double>(i)
                                   : end - step * static_cast<double>(steps - 1 - i));
  }
  return t;
}

template <Element T>
Tensor<T> eye(int64_t n, int64_t m) {
  if (m < 0) m = n;
  if (n < 0) throw ValueError(cat_str("eye: n must be >= 0, got ", n));
  Tensor<T> t = zeros<T>({n, m});
  T* p = t.data_ptr();
  for (int64_t i = 0; i < std::min(n, m); ++i) p[i * m + i] = T(1);
  return t;
}

template <FloatingElement T>
Tensor<T> rand(const Shape& shape, bool requires_grad, Generator* gen) {
  Tensor<T> t = new_tensor<T>(shape, "rand");
  Generator& g = pick(gen);
  std::lock_guard<std::mutex> lock(g.mutex());
  T* p = t.data_ptr();
  for (int64_t i = 0; i < t.numel(); ++i) {
    T v = static_cast<T>(g.uniform());
    p[i] = v < T(1) ? v : std::nextafter(T(1), T(0));  // rounding to float must not reach 1
  }
  return finish(t, requires_grad);
}

template <FloatingElement T>
Tensor<T> randn(const Shape& shape, bool requires_grad, Generator* gen) {
  Tensor<T> t = new_tensor<T>(shape, "randn");
  Generator& g = pick(gen);
  std::lock_guard<std::mutex> lock(g.mutex());
  T* p = t.data_ptr();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(g.normal());
  return finish(t, requires_grad);
}

template <Element T>
Tensor<T> randint(int64_t low, int64_t high, const Shape& shape, Generator* gen) {
  if (high <= low) {
    throw ValueError(cat_str("randint: expected low < high, got [", low, ", ", high, ")"));
  }
  Tensor<T> t = new_tensor<T>(shape, "randint");
  Generator& g = pick(gen);
  std::lock_guard<std::mutex> lock(g.mutex());
  T* p = t.data_ptr();
  const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  for (int64_t i = 0; i < t.numel(); ++i) {
    p[i] = static_cast<T>(static_cast<int64_t>(static_cast<uint64_t>(low) + g.below(range)));
  }
  return t;
}

template <FloatingElement T>
Tensor<T> bernoulli(const Tensor<T>& prob, Generator* gen) {
  if (!prob.defined()) throw ValueError("bernoulli: the probability tensor is undefined");
  std::vector<T> pv = prob.to_vector();
  Tensor<T> t = new_tensor<T>(prob.shape(), "bernoulli");
  Generator& g = pick(gen);
  std::lock_guard<std::mutex> lock(g.mutex());
  T* p = t.data_ptr();
  for (size_t i = 0; i < pv.size(); ++i) {
    if (!(pv[i] >= T(0) && pv[i] <= T(1))) {
      throw ValueError(cat_str("bernoulli: probability ", static_cast<double>(pv[i]),
                               " at element ", i, " is not in [0, 1]"));
    }
    p[i] = g.uniform() < static_cast<double>(pv[i]) ? T(1) : T(0);
  }
  return t;
}

template <FloatingElement T>
Tensor<T> bernoulli(const Shape& shape, double prob, Generator* gen) {
  if (!(prob >= 0.0 && prob <= 1.0)) {
    throw ValueError(cat_str("bernoulli: probability ", prob, " is not in [0, 1]"));
  }
  Tensor<T> t = new_tensor<T>(shape, "bernoulli");
  Generator& g = pick(gen);
  std::lock_guard<std::mutex> lock(g.mutex());
  T* p = t.data_ptr();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = g.uniform() < prob ? T(1) : T(0);
  return t;
}

Tensor<int64_t> randperm(int64_t n, Generator* gen) {
  if (n < 0) throw ValueError(cat_str("randperm: n must be >= 0, got ", n));
  Tensor<int64_t> t = new_tensor<int64_t>({n}, "randperm");
  int64_t* p = t.data_ptr();
  std::iota(p, p + n, int64_t(0));
  Generator& g = pick(gen);
  std::lock_guard<std::mutex> lock(g.mutex());
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
    int64_t j = static_cast<int64_t>(g.below(static_cast<uint64_t>(i) + 1));
    std::swap(p[i], p[j]);
  }
  return t;
}

#define EMBER_INSTANTIATE_ALL(T)                                                  \
  template Tensor<T> tensor<T>(std::vector<T>, const Shape&, bool);              \
  template Tensor<T> tensor<T>(std::vector<T>);                                  \
  template Tensor<T> scalar_tensor<T>(T, bool);                                  \
  template Tensor<T> empty<T>(const Shape&, bool);                               \
  template Tensor<T> zeros<T>(const Shape&, bool);                               \
  template Tensor<T> ones<T>(const Shape&, bool);                                \
  template Tensor<T> full<T>(const Shape&, T, bool);                             \
  template Tensor<T> arange<T>(double, double, double);                          \
  template Tensor<T> arange<T>(double);                                          \
  template Tensor<T> eye<T>(int64_t, int64_t);                                   \
  template Tensor<T> randint<T>(int64_t, int64_t, const Shape&, Generator*);
EMBER_INSTANTIATE_ALL(float)
EMBER_INSTANTIATE_ALL(double)
EMBER_INSTANTIATE_ALL(int64_t)
EMBER_INSTANTIATE_ALL(int32_t)
EMBER_INSTANTIATE_ALL(uint8_t)
EMBER_INSTANTIATE_ALL(int8_t)
#undef EMBER_INSTANTIATE_ALL

// LibTorch's in-place random fills: the values of rand / randn, scaled, written through copy_.
template <Element T>
Tensor<T>& Tensor<T>::uniform_(double a, double b, Generator* gen) requires FloatingElement<T> {
  if (!(a <= b)) throw ValueError(cat_str("uniform_: expected a <= b, got [", a, ", ", b, ")"));
  detail::require_defined(*this, "uniform_");
  return copy_(rand<T>(shape(), false, gen) * (b - a) + a);
}

template <Element T>
Tensor<T>& Tensor<T>::normal_(double mean, double std, Generator* gen) requires FloatingElement<T> {
  if (!(std >= 0)) throw ValueError(cat_str("normal_: expected std >= 0, got ", std));
  detail::require_defined(*this, "normal_");
  return copy_(randn<T>(shape(), false, gen) * std + mean);
}

#define EMBER_INSTANTIATE_FLOAT(T)                                                \
  template Tensor<T> linspace<T>(double, double, int64_t);                       \
  template Tensor<T>& Tensor<T>::uniform_(double, double, Generator*);           \
  template Tensor<T>& Tensor<T>::normal_(double, double, Generator*);            \
  template Tensor<T> rand<T>(const Shape&, bool, Generator*);                    \
  template Tensor<T> randn<T>(const Shape&, bool, Generator*);                   \
  template Tensor<T> bernoulli<T>(const Tensor<T>&, Generator*);                 \
  template Tensor<T> bernoulli<T>(const Shape&, double, Generator*);
EMBER_INSTANTIATE_FLOAT(float)
EMBER_INSTANTIATE_FLOAT(double)
#undef EMBER_INSTANTIATE_FLOAT

}  // namespace ember
