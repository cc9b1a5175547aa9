#pragma once
// A small packet layer for the CPU kernels: one type per (ISA, element type) with the same
// interface, so each kernel and each math function is written once as a template on the packet.
//
//   Scalar<T>            portable, one lane (always available; used by tests and non-x86 builds)
//   F32x8,  F64x4        AVX2 + FMA   (when the translation unit is compiled with -mavx2 -mfma)
//   F32x16, F64x8        AVX-512 F/DQ/BW/VL
//   F32x4,  F64x2        aarch64 Advanced SIMD (NEON), when the translation unit defines
//                        EMBER_NEON_PACKETS (the NEON table's; the scalar one stays scalar)
//
// Every packet P with element type T provides:
//   P(T) broadcasts; P::load / load_n / store / store_n (the _n forms touch only the first n
//   lanes, n <= kWidth, and read zeros into the others); P::first_n(n), the mask of those lanes;
//   + - * / and unary -; fma, fnma; min, max; sqrt, abs, floor, ceil, round_even;
//   lt le gt ge eq ne is_nan -> P::Mask; select; any, all, mask_bits; bitwise ops; from_bits,
//   srl<K>, sll<K> (lane-wise logical shifts of the bit pattern); no_contract; horizontal
//   reductions; masks from / to 0-1 bytes (for compare and where).
//   deinterleave(lo, hi, even, odd): the even- and odd-indexed lanes of the 2 * kWidth lanes of lo
//   then hi; interleave(even, odd, lo, hi), its inverse.
//
// Note [Packet min/max]
// min(a, b) is `a < b ? a : b` and max(a, b) is `a > b ? a : b`, lane-wise: exactly what
// minps/maxps compute, NaNs included (a NaN in either operand yields b). Kernels rely on the
// operand order to reproduce the scalar definitions bit for bit, e.g. relu(x) = max(0, x) keeps
// NaN and -0 like `x < 0 ? 0 : x`.
//
// Note [Contraction]
// g++ contracts a*b + c into an FMA even across intrinsics (-ffp-contract=fast is its default
// for C++), and the scalar backend, built with -ffp-contract=off (and on x86-64 without -mfma),
// never does. Where a kernel must round
// the product separately to match the scalar result bit for bit it passes the product through
// no_contract(), an empty asm that hides the value from the optimiser.
#include <cstdint>
#include <cstring>

#include <cmath>

#if defined(__AVX2__) || defined(__AVX512F__)
// g++ 12 reports -W(maybe-)uninitialized from inside its own AVX-512 intrinsics (the
// _mm512_undefined_* idiom, GCC PR105593); the diagnostic is located in the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
#if defined(EMBER_NEON_PACKETS)
#include <arm_neon.h>
#endif

namespace ember::backend::simd {
// Internal linkage on purpose: each ISA's translation unit compiles these with its own target
// flags, and if the linker merged inline copies across them (as it does for `inline` functions
// with external linkage) an AVX2-only CPU could end up running an AVX-512 copy.
namespace {

template <class T>
struct BitsOf;
template <>
struct BitsOf<float> {
  using type = uint32_t;
};
template <>
struct BitsOf<double> {
  using type = uint64_t;
};

template <class To, class From>
inline To bit_cast(From f) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  std::memcpy(&t, &f, sizeof(To));
  return t;
}

// ------------------------------------------------------------------------------------------------
// Scalar<T>: one lane, plain C++.
template <class T>
struct Scalar {
  using value_type = T;
  using Bits = typename BitsOf<T>::type;
  static constexpr int kWidth = 1;
  struct Mask {
    bool m;
    friend Mask operator&(Mask a, Mask b) { return {a.m && b.m}; }
    friend Mask operator|(Mask a, Mask b) { return {a.m || b.m}; }
    friend Mask operator~(Mask a) { return {!a.m}; }
  };
  T v;

  Scalar() = default;
  Scalar(T x) : v(x) {}  // NOLINT: implicit broadcast keeps formulas readable
  static Scalar from_bits(Bits b) { return bit_cast<T>(b); }
  static Scalar load(const T* p) { return *p; }
  static Scalar load_n(const T* p, int n) { return n > 0 ? *p : T(0); }
  static Mask first_n(int n) { return {n > 0}; }
  void store(T* p) const { *p = v; }
  void store_n(T* p, int n) const {
    if (n > 0) *p = v;
  }

