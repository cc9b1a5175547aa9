// Depthwise convolutions (as many groups as input channels), included by cpu_kernels.inl inside
// each ISA's namespace after conv_winograd.inl (no include guard by design).
//
// Note [Depthwise convolution]
// A depthwise convolution (MobileNet's 3x3 layers: one group per channel, `mult` output channels
// per channel) takes kh * kw multiply-adds per output from one input plane. As im2col + GEMM that
// is a product with one row per channel, and on the flat kernels' tiles one row of accumulators
// waiting on the FMA latency, with the lane masks worked out again for every plane. Here each
// plane is first copied into zero-padded phase planes: phase (a, b) of a stride sh x sw
// convolution holds the padded rows a, a + sh, ... and columns b, b + sw, ..., q values a row,
//   q = wo + ((kw - 1) dw) / sw,   rows = ho + ((kh - 1) dh) / sh   (integer divisions),
// so that tap (i, j) of output pixel (oh, ow) is phase ((i dh) % sh, (j dw) % sw) at row
// oh + (i dh) / sh and column ow + (j dw) / sw: one fixed offset from the flat index oh q + ow.
// Every tap is then a plain vector load at that offset, without masks, on every ISA (the scalar
// reference included); the q - wo values past each output row are computed and dropped ("wide"
// rows).
// - The forward sums the taps into wide rows, four vectors in flight (the FMA latency), and
//   copies out the wo columns of each row.
// - The input gradient is the same sum the other way round: each phase plane of the padded input
//   gradient gathers its taps, at minus their offsets, from the output gradient laid out in wide
//   rows with zeros in the q - wo extra columns and in a margin of rows before and after. The
//   extra columns keep a row's gather from reaching into its neighbour (q - wo is the largest
//   column offset). The input's rows and columns are then read back out of the phases.
// - The weight gradient of tap t is the dot product of the wide output gradient (zeros in the
//   extra columns) with the phase planes at t's offset: kh * kw accumulators over all the images,
//   summed across their lanes once per output channel. Its threads split the channels, so the
//   sums do not depend on how many there are.
// Only the image's values are written into the planes for each channel: their padding, slack and
// margins are zeroed once per call. The tap counts of 3x3 and 5x5 kernels (and 1 to 9, those of a
// strided input gradient's phases) are template arguments, so that the accumulators stay in
// registers.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "depthwise_layout.hpp"

