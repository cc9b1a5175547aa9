// GEMM's view of the vector unit: one register type per element type and the handful of
// operations the micro-kernel and the packing routines need. Included by gemm.inl inside the
// ISA's namespace; the translation unit's target flags pick the implementation:
//   __AVX512F__ -> zmm (16 floats / 8 doubles), __AVX2__ -> ymm (8 floats / 4 doubles), both
//     with in-register transposes for packing (EMBER_GEMM_HAS_TRANSPOSE);
//   EMBER_NEON_PACKETS (the aarch64 NEON table) -> q registers (4 floats / 2 doubles) through
//     arm_neon.h, with fmla by element: the micro-kernel loads a column of A as vectors and
//     multiplies B by each lane (kByElement), one load per W rows instead of W broadcasts;
//   otherwise -> GCC/Clang generic 16-byte vectors, which become SSE2 on x86-64 and NEON on
//     aarch64 without naming either. (Plain loops were tried first and proved fragile: GCC 12
//     at -O2 left the kernel scalar, at -O3 vectorised the k loop instead of the tile, and
//     Clang did the opposite; speed varied 3x with the compiler.)
//
// Included once per ISA translation unit: no include guard by design.

namespace ember::backend::EMBER_ISA_NS {
namespace {
namespace gemm_impl {

template <class T>
struct Vec;

#if defined(__AVX512F__)
#define EMBER_GEMM_HAS_TRANSPOSE 1

// GCC 12 implements the plain forms of these shuffles with an "undefined" pass-through operand
// and then warns (-Wuninitialized, PR105593) wherever they are inlined. The masked forms with
// every lane selected are the same instruction without the pseudo-uninitialised value.
inline __m512 gemm_unpacklo(__m512 a, __m512 b) {
  return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b);
}
inline __m512 gemm_unpackhi(__m512 a, __m512 b) {
  return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b);
}
inline __m512d gemm_unpacklo(__m512d a, __m512d b) {
  return _mm512_mask_unpacklo_pd(a, 0xFF, a, b);
}
inline __m512d gemm_unpackhi(__m512d a, __m512d b) {
  return _mm512_mask_unpackhi_pd(a, 0xFF, a, b);
}
template <int Imm>
inline __m512 gemm_shuffle128(__m512 a, __m512 b) {
  return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, Imm);
}
template <int Imm>
inline __m512d gemm_shuffle128(__m512d a, __m512d b) {
  return _mm512_mask_shuffle_f64x2(a, 0xFF, a, b, Imm);
}

template <>
struct Vec<float> {
  using R = __m512;
  static constexpr int W = 16;
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  // Masked-off lanes are neither read (no fault past the end of a row) nor kept: they are zero.
  static R load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, R v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }

  // In-register 16x16 transpose: row q of the input becomes lane q of every output.
  static void transpose(R (&r)[W]) {
    // Interleave pairs of rows within each 128-bit lane ...
    R t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = gemm_unpacklo(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = gemm_unpackhi(r[2 * i], r[2 * i + 1]);
    }
    // ... then pairs of pairs: u[4g + c], 128-bit lane l, now holds column 4l + c of rows
    // 4g .. 4g+3.
    R u[16];
    for (int g = 0; g < 4; ++g) {
      const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
      const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
      u[4 * g + 0] = _mm512_castpd_ps(gemm_unpacklo(t0, t2));
      u[4 * g + 1] = _mm512_castpd_ps(gemm_unpackhi(t0, t2));
      u[4 * g + 2] = _mm512_castpd_ps(gemm_unpacklo(t1, t3));
      u[4 * g + 3] = _mm512_castpd_ps(gemm_unpackhi(t1, t3));
    }
    // Gather lane l of u[c], u[4+c], u[8+c], u[12+c] into output column 4l + c, two lane
    // shuffles deep (0x88 picks lanes 0 and 2 of each source, 0xDD lanes 1 and 3).
    for (int c = 0; c < 4; ++c) {
      const R s0 = gemm_shuffle128<0x88>(u[c], u[4 + c]);
      const R s1 = gemm_shuffle128<0xDD>(u[c], u[4 + c]);
      const R s2 = gemm_shuffle128<0x88>(u[8 + c], u[12 + c]);
      const R s3 = gemm_shuffle128<0xDD>(u[8 + c], u[12 + c]);
      r[c] = gemm_shuffle128<0x88>(s0, s2);
      r[8 + c] = gemm_shuffle128<0xDD>(s0, s2);
      r[4 + c] = gemm_shuffle128<0x88>(s1, s3);
      r[12 + c] = gemm_shuffle128<0xDD>(s1, s3);
    }
  }
};

