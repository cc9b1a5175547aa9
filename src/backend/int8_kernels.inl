// The int8 kernels (Note [Int8 GEMM] in ember/backend/int8_kernels.hpp). Each ISA's .cpp defines
// EMBER_INT8_NS and EMBER_INT8_LEVEL (0 scalar, 1 AVX2, 2 AVX-512 VNNI) or EMBER_INT8_NEON (1
// widening multiplies, 2 sdot, 3 smmla) and includes this file; the scalar definitions below are
// the reference every SIMD path matches bit for bit.
//
// Included once per ISA translation unit: no include guard by design.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/backend/parallel.hpp"

#ifndef EMBER_INT8_LEVEL
#define EMBER_INT8_LEVEL 0
#endif
#if EMBER_INT8_LEVEL >= 1
// g++ 12 reports -W(maybe-)uninitialized from inside its own AVX-512 intrinsics (GCC PR105593);
// the diagnostic is located in the header.
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
#if defined(EMBER_INT8_NEON)
#include <arm_neon.h>
#define EMBER_INT8_TILED 1
#elif EMBER_INT8_LEVEL >= 1
#define EMBER_INT8_TILED 1
#endif

#ifndef EMBER_INT8_NS
#error "define EMBER_INT8_NS before including int8_kernels.inl"
#endif

namespace ember::backend::EMBER_INT8_NS {
namespace {

// ---- Scalar definitions (the reference, and every SIMD path's tails) -----------------------------

// The rounded value clamped to [lo, hi] before it becomes an integer; NaN gives lo.
inline int32_t clamp_rounded(float r, float lo, float hi) {
  r = r >= lo ? r : lo;
  r = r <= hi ? r : hi;
  return static_cast<int32_t>(r);
}

// A product that the compiler may not fuse with a following addition (g++ contracts across
// statements): the SIMD paths round it separately too.
inline float product(float a, float b) {
  volatile float p = a * b;
  return p;
}

inline uint8_t quantize_one(float x, float inv_scale, int32_t zero_point, float lo, float hi, uint8_t flip) {
  return static_cast<uint8_t>(static_cast<uint8_t>(clamp_rounded(std::nearbyint(product(x, inv_scale)), lo, hi) +
                                                   zero_point) ^ flip);
}

// Sums in wrapping int32 arithmetic, as the vector paths compute them: exact for the activations
// Note [Int8 GEMM] allows, and defined (if meaningless) for any other bytes a damaged plan could
// hand a kernel.
inline int32_t corrected_sum(int32_t c, int32_t a_zero, int32_t w_sum) {
  return static_cast<int32_t>(static_cast<uint32_t>(c) - static_cast<uint32_t>(a_zero) * static_cast<uint32_t>(w_sum));
}
inline int32_t wrapping_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}

inline int32_t packed_weight(const int8_t* w_packed, int64_t kp, int64_t j, int64_t t) {
  return w_packed[(j / kInt8Panel) * kInt8Panel * kp + (t / 4) * (4 * kInt8Panel) + (j % kInt8Panel) * 4 + t % 4];
}

[[maybe_unused]] void gemm_reference(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda,
                                     const int8_t* w_packed, int32_t* c, int64_t ldc) {
  const int64_t kp = int8_padded_k(k);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      int32_t s = 0;
      for (int64_t t = 0; t < k; ++t) s = wrapping_add(s, static_cast<int32_t>(a[i * lda + t]) * packed_weight(w_packed, kp, j, t));
      c[i * ldc + j] = s;
    }
  }
}

void quantize_range(int64_t begin, int64_t end, const float* x, float inv_scale, int32_t zero_point, float lo,
                    float hi, uint8_t flip, uint8_t* q) {
  for (int64_t i = begin; i < end; ++i) q[i] = quantize_one(x[i], inv_scale, zero_point, lo, hi, flip);
}

inline float dequantize_one(int32_t c, int32_t a_zero, int32_t w_sum, float scale, const float* bias, int64_t j,
                            bool relu) {
  float y = product(static_cast<float>(corrected_sum(c, a_zero, w_sum)), scale);
  if (bias != nullptr) y = y + bias[j];
  return relu ? (y < 0.0f ? 0.0f : y) : y;
}

inline uint8_t requantize_one(int32_t c, int32_t a_zero, int32_t w_sum, const int32_t* bias, int64_t j,
                              float multiplier, int32_t y_zero, float lo, float hi) {
  int32_t v = corrected_sum(c, a_zero, w_sum);
  if (bias != nullptr) v = wrapping_add(v, bias[j]);
  return static_cast<uint8_t>(clamp_rounded(std::nearbyint(product(static_cast<float>(v), multiplier)), lo, hi) +
                              y_zero);
}

// The direct convolution's sums (Note [Direct int8 convolution]), requantized when rq is given.
[[maybe_unused]] void conv_reference(const Int8ConvWindows& win, const uint8_t* image, int64_t n,
                                     const int8_t* w_packed, const Int8Requantization* rq, int32_t* c, uint8_t* y) {
  const int64_t window = 4 * win.row_groups, kp = win.kh * window;
  const float lo = rq ? static_cast<float>(rq->qmin - rq->y_zero) : 0.0f;
  const float hi = rq ? static_cast<float>(rq->qmax - rq->y_zero) : 0.0f;
  for (int64_t oy = 0; oy < win.ho; ++oy) {
    for (int64_t ox = 0; ox < win.wo; ++ox) {
      const uint8_t* a = image + oy * win.row_step + ox * win.pixel_step;
      const int64_t p = oy * win.wo + ox;
      for (int64_t j = 0; j < n; ++j) {
        int32_t sum = 0;
        for (int64_t i = 0; i < win.kh; ++i) {
          for (int64_t t = 0; t < window; ++t) {
            sum = wrapping_add(sum, static_cast<int32_t>(a[i * win.tap_row_step + t]) *
                                        packed_weight(w_packed, kp, j, i * window + t));
          }
        }
        if (rq == nullptr) {
          c[p * n + j] = sum;
        } else {
          y[p * n + j] =
              requantize_one(sum, rq->a_zero, rq->w_sum[j], rq->bias, j, rq->multiplier[j], rq->y_zero, lo, hi);
        }
      }
    }
  }
}

// ---- SIMD micro-kernels -------------------------------------------------------------------------