namespace ember::backend::EMBER_ISA_NS {
namespace {
namespace conv_impl {

// The thread's buffer for the phase planes and wide rows (kept between calls).
inline gemm_impl::PackBuffer& depthwise_buffer() {
  static thread_local gemm_impl::PackBuffer buf;
  return buf;
}

template <class T>
using DepthwiseGeometry = DepthwiseLayout<Pack<T>::kWidth>;

// Room for n values of the kernel's scratch: in a borrowed GemmWorkspace (an inference plan's,
// sized by conv_depthwise_scratch), else the thread's own buffer; null when no memory is left.
template <class T>
T* depthwise_scratch(int64_t n) {
  T* p = gemm_impl::borrowed_b<T>(n);
  return p != nullptr ? p : depthwise_buffer().get<T>(n);
}

// dst[i] = src[i] for i < n, a vector at a time (rows here are a few vectors long: a call to
// memcpy per row cost more than the copy).
template <class T>
[[gnu::always_inline]] inline void copy_row(const T* src, int64_t n, T* dst) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::load(src + i).store(dst + i);
  if (i < n) V::load_n(src + i, static_cast<int>(n - i)).store_n(dst + i, static_cast<int>(n - i));
}

// Stride 2's two column phases and the input's columns (Note [Depthwise convolution]): phase b
// holds the input columns of parity par[b] = (b - pad_w) mod 2, column 2 k + par[b] at
// v = k + delta[b], for k < count[b] (the rest of its q values are padding).
struct ColumnPhases {
  int64_t par[2], delta[2], count[2];
  ColumnPhases(int64_t w, int64_t pad_w, int64_t q) {
    for (int64_t b = 0; b < 2; ++b) {
      par[b] = ((b - pad_w) % 2 + 2) % 2;
      delta[b] = (pad_w - b + par[b]) / 2;
      count[b] = std::clamp<int64_t>(std::min((w + 1 - par[b]) / 2, q - delta[b]), 0, q);
    }
  }
};

// Asks for the n values from p (the next plane: the hardware's prefetchers, which follow one
// plane's rows well, start late on each new plane).
template <class T>
[[gnu::always_inline]] inline void prefetch_plane(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 64 / static_cast<int64_t>(sizeof(T))) __builtin_prefetch(p + i);
}

// The phase planes of one h x w plane x (Note [Depthwise convolution]). Only the values that
// come from the image are written: the caller zeroes the planes once per call, and the padding
// rows and columns and each plane's slack stay zero from one plane to the next. Stride 2 splits
// each input row into its even and odd columns a vector pair at a time, each stored at its phase's
// offset; larger strides go through `padded` (g.padded values, zeroed likewise), where the input
// rows are laid out padded, all of them before any is read back (read right after it was
// written, a row's loads wait on the stores they overlap without matching them).
template <class T>
void depthwise_phases(const ConvShape& s, const DepthwiseGeometry<T>& g, const T* x, T* out, T* padded) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const int64_t copy = std::clamp<int64_t>(g.sw * g.q - s.pad_w, 0, s.w);  // input columns the phases reach
  if (copy == 0) return;
  const int64_t ld = g.row_pitch();
  // The rows u whose input row u * sh + a - pad_h lies in the image, for row parity a.
  auto first_row = [&](int64_t a) { return std::clamp<int64_t>((s.pad_h - a + g.sh - 1) / g.sh, 0, g.rows); };
  auto end_row = [&](int64_t a) {
    return std::clamp<int64_t>((s.h + s.pad_h - a + g.sh - 1) / g.sh, first_row(a), g.rows);
  };
  if (g.sw == 1) {
    for (int64_t a = 0; a < g.sh; ++a) {
      T* pa = out + a * g.plane + s.pad_w;
      for (int64_t u = first_row(a), u1 = end_row(a); u < u1; ++u) {
        copy_row(x + (u * g.sh + a - s.pad_h) * s.w, copy, pa + u * g.q);
      }
    }
    return;
  }
  if (g.sw == 2) {
    const ColumnPhases cp(s.w, s.pad_w, g.q);
    const int64_t pairs = std::max(cp.count[0], cp.count[1]);
    const bool swap = cp.par[0] == 1;  // phase 0 takes the odd columns
    auto store_part = [](V v, T* dst, int64_t n) {
      if (n >= W) {
        v.store(dst);
      } else if (n > 0) {  // not into the next row, which may be padding
        v.store_n(dst, static_cast<int>(n));
      }
    };
    for (int64_t a = 0; a < g.sh; ++a) {
      T* p0 = out + 2 * a * g.plane + cp.delta[0];
      T* p1 = out + (2 * a + 1) * g.plane + cp.delta[1];
      const int64_t u0 = first_row(a), u1 = end_row(a);
      if (pairs <= W && s.w <= 2 * W) {
        // Rows of one vector pair (MobileNet's 28x28 and smaller planes on AVX-512): the same
        // loads and stores for every row, decided once.
        const int lo_n = static_cast<int>(std::min<int64_t>(s.w, W)), hi_n = static_cast<int>(s.w - lo_n);
        const int n0 = static_cast<int>(cp.count[0]), n1 = static_cast<int>(cp.count[1]);
        for (int64_t u = u0; u < u1; ++u) {
          const T* xr = x + (u * g.sh + a - s.pad_h) * s.w;
          const V lo = lo_n == W ? V::load(xr) : V::load_n(xr, lo_n);
          const V hi = hi_n == W ? V::load(xr + W) : hi_n > 0 ? V::load_n(xr + W, hi_n) : V(T(0));
          V e, o;
          deinterleave(lo, hi, e, o);
          if (swap) std::swap(e, o);
          if (n0 > 0) e.store_n(p0 + u * g.q, n0);
          if (n1 > 0) o.store_n(p1 + u * g.q, n1);
        }
        continue;
      }
      for (int64_t u = u0; u < u1; ++u) {
        const T* xr = x + (u * g.sh + a - s.pad_h) * s.w;
        for (int64_t k = 0; k < pairs; k += W) {
          // Partial loads only at the row's end, and none past it (a masked load of no lanes
          // stalled Zen 5 like a cache miss).
          const int64_t left = s.w - 2 * k;
          const V lo = left >= W ? V::load(xr + 2 * k) : V::load_n(xr + 2 * k, static_cast<int>(left));
          const V hi = left >= 2 * W ? V::load(xr + 2 * k + W)
                       : left > W    ? V::load_n(xr + 2 * k + W, static_cast<int>(left - W))
                                     : V(T(0));
          V e, o;
          deinterleave(lo, hi, e, o);
          if (swap) std::swap(e, o);
          store_part(e, p0 + u * g.q + k, cp.count[0] - k);
          store_part(o, p1 + u * g.q + k, cp.count[1] - k);
        }
      }
    }
    return;
  }
  for (int64_t ih = 0; ih < std::min(s.h, g.rows * g.sh); ++ih) {
    copy_row(x + ih * s.w, copy, padded + ih * ld + s.pad_w);
  }
  for (int64_t a = 0; a < g.sh; ++a) {
    for (int64_t u = first_row(a), u1 = end_row(a); u < u1; ++u) {
      const T* in = padded + (u * g.sh + a - s.pad_h) * ld;
      for (int64_t b = 0; b < g.sw; ++b) {
        T* row = out + (a * g.sw + b) * g.plane + u * g.q;
        for (int64_t v = 0; v < g.q; ++v) row[v] = in[v * g.sw + b];
      }
    }
  }
}

