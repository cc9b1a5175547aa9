// The forward of conv2d on raw pointers (src/ops/conv_forward.hpp): shared by the op and the
// inference plans, and part of ember::runtime, so it uses no tensors.
#include "conv_forward.hpp"

#include <algorithm>
#include <string>
#include <string_view>

#include "../core/internal.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"

namespace ember::detail {

namespace {

std::string geometry_str(const Conv2dGeometry& p) {
  return cat_str("stride (", p.stride[0], ", ", p.stride[1], "), padding (", p.padding[0], ", ",
                 p.padding[1], ", ", p.padding[2], ", ", p.padding[3], "), dilation (", p.dilation[0],
                 ", ", p.dilation[1], "), groups ", p.groups);
}

// Output size of one spatial dim, or a negative number when the input is too small.
int64_t out_size(int64_t in, int64_t pad_a, int64_t pad_b, int64_t k, int64_t d, int64_t s) {
  const int64_t span = in + pad_a + pad_b - d * (k - 1) - 1;
  return span < 0 ? -1 : span / s + 1;
}

}  // namespace

backend::ConvShape conv_shape(const ConvDims& d, const Conv2dGeometry& p) {
  return {d.cg, d.h, d.w, d.kh, d.kw, d.ho, d.wo, p.stride[0], p.stride[1], p.padding[0], p.padding[2],
          p.dilation[0], p.dilation[1]};
}

bool is_pointwise(const ConvDims& d, const Conv2dGeometry& p) {
  return d.kh == 1 && d.kw == 1 && p.stride[0] == 1 && p.stride[1] == 1 && p.padding[0] == 0 &&
         p.padding[1] == 0 && p.padding[2] == 0 && p.padding[3] == 0;
}

namespace {

// Note [Flat panels in L1]
// A flat tile reads its B operand from the input planes themselves: over its K taps, one panel of
// output pixels touches a band of input rows of every channel. While that band fits in L1 the
// flat kernels beat the GEMM (no column matrix, nothing packed); past it each tap's load comes
// from L2, while the GEMM's packed panels stay in L1. Measured (docs/benchmarks.md, "Many
// channels on small planes"), GEMM against flat: 128 channels at 28x28 1.34x (AVX-512) and 1.08x
// (AVX2) faster, 256 at 14x14 1.10x and 1.12x, 512 at 7x7 1.11x and 1.21x, 64 at 56x56 1.22x
// and 0.97x; the flat kernels still ahead where the band fits: 128 at 8x8 (0.82x), 256 at 4x4,
// the CIFAR ResNet's 16 to 64 channels. The band is that of AVX-512's float panel (32 pixels);
// the input gradient's channels are the output's, so the larger count decides for both.
bool flat_band_fits_l1(const ConvDims& d, const Conv2dGeometry& p, int64_t element_bytes) {
  constexpr int64_t kPanelPixels = 32;
  constexpr int64_t kL1Bytes = int64_t(32) << 10;
  const int64_t rows = std::min(d.h, (kPanelPixels + d.w - 1) / d.w + 1 + (d.kh - 1) * p.dilation[0]);
  return std::max(d.cg, d.og) * rows * d.w * element_bytes <= kL1Bytes;
}

}  // namespace

template <class T>
bool use_flat(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& p,
              const backend::ConvShape& cs) {
  return k.conv_flat != nullptr && !is_pointwise(d, p) && backend::conv_flat_applies(cs) &&
         flat_band_fits_l1(d, p, int64_t(sizeof(T)));
}

// Stride-2 convolutions run on the flat kernels (Note [Strided flat convolution] in
// src/backend/conv_flat.inl) where that beat the column matrix in one process alternating both
// (docs/benchmarks.md): on AVX-512, with at least kStridedFlatMinTaps taps per output. On AVX2
// im2col + GEMM won (DCGAN's 64 -> 128 forward 8.7 against 9.3 ms), and so it did on both tiers
// with a one-channel input (16 taps per output: short tiles).
constexpr int64_t kStridedFlatMinTaps = 64;
template <class T>
bool use_flat_strided(const backend::Kernels<T>& k, const backend::ConvShape& cs) {
  return k.conv_flat != nullptr && k.isa == backend::Isa::Avx512 && cs.c * cs.kh * cs.kw >= kStridedFlatMinTaps &&
         backend::conv_flat_strided_applies(cs);
}

// Note [Where Winograd runs]
// conv_winograd and its weight gradient replace the flat kernels and the column matrices where
// they measured faster (docs/benchmarks.md, Winograd; binaries of both in one process, one
// thread), for m output channels from c input channels (an input gradient's roles swapped) on
// output rows of tw = ceil(wo / 2) tiles:
// - AVX2 (flat kernels at 60-80% of the FMA peak): everywhere from 16 channels and 4 tiles a row,
//   1.2-2x in all three directions (ResNet's 16-64 channels on 32x32-8x8, ResNet-18's 64-512 on
//   56x56-7x7);
// - AVX-512 (flat kernels nearer the peak, and 16 lanes of which a narrow tile row fills few):
//   forward and input gradient from 7 tiles a row (1.1-1.9x; 0.6-0.8x at 32-64 channels on 8x8)
//   or 256 channels (512 on 7x7: 1.4x); the weight gradient from 64 channels on the same planes
//   (1.1-1.6x; 16-32 channels lost 10-15%).
bool winograd_candidate(const backend::ConvShape& cs, int64_t c, int64_t m) {
  return backend::conv_winograd_applies(cs) && c >= 16 && m >= 16 && (cs.wo + 1) / 2 >= 4;
}

template <class T>
bool use_winograd(const backend::Kernels<T>& k, const backend::ConvShape& cs, int64_t c, int64_t m,
                  bool weight_grad) {
  if (k.conv_winograd == nullptr || k.conv_winograd_weight_grad == nullptr || !winograd_candidate(cs, c, m)) {
    return false;
  }
  if (k.isa == backend::Isa::Avx2) return true;
  const int64_t channels = std::min(c, m), tw = (cs.wo + 1) / 2;
  return k.isa == backend::Isa::Avx512 && (tw >= 7 || channels >= 256) && (!weight_grad || channels >= 64);
}

constexpr int64_t kFlatMinGradRows = 4;

int64_t sample_grain(const ConvDims& d) {
  const int64_t flops = d.o * d.k() * d.hw_out();
  return std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(flops, 1));
}

