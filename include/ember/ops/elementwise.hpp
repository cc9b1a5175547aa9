#pragma once
// Elementwise ops with NumPy broadcasting. Binary ops take two tensors of one element type, or a
// tensor and an arithmetic scalar on either side. All are differentiable in float and double.
#include <type_traits>

#include "ember/core/tensor.hpp"

namespace ember {

template <class S>
concept Scalar = std::is_arithmetic_v<S>;

// The unary ops of the op table (include/ember/ops/op_table.def: each op's kernel, gradient and
// test cases): neg, abs, exp, log, log1p, expm1, sqrt, rsqrt, reciprocal, square, sin, cos, tanh,
// sigmoid, relu, silu, erf, erfinv, mish; sign, floor, ceil and round (round is half to even)
// with gradient 0; and with parameters leaky_relu(x, negative_slope = 0.01), elu(x, alpha = 1.0),
// softplus(x, beta = 1.0, threshold = 20.0).
#define EMBER_UNARY(name, ...) \
  template <FloatingElement T> \
  Tensor<T> name(const Tensor<T>& x);
#define EMBER_UNARY_P1(name, Kernel, Accuracy, Saves, lo, hi, torch, a, a_default, ...) \
  template <FloatingElement T>                                                         \
  Tensor<T> name(const Tensor<T>& x, double a = a_default);
#define EMBER_UNARY_P2(name, Kernel, Accuracy, Saves, lo, hi, torch, a, a_default, a_test, b, \
                       b_default, ...)                                                       \
  template <FloatingElement T>                                                               \
  Tensor<T> name(const Tensor<T>& x, double a = a_default, double b = b_default);
#include "ember/ops/op_table.def"

/// approximate: "none" (exact, erf form; the default, as PyTorch) or "tanh".
template <FloatingElement T>
Tensor<T> gelu(const Tensor<T>& x, const char* approximate = "none");
/// Clamps to [min, max]; pass +-infinity for an open side.
template <FloatingElement T>
Tensor<T> clamp(const Tensor<T>& x, double min, double max);
template <FloatingElement T>
Tensor<T> pow(const Tensor<T>& x, double exponent);
template <FloatingElement T>
Tensor<T> pow(const Tensor<T>& x, const Tensor<T>& exponent);
template <FloatingElement T>
Tensor<T> pow(double base, const Tensor<T>& exponent);