template <>
struct Vec<double> {
  using R = __m512d;
  static constexpr int W = 8;
  static __mmask8 mask(int n) { return static_cast<__mmask8>((1u << n) - 1u); }
  static R zero() { return _mm512_setzero_pd(); }
  static R set1(double x) { return _mm512_set1_pd(x); }
  static R load(const double* p) { return _mm512_loadu_pd(p); }
  static R load_n(const double* p, int n) { return _mm512_maskz_loadu_pd(mask(n), p); }
  static void store(double* p, R v) { _mm512_storeu_pd(p, v); }
  static void store_n(double* p, R v, int n) { _mm512_mask_storeu_pd(p, mask(n), v); }
  static R fmadd(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }

  static void transpose(R (&r)[W]) {
    // t[2g + c], 128-bit lane l, holds column 2l + c of rows 2g, 2g+1; then the same two-level
    // lane gather as the float version.
    R t[8];
    for (int g = 0; g < 4; ++g) {
      t[2 * g] = gemm_unpacklo(r[2 * g], r[2 * g + 1]);
      t[2 * g + 1] = gemm_unpackhi(r[2 * g], r[2 * g + 1]);
    }
    for (int c = 0; c < 2; ++c) {
      const R s0 = gemm_shuffle128<0x88>(t[c], t[2 + c]);
      const R s1 = gemm_shuffle128<0xDD>(t[c], t[2 + c]);
      const R s2 = gemm_shuffle128<0x88>(t[4 + c], t[6 + c]);
      const R s3 = gemm_shuffle128<0xDD>(t[4 + c], t[6 + c]);
      r[c] = gemm_shuffle128<0x88>(s0, s2);
      r[4 + c] = gemm_shuffle128<0xDD>(s0, s2);
      r[2 + c] = gemm_shuffle128<0x88>(s1, s3);
      r[6 + c] = gemm_shuffle128<0xDD>(s1, s3);
    }
  }
};

#elif defined(__AVX2__)
#define EMBER_GEMM_HAS_TRANSPOSE 1

// AVX2 has no mask registers: partial loads use vmaskmov (fault-suppressing and fast for
// loads everywhere), partial stores go lane by lane because vmaskmov stores are microcoded
// and slow on AMD. Both only run on edges.
inline __m256i gemm_lane_mask32(int n) {
  alignas(32) static const int32_t kBits[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kBits + 8 - n));
}

template <>
struct Vec<float> {
  using R = __m256;
  static constexpr int W = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R load_n(const float* p, int n) { return _mm256_maskload_ps(p, gemm_lane_mask32(n)); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, R v, int n) {
    alignas(32) float tmp[W];
    _mm256_store_ps(tmp, v);
    for (int i = 0; i < n; ++i) p[i] = tmp[i];
  }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }

  static void transpose(R (&r)[W]) {
    R t[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + c], 128-bit lane l: column 4l + c of rows 4g .. 4g+3.
    R u[8];
    for (int g = 0; g < 2; ++g) {
      const __m256d t0 = _mm256_castps_pd(t[4 * g]), t1 = _mm256_castps_pd(t[4 * g + 1]);
      const __m256d t2 = _mm256_castps_pd(t[4 * g + 2]), t3 = _mm256_castps_pd(t[4 * g + 3]);
      u[4 * g + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2));
      u[4 * g + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2));
      u[4 * g + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3));
      u[4 * g + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3));
    }
    for (int c = 0; c < 4; ++c) {
      r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
      r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
  }
};

template <>
struct Vec<double> {
  using R = __m256d;
  static constexpr int W = 4;
  static R zero() { return _mm256_setzero_pd(); }
  static R set1(double x) { return _mm256_set1_pd(x); }
  static R load(const double* p) { return _mm256_loadu_pd(p); }
  static R load_n(const double* p, int n) {
    // Each 64-bit lane needs both of its 32-bit mask halves set: widen the int mask.
    return _mm256_maskload_pd(p, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(
                                     gemm_lane_mask32(n))));
  }
  static void store(double* p, R v) { _mm256_storeu_pd(p, v); }
  static void store_n(double* p, R v, int n) {
    alignas(32) double tmp[W];
    _mm256_store_pd(tmp, v);
    for (int i = 0; i < n; ++i) p[i] = tmp[i];
  }
  static R fmadd(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }

  static void transpose(R (&r)[W]) {
    const R t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const R t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
};