// Note [Columns of several images]
// A convolution with a small output plane (DCGAN's 7x7 and 3x3, a ResNet's last stage) is a GEMM
// only hw_out() columns wide per image: the GEMM packs the weights again for every image and
// spends its time in ragged tiles. The column matrices of several images side by side (rows ld =
// images * hw_out() apart) make one GEMM at least kTargetColumns wide; the image-major operands
// (output gradients) are copied side by side too, and an output copied back to each image. A
// GEMM's result for one element does not depend on the width of the product (the same kc blocks
// in the same order), so the batched op and an inference plan that lowers one image at a time
// compute the same bits. Small products (LeNet's second convolution: 16 x 64 x 150) stay one image
// per GEMM: the GEMM packs nothing for them, and one image's columns stay in L1. Below kNarrow
// columns an image always shares: a GEMM that narrow wastes most of each tile, and the weight
// gradient of a 1x1 output (DCGAN's first transposed convolution) would be one rank-1 update of
// the whole gradient per image.
int64_t images_per_gemm(const ConvDims& d, int64_t images) {
  constexpr int64_t kTargetColumns = 256;
  constexpr int64_t kMaxColumnValues = int64_t(1) << 20;  // 4 MB of floats
  constexpr int64_t kMinImageWork = int64_t(1) << 21;
  constexpr int64_t kNarrow = 32;
  const int64_t hw = std::max<int64_t>(d.hw_out(), 1);
  if (hw >= kNarrow && d.og * hw * d.k() < kMinImageWork) return 1;
  const int64_t by_width = (kTargetColumns + hw - 1) / hw;
  const int64_t by_memory = kMaxColumnValues / std::max<int64_t>(d.k() * hw, 1);
  return std::clamp<int64_t>(std::min(by_width, by_memory), 1, std::max<int64_t>(images, 1));
}

template <class T>
void side_by_side(const T* src, int64_t image_stride, int64_t m, int64_t rows, int64_t hw, T* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < m; ++j) {
      const T* from = src + j * image_stride + r * hw;
      std::copy(from, from + hw, dst + (r * m + j) * hw);
    }
}

// Note [Columns with the images innermost]
// The discriminator's last stride-2 convolution (DCGAN's 128 -> 256, 7 -> 3) has output rows of
// three pixels: its im2col and col2im move runs of 3 values at stride 2 (10.6 and 13.4 us per
// image, a tenth of the GEMM's time), and its 9-pixel images share GEMMs 29 at a time, the last
// share ragged. With the images innermost, a batch's input is first interleaved ([c][h][w][m]:
// each pixel's m images side by side), so that every column-matrix entry of a tap and output pixel
// is a run of m contiguous values, copied (or added, for col2im) whole; the GEMM then takes the
// batch in one product [o] x [K] x [pixels * m], and its output is deinterleaved into the images.
// Each output element is the same dot product in the same blocks as image by image, and col2im
// adds the taps in the same order, so forward and input gradient give the same bits as an
// inference plan's lowering (tests/ops/test_conv_lowering.cpp). Measured on that layer, batch 64,
// 1 thread (docs/benchmarks.md): forward 4.13 -> 3.62 ms, input gradient 4.66 -> 4.03, weight
// gradient 4.08 -> 3.69 (AVX-512); 7.05 -> 6.41, 8.15 -> 7.14, 7.36 -> 6.81 (AVX2). Rows of 4 or
// more lowered image by image are fast enough that the interleaving did not pay (the generator's
// 7 -> 4 convolution's gradients: 3.94 -> 4.42 ms), so only rows of up to kInnermostMaxColumns
// take it.
int64_t images_innermost(const ConvDims& d, int64_t images) {
  constexpr int64_t kInnermostMaxColumns = 3;
  constexpr int64_t kMaxValues = int64_t(1) << 21;  // 8 MB of floats of columns, and of input
  if (images < 2 || d.wo > kInnermostMaxColumns || d.hw_out() < 2) return 0;
  const int64_t per_image = std::max<int64_t>({d.k() * d.hw_out(), d.cg * d.h * d.w, d.og * d.hw_out(), 1});
  const int64_t most = std::max<int64_t>(1, kMaxValues / per_image);
  const int64_t runs = (images + most - 1) / most;
  return (images + runs - 1) / runs;  // evened out: 64 images in 2 runs are 32 + 32
}