#if defined(EMBER_INT8_TILED)
inline int32_t load_group(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
// The last, partial group of a row (k % 4 bytes), zero filled: reading past k could leave the buffer.
inline int32_t load_tail(const uint8_t* p, int64_t rem) {
  int32_t v = 0;
  std::memcpy(&v, p, static_cast<size_t>(rem));
  return v;
}

// Stores `cols` (< the tile's width) int32 columns of a row held in `lanes`.
inline void store_partial(const int32_t* lanes, int64_t cols, int32_t* c) {
  std::memcpy(c, lanes, static_cast<size_t>(cols) * sizeof(int32_t));
}
#endif

#if EMBER_INT8_LEVEL == 1
// AVX2: one 16-column panel (two ymm of int32) by MR rows. vpmaddubsw makes int16 pair sums (exact
// for a <= 127), vpmaddwd with ones widens them to the four-product int32 sums.
constexpr int kRows = 4;
constexpr int64_t kTileCols = kInt8Panel;

// A row's group of four bytes broadcast to every int32 lane (x), times one k-group of the
// panel's two column halves (b0, b1), into the row's accumulators. For GCC as one asm block per
// row: with the intrinsics it interleaves the rows, runs out of the 16 ymm registers and copies
// every accumulator each step (and spills one); the CPU reorders the rows' blocks itself.
[[gnu::always_inline]] inline void madd_group(__m256i x, __m256i b0, __m256i b1, __m256i ones, __m256i& acc0,
                                              __m256i& acc1) {
#if defined(__GNUC__) && !defined(__clang__)
  __m256i t0, t1;
  __asm__(
      "vpmaddubsw %[b0], %[x], %[t0]\n\t"
      "vpmaddubsw %[b1], %[x], %[t1]\n\t"
      "vpmaddwd %[ones], %[t0], %[t0]\n\t"
      "vpmaddwd %[ones], %[t1], %[t1]\n\t"
      "vpaddd %[t0], %[acc0], %[acc0]\n\t"
      "vpaddd %[t1], %[acc1], %[acc1]"
      : [acc0] "+x"(acc0), [acc1] "+x"(acc1), [t0] "=&x"(t0), [t1] "=&x"(t1)
      : [x] "x"(x), [b0] "x"(b0), [b1] "x"(b1), [ones] "x"(ones));
#else
  acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones));
  acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones));
#endif
}

template <int MR>
void tile(int64_t k, const uint8_t* a, int64_t lda, const int8_t* panel, int64_t cols, int32_t* c, int64_t ldc) {
  __m256i acc0[MR], acc1[MR];
  // A plain loop with every loop over rows unrolled: fed through a lambda and an array of the
  // rows' groups, GCC copied each accumulator every step and spilled one.
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t groups = k / 4, rem = k % 4;
  for (int64_t g = 0; g < groups; ++g) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + g * 64));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + g * 64 + 32));
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      madd_group(_mm256_set1_epi32(load_group(a + r * lda + 4 * g)), b0, b1, ones, acc0[r], acc1[r]);
    }
  }
  if (rem != 0) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + groups * 64));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + groups * 64 + 32));
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      madd_group(_mm256_set1_epi32(load_tail(a + r * lda + 4 * groups, rem)), b0, b1, ones, acc0[r], acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    int32_t* row = c + r * ldc;
    if (cols == kTileCols) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row), acc0[r]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + 8), acc1[r]);
    } else {
      alignas(32) int32_t lanes[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc0[r]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes + 8), acc1[r]);
      store_partial(lanes, cols, row);
    }
  }
}
#elif EMBER_INT8_LEVEL == 2
// AVX-512 VNNI: two 16-column panels (two zmm of int32) by MR rows, vpdpbusd accumulating four
// products per lane.
constexpr int kRows = 6;
constexpr int64_t kTileCols = 2 * kInt8Panel;

// acc += the four-product sums of a (u8) and b (s8) per int32 lane. GCC compiles the intrinsic
// with a copy of the accumulator per call (as many register moves as vpdpbusd in the tile's
// loop: a third slower); the instruction itself accumulates in place.
[[gnu::always_inline]] inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
#if defined(__GNUC__) && !defined(__clang__)
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, a, b);
#endif
}

template <int MR>
void tile(int64_t k, const uint8_t* a, int64_t lda, const int8_t* panel, int64_t cols, int32_t* c, int64_t ldc) {
  const int64_t kp = int8_padded_k(k);
  const bool two = cols > kInt8Panel;
  const int8_t* panel1 = two ? panel + kInt8Panel * kp : panel;
  __m512i acc0[MR], acc1[MR];
  // Every loop over rows unrolled, so that the accumulators stay in registers.
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_si512();
  const int64_t groups = k / 4, rem = k % 4;
  for (int64_t g = 0; g < groups; ++g) {
    const __m512i b0 = _mm512_loadu_si512(panel + g * 64);
    const __m512i b1 = _mm512_loadu_si512(panel1 + g * 64);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512i x = _mm512_set1_epi32(load_group(a + r * lda + 4 * g));
      acc0[r] = dpbusd(acc0[r], x, b0);
      acc1[r] = dpbusd(acc1[r], x, b1);
    }
  }
  if (rem != 0) {
    const __m512i b0 = _mm512_loadu_si512(panel + groups * 64);
    const __m512i b1 = _mm512_loadu_si512(panel1 + groups * 64);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512i x = _mm512_set1_epi32(load_tail(a + r * lda + 4 * groups, rem));
      acc0[r] = dpbusd(acc0[r], x, b0);
      acc1[r] = dpbusd(acc1[r], x, b1);
    }
  }
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xFFFF) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1) : __mmask16(0);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_epi32(c + r * ldc, m0, acc0[r]);
    if (m1 != 0) _mm512_mask_storeu_epi32(c + r * ldc + 16, m1, acc1[r]);
  }
}
#elif defined(EMBER_INT8_NEON)
constexpr int kRows = 4;
constexpr int64_t kTileCols = kInt8Panel;

#if EMBER_INT8_NEON == 3
// A row's bytes 4g .. 4g + 3 as one int32: a whole group, the zero-filled partial last one
// (k % 4 bytes), or zeros past the end (smmla takes groups in pairs).
inline int32_t group_of(const uint8_t* row, int64_t g, int64_t groups, int64_t rem) {
  if (g < groups) return load_group(row + 4 * g);
  if (g == groups && rem != 0) return load_tail(row + 4 * groups, rem);
  return 0;
}
#endif

template <int MR>
void store_rows(int32x4_t (&acc)[MR][4], int64_t cols, int32_t* c, int64_t ldc) {
  for (int r = 0; r < MR; ++r) {
    int32_t* row = c + r * ldc;
    if (cols == kTileCols) {
      for (int q = 0; q < 4; ++q) vst1q_s32(row + 4 * q, acc[r][q]);
    } else {
      int32_t lanes[16];
      for (int q = 0; q < 4; ++q) vst1q_s32(lanes + 4 * q, acc[r][q]);
      store_partial(lanes, cols, row);
    }
  }
}