// out[p] (+)= sum over taps t of wt[t] * planes[off[t] + p] for p < count (whole vectors), kUnroll
// vectors at a time; kTaps: the number of taps when known at compile time (0: `taps`).
template <class T, int kTaps, int U>
[[gnu::always_inline]] inline void depthwise_sum_vectors(int64_t taps, const T* wt, const T* planes, const int64_t* off,
                                                         int64_t p, T* out, bool add) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  V acc[U];
  for (int u = 0; u < U; ++u) acc[u] = add ? V::load(out + p + u * W) : V(T(0));
  for (int64_t t = 0; t < (kTaps > 0 ? kTaps : taps); ++t) {
    const V w(wt[t]);
    const T* src = planes + off[t] + p;
    for (int u = 0; u < U; ++u) acc[u] = fma(w, V::load(src + u * W), acc[u]);
  }
  for (int u = 0; u < U; ++u) acc[u].store(out + p + u * W);
}

template <class T, int kTaps>
void depthwise_sum(int64_t taps, const T* wt, const T* planes, const int64_t* off, int64_t count, T* out, bool add) {
  constexpr int W = Pack<T>::kWidth;
  constexpr int U = DepthwiseGeometry<T>::kUnroll;
  int64_t p = 0;
  for (; p + U * W <= count; p += U * W) depthwise_sum_vectors<T, kTaps, U>(taps, wt, planes, off, p, out, add);
  for (; p < count; p += W) depthwise_sum_vectors<T, kTaps, 1>(taps, wt, planes, off, p, out, add);
}

template <class T>
using DepthwiseSumFn = void (*)(int64_t, const T*, const T*, const int64_t*, int64_t, T*, bool);

// The sum for `taps` taps: compiled for 1 to 9 (a 3x3 kernel, and the phases of a strided one's
// input gradient) and 25 (5x5).
template <class T, int... I>
DepthwiseSumFn<T> depthwise_sum_upto9(int64_t taps, std::integer_sequence<int, I...>) {
  DepthwiseSumFn<T> fn = &depthwise_sum<T, 0>;
  ((fn = taps == I + 1 ? &depthwise_sum<T, I + 1> : fn), ...);
  return fn;
}
template <class T>
DepthwiseSumFn<T> depthwise_sum_for(int64_t taps) {
  if (taps == 25) return &depthwise_sum<T, 25>;
  return depthwise_sum_upto9<T>(taps, std::make_integer_sequence<int, 9>{});
}