template <class T>
void interleave_images(const T* src, int64_t image_stride, int64_t m, int64_t count, T* dst) {
  for (int64_t i = 0; i < count; ++i)
    for (int64_t j = 0; j < m; ++j) dst[i * m + j] = src[j * image_stride + i];
}

// Sixteen values of every image at a time: one image's values all the way along read a cache
// line per value (3.9x slower for DCGAN's 64 images).
template <class T>
void deinterleave_images(const T* src, int64_t m, int64_t count, T* dst, int64_t image_stride) {
  constexpr int64_t kBlock = 16;
  for (int64_t i0 = 0; i0 < count; i0 += kBlock) {
    const int64_t ie = std::min(count, i0 + kBlock);
    for (int64_t j = 0; j < m; ++j)
      for (int64_t i = i0; i < ie; ++i) dst[j * image_stride + i] = src[i * m + j];
  }
}

namespace {

// Calls visit(at) for each entry of an image's column matrix in order (tap by tap, output pixel by
// pixel), `at` being the offset of its input pixel in [c][h][w], or -1 outside the image.
template <class Visit>
void for_each_column_entry(const backend::ConvShape& s, Visit&& visit) {
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        for (int64_t oy = 0; oy < s.ho; ++oy) {
          const int64_t iy = oy * s.stride_h - s.pad_h + i * s.dil_h;
          for (int64_t ox = 0; ox < s.wo; ++ox) {
            const int64_t ix = ox * s.stride_w - s.pad_w + j * s.dil_w;
            visit(iy < 0 || iy >= s.h || ix < 0 || ix >= s.w ? int64_t(-1) : (c * s.h + iy) * s.w + ix);
          }
        }
}

}  // namespace

template <class T>
void im2col_innermost(const backend::ConvShape& s, int64_t m, const T* x, T* cols) {
  for_each_column_entry(s, [&](int64_t at) {
    if (at < 0) {
      std::fill(cols, cols + m, T(0));
    } else {
      std::copy(x + at * m, x + (at + 1) * m, cols);
    }
    cols += m;
  });
}

template <class T>
void col2im_innermost(const backend::ConvShape& s, int64_t m, const T* cols, T* x) {
  for_each_column_entry(s, [&](int64_t at) {
    if (at >= 0) {
      T* to = x + at * m;
      for (int64_t b = 0; b < m; ++b) to[b] += cols[b];
    }
    cols += m;
  });
}

ConvDims conv_dims(const char* op, const Shape& x, const Shape& weight, const Conv2dGeometry& p) {
  if (x.size() != 4) {
    throw ShapeError(cat_str(op, ": input ", x, " must be 4-D [N, C, H, W]",
                             std::string_view(op) == "conv2d" ? " (or 3-D [C, H, W], unbatched)" : ""));
  }
  if (weight.size() != 4) {
    throw ShapeError(cat_str(op, ": weight ", weight, " must be 4-D [out, in / groups, kh, kw]"));
  }
  if (p.groups < 1 || p.stride[0] < 1 || p.stride[1] < 1 || p.dilation[0] < 1 || p.dilation[1] < 1) {
    throw ValueError(cat_str(op, ": groups, stride and dilation must be >= 1 (", geometry_str(p), ")"));
  }
  // Bounds that keep every size below in int64 (a file or a caller could give anything).
  constexpr int64_t kLimit = int64_t(1) << 30;
  for (int64_t v : {p.stride[0], p.stride[1], p.dilation[0], p.dilation[1], p.groups, weight[2], weight[3]}) {
    if (v > kLimit) throw ValueError(cat_str(op, ": geometry out of range (", geometry_str(p), ", weight ", weight, ")"));
  }
  for (int64_t v : p.padding) {
    if (v > kLimit || v < -kLimit) throw ValueError(cat_str(op, ": padding out of range (", geometry_str(p), ")"));
  }
  // Negative bottom/right padding crops; conv_transpose2d's output_padding needs it.
  if (p.padding[0] < 0 || p.padding[2] < 0) {
    throw ValueError(cat_str(op, ": padding must be >= 0 (", geometry_str(p), ")"));
  }
  if (weight[2] < 1 || weight[3] < 1) {
    throw ShapeError(cat_str(op, ": weight ", weight, " has an empty kernel (", weight[2], "x", weight[3],
                             "); kernels are at least 1x1"));
  }
  ConvDims d{x[0], x[1], x[2], x[3], weight[0], weight[2], weight[3], 0, 0, p.groups, 0, 0};
  if (d.c % d.g != 0 || d.o % d.g != 0) {
    throw ShapeError(cat_str(op, ": ", d.c, " input and ", d.o, " output channels must both be divisible "
                             "by groups ", d.g));
  }
  d.cg = d.c / d.g;
  d.og = d.o / d.g;
  if (weight[1] != d.cg) {
    throw ShapeError(cat_str(op, ": input ", x, " has ", d.c, " channels but weight ", weight, " expects ",
                             weight[1] * d.g, " (", weight[1], " per group x ", d.g, " groups)"));
  }
  d.ho = out_size(d.h, p.padding[0], p.padding[1], d.kh, p.dilation[0], p.stride[0]);
  d.wo = out_size(d.w, p.padding[2], p.padding[3], d.kw, p.dilation[1], p.stride[1]);
  bool too_large = d.ho > kLimit || d.wo > kLimit;
  int64_t total = 1;
  for (int64_t f : {d.n, d.o, d.ho, d.wo}) {
    if (f <= 0) continue;
    if (total > (int64_t(1) << 40) / f) too_large = true;
    total = too_large ? total : total * f;
  }
  if (too_large) {
    throw ShapeError(cat_str(op, ": the output of input ", x, " and weight ", weight, " with ", geometry_str(p),
                             " would be too large"));
  }
  if (d.ho <= 0 || d.wo <= 0) {
    throw ShapeError(cat_str(op, ": input ", x, " is smaller than the kernel ", weight[2], "x", weight[3],
                             " with ", geometry_str(p)));
  }
  return d;
}

