// Convolutions without a column matrix, included by cpu_kernels.inl inside each ISA's namespace
// after gemm.inl (no include guard by design).
//
// Note [Flat convolution]
// With unit strides and an output as large as the input ("same" convolutions: every 3x3
// convolution of a ResNet but the downsampling ones), the column matrix's row for kernel tap
// t = (c, i, j) is channel plane c read at one fixed offset,
//   off(t) = (i * dil_h - pad_h) * w + j * dil_w - pad_w,
// with the entries whose input lies outside the image set to zero (conv_flat_applies). A vector
// of W output pixels p .. p+W of tap t is therefore one masked load at x_c + p + off(t), whose
// mask keeps the lanes whose input row (depends on i) and input column (depends on j) are inside
// the image; a masked-off lane is not read, so the load may reach outside the plane. AVX-512 has
// lane masks; AVX2's vmaskmovps takes a vector mask and does not read (or fault on) the lanes it
// leaves out either, so both tiers convolve this way, with tiles sized to their registers (32
// zmm, 16 ymm). Other ISAs leave these entries null and convolve by im2col + GEMM.
//
// - conv_flat is the GEMM of Note [GEMM design] with B read this way instead of from a packed
//   panel: no column matrix is written and read back and no B panel is packed (im2col, col2im
//   and packing took about a third of a ResNet training step). A is the weight matrix, packed
//   once per call into row panels, and the tile covers a panel of NV vectors of pixels, whose
//   row and column masks are worked out once and shared by all row tiles. Row tiles are
//   balanced (16 rows run as 8 + 8, not 14 + 2).
// - The input gradient of such a convolution is conv_flat of the output gradient with the
//   weights transposed and flipped (a stride-1 correlation padded by dil * (k - 1) - pad, again
//   "same"), which the caller arranges.
// - conv_flat_weight_grad computes gw[o][t] += sum over images and pixels of gy[o][p] * x_t[p]
//   with both operands as they lie in memory (pixels contiguous in both): a tile of R taps x S
//   output channels keeps R * S vector accumulators, each a dot product over pixels, summed
//   across its lanes once per block of images (enough images that the horizontal sums are a
//   small share), so neither operand is transposed or packed. The tiles of one block of output
//   channels run over every tap before the next block, so that block's gy (S channels of a block
//   of images) stays in L1 while the taps stream: S gy loads per pixel vector against R tap loads.
//   Each load feeds fewer multiplies than the GEMM's packed tiles do, which win from 64 output
//   channels up (kConvFlatMaxWgradOutputs). It also takes stride-1 convolutions without padding,
//   whose output rows are narrower than the input's (see conv_valid_weight_grad).
#include <algorithm>
#include <cstdint>

namespace ember::backend::EMBER_ISA_NS {
namespace {
namespace conv_impl {

using gemm_impl::static_for;

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__FMA__)
#define EMBER_HAVE_FLAT_CONV 1
#define EMBER_FLAT_CONV_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define EMBER_HAVE_FLAT_CONV 1
#endif

#if defined(EMBER_HAVE_FLAT_CONV)

template <class T>
struct FlatShape {
  static constexpr int W = Pack<T>::kWidth;
#if defined(EMBER_FLAT_CONV_AVX512)
  static constexpr int MR = 14;  // as the GEMM: 14 x 2 accumulators + 2 B vectors + 1 broadcast
  static constexpr int NV = 2;
  static constexpr int R = 3;    // weight gradient: 3 x 8 accumulators + 3 tap vectors + 1 gy
  static constexpr int S = 8;
#else
  static constexpr int MR = 6;   // as the GEMM: 6 x 2 accumulators + 2 B vectors + 1 broadcast
  static constexpr int NV = 2;
  static constexpr int R = 3;    // weight gradient: 3 x 4 accumulators + 3 tap vectors + 1 gy
  static constexpr int S = 4;
#endif
};

template <class T>
using Mask = typename Pack<T>::Mask;

// Keeps a loaded vector in a register: GCC otherwise folds the load into every FMA that uses
// it, which multiplies the loads of a weight-gradient step by R (they, not the FMAs, then bound
// the loop).
template <class V>
[[gnu::always_inline]] inline V in_register(V v) {
  __asm__("" : "+v"(v.v));
  return v;
}

// The mask of the lanes whose bits are set (bit l: lane l).
template <class T>
Mask<T> mask_of(uint32_t bits) {
#if defined(EMBER_FLAT_CONV_AVX512)
  return Mask<T>{static_cast<decltype(Mask<T>::m)>(bits)};
#else
  if constexpr (sizeof(T) == 4) {
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i set = _mm256_and_si256(_mm256_set1_epi32(static_cast<int32_t>(bits)), lane_bit);
    return Mask<T>{_mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane_bit))};
  } else {
    const __m256i lane_bit = _mm256_setr_epi64x(1, 2, 4, 8);
    const __m256i set = _mm256_and_si256(_mm256_set1_epi64x(static_cast<int64_t>(bits)), lane_bit);
    return Mask<T>{_mm256_castsi256_pd(_mm256_cmpeq_epi64(set, lane_bit))};
  }
#endif
}

// Row and column masks of nv consecutive vectors of output pixels starting at pixel q:
// row[i][v] keeps the lanes of vector v whose input row for kernel row i is inside the image,
// col[j][v] those whose input column for kernel column j is; pixels >= hw are in neither.
template <class T, int NVmax>
struct PixelMasks {
  Mask<T> row[kConvFlatMaxKernel][NVmax];
  Mask<T> col[kConvFlatMaxKernel][NVmax];
};

