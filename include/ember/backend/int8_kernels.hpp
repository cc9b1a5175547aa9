#pragma once
// The int8 kernels behind ember::quant: a u8 x s8 -> s32 GEMM over packed weights and the
// conversions around it (float -> u8 activations, s32 -> float outputs, s32 -> u8 requantization).
//
// Note [Int8 GEMM]
// Quantized layers multiply uint8 activations (a, row-major [m, k]) by int8 weights (w, [n, k] as
// Linear stores them) into int32: c[i][j] = sum over t of a[i][t] * w[j][t]. The weights are
// packed once (pack_int8_weights) into panels of kInt8Panel output columns, k in groups of four
// bytes per column, zero padded: the layout vpdpbusd (AVX-512 VNNI) consumes directly, and
// vpmaddubsw + vpmaddwd (AVX2) too, so every tier reads the same packed bytes.
//
// vpmaddubsw adds two u8 x s8 products into int16 with saturation: 255 * 127 * 2 overflows.
// As PyTorch's x86 backend does (observers with reduce_range), ember quantizes activations to
// 7 bits, a in [0, 127], on every tier, so two products never exceed 2 * 127 * 128 = 32512 and the
// AVX2 path is exact; VNNI (which sums four products in int32) would not need it, but one rule
// keeps every tier's results bit-identical to the scalar reference. gemm_u8s8 requires a <= 127.
//
// The float steps round once, with no fused multiply-add, so every tier gives the same bits:
// quantization is PyTorch's quantize_val (q = clamp(nearbyint(x * inv_scale) + zero_point), the
// product in float, rounding half to even), requantization q = clamp(nearbyint(float(acc) *
// multiplier[j]) + zero_point). The SIMD requantization clamps the product before rounding it,
// except where every multiplier is under 1 (a layer's scale ratios): each product then fits an
// int32, is rounded first, and saturating packs plus a byte clamp give the same bytes.
#include <cstdint>