#elif defined(EMBER_NEON_PACKETS)
#define EMBER_GEMM_HAS_TRANSPOSE 1

template <>
struct Vec<float> {
  using R = float32x4_t;
  static constexpr int W = 4;
  static constexpr bool kByElement = true;
  static R zero() { return vdupq_n_f32(0.0f); }
  static R set1(float x) { return vdupq_n_f32(x); }
  static R load(const float* p) { return vld1q_f32(p); }
  static R load_n(const float* p, int n) {
    float buf[W] = {};
    for (int i = 0; i < n; ++i) buf[i] = p[i];
    return vld1q_f32(buf);
  }
  static void store(float* p, R v) { vst1q_f32(p, v); }
  static void store_n(float* p, R v, int n) {
    float buf[W];
    vst1q_f32(buf, v);
    for (int i = 0; i < n; ++i) p[i] = buf[i];
  }
  static R fmadd(R a, R b, R c) { return vfmaq_f32(c, a, b); }
  /// c + b * a[L]: fmla by element.
  template <int L>
  static R fmadd_lane(R b, R a, R c) { return vfmaq_laneq_f32(c, b, a, L); }
  static R mul(R a, R b) { return vmulq_f32(a, b); }

  static void transpose(R (&r)[W]) {
    const R t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
    const R t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
    auto d = [](R x) { return vreinterpretq_f64_f32(x); };
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(d(t0), d(t2)));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(d(t1), d(t3)));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(d(t0), d(t2)));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(d(t1), d(t3)));
  }
};

template <>
struct Vec<double> {
  using R = float64x2_t;
  static constexpr int W = 2;
  static constexpr bool kByElement = true;
  static R zero() { return vdupq_n_f64(0.0); }
  static R set1(double x) { return vdupq_n_f64(x); }
  static R load(const double* p) { return vld1q_f64(p); }
  static R load_n(const double* p, int n) {
    double buf[W] = {};
    for (int i = 0; i < n; ++i) buf[i] = p[i];
    return vld1q_f64(buf);
  }
  static void store(double* p, R v) { vst1q_f64(p, v); }
  static void store_n(double* p, R v, int n) {
    double buf[W];
    vst1q_f64(buf, v);
    for (int i = 0; i < n; ++i) p[i] = buf[i];
  }
  static R fmadd(R a, R b, R c) { return vfmaq_f64(c, a, b); }
  template <int L>
  static R fmadd_lane(R b, R a, R c) { return vfmaq_laneq_f64(c, b, a, L); }
  static R mul(R a, R b) { return vmulq_f64(a, b); }

  static void transpose(R (&r)[W]) {
    const R t0 = vtrn1q_f64(r[0], r[1]), t1 = vtrn2q_f64(r[0], r[1]);
    r[0] = t0;
    r[1] = t1;
  }
};

#else

// (vector_size cannot be applied to a template parameter, hence the named types.)
typedef float gemm_f32x4 __attribute__((vector_size(16)));
typedef double gemm_f64x2 __attribute__((vector_size(16)));

template <class T, class Reg>
struct GenericVec {
  using R = Reg;
  static constexpr int W = sizeof(R) / sizeof(T);
  static R zero() { return R{}; }
  static R set1(T x) { return R{} + x; }
  static R load(const T* p) {
    R r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  static R load_n(const T* p, int n) {
    R r{};
    for (int i = 0; i < n; ++i) r[i] = p[i];
    return r;
  }
  static void store(T* p, R v) { std::memcpy(p, &v, sizeof v); }
  static void store_n(T* p, R v, int n) {
    for (int i = 0; i < n; ++i) p[i] = v[i];
  }
  // Written as multiply and add: the scalar reference table, the one user of these vectors, is
  // built with -ffp-contract=off, so it rounds both on every target.
  static R fmadd(R a, R b, R c) { return a * b + c; }
  static R mul(R a, R b) { return a * b; }
};
template <>
struct Vec<float> : GenericVec<float, gemm_f32x4> {};
template <>
struct Vec<double> : GenericVec<double, gemm_f64x2> {};

#endif

}  // namespace gemm_impl
}  // namespace
}  // namespace ember::backend::EMBER_ISA_NS