template <FloatingElement T>
Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b, double alpha = 1.0);
template <FloatingElement T>
Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b, double alpha = 1.0);
template <FloatingElement T>
Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T>
Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b);
/// Elementwise max/min; NaN propagates. At ties the gradient is split evenly, as PyTorch.
template <FloatingElement T>
Tensor<T> maximum(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T>
Tensor<T> minimum(const Tensor<T>& a, const Tensor<T>& b);

/// Scalar forms (the scalar is converted to T).
template <FloatingElement T>
Tensor<T> add_scalar(const Tensor<T>& a, double s);
template <FloatingElement T>
Tensor<T> mul_scalar(const Tensor<T>& a, double s);
template <FloatingElement T>
Tensor<T> rsub_scalar(const Tensor<T>& a, double s);  // s - a
template <FloatingElement T>
Tensor<T> rdiv_scalar(const Tensor<T>& a, double s);  // s / a

/// cond ? a : b, broadcasting all three.
template <FloatingElement T>
Tensor<T> where(const Tensor<uint8_t>& cond, const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T>
Tensor<T> where(const Tensor<uint8_t>& cond, const Tensor<T>& a, double b);
template <FloatingElement T>
Tensor<T> masked_fill(const Tensor<T>& x, const Tensor<uint8_t>& mask, double value);

/// Comparisons give 0/1 masks as Tensor<uint8_t> (torch's bool tensors), for every element type
/// (integer labels too: `pred.eq(target).sum()`). (eq, ne, lt, le, gt, ge; the op table's
/// EMBER_COMPARE rows.) An integer tensor compares with a scalar that is one of its values
/// (ValueError otherwise).
#define EMBER_COMPARE(name, Kernel)                                                  \
  template <Element T> Tensor<uint8_t> name(const Tensor<T>& a, const Tensor<T>& b); \
  template <Element T> Tensor<uint8_t> name(const Tensor<T>& a, double b);
#include "ember/ops/op_table.def"
/// Whether every pair of elements is within atol + rtol * |b| (NaNs are never close).
template <FloatingElement T>
bool allclose(const Tensor<T>& a, const Tensor<T>& b, double rtol = 1e-5, double atol = 1e-8);

/// Reduces a broadcast gradient back to `shape` by summing the broadcast dims.
template <FloatingElement T>
Tensor<T> sum_to(const Tensor<T>& x, const Shape& shape);

// ---- Operators ---------------------------------------------------------------------------------
template <FloatingElement T> Tensor<T> operator+(const Tensor<T>& a, const Tensor<T>& b) { return add(a, b); }
template <FloatingElement T> Tensor<T> operator-(const Tensor<T>& a, const Tensor<T>& b) { return sub(a, b); }
template <FloatingElement T> Tensor<T> operator*(const Tensor<T>& a, const Tensor<T>& b) { return mul(a, b); }
template <FloatingElement T> Tensor<T> operator/(const Tensor<T>& a, const Tensor<T>& b) { return div(a, b); }
template <FloatingElement T> Tensor<T> operator-(const Tensor<T>& a) { return neg(a); }

template <FloatingElement T, Scalar S> Tensor<T> operator+(const Tensor<T>& a, S s) { return add_scalar(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<T> operator+(S s, const Tensor<T>& a) { return add_scalar(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<T> operator-(const Tensor<T>& a, S s) { return add_scalar(a, -double(s)); }
template <FloatingElement T, Scalar S> Tensor<T> operator-(S s, const Tensor<T>& a) { return rsub_scalar(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<T> operator*(const Tensor<T>& a, S s) { return mul_scalar(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<T> operator*(S s, const Tensor<T>& a) { return mul_scalar(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<T> operator/(const Tensor<T>& a, S s) { return mul_scalar(a, 1.0 / double(s)); }
template <FloatingElement T, Scalar S> Tensor<T> operator/(S s, const Tensor<T>& a) { return rdiv_scalar(a, double(s)); }

template <FloatingElement T> Tensor<T>& operator+=(Tensor<T>& a, const Tensor<T>& b) { return a.add_(b); }
template <FloatingElement T> Tensor<T>& operator-=(Tensor<T>& a, const Tensor<T>& b) { return a.sub_(b); }
template <FloatingElement T> Tensor<T>& operator*=(Tensor<T>& a, const Tensor<T>& b) { return a.mul_(b); }
template <FloatingElement T> Tensor<T>& operator/=(Tensor<T>& a, const Tensor<T>& b) { return a.div_(b); }
template <FloatingElement T, Scalar S> Tensor<T>& operator+=(Tensor<T>& a, S s) { return a.add_(double(s)); }
template <FloatingElement T, Scalar S> Tensor<T>& operator-=(Tensor<T>& a, S s) { return a.sub_(double(s)); }
template <FloatingElement T, Scalar S> Tensor<T>& operator*=(Tensor<T>& a, S s) { return a.mul_(double(s)); }
template <FloatingElement T, Scalar S> Tensor<T>& operator/=(Tensor<T>& a, S s) { return a.div_(double(s)); }

template <FloatingElement T> Tensor<uint8_t> operator==(const Tensor<T>& a, const Tensor<T>& b) { return eq(a, b); }
template <FloatingElement T> Tensor<uint8_t> operator!=(const Tensor<T>& a, const Tensor<T>& b) { return ne(a, b); }
template <FloatingElement T> Tensor<uint8_t> operator<(const Tensor<T>& a, const Tensor<T>& b) { return lt(a, b); }
template <FloatingElement T> Tensor<uint8_t> operator<=(const Tensor<T>& a, const Tensor<T>& b) { return le(a, b); }
template <FloatingElement T> Tensor<uint8_t> operator>(const Tensor<T>& a, const Tensor<T>& b) { return gt(a, b); }
template <FloatingElement T> Tensor<uint8_t> operator>=(const Tensor<T>& a, const Tensor<T>& b) { return ge(a, b); }
template <FloatingElement T, Scalar S> Tensor<uint8_t> operator==(const Tensor<T>& a, S s) { return eq(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<uint8_t> operator!=(const Tensor<T>& a, S s) { return ne(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<uint8_t> operator<(const Tensor<T>& a, S s) { return lt(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<uint8_t> operator<=(const Tensor<T>& a, S s) { return le(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<uint8_t> operator>(const Tensor<T>& a, S s) { return gt(a, double(s)); }
template <FloatingElement T, Scalar S> Tensor<uint8_t> operator>=(const Tensor<T>& a, S s) { return ge(a, double(s)); }

}  // namespace ember