namespace ember::backend {

struct PoolShape;  // ember/backend/kernels.hpp

/// The instruction sets with int8 kernels: vpdpbusd needs AVX-512 VNNI; an AVX-512 CPU without it
/// runs the AVX2 kernels. On aarch64: NEON's widening multiplies everywhere, sdot where the CPU has
/// the dot-product extension (Cortex-A55/A76 and later), smmla where it has i8mm (ARMv8.6-A).
enum class Int8Isa : uint8_t { Scalar, Avx2, Avx512Vnni, Neon, NeonDot, NeonI8mm };
/// "scalar", "avx2", "avx512_vnni", "neon", "neon_dotprod", "neon_i8mm".
const char* int8_isa_name(Int8Isa isa) noexcept;

/// Output columns per packed weight panel.
inline constexpr int64_t kInt8Panel = 16;
/// k rounded up to the group of four bytes the kernels consume.
inline constexpr int64_t int8_padded_k(int64_t k) { return (k + 3) / 4 * 4; }
/// Bytes of pack_int8_weights' output for n columns (outputs) of k inputs.
inline constexpr int64_t int8_packed_size(int64_t n, int64_t k) {
  return (n + kInt8Panel - 1) / kInt8Panel * kInt8Panel * int8_padded_k(k);
}
/// Packs w ([n, k], row stride ldw) for gemm_u8s8 into int8_packed_size(n, k) bytes: panel p
/// holds columns 16p .. 16p + 15; within it, group g holds for each column its bytes 4g .. 4g + 3.
void pack_int8_weights(int64_t n, int64_t k, const int8_t* w, int64_t ldw, int8_t* packed) noexcept;

/// Note [Direct int8 convolution]
/// A convolution whose kernel rows are runs of neighbouring pixels (dilation 1 across) reads its
/// windows straight from the image instead of copying them into im2row rows: the image is padded
/// (the zero point outside it) and channels last, so a window's kernel row i is kw * C neighbouring
/// bytes, consumed in row_groups = ceil(kw * C / 4) groups of four (the bytes past kw * C meet zero
/// weights). The weights are packed as pack_int8_weights packs [out, kh * row_groups * 4] (each
/// kernel row's kw * C values zero padded to its groups: the im2row order itself when kw * C is a
/// multiple of four). What this saves is the im2row copy and, with a quantized consumer, the int32
/// round trip: requantization runs on the accumulators. A one-channel 3x3 convolution (K = 9) was
/// three quarters im2row and requantization.
struct Int8ConvWindows {
  int64_t ho = 0, wo = 0;    // output pixels
  int64_t kh = 0;            // kernel rows
  int64_t row_groups = 0;    // groups of four bytes per kernel row
  int64_t pixel_step = 0;    // bytes between the windows of horizontally neighbouring outputs
  int64_t row_step = 0;      // bytes between the windows of vertically neighbouring outputs
  int64_t tap_row_step = 0;  // bytes between a window's kernel rows
};

/// requantize_u8's arguments: int32 sums to the next layer's u8.
struct Int8Requantization {
  int32_t a_zero = 0;
  const int32_t* w_sum = nullptr;
  const int32_t* bias = nullptr;  // null: none
  const float* multiplier = nullptr;
  int32_t y_zero = 0, qmin = 0, qmax = 255;
};

struct Int8Kernels {
  Int8Isa isa;
  /// c[i * ldc + j] = sum over t < k of a[i * lda + t] * w[j][t] for i < m, j < n, with w as
  /// pack_int8_weights packed it; every a <= 127 (Note [Int8 GEMM]). Threads itself when large.
  void (*gemm_u8s8)(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* w_packed,
                    int32_t* c, int64_t ldc);
  /// q[i] = clamp(nearbyint(x[i] * inv_scale) + zero_point, qmin, qmax) ^ flip, stored as a byte
  /// (0 <= qmin <= qmax <= 255); NaN gives qmin. int8 values are their uint8 + 128 with flip 0x80
  /// (zero_point, qmin and qmax shifted by 128): the same rounding, the bytes of the int8.
  void (*quantize_u8)(int64_t n, const float* x, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax,
                      uint8_t flip, uint8_t* q);
  /// y[i] = float(int32(q[i] ^ flip) - zero_point) * scale: the inverse of quantize_u8 (flip 0x80
  /// and zero_point + 128 for int8 bytes).
  void (*dequantize_u8)(int64_t n, const uint8_t* q, int32_t zero_point, float scale, uint8_t flip, float* y);
  /// y[i * ldy + j] = float(c[i * ldc + j] - a_zero * w_sum[j]) * scale[j] + bias[j] (no bias term
  /// when bias is null), then max(y, 0) when relu: a quantized layer's float output.
  void (*dequantize_s32)(int64_t m, int64_t n, const int32_t* c, int64_t ldc, int32_t a_zero, const int32_t* w_sum,
                         const float* scale, const float* bias, bool relu, float* y, int64_t ldy);
  /// The same values written transposed, y[j * ldy + i]: a convolution's channels-last sums
  /// [pixels, n] to its float output channels first [n, pixels].
  void (*dequantize_s32_transposed)(int64_t m, int64_t n, const int32_t* c, int64_t ldc, int32_t a_zero,
                                    const int32_t* w_sum, const float* scale, const float* bias, bool relu, float* y,
                                    int64_t ldy);
  /// y[i * ldy + j] = clamp(nearbyint(float(c[i * ldc + j] - a_zero * w_sum[j] + bias[j]) *
  /// multiplier[j]) + y_zero, qmin, qmax) (bias null: none): int32 to the next layer's u8.
  void (*requantize_u8)(int64_t m, int64_t n, const int32_t* c, int64_t ldc, int32_t a_zero, const int32_t* w_sum,
                        const int32_t* bias, const float* multiplier, int32_t y_zero, int32_t qmin, int32_t qmax,
                        uint8_t* y, int64_t ldy);
  /// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: uint8 images between channels
  /// first and channels last.
  void (*transpose_u8)(int64_t rows, int64_t cols, const uint8_t* src, int64_t lds, uint8_t* dst, int64_t ldd);
  /// Max pooling of channels-last uint8 images [n, h, w, c] (shape.h, shape.w) into [n, ho, wo, c]:
  /// exact on quantized values, as max commutes with a monotonic quantization.
  void (*max_pool_u8)(const PoolShape& shape, int64_t n, int64_t c, const uint8_t* src, uint8_t* dst);
  /// The direct convolution of one image (Note [Direct int8 convolution]): c[p * n + j] for output
  /// pixel p = oy * wo + ox and column j < n is the sum over i < kh, t < 4 * row_groups of
  /// image[oy * row_step + ox * pixel_step + i * tap_row_step + t] * w[j][i * 4 * row_groups + t]:
  /// gemm_u8s8 of the windows. Every byte read must be <= 127. Threads itself when large.
  void (*conv_u8s8)(const Int8ConvWindows& win, const uint8_t* image, int64_t n, const int8_t* w_packed,
                    int32_t* c);
  /// The same sums requantized as requantize_u8 does them, y[p * n + j] (bit-identical to
  /// conv_u8s8 then requantize_u8).
  void (*conv_u8s8_requantize)(const Int8ConvWindows& win, const uint8_t* image, int64_t n, const int8_t* w_packed,
                               const Int8Requantization& rq, uint8_t* y);
  /// Whether the two above beat im2row + gemm_u8s8 (+ requantize_u8) here; where not (the scalar
  /// reference, NEON), they are the reference loops.
  bool direct_conv_fast = false;
};

Int8Isa best_int8_isa() noexcept;
bool int8_isa_available(Int8Isa isa) noexcept;
/// The int8 kernels of `isa`; throws ember::ValueError when this CPU or build lacks it.
const Int8Kernels& int8_kernels_for(Int8Isa isa);
/// The int8 kernels in use: the best available, capped as EMBER_ISA caps the float tables
/// (scalar: scalar; avx2: avx2; neon: the best NEON one).
const Int8Kernels& int8_kernels();

}  // namespace ember::backend
