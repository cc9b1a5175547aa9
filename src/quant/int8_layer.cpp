// Quantized Linear and Conv2d on raw pointers (src/quant/int8_layer.hpp): one place for what the
// QuantizedModel stages and the plans' int8 steps compute.
#include "int8_layer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../core/internal.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/quant/observer.hpp"

namespace ember::quant {

// Declared in ember/quant/observer.hpp; defined here, with no tensors, for ember::runtime.
QParams calculate_qparams(float min_val, float max_val, const QuantSpec& spec) {
  if (!std::isfinite(min_val) || !std::isfinite(max_val)) {
    throw ValueError(ember::detail::cat_str("calculate_qparams: the range [", min_val, ", ", max_val,
                                            "] is not finite"));
  }
  const float qmin = static_cast<float>(spec.quant_min()), qmax = static_cast<float>(spec.quant_max());
  const float min_neg = std::min(min_val, 0.0f), max_pos = std::max(max_val, 0.0f);
  const float eps = std::numeric_limits<float>::epsilon();
  QParams q;
  if (spec.symmetric) {
    const float m = std::max(-min_neg, max_pos);
    q.scale = std::max(m / ((qmax - qmin) / 2.0f), eps);
    q.zero_point = spec.is_signed ? 0 : 128;
  } else {
    q.scale = std::max((max_pos - min_neg) / (qmax - qmin), eps);
    const float z = qmin - std::nearbyint(min_neg / q.scale);
    q.zero_point = static_cast<int64_t>(std::clamp(z, qmin, qmax));
  }
  return q;
}


namespace detail {

static_assert(kActivationMin == kActivationSpec.quant_min() && kActivationMax == kActivationSpec.quant_max());

bool dynamic_input_params(const float* x, int64_t n, float& scale, int32_t& zero_point) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const QParams q = calculate_qparams(lo, hi, kActivationSpec);
  scale = q.scale;
  zero_point = static_cast<int32_t>(q.zero_point);
  return true;
}

void quantize_activations(const float* x, int64_t n, float scale, int32_t zero_point, uint8_t* q) {
  const backend::Int8Kernels& kern = backend::int8_kernels();
  const float inv_scale = 1.0f / scale;
  // A batch's input is read from beyond L2 (a Linear 3136 -> 128 at batch 64: 800 KB): in pieces
  // over the threads, each core brings its own bandwidth.
  ember::detail::parallel_for(0, n, int64_t(1) << 16, [&](int64_t b, int64_t e) {
    kern.quantize_u8(e - b, x + b, inv_scale, zero_point, kActivationMin, kActivationMax, 0, q + b);
  });
}

void int8_rows_to_float(const Int8Affine& l, int64_t m, const uint8_t* a, int32_t a_zero, const float* scales,
                        int32_t* acc, float* y) {
  const backend::Int8Kernels& kern = backend::int8_kernels();
  kern.gemm_u8s8(m, l.out, l.k, a, l.k, l.packed, acc, l.out);
  kern.dequantize_s32(m, l.out, acc, l.out, a_zero, l.sums, scales, l.bias, l.relu, y, l.out);
}

void int8_rows_to_u8(const Int8Affine& l, int64_t m, const uint8_t* a, int32_t* acc, uint8_t* y) {
  const backend::Int8Kernels& kern = backend::int8_kernels();
  kern.gemm_u8s8(m, l.out, l.k, a, l.k, l.packed, acc, l.out);
  kern.requantize_u8(m, l.out, acc, l.out, l.in_zero, l.sums, l.bias_q, l.out_multiplier, l.out_zero,
                     l.relu ? l.out_zero : kActivationMin, kActivationMax, y, l.out);
}

void int8_conv_output(Int8ConvShape& s) {
  s.ho = (s.h + s.g.padding[0] + s.g.padding[1] - s.g.dilation[0] * (s.kh - 1) - 1) / s.g.stride[0] + 1;
  s.wo = (s.w + s.g.padding[2] + s.g.padding[3] - s.g.dilation[1] * (s.kw - 1) - 1) / s.g.stride[1] + 1;
}

void im2row_u8(const Int8ConvShape& s, const uint8_t* img, uint8_t pad, uint8_t* row) {
  const Conv2dGeometry& g = s.g;
  const int64_t c = s.c, h = s.h, w = s.w, tap_row = s.kw * c;
  for (int64_t oh = 0; oh < s.ho; ++oh) {
    for (int64_t ow = 0; ow < s.wo; ++ow) {
      const int64_t iw0 = ow * g.stride[1] - g.padding[2];
      const bool inside_w = iw0 >= 0 && iw0 + (s.kw - 1) * g.dilation[1] < w;
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t ih = oh * g.stride[0] - g.padding[0] + i * g.dilation[0];
        if (inside_w && g.dilation[1] == 1 && ih >= 0 && ih < h) {
          // The kernel row's taps are neighbouring pixels: one run of kw * C bytes (short runs
          // copied inline: a call per few bytes would cost more than the copy).
          const uint8_t* src = img + (ih * w + iw0) * c;
          if (tap_row <= 16) {
            for (int64_t t = 0; t < tap_row; ++t) row[t] = src[t];
          } else {
            std::memcpy(row, src, static_cast<size_t>(tap_row));
          }
          row += tap_row;
          continue;
        }
        for (int64_t j = 0; j < s.kw; ++j, row += c) {
          const int64_t iw = ow * g.stride[1] - g.padding[2] + j * g.dilation[1];
          if (ih < 0 || ih >= h || iw < 0 || iw >= w) {
            std::memset(row, pad, static_cast<size_t>(c));
          } else if (c == 1) {
            *row = img[ih * w + iw];
          } else {
            std::memcpy(row, img + (ih * w + iw) * c, static_cast<size_t>(c));
          }
        }
      }
    }
  }
}