#if EMBER_INT8_NEON <= 2
// One 16-column panel (four q registers of int32) by MR rows, a group of four k at a time.
// sdot (EMBER_INT8_NEON 2) adds the four products of each column into its int32 lane. Without it
// (1): smull makes int16 products of a column's four bytes with the row's, addp adds them in pairs
// (exact: two products of a <= 127 and w >= -128 stay within int16) and sadalp adds the pairs
// into the int32 lanes.
template <int MR>
void tile(int64_t k, const uint8_t* a, int64_t lda, const int8_t* panel, int64_t cols, int32_t* c, int64_t ldc) {
  int32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = vdupq_n_s32(0);
  auto step = [&](int64_t g, const int32_t (&av)[MR]) {
    const int8_t* b = panel + g * 64;
    const int8x16_t w[4] = {vld1q_s8(b), vld1q_s8(b + 16), vld1q_s8(b + 32), vld1q_s8(b + 48)};
    for (int r = 0; r < MR; ++r) {
#if EMBER_INT8_NEON == 2
      const int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(av[r]));
      for (int q = 0; q < 4; ++q) acc[r][q] = vdotq_s32(acc[r][q], w[q], x);
#else
      const int8x8_t x = vreinterpret_s8_s32(vdup_n_s32(av[r]));
      for (int q = 0; q < 4; ++q) {
        const int16x8_t lo = vmull_s8(vget_low_s8(w[q]), x), hi = vmull_s8(vget_high_s8(w[q]), x);
        acc[r][q] = vpadalq_s16(acc[r][q], vpaddq_s16(lo, hi));
      }
#endif
    }
  };
  const int64_t groups = k / 4, rem = k % 4;
  int32_t av[MR];
  for (int64_t g = 0; g < groups; ++g) {
    for (int r = 0; r < MR; ++r) av[r] = load_group(a + r * lda + 4 * g);
    step(g, av);
  }
  if (rem != 0) {
    for (int r = 0; r < MR; ++r) av[r] = load_tail(a + r * lda + 4 * groups, rem);
    step(groups, av);
  }
  store_rows<MR>(acc, cols, c, ldc);
}
#else
// smmla multiplies a 2x8 block of A (two rows, eight k) by an 8x2 block of weights (two columns)
// into a 2x2 int32 block. The packed panel holds each column's k in groups of four, so two groups'
// registers are interleaved by 32-bit lanes (zip1/zip2) to give each column pair its eight bytes;
// rows go in pairs (a last odd row with a zero partner), and the 2x2 blocks are unzipped into rows
// at the end.
template <int MR>
void tile(int64_t k, const uint8_t* a, int64_t lda, const int8_t* panel, int64_t cols, int32_t* c, int64_t ldc) {
  constexpr int kPairs = (MR + 1) / 2;
  int32x4_t acc[kPairs][8];
  for (int p = 0; p < kPairs; ++p)
    for (int t = 0; t < 8; ++t) acc[p][t] = vdupq_n_s32(0);
  const int64_t groups = k / 4, rem = k % 4, total = groups + (rem != 0 ? 1 : 0);
  // Groups g and g + 1 (zeros past the last); `whole`: both are whole groups, so each row's eight
  // bytes are one load.
  auto step = [&](int64_t g, bool whole) {
    const int8_t* b = panel + g * 64;
    const bool second = g + 1 < total;
    int8x16_t bz[8];
    for (int q = 0; q < 4; ++q) {
      const int32x4_t w0 = vreinterpretq_s32_s8(vld1q_s8(b + 16 * q));
      const int32x4_t w1 = second ? vreinterpretq_s32_s8(vld1q_s8(b + 64 + 16 * q)) : vdupq_n_s32(0);
      bz[2 * q] = vreinterpretq_s8_s32(vzip1q_s32(w0, w1));
      bz[2 * q + 1] = vreinterpretq_s8_s32(vzip2q_s32(w0, w1));
    }
    for (int p = 0; p < kPairs; ++p) {
      int8x16_t x;
      if (whole) {
        const uint8_t* row0 = a + 2 * p * lda + 4 * g;
        const uint8x8_t lo = vld1_u8(row0);
        const uint8x8_t hi = 2 * p + 1 < MR ? vld1_u8(row0 + lda) : vdup_n_u8(0);
        x = vreinterpretq_s8_u8(vcombine_u8(lo, hi));
      } else {
        int32_t rows[4] = {};
        for (int h = 0; h < 2 && 2 * p + h < MR; ++h) {
          const uint8_t* row = a + (2 * p + h) * lda;
          rows[2 * h] = group_of(row, g, groups, rem);
          rows[2 * h + 1] = group_of(row, g + 1, groups, rem);
        }
        x = vreinterpretq_s8_s32(vld1q_s32(rows));
      }
      for (int t = 0; t < 8; ++t) acc[p][t] = vmmlaq_s32(acc[p][t], x, bz[t]);
    }
  };
  int64_t g = 0;
  for (; g + 2 <= groups; g += 2) step(g, true);
  if (g < total) step(g, false);
  int32x4_t out[MR][4];
  for (int p = 0; p < kPairs; ++p) {
    for (int q = 0; q < 4; ++q) {
      const int64x2_t lo = vreinterpretq_s64_s32(acc[p][2 * q]), hi = vreinterpretq_s64_s32(acc[p][2 * q + 1]);
      out[2 * p][q] = vreinterpretq_s32_s64(vzip1q_s64(lo, hi));
      if (2 * p + 1 < MR) out[2 * p + 1][q] = vreinterpretq_s32_s64(vzip2q_s64(lo, hi));
    }
  }
  store_rows<MR>(out, cols, c, ldc);
}
#endif
#endif

#if defined(EMBER_INT8_TILED)
void tile_rows(int64_t rows, int64_t k, const uint8_t* a, int64_t lda, const int8_t* panel, int64_t cols, int32_t* c,
               int64_t ldc) {
  int64_t i = 0;
  for (; i + kRows <= rows; i += kRows) tile<kRows>(k, a + i * lda, lda, panel, cols, c + i * ldc, ldc);
  switch (rows - i) {
    case 0: break;
    case 1: tile<1>(k, a + i * lda, lda, panel, cols, c + i * ldc, ldc); break;
    case 2: tile<2>(k, a + i * lda, lda, panel, cols, c + i * ldc, ldc); break;
    case 3: tile<3>(k, a + i * lda, lda, panel, cols, c + i * ldc, ldc); break;
#if EMBER_INT8_LEVEL == 2
    case 4: tile<4>(k, a + i * lda, lda, panel, cols, c + i * ldc, ldc); break;
    case 5: tile<5>(k, a + i * lda, lda, panel, cols, c + i * ldc, ldc); break;
#endif
    default: break;
  }
}

// Rows in blocks of 64 (the packed weights of a column block stay in cache across them); the
// work splits over column tiles when the batch is small, over row blocks otherwise.
void gemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* w_packed, int32_t* c,
               int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0);
    return;
  }
  const int64_t kp = int8_padded_k(k);
  const int64_t tiles = (n + kTileCols - 1) / kTileCols;
  constexpr int64_t kRowBlock = 64;
  const int64_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
  auto run = [&](int64_t rb0, int64_t rb1, int64_t t0, int64_t t1) {
    for (int64_t rb = rb0; rb < rb1; ++rb) {
      const int64_t i0 = rb * kRowBlock, rows = std::min(kRowBlock, m - i0);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t j0 = t * kTileCols;
        tile_rows(rows, k, a + i0 * lda, lda, w_packed + j0 * kp, std::min(kTileCols, n - j0), c + i0 * ldc + j0, ldc);
      }
    }
  };
  const int64_t work = m * n * kp;
  if (work < (int64_t(1) << 20)) {
    run(0, row_blocks, 0, tiles);
  } else if (row_blocks >= 2 * get_num_threads()) {
    ember::detail::parallel_for(0, row_blocks, 1, [&](int64_t b, int64_t e) { run(b, e, 0, tiles); });
  } else {
    ember::detail::parallel_for(0, tiles, 1, [&](int64_t b, int64_t e) { run(0, row_blocks, b, e); });
  }
}
#else
void gemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* w_packed, int32_t* c,
               int64_t ldc) {
  gemm_reference(m, n, k, a, lda, w_packed, c, ldc);
}
#endif

// ---- Direct convolution (Note [Direct int8 convolution]) -----------------------------------------

#if EMBER_INT8_LEVEL >= 1
// A column tile's requantization constants: bias - a_zero * w_sum (wrapping, as requantize_one
// adds them) and the multipliers; zeros past the last column.
struct ColumnEpilogue {
  alignas(64) int32_t offset[kTileCols] = {};
  alignas(64) float multiplier[kTileCols] = {};
  float lo = 0.0f, hi = 0.0f;
  int32_t y_zero = 0;
  // Every |multiplier| < 1 (as a layer's scale ratios are): every product then fits an int32, so
  // it can be rounded before the clamp, which saturating packs and a byte clamp then do.
  bool products_fit = false;
  bool raise_bytes = false;  // qmin > 0 (a ReLU's, with a zero point above 0)
  uint8_t qmin = 0, qmax = 255;

