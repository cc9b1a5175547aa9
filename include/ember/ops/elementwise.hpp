#pragma once
// Elementwise ops with NumPy broadcasting. Binary ops take two tensors of one element type, or a
// tensor and an arithmetic scalar on either side. All are differentiable in float and double.
#include <type_traits>

#include "ember/core/tensor.hpp"

namespace ember {

template <class S>
concept Scalar = std::is_arithmetic_v<S>;

#define EMBER_UNARY_DECL(name) \
  template <FloatingElement T> \
  Tensor<T> name(const Tensor<T>& x);
EMBER_UNARY_DECL(neg)
EMBER_UNARY_DECL(abs)
EMBER_UNARY_DECL(exp)
EMBER_UNARY_DECL(log)
EMBER_UNARY_DECL(log1p)
EMBER_UNARY_DECL(expm1)
EMBER_UNARY_DECL(sqrt)
EMBER_UNARY_DECL(rsqrt)
EMBER_UNARY_DECL(reciprocal)
EMBER_UNARY_DECL(square)
EMBER_UNARY_DECL(sin)
EMBER_UNARY_DECL(cos)
EMBER_UNARY_DECL(tanh)
EMBER_UNARY_DECL(sigmoid)
EMBER_UNARY_DECL(relu)
EMBER_UNARY_DECL(silu)
EMBER_UNARY_DECL(sign)     // gradient 0
EMBER_UNARY_DECL(floor)    // gradient 0
EMBER_UNARY_DECL(ceil)     // gradient 0
EMBER_UNARY_DECL(round)    // gradient 0; half to even
EMBER_UNARY_DECL(erf)
#undef EMBER_UNARY_DECL

template <FloatingElement T>
Tensor<T> leaky_relu(const Tensor<T>& x, double negative_slope = 0.01);
template <FloatingElement T>
Tensor<T> elu(const Tensor<T>& x, double alpha = 1.0);
/// approximate: "none" (exact, erf form; the default, as PyTorch) or "tanh".
template <FloatingElement T>
Tensor<T> gelu(const Tensor<T>& x, const char* approximate = "none");
template <FloatingElement T>
Tensor<T> softplus(const Tensor<T>& x, double beta = 1.0, double threshold = 20.0);
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

/// Comparisons give 0/1 masks as Tensor<uint8_t> (torch's bool tensors).
template <FloatingElement T> Tensor<uint8_t> eq(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T> Tensor<uint8_t> ne(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T> Tensor<uint8_t> lt(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T> Tensor<uint8_t> le(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T> Tensor<uint8_t> gt(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T> Tensor<uint8_t> ge(const Tensor<T>& a, const Tensor<T>& b);
template <FloatingElement T> Tensor<uint8_t> eq(const Tensor<T>& a, double b);
template <FloatingElement T> Tensor<uint8_t> ne(const Tensor<T>& a, double b);
template <FloatingElement T> Tensor<uint8_t> lt(const Tensor<T>& a, double b);
template <FloatingElement T> Tensor<uint8_t> le(const Tensor<T>& a, double b);
template <FloatingElement T> Tensor<uint8_t> gt(const Tensor<T>& a, double b);
template <FloatingElement T> Tensor<uint8_t> ge(const Tensor<T>& a, double b);
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