  friend Scalar operator+(Scalar a, Scalar b) { return a.v + b.v; }
  friend Scalar operator-(Scalar a, Scalar b) { return a.v - b.v; }
  friend Scalar operator*(Scalar a, Scalar b) { return a.v * b.v; }
  friend Scalar operator/(Scalar a, Scalar b) { return a.v / b.v; }
  friend Scalar operator-(Scalar a) { return -a.v; }
  friend Scalar fma(Scalar a, Scalar b, Scalar c) { return std::fma(a.v, b.v, c.v); }
  friend Scalar fnma(Scalar a, Scalar b, Scalar c) { return std::fma(-a.v, b.v, c.v); }
  friend Scalar min(Scalar a, Scalar b) { return a.v < b.v ? a.v : b.v; }
  friend Scalar max(Scalar a, Scalar b) { return a.v > b.v ? a.v : b.v; }
  friend Scalar sqrt(Scalar a) { return std::sqrt(a.v); }
  friend Scalar abs(Scalar a) { return std::fabs(a.v); }
  friend Scalar floor(Scalar a) {
    return std::floor(a.v);
  }
  friend Scalar ceil(Scalar a) {
    return std::ceil(a.v);
  }
  friend Scalar round_even(Scalar a) {
    return std::nearbyint(a.v);
  }
  friend Mask lt(Scalar a, Scalar b) { return {a.v < b.v}; }
  friend Mask le(Scalar a, Scalar b) { return {a.v <= b.v}; }
  friend Mask gt(Scalar a, Scalar b) { return {a.v > b.v}; }
  friend Mask ge(Scalar a, Scalar b) { return {a.v >= b.v}; }
  friend Mask eq(Scalar a, Scalar b) { return {a.v == b.v}; }
  friend Mask ne(Scalar a, Scalar b) { return {a.v != b.v}; }
  friend Mask is_nan(Scalar a) { return {a.v != a.v}; }
  friend Scalar select(Mask m, Scalar a, Scalar b) { return m.m ? a : b; }
  friend bool any(Mask m) { return m.m; }
  friend bool all(Mask m) { return m.m; }
  friend uint32_t mask_bits(Mask m) { return m.m ? 1u : 0u; }
  friend Scalar band(Scalar a, Scalar b) { return from_bits(bits(a) & bits(b)); }
  friend Scalar bor(Scalar a, Scalar b) { return from_bits(bits(a) | bits(b)); }
  friend Scalar bxor(Scalar a, Scalar b) { return from_bits(bits(a) ^ bits(b)); }
  friend Scalar bandnot(Scalar a, Scalar b) { return from_bits(~bits(a) & bits(b)); }
  friend void deinterleave(Scalar lo, Scalar hi, Scalar& even, Scalar& odd) {
    even = lo;
    odd = hi;
  }
  friend void interleave(Scalar even, Scalar odd, Scalar& lo, Scalar& hi) {
    lo = even;
    hi = odd;
  }
  template <int K>
  static Scalar shr(Scalar a) {
    return from_bits(bits(a) >> K);
  }
  template <int K>
  static Scalar shl(Scalar a) {
    return from_bits(bits(a) << K);
  }
  friend Scalar no_contract(Scalar a) {
    volatile T t = a.v;  // portable stand-in for the asm barrier of the x86 packets
    return T(t);
  }
  friend T reduce_add(Scalar a) { return a.v; }
  friend T reduce_mul(Scalar a) { return a.v; }
  friend T reduce_max(Scalar a) { return a.v; }
  friend T reduce_min(Scalar a) { return a.v; }
  static Mask nonzero_bytes(const uint8_t* c) { return {*c != 0}; }
  static Mask nonzero_bytes_n(const uint8_t* c, int n) { return {n > 0 && *c != 0}; }
  static void store_bytes01(uint8_t* y, Mask m) { *y = m.m ? 1 : 0; }
  static void store_bytes01_n(uint8_t* y, Mask m, int n) {
    if (n > 0) *y = m.m ? 1 : 0;
  }