  void set(const Int8Requantization& rq, int64_t j0, int64_t cols) {
    for (int64_t j = 0; j < kTileCols; ++j) {
      const bool in = j < cols;
      const int32_t bias = in && rq.bias != nullptr ? rq.bias[j0 + j] : 0;
      offset[j] = in ? wrapping_add(corrected_sum(0, rq.a_zero, rq.w_sum[j0 + j]), bias) : 0;
      multiplier[j] = in ? rq.multiplier[j0 + j] : 0.0f;
    }
    lo = static_cast<float>(rq.qmin - rq.y_zero);
    hi = static_cast<float>(rq.qmax - rq.y_zero);
    y_zero = rq.y_zero;
    products_fit = std::all_of(multiplier, multiplier + kTileCols, [](float m) { return std::fabs(m) < 1.0f; });
    qmin = static_cast<uint8_t>(rq.qmin);
    qmax = static_cast<uint8_t>(rq.qmax);
    raise_bytes = rq.qmin > 0;
  }
};

// What a tile does with its sums: stores them, or requantizes them clamping the products (any
// multiplier), or rounding them first (ColumnEpilogue::products_fit) and then clamping the bytes
// to qmax (7-bit activations: 127), and to qmin too where it is above 0. A template argument: no
// test per row.
enum class TileOutput { Sums, Clamped, Rounded, RoundedRaised };

inline TileOutput requantized_output(const ColumnEpilogue& e) {
  if (!e.products_fit) return TileOutput::Clamped;
  return e.raise_bytes ? TileOutput::RoundedRaised : TileOutput::Rounded;
}

// A window's groups of four bytes in the packed weights' order, as one loop: with a loop per
// kernel row inside the loop over groups, GCC kept the tiles' accumulators on the stack.
struct WindowGroups {
  const uint8_t* at;  // the first pixel's group
  const uint8_t* row_end;
  int64_t rows_left;
  const Int8ConvWindows& win;

  WindowGroups(const Int8ConvWindows& w, const uint8_t* a)
      : at(a), row_end(a + 4 * w.row_groups), rows_left(w.kh), win(w) {}
  bool done() const { return rows_left == 0; }
  void next() {
    at += 4;
    if (at == row_end) {
      at += win.tap_row_step - 4 * win.row_groups;
      row_end += win.tap_row_step;
      --rows_left;
    }
  }
};
#endif

#if EMBER_INT8_LEVEL == 1
// A column tile's requantization constants as registers, set up once per tile: the row stores
// may alias ColumnEpilogue (they write bytes), so constants read from it were loaded again after
// every row's store.
struct Requantizer8 {
  __m256 multiplier0, multiplier1, lo, hi;
  __m256i y_zero16, qmin, qmax;

  explicit Requantizer8(const ColumnEpilogue& e)
      : multiplier0(_mm256_load_ps(e.multiplier)),
        multiplier1(_mm256_load_ps(e.multiplier + 8)),
        lo(_mm256_set1_ps(e.lo)),
        hi(_mm256_set1_ps(e.hi)),
        y_zero16(_mm256_set1_epi16(static_cast<int16_t>(e.y_zero))),
        qmin(_mm256_set1_epi8(static_cast<char>(e.qmin))),
        qmax(_mm256_set1_epi8(static_cast<char>(e.qmax))) {}

  // Eight requantized columns as int32 lanes before the zero point, from sums that started at the
  // offsets. Clamping before rounding gives requantize_one's values (the bounds are integers;
  // max_ps turns NaN into lo as it does), and cvtps rounds as nearbyint does, in the current mode;
  // rounded outputs skip the clamp (ColumnEpilogue::products_fit).
  template <TileOutput kOut>
  __m256i columns(__m256i v, __m256 multiplier) const {
    const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(v), multiplier);
    if constexpr (kOut != TileOutput::Clamped) return _mm256_cvtps_epi32(p);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(p, lo), hi));
  }

  // Sixteen requantized bytes of a row's sums (columns 0-7, 8-15) in order: int16 lanes (columns
  // 0-3, 8-11 | 4-7, 12-15) plus the zero point, bytes, then the dwords of four columns in order.
  // Rounded first, the saturating steps and the byte clamp give clamp_rounded's values.
  template <TileOutput kOut>
  __m128i bytes(__m256i acc0, __m256i acc1) const {
    const __m256i packed = _mm256_packs_epi32(columns<kOut>(acc0, multiplier0), columns<kOut>(acc1, multiplier1));
    const __m256i w16 =
        kOut == TileOutput::Clamped ? _mm256_add_epi16(packed, y_zero16) : _mm256_adds_epi16(packed, y_zero16);
    __m256i w8 = _mm256_packus_epi16(w16, w16);
    if constexpr (kOut == TileOutput::RoundedRaised) w8 = _mm256_max_epu8(w8, qmin);
    if constexpr (kOut != TileOutput::Clamped) w8 = _mm256_min_epu8(w8, qmax);
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5)));
  }
};

// A row of the 16-column panel's windows by MR pixels (tile's inner step over the window's
// groups), stored as int32 or requantized bytes. Not inlined: in the caller's loops GCC kept the
// epilogue's constants in registers across the groups' loop and the accumulators on the stack.
template <int MR, TileOutput kOut>
[[gnu::noinline]] void conv_tile(const Int8ConvWindows& win, const uint8_t* a, const int8_t* panel, int64_t /*kp*/,
                                 int64_t cols, const ColumnEpilogue& e, int32_t* c, uint8_t* y, int64_t ld) {
  constexpr bool kRequantize = kOut != TileOutput::Sums;
  __m256i acc0[MR], acc1[MR];
  // Requantized sums start at their offsets (bias - a_zero * w_sum).
  const __m256i init0 =
      kRequantize ? _mm256_load_si256(reinterpret_cast<const __m256i*>(e.offset)) : _mm256_setzero_si256();
  const __m256i init1 =
      kRequantize ? _mm256_load_si256(reinterpret_cast<const __m256i*>(e.offset + 8)) : _mm256_setzero_si256();
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    acc0[r] = init0;
    acc1[r] = init1;
  }
  const __m256i ones = _mm256_set1_epi16(1);
  WindowGroups groups(win, a);
  for (const int8_t* b = panel; !groups.done(); groups.next(), b += 64) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      madd_group(_mm256_set1_epi32(load_group(groups.at + r * win.pixel_step)), b0, b1, ones, acc0[r], acc1[r]);
    }
  }
  const Requantizer8 requantizer(e);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if constexpr (kRequantize) {
      const __m128i bytes = requantizer.bytes<kOut>(acc0[r], acc1[r]);
      if (cols == kTileCols) [[likely]] {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + r * ld), bytes);
      } else {
        alignas(16) uint8_t lanes[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(lanes), bytes);
        std::memcpy(y + r * ld, lanes, static_cast<size_t>(cols));
      }
    } else if (cols == kTileCols) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ld), acc0[r]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ld + 8), acc1[r]);
    } else {
      alignas(32) int32_t lanes[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc0[r]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes + 8), acc1[r]);
      store_partial(lanes, cols, c + r * ld);
    }
  }
}
#elif EMBER_INT8_LEVEL == 2
// A column tile's requantization constants as registers, set up once per tile: the row stores
// may alias ColumnEpilogue (they write bytes), so constants read from it were loaded again after
// every row's store.
struct Requantizer16 {
  __m512 multiplier0, multiplier1, lo, hi;
  __m512i y_zero16, y_zero32, qmin, qmax;

