#pragma once
// Vectorised elementary functions on the packet layer (simd_vec.hpp), each written once as a
// template on the packet type and instantiated for every ISA and for float and double.
//
// Accuracy target: a few ulp of glibc over the whole range (the scalar backend calls glibc and is
// the test oracle), with glibc's special values: NaN in gives NaN out, exp(-inf) = 0,
// exp(+inf) = inf, log(0) = -inf, log(x < 0) = NaN, tanh(+-inf) = +-1, and signed zeros kept
// where the function is odd. The methods are the textbook ones (Cody-Waite argument reduction
// plus a polynomial); the polynomial coefficients are Chebyshev fits made for this file.
//
// Note [Clamping and NaN]
// Arguments are clamped into the range where the reduction is valid as min(hi, max(lo, x)): with
// the packet min/max semantics (Note [Packet min/max]) a NaN x passes through both unchanged, so
// no separate NaN fix-up is needed afterwards.
#include <cstddef>
#include <cstdint>
#include <limits>

#include "simd_vec.hpp"

namespace ember::backend::simd {
namespace {

template <class T>
struct MathConsts;

template <>
struct MathConsts<float> {
  using Bits = uint32_t;
  static constexpr int kMantBits = 23;
  static constexpr float kBias = 127.0f;
  static constexpr Bits kMantMask = 0x007fffffu;
  static constexpr Bits kOneBits = 0x3f800000u;
  static constexpr float kMinNormal = 1.17549435e-38f;
  static constexpr float kLog2e = 1.44269504088896341f;
  // ln2 split so that n * kLn2Hi is exact for every n the reductions produce.
  static constexpr float kLn2Hi = 0.693145751953125f;
  static constexpr float kLn2Lo = 1.42860676533018704e-06f;
  // exp: beyond these e^x is inf or rounds to 0; inside, n = round(x/ln2) keeps both halves of
  // the split scaling 2^n = 2^n1 * 2^n2 normal.
  static constexpr float kExpLo = -105.0f;
  static constexpr float kExpHi = 89.0f;
  // expm1(x) rounds to -1 below this.
  static constexpr float kExpm1Lo = -18.0f;
  // tanh(x) rounds to 1 above this.
  static constexpr float kTanhSat = 10.0f;
  // (e^r - 1 - r) / r^2 on |r| <= ln2/2.
  static constexpr float kExpQ[] = {0.5f, 0.1666666716337204f, 0.04166646674275398f,
                                    0.00833331048488617f, 0.0013933641603216529f,
                                    0.00019890980911441147f};
  // (2 atanh(s) - 2s) / s^3 as a polynomial in z = s^2, |s| <= 3 - 2 sqrt(2).
  static constexpr float kLogP[] = {0.6666666865348816f, 0.4000012278556824f,
                                    0.2855082154273987f, 0.2333046793937683f};
  // erf(x) / x - 1 as a polynomial in x^2 for |x| < kErfSplit.
  static constexpr float kErfSplit = 0.875f;
  static constexpr float kErfA[] = {0.12837916612625122f, -0.37612634897232056f,
                                    0.11283735185861588f, -0.026861706748604774f,
                                    0.00520704872906208f, -0.0008214570698328316f,
                                    8.690368849784136e-05f};
  // erfc(a) e^(a^2) for a in [kErfSplit, kErfSat] as a polynomial in 1/a - kErfBCenter;
  // erf(a) rounds to 1 above kErfSat.
  static constexpr float kErfSat = 3.95f;
  static constexpr float kErfBCenter = 0.6980108618736267f;
  static constexpr float kErfB[] = {0.3329625129699707f,    0.357839971780777f,
                                    -0.1622265726327896f,   0.048420291393995285f,
                                    0.009227069094777107f,  -0.03135334327816963f,
                                    0.032207656651735306f,  -0.01828552596271038f,
                                    0.0025337112601846457f};
  // log Phi(-t) on [0, kGeluSat] (Phi the standard normal CDF), fitted with the error weighted
  // by Phi(-t) + 1e-4: what reaches x Phi(x) is at most 3e-9 |x| (coefficients as rounded here),
  // and e^q keeps about 1e-5 relative accuracy out to the end. Beyond kGeluSat, Phi(-t) < 2^-26.
  static constexpr float kGeluSat = 5.6f;
  static constexpr float kGeluLogPhi[] = {
      -0.6931471824645996f,   -0.7978847026824951f,   -0.3183082342147827f,
      -0.03634268045425415f,  0.004796001594513655f,  2.4624525394756347e-05f,
      -0.0002106508909491822f, 5.945355223957449e-05f, -8.998309567687102e-06f,
      7.534189307989436e-07f, -2.726821968224158e-08f};
};

template <>
struct MathConsts<double> {
  using Bits = uint64_t;
  static constexpr int kMantBits = 52;
  static constexpr double kBias = 1023.0;
  static constexpr Bits kMantMask = 0x000fffffffffffffull;
  static constexpr Bits kOneBits = 0x3ff0000000000000ull;
  static constexpr double kMinNormal = 2.2250738585072014e-308;
  static constexpr double kLog2e = 1.4426950408889634074;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kExpLo = -746.0;
  static constexpr double kExpHi = 710.0;
  static constexpr double kExpm1Lo = -40.0;
  static constexpr double kTanhSat = 20.0;
  static constexpr double kExpQ[] = {
      0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326141,
      0.0013888888888883752, 0.00019841269874800493, 2.4801587325533363e-05,
      2.7557255425746435e-06, 2.7557273661348637e-07, 2.510520637395701e-08,
      2.0914679376583935e-09};
  static constexpr double kLogP[] = {0.6666666666666666,  0.4000000000000088,
                                     0.28571428570803614, 0.22222222391713917,
                                     0.18181795640132906, 0.15386239702814658,
                                     0.13268773138656886, 0.13086626147840102};
  static constexpr double kErfSplit = 0.875;
  static constexpr double kErfA[] = {
      0.12837916709551256, -0.3761263890318304, 0.1128379167091783, -0.026866170637514133,
      0.005223977545559434, -0.0008548322128192329, 0.00012055145523632907,
      -1.492102315426167e-05, 1.6388270378106895e-06, -1.5624735838207127e-07,
      1.0471034556935036e-08};
  // Double needs two pieces for erfc(a) e^(a^2): a polynomial in a - kErfB1Center on
  // [kErfSplit, kErfSplit2] and one in 1/a - kErfB2Center on [kErfSplit2, kErfSat].
  static constexpr double kErfSat = 6.0;
  static constexpr double kErfSplit2 = 2.25;
  static constexpr double kErfB1Center = 1.5625;
  static constexpr double kErfB1[] = {
      0.31164860864813004,    -0.15447726507010617,   0.07027788197608918,
      -0.02977871632164264,   0.011874318861759329,   -0.004490037240128689,
      0.0016195452247403177,  -0.0005598565206414881, 0.00018619235204717872,
      -5.976244899347053e-05, 1.8562711233217963e-05, -5.592342503312099e-06,
      1.6374160406180098e-06, -4.6694565134734697e-07, 1.2977807803663908e-07,
      -3.4844936524791556e-08, 9.251969436804456e-09, -2.7982595439060468e-09,
      7.078821922157328e-10};
  static constexpr double kErfB2Center = 0.3055555555555556;
  static constexpr double kErfB2[] = {
      0.1652692771277047,   0.49929873686946197,  -0.17646176114371323, -0.06912194675212525,
      0.17999910373260347,  -0.1307839769484309,  -0.04618152151568512, 0.24739406550971058,
      -0.3151647690365615,  0.10212188415513863,  0.41558191623946006,  -1.0185899682355082,
      1.1315637305453292,   0.40239434618717385,  -3.0961945232377013};
};

template <class V>
using elem_t = typename V::value_type;

/// c[0] + x * (c[1] + x * (c[2] + ...)), by Horner's rule with FMAs.
template <class V, class T, size_t N>
inline V poly(V x, const T (&c)[N]) {
  V r = c[N - 1];
  for (size_t i = N - 1; i-- > 0;) r = fma(r, x, V(c[i]));
  return r;
}

template <class V>
inline V sign_bit() {
  return V(elem_t<V>(-0.0));
}

template <class V>
inline V infinity() {
  return V(std::numeric_limits<elem_t<V>>::infinity());
}

template <class V>
inline V quiet_nan() {
  return V(std::numeric_limits<elem_t<V>>::quiet_NaN());
}

/// 2^n for integral-valued n with a normal result (n in [1 - bias, bias]).
template <class V>
inline V pow2i(V n) {
  using C = MathConsts<elem_t<V>>;
  // Adding 1.5 * 2^mant puts n + bias in the low mantissa bits; the shift moves exactly those
  // bits into the exponent field and drops the rest.
  using T = elem_t<V>;
  constexpr T kShifter = T(3) * T(typename C::Bits(1) << (C::kMantBits - 1));
  return sll<C::kMantBits>(n + V(kShifter + C::kBias));
}

/// y * 2^n for integral n in roughly [-2 bias, 2 bias]: two steps, so that 2^n itself never has
/// to be representable and a subnormal or overflowing result is rounded only once.
template <class V>
inline V scale2(V y, V n) {
  V n1 = floor(n * V(elem_t<V>(0.5)));
  return y * pow2i(n1) * pow2i(n - n1);
}

/// Cody-Waite reduction: x = n ln2 + r + rc with |r| <= ln2/2 (up to rounding), n integral and
/// rc the (tiny) part of the reduced argument that r could not hold. Keeping rc is what brings
/// exp from ~0.7 to ~0.5 ulp, i.e. in step with glibc's rounding.
template <class V>
inline void reduce_ln2(V x, V& n, V& r, V& rc) {
  using C = MathConsts<elem_t<V>>;
  n = round_even(x * V(C::kLog2e));
  V hi = fnma(n, V(C::kLn2Hi), x);  // exact: n * kLn2Hi has few significant bits
  V lo = -(n * V(C::kLn2Lo));
  r = hi + lo;
  rc = (hi - r) + lo;
}

/// (e^(r + rc) - 1) + t for |r| <= ln2/2, tiny rc and t = 0 or |t| >= 1/2, rounded about once:
/// e^r - 1 is r + r^2 q(r), and r + t is added with its rounding error recovered (Fast2Sum,
/// |t| >= |r|).
template <class V>
inline V expm1_plus(V r, V rc, V t) {
  using C = MathConsts<elem_t<V>>;
  V s = t + r;
  V err = ((t - s) + r) + rc;
  return s + fma(r * r, poly(r, C::kExpQ), err);
}

template <class V>
inline V exp(V x) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  V n, r, rc;
  reduce_ln2(min(V(C::kExpHi), max(V(C::kExpLo), x)), n, r, rc);
  return scale2(expm1_plus(r, rc, V(T(1))), n);
}

/// expm1 without the final signed-zero fix-up; x must already be >= kExpm1Lo (or NaN).
template <class V>
inline V expm1_core(V x) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  V n, r, rc;
  reduce_ln2(min(V(C::kExpHi), x), n, r, rc);
  // e^x - 1 = 2^n (expm1(r) + 1 - 2^-n). 1 - 2^-n is exact for the n that matter; for larger n
  // it only has to round to 1, so the exponent is capped to keep 2^-n representable.
  V m = min(V(T(C::kMantBits + 2)), n);
  return scale2(expm1_plus(r, rc, V(T(1)) - pow2i(-m)), n);
}