 private:
  static Bits bits(Scalar a) { return bit_cast<Bits>(a.v); }
};

#if defined(__AVX2__) && defined(__FMA__)
// ------------------------------------------------------------------------------------------------
// AVX2: 8 floats / 4 doubles; masks are all-ones lanes in a vector register.

// Lane-index vectors for building tail masks.
inline __m256i avx2_tail_mask32(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i avx2_tail_mask64(int n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

struct F32x8 {
  using value_type = float;
  using Bits = uint32_t;
  static constexpr int kWidth = 8;
  struct Mask {
    __m256 m;
    friend Mask operator&(Mask a, Mask b) { return {_mm256_and_ps(a.m, b.m)}; }
    friend Mask operator|(Mask a, Mask b) { return {_mm256_or_ps(a.m, b.m)}; }
    friend Mask operator~(Mask a) {
      return {_mm256_xor_ps(a.m, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))};
    }
  };
  __m256 v;

  F32x8() = default;
  F32x8(__m256 r) : v(r) {}                     // NOLINT
  F32x8(float x) : v(_mm256_set1_ps(x)) {}      // NOLINT
  static F32x8 from_bits(Bits b) { return _mm256_castsi256_ps(_mm256_set1_epi32(int32_t(b))); }
  static F32x8 load(const float* p) { return _mm256_loadu_ps(p); }
  static F32x8 load_n(const float* p, int n) { return _mm256_maskload_ps(p, avx2_tail_mask32(n)); }
  static Mask first_n(int n) { return {_mm256_castsi256_ps(avx2_tail_mask32(n))}; }
  // Lanes outside the mask are 0 and not read (vmaskmovps does not fault on them).
  static F32x8 load_masked(const float* p, Mask m) { return _mm256_maskload_ps(p, _mm256_castps_si256(m.m)); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store_n(float* p, int n) const { _mm256_maskstore_ps(p, avx2_tail_mask32(n), v); }

  friend F32x8 operator+(F32x8 a, F32x8 b) { return _mm256_add_ps(a.v, b.v); }
  friend F32x8 operator-(F32x8 a, F32x8 b) { return _mm256_sub_ps(a.v, b.v); }
  friend F32x8 operator*(F32x8 a, F32x8 b) { return _mm256_mul_ps(a.v, b.v); }
  friend F32x8 operator/(F32x8 a, F32x8 b) { return _mm256_div_ps(a.v, b.v); }
  friend F32x8 operator-(F32x8 a) { return _mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f)); }
  friend F32x8 fma(F32x8 a, F32x8 b, F32x8 c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
  friend F32x8 fnma(F32x8 a, F32x8 b, F32x8 c) { return _mm256_fnmadd_ps(a.v, b.v, c.v); }
  friend F32x8 min(F32x8 a, F32x8 b) { return _mm256_min_ps(a.v, b.v); }
  friend F32x8 max(F32x8 a, F32x8 b) { return _mm256_max_ps(a.v, b.v); }
  friend F32x8 sqrt(F32x8 a) { return _mm256_sqrt_ps(a.v); }
  friend F32x8 abs(F32x8 a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v); }
  friend F32x8 floor(F32x8 a) {
    return _mm256_round_ps(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  friend F32x8 ceil(F32x8 a) {
    return _mm256_round_ps(a.v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
  }
  friend F32x8 round_even(F32x8 a) {
    return _mm256_round_ps(a.v, _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
  }
  friend Mask lt(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
  friend Mask le(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
  friend Mask gt(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
  friend Mask ge(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
  friend Mask eq(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
  friend Mask ne(F32x8 a, F32x8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ)}; }
  friend Mask is_nan(F32x8 a) { return {_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }
  friend F32x8 select(Mask m, F32x8 a, F32x8 b) { return _mm256_blendv_ps(b.v, a.v, m.m); }
  friend bool any(Mask m) { return _mm256_movemask_ps(m.m) != 0; }
  friend bool all(Mask m) { return _mm256_movemask_ps(m.m) == 0xff; }
  friend uint32_t mask_bits(Mask m) { return uint32_t(_mm256_movemask_ps(m.m)); }
  friend F32x8 band(F32x8 a, F32x8 b) { return _mm256_and_ps(a.v, b.v); }
  friend F32x8 bor(F32x8 a, F32x8 b) { return _mm256_or_ps(a.v, b.v); }
  friend F32x8 bxor(F32x8 a, F32x8 b) { return _mm256_xor_ps(a.v, b.v); }
  friend F32x8 bandnot(F32x8 a, F32x8 b) { return _mm256_andnot_ps(a.v, b.v); }
  friend void deinterleave(F32x8 lo, F32x8 hi, F32x8& even, F32x8& odd) {
    const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // evens low, odds high
    const __m256 a = _mm256_permutevar8x32_ps(lo.v, split), b = _mm256_permutevar8x32_ps(hi.v, split);
    even = _mm256_permute2f128_ps(a, b, 0x20);
    odd = _mm256_permute2f128_ps(a, b, 0x31);
  }
  friend void interleave(F32x8 even, F32x8 odd, F32x8& lo, F32x8& hi) {
    const __m256 a = _mm256_unpacklo_ps(even.v, odd.v), b = _mm256_unpackhi_ps(even.v, odd.v);
    lo = _mm256_permute2f128_ps(a, b, 0x20);
    hi = _mm256_permute2f128_ps(a, b, 0x31);
  }
  template <int K>
  static F32x8 shr(F32x8 a) {
    return _mm256_castsi256_ps(_mm256_srli_epi32(_mm256_castps_si256(a.v), K));
  }
  template <int K>
  static F32x8 shl(F32x8 a) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a.v), K));
  }
  friend F32x8 no_contract(F32x8 a) {
    __asm__("" : "+x"(a.v));
    return a;
  }
  friend float reduce_add(F32x8 a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  friend float reduce_mul(F32x8 a) {
    __m128 s = _mm_mul_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_mul_ps(s, _mm_movehl_ps(s, s));
    s = _mm_mul_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  friend float reduce_max(F32x8 a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  friend float reduce_min(F32x8 a) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static Mask nonzero_bytes(const uint8_t* c) {
    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
    return {_mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()))};
  }
  static Mask nonzero_bytes_n(const uint8_t* c, int n) {
    uint8_t buf[8] = {};
    std::memcpy(buf, c, size_t(n));
    return nonzero_bytes(buf);
  }
  static void store_bytes01(uint8_t* y, Mask m) {
    __m256i w = _mm256_castps_si256(m.m);
    __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    __m128i b = _mm_and_si128(_mm_packs_epi16(h, h), _mm_set1_epi8(1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y), b);
  }
  static void store_bytes01_n(uint8_t* y, Mask m, int n) {
    uint8_t buf[8];
    store_bytes01(buf, m);
    std::memcpy(y, buf, size_t(n));
  }
};

struct F64x4 {
  using value_type = double;
  using Bits = uint64_t;
  static constexpr int kWidth = 4;
  struct Mask {
    __m256d m;
    friend Mask operator&(Mask a, Mask b) { return {_mm256_and_pd(a.m, b.m)}; }
    friend Mask operator|(Mask a, Mask b) { return {_mm256_or_pd(a.m, b.m)}; }
    friend Mask operator~(Mask a) {
      return {_mm256_xor_pd(a.m, _mm256_castsi256_pd(_mm256_set1_epi32(-1)))};
    }
  };
  __m256d v;

  F64x4() = default;
  F64x4(__m256d r) : v(r) {}                    // NOLINT
  F64x4(double x) : v(_mm256_set1_pd(x)) {}     // NOLINT
  static F64x4 from_bits(Bits b) { return _mm256_castsi256_pd(_mm256_set1_epi64x(int64_t(b))); }
  static F64x4 load(const double* p) { return _mm256_loadu_pd(p); }
  static F64x4 load_n(const double* p, int n) { return _mm256_maskload_pd(p, avx2_tail_mask64(n)); }
  static Mask first_n(int n) { return {_mm256_castsi256_pd(avx2_tail_mask64(n))}; }
  static F64x4 load_masked(const double* p, Mask m) { return _mm256_maskload_pd(p, _mm256_castpd_si256(m.m)); }
  void store(double* p) const { _mm256_storeu_pd(p, v); }
  void store_n(double* p, int n) const { _mm256_maskstore_pd(p, avx2_tail_mask64(n), v); }

  friend F64x4 operator+(F64x4 a, F64x4 b) { return _mm256_add_pd(a.v, b.v); }
  friend F64x4 operator-(F64x4 a, F64x4 b) { return _mm256_sub_pd(a.v, b.v); }
  friend F64x4 operator*(F64x4 a, F64x4 b) { return _mm256_mul_pd(a.v, b.v); }
  friend F64x4 operator/(F64x4 a, F64x4 b) { return _mm256_div_pd(a.v, b.v); }
  friend F64x4 operator-(F64x4 a) { return _mm256_xor_pd(a.v, _mm256_set1_pd(-0.0)); }
  friend F64x4 fma(F64x4 a, F64x4 b, F64x4 c) { return _mm256_fmadd_pd(a.v, b.v, c.v); }
  friend F64x4 fnma(F64x4 a, F64x4 b, F64x4 c) { return _mm256_fnmadd_pd(a.v, b.v, c.v); }
  friend F64x4 min(F64x4 a, F64x4 b) { return _mm256_min_pd(a.v, b.v); }
  friend F64x4 max(F64x4 a, F64x4 b) { return _mm256_max_pd(a.v, b.v); }
  friend F64x4 sqrt(F64x4 a) { return _mm256_sqrt_pd(a.v); }
  friend F64x4 abs(F64x4 a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v); }
  friend F64x4 floor(F64x4 a) {
    return _mm256_round_pd(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  friend F64x4 ceil(F64x4 a) {
    return _mm256_round_pd(a.v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
  }
  friend F64x4 round_even(F64x4 a) {
    return _mm256_round_pd(a.v, _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
  }
  friend Mask lt(F64x4 a, F64x4 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ)}; }
  friend Mask le(F64x4 a, F64x4 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_LE_OQ)}; }
  friend Mask gt(F64x4 a, F64x4 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ)}; }
  friend Mask ge(F64x4 a, F64x4 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_GE_OQ)}; }
  friend Mask eq(F64x4 a, F64x4 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_EQ_OQ)}; }
  friend Mask ne(F64x4 a, F64x4 b) { return {_mm256_cmp_pd(a.v, b.v, _CMP_NEQ_UQ)}; }
  friend Mask is_nan(F64x4 a) { return {_mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q)}; }
  friend F64x4 select(Mask m, F64x4 a, F64x4 b) { return _mm256_blendv_pd(b.v, a.v, m.m); }
  friend bool any(Mask m) { return _mm256_movemask_pd(m.m) != 0; }
  friend bool all(Mask m) { return _mm256_movemask_pd(m.m) == 0xf; }
  friend uint32_t mask_bits(Mask m) { return uint32_t(_mm256_movemask_pd(m.m)); }
  friend F64x4 band(F64x4 a, F64x4 b) { return _mm256_and_pd(a.v, b.v); }
  friend F64x4 bor(F64x4 a, F64x4 b) { return _mm256_or_pd(a.v, b.v); }
  friend F64x4 bxor(F64x4 a, F64x4 b) { return _mm256_xor_pd(a.v, b.v); }
  friend F64x4 bandnot(F64x4 a, F64x4 b) { return _mm256_andnot_pd(a.v, b.v); }
  friend void deinterleave(F64x4 lo, F64x4 hi, F64x4& even, F64x4& odd) {
    even = _mm256_permute4x64_pd(_mm256_unpacklo_pd(lo.v, hi.v), 0xd8);
    odd = _mm256_permute4x64_pd(_mm256_unpackhi_pd(lo.v, hi.v), 0xd8);
  }
  friend void interleave(F64x4 even, F64x4 odd, F64x4& lo, F64x4& hi) {
    const __m256d a = _mm256_unpacklo_pd(even.v, odd.v), b = _mm256_unpackhi_pd(even.v, odd.v);
    lo = _mm256_permute2f128_pd(a, b, 0x20);
    hi = _mm256_permute2f128_pd(a, b, 0x31);
  }
  template <int K>
  static F64x4 shr(F64x4 a) {
    return _mm256_castsi256_pd(_mm256_srli_epi64(_mm256_castpd_si256(a.v), K));
  }
  template <int K>
  static F64x4 shl(F64x4 a) {
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(a.v), K));
  }
  friend F64x4 no_contract(F64x4 a) {
    __asm__("" : "+x"(a.v));
    return a;
  }
  friend double reduce_add(F64x4 a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  friend double reduce_mul(F64x4 a) {
    __m128d s = _mm_mul_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_mul_sd(s, _mm_unpackhi_pd(s, s)));
  }
  friend double reduce_max(F64x4 a) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
  }
  friend double reduce_min(F64x4 a) {
    __m128d s = _mm_min_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_min_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static Mask nonzero_bytes(const uint8_t* c) {
    int32_t four;
    std::memcpy(&four, c, 4);
    __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(four));
    return {_mm256_castsi256_pd(_mm256_cmpgt_epi64(w, _mm256_setzero_si256()))};
  }
  static Mask nonzero_bytes_n(const uint8_t* c, int n) {
    uint8_t buf[4] = {};
    std::memcpy(buf, c, size_t(n));
    return nonzero_bytes(buf);
  }
  static void store_bytes01(uint8_t* y, Mask m) {
    const uint32_t b = uint32_t(_mm256_movemask_pd(m.m));
    // One bit per lane -> one byte per lane (little-endian byte order, as on every x86).
    const uint32_t w = (b & 1u) | ((b & 2u) << 7) | ((b & 4u) << 14) | ((b & 8u) << 21);
    std::memcpy(y, &w, 4);
  }
  static void store_bytes01_n(uint8_t* y, Mask m, int n) {
    uint8_t buf[4];
    store_bytes01(buf, m);
    std::memcpy(y, buf, size_t(n));
  }
};
#endif  // __AVX2__ && __FMA__

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// ------------------------------------------------------------------------------------------------
// AVX-512: 16 floats / 8 doubles; masks are k-registers.