  explicit Requantizer16(const ColumnEpilogue& e)
      : multiplier0(_mm512_load_ps(e.multiplier)),
        multiplier1(_mm512_load_ps(e.multiplier + 16)),
        lo(_mm512_set1_ps(e.lo)),
        hi(_mm512_set1_ps(e.hi)),
        y_zero16(_mm512_set1_epi16(static_cast<int16_t>(e.y_zero))),
        y_zero32(_mm512_set1_epi32(e.y_zero)),
        qmin(_mm512_set1_epi8(static_cast<char>(e.qmin))),
        qmax(_mm512_set1_epi8(static_cast<char>(e.qmax))) {}

  // Sixteen requantized columns as int32 lanes before the zero point, from sums that started at
  // the offsets; the clamp before the rounding gives the same values as requantize_one's after it
  // (the bounds are integers), and max_ps turns NaN into lo as it does; rounded outputs skip the
  // clamp (ColumnEpilogue::products_fit).
  template <TileOutput kOut>
  __m512i columns(__m512i v, __m512 multiplier) const {
    __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(v), multiplier);
    if constexpr (kOut == TileOutput::Clamped) p = _mm512_min_ps(_mm512_max_ps(p, lo), hi);
    return _mm512_cvt_roundps_epi32(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }

  // Thirty-two requantized bytes of a row's sums (columns 0-15, 16-31) in order: packed to int16
  // lanes (each 128-bit lane: four columns of each half) plus the zero point, to bytes, then the
  // dwords of four columns gathered in order (cheaper than two vpmovdb stores). Rounded first, the
  // saturating steps and the byte clamp give clamp_rounded's values.
  template <TileOutput kOut>
  __m256i bytes(__m512i acc0, __m512i acc1) const {
    const __m512i packed = _mm512_packs_epi32(columns<kOut>(acc0, multiplier0), columns<kOut>(acc1, multiplier1));
    const __m512i w16 =
        kOut == TileOutput::Clamped ? _mm512_add_epi16(packed, y_zero16) : _mm512_adds_epi16(packed, y_zero16);
    __m512i w8 = _mm512_packus_epi16(w16, w16);
    if constexpr (kOut == TileOutput::RoundedRaised) w8 = _mm512_max_epu8(w8, qmin);
    if constexpr (kOut != TileOutput::Clamped) w8 = _mm512_min_epu8(w8, qmax);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, w8));
  }

  // Sixteen columns' bytes, narrowed from int32 lanes (clamped first, so any multiplier).
  __m128i bytes16(__m512i acc) const {
    return _mm512_cvtepi32_epi8(_mm512_add_epi32(columns<TileOutput::Clamped>(acc, multiplier0), y_zero32));
  }
};

// MR pixels by one or both panels' columns (16 or 32; tile's inner step over the window's groups),
// stored as int32 or requantized bytes.
template <int MR, TileOutput kOut, bool kTwoPanels>
void conv_panels(const Int8ConvWindows& win, const uint8_t* a, const int8_t* panel, int64_t kp, int64_t cols,
                 const ColumnEpilogue& e, int32_t* c, uint8_t* y, int64_t ld) {
  constexpr bool kRequantize = kOut != TileOutput::Sums;
  const int8_t* b0p = panel;
  const int8_t* b1p = kTwoPanels ? panel + kInt8Panel * kp : panel;
  __m512i acc0[MR], acc1[MR];
  // Requantized sums start at their offsets (bias - a_zero * w_sum).
  const __m512i init0 = kRequantize ? _mm512_load_si512(e.offset) : _mm512_setzero_si512();
  const __m512i init1 = kRequantize && kTwoPanels ? _mm512_load_si512(e.offset + 16) : _mm512_setzero_si512();
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    acc0[r] = init0;
    acc1[r] = init1;
  }
  for (WindowGroups groups(win, a); !groups.done(); groups.next(), b0p += 64, b1p += 64) {
    const __m512i b0 = _mm512_loadu_si512(b0p);
    const __m512i b1 = kTwoPanels ? _mm512_loadu_si512(b1p) : b0;
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512i x = _mm512_set1_epi32(load_group(groups.at + r * win.pixel_step));
      acc0[r] = dpbusd(acc0[r], x, b0);
      if constexpr (kTwoPanels) acc1[r] = dpbusd(acc1[r], x, b1);
    }
  }
  const __mmask16 m0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? __mmask16(0xFFFF) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1) : __mmask16(0);
  const __mmask32 bytes_mask = cols >= 32 ? ~__mmask32(0) : (__mmask32(1) << cols) - 1;
  const Requantizer16 requantizer(e);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if constexpr (kRequantize && kTwoPanels) {
      const __m256i bytes = requantizer.bytes<kOut>(acc0[r], acc1[r]);
      if (cols >= 32) [[likely]] {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + r * ld), bytes);
      } else {
        _mm256_mask_storeu_epi8(y + r * ld, bytes_mask, bytes);
      }
    } else if constexpr (kRequantize) {
      _mm_mask_storeu_epi8(y + r * ld, m0, requantizer.bytes16(acc0[r]));
    } else {
      _mm512_mask_storeu_epi32(c + r * ld, m0, acc0[r]);
      if (kTwoPanels && m1 != 0) _mm512_mask_storeu_epi32(c + r * ld + 16, m1, acc1[r]);
    }
  }
}

// A column tile of at most 16 columns (a first layer's few filters) runs one panel: half the work.
template <int MR, TileOutput kOut>
void conv_tile(const Int8ConvWindows& win, const uint8_t* a, const int8_t* panel, int64_t kp, int64_t cols,
               const ColumnEpilogue& e, int32_t* c, uint8_t* y, int64_t ld) {
  if (cols > kInt8Panel) {
    conv_panels<MR, kOut, true>(win, a, panel, kp, cols, e, c, y, ld);
  } else {
    conv_panels<MR, kOut, false>(win, a, panel, kp, cols, e, c, y, ld);
  }
}
#endif

#if EMBER_INT8_LEVEL >= 1
// One output row of a column tile: its pixels in tiles of kRows and a remainder tile.
template <TileOutput kOut>
void conv_row(const Int8ConvWindows& win, const uint8_t* a, const int8_t* panel, int64_t kp, int64_t cols,
              const ColumnEpilogue& e, int32_t* c, uint8_t* y, int64_t n) {
  auto tile_at = [&]<int MR>(int64_t ox) {
    conv_tile<MR, kOut>(win, a + ox * win.pixel_step, panel, kp, cols, e, c ? c + ox * n : nullptr,
                        y ? y + ox * n : nullptr, n);
  };
  int64_t ox = 0;
  for (; ox + kRows <= win.wo; ox += kRows) tile_at.template operator()<kRows>(ox);
  switch (win.wo - ox) {
    case 1: tile_at.template operator()<1>(ox); break;
    case 2: tile_at.template operator()<2>(ox); break;
    case 3: tile_at.template operator()<3>(ox); break;
#if EMBER_INT8_LEVEL == 2
    case 4: tile_at.template operator()<4>(ox); break;
    case 5: tile_at.template operator()<5>(ox); break;
#endif
    default: break;
  }
}

