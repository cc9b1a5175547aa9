#pragma once
// Internal: what a quantized Linear or Conv2d computes, on raw pointers, shared by the stages of
// a QuantizedModel (quantize.cpp) and the int8 steps of an inference plan (src/deploy), which
// must give the same bits without allocating. No tensors: it is part of ember::runtime.
#include <cstdint>
#include <vector>

#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/ops/conv.hpp"

namespace ember::quant::detail {

/// A quantized Linear or Conv2d's constants (Note [Quantized model]): int8 weights [out, k]
/// packed for gemm_u8s8 (a convolution's k in (kh, kw, C) order), their per-output sums and
/// scales, the float bias, and how inputs and outputs are quantized.
struct Int8Affine {
  int64_t out = 0, k = 0;
  const int8_t* packed = nullptr;
  /// A Conv2d's weights in the direct convolution's order (int8_direct_conv_weights); null when
  /// it is `packed`'s.
  const int8_t* direct_packed = nullptr;
  const int32_t* sums = nullptr;
  const float* weight_scales = nullptr;
  const float* bias = nullptr;  // null: none
  bool relu = false;
  /// Dynamic: each call quantizes its float input with that input's own range.
  bool dynamic = false;
  /// Static: the input's parameters and, per output, input scale * weight scale.
  float in_scale = 1.0f;
  int32_t in_zero = 0;
  const float* out_scales = nullptr;
  /// Outputs uint8 in (out_scale, out_zero) for a quantized consumer: the bias in int32 units of
  /// the output scales and the multiplier from those units to the output's.
  bool out_quantized = false;
  float out_scale = 1.0f;
  int32_t out_zero = 0;
  const int32_t* bias_q = nullptr;
  const float* out_multiplier = nullptr;
};

/// The 7-bit activation range (kActivationSpec): [0, 127].
inline constexpr int32_t kActivationMin = 0, kActivationMax = 127;

/// A dynamic layer's input parameters from the range of x[0 .. n) (MinMaxObserver's rule);
/// false when x holds a NaN or an infinity.
bool dynamic_input_params(const float* x, int64_t n, float& scale, int32_t& zero_point);
/// q = the 7-bit activations of x[0 .. n) in (scale, zero_point).
void quantize_activations(const float* x, int64_t n, float scale, int32_t zero_point, uint8_t* q);

/// Rows of u8 activations a [m, k] (zero point a_zero) -> float outputs y [m, out] with per-output
/// scales `scales` (bias and ReLU applied); `acc` holds m * out int32.
void int8_rows_to_float(const Int8Affine& l, int64_t m, const uint8_t* a, int32_t a_zero, const float* scales,
                        int32_t* acc, float* y);
/// Rows of u8 activations [m, k] in the layer's static input parameters -> u8 outputs [m, out]
/// in its output parameters (ReLU: nothing below the output zero point); `acc` as above.
void int8_rows_to_u8(const Int8Affine& l, int64_t m, const uint8_t* a, int32_t* acc, uint8_t* y);

/// A Conv2d's image geometry: input [c, h, w], kernel kh x kw, output ho x wo.
struct Int8ConvShape {
  int64_t c, h, w, kh, kw, ho, wo;
  Conv2dGeometry g;
};
/// The output size of a convolution of `s` (ho, wo filled in; not positive when the input is
/// smaller than the kernel).
void int8_conv_output(Int8ConvShape& s);
/// One row of K = kh * kw * C bytes per output pixel of a channels-last image `img`, `pad` (the
/// zero point: real 0) outside it.
void im2row_u8(const Int8ConvShape& s, const uint8_t* img, uint8_t pad, uint8_t* row);
/// Whether a convolution of `s` runs on its image's windows (Note [Direct int8 convolution] in
/// ember/backend/int8_kernels.hpp): kernel rows of neighbouring pixels, and kernels that gain by it.
bool int8_direct_conv(const Int8ConvShape& s);
/// A Conv2d's packed weights (im2row order, [out, kh * kw * C]) in the direct convolution's order;
/// empty when the two orders coincide (kw * C a multiple of four).
std::vector<int8_t> int8_direct_conv_weights(const Int8Affine& l, const Int8ConvShape& s);
/// Bytes of work buffer int8_conv_image needs for an image of `s` (the padded image, or the
/// im2row rows).
int64_t int8_conv_work_bytes(const Int8ConvShape& s, int64_t k);
/// One channels-last image `img` in zero point a_zero through the convolution `l`: u8 outputs
/// [pixels, out] in y_u8 when l.out_quantized, float ones channels first [out, pixels]
/// (per-output `scales`) in y_float otherwise. `work` holds int8_conv_work_bytes, `acc` pixels * out int32.
void int8_conv_image(const Int8Affine& l, const Int8ConvShape& s, const uint8_t* img, int32_t a_zero,
                     const float* scales, uint8_t* work, int32_t* acc, uint8_t* y_u8, float* y_float);
/// One image [c, plane] to channels last [plane, c].
void to_channels_last_u8(const uint8_t* img, int64_t c, int64_t plane, uint8_t* nhwc);
/// One image's bytes [pixels, c] to channels first [c, pixels].
void to_channels_first_u8(const uint8_t* src, int64_t pixels, int64_t c, uint8_t* dst);


}  // namespace ember::quant::detail