template <class K>
struct KMask {
  K m;
  friend KMask operator&(KMask a, KMask b) { return {K(a.m & b.m)}; }
  friend KMask operator|(KMask a, KMask b) { return {K(a.m | b.m)}; }
  friend KMask operator~(KMask a) { return {K(~a.m)}; }
  friend bool any(KMask a) { return a.m != 0; }
  friend bool all(KMask a) { return a.m == K(~K(0)); }
  friend uint32_t mask_bits(KMask a) { return a.m; }
};

struct F32x16 {
  using value_type = float;
  using Bits = uint32_t;
  static constexpr int kWidth = 16;
  using Mask = KMask<__mmask16>;
  __m512 v;

  F32x16() = default;
  F32x16(__m512 r) : v(r) {}                    // NOLINT
  F32x16(float x) : v(_mm512_set1_ps(x)) {}     // NOLINT
  static __mmask16 tail(int n) { return __mmask16((1u << n) - 1u); }
  static F32x16 from_bits(Bits b) { return _mm512_castsi512_ps(_mm512_set1_epi32(int32_t(b))); }
  static F32x16 load(const float* p) { return _mm512_loadu_ps(p); }
  static F32x16 load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(tail(n), p); }
  static Mask first_n(int n) { return {tail(n)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_n(float* p, int n) const { _mm512_mask_storeu_ps(p, tail(n), v); }
  // Masked-off lanes are neither read (they load as 0) nor written, and cannot fault.
  static F32x16 load_masked(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m.m, p); }
  void store_masked(float* p, Mask m) const { _mm512_mask_storeu_ps(p, m.m, v); }

  friend F32x16 operator+(F32x16 a, F32x16 b) { return _mm512_add_ps(a.v, b.v); }
  friend F32x16 operator-(F32x16 a, F32x16 b) { return _mm512_sub_ps(a.v, b.v); }
  friend F32x16 operator*(F32x16 a, F32x16 b) { return _mm512_mul_ps(a.v, b.v); }
  friend F32x16 operator/(F32x16 a, F32x16 b) { return _mm512_div_ps(a.v, b.v); }
  friend F32x16 operator-(F32x16 a) { return _mm512_xor_ps(a.v, _mm512_set1_ps(-0.0f)); }
  friend F32x16 fma(F32x16 a, F32x16 b, F32x16 c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
  friend F32x16 fnma(F32x16 a, F32x16 b, F32x16 c) { return _mm512_fnmadd_ps(a.v, b.v, c.v); }
  friend F32x16 min(F32x16 a, F32x16 b) { return _mm512_min_ps(a.v, b.v); }
  friend F32x16 max(F32x16 a, F32x16 b) { return _mm512_max_ps(a.v, b.v); }
  friend F32x16 sqrt(F32x16 a) { return _mm512_sqrt_ps(a.v); }
  friend F32x16 abs(F32x16 a) { return _mm512_andnot_ps(_mm512_set1_ps(-0.0f), a.v); }
  friend F32x16 floor(F32x16 a) {
    return _mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  friend F32x16 ceil(F32x16 a) {
    return _mm512_roundscale_ps(a.v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
  }
  friend F32x16 round_even(F32x16 a) {
    return _mm512_roundscale_ps(a.v, _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
  }
  friend Mask lt(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
  friend Mask le(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
  friend Mask gt(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
  friend Mask ge(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
  friend Mask eq(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
  friend Mask ne(F32x16 a, F32x16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_NEQ_UQ)}; }
  friend Mask is_nan(F32x16 a) { return {_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q)}; }
  friend F32x16 select(Mask m, F32x16 a, F32x16 b) { return _mm512_mask_blend_ps(m.m, b.v, a.v); }
  friend F32x16 band(F32x16 a, F32x16 b) { return _mm512_and_ps(a.v, b.v); }
  friend F32x16 bor(F32x16 a, F32x16 b) { return _mm512_or_ps(a.v, b.v); }
  friend F32x16 bxor(F32x16 a, F32x16 b) { return _mm512_xor_ps(a.v, b.v); }
  friend F32x16 bandnot(F32x16 a, F32x16 b) { return _mm512_andnot_ps(a.v, b.v); }
  friend void deinterleave(F32x16 lo, F32x16 hi, F32x16& even, F32x16& odd) {
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    even = _mm512_permutex2var_ps(lo.v, e, hi.v);
    odd = _mm512_permutex2var_ps(lo.v, _mm512_add_epi32(e, _mm512_set1_epi32(1)), hi.v);
  }
  friend void interleave(F32x16 even, F32x16 odd, F32x16& lo, F32x16& hi) {
    const __m512i l = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    lo = _mm512_permutex2var_ps(even.v, l, odd.v);
    hi = _mm512_permutex2var_ps(even.v, _mm512_add_epi32(l, _mm512_set1_epi32(8)), odd.v);
  }
  template <int K>
  static F32x16 shr(F32x16 a) {
    return _mm512_castsi512_ps(_mm512_srli_epi32(_mm512_castps_si512(a.v), K));
  }
  template <int K>
  static F32x16 shl(F32x16 a) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(a.v), K));
  }
  friend F32x16 no_contract(F32x16 a) {
    __asm__("" : "+v"(a.v));
    return a;
  }
  friend float reduce_add(F32x16 a) { return _mm512_reduce_add_ps(a.v); }
  friend float reduce_mul(F32x16 a) { return _mm512_reduce_mul_ps(a.v); }
  friend float reduce_max(F32x16 a) { return _mm512_reduce_max_ps(a.v); }
  friend float reduce_min(F32x16 a) { return _mm512_reduce_min_ps(a.v); }
  static Mask nonzero_bytes(const uint8_t* c) {
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
    return {_mm_test_epi8_mask(b, b)};
  }
  static Mask nonzero_bytes_n(const uint8_t* c, int n) {
    __m128i b = _mm_maskz_loadu_epi8(tail(n), c);
    return {_mm_test_epi8_mask(b, b)};
  }
  static void store_bytes01(uint8_t* y, Mask m) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), _mm_maskz_set1_epi8(m.m, 1));
  }
  static void store_bytes01_n(uint8_t* y, Mask m, int n) {
    _mm_mask_storeu_epi8(y, tail(n), _mm_maskz_set1_epi8(m.m, 1));
  }
};