template <class T>
bool use_depthwise(const backend::Kernels<T>& k, const ConvDims& d, const backend::ConvShape& cs) {
  // Not on NEON yet: under qemu an inference plan's average pooling (a depthwise convolution of
  // ones) differed in its bits from the op's there (Plan.AveragePoolingMatchesTheModelBitForBit).
  return d.g > 1 && d.cg == 1 && k.conv_depthwise != nullptr && k.isa != backend::Isa::Neon &&
         backend::conv_depthwise_applies(cs);
}

int64_t depthwise_grain(const ConvDims& d) {
  const int64_t per_pair = d.og * d.kh * d.kw * d.hw_out();
  return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(per_pair, 1));
}

template <class T>
void depthwise_pairs(const backend::Kernels<T>& k, const ConvForward<T>& f, bool input_grad, const T* in,
                     const T* w, T* out, int64_t i0, int64_t i1) {
  const ConvDims& d = f.d;
  const int64_t plane = d.h * d.w, hw = d.hw_out(), taps = d.kh * d.kw;
  backend::ConvShape s = f.shape;
  for (int64_t i = i0; i < i1;) {  // one call per image: its channels c0 .. c1
    const int64_t b = i / d.c, c0 = i % d.c, c1 = std::min(d.c, c0 + (i1 - i));
    s.c = c1 - c0;
    const T* wc = w + c0 * d.og * taps;
    if (input_grad) {
      k.conv_depthwise_input_grad(s, d.og, wc, 1, in + (b * d.o + c0 * d.og) * hw, 0, out + (b * d.c + c0) * plane, 0);
    } else {
      k.conv_depthwise(s, d.og, wc, 1, in + (b * d.c + c0) * plane, 0, out + (b * d.o + c0 * d.og) * hw, 0);
    }
    i += c1 - c0;
  }
}

template <class T>
ConvForward<T> conv_forward_setup(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& p) {
  ConvForward<T> f;
  f.d = d;
  f.shape = conv_shape(d, p);
  f.depthwise = use_depthwise(k, d, f.shape);
  if (f.depthwise) return f;
  f.pointwise = is_pointwise(d, p);
  f.winograd = !f.pointwise && use_winograd(k, f.shape, d.cg, d.og, false);
  f.flat = f.winograd || use_flat(k, d, p, f.shape) || use_flat_strided(k, f.shape);
  return f;
}

// Note [Winograd's weights once per call]
// Winograd's transformed weights U are 16/9 the size of the weights: 16 MB for 512 x 512 channels,
// whose transform is memory-bound (2.2-2.9 ms on AVX-512, more than the products of a 7x7 image).
// Inference plans transform them once when made or read (Step::winograd_u): a batch of one no
// longer pays for them on every run. The ops transform them on every call (the weights change
// between steps), where U is large once for all threads, its output channels shared among them
// (kSharedWinogradWeights in src/ops/conv.cpp); where it fits a core's caches each thread still
// transforms its own, which it then reads from its own cache rather than from the core that wrote
// it.
template <class T>
void winograd_weights(const backend::Kernels<T>& k, const ConvForward<T>& f, bool input_grad, const T* w, T* u) {
  const ConvDims& d = f.d;
  const int64_t m = input_grad ? d.cg : d.og, c = input_grad ? d.og : d.cg;
  // Pieces of at least 2 MB of U: below that a second thread costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 19) / std::max<int64_t>(16 * c, 1));
  detail::parallel_for(0, d.g * m, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1;) {
      const int64_t g = r / m, o1 = std::min((g + 1) * m, r1);
      k.conv_winograd_weights(m, c, r - g * m, o1 - g * m, w + g * m * c * 9, u + g * 16 * m * c);
      r = o1;
    }
  });
}

namespace {

// run(kernel, group g's weights, g, s, t) for the flat or Winograd kernel over samples s .. t of
// b .. e, threaded over the samples.
template <class T, class Run>
void flat_samples(const backend::Kernels<T>& k, const ConvForward<T>& f, const T* w, const T* winograd_u, int64_t b,
                  int64_t e, Run&& run) {
  const ConvDims& d = f.d;
  const auto conv = f.winograd ? k.conv_winograd : k.conv_flat;
  const int64_t w_group = f.winograd ? 16 * d.og * d.cg : d.og * d.k();
  detail::parallel_for(b, e, sample_grain(d), [&](int64_t s, int64_t t) {
    for (int64_t g = 0; g < d.g; ++g) run(conv, (f.winograd ? winograd_u : w) + g * w_group, g, s, t);
  });
}

}  // namespace