// By the definition, where no scratch is left (kernels never throw): y_b[o] for every image and
// output channel o = c * mult + r.
template <class T>
void depthwise_by_definition(const ConvShape& s, int64_t mult, const T* w, int64_t n, const T* x, int64_t x_stride,
                             T* y, int64_t y_stride) {
  const int64_t taps = s.kh * s.kw;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < s.c * mult; ++o) {
      const T* xc = x + b * x_stride + o / mult * s.h * s.w;
      T* yo = y + b * y_stride + o * s.ho * s.wo;
      for (int64_t oh = 0; oh < s.ho; ++oh)
        for (int64_t ow = 0; ow < s.wo; ++ow) {
          T sum = T(0);
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t ih = oh * s.stride_h + i * s.dil_h - s.pad_h, iw = ow * s.stride_w + j * s.dil_w - s.pad_w;
              if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) sum += w[o * taps + i * s.kw + j] * xc[ih * s.w + iw];
            }
          yo[oh * s.wo + ow] = sum;
        }
    }
}

template <class T>
void conv_depthwise(const ConvShape& s, int64_t mult, const T* w, int64_t n, const T* x, int64_t x_stride, T* y,
                    int64_t y_stride) {
  const DepthwiseGeometry<T> g(s);
  const int64_t zeroed = g.phases() * g.plane + g.padded;
  T* planes = depthwise_scratch<T>(g.forward_scratch());
  if (planes == nullptr) return depthwise_by_definition(s, mult, w, n, x, x_stride, y, y_stride);
  std::fill(planes, planes + zeroed, T(0));
  T* padded = planes + g.phases() * g.plane;
  T* wide = padded + g.padded;
  const auto sum = depthwise_sum_for<T>(g.taps);
  const int64_t hw = s.h * s.w, out_plane = s.ho * s.wo;
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t c = 0; c < s.c; ++c) {
      if (c + 1 < s.c) prefetch_plane(x + b * x_stride + (c + 1) * hw, hw);
      depthwise_phases(s, g, x + b * x_stride + c * hw, planes, padded);
      for (int64_t r = 0; r < mult; ++r) {
        const int64_t o = c * mult + r;
        sum(g.taps, w + o * g.taps, planes, g.off, g.wide, wide, false);
        T* yo = y + b * y_stride + o * out_plane;
        for (int64_t oh = 0; oh < s.ho; ++oh) copy_row(wide + oh * g.q, s.wo, yo + oh * s.wo);
      }
    }
  }
}

// The output gradient of one channel into wide rows at `rows`: the wo values of each row (the
// q - wo extra columns after them, and whatever lies around, zero from the caller).
template <class T>
void depthwise_wide_gradient(const ConvShape& s, const DepthwiseGeometry<T>& g, const T* gy, T* rows) {
  for (int64_t oh = 0; oh < s.ho; ++oh) copy_row(gy + oh * s.wo, s.wo, rows + oh * g.q);
}

// The adjoint of conv_depthwise by its definition, where no scratch is left.
template <class T>
void depthwise_input_grad_by_definition(const ConvShape& s, int64_t mult, const T* w, int64_t n, const T* gy,
                                        int64_t gy_stride, T* gx, int64_t gx_stride) {
  const int64_t taps = s.kh * s.kw;
  for (int64_t b = 0; b < n; ++b) {
    T* gxb = gx + b * gx_stride;
    std::fill(gxb, gxb + s.c * s.h * s.w, T(0));
    for (int64_t o = 0; o < s.c * mult; ++o)
      for (int64_t oh = 0; oh < s.ho; ++oh)
        for (int64_t ow = 0; ow < s.wo; ++ow)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t ih = oh * s.stride_h + i * s.dil_h - s.pad_h, iw = ow * s.stride_w + j * s.dil_w - s.pad_w;
              if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) {
                gxb[(o / mult * s.h + ih) * s.w + iw] +=
                    w[o * taps + i * s.kw + j] * gy[b * gy_stride + (o * s.ho + oh) * s.wo + ow];
              }
            }
  }
}