struct F64x8 {
  using value_type = double;
  using Bits = uint64_t;
  static constexpr int kWidth = 8;
  using Mask = KMask<__mmask8>;
  __m512d v;

  F64x8() = default;
  F64x8(__m512d r) : v(r) {}                    // NOLINT
  F64x8(double x) : v(_mm512_set1_pd(x)) {}     // NOLINT
  static __mmask8 tail(int n) { return __mmask8((1u << n) - 1u); }
  static F64x8 from_bits(Bits b) { return _mm512_castsi512_pd(_mm512_set1_epi64(int64_t(b))); }
  static F64x8 load(const double* p) { return _mm512_loadu_pd(p); }
  static F64x8 load_n(const double* p, int n) { return _mm512_maskz_loadu_pd(tail(n), p); }
  static Mask first_n(int n) { return {tail(n)}; }
  void store(double* p) const { _mm512_storeu_pd(p, v); }
  void store_n(double* p, int n) const { _mm512_mask_storeu_pd(p, tail(n), v); }
  static F64x8 load_masked(const double* p, Mask m) { return _mm512_maskz_loadu_pd(m.m, p); }
  void store_masked(double* p, Mask m) const { _mm512_mask_storeu_pd(p, m.m, v); }

  friend F64x8 operator+(F64x8 a, F64x8 b) { return _mm512_add_pd(a.v, b.v); }
  friend F64x8 operator-(F64x8 a, F64x8 b) { return _mm512_sub_pd(a.v, b.v); }
  friend F64x8 operator*(F64x8 a, F64x8 b) { return _mm512_mul_pd(a.v, b.v); }
  friend F64x8 operator/(F64x8 a, F64x8 b) { return _mm512_div_pd(a.v, b.v); }
  friend F64x8 operator-(F64x8 a) { return _mm512_xor_pd(a.v, _mm512_set1_pd(-0.0)); }
  friend F64x8 fma(F64x8 a, F64x8 b, F64x8 c) { return _mm512_fmadd_pd(a.v, b.v, c.v); }
  friend F64x8 fnma(F64x8 a, F64x8 b, F64x8 c) { return _mm512_fnmadd_pd(a.v, b.v, c.v); }
  friend F64x8 min(F64x8 a, F64x8 b) { return _mm512_min_pd(a.v, b.v); }
  friend F64x8 max(F64x8 a, F64x8 b) { return _mm512_max_pd(a.v, b.v); }
  friend F64x8 sqrt(F64x8 a) { return _mm512_sqrt_pd(a.v); }
  friend F64x8 abs(F64x8 a) { return _mm512_andnot_pd(_mm512_set1_pd(-0.0), a.v); }
  friend F64x8 floor(F64x8 a) {
    return _mm512_roundscale_pd(a.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  friend F64x8 ceil(F64x8 a) {
    return _mm512_roundscale_pd(a.v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
  }
  friend F64x8 round_even(F64x8 a) {
    return _mm512_roundscale_pd(a.v, _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
  }
  friend Mask lt(F64x8 a, F64x8 b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ)}; }
  friend Mask le(F64x8 a, F64x8 b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_LE_OQ)}; }
  friend Mask gt(F64x8 a, F64x8 b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ)}; }
  friend Mask ge(F64x8 a, F64x8 b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_GE_OQ)}; }
  friend Mask eq(F64x8 a, F64x8 b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_EQ_OQ)}; }
  friend Mask ne(F64x8 a, F64x8 b) { return {_mm512_cmp_pd_mask(a.v, b.v, _CMP_NEQ_UQ)}; }
  friend Mask is_nan(F64x8 a) { return {_mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q)}; }
  friend F64x8 select(Mask m, F64x8 a, F64x8 b) { return _mm512_mask_blend_pd(m.m, b.v, a.v); }
  friend F64x8 band(F64x8 a, F64x8 b) { return _mm512_and_pd(a.v, b.v); }
  friend F64x8 bor(F64x8 a, F64x8 b) { return _mm512_or_pd(a.v, b.v); }
  friend F64x8 bxor(F64x8 a, F64x8 b) { return _mm512_xor_pd(a.v, b.v); }
  friend F64x8 bandnot(F64x8 a, F64x8 b) { return _mm512_andnot_pd(a.v, b.v); }
  friend void deinterleave(F64x8 lo, F64x8 hi, F64x8& even, F64x8& odd) {
    const __m512i e = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    even = _mm512_permutex2var_pd(lo.v, e, hi.v);
    odd = _mm512_permutex2var_pd(lo.v, _mm512_add_epi64(e, _mm512_set1_epi64(1)), hi.v);
  }
  friend void interleave(F64x8 even, F64x8 odd, F64x8& lo, F64x8& hi) {
    const __m512i l = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    lo = _mm512_permutex2var_pd(even.v, l, odd.v);
    hi = _mm512_permutex2var_pd(even.v, _mm512_add_epi64(l, _mm512_set1_epi64(4)), odd.v);
  }
  template <int K>
  static F64x8 shr(F64x8 a) {
    return _mm512_castsi512_pd(_mm512_srli_epi64(_mm512_castpd_si512(a.v), K));
  }
  template <int K>
  static F64x8 shl(F64x8 a) {
    return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(a.v), K));
  }
  friend F64x8 no_contract(F64x8 a) {
    __asm__("" : "+v"(a.v));
    return a;
  }
  friend double reduce_add(F64x8 a) { return _mm512_reduce_add_pd(a.v); }
  friend double reduce_mul(F64x8 a) { return _mm512_reduce_mul_pd(a.v); }
  friend double reduce_max(F64x8 a) { return _mm512_reduce_max_pd(a.v); }
  friend double reduce_min(F64x8 a) { return _mm512_reduce_min_pd(a.v); }
  static Mask nonzero_bytes(const uint8_t* c) {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c));
    return {__mmask8(_mm_test_epi8_mask(b, b))};
  }
  static Mask nonzero_bytes_n(const uint8_t* c, int n) {
    __m128i b = _mm_maskz_loadu_epi8(tail(n), c);
    return {__mmask8(_mm_test_epi8_mask(b, b))};
  }
  static void store_bytes01(uint8_t* y, Mask m) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y), _mm_maskz_set1_epi8(m.m, 1));
  }
  static void store_bytes01_n(uint8_t* y, Mask m, int n) {
    _mm_mask_storeu_epi8(y, tail(n), _mm_maskz_set1_epi8(m.m, 1));
  }
};
#endif  // AVX-512