// Output rows by column tiles; a unit of work is one output row of one column tile (the tile's
// weights stay in cache across its rows), units spread over threads when the work is large.
template <bool kRequantize>
void conv_windows(const Int8ConvWindows& win, const uint8_t* image, int64_t n, const int8_t* w_packed,
                  const Int8Requantization* rq, int32_t* c, uint8_t* y) {
  if (win.ho <= 0 || win.wo <= 0 || n <= 0) return;
  const int64_t kp = 4 * win.kh * win.row_groups, tiles = (n + kTileCols - 1) / kTileCols;
  auto run = [&](int64_t u0, int64_t u1) {
    ColumnEpilogue e;
    int64_t epilogue_tile = -1;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t t = u / win.ho, oy = u % win.ho, j0 = t * kTileCols, cols = std::min(kTileCols, n - j0);
      if (kRequantize && t != epilogue_tile) {
        e.set(*rq, j0, cols);
        epilogue_tile = t;
      }
      const int8_t* panel = w_packed + j0 * kp;
      const uint8_t* a = image + oy * win.row_step;
      const int64_t p0 = oy * win.wo;
      if constexpr (!kRequantize) {
        conv_row<TileOutput::Sums>(win, a, panel, kp, cols, e, c + p0 * n + j0, nullptr, n);
      } else {
        uint8_t* yr = y + p0 * n + j0;
        switch (requantized_output(e)) {
          case TileOutput::Rounded: conv_row<TileOutput::Rounded>(win, a, panel, kp, cols, e, nullptr, yr, n); break;
          case TileOutput::RoundedRaised:
            conv_row<TileOutput::RoundedRaised>(win, a, panel, kp, cols, e, nullptr, yr, n);
            break;
          default: conv_row<TileOutput::Clamped>(win, a, panel, kp, cols, e, nullptr, yr, n); break;
        }
      }
    }
  };
  const int64_t units = tiles * win.ho;
  if (win.ho * win.wo * n * kp < (int64_t(1) << 20)) {
    run(0, units);
  } else {
    ember::detail::parallel_for(0, units, 1, run);
  }
}

void conv_u8s8(const Int8ConvWindows& win, const uint8_t* image, int64_t n, const int8_t* w_packed, int32_t* c) {
  conv_windows<false>(win, image, n, w_packed, nullptr, c, nullptr);
}
void conv_u8s8_requantize(const Int8ConvWindows& win, const uint8_t* image, int64_t n, const int8_t* w_packed,
                          const Int8Requantization& rq, uint8_t* y) {
  conv_windows<true>(win, image, n, w_packed, &rq, nullptr, y);
}
#else
void conv_u8s8(const Int8ConvWindows& win, const uint8_t* image, int64_t n, const int8_t* w_packed, int32_t* c) {
  conv_reference(win, image, n, w_packed, nullptr, c, nullptr);
}
void conv_u8s8_requantize(const Int8ConvWindows& win, const uint8_t* image, int64_t n, const int8_t* w_packed,
                          const Int8Requantization& rq, uint8_t* y) {
  conv_reference(win, image, n, w_packed, &rq, nullptr, y);
}
#endif

void quantize_u8(int64_t n, const float* x, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax,
                 uint8_t flip, uint8_t* q) {
  const float lo = static_cast<float>(qmin - zero_point), hi = static_cast<float>(qmax - zero_point);
  int64_t i = 0;
#if EMBER_INT8_LEVEL >= 1
  // Clamped before the rounding, which gives clamp_rounded's values as the bounds are integers;
  // max_ps(p, lo) yields lo for a NaN p as it does. The zero point is added to int16 lanes (the
  // clamped values and it fit them), 32 (AVX2) or 64 (AVX-512) bytes at a time, put in order.
#if EMBER_INT8_LEVEL == 2
  {
    const __m512 vinv = _mm512_set1_ps(inv_scale), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512i vzero = _mm512_set1_epi16(static_cast<int16_t>(zero_point));
    const __m512i vflip = _mm512_set1_epi8(static_cast<char>(flip));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    auto rounded = [&](int64_t at) {
      const __m512 p = _mm512_mul_ps(_mm512_loadu_ps(x + at), vinv);
      return _mm512_cvt_roundps_epi32(_mm512_min_ps(_mm512_max_ps(p, vlo), vhi),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    };
    for (; i + 64 <= n; i += 64) {
      const __m512i w01 = _mm512_add_epi16(_mm512_packs_epi32(rounded(i), rounded(i + 16)), vzero);
      const __m512i w23 = _mm512_add_epi16(_mm512_packs_epi32(rounded(i + 32), rounded(i + 48)), vzero);
      const __m512i bytes = _mm512_xor_si512(_mm512_packus_epi16(w01, w23), vflip);
      _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(order, bytes));
    }
  }
#endif
  const __m256 vinv = _mm256_set1_ps(inv_scale), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256i vzero = _mm256_set1_epi16(static_cast<int16_t>(zero_point));
  const __m256i vflip = _mm256_set1_epi8(static_cast<char>(flip));
  auto rounded = [&](int64_t at) {
    const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x + at), vinv);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(p, vlo), vhi));
  };
  for (; i + 32 <= n; i += 32) {
    const __m256i w01 = _mm256_add_epi16(_mm256_packs_epi32(rounded(i), rounded(i + 8)), vzero);
    const __m256i w23 = _mm256_add_epi16(_mm256_packs_epi32(rounded(i + 16), rounded(i + 24)), vzero);
    const __m256i bytes = _mm256_xor_si256(_mm256_packus_epi16(w01, w23), vflip);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
#endif
  quantize_range(i, n, x, inv_scale, zero_point, lo, hi, flip, q);
}

void dequantize_u8(int64_t n, const uint8_t* q, int32_t zero_point, float scale, uint8_t flip, float* y) {
  int64_t i = 0;
#if EMBER_INT8_LEVEL >= 1
  const __m256i vzero = _mm256_set1_epi32(zero_point), vflip = _mm256_set1_epi32(flip);
  const __m256 vscale = _mm256_set1_ps(scale);
  for (; i + 8 <= n; i += 8) {
    int64_t bytes;
    std::memcpy(&bytes, q + i, 8);
    const __m256i v = _mm256_xor_si256(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes)), vflip);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, vzero)), vscale));
  }
#endif
  for (; i < n; ++i) y[i] = static_cast<float>(static_cast<int32_t>(q[i] ^ flip) - zero_point) * scale;
}

#if EMBER_INT8_LEVEL >= 1
// Eight columns' dequantize_one from j on, as a row of `c`.
struct DequantizeColumns {
  __m256i correction;  // a_zero * w_sum
  __m256 scale, bias;
  bool has_bias, relu;

  DequantizeColumns(int64_t j, int32_t a_zero, const int32_t* w_sum, const float* s, const float* b, bool r)
      : correction(_mm256_mullo_epi32(_mm256_set1_epi32(a_zero),
                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w_sum + j)))),
        scale(_mm256_loadu_ps(s + j)),
        bias(b != nullptr ? _mm256_loadu_ps(b + j) : _mm256_setzero_ps()),
        has_bias(b != nullptr),
        relu(r) {}

  [[gnu::always_inline]] __m256 operator()(const int32_t* c) const {
    const __m256i v = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)), correction);
    __m256 r = _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale);
    __asm__("" : "+x"(r));  // no fused multiply-add with the bias (Note [Int8 GEMM])
    if (has_bias) r = _mm256_add_ps(r, bias);
    // relu as `y < 0 ? 0 : y`: max_ps(y, 0) would turn NaN into 0, blendv keeps it.
    if (relu) r = _mm256_blendv_ps(r, _mm256_setzero_ps(), _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_LT_OQ));
    return r;
  }
};