template <class T>
void conv_depthwise_input_grad(const ConvShape& s, int64_t mult, const T* w, int64_t n, const T* gy,
                               int64_t gy_stride, T* gx, int64_t gx_stride) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const DepthwiseGeometry<T> g(s);
  const int64_t margin = g.margin(), phases = g.phases();
  // Input rows whose padded row lies within the phases' rows * sh (past them, zeros).
  const int64_t rows_out = std::clamp<int64_t>(g.rows * g.sh - s.pad_h, 0, s.h);
  // The phases of gx, then gy in wide rows after the margin (which the reads of the last phase's
  // last row may run into).
  const int64_t zeroed = margin + g.gather;
  T* planes = depthwise_scratch<T>(g.input_grad_scratch());
  if (planes == nullptr) return depthwise_input_grad_by_definition(s, mult, w, n, gy, gy_stride, gx, gx_stride);
  T* wide = planes + phases * g.gather;
  std::fill(wide, wide + zeroed, T(0));
  // Each phase's taps, at minus their offsets from the end of the margin.
  int64_t count[kConvDepthwiseMaxTaps] = {}, order[kConvDepthwiseMaxTaps], off[kConvDepthwiseMaxTaps];
  int64_t start[kConvDepthwiseMaxTaps + 1] = {};
  for (int64_t t = 0; t < g.taps; ++t) ++count[g.phase[t]];
  for (int64_t ph = 0; ph < phases; ++ph) start[ph + 1] = start[ph] + count[ph];
  {
    int64_t next[kConvDepthwiseMaxTaps];
    std::copy(start, start + phases, next);
    for (int64_t t = 0; t < g.taps; ++t) {
      const int64_t k = next[g.phase[t]]++;
      order[k] = t;
      off[k] = margin - g.shift[t];
    }
  }
  // A phase no tap reaches stays zero.
  for (int64_t ph = 0; ph < phases; ++ph)
    if (count[ph] == 0) std::fill(planes + ph * g.gather, planes + (ph + 1) * g.gather, T(0));
  DepthwiseSumFn<T> sums[kConvDepthwiseMaxTaps];
  for (int64_t ph = 0; ph < phases; ++ph) sums[ph] = depthwise_sum_for<T>(count[ph]);
  T wt[kConvDepthwiseMaxTaps];
  const ColumnPhases cp(s.w, s.pad_w, g.q);
  // Input columns whose padded column lies within the phases' sw * q (past them, zeros).
  const int64_t reach = std::clamp<int64_t>(g.sw * g.q - s.pad_w, 0, s.w);
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t c = 0; c < s.c; ++c) {
      if (c + 1 < s.c) prefetch_plane(gy + b * gy_stride + (c + 1) * mult * s.ho * s.wo, mult * s.ho * s.wo);
      for (int64_t r = 0; r < mult; ++r) {
        const int64_t o = c * mult + r;
        depthwise_wide_gradient(s, g, gy + b * gy_stride + o * s.ho * s.wo, wide + margin);
        for (int64_t ph = 0; ph < phases; ++ph) {
          if (count[ph] == 0) continue;
          for (int64_t k = start[ph]; k < start[ph + 1]; ++k) wt[k - start[ph]] = w[o * g.taps + order[k]];
          sums[ph](count[ph], wt, wide, off + start[ph], g.gather, planes + ph * g.gather, r > 0);
        }
      }
      // gx row ih is padded row ih + pad_h: phase row (ih + pad_h) / sh of row parity
      // (ih + pad_h) % sh, its columns dealt out over the sw column phases (stride 2: the two
      // phases' rows interleaved, each read from its offset as depthwise_phases wrote it).
      T* gxc = gx + b * gx_stride + c * s.h * s.w;
      for (int64_t ih = 0; ih < rows_out; ++ih) {
        const int64_t pr = ih + s.pad_h, a = pr % g.sh, u = pr / g.sh;
        const T* p0 = planes + a * g.sw * g.gather + u * g.q;
        T* row = gxc + ih * s.w;
        if (g.sw == 1) {
          copy_row(p0 + s.pad_w, reach, row);
        } else if (g.sw == 2) {
          // Parity 0 and 1 of gx's columns come from the phases b with par[b] == 0 and 1.
          const int64_t even = cp.par[0] == 0 ? 0 : 1, odd = 1 - even;
          const T* pe = p0 + even * g.gather + cp.delta[even];
          const T* po = p0 + odd * g.gather + cp.delta[odd];
          for (int64_t k = 0; 2 * k < reach; k += W) {
            V lo, hi;
            interleave(V::load(pe + k), V::load(po + k), lo, hi);
            const int64_t n = reach - 2 * k;
            if (n >= 2 * W) {
              lo.store(row + 2 * k);
              hi.store(row + 2 * k + W);
            } else {
              lo.store_n(row + 2 * k, static_cast<int>(std::min<int64_t>(n, W)));
              if (n > W) hi.store_n(row + 2 * k + W, static_cast<int>(n - W));
            }
          }
        } else {
          for (int64_t iw = 0; iw < reach; ++iw) {
            const int64_t pc = iw + s.pad_w;
            row[iw] = p0[(pc % g.sw) * g.gather + pc / g.sw];
          }
        }
        std::fill(row + reach, row + s.w, T(0));
      }
      std::fill(gxc + rows_out * s.w, gxc + s.h * s.w, T(0));
    }
  }
}