#if defined(EMBER_NEON_PACKETS)
// ------------------------------------------------------------------------------------------------
// NEON: 4 floats / 2 doubles in a 128-bit register; masks are all-ones lanes, as on AVX2. One
// template for both element types: the intrinsics differ only by suffix, chosen by NeonOps<T>.
template <class T>
struct NeonOps;
template <>
struct NeonOps<float> {
  using R = float32x4_t;
  using M = uint32x4_t;
  using Bits = uint32_t;
  static R dup(float x) { return vdupq_n_f32(x); }
  static R ld(const float* p) { return vld1q_f32(p); }
  static void st(float* p, R v) { vst1q_f32(p, v); }
  static R add(R a, R b) { return vaddq_f32(a, b); }
  static R sub(R a, R b) { return vsubq_f32(a, b); }
  static R mul(R a, R b) { return vmulq_f32(a, b); }
  static R div(R a, R b) { return vdivq_f32(a, b); }
  static R neg(R a) { return vnegq_f32(a); }
  static R fmla(R c, R a, R b) { return vfmaq_f32(c, a, b); }
  static R fmls(R c, R a, R b) { return vfmsq_f32(c, a, b); }
  static R sqrt(R a) { return vsqrtq_f32(a); }
  static R abs(R a) { return vabsq_f32(a); }
  static R floor(R a) { return vrndmq_f32(a); }
  static R ceil(R a) { return vrndpq_f32(a); }
  static R rint(R a) { return vrndiq_f32(a); }  // the current rounding mode, as nearbyint
  static M lt(R a, R b) { return vcltq_f32(a, b); }
  static M le(R a, R b) { return vcleq_f32(a, b); }
  static M gt(R a, R b) { return vcgtq_f32(a, b); }
  static M ge(R a, R b) { return vcgeq_f32(a, b); }
  static M eq(R a, R b) { return vceqq_f32(a, b); }
  static M mnot(M m) { return vmvnq_u32(m); }
  static M mand(M a, M b) { return vandq_u32(a, b); }
  static M mor(M a, M b) { return vorrq_u32(a, b); }
  static M mxor(M a, M b) { return veorq_u32(a, b); }
  static M mbic(M a, M b) { return vbicq_u32(b, a); }  // ~a & b
  static R sel(M m, R a, R b) { return vbslq_f32(m, a, b); }
  static R uzp1(R a, R b) { return vuzp1q_f32(a, b); }
  static R uzp2(R a, R b) { return vuzp2q_f32(a, b); }
  static R zip1(R a, R b) { return vzip1q_f32(a, b); }
  static R zip2(R a, R b) { return vzip2q_f32(a, b); }
  static M bits(R a) { return vreinterpretq_u32_f32(a); }
  static R from(M b) { return vreinterpretq_f32_u32(b); }
  static M dup_bits(Bits b) { return vdupq_n_u32(b); }
  template <int K>
  static M shr(M a) { return vshrq_n_u32(a, K); }
  template <int K>
  static M shl(M a) { return vshlq_n_u32(a, K); }
  static M first_n(int n) {
    const uint32_t lanes[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(lanes), vdupq_n_u32(static_cast<uint32_t>(n)));
  }
  // Lane i of the mask from byte i of c (4 bytes).
  static M from_bytes(const uint8_t* c) {
    uint32_t four;
    std::memcpy(&four, c, 4);
    const uint32x4_t w = vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(four))));
    return vtstq_u32(w, w);
  }
  static void to_bytes01(uint8_t* y, M m) {
    const uint8x8_t b = vand_u8(vmovn_u16(vcombine_u16(vmovn_u32(m), vdup_n_u16(0))), vdup_n_u8(1));
    const uint32_t four = vget_lane_u32(vreinterpret_u32_u8(b), 0);
    std::memcpy(y, &four, 4);
  }
};
template <>
struct NeonOps<double> {
  using R = float64x2_t;
  using M = uint64x2_t;
  using Bits = uint64_t;
  static R dup(double x) { return vdupq_n_f64(x); }
  static R ld(const double* p) { return vld1q_f64(p); }
  static void st(double* p, R v) { vst1q_f64(p, v); }
  static R add(R a, R b) { return vaddq_f64(a, b); }
  static R sub(R a, R b) { return vsubq_f64(a, b); }
  static R mul(R a, R b) { return vmulq_f64(a, b); }
  static R div(R a, R b) { return vdivq_f64(a, b); }
  static R neg(R a) { return vnegq_f64(a); }
  static R fmla(R c, R a, R b) { return vfmaq_f64(c, a, b); }
  static R fmls(R c, R a, R b) { return vfmsq_f64(c, a, b); }
  static R sqrt(R a) { return vsqrtq_f64(a); }
  static R abs(R a) { return vabsq_f64(a); }
  static R floor(R a) { return vrndmq_f64(a); }
  static R ceil(R a) { return vrndpq_f64(a); }
  static R rint(R a) { return vrndiq_f64(a); }
  static M lt(R a, R b) { return vcltq_f64(a, b); }
  static M le(R a, R b) { return vcleq_f64(a, b); }
  static M gt(R a, R b) { return vcgtq_f64(a, b); }
  static M ge(R a, R b) { return vcgeq_f64(a, b); }
  static M eq(R a, R b) { return vceqq_f64(a, b); }
  static M mnot(M m) { return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(m))); }
  static M mand(M a, M b) { return vandq_u64(a, b); }
  static M mor(M a, M b) { return vorrq_u64(a, b); }
  static M mxor(M a, M b) { return veorq_u64(a, b); }
  static M mbic(M a, M b) { return vbicq_u64(b, a); }
  static R sel(M m, R a, R b) { return vbslq_f64(m, a, b); }
  static R uzp1(R a, R b) { return vuzp1q_f64(a, b); }
  static R uzp2(R a, R b) { return vuzp2q_f64(a, b); }
  static R zip1(R a, R b) { return vzip1q_f64(a, b); }
  static R zip2(R a, R b) { return vzip2q_f64(a, b); }
  static M bits(R a) { return vreinterpretq_u64_f64(a); }
  static R from(M b) { return vreinterpretq_f64_u64(b); }
  static M dup_bits(Bits b) { return vdupq_n_u64(b); }
  template <int K>
  static M shr(M a) { return vshrq_n_u64(a, K); }
  template <int K>
  static M shl(M a) { return vshlq_n_u64(a, K); }
  static M first_n(int n) {
    const uint64_t lanes[2] = {0, 1};
    return vcltq_u64(vld1q_u64(lanes), vdupq_n_u64(static_cast<uint64_t>(n)));
  }
  static M from_bytes(const uint8_t* c) {
    const uint64_t lanes[2] = {c[0], c[1]};
    const uint64x2_t w = vld1q_u64(lanes);
    return vtstq_u64(w, w);
  }
  static void to_bytes01(uint8_t* y, M m) {
    y[0] = vgetq_lane_u64(m, 0) != 0 ? 1 : 0;
    y[1] = vgetq_lane_u64(m, 1) != 0 ? 1 : 0;
  }
};