// The row and column masks of the 16 output pixels p0 .. p0+15, as bit masks: bit l of
// row[i] is set when pixel p0 + l exists (< images * hw) and its input row for kernel row i is
// inside the image, bit l of col[j] likewise for kernel column j. With several images side by
// side (a strided conv_flat), pixel p is pixel p % hw of image p / hw. Lane by lane: oh = p / wo
// from a float division, exact for p < 2^24 (conv_flat_applies), then the row within the image
// likewise; then one unsigned comparison per kernel row and column. (A scalar loop over lanes
// and taps cost more than the convolution itself for one-channel inputs.)
#if defined(EMBER_FLAT_CONV_AVX512)
inline void pixel_bits16(const ConvShape& s, int64_t p0, uint32_t* row, uint32_t* col, int64_t images) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i p = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(p0)), lane);
  auto quotient = [](__m512i a, __m512i b) {
    return _mm512_cvttps_epi32(
        _mm512_roundscale_ps(_mm512_div_ps(_mm512_cvtepi32_ps(a), _mm512_cvtepi32_ps(b)), _MM_FROUND_TO_ZERO));
  };
  const __m512i wo = _mm512_set1_epi32(static_cast<int32_t>(s.wo));
  __m512i oh = quotient(p, wo);
  const __m512i ow = _mm512_sub_epi32(p, _mm512_mullo_epi32(oh, wo));
  if (images > 1) {  // images side by side: the row within its image
    const __m512i ho = _mm512_set1_epi32(static_cast<int32_t>(s.ho));
    oh = _mm512_sub_epi32(oh, _mm512_mullo_epi32(quotient(oh, ho), ho));
  }
  const __mmask16 exists = _mm512_cmplt_epi32_mask(p, _mm512_set1_epi32(static_cast<int32_t>(images * s.ho * s.wo)));
  const __m512i h = _mm512_set1_epi32(static_cast<int32_t>(s.h)), w = _mm512_set1_epi32(static_cast<int32_t>(s.w));
  for (int64_t i = 0; i < s.kh; ++i) {
    const __m512i ih = _mm512_add_epi32(oh, _mm512_set1_epi32(static_cast<int32_t>(i * s.dil_h - s.pad_h)));
    row[i] = _mm512_mask_cmplt_epu32_mask(exists, ih, h);  // negative rows compare as huge
  }
  for (int64_t j = 0; j < s.kw; ++j) {
    const __m512i iw = _mm512_add_epi32(ow, _mm512_set1_epi32(static_cast<int32_t>(j * s.dil_w - s.pad_w)));
    col[j] = _mm512_mask_cmplt_epu32_mask(exists, iw, w);
  }
}
#else
// AVX2: the same in two halves of 8 lanes, bits from the comparisons' sign bits.
inline void pixel_bits16(const ConvShape& s, int64_t p0, uint32_t* row, uint32_t* col, int64_t images) {
  for (int64_t i = 0; i < s.kh; ++i) row[i] = 0;
  for (int64_t j = 0; j < s.kw; ++j) col[j] = 0;
  const __m256i wo = _mm256_set1_epi32(static_cast<int32_t>(s.wo));
  const __m256i h = _mm256_set1_epi32(static_cast<int32_t>(s.h)), w = _mm256_set1_epi32(static_cast<int32_t>(s.w));
  const __m256i minus_one = _mm256_set1_epi32(-1);
  auto bits = [](__m256i inside) { return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(inside))); };
  for (int half = 0; half < 2; ++half) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i p = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(p0 + 8 * half)), lane);
    auto quotient = [](__m256i a, __m256i b) {
      return _mm256_cvttps_epi32(_mm256_round_ps(_mm256_div_ps(_mm256_cvtepi32_ps(a), _mm256_cvtepi32_ps(b)),
                                                 _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
    };
    __m256i oh = quotient(p, wo);
    const __m256i ow = _mm256_sub_epi32(p, _mm256_mullo_epi32(oh, wo));
    if (images > 1) {  // images side by side: the row within its image
      const __m256i ho = _mm256_set1_epi32(static_cast<int32_t>(s.ho));
      oh = _mm256_sub_epi32(oh, _mm256_mullo_epi32(quotient(oh, ho), ho));
    }
    const __m256i exists = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(images * s.ho * s.wo)), p);
    for (int64_t i = 0; i < s.kh; ++i) {
      const __m256i ih = _mm256_add_epi32(oh, _mm256_set1_epi32(static_cast<int32_t>(i * s.dil_h - s.pad_h)));
      const __m256i inside = _mm256_and_si256(exists, _mm256_and_si256(_mm256_cmpgt_epi32(ih, minus_one),
                                                                       _mm256_cmpgt_epi32(h, ih)));
      row[i] |= bits(inside) << (8 * half);
    }
    for (int64_t j = 0; j < s.kw; ++j) {
      const __m256i iw = _mm256_add_epi32(ow, _mm256_set1_epi32(static_cast<int32_t>(j * s.dil_w - s.pad_w)));
      const __m256i inside = _mm256_and_si256(exists, _mm256_and_si256(_mm256_cmpgt_epi32(iw, minus_one),
                                                                       _mm256_cmpgt_epi32(w, iw)));
      col[j] |= bits(inside) << (8 * half);
    }
  }
}
#endif

template <class T, int NVmax>
void pixel_masks(const ConvShape& s, int64_t q, int nv, PixelMasks<T, NVmax>& pm, int64_t images = 1) {
  constexpr int W = Pack<T>::kWidth;  // 16 floats or 8 doubles: one or half a 16-pixel block
  uint32_t rb[kConvFlatMaxKernel], cb[kConvFlatMaxKernel];
  for (int v = 0; v < nv; ++v) {
    const int half = (v * W) % 16;  // 0, or 8 for the second vector of doubles in a block
    if (half == 0) pixel_bits16(s, q + int64_t(v) * W, rb, cb, images);
    for (int64_t i = 0; i < s.kh; ++i) pm.row[i][v] = mask_of<T>((rb[i] >> half) & ((1u << W) - 1u));
    for (int64_t j = 0; j < s.kw; ++j) pm.col[j][v] = mask_of<T>((cb[j] >> half) & ((1u << W) - 1u));
  }
}

// ---- conv_flat ------------------------------------------------------------------------------

// Each panel's tap masks (its kernel row's and column's) are combined once, shared by all row
// tiles: combined per tap, the scalar loads, AND and moves to a mask register cost AVX-512 5-8%
// on ResNet's 16- and 32-channel planes, and on AVX2, whose masks are vectors, more. There a tap
// whose lanes are all inside the image (most taps) also gets a plain load.
template <class T>
struct TapMasks {
  Mask<T> m[kConvFlatMaxKernel * kConvFlatMaxKernel][2];
  bool full[kConvFlatMaxKernel * kConvFlatMaxKernel];
};

