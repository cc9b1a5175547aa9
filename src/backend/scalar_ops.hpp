#pragma once
// One element of every backend op, written plainly. The scalar backend is these functions in a
// loop; the SIMD backends use them for tails and as the definition they must agree with.
#include <cmath>
#include <cstdint>
#include <limits>

#include "ember/backend/kernels.hpp"

namespace ember::backend::scalar {

template <class T>
inline T sigmoid(T x) {
  // exp(-x) overflows to inf for very negative x, and 1 / inf = 0 is the right limit.
  return T(1) / (T(1) + std::exp(-x));
}

// Note [Mish]
// tanh(softplus(x)) is n / (n + 2) with n = e^x (e^x + 2): one exponential instead of exp, log1p
// and tanh, without cancellation (n > 0). Past x = 20 the ratio is 1 in double as in float, so x
// is clamped there before n could overflow; NaN passes through the product with x.
template <class T>
inline T mish_tanh_softplus(T x) {
  const T e = std::exp(x < T(20) ? x : T(20));
  const T n = e * (e + T(2));
  return n / (n + T(2));
}

/// The inverse error function (Note [erfinv] in cpu_scalar.cpp), defined in the scalar
/// table's file so that every table calls the same code, built without FMA contraction.
double erfinv(double y);

template <class T>
inline T apply_unary(Unary op, KernelParams p, T x) {
  constexpr T kSqrt1_2 = T(0.70710678118654752440);
  constexpr T kSqrt2OverPi = T(0.79788456080286535588);
  switch (op) {
    case Unary::Neg: return -x;
    case Unary::Abs: return std::abs(x);
    case Unary::Exp: return std::exp(x);
    case Unary::Log: return std::log(x);
    case Unary::Log1p: return std::log1p(x);
    case Unary::Expm1: return std::expm1(x);
    case Unary::Sqrt: return std::sqrt(x);
    case Unary::Rsqrt: return T(1) / std::sqrt(x);
    case Unary::Reciprocal: return T(1) / x;
    case Unary::Square: return x * x;
    case Unary::Sin: return std::sin(x);
    case Unary::Cos: return std::cos(x);
    case Unary::Tanh: return std::tanh(x);
    case Unary::Sigmoid: return sigmoid(x);
    case Unary::Relu: return x < T(0) ? T(0) : x;  // NaN stays NaN, as in PyTorch
    case Unary::Sign: return x != x ? x : T((T(0) < x) - (x < T(0)));
    case Unary::Floor: return std::floor(x);
    case Unary::Ceil: return std::ceil(x);
    case Unary::Round: return std::nearbyint(x);  // half to even, as torch.round
    case Unary::Erf: return std::erf(x);
    case Unary::Erfinv: return static_cast<T>(erfinv(static_cast<double>(x)));
    // Note [GELU accuracy]
    // Exact GELU is PyTorch's formula, x/2 (1 + erf(x/sqrt2)), here and in the SIMD kernels.
    // Below x ~ -1 the sum cancels: the result is accurate to a few ulp of x/2 in absolute
    // terms, not relative to its own (tiny) size; at x = -5 in float only its first digit is
    // right. That is what PyTorch computes too, and what GELU's uses need (the values there are
    // ~0 next to the other activations, and so are their gradients). An erfc formulation is
    // accurate in relative terms but needs double precision for float to stay within a few ulp
    // (erfc(a) has condition number 2a^2), which made the kernel 5x slower; tests compare the
    // SIMD kernels with this reference to 4 ulp or 2 eps |x|. The float SIMD kernel
    // (simd::gelu_float) takes another road to the same function: Phi(-|x|) as the exponential
    // of a fitted log Phi, which has no cancellation (against a double-precision GELU: at most
    // 2.35 ulp for x >= -1, 1.1e-5 relative below, where this reference loses all digits by
    // x = -5.5) and costs one short exponential instead of both erf pieces.
    case Unary::Gelu: return T(0.5) * x * (T(1) + std::erf(x * kSqrt1_2));
    case Unary::GeluTanh: {
      T inner = kSqrt2OverPi * (x + T(0.044715) * x * x * x);
      return T(0.5) * x * (T(1) + std::tanh(inner));
    }
    case Unary::Silu: return x * sigmoid(x);
    case Unary::LeakyRelu: return x > T(0) ? x : x * T(p.a);
    case Unary::Elu: return x > T(0) ? x : T(p.a) * std::expm1(x);
    case Unary::Softplus: {
      T bx = x * T(p.a);
      return bx > T(p.b) ? x : std::log1p(std::exp(bx)) / T(p.a);
    }
    case Unary::Mish: return x * mish_tanh_softplus(x);
    case Unary::Clamp: return x < T(p.a) ? T(p.a) : (x > T(p.b) ? T(p.b) : x);
    case Unary::PowScalar: return std::pow(x, T(p.a));
    case Unary::AddScalar: return x + T(p.a);
    case Unary::MulScalar: return x * T(p.a);
    case Unary::RsubScalar: return T(p.a) - x;
    case Unary::RdivScalar: return T(p.a) / x;
    case Unary::Count: break;
  }
  return x;
}

template <class T>
inline T apply_binary(Binary op, T a, T b, KernelParams p = {}) {
  switch (op) {
    case Binary::Add: return a + b;
    case Binary::Sub: return a - b;
    case Binary::Mul: return a * b;
    case Binary::Div: return a / b;
    // NaN propagates, as torch.maximum / torch.minimum.
    case Binary::Max: return a != a ? a : (b != b ? b : (a > b ? a : b));
    case Binary::Min: return a != a ? a : (b != b ? b : (a < b ? a : b));
    case Binary::Pow: return std::pow(a, b);
    case Binary::MaskPositive: return b > T(0) ? a : T(0);
    case Binary::LeakyMask: return b > T(0) ? a : a * T(p.a);
    case Binary::Count: break;
  }
  return a;
}

template <class T>
inline bool apply_compare(Compare op, T a, T b) {
  switch (op) {
    case Compare::Eq: return a == b;
    case Compare::Ne: return a != b;
    case Compare::Lt: return a < b;
    case Compare::Le: return a <= b;
    case Compare::Gt: return a > b;
    case Compare::Ge: return a >= b;
    case Compare::Count: break;
  }
  return false;
}

template <class T>
inline T reduce_identity(Reduce op) {
  switch (op) {
    case Reduce::Prod: return T(1);
    case Reduce::Max: return -std::numeric_limits<T>::infinity();
    case Reduce::Min: return std::numeric_limits<T>::infinity();
    default: return T(0);
  }
}

/// Combines an accumulator with one element.
template <class T>
inline T reduce_step(Reduce op, T acc, T x) {
  switch (op) {
    case Reduce::Sum: return acc + x;
    case Reduce::Prod: return acc * x;
    case Reduce::Max: return apply_binary(Binary::Max, acc, x);
    case Reduce::Min: return apply_binary(Binary::Min, acc, x);
    case Reduce::SumSquares: return acc + x * x;
    case Reduce::Count: break;
  }
  return acc;
}

/// Combines two partial accumulators (SumSquares partials are already squared).
template <class T>
inline T reduce_merge(Reduce op, T a, T b) {
  return op == Reduce::SumSquares ? a + b : reduce_step(op, a, b);
}

}  // namespace ember::backend::scalar