// r[t][u] becomes r[u][t].
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // rows 0-3, then 4-7
    u[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#endif

void dequantize_s32(int64_t m, int64_t n, const int32_t* c, int64_t ldc, int32_t a_zero, const int32_t* w_sum,
                    const float* scale, const float* bias, bool relu, float* y, int64_t ldy) {
  for (int64_t i = 0; i < m; ++i) {
    const int32_t* ci = c + i * ldc;
    float* yi = y + i * ldy;
    int64_t j = 0;
#if EMBER_INT8_LEVEL >= 1
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(yi + j, DequantizeColumns(j, a_zero, w_sum, scale, bias, relu)(ci + j));
#endif
    for (; j < n; ++j) yi[j] = dequantize_one(ci[j], a_zero, w_sum[j], scale[j], bias, j, relu);
  }
}

#if EMBER_INT8_LEVEL >= 1
// dequantize_s32_transposed's blocks of 8 rows by 8 columns, transposed in registers; the bias and
// relu tests taken out of the loops. Eight columns at a time down all the rows, so that the writes
// go to eight output rows at once: with rows of 4 KB (a 32x32 image's), the blocks of every column
// of a band of rows fall in the same few L1 sets (CIFAR's 64-channel conv: 250 -> 136 us alone at
// batch 1), and the first conv's 25k outputs gain too.
template <bool kBias, bool kRelu>
void dequantize_blocks_transposed(int64_t m8, int64_t n8, const int32_t* c, int64_t ldc, int32_t a_zero,
                                  const int32_t* w_sum, const float* scale, const float* bias, float* y, int64_t ldy) {
  for (int64_t j = 0; j < n8; j += 8) {
    const DequantizeColumns columns(j, a_zero, w_sum, scale, kBias ? bias : nullptr, kRelu);
    for (int64_t i = 0; i < m8; i += 8) {
      __m256 r[8];
      for (int t = 0; t < 8; ++t) r[t] = columns(c + (i + t) * ldc + j);
      transpose8x8(r);
      for (int t = 0; t < 8; ++t) _mm256_storeu_ps(y + (j + t) * ldy + i, r[t]);
    }
  }
}
#endif

void dequantize_s32_transposed(int64_t m, int64_t n, const int32_t* c, int64_t ldc, int32_t a_zero,
                               const int32_t* w_sum, const float* scale, const float* bias, bool relu, float* y,
                               int64_t ldy) {
  auto one = [&](int64_t i, int64_t j) {
    y[j * ldy + i] = dequantize_one(c[i * ldc + j], a_zero, w_sum[j], scale[j], bias, j, relu);
  };
  int64_t m8 = 0, n8 = 0;
#if EMBER_INT8_LEVEL >= 1
  m8 = m / 8 * 8;
  n8 = n / 8 * 8;
  auto blocks = [&]<bool kBias, bool kRelu>() {
    dequantize_blocks_transposed<kBias, kRelu>(m8, n8, c, ldc, a_zero, w_sum, scale, bias, y, ldy);
  };
  if (bias != nullptr) {
    relu ? blocks.template operator()<true, true>() : blocks.template operator()<true, false>();
  } else {
    relu ? blocks.template operator()<false, true>() : blocks.template operator()<false, false>();
  }
#endif
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = i < m8 ? n8 : 0; j < n; ++j) one(i, j);
  }
}

#if EMBER_INT8_LEVEL >= 1
// dst[j * ldd + i] = src[i * lds + j] for i, j < 16: rows interleaved in pairs, quads, octets and
// halves (bytes, words, dwords, qwords); after step k an element holds 2^k rows of one column.
inline void transpose16x16_u8(const uint8_t* src, int64_t lds, uint8_t* dst, int64_t ldd) {
  __m128i a[16], b[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + r * lds));
  // b[k + 8h]: rows 2k, 2k + 1 of columns 8h..8h + 7.
  for (int k = 0; k < 8; ++k) {
    b[k] = _mm_unpacklo_epi8(a[2 * k], a[2 * k + 1]);
    b[k + 8] = _mm_unpackhi_epi8(a[2 * k], a[2 * k + 1]);
  }
  // a[g + 4q + 8h]: rows 4g..4g + 3 of columns 8h + 4q..+3.
  for (int h = 0; h < 2; ++h) {
    for (int g = 0; g < 4; ++g) {
      a[g + 8 * h] = _mm_unpacklo_epi16(b[2 * g + 8 * h], b[2 * g + 1 + 8 * h]);
      a[g + 4 + 8 * h] = _mm_unpackhi_epi16(b[2 * g + 8 * h], b[2 * g + 1 + 8 * h]);
    }
  }
  // b[o + 2m], m = s + 2q + 4h: rows 8o..8o + 7 of columns 2m, 2m + 1.
  for (int hq = 0; hq < 4; ++hq) {  // hq = q + 2h
    for (int o = 0; o < 2; ++o) {
      b[o + 4 * hq] = _mm_unpacklo_epi32(a[2 * o + 4 * hq], a[2 * o + 1 + 4 * hq]);
      b[o + 2 + 4 * hq] = _mm_unpackhi_epi32(a[2 * o + 4 * hq], a[2 * o + 1 + 4 * hq]);
    }
  }
  for (int m = 0; m < 8; ++m) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * m) * ldd), _mm_unpacklo_epi64(b[2 * m], b[2 * m + 1]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * m + 1) * ldd), _mm_unpackhi_epi64(b[2 * m], b[2 * m + 1]));
  }
}
#endif

void transpose_u8(int64_t rows, int64_t cols, const uint8_t* src, int64_t lds, uint8_t* dst, int64_t ldd) {
  int64_t rows16 = 0, cols16 = 0;
#if EMBER_INT8_LEVEL >= 1
  rows16 = rows / 16 * 16;
  cols16 = cols / 16 * 16;
  for (int64_t i = 0; i < rows16; i += 16) {
    for (int64_t j = 0; j < cols16; j += 16) transpose16x16_u8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
  }
#endif
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = i < rows16 ? cols16 : 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
  }
}

// ---- Max pooling of uint8 images ------------------------------------------------------------------

// d = max(d, p), d = p, d = max(p, q, r, s) over n bytes; the restrict lets the compiler use this
// ISA's vector max without an overlap check.
inline void max_bytes(uint8_t* __restrict d, const uint8_t* __restrict p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = d[i] > p[i] ? d[i] : p[i];
}
inline void copy_bytes(uint8_t* __restrict d, const uint8_t* __restrict p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = p[i];
}
inline void max_of_four(uint8_t* __restrict d, const uint8_t* __restrict p, const uint8_t* __restrict q,
                        const uint8_t* __restrict r, const uint8_t* __restrict s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t pq = p[i] > q[i] ? p[i] : q[i], rs = r[i] > s[i] ? r[i] : s[i];
    d[i] = pq > rs ? pq : rs;
  }
}