template <class T, int NVmax>
void tap_masks(const ConvShape& s, int nv, const PixelMasks<T, NVmax>& pm, TapMasks<T>& tm) {
  constexpr int W = Pack<T>::kWidth;
  for (int64_t i = 0; i < s.kh; ++i) {
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t t = i * s.kw + j;
      bool full = nv == 2;
      for (int v = 0; v < 2; ++v) {
        tm.m[t][v] = v < nv ? pm.row[i][v] & pm.col[j][v] : pm.row[i][0] & ~pm.row[i][0];
        full = full && mask_bits(tm.m[t][v]) == (1u << W) - 1u;
      }
      tm.full[t] = full;
    }
  }
}

// Where the kernel taps of a strided flat convolution read (Note [Strided flat convolution]):
// tap (c, i, j) reads x + c * channel + row_off[i] + col_off[j] at the panel's pixels, keeping the
// lanes of row mask mrow[i] and column mask mcol[j] (TapMasks' index mrow[i] * mask_cols + mcol[j]).
// A stride-1 tile computes these from the shape.
struct TapGeometry {
  int64_t channel;
  int64_t row_off[kConvFlatMaxKernel], col_off[kConvFlatMaxKernel];
  int mrow[kConvFlatMaxKernel], mcol[kConvFlatMaxKernel];
  int64_t mask_cols;
};

// y[r][q + v*W + l] = sum over taps t of wp[t * MR_ + r] * x_t[q + v*W + l] for r < MR_ rows,
// v < NV_ vectors, with x_t the input plane at tap t's offset (Strided: where g places it);
// `valid` output pixels from q are stored (the last vector may be partial).
template <class T, int MR_, int NV_, bool Strided>
[[gnu::always_inline]] inline void flat_tile_body(const ConvShape& s, const TapGeometry& g, const T* wp, const T* x,
                                                  int64_t q, const PixelMasks<T, FlatShape<T>::NV>& pm,
                                                  const TapMasks<T>* tm, T* y, int64_t ldy, int64_t valid) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  V acc[MR_][NV_];
  static_for<MR_>([&](auto r) { static_for<NV_>([&](auto v) { acc[r][v] = V(T(0)); }); });
  const int64_t channel = Strided ? g.channel : s.h * s.w;
  const T* xq = x + q;
  for (int64_t c = 0; c < s.c; ++c, xq += channel) {
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t mi = Strided ? g.mrow[i] : i;
      bool any_row = false;
      static_for<NV_>([&](auto v) { any_row |= any(pm.row[mi][v]); });
      if (!any_row) {  // this kernel row reads only padding for every pixel of the panel
        wp += s.kw * MR_;
        continue;
      }
      const T* xr = xq + (Strided ? g.row_off[i] : (i * s.dil_h - s.pad_h) * s.w - s.pad_w);
      for (int64_t j = 0; j < s.kw; ++j, wp += MR_) {
        const T* xt = xr + (Strided ? g.col_off[j] : j * s.dil_w);
        const int64_t mj = Strided ? g.mcol[j] : j;
        V b[NV_];
        const int64_t t = mi * (Strided ? g.mask_cols : s.kw) + mj;
#if defined(EMBER_FLAT_CONV_AVX512)
        static_for<NV_>([&](auto v) { b[v] = V::load_masked(xt + v * W, tm->m[t][v]); });
#else
        if (tm->full[t]) {
          static_for<NV_>([&](auto v) { b[v] = V::load(xt + v * W); });
        } else {
          static_for<NV_>([&](auto v) { b[v] = V::load_masked(xt + v * W, tm->m[t][v]); });
        }
#endif
        static_for<MR_>([&](auto r) {
          const V a(wp[r]);
          static_for<NV_>([&](auto v) { acc[r][v] = fma(a, b[v], acc[r][v]); });
        });
      }
    }
  }
  static_for<MR_>([&](auto r) {
    static_for<NV_>([&](auto v) {
      const int64_t left = valid - v * W;
      if (left >= W) {
        acc[r][v].store(y + r * ldy + q + v * W);
      } else if (left > 0) {
        acc[r][v].store_n(y + r * ldy + q + v * W, static_cast<int>(left));
      }
    });
  });
}

// The tiles as functions: a stride-1 tile takes no TapGeometry (with one, ResNet's 32-channel
// planes measured 5-8% slower in separate processes, its inner loop's code unchanged).
template <class T, int MR_, int NV_>
void flat_tile(const ConvShape& s, const T* wp, const T* x, int64_t q, const PixelMasks<T, FlatShape<T>::NV>& pm,
               const TapMasks<T>* tm, T* y, int64_t ldy, int64_t valid) {
  flat_tile_body<T, MR_, NV_, false>(s, TapGeometry{}, wp, x, q, pm, tm, y, ldy, valid);
}
template <class T, int MR_, int NV_>
void strided_flat_tile(const ConvShape& s, const TapGeometry& g, const T* wp, const T* x, int64_t q,
                       const PixelMasks<T, FlatShape<T>::NV>& pm, const TapMasks<T>* tm, T* y, int64_t ldy,
                       int64_t valid) {
  flat_tile_body<T, MR_, NV_, true>(s, g, wp, x, q, pm, tm, y, ldy, valid);
}

template <class T>
using FlatTileFn = void (*)(const ConvShape&, const T*, const T*, int64_t, const PixelMasks<T, FlatShape<T>::NV>&,
                            const TapMasks<T>*, T*, int64_t, int64_t);
template <class T>
using StridedTileFn = void (*)(const ConvShape&, const TapGeometry&, const T*, const T*, int64_t,
                               const PixelMasks<T, FlatShape<T>::NV>&, const TapMasks<T>*, T*, int64_t, int64_t);

template <class T>
struct FlatTileTable {
  FlatTileFn<T> fn[FlatShape<T>::MR][FlatShape<T>::NV];
  StridedTileFn<T> strided[FlatShape<T>::MR][FlatShape<T>::NV];
};

template <class T, int... I>
constexpr FlatTileTable<T> make_flat_tile_table(std::integer_sequence<int, I...>) {
  constexpr int NV = FlatShape<T>::NV;
  FlatTileTable<T> t{};
  ((t.fn[I / NV][I % NV] = &flat_tile<T, I / NV + 1, I % NV + 1>), ...);
  ((t.strided[I / NV][I % NV] = &strided_flat_tile<T, I / NV + 1, I % NV + 1>), ...);
  return t;
}