template <class T>
void conv_forward_samples(const backend::Kernels<T>& k, const ConvForward<T>& f, const T* px, const T* pw, T* po,
                          int64_t b, int64_t e, T* scratch, int64_t images, const T* winograd_u) {
  const ConvDims& d = f.d;
  const int64_t K = d.k(), HW = d.hw_out();
  const int64_t plane = d.h * d.w;
  if (f.depthwise) return depthwise_pairs(k, f, false, px, pw, po, b * d.c, e * d.c);
  if (f.flat) {
    flat_samples(k, f, pw, winograd_u, b, e, [&](auto conv, const T* wg, int64_t g, int64_t s, int64_t t) {
      conv(f.shape, d.og, wg, t - s, px + (s * d.c + g * d.cg) * plane, d.c * plane, po + (s * d.o + g * d.og) * HW,
           d.o * HW);
    });
    return;
  }
  if (f.pointwise) {
    for (int64_t n = b; n < e; ++n)
      for (int64_t g = 0; g < d.g; ++g)
        k.gemm(false, false, d.og, HW, K, T(1), pw + g * d.og * K, K, px + (n * d.c + g * d.cg) * plane, HW, T(0),
               po + (n * d.o + g * d.og) * HW, HW);
    return;
  }
  images = std::max<int64_t>(images, 1);
  T* cols = scratch;
  T* wide_out = scratch + f.cols_elements() * images;  // the GEMM's output when images > 1
  for (int64_t n0 = b; n0 < e; n0 += images) {
    const int64_t m = std::min(images, e - n0), ld = m * HW;
    for (int64_t g = 0; g < d.g; ++g) {
      for (int64_t j = 0; j < m; ++j) k.im2col(f.shape, px + ((n0 + j) * d.c + g * d.cg) * plane, cols + j * HW, ld);
      T* og = po + (n0 * d.o + g * d.og) * HW;
      k.gemm(false, false, d.og, ld, K, T(1), pw + g * d.og * K, K, cols, ld, T(0), m > 1 ? wide_out : og, ld);
      if (m == 1) continue;
      for (int64_t r = 0; r < d.og; ++r)
        for (int64_t j = 0; j < m; ++j) {
          const T* from = wide_out + (r * m + j) * HW;
          std::copy(from, from + HW, og + j * d.o * HW + r * HW);
        }
    }
  }
}

// The input gradient of a flat convolution is a flat convolution of the output gradient with
// the weights transposed and flipped, padded by dil * (k - 1) - pad.
backend::ConvShape transposed_flat_shape(const ConvDims& d, const backend::ConvShape& cs) {
  return {d.og, d.ho, d.wo, d.kh, d.kw, d.h, d.w, 1, 1, cs.dil_h * (d.kh - 1) - cs.pad_h,
          cs.dil_w * (d.kw - 1) - cs.pad_w, cs.dil_h, cs.dil_w};
}

// Note [Input gradient by phases]
// The input gradient of a stride-2 convolution (a transposed convolution's forward) adds tap (i, j)
// of gy[o][oh][ow] into gx[c][2 oh + e_i][2 ow + f_j], e_i = i * dil_h - pad_h (f_j likewise). The
// rows of gx of parity a receive only the taps whose e_i has parity a: with ih = 2u + a and
// d_i = (e_i - a) / 2, row u of that phase is the sum over those taps of gy row u - d_i. So each of
// the four phases (a, b) of gx is a stride-1 correlation of gy with the phase's taps, listed from
// the largest i (offset -d_i smallest): kernel rows r at offsets r * dil' - pad' with pad' the
// largest d_i and dil' = dil (odd dil: every other tap) or dil / 2 (even dil: every tap, one
// phase). Where no phase has more rows or columns than gy (DCGAN's layers: gx 2 ho or 2 ho - 1
// rows), each is a flat convolution over gy (Note [Flat convolution] in src/backend/conv_flat.inl)
// with a plane of gy's size, the rows and columns past the phase's dropped; the phases then
// interleave into gx. No column matrix is written and added up (col2im), gx is written once
// instead of zeroed and added into k times, and the weights are read in place through a table of
// each phase's taps (conv_flat_images), not rearranged. The images' gy planes lie side by side so
// that a 4x4 or 7x7 plane does not leave most of a tile's lanes empty.
// Taken on AVX-512 with at least kPhasedMinRows output channels per group, where it beat the GEMM
// and col2im in one process alternating both (docs/benchmarks.md); on AVX2 its tiles (6 rows, ymm
// masks) lost, as the strided forward's did.
namespace {

// The taps of one phase along one axis.
struct PhaseAxis {
  int64_t taps = 0;  // kernel rows i with e_i of this parity
  int64_t first = 0; // the largest of them (kernel row r = 0 of the phase)
  int64_t step = 0;  // between consecutive ones (i decreasing)
  int64_t pad = 0;   // pad' (the largest d_i)
  int64_t dil = 1;   // dil'
  int64_t size = 0;  // gx rows of this parity
};

PhaseAxis phase_axis(int64_t k, int64_t dil, int64_t pad, int64_t parity, int64_t gx_size) {
  PhaseAxis a;
  a.size = (gx_size - parity + 1) / 2;
  a.step = dil % 2 == 0 ? 1 : 2;
  a.dil = a.step * dil / 2;
  for (int64_t i = k - 1; i >= 0; --i) {
    const int64_t e = i * dil - pad;
    if ((e & 1) != parity) continue;  // & 1: the parity of a negative e too
    if (a.taps++ == 0) {
      a.first = i;
      a.pad = (e - parity) / 2;
    }
  }
  if (a.taps <= 1) a.dil = 1;
  return a;
}

struct Phase {
  PhaseAxis rows, cols;
  backend::ConvShape shape{};  // the stride-1 correlation over one group's gy giving the phase plane
  int64_t first_tap = 0;       // of its taps in the table of every phase's (phase_taps)
  int64_t plane = 0;           // offset of its planes in an image's phase planes
  bool empty() const { return rows.taps == 0 || cols.taps == 0 || rows.size == 0 || cols.size == 0; }
};

struct Phases {
  Phase phase[4];
  bool applies = true;  // every phase with taps is a flat convolution over gy
  int64_t elements = 0; // phase planes of one image and group
};

// The phases of the input gradient of the stride-2 convolution d with `cs` (conv_shape).
Phases transpose_phases(const ConvDims& d, const backend::ConvShape& cs) {
  Phases ps;
  int64_t taps = 0;
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) {
      Phase& q = ps.phase[2 * a + b];
      q.rows = phase_axis(d.kh, cs.dil_h, cs.pad_h, a, d.h);
      q.cols = phase_axis(d.kw, cs.dil_w, cs.pad_w, b, d.w);
      q.first_tap = taps;
      taps += d.og * q.rows.taps * q.cols.taps;
      if (q.empty()) continue;
      q.shape = {d.og, d.ho, d.wo, q.rows.taps, q.cols.taps, d.ho, d.wo, 1, 1, q.rows.pad, q.cols.pad,
                 q.rows.dil, q.cols.dil};
      q.plane = ps.elements;
      ps.elements += d.cg * d.ho * d.wo;
      ps.applies = ps.applies && q.rows.pad >= 0 && q.cols.pad >= 0 && q.rows.size <= d.ho &&
                   q.cols.size <= d.wo && backend::conv_flat_applies(q.shape);
    }
  }
  return ps;
}