template <class T>
struct Neon {
  using Op = NeonOps<T>;
  using value_type = T;
  using Bits = typename Op::Bits;
  using R = typename Op::R;
  static constexpr int kWidth = 16 / sizeof(T);
  struct Mask {
    typename Op::M m;
    friend Mask operator&(Mask a, Mask b) { return {Op::mand(a.m, b.m)}; }
    friend Mask operator|(Mask a, Mask b) { return {Op::mor(a.m, b.m)}; }
    friend Mask operator~(Mask a) { return {Op::mnot(a.m)}; }
  };
  R v;

  Neon() = default;
  Neon(R r) : v(r) {}            // NOLINT
  Neon(T x) : v(Op::dup(x)) {}  // NOLINT
  static Neon from_bits(Bits b) { return Op::from(Op::dup_bits(b)); }
  static Neon load(const T* p) { return Op::ld(p); }
  // Only the first n lanes are read: a row's last elements may end at a page boundary.
  static Neon load_n(const T* p, int n) {
    T buf[kWidth] = {};
    std::memcpy(buf, p, sizeof(T) * size_t(n));
    return Op::ld(buf);
  }
  static Mask first_n(int n) { return {Op::first_n(n)}; }
  void store(T* p) const { Op::st(p, v); }
  void store_n(T* p, int n) const {
    T buf[kWidth];
    Op::st(buf, v);
    std::memcpy(p, buf, sizeof(T) * size_t(n));
  }