template <class V>
inline V expm1(V x) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  V y = expm1_core(max(V(C::kExpm1Lo), x));
  return select(eq(x, V(T(0))), x, y);  // expm1(-0) = -0
}

/// log(u + c) ~= log(u) + c/u - kadj ln2 for finite u > 0 in the normal range and a tiny
/// correction c; kadj undoes a power-of-two prescaling of u.
template <class V>
inline V log_core(V u, V c, V kadj) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  const V one = V(T(1));
  const V two_mant = V(T(typename C::Bits(1) << C::kMantBits));
  // The exponent field as a float: the shifted field fits in the mantissa of 2^mant.
  V e = bor(srl<C::kMantBits>(u), two_mant) - two_mant;
  V m = bor(band(u, V::from_bits(C::kMantMask)), V::from_bits(C::kOneBits));  // [1, 2)
  // Centre the mantissa on 1 ([sqrt(1/2), sqrt(2))) so that s below stays small.
  auto big = gt(m, V(T(1.41421356237309504880)));
  m = select(big, m * V(T(0.5)), m);
  V k = e - (V(C::kBias) + kadj) + select(big, one, V(T(0)));
  V f = m - one;                // exact
  V s = f / (V(T(2)) + f);      // log1p(f) = 2 atanh(s)
  V z = s * s;
  V hfsq = V(T(0.5)) * f * f;
  V r = z * poly(z, C::kLogP);
  V lo = fma(k, V(C::kLn2Lo), c / u);
  // log1p(f) = f - hfsq + s (hfsq + r), small terms summed first.
  return fma(k, V(C::kLn2Hi), f - (hfsq - fma(s, hfsq + r, lo)));
}