template <class T>
inline constexpr FlatTileTable<T> kFlatTiles =
    make_flat_tile_table<T>(std::make_integer_sequence<int, FlatShape<T>::MR * FlatShape<T>::NV>{});

// Rows per tile when m rows are cut into the fewest tiles of at most `cap`, evened out.
inline int balanced_rows(int64_t m, int cap) {
  const int64_t tiles = (m + cap - 1) / cap;
  return static_cast<int>((m + tiles - 1) / tiles);
}

// The convolution by its definition, for when no scratch memory is left (kernels never throw).
// Channels lie x_channel and y_channel apart (by default each image's planes are consecutive);
// weight (o, t) is w[o * w_row + taps[t]] (taps null: w[o * K + t]).
template <class T>
void conv_by_definition(const ConvShape& s, int64_t m, const T* w, int64_t n, const T* x, int64_t x_stride, T* y,
                        int64_t y_stride, int64_t x_channel = 0, int64_t y_channel = 0, int64_t w_row = 0,
                        const int64_t* taps = nullptr) {
  const int64_t K = s.c * s.kh * s.kw, hw = s.ho * s.wo;
  auto weight = [&](int64_t o, int64_t t) { return taps == nullptr ? w[o * K + t] : w[o * w_row + taps[t]]; };
  if (x_channel == 0) x_channel = s.h * s.w;
  if (y_channel == 0) y_channel = hw;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < m; ++o)
      for (int64_t p = 0; p < hw; ++p) {
        const int64_t oh = p / s.wo, ow = p % s.wo;
        T sum = T(0);
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t ih = oh * s.stride_h + i * s.dil_h - s.pad_h, iw = ow * s.stride_w + j * s.dil_w - s.pad_w;
              if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w)
                sum += weight(o, (c * s.kh + i) * s.kw + j) * x[b * x_stride + c * x_channel + ih * s.w + iw];
            }
        y[b * y_stride + o * y_channel + p] = sum;
      }
}

// The weights as row panels of `rows` rows, tap-major (the tile broadcasts wp[t * rows + r]), in
// a borrowed GemmWorkspace or the thread's packing buffer; null when no memory is left. Weight
// (r, t) is w[r * w_row + taps[t]] (taps null: w[r * K + t]).
template <class T>
T* flat_weight_panels(int64_t m, int64_t K, const T* w, int rows, int64_t w_row = 0, const int64_t* taps = nullptr) {
  static_assert(FlatShape<T>::MR <= kConvFlatRowBlock, "the weight panels' bound in kernels.hpp");
  const int64_t need = ((m + rows - 1) / rows) * rows * K;
  T* wp = gemm_impl::borrowed_a<T>(need);
  if (wp == nullptr) wp = gemm_impl::pack_buffer_a().get<T>(need);
  if (wp == nullptr) return nullptr;
  for (int64_t r0 = 0; r0 < m; r0 += rows) {
    const int mr = static_cast<int>(std::min<int64_t>(rows, m - r0));
    T* panel = wp + r0 * K;
    if (taps == nullptr) {
      for (int64_t t = 0; t < K; ++t)
        for (int r = 0; r < mr; ++r) panel[t * mr + r] = w[(r0 + r) * K + t];
    } else {
      for (int64_t t = 0; t < K; ++t)
        for (int r = 0; r < mr; ++r) panel[t * mr + r] = w[(r0 + r) * w_row + taps[t]];
    }
  }
  return wp;
}

// Note [Strided flat convolution]
// A stride-2 convolution reads input row 2 * oh + e_i for output row oh and kernel row i, with
// e_i = i * dil_h - pad_h. Split the input into its four phases, plane (a, b) holding the rows
// of parity a and columns of parity b (hp = ceil(h / 2) rows of wp = ceil(w / 2), zero past the
// image), and kernel row i reads phase row a_i = e_i mod 2 at row oh + d_i, d_i = floor(e_i / 2):
// a stride-1 read of one phase plane. When the output rows are wp wide, each tap is again one
// fixed offset in one plane (conv_flat_strided_applies), with the masks of a stride-1
// convolution whose kernel rows are the offsets d (padding -d_0, every input row a phase row).
// So the flat tile runs unchanged on the phase planes, with TapGeometry pointing each tap at its
// plane: no column matrix (which for a 4x4 kernel is four times the input) is written or read.
// When the phase planes are as large as the output (hp = ho), the planes of several images lie
// side by side, so that a panel runs across images: DCGAN's 7x7 outputs would otherwise fill 49
// of 64 lanes (the row masks take the row within each image).
template <class T>
void split_phases(const ConvShape& s, int64_t images, int64_t stride, const T* x, int64_t x_stride, T* out) {
  const int64_t hp = (s.h + 1) / 2, wp = (s.w + 1) / 2, plane = hp * wp, half = s.w / 2;
  for (int64_t b = 0; b < images; ++b) {
    for (int64_t c = 0; c < s.c; ++c) {
      const T* xc = x + b * x_stride + c * s.h * s.w;
      T* phases = out + 4 * c * stride + b * plane;
      for (int64_t a = 0; a < 2; ++a) {
        T* even = phases + (2 * a) * stride;
        T* odd = phases + (2 * a + 1) * stride;
        for (int64_t u = 0; u < hp; ++u, even += wp, odd += wp) {
          const int64_t ih = 2 * u + a;
          if (ih >= s.h) {
            std::fill(even, even + wp, T(0));
            std::fill(odd, odd + wp, T(0));
            continue;
          }
          const T* row = xc + ih * s.w;
          for (int64_t v = 0; v < half; ++v) {
            even[v] = row[2 * v];
            odd[v] = row[2 * v + 1];
          }
          if (half < wp) {
            even[half] = row[s.w - 1];
            odd[half] = T(0);
          }
        }
      }
    }
  }
}