// gw[t] (kTaps taps, 0: g.taps) += sum over p < count of gyw[p] * planes[off[t] + p], with one
// vector accumulator per tap, summed across its lanes at the end.
template <class T, int kTaps>
void depthwise_dot(const DepthwiseGeometry<T>& g, const T* gyw, const T* planes, int64_t count, T* acc_out) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  constexpr int kMax = kTaps > 0 ? kTaps : kConvDepthwiseMaxTaps;
  const int64_t taps = kTaps > 0 ? kTaps : g.taps;
  V acc[kMax];
  for (int64_t t = 0; t < taps; ++t) acc[t] = V::load(acc_out + t * W);
  for (int64_t p = 0; p < count; p += W) {
    const V gv = V::load(gyw + p);
    for (int64_t t = 0; t < taps; ++t) acc[t] = fma(gv, V::load(planes + g.off[t] + p), acc[t]);
  }
  for (int64_t t = 0; t < taps; ++t) acc[t].store(acc_out + t * W);
}

template <class T>
void conv_depthwise_weight_grad(const ConvShape& s, int64_t mult, int64_t n, const T* x, int64_t x_stride,
                                const T* gy, int64_t gy_stride, T* gw) {
  using V = Pack<T>;
  constexpr int W = V::kWidth;
  const DepthwiseGeometry<T> g(s);
  const int64_t hw = s.h * s.w, out_plane = s.ho * s.wo;
  const int64_t zeroed = g.phases() * g.plane + g.padded + g.wide;
  T* planes = depthwise_scratch<T>(g.weight_grad_scratch());
  if (planes == nullptr) {
    for (int64_t b = 0; b < n; ++b)
      for (int64_t o = 0; o < s.c * mult; ++o) {
        const T* xc = x + b * x_stride + o / mult * hw;
        const T* go = gy + b * gy_stride + o * out_plane;
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j) {
            T sum = T(0);
            for (int64_t oh = 0; oh < s.ho; ++oh)
              for (int64_t ow = 0; ow < s.wo; ++ow) {
                const int64_t ih = oh * s.stride_h + i * s.dil_h - s.pad_h;
                const int64_t iw = ow * s.stride_w + j * s.dil_w - s.pad_w;
                if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) sum += go[oh * s.wo + ow] * xc[ih * s.w + iw];
              }
            gw[o * g.taps + i * s.kw + j] += sum;
          }
      }
    return;
  }
  std::fill(planes, planes + zeroed, T(0));
  T* padded = planes + g.phases() * g.plane;
  T* wide = padded + g.padded;
  T* acc = wide + g.wide;
  const auto dot = g.taps == 9 ? &depthwise_dot<T, 9> : g.taps == 25 ? &depthwise_dot<T, 25> : &depthwise_dot<T, 0>;
  for (int64_t c = 0; c < s.c; ++c) {
    for (int64_t r = 0; r < mult; ++r) {
      const int64_t o = c * mult + r;
      std::fill(acc, acc + g.taps * W, T(0));
      for (int64_t b = 0; b < n; ++b) {
        if (b + 1 < n) {
          prefetch_plane(x + (b + 1) * x_stride + c * hw, hw);
          prefetch_plane(gy + (b + 1) * gy_stride + o * out_plane, out_plane);
        }
        depthwise_phases(s, g, x + b * x_stride + c * hw, planes, padded);
        depthwise_wide_gradient(s, g, gy + b * gy_stride + o * out_plane, wide);
        dot(g, wide, planes, g.wide, acc);
      }
      for (int64_t t = 0; t < g.taps; ++t) gw[o * g.taps + t] += reduce_add(V::load(acc + t * W));
    }
  }
}

}  // namespace conv_impl
}  // namespace
}  // namespace ember::backend::EMBER_ISA_NS