template <class V>
inline V log(V x) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  const V zero = V(T(0));
  // Subnormals: scale into the normal range and take the scale back out of the exponent.
  auto tiny = lt(x, V(C::kMinNormal));
  constexpr T kScale = T(typename C::Bits(1) << (C::kMantBits + 1));
  V u = select(tiny, x * V(kScale), x);
  V y = log_core(u, zero, select(tiny, V(T(C::kMantBits + 1)), zero));
  y = select(eq(x, infinity<V>()), x, y);
  y = select(eq(x, zero), -infinity<V>(), y);
  y = select(lt(x, zero), quiet_nan<V>(), y);
  return select(is_nan(x), x, y);
}

template <class V>
inline V log1p(V x) {
  using T = elem_t<V>;
  const V one = V(T(1));
  const V zero = V(T(0));
  V u = one + x;
  // c is the rounding error of u = 1 + x, computed exactly (both branches are exact
  // subtractions in the range where they are used), so that log1p(x) = log(u + c).
  V c = select(ge(x, one), one - (u - x), x - (u - one));
  V y = log_core(select(gt(u, zero), u, one), c, zero);
  y = select(eq(x, infinity<V>()), x, y);
  y = select(eq(u, zero), -infinity<V>(), y);
  y = select(lt(u, zero), quiet_nan<V>(), y);
  y = select(eq(x, zero), x, y);  // log1p(-0) = -0
  return select(is_nan(x), x, y);
}