// The masks' shape (a stride-1 convolution over one phase plane) and the taps' places for a
// stride-2 convolution whose phase planes lie `stride` elements apart.
inline void strided_geometry(const ConvShape& s, int64_t stride, ConvShape& masks, TapGeometry& g) {
  const int64_t hp = (s.h + 1) / 2, wp = (s.w + 1) / 2;
  auto parity = [](int64_t e) { return e & 1; };  // of a negative e too (two's complement)
  const int64_t top = (-s.pad_h - parity(-s.pad_h)) / 2, left = (-s.pad_w - parity(-s.pad_w)) / 2;
  int64_t rows = 1, cols = 1;
  g = TapGeometry{};
  g.channel = 4 * stride;
  for (int64_t i = 0; i < s.kh; ++i) {
    const int64_t e = i * s.dil_h - s.pad_h, a = parity(e), d = (e - a) / 2;
    g.row_off[i] = 2 * a * stride + d * wp;
    g.mrow[i] = static_cast<int>(d - top);
    rows = d - top + 1;
  }
  for (int64_t j = 0; j < s.kw; ++j) {
    const int64_t e = j * s.dil_w - s.pad_w, b = parity(e), d = (e - b) / 2;
    g.col_off[j] = b * stride + d;
    g.mcol[j] = static_cast<int>(d - left);
    cols = d - left + 1;
  }
  g.mask_cols = cols;
  masks = ConvShape{s.c, hp, wp, rows, cols, s.ho, s.wo, 1, 1, -top, -left, 1, 1};
}

// The tiles over the nb * hw output pixels of x (nb images side by side; masks from ms) into out
// (ldy apart per output channel), with the weights in panels of `rows` rows (flat_weight_panels):
// the stride-1 tiles when g is null, else the strided ones, reading each tap through g.
template <class T>
void flat_panels(const ConvShape& s, const ConvShape& ms, const TapGeometry* g, const T* wp, int64_t m, int rows,
                 const T* x, int64_t nb, T* out, int64_t ldy) {
  using S = FlatShape<T>;
  constexpr int W = S::W;
  const int64_t K = s.c * s.kh * s.kw, pixels = nb * s.ho * s.wo, panel = int64_t(S::NV) * W;
  PixelMasks<T, S::NV> pm;
  TapMasks<T> tm;
  for (int64_t q = 0; q < pixels; q += panel) {
    const int64_t valid = std::min<int64_t>(panel, pixels - q);
    const int nv = static_cast<int>((valid + W - 1) / W);
    pixel_masks<T>(ms, q, nv, pm, nb);
    tap_masks<T>(ms, nv, pm, tm);
    for (int64_t r0 = 0; r0 < m; r0 += rows) {
      const int mr = static_cast<int>(std::min<int64_t>(rows, m - r0));
      if (g != nullptr) {
        kFlatTiles<T>.strided[mr - 1][nv - 1](s, *g, wp + r0 * K, x, q, pm, &tm, out + r0 * ldy, ldy, valid);
      } else {
        kFlatTiles<T>.fn[mr - 1][nv - 1](s, wp + r0 * K, x, q, pm, &tm, out + r0 * ldy, ldy, valid);
      }
    }
  }
}

template <class T>
void conv_flat(const ConvShape& s, int64_t m, const T* w, int64_t n, const T* x, int64_t x_stride,
               T* y, int64_t y_stride) {
  using S = FlatShape<T>;
  const int64_t K = s.c * s.kh * s.kw, hw = s.ho * s.wo;
  if (m <= 0 || n <= 0 || hw <= 0) return;
  const bool strided = s.stride_h != 1;
  const int rows = balanced_rows(m, S::MR);
  T* wp = flat_weight_panels(m, K, w, rows);
  // A strided convolution's phase planes (and product of several images) after the panels.
  const int64_t images = strided ? conv_flat_strided_images(s, m, n) : 1;
  T* scratch = nullptr;
  if (strided && wp != nullptr) {
    const int64_t need = conv_flat_strided_scratch(s, m, images);
    scratch = gemm_impl::borrowed_b<T>(need);
    if (scratch == nullptr) scratch = gemm_impl::pack_buffer_b().get<T>(need);
  }
  if (wp == nullptr || (strided && scratch == nullptr)) return conv_by_definition(s, m, w, n, x, x_stride, y, y_stride);
  if (!strided) {
    for (int64_t b = 0; b < n; ++b) flat_panels(s, s, nullptr, wp, m, rows, x + b * x_stride, 1, y + b * y_stride, hw);
    return;
  }
  const int64_t stride = images * ((s.h + 1) / 2) * ((s.w + 1) / 2);  // between phase planes
  ConvShape ms;
  TapGeometry g;
  strided_geometry(s, stride, ms, g);
  T* wide = scratch + 4 * s.c * stride;
  for (int64_t b0 = 0; b0 < n; b0 += images) {
    const int64_t nb = std::min(images, n - b0);
    split_phases(s, nb, stride, x + b0 * x_stride, x_stride, scratch);
    if (nb == 1) {
      flat_panels(s, ms, &g, wp, m, rows, scratch, 1, y + b0 * y_stride, hw);
      continue;
    }
    flat_panels(s, ms, &g, wp, m, rows, scratch, nb, wide, nb * hw);
    for (int64_t o = 0; o < m; ++o)
      for (int64_t b = 0; b < nb; ++b) {
        const T* from = wide + (o * nb + b) * hw;
        std::copy(from, from + hw, y + (b0 + b) * y_stride + o * hw);
      }
  }
}

// n images side by side (x: [c][n][h * w], y: [m][n][ho * wo], ho == h): a panel of pixels runs
// across images, so that small planes (a 4x4 or 7x7 phase of a transposed convolution) fill the
// tiles' lanes. The taps are stride-1 offsets, read through the strided tiles' TapGeometry (whose
// channel stride is then n planes); the masks take the row within each image.
template <class T>
void conv_flat_images(const ConvShape& s, int64_t m, const T* w, int64_t w_row, const int64_t* taps, int64_t n,
                      const T* x, T* y) {
  using S = FlatShape<T>;
  const int64_t K = s.c * s.kh * s.kw, hw = s.ho * s.wo;
  if (m <= 0 || n <= 0 || hw <= 0) return;
  const int rows = balanced_rows(m, S::MR);
  const T* wp = flat_weight_panels(m, K, w, rows, w_row, taps);
  if (wp == nullptr) return conv_by_definition(s, m, w, n, x, s.h * s.w, y, hw, n * s.h * s.w, n * hw, w_row, taps);
  TapGeometry g{};
  g.channel = n * s.h * s.w;
  for (int64_t i = 0; i < s.kh; ++i) {
    g.row_off[i] = (i * s.dil_h - s.pad_h) * s.w;
    g.mrow[i] = static_cast<int>(i);
  }
  for (int64_t j = 0; j < s.kw; ++j) {
    g.col_off[j] = j * s.dil_w - s.pad_w;
    g.mcol[j] = static_cast<int>(j);
  }
  g.mask_cols = s.kw;
  flat_panels(s, s, &g, wp, m, rows, x, n, y, n * hw);
}