  friend Neon operator+(Neon a, Neon b) { return Op::add(a.v, b.v); }
  friend Neon operator-(Neon a, Neon b) { return Op::sub(a.v, b.v); }
  friend Neon operator*(Neon a, Neon b) { return Op::mul(a.v, b.v); }
  friend Neon operator/(Neon a, Neon b) { return Op::div(a.v, b.v); }
  friend Neon operator-(Neon a) { return Op::neg(a.v); }
  friend Neon fma(Neon a, Neon b, Neon c) { return Op::fmla(c.v, a.v, b.v); }
  friend Neon fnma(Neon a, Neon b, Neon c) { return Op::fmls(c.v, a.v, b.v); }
  // Note [Packet min/max]: fmin/fmax would drop a NaN operand; the compare-and-select does not.
  friend Neon min(Neon a, Neon b) { return Op::sel(Op::lt(a.v, b.v), a.v, b.v); }
  friend Neon max(Neon a, Neon b) { return Op::sel(Op::gt(a.v, b.v), a.v, b.v); }
  friend Neon sqrt(Neon a) { return Op::sqrt(a.v); }
  friend Neon abs(Neon a) { return Op::abs(a.v); }
  friend Neon floor(Neon a) { return Op::floor(a.v); }
  friend Neon ceil(Neon a) { return Op::ceil(a.v); }
  friend Neon round_even(Neon a) { return Op::rint(a.v); }
  friend Mask lt(Neon a, Neon b) { return {Op::lt(a.v, b.v)}; }
  friend Mask le(Neon a, Neon b) { return {Op::le(a.v, b.v)}; }
  friend Mask gt(Neon a, Neon b) { return {Op::gt(a.v, b.v)}; }
  friend Mask ge(Neon a, Neon b) { return {Op::ge(a.v, b.v)}; }
  friend Mask eq(Neon a, Neon b) { return {Op::eq(a.v, b.v)}; }
  friend Mask ne(Neon a, Neon b) { return {Op::mnot(Op::eq(a.v, b.v))}; }  // true for NaN
  friend Mask is_nan(Neon a) { return {Op::mnot(Op::eq(a.v, a.v))}; }
  friend Neon select(Mask m, Neon a, Neon b) { return Op::sel(m.m, a.v, b.v); }
  friend uint32_t mask_bits(Mask m) {
    Bits lanes[kWidth];
    std::memcpy(lanes, &m.m, sizeof lanes);
    uint32_t r = 0;
    for (int i = 0; i < kWidth; ++i) r |= (lanes[i] != 0 ? 1u : 0u) << i;
    return r;
  }
  friend bool any(Mask m) { return mask_bits(m) != 0; }
  friend bool all(Mask m) { return mask_bits(m) == (1u << kWidth) - 1u; }
  friend Neon band(Neon a, Neon b) { return Op::from(Op::mand(Op::bits(a.v), Op::bits(b.v))); }
  friend Neon bor(Neon a, Neon b) { return Op::from(Op::mor(Op::bits(a.v), Op::bits(b.v))); }
  friend Neon bxor(Neon a, Neon b) { return Op::from(Op::mxor(Op::bits(a.v), Op::bits(b.v))); }
  friend Neon bandnot(Neon a, Neon b) { return Op::from(Op::mbic(Op::bits(a.v), Op::bits(b.v))); }
  friend void deinterleave(Neon lo, Neon hi, Neon& even, Neon& odd) {
    even = Op::uzp1(lo.v, hi.v);
    odd = Op::uzp2(lo.v, hi.v);
  }
  friend void interleave(Neon even, Neon odd, Neon& lo, Neon& hi) {
    lo = Op::zip1(even.v, odd.v);
    hi = Op::zip2(even.v, odd.v);
  }
  template <int K>
  static Neon shr(Neon a) {
    return Op::from(Op::template shr<K>(Op::bits(a.v)));
  }
  template <int K>
  static Neon shl(Neon a) {
    return Op::from(Op::template shl<K>(Op::bits(a.v)));
  }
  friend Neon no_contract(Neon a) {
    __asm__("" : "+w"(a.v));
    return a;
  }
  // Horizontal reductions pair lane i with lane i + kWidth/2 first, as the x86 packets do.
  template <class F>
  static T reduce(Neon a, F f) {
    T l[kWidth];
    Op::st(l, a.v);
    if constexpr (kWidth == 4) return f(f(l[0], l[2]), f(l[1], l[3]));
    else return f(l[0], l[1]);
  }
  friend T reduce_add(Neon a) { return reduce(a, [](T x, T y) { return x + y; }); }
  friend T reduce_mul(Neon a) { return reduce(a, [](T x, T y) { return x * y; }); }
  friend T reduce_max(Neon a) { return reduce(a, [](T x, T y) { return x > y ? x : y; }); }
  friend T reduce_min(Neon a) { return reduce(a, [](T x, T y) { return x < y ? x : y; }); }
  static Mask nonzero_bytes(const uint8_t* c) { return {Op::from_bytes(c)}; }
  static Mask nonzero_bytes_n(const uint8_t* c, int n) {
    uint8_t buf[kWidth] = {};
    std::memcpy(buf, c, size_t(n));
    return nonzero_bytes(buf);
  }
  static void store_bytes01(uint8_t* y, Mask m) { Op::to_bytes01(y, m.m); }
  static void store_bytes01_n(uint8_t* y, Mask m, int n) {
    uint8_t buf[kWidth];
    store_bytes01(buf, m);
    std::memcpy(y, buf, size_t(n));
  }
};
using F32x4 = Neon<float>;
using F64x2 = Neon<double>;
#endif  // NEON

/// Lane-wise logical shifts of the bit patterns by K bits.
template <int K, class P>
inline P srl(P a) {
  return P::template shr<K>(a);
}
template <int K, class P>
inline P sll(P a) {
  return P::template shl<K>(a);
}

}  // namespace
}  // namespace ember::backend::simd