// The phases' taps (phase_taps: og * kh * kw int64 in all), at the front of the phased path's
// scratch, in elements of T.
template <class T>
int64_t phase_taps_elements(const ConvDims& d) {
  return (d.og * d.kh * d.kw * int64_t(sizeof(int64_t)) + int64_t(sizeof(T)) - 1) / int64_t(sizeof(T));
}

// Where each phase's taps read a group's weights [og][cg][kh][kw] (conv_flat_images' taps, row c at
// c * kh * kw): phase q's tap (o, r, s) at taps[q.first_tap + (o * kh' + r) * kw' + s].
void phase_taps(const Phases& ps, const ConvDims& d, int64_t* taps) {
  for (const Phase& q : ps.phase) {
    int64_t* t = taps + q.first_tap;
    for (int64_t o = 0; o < d.og; ++o)
      for (int64_t r = 0; r < q.rows.taps; ++r)
        for (int64_t s = 0; s < q.cols.taps; ++s)
          *t++ = o * d.cg * d.kh * d.kw + (q.rows.first - r * q.rows.step) * d.kw + (q.cols.first - s * q.cols.step);
  }
}

// Output channels (rows of each phase's product) from which the phased path replaces the GEMM
// and col2im: below, its tiles are too short (a one-channel image's gradient: 1 row).
constexpr int64_t kPhasedMinRows = 8;

template <class T>
bool use_phased(const backend::Kernels<T>& k, const ConvDims& d, const backend::ConvShape& cs) {
  if (k.conv_flat_images == nullptr || k.isa != backend::Isa::Avx512 || cs.stride_h != 2 || cs.stride_w != 2 ||
      d.cg < kPhasedMinRows) {
    return false;
  }
  const Phases ps = transpose_phases(d, cs);
  // Its scratch for an image is at most the column matrix's, so that a plan sized for the
  // columns (built where the GEMM runs) runs it.
  return ps.applies && phase_taps_elements<T>(d) + ps.elements <= d.k() * d.hw_out();
}

}  // namespace

template <class T>
ConvForward<T> conv_transpose_setup(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& p) {
  ConvForward<T> f = conv_forward_setup(k, d, p);
  if (f.depthwise) return f;
  f.winograd = backend::conv_winograd_applies(f.shape) && !f.pointwise &&
               use_winograd(k, transposed_flat_shape(d, f.shape), d.og, d.cg, false);
  // The stride-2 forward's phase planes do not serve its gradient; and a gradient of fewer than
  // kFlatMinGradRows input channels (an RGB image's) leaves the flat tiles too few accumulators
  // (6 of AVX-512's 32 registers for 3 channels): the column matrix and GEMM took the CIFAR
  // ResNet's 3 -> 64 convolution's forward + backward from 38.5-63.3 to 23.5-24.2 ms there
  // (alternating, one thread, 2026-12-07), level on AVX2 (32.5-41.5 against 33.0-46.3).
  f.flat = f.winograd || (use_flat(k, d, p, f.shape) && d.cg >= kFlatMinGradRows);
  f.phased = !f.flat && !f.pointwise && use_phased(k, d, f.shape);
  if (f.phased) f.phase_elements = transpose_phases(d, f.shape).elements;
  return f;
}