// ---- conv_flat_weight_grad ------------------------------------------------------------------

// Vectors of pixels per chunk of an image for the weight gradient (their masks are kept).
template <class T>
constexpr int kChunk = 64;

// gw[o][r] += sum over images b < nb and vectors v < nv of the chunk of
// gy_b[o][v*W ..] * x_b,r[v*W ..] for R_ consecutive taps r of one kernel row (columns j0 ..
// j0+R_) and S_ output channels. x points at image 0's first tap, already offset to the chunk
// and the tap's row and column; tap r reads `dil` elements further than tap r - 1. Image b's gy
// is gy_stride after image b - 1's, channel o's hw after channel o - 1's.
// (AVX-512) col[r * kChunk + v] is tap r's mask of vector v (its row and column combined).
// (AVX2) row[v] is the kernel row's mask of vector v, col[r * kChunk + v] the columns'; bit v of
// `inside` is set when vector v of every one of the tile's taps lies wholly in the image: those
// are plain loads (TapMasks says why).
template <class T, int R_, int S_>
void wgrad_tile(const T* x, int64_t x_stride, int64_t dil, const Mask<T>* row, const Mask<T>* col,
                uint64_t inside, int nv, int64_t last_valid, int64_t nb, const T* gy, int64_t gy_stride,
                int64_t hw, T* gw, int64_t K) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  V acc[R_][S_];
  static_for<R_>([&](auto r) { static_for<S_>([&](auto o) { acc[r][o] = V(T(0)); }); });
  const auto tail = V::first_n(static_cast<int>(last_valid));
  const int full = last_valid == W ? nv : nv - 1;  // vectors whose gy lanes are all in the image
  for (int64_t b = 0; b < nb; ++b) {
    const T* xb = x + b * x_stride;
    const T* gb = gy + b * gy_stride;
    auto step = [&](int v, bool whole) {
      V xt[R_];
#if defined(EMBER_FLAT_CONV_AVX512)
      (void)inside;
      (void)row;
      static_for<R_>([&](auto r) { xt[r] = V::load_masked(xb + r * dil, col[r * kChunk<T> + v]); });
#else
      const auto rm = row[v];
      if ((inside >> v) & 1u) {
        static_for<R_>([&](auto r) { xt[r] = V::load(xb + r * dil); });
      } else {
        static_for<R_>([&](auto r) { xt[r] = V::load_masked(xb + r * dil, rm & col[r * kChunk<T> + v]); });
      }
#endif
      static_for<S_>([&](auto o) {
        const V gv = in_register(whole ? V::load(gb + o * hw) : V::load_masked(gb + o * hw, tail));
        static_for<R_>([&](auto r) { acc[r][o] = fma(xt[r], gv, acc[r][o]); });
      });
      xb += W;
      gb += W;
    };
    for (int v = 0; v < full; ++v) step(v, true);
    if (full < nv) step(full, false);
  }
  static_for<R_>([&](auto r) {
    static_for<S_>([&](auto o) { gw[o * K + r] += reduce_add(acc[r][o]); });
  });
}

template <class T>
using WgradTileFn = void (*)(const T*, int64_t, int64_t, const Mask<T>*, const Mask<T>*, uint64_t, int,
                             int64_t, int64_t, const T*, int64_t, int64_t, T*, int64_t);

template <class T>
struct WgradTileTable {
  WgradTileFn<T> fn[FlatShape<T>::R][FlatShape<T>::S];
};

template <class T, int... I>
constexpr WgradTileTable<T> make_wgrad_tile_table(std::integer_sequence<int, I...>) {
  constexpr int S = FlatShape<T>::S;
  WgradTileTable<T> t{};
  ((t.fn[I / S][I % S] = &wgrad_tile<T, I / S + 1, I % S + 1>), ...);
  return t;
}

template <class T>
inline constexpr WgradTileTable<T> kWgradTiles =
    make_wgrad_tile_table<T>(std::make_integer_sequence<int, FlatShape<T>::R * FlatShape<T>::S>{});

// The weight gradient of a stride-1 convolution without padding (a "valid" one: LeNet-5's 28 -> 24
// and 12 -> 8), whose output rows are narrower than the input's, so that a tap is no fixed offset
// into the flat plane. The output gradient's pixels are still contiguous: a vector of W of them
// spans at most two output rows (ValidVectors), and the tap's inputs for it are one masked load
// per row, at the row's own offset; wgrad_tile's accumulators then take them as they do there.
// Row by row instead, a 24-pixel row filled one vector and a half and an 8-pixel one half a
// vector (on AVX-512). Through im2col and the GEMM, the column matrix was written and then
// transposed to be packed: more time than the products (LeNet-5's step: im2col 13%, the
// transposes 9%).
template <class T>
struct ValidVectors {
  using Mask = typename Pack<T>::Mask;
  int64_t pixel[kChunk<T>];                // the vector's first output pixel
  int64_t run1[kChunk<T>], run2[kChunk<T>];  // input offset read by lane 0, for the lanes of each row
  Mask in1[kChunk<T>], in2[kChunk<T>], in[kChunk<T>];
  bool two_rows[kChunk<T>];
  int count = 0;
};