// Windows that tile the image (stride = kernel, no padding or dilation): no bounds to test, and
// 2x2 windows (most pooling) as one pass over their four taps.
void max_pool_tiling_u8(const PoolShape& q, int64_t n, int64_t c, const uint8_t* src, uint8_t* dst) {
  const int64_t row = q.w * c;
  for (int64_t b = 0; b < n; ++b) {
    const uint8_t* img = src + b * q.h * row;
    for (int64_t oh = 0; oh < q.ho; ++oh) {
      const uint8_t* top = img + oh * q.kh * row;
      for (int64_t ow = 0; ow < q.wo; ++ow, dst += c) {
        const uint8_t* p = top + ow * q.kw * c;
        if (q.kh == 2 && q.kw == 2) {
          max_of_four(dst, p, p + c, p + row, p + row + c, c);
          continue;
        }
        copy_bytes(dst, p, c);
        for (int64_t i = 0; i < q.kh; ++i) {
          for (int64_t j = i == 0 ? 1 : 0; j < q.kw; ++j) max_bytes(dst, p + i * row + j * c, c);
        }
      }
    }
  }
}

// Tiling windows over images of at most kFewChannels channels (LeNet-5's 6 and 16), whose
// per-window loops of c bytes cost more than their maxima: each output row's kh input rows are
// maxed into one row (contiguous bytes, whole vectors), then each byte with the kw - 1 that lie c,
// 2c, ... after it (a window's columns), and every kw-th pixel of that copied out with one
// 16-byte move (spilling into the next pixels' places, which are written after it; the moves that
// would pass the row's end copy c bytes). The rows live on the stack: plans allocate nothing.
constexpr int64_t kFewChannels = 16, kPoolRowBytes = 4096;

void max_pool_tiling_few_u8(const PoolShape& q, int64_t n, int64_t c, const uint8_t* src, uint8_t* dst) {
  const int64_t row = q.w * c, used = q.wo * q.kw * c;  // an input row's bytes that windows read
  const int64_t span = used - (q.kw - 1) * c;             // window starts, as bytes
  alignas(64) uint8_t rows[kPoolRowBytes], windows[kPoolRowBytes + kFewChannels];
  for (int64_t b = 0; b < n; ++b) {
    const uint8_t* img = src + b * q.h * row;
    for (int64_t oh = 0; oh < q.ho; ++oh, dst += q.wo * c) {
      const uint8_t* top = img + oh * q.kh * row;
      copy_bytes(rows, top, used);
      for (int64_t i = 1; i < q.kh; ++i) max_bytes(rows, top + i * row, used);
      copy_bytes(windows, rows, span);
      for (int64_t j = 1; j < q.kw; ++j) max_bytes(windows, rows + j * c, span);
      std::memset(windows + span, 0, kFewChannels);  // read by the spilling moves, never kept
      const uint8_t* w = windows;
      int64_t ow = 0;
      for (; ow * c + kFewChannels <= q.wo * c; ++ow, w += q.kw * c) std::memcpy(dst + ow * c, w, kFewChannels);
      for (; ow < q.wo; ++ow, w += q.kw * c) std::memcpy(dst + ow * c, w, static_cast<size_t>(c));
    }
  }
}

void max_pool_u8(const PoolShape& q, int64_t n, int64_t c, const uint8_t* src, uint8_t* dst) {
  if (q.stride_h == q.kh && q.stride_w == q.kw && q.pad_h == 0 && q.pad_w == 0 && q.dil_h == 1 && q.dil_w == 1) {
    if (c <= kFewChannels && q.wo * q.kw * c <= kPoolRowBytes && q.ho > 0 && q.wo > 0) {
      max_pool_tiling_few_u8(q, n, c, src, dst);
    } else {
      max_pool_tiling_u8(q, n, c, src, dst);
    }
    return;
  }
  for (int64_t b = 0; b < n; ++b) {
    const uint8_t* img = src + b * q.h * q.w * c;
    for (int64_t oh = 0; oh < q.ho; ++oh) {
      for (int64_t ow = 0; ow < q.wo; ++ow, dst += c) {
        // The first tap inside the image is copied, the others maxed in; a window wholly in the
        // padding (possible with dilation; float pooling gives -inf there) gives 0, the lowest code.
        bool first = true;
        for (int64_t i = 0; i < q.kh; ++i) {
          const int64_t ih = oh * q.stride_h - q.pad_h + i * q.dil_h;
          if (ih < 0 || ih >= q.h) continue;
          for (int64_t j = 0; j < q.kw; ++j) {
            const int64_t iw = ow * q.stride_w - q.pad_w + j * q.dil_w;
            if (iw < 0 || iw >= q.w) continue;
            const uint8_t* p = img + (ih * q.w + iw) * c;
            if (first) {
              copy_bytes(dst, p, c);
              first = false;
            } else {
              max_bytes(dst, p, c);
            }
          }
        }
        if (first) std::memset(dst, 0, static_cast<size_t>(c));
      }
    }
  }
}

void requantize_u8(int64_t m, int64_t n, const int32_t* c, int64_t ldc, int32_t a_zero, const int32_t* w_sum,
                   const int32_t* bias, const float* multiplier, int32_t y_zero, int32_t qmin, int32_t qmax,
                   uint8_t* y, int64_t ldy) {
  const float lo = static_cast<float>(qmin - y_zero), hi = static_cast<float>(qmax - y_zero);
  for (int64_t i = 0; i < m; ++i) {
    const int32_t* ci = c + i * ldc;
    uint8_t* yi = y + i * ldy;
    int64_t j = 0;
#if EMBER_INT8_LEVEL >= 1
    const __m256i vz = _mm256_set1_epi32(a_zero), vyz = _mm256_set1_epi32(y_zero);
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (; j + 8 <= n; j += 8) {
      const __m256i corr = _mm256_mullo_epi32(vz, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w_sum + j)));
      __m256i v = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ci + j)), corr);
      if (bias != nullptr) v = _mm256_add_epi32(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + j)));
      const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(multiplier + j));
      __m256 r = _mm256_round_ps(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm256_min_ps(_mm256_max_ps(r, vlo), vhi);
      const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(r), vyz);
      const __m256i w16 = _mm256_packs_epi32(q, q);
      const __m256i w8 = _mm256_packus_epi16(w16, w16);
      const int32_t lo4 = _mm_cvtsi128_si32(_mm256_castsi256_si128(w8));
      const int32_t hi4 = _mm_cvtsi128_si32(_mm256_extracti128_si256(w8, 1));
      std::memcpy(yi + j, &lo4, 4);
      std::memcpy(yi + j + 4, &hi4, 4);
    }
#endif
    for (; j < n; ++j) yi[j] = requantize_one(ci[j], a_zero, w_sum[j], bias, j, multiplier[j], y_zero, lo, hi);
  }
}

}  // namespace

extern const Int8Kernels kInt8Table;
const Int8Kernels kInt8Table{.isa = EMBER_INT8_ISA,
                             .gemm_u8s8 = &gemm_u8s8,
                             .quantize_u8 = &quantize_u8,
                             .dequantize_u8 = &dequantize_u8,
                             .dequantize_s32 = &dequantize_s32,
                             .dequantize_s32_transposed = &dequantize_s32_transposed,
                             .requantize_u8 = &requantize_u8,
                             .transpose_u8 = &transpose_u8,
                             .max_pool_u8 = &max_pool_u8,
                             .conv_u8s8 = &conv_u8s8,
                             .conv_u8s8_requantize = &conv_u8s8_requantize,
                             .direct_conv_fast = EMBER_INT8_LEVEL >= 1};

}  // namespace ember::backend::EMBER_INT8_NS