template <class V>
inline V tanh(V x) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  const V one = V(T(1));
  const V two = V(T(2));
  // tanh|x| = t / (t + 2) with t = expm1(2|x|): no cancellation for small |x|, and t stays
  // finite below the saturation point, where the quotient already rounds to 1. Each rounding
  // step costs up to an ulp here, so t is kept as an unrounded pair th + tl and the quotient is
  // corrected with the exact rounding errors of t + 2 and of the division.
  V a = min(V(C::kTanhSat), abs(x));
  V n, r, rc;
  reduce_ln2(a + a, n, r, rc);
  V tt = one - pow2i(-min(V(T(C::kMantBits + 2)), n));  // see expm1_core
  V s = tt + r;
  V lo = fma(r * r, poly(r, C::kExpQ), ((tt - s) + r) + rc);
  V hi = s + lo;  // renormalise (|s| >= |lo|)
  lo = (s - hi) + lo;
  V p = pow2i(n);  // n <= 2 kTanhSat / ln2: a normal power of two, so both scalings are exact
  V th = hi * p;
  V tl = lo * p;
  V d = th + two;
  V d_lo = ((max(th, two) - d) + min(th, two)) + tl;
  V q = th / d;
  V rem = fnma(q, d_lo, fnma(q, d, th) + tl);
  V y = q + rem / d;
  return bor(y, band(x, sign_bit<V>()));
}

template <class V>
inline V sigmoid(V x) {
  using T = elem_t<V>;
  // The scalar definition, 1 / (1 + e^-x); e^-x = inf gives the right limit 0.
  return V(T(1)) / (V(T(1)) + exp(-x));
}

/// Exact GELU, x Phi(x), for float (Note [GELU accuracy]): Phi(-|x|) = e^q(|x|) with q the
/// fitted log Phi(-t), and Phi(x) = 1 - Phi(-x) for x >= 0. One short exponential and no
/// division or second branch, where 1 + erf(x / sqrt2) needs both erf pieces on every packet
/// of mixed signs: 1M floats in 859 -> 556 us. q stays in [-19, -ln2], so e^q needs no range
/// checks and its scaling 2^n is a single normal power of two.
template <class V>
inline V gelu_float(V x) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  static_assert(sizeof(T) == 4);
  const V a = abs(x);
  const V q = poly(min(a, V(C::kGeluSat)), C::kGeluLogPhi);
  const V n = round_even(q * V(C::kLog2e));
  const V r = fnma(n, V(C::kLn2Lo), fnma(n, V(C::kLn2Hi), q));
  V e = (fma(r * r, poly(r, C::kExpQ), r) + V(T(1))) * pow2i(n);
  e = select(ge(a, V(C::kGeluSat)), V(T(0)), e);
  return x * select(lt(x, V(T(0))), e, V(T(1)) - e);
}

/// erfc(a) e^(a^2) for a >= kErfSplit.
template <class V>
inline V erfc_scaled_tail(V a) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  if constexpr (sizeof(T) == 4) {
    return poly(V(T(1)) / a - V(C::kErfBCenter), C::kErfB);
  } else {
    auto far = ge(a, V(C::kErfSplit2));
    V near_part = poly(a - V(C::kErfB1Center), C::kErfB1);
    if (!any(far)) return near_part;
    V far_part = poly(V(T(1)) / a - V(C::kErfB2Center), C::kErfB2);
    return select(far, far_part, near_part);
  }
}

template <class V>
inline V erf(V x) {
  using T = elem_t<V>;
  using C = MathConsts<T>;
  V a = min(V(C::kErfSat), abs(x));  // erf rounds to 1 beyond kErfSat
  auto tail = ge(a, V(C::kErfSplit));
  // Near 0: erf(a) = a + a * p(a^2).
  V y = fma(a, poly(a * a, C::kErfA), a);
  if (any(tail)) {
    // Away from 0: erf(a) = 1 - e^(-a^2) * (erfc(a) e^(a^2)). a^2 is split into hi + lo so
    // that its rounding error does not reach the exponential.
    V a2 = a * a;
    V a2_lo = fma(a, a, -a2);
    V e = exp(-a2);
    e = fnma(e, a2_lo, e);  // e^(-a2 - a2_lo) ~= e^(-a2) (1 - a2_lo)
    V t = fnma(e, erfc_scaled_tail(a), V(T(1)));
    y = select(tail, t, y);
  }
  return bor(y, band(x, sign_bit<V>()));
}

}  // namespace
}  // namespace ember::backend::simd