// The vectors of output pixels from `begin` on, at most kChunk of them, each up to W pixels of at
// most two rows; returns the pixel after the last.
template <class T>
int64_t valid_vectors(const ConvShape& s, int64_t begin, ValidVectors<T>& vv) {
  using V = Pack<T>;
  const int64_t hw = s.ho * s.wo, skip = s.w - s.wo;  // input elements between output rows' ends
  int64_t p = begin;
  vv.count = 0;
  for (; p < hw && vv.count < kChunk<T>; ++vv.count) {
    const int64_t py = p / s.wo, row_end = (py + 1) * s.wo;
    const int64_t n = std::min({int64_t(V::kWidth), hw - p, row_end + s.wo - p});
    const int64_t n1 = std::min(n, row_end - p);
    const int v = vv.count;
    vv.pixel[v] = p;
    vv.run1[v] = p + py * skip;
    vv.run2[v] = p + (py + 1) * skip;
    vv.in[v] = V::first_n(static_cast<int>(n));
    vv.in1[v] = V::first_n(static_cast<int>(n1));
    vv.in2[v] = vv.in[v] & ~vv.in1[v];
    vv.two_rows[v] = n > n1;
    p += n;
  }
  return p;
}

// gw[o][r] += sum over images b < nb and the vectors of vv of gy_b[o][pixels] * x_b,r[pixels]
// for R_ consecutive taps r of one kernel row and S_ output channels; x points at image 0's first
// tap, tap r reads `dil` elements further than tap r - 1.
template <class T, int R_, int S_>
void wgrad_valid_tile(const T* x, int64_t x_stride, int64_t dil, const ValidVectors<T>& vv, int64_t nb, const T* gy,
                      int64_t gy_stride, int64_t hw, T* gw, int64_t K) {
  using V = Pack<T>;
  V acc[R_][S_];
  static_for<R_>([&](auto r) { static_for<S_>([&](auto o) { acc[r][o] = V(T(0)); }); });
  for (int64_t b = 0; b < nb; ++b) {
    const T* xb = x + b * x_stride;
    const T* gb = gy + b * gy_stride;
    for (int v = 0; v < vv.count; ++v) {
      V xt[R_];
      const T* x1 = xb + vv.run1[v];
      static_for<R_>([&](auto r) { xt[r] = V::load_masked(x1 + r * dil, vv.in1[v]); });
      if (vv.two_rows[v]) {
        const T* x2 = xb + vv.run2[v];
        static_for<R_>([&](auto r) { xt[r] = xt[r] + V::load_masked(x2 + r * dil, vv.in2[v]); });
      }
      const T* g = gb + vv.pixel[v];
      static_for<S_>([&](auto o) {
        const V gv = in_register(V::load_masked(g + o * hw, vv.in[v]));
        static_for<R_>([&](auto r) { acc[r][o] = fma(xt[r], gv, acc[r][o]); });
      });
    }
  }
  static_for<R_>([&](auto r) {
    static_for<S_>([&](auto o) { gw[o * K + r] += reduce_add(acc[r][o]); });
  });
}

template <class T>
using WgradValidTileFn = void (*)(const T*, int64_t, int64_t, const ValidVectors<T>&, int64_t, const T*, int64_t,
                                  int64_t, T*, int64_t);

template <class T>
struct WgradValidTileTable {
  WgradValidTileFn<T> fn[FlatShape<T>::R][FlatShape<T>::S];
};

template <class T, int... I>
constexpr WgradValidTileTable<T> make_wgrad_valid_tile_table(std::integer_sequence<int, I...>) {
  constexpr int S = FlatShape<T>::S;
  WgradValidTileTable<T> t{};
  ((t.fn[I / S][I % S] = &wgrad_valid_tile<T, I / S + 1, I % S + 1>), ...);
  return t;
}

template <class T>
inline constexpr WgradValidTileTable<T> kWgradValidTiles =
    make_wgrad_valid_tile_table<T>(std::make_integer_sequence<int, FlatShape<T>::R * FlatShape<T>::S>{});

template <class T>
void conv_valid_weight_grad(const ConvShape& s, int64_t m, int64_t n, const T* x, int64_t x_stride, const T* gy,
                            int64_t gy_stride, T* gw) {
  using S = FlatShape<T>;
  const int64_t K = s.c * s.kh * s.kw, hw = s.ho * s.wo, plane = s.h * s.w;
  const int outs = balanced_rows(m, S::S);
  const int taps = balanced_rows(s.kw, S::R);
  ValidVectors<T> vv;
  for (int64_t q = 0; q < hw;) {
    const int64_t next = valid_vectors<T>(s, q, vv);
    // Images per block: about kChunk vectors of work per accumulator before its horizontal sum.
    const int64_t block = std::clamp<int64_t>(kChunk<T> / vv.count, 1, n);
    for (int64_t b0 = 0; b0 < n; b0 += block) {
      const int64_t nb = std::min(block, n - b0);
      for (int64_t c = 0; c < s.c; ++c) {
        for (int64_t i = 0; i < s.kh; ++i) {
          const T* xr = x + b0 * x_stride + c * plane + i * s.dil_h * s.w;
          for (int64_t j0 = 0; j0 < s.kw; j0 += taps) {
            const int nr = static_cast<int>(std::min<int64_t>(taps, s.kw - j0));
            const int64_t t0 = (c * s.kh + i) * s.kw + j0;
            for (int64_t o0 = 0; o0 < m; o0 += outs) {
              const int no = static_cast<int>(std::min<int64_t>(outs, m - o0));
              kWgradValidTiles<T>.fn[nr - 1][no - 1](xr + j0 * s.dil_w, x_stride, s.dil_w, vv, nb,
                                                     gy + b0 * gy_stride + o0 * hw, gy_stride, hw, gw + o0 * K + t0, K);
            }
          }
        }
      }
    }
    q = next;
  }
}

// Fetches a block of images' inputs and output gradients into L2 a few lines at a time, while the
// block before it runs its tiles: image after image, x_len values from x and then gy_len values
// from gy.
template <class T>
struct BlockPrefetch {
  const T *x, *gy;
  int64_t x_stride, x_len, gy_stride, gy_len;
  int64_t image = 0, end = 0, offset = 0;  // the next line: `offset` values into image `image`'s x, then gy
  void start(int64_t first, int64_t last) {
    image = first;
    end = last;
    offset = 0;
  }
  void fetch(int64_t lines) {
    constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(T));
    for (; lines > 0 && image < end; --lines) {
      const T* p = offset < x_len ? x + image * x_stride + offset : gy + image * gy_stride + (offset - x_len);
      __builtin_prefetch(p, 0, 2);
      offset += kLine;
      if (offset >= x_len + gy_len) {
        ++image;
        offset = 0;
      }
    }
  }
};