template <class T>
int64_t conv_transpose_scratch_elements(const ConvForward<T>& f, int64_t images) {
  if (f.flat || f.pointwise || f.depthwise) return 0;
  if (f.phased) {  // the taps, the phase planes, gy's images side by side
    return phase_taps_elements<T>(f.d) + images * (f.phase_elements + (images > 1 ? f.d.og * f.d.hw_out() : 0));
  }
  const int64_t hw = f.d.hw_out();
  return f.d.k() * hw * images + (images > 1 ? f.d.og * hw * images : 0);
}

template <class T>
int64_t conv_transpose_images(const ConvForward<T>& f, int64_t samples) {
  if (f.pointwise || f.flat || f.depthwise) return 1;
  if (!f.phased) return images_per_gemm(f.d, samples);
  // Each run packs the phases' weights again: as many images as 4 MB of planes hold (and fewer
  // than 2^24 pixels side by side, conv_flat_images' bound).
  constexpr int64_t kMaxPhaseValues = int64_t(1) << 20;
  const int64_t hw = std::max<int64_t>(f.d.hw_out(), 1);
  const int64_t images = std::min(kMaxPhaseValues / (f.phase_elements + f.d.og * hw), ((int64_t(1) << 24) - 1) / hw);
  return std::clamp<int64_t>(images, 1, std::max<int64_t>(samples, 1));
}

template <class T>
void transposed_flipped_weights(const T* w, const ConvDims& d, T* out) {
  const int64_t taps = d.kh * d.kw;
  for (int64_t g = 0; g < d.g; ++g)
    for (int64_t o = 0; o < d.og; ++o)
      for (int64_t c = 0; c < d.cg; ++c)
        for (int64_t t = 0; t < taps; ++t)
          out[((g * d.cg + c) * d.og + o) * taps + (taps - 1 - t)] = w[((g * d.og + o) * d.cg + c) * taps + t];
}

namespace {

// Channel c's plane of image j's gx from the phase planes of m images ([phase][cg][m][ho * wo]):
// row 2u + a takes row u of phases (a, 0) and (a, 1) in turn; a phase without taps leaves zeros.
template <class T>
void interleave_phases(const Phases& ps, const ConvDims& d, const T* planes, int64_t m, int64_t j, int64_t c, T* gx) {
  const int64_t at = (c * m + j) * d.hw_out();
  for (int64_t a = 0; a < 2; ++a) {
    const Phase& even = ps.phase[2 * a];
    const Phase& odd = ps.phase[2 * a + 1];
    const int64_t rows = even.rows.size;
    const T* pe = even.empty() ? nullptr : planes + even.plane * m + at;
    const T* po = odd.empty() ? nullptr : planes + odd.plane * m + at;
    const int64_t half = d.w / 2;  // columns of both parities
    for (int64_t u = 0; u < rows; ++u) {
      T* row = gx + (2 * u + a) * d.w;
      const T* re = pe == nullptr ? nullptr : pe + u * d.wo;
      const T* ro = po == nullptr ? nullptr : po + u * d.wo;
      if (re != nullptr && ro != nullptr) {
        for (int64_t v = 0; v < half; ++v) {
          row[2 * v] = re[v];
          row[2 * v + 1] = ro[v];
        }
      } else {
        for (int64_t v = 0; v < half; ++v) {
          row[2 * v] = re == nullptr ? T(0) : re[v];
          row[2 * v + 1] = ro == nullptr ? T(0) : ro[v];
        }
      }
      if (d.w % 2 != 0) row[d.w - 1] = re == nullptr ? T(0) : re[half];
    }
  }
}

}  // namespace

template <class T>
void conv_transpose_samples(const backend::Kernels<T>& k, const ConvForward<T>& f, const T* pg, const T* pw, T* px,
                            int64_t b, int64_t e, T* scratch, int64_t images, const T* winograd_u) {
  const ConvDims& d = f.d;
  const int64_t K = d.k(), HW = d.hw_out(), plane = d.h * d.w;
  if (f.depthwise) return depthwise_pairs(k, f, true, pg, pw, px, b * d.c, e * d.c);
  if (f.flat) {
    const backend::ConvShape ts = transposed_flat_shape(d, f.shape);
    flat_samples(k, f, pw, winograd_u, b, e, [&](auto conv, const T* wg, int64_t g, int64_t s, int64_t t) {
      conv(ts, d.cg, wg, t - s, pg + (s * d.o + g * d.og) * HW, d.o * HW, px + (s * d.c + g * d.cg) * plane,
           d.c * plane);
    });
    return;
  }
  if (f.phased) {  // Note [Input gradient by phases]
    const Phases ps = transpose_phases(d, f.shape);
    auto* taps = reinterpret_cast<int64_t*>(scratch);
    phase_taps(ps, d, taps);
    images = std::max<int64_t>(images, 1);
    for (int64_t n0 = b; n0 < e; n0 += images) {
      const int64_t m = std::min(images, e - n0);
      T* planes = scratch + phase_taps_elements<T>(d);  // [phase][cg][m images][HW]
      T* gys = planes + m * f.phase_elements;             // gy's images side by side when m > 1
      for (int64_t g = 0; g < d.g; ++g) {
        const T* gyg = pg + (n0 * d.o + g * d.og) * HW;
        if (m > 1) {
          side_by_side(gyg, d.o * HW, m, d.og, HW, gys);
          gyg = gys;
        }
        for (const Phase& q : ps.phase) {
          if (!q.empty())
            k.conv_flat_images(q.shape, d.cg, pw + g * d.og * K, d.kh * d.kw, taps + q.first_tap, m, gyg,
                               planes + q.plane * m);
        }
        for (int64_t j = 0; j < m; ++j)
          for (int64_t c = 0; c < d.cg; ++c)
            interleave_phases(ps, d, planes, m, j, c, px + ((n0 + j) * d.c + g * d.cg + c) * plane);
      }
    }
    return;
  }
  if (f.pointwise) {  // the columns are the input gradient itself
    for (int64_t n = b; n < e; ++n)
      for (int64_t g = 0; g < d.g; ++g)
        k.gemm(true, false, K, HW, d.og, T(1), pw + g * d.og * K, K, pg + (n * d.o + g * d.og) * HW, HW, T(0),
               px + (n * d.c + g * d.cg) * plane, HW);
    return;
  }
  std::fill(px + b * d.c * plane, px + e * d.c * plane, T(0));  // col2im adds the taps up
  images = std::max<int64_t>(images, 1);
  T* cols = scratch;
  T* gys = scratch + K * HW * images;  // gy's images side by side when images > 1
  for (int64_t n0 = b; n0 < e; n0 += images) {
    const int64_t m = std::min(images, e - n0), ld = m * HW;
    for (int64_t g = 0; g < d.g; ++g) {
      const T* gyg = pg + (n0 * d.o + g * d.og) * HW;
      if (m > 1) {
        side_by_side(gyg, d.o * HW, m, d.og, HW, gys);
        gyg = gys;
      }
      k.gemm(true, false, K, ld, d.og, T(1), pw + g * d.og * K, K, gyg, ld, T(0), cols, ld);
      for (int64_t j = 0; j < m; ++j) k.col2im(f.shape, cols + j * HW, px + ((n0 + j) * d.c + g * d.cg) * plane, ld);
    }
  }
}