bool int8_direct_conv(const Int8ConvShape& s) {
  return backend::int8_kernels().direct_conv_fast && s.g.dilation[1] == 1 && s.kw * s.c > 0;
}

namespace {

// The padded image's geometry: rows of (w + left + right) * C bytes, and the windows in it; a
// window's kernel row is kw * C bytes read in whole groups of four.
int64_t padded_row_bytes(const Int8ConvShape& s) { return (s.w + s.g.padding[2] + s.g.padding[3]) * s.c; }
int64_t window_row_bytes(const Int8ConvShape& s) { return backend::int8_padded_k(s.kw * s.c); }
// The padded image, and the bytes the last window's last group reads past its last pixel.
int64_t padded_image_bytes(const Int8ConvShape& s) {
  return (s.h + s.g.padding[0] + s.g.padding[1]) * padded_row_bytes(s) + window_row_bytes(s) - s.kw * s.c;
}

backend::Int8ConvWindows conv_windows(const Int8ConvShape& s) {
  const int64_t row = padded_row_bytes(s);
  return {.ho = s.ho, .wo = s.wo, .kh = s.kh, .row_groups = window_row_bytes(s) / 4, .pixel_step = s.g.stride[1] * s.c,
          .row_step = s.g.stride[0] * row, .tap_row_step = s.g.dilation[0] * row};
}

// The channels-last image with `pad` around it, as conv_windows reads it.
void pad_image_u8(const Int8ConvShape& s, const uint8_t* img, uint8_t pad, uint8_t* padded) {
  const int64_t row = padded_row_bytes(s), run = s.w * s.c;
  std::memset(padded, pad, static_cast<size_t>(padded_image_bytes(s)));
  for (int64_t y = 0; y < s.h; ++y) {
    std::memcpy(padded + (y + s.g.padding[0]) * row + s.g.padding[2] * s.c, img + y * run, static_cast<size_t>(run));
  }
}

}  // namespace

std::vector<int8_t> int8_direct_conv_weights(const Int8Affine& l, const Int8ConvShape& s) {
  const int64_t run = s.kw * s.c, window = window_row_bytes(s);
  if (run == window) return {};
  const int64_t kp = backend::int8_padded_k(l.k), direct_k = s.kh * window;
  std::vector<int8_t> dense(static_cast<size_t>(l.out * direct_k), 0);
  for (int64_t j = 0; j < l.out; ++j) {
    const int8_t* column =
        l.packed + (j / backend::kInt8Panel) * backend::kInt8Panel * kp + (j % backend::kInt8Panel) * 4;
    for (int64_t t = 0; t < l.k; ++t) {
      dense[static_cast<size_t>(j * direct_k + (t / run) * window + t % run)] =
          column[(t / 4) * (4 * backend::kInt8Panel) + t % 4];
    }
  }
  std::vector<int8_t> packed(static_cast<size_t>(backend::int8_packed_size(l.out, direct_k)));
  backend::pack_int8_weights(l.out, direct_k, dense.data(), direct_k, packed.data());
  return packed;
}

int64_t int8_conv_work_bytes(const Int8ConvShape& s, int64_t k) {
  // Room for either way whatever this CPU's kernels are, so that a plan's scratch fits every
  // machine.
  const int64_t rows = s.ho * s.wo * k;
  return s.g.dilation[1] != 1 ? rows : std::max(rows, padded_image_bytes(s));
}

void int8_conv_image(const Int8Affine& l, const Int8ConvShape& s, const uint8_t* img, int32_t a_zero,
                     const float* scales, uint8_t* work, int32_t* acc, uint8_t* y_u8, float* y_float) {
  const backend::Int8Kernels& kern = backend::int8_kernels();
  const int64_t pixels = s.ho * s.wo;
  if (!int8_direct_conv(s)) {
    im2row_u8(s, img, static_cast<uint8_t>(a_zero), work);
    if (l.out_quantized) {
      int8_rows_to_u8(l, pixels, work, acc, y_u8);
      return;
    }
    kern.gemm_u8s8(pixels, l.out, l.k, work, l.k, l.packed, acc, l.out);
  } else {
    pad_image_u8(s, img, static_cast<uint8_t>(a_zero), work);
    const backend::Int8ConvWindows win = conv_windows(s);
    const int8_t* w = l.direct_packed != nullptr ? l.direct_packed : l.packed;
    if (l.out_quantized) {
      const backend::Int8Requantization rq{.a_zero = l.in_zero, .w_sum = l.sums, .bias = l.bias_q,
                                           .multiplier = l.out_multiplier, .y_zero = l.out_zero,
                                           .qmin = l.relu ? l.out_zero : kActivationMin, .qmax = kActivationMax};
      kern.conv_u8s8_requantize(win, work, l.out, w, rq, y_u8);
      return;
    }
    kern.conv_u8s8(win, work, l.out, w, acc);
  }
  kern.dequantize_s32_transposed(pixels, l.out, acc, l.out, a_zero, l.sums, scales, l.bias, l.relu, y_float, pixels);
}

void to_channels_last_u8(const uint8_t* img, int64_t c, int64_t plane, uint8_t* nhwc) {
  backend::int8_kernels().transpose_u8(c, plane, img, plane, nhwc, c);
}

void to_channels_first_u8(const uint8_t* src, int64_t pixels, int64_t c, uint8_t* dst) {
  backend::int8_kernels().transpose_u8(pixels, c, src, c, dst, pixels);
}

}  // namespace detail
}  // namespace ember::quant