template <class T>
void conv_flat_weight_grad(const ConvShape& s, int64_t m, int64_t n, const T* x, int64_t x_stride,
                           const T* gy, int64_t gy_stride, T* gw) {
  using S = FlatShape<T>;
  constexpr int W = S::W;
  const int64_t K = s.c * s.kh * s.kw, hw = s.ho * s.wo, plane = s.h * s.w;
  if (m <= 0 || n <= 0 || hw <= 0) return;
  if (!conv_flat_applies(s)) {
    conv_valid_weight_grad(s, m, n, x, x_stride, gy, gy_stride, gw);
    return;
  }
  const int outs = balanced_rows(m, S::S);
  const int taps = balanced_rows(s.kw, S::R);  // a tile's taps: part of one kernel row
  PixelMasks<T, kChunk<T>> pm;
#if defined(EMBER_FLAT_CONV_AVX512)
  // Each tap's mask (its kernel row's and column's combined) once per chunk: combined per step,
  // the scalar mask arithmetic held the tiles back (ResNet's 16- and 32-channel planes 1.2x
  // slower).
  Mask<T> tap_mask[kConvFlatMaxKernel * kConvFlatMaxKernel * kChunk<T>];
#endif
  alignas(64) T gy_block[S::S * kChunk<T> * W];
  for (int64_t q = 0; q < hw; q += int64_t(kChunk<T>) * W) {
    const int64_t len = std::min<int64_t>(int64_t(kChunk<T>) * W, hw - q);
    const int nv = static_cast<int>((len + W - 1) / W);
    const int64_t last_valid = len - int64_t(nv - 1) * W;
    pixel_masks<T>(s, q, nv, pm);
    // Per kernel row and column: AVX-512 the tap's masks, AVX2 the vectors wholly inside the
    // image (bit v).
    static_assert(kChunk<T> <= 64, "one bit per vector of a chunk");
    uint64_t inside[kConvFlatMaxKernel][kConvFlatMaxKernel] = {};
#if defined(EMBER_FLAT_CONV_AVX512)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        for (int v = 0; v < nv; ++v) tap_mask[(i * s.kw + j) * kChunk<T> + v] = pm.row[i][v] & pm.col[j][v];
#else
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        for (int v = 0; v < nv; ++v)
          if (mask_bits(pm.row[i][v] & pm.col[j][v]) == (1u << W) - 1u) inside[i][j] |= uint64_t(1) << v;
#endif
    // Images per block: about kChunk vectors of work per accumulator before its horizontal sum.
    const int64_t block = std::clamp<int64_t>(kChunk<T> / nv, 1, n);
    // Whole images per chunk (ResNet's 32x32 planes and smaller): each block's tiles fetch the next
    // block into L2, spread over them. Left to the hardware, the tiles of a batch too large for the
    // caches (128 images of 16 x 32 x 32) ran at 0.7x their speed on cached ones.
    const bool whole = len == hw;
    BlockPrefetch<T> next{x, gy, x_stride, s.c * plane, gy_stride, m * hw};
    const int64_t tiles = (m + outs - 1) / outs * s.c * s.kh * ((s.kw + taps - 1) / taps);
    for (int64_t b0 = 0; b0 < n; b0 += block) {
      const int64_t nb = std::min(block, n - b0);
      int64_t per_tile = 0;
      if (whole && b0 + nb < n) {
        const int64_t next_nb = std::min(block, n - b0 - nb);
        next.start(b0 + nb, b0 + nb + next_nb);
        per_tile = (next_nb * (next.x_len + next.gy_len) * int64_t(sizeof(T)) / 64 + tiles - 1) / tiles;
      }
      for (int64_t o0 = 0; o0 < m; o0 += outs) {
        const int no = static_cast<int>(std::min<int64_t>(outs, m - o0));
        // Several images per block (whole small planes): their output gradients lie m * hw apart,
        // a multiple of 4 KB for ResNet's 64 channels of 8x8, so the block's rows of 16 images
        // fell in the same L1 sets (12 ways) and the tiles ran at two thirds of their speed
        // (AVX-512). Copied side by side, once for all the taps.
        const T* gyb = gy + b0 * gy_stride + o0 * hw + q;
        int64_t g_image = gy_stride, g_channel = hw;
        if (nb > 1) {
          g_channel = int64_t(nv) * W;
          g_image = no * g_channel;
          for (int64_t b = 0; b < nb; ++b)
            for (int o = 0; o < no; ++o) {
              const T* from = gyb + b * gy_stride + o * hw;
              std::copy(from, from + len, gy_block + b * g_image + o * g_channel);
            }
          gyb = gy_block;
        }
        for (int64_t c = 0; c < s.c; ++c) {
          for (int64_t i = 0; i < s.kh; ++i) {
            const T* xr = x + b0 * x_stride + c * plane + (i * s.dil_h - s.pad_h) * s.w - s.pad_w + q;
            for (int64_t j0 = 0; j0 < s.kw; j0 += taps) {
              const int nr = static_cast<int>(std::min<int64_t>(taps, s.kw - j0));
              const int64_t t0 = (c * s.kh + i) * s.kw + j0;
              uint64_t tile_inside = ~uint64_t(0);
              for (int r = 0; r < nr; ++r) tile_inside &= inside[i][j0 + r];
#if defined(EMBER_FLAT_CONV_AVX512)
              const Mask<T>*row = nullptr, *col = tap_mask + (i * s.kw + j0) * kChunk<T>;
#else
              const Mask<T>*row = pm.row[i], *col = pm.col[j0];
#endif
              next.fetch(per_tile);
              kWgradTiles<T>.fn[nr - 1][no - 1](xr + j0 * s.dil_w, x_stride, s.dil_w, row, col,
                                                tile_inside, nv,
                                                last_valid, nb, gyb, g_image, g_channel, gw + o0 * K + t0, K);
            }
          }
        }
      }
    }
  }
}

#endif

}  // namespace conv_impl
}  // namespace
}  // namespace ember::backend::EMBER_ISA_NS