template bool use_winograd(const backend::Kernels<float>&, const backend::ConvShape&, int64_t, int64_t, bool);
template bool use_winograd(const backend::Kernels<double>&, const backend::ConvShape&, int64_t, int64_t, bool);
template bool use_flat(const backend::Kernels<float>&, const ConvDims&, const Conv2dGeometry&,
                       const backend::ConvShape&);
template bool use_flat(const backend::Kernels<double>&, const ConvDims&, const Conv2dGeometry&,
                       const backend::ConvShape&);
template bool use_depthwise(const backend::Kernels<float>&, const ConvDims&, const backend::ConvShape&);
template bool use_depthwise(const backend::Kernels<double>&, const ConvDims&, const backend::ConvShape&);
template void depthwise_pairs(const backend::Kernels<float>&, const ConvForward<float>&, bool, const float*,
                              const float*, float*, int64_t, int64_t);
template void depthwise_pairs(const backend::Kernels<double>&, const ConvForward<double>&, bool, const double*,
                              const double*, double*, int64_t, int64_t);
template ConvForward<float> conv_forward_setup(const backend::Kernels<float>&, const ConvDims&, const Conv2dGeometry&);
template ConvForward<double> conv_forward_setup(const backend::Kernels<double>&, const ConvDims&,
                                                const Conv2dGeometry&);
template void conv_forward_samples(const backend::Kernels<float>&, const ConvForward<float>&, const float*,
                                   const float*, float*, int64_t, int64_t, float*, int64_t, const float*);
template void conv_forward_samples(const backend::Kernels<double>&, const ConvForward<double>&, const double*,
                                   const double*, double*, int64_t, int64_t, double*, int64_t, const double*);
template void winograd_weights(const backend::Kernels<float>&, const ConvForward<float>&, bool, const float*, float*);
template void winograd_weights(const backend::Kernels<double>&, const ConvForward<double>&, bool, const double*,
                               double*);
#define EMBER_INSTANTIATE(T)                                                                                 \
  template ConvForward<T> conv_transpose_setup(const backend::Kernels<T>&, const ConvDims&, const Conv2dGeometry&); \
  template int64_t conv_transpose_scratch_elements(const ConvForward<T>&, int64_t);                                 \
  template int64_t conv_transpose_images(const ConvForward<T>&, int64_t);                                           \
  template void transposed_flipped_weights(const T*, const ConvDims&, T*);                                          \
  template void conv_transpose_samples(const backend::Kernels<T>&, const ConvForward<T>&, const T*, const T*, T*,    \
                                       int64_t, int64_t, T*, int64_t, const T*);
EMBER_INSTANTIATE(float)
EMBER_INSTANTIATE(double)
#undef EMBER_INSTANTIATE
#define EMBER_INSTANTIATE_INNERMOST(T)                                                             \
  template void interleave_images(const T*, int64_t, int64_t, int64_t, T*);                         \
  template void deinterleave_images(const T*, int64_t, int64_t, T*, int64_t);                       \
  template void im2col_innermost(const backend::ConvShape&, int64_t, const T*, T*);                  \
  template void col2im_innermost(const backend::ConvShape&, int64_t, const T*, T*);
EMBER_INSTANTIATE_INNERMOST(float)
EMBER_INSTANTIATE_INNERMOST(double)
#undef EMBER_INSTANTIATE_INNERMOST
template void side_by_side(const float*, int64_t, int64_t, int64_t, int64_t, float*);
template void side_by_side(const double*, int64_t, int64_t, int64_t, int64_t, double*);

}  // namespace ember::detail
