#pragma once
// The backend interface: every numeric loop in ember runs through one of these entries.
//
// Note [Kernel granularity]
// The tensor layer (src/ops) does shape checks, broadcasting and stride walking; it hands the
// backend 1-D runs of elements, each operand with its own element stride (0 = broadcast scalar,
// 1 = contiguous, anything else = strided). Kernels are free to special-case strides 0 and 1 and
// must be correct for every stride, including negative ones never (ember has no negative strides).
// Outputs are always contiguous. A kernel never allocates and never throws.
//
// Four implementations exist: `Isa::Scalar` (the reference, always built, the test oracle),
// `Isa::Avx2` and `Isa::Avx512` (x86-64 only, compiled with their own target flags and picked at
// run time from the CPU's features) and `Isa::Neon` (aarch64 Advanced SIMD, picked when the
// kernel reports it in HWCAP). `kernels<T>()` returns the best one for this CPU.
//
// Every arithmetic loop is an entry here: elementwise maps, reductions, GEMM and convolution,
// pooling, batch norm's channel passes, scatter-adds and the fused optimizer steps. The tensor
// layer keeps only index arithmetic and data movement that does no arithmetic (copies, gathers,
// index_select), which it does for every element type, integers included.
//
// Note [Kernel table by name]
// A table is written with designated initialisers (`.gemm = &gemm<T>`), never by position, and
// may leave entries null: `complete_with` fills them from the scalar reference and records which
// ones the ISA provides itself (`supports`). So a new table (NEON, int8) can start with the
// entries it speeds up and still run everything, and tests and benchmarks can ask what it covers.
#include <cstddef>
#include <cstdint>

namespace ember::backend {

enum class Isa : uint8_t { Scalar, Avx2, Avx512, Neon };
inline constexpr int kIsaCount = 4;
/// "scalar", "avx2", "avx512", "neon": the EMBER_ISA spellings.
const char* isa_name(Isa isa) noexcept;
/// The name of the table in use (kernels<float>()), e.g. "neon" on an ARM board.
const char* isa_name() noexcept;

// The kernels' op codes, generated from the op table (include/ember/ops/op_table.def), which
// says what each one computes; src/backend/scalar_ops.hpp is the definition.
enum class Unary : uint8_t {
#define EMBER_UNARY(name, Kernel, ...) Kernel,
#define EMBER_UNARY_P1 EMBER_UNARY
#define EMBER_UNARY_P2 EMBER_UNARY
#define EMBER_UNARY_KERNEL(Kernel, ...) Kernel,
#include "ember/ops/op_table.def"
  Count
};

/// A kernel's parameters (named in the op table: LeakyRelu's and LeakyMask's a is the negative
/// slope, Softplus's a and b are beta and threshold, Clamp's the bounds, PowScalar's a the
/// exponent, the scalar forms' a the scalar; the other binary kernels take none).
struct KernelParams {
  double a = 0.0;
  double b = 0.0;
};

enum class Binary : uint8_t {
#define EMBER_BINARY_KERNEL(Kernel, ...) Kernel,
#include "ember/ops/op_table.def"
  Count
};
enum class Compare : uint8_t {
#define EMBER_COMPARE(name, Kernel) Kernel,
#include "ember/ops/op_table.def"
  Count
};
enum class Reduce : uint8_t {
#define EMBER_REDUCE_KERNEL(Kernel) Kernel,
#include "ember/ops/op_table.def"
  Count
};

/// One image's geometry for the convolution lowering kernels (im2col / col2im): c channels of
/// h x w, a kh x kw kernel, output ho x wo; pad_h / pad_w are the top and left padding.
struct ConvShape {
  int64_t c, h, w, kh, kw, ho, wo;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

/// The largest kernel side the flat convolutions take (they keep lane masks per kernel row and
/// per kernel column).
inline constexpr int64_t kConvFlatMaxKernel = 16;
/// conv_flat packs the weights of m output channels of K = c * kh * kw taps into at most
/// (m + kConvFlatRowBlock) * K values of the thread's packing buffer, or of a GemmWorkspace.
inline constexpr int64_t kConvFlatRowBlock = 16;

/// Whether conv_flat and conv_flat_weight_grad apply: unit strides and output rows as wide as
/// the input's, so that each kernel tap reads the plane at one fixed offset (Note [Flat
/// convolution] in src/backend/conv_flat.inl). Any number of output rows; planes below 2^24
/// elements (16 M).
inline bool conv_flat_applies(const ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.wo == s.w && s.kh <= kConvFlatMaxKernel &&
         s.kw <= kConvFlatMaxKernel && s.ho * s.wo < (int64_t(1) << 24) && s.h * s.w < (int64_t(1) << 24);
}

/// Whether conv_flat applies to a stride-2 convolution: output rows as wide as the input's
/// columns of one parity (ceil(w / 2)), so that after the input is split into its four phases
/// (even and odd rows and columns) each kernel tap reads one phase plane at one fixed offset (Note
/// [Strided flat convolution] in src/backend/conv_flat.inl). Only the forward: its gradients go
/// through a column matrix.
inline bool conv_flat_strided_applies(const ConvShape& s) {
  return s.stride_h == 2 && s.stride_w == 2 && s.wo == (s.w + 1) / 2 && s.kh <= kConvFlatMaxKernel &&
         s.kw <= kConvFlatMaxKernel && s.ho > 0 && s.ho * s.wo < (int64_t(1) << 22) && s.h * s.w < (int64_t(1) << 24);
}

/// Images a strided conv_flat of n images with m output channels splits into phases at once
/// (their pixels side by side, so that a 7x7 output does not leave a quarter of each tile's lanes
/// empty), and the scratch it takes for them, in elements: the images' phase planes and, for more
/// than one, the product before it goes to each image. A GemmWorkspace with room for this after
/// the weight panels keeps it from allocating.
/// (Both out of line, in src/backend/dispatch.cpp: the ISA-specific kernel files call them, and a
/// copy they emitted where the compiler did not inline it would be a weak symbol built for their
/// ISA, which the linker could pick for every caller.)
int64_t conv_flat_strided_images(const ConvShape& s, int64_t m, int64_t n);
int64_t conv_flat_strided_scratch(const ConvShape& s, int64_t m, int64_t images);

/// Whether conv_flat_weight_grad applies to m output channels: where conv_flat does, with at
/// most kConvFlatMaxWgradOutputs of them (beyond, the GEMM's tiles reuse each load more and beat
/// the column matrix's cost: 1.1x at 80 -> 80 on 8x8, 2x at 512 -> 512 on 7x7; below, the flat
/// tiles won up to 1.6x: docs/benchmarks.md), and to stride-1 convolutions without padding on any
/// side ("valid": every tap inside the image; the shape names only the top and left padding, so
/// the output's extent says), whose rows it reads as runs of at most two output rows per vector,
/// when they have at most kConvValidMaxOutputs output channels. With few, writing and transposing
/// the column matrix costs more than the products (LeNet-5's 1 -> 6 convolution); with more, the
/// products are the larger share and the GEMM's tiles do them faster (its 6 -> 16 one).
inline constexpr int64_t kConvFlatMaxWgradOutputs = 64;
inline constexpr int64_t kConvValidMaxOutputs = 8;
inline bool conv_flat_weight_grad_applies(const ConvShape& s, int64_t m) {
  return (conv_flat_applies(s) && m <= kConvFlatMaxWgradOutputs) ||
         (s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0 && s.ho > 0 && s.wo > 0 &&
          (s.kh - 1) * s.dil_h + s.ho <= s.h && (s.kw - 1) * s.dil_w + s.wo <= s.w && m <= kConvValidMaxOutputs);
}

/// Whether conv_winograd applies: a stride-1, undilated 3x3 convolution (any padding) whose
/// output rows are at most kConvWinogradMaxWidth wide. Whether it is faster than conv_flat depends
/// on the ISA and the shape; the caller decides (src/ops/conv_forward.cpp).
inline constexpr int64_t kConvWinogradMaxWidth = 1024;
inline bool conv_winograd_applies(const ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1 && s.kh == 3 && s.kw == 3 &&
         s.ho > 0 && s.wo > 0 && s.wo <= kConvWinogradMaxWidth && s.pad_h >= 0 && s.pad_w >= 0;
}
/// conv_winograd's block of tiles for m output channels (whole rows of tiles, a position's V and
/// M in about 512 KB), and the scratch in elements that conv_winograd (weight_grad false) or
/// conv_winograd_weight_grad takes: V and M of a block (kConvWinogradSlack values after each
/// row), after the weight gradient's 16 m c sums. They take it from a GemmWorkspace with room for
/// it and, after it, the packing of an m x tiles x c GEMM; else from the thread's own buffer.
/// (Out of line in src/backend/dispatch.cpp, as conv_flat_strided_images.)
inline constexpr int64_t kConvWinogradSlack = 16;
int64_t conv_winograd_tiles(const ConvShape& s, int64_t m);
int64_t conv_winograd_scratch(const ConvShape& s, int64_t m, bool weight_grad);
/// The transformed weights conv_winograd takes for m output channels from c input channels.
inline int64_t conv_winograd_weights_size(int64_t m, int64_t c) { return 16 * m * c; }

/// Whether conv_depthwise and its gradients apply (Note [Depthwise convolution] in
/// src/backend/conv_depthwise.inl): any stride, padding and dilation, kernels of at most
/// kConvDepthwiseMaxTaps taps, strides of at most kConvDepthwiseMaxStride, output planes below 2^24.
inline constexpr int64_t kConvDepthwiseMaxTaps = 64;
inline constexpr int64_t kConvDepthwiseMaxStride = 4;
inline bool conv_depthwise_applies(const ConvShape& s) {
  return s.kh * s.kw <= kConvDepthwiseMaxTaps && s.stride_h <= kConvDepthwiseMaxStride &&
         s.stride_w <= kConvDepthwiseMaxStride && s.ho > 0 && s.wo > 0 && s.pad_h >= 0 && s.pad_w >= 0 &&
         (s.ho + s.kh * s.dil_h) * (s.wo + s.kw * s.dil_w) < (int64_t(1) << 24);
}
/// The scratch values the depthwise kernels take for shape s on any ISA; they take it from a
/// GemmWorkspace with room for it, else from the thread's own buffer. (Out of line in
/// src/backend/dispatch.cpp, as conv_flat_strided_images.)
int64_t conv_depthwise_scratch(const ConvShape& s);

/// One 2-D pooling window layout over an h x w plane with output ho x wo; pad_h / pad_w are the
/// top and left padding.
struct PoolShape {
  int64_t h, w, ho, wo, kh, kw;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

/// torch.optim.SGD's step with a momentum buffer, per element (the constants are cast to T):
/// buf = buf * momentum + g * one_minus_dampening; p = p + (nesterov ? g + buf * momentum : buf) * neg_lr.
struct SgdStep {
  double momentum, one_minus_dampening, neg_lr;
  bool nesterov;
};

/// torch.optim.Adam's step, per element (the constants are cast to T): m = m * beta1 + g *
/// one_minus_beta1; v = v * beta2 + (g * g) * one_minus_beta2; p = p + (m / (sqrt(v) /
/// bias_correction2_sqrt + eps)) * neg_step_size.
struct AdamStep {
  double beta1, one_minus_beta1, beta2, one_minus_beta2, eps, bias_correction2_sqrt, neg_step_size;
};

// X(name): every entry of Kernels<T>, in declaration order.
#define EMBER_KERNEL_ENTRIES(X)                                                                   \
  X(unary) X(binary) X(compare) X(where) X(reduce) X(accumulate) X(arg_reduce) X(gemm)            \
  X(gemm_workspace) X(im2col) X(col2im)                                                           \
  X(conv_flat) X(conv_flat_images) X(conv_flat_weight_grad) X(conv_winograd_weights)             \
  X(conv_winograd) X(conv_winograd_weight_grad) X(conv_depthwise) X(conv_depthwise_input_grad)   \
  X(conv_depthwise_weight_grad) X(centered_sums) X(affine2)                                       \
  X(channel_sums) X(channel_affine) X(max_pool2x2) X(max_pool2d) X(index_accumulate) X(csr_mm)    \
  X(sgd_step) X(adam_step)

/// The entries of a kernel table, by name (Note [Kernel table by name]).
enum class Entry : uint8_t {
#define EMBER_ENTRY_ENUM(name) name,
  EMBER_KERNEL_ENTRIES(EMBER_ENTRY_ENUM)
#undef EMBER_ENTRY_ENUM
  Count
};
const char* entry_name(Entry e) noexcept;
/// Entries that even a complete table may leave null; callers then take another route
/// (conv_flat and its weight gradient: im2col + gemm).
bool entry_optional(Entry e) noexcept;

template <class T>
struct Kernels {
  Isa isa;
  /// y[i] = op(x[i * sx]) for i < n.
  void (*unary)(Unary op, KernelParams p, int64_t n, const T* x, int64_t sx, T* y);
  /// y[i] = op(a[i * sa], b[i * sb]).
  void (*binary)(Binary op, KernelParams p, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb, T* y);
  /// y[i] = op(a[i * sa], b[i * sb]) ? 1 : 0.
  void (*compare)(Compare op, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb,
                  uint8_t* y);
  /// y[i] = c[i * sc] ? a[i * sa] : b[i * sb].
  void (*where)(int64_t n, const uint8_t* c, int64_t sc, const T* a, int64_t sa, const T* b,
                int64_t sb, T* y);
  /// Reduction of x[i * sx], i < n. Empty input gives the identity (0, 1, -inf, +inf, 0).
  /// Max/Min propagate NaN.
  T (*reduce)(Reduce op, int64_t n, const T* x, int64_t sx);
  /// acc[i] = op(acc[i], x[i * sx]) for Sum/Prod/Max/Min/SumSquares (SumSquares adds x*x);
  /// used to reduce over an outer dimension while the inner one stays contiguous.
  void (*accumulate)(Reduce op, int64_t n, const T* x, int64_t sx, T* acc);
  /// Index of the first maximum (or minimum) of x[i * sx]; the first NaN wins. n >= 1.
  int64_t (*arg_reduce)(bool is_max, int64_t n, const T* x, int64_t sx);
  /// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, all row-major with leading
  /// dimensions lda/ldb/ldc; op(X) = X^T when the trans flag is set. beta == 0 ignores C's old
  /// contents (NaN included). Threads itself through ember's pool when the work is large.
  /// Bytes of packing scratch gemm may use on the calling thread for an m x n x k product (any
  /// layout): what a GemmWorkspace must hold to keep gemm from allocating.
  size_t (*gemm_workspace)(int64_t m, int64_t n, int64_t k);
  void (*gemm)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
               int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);
  /// cols[(ci * kh + i) * kw + j][oh * wo + ow] = x[ci][oh * sh - ph + i * dh][ow * sw - pw + j * dw],
  /// 0 outside the image; x is [c, h, w], contiguous, and the rows of cols (ho * wo values each)
  /// lie ld >= ho * wo apart, so that the columns of several images can sit side by side.
  void (*im2col)(const ConvShape& s, const T* x, T* cols, int64_t ld);
  /// The adjoint of im2col: x[...] += cols[...] (x is accumulated into, not overwritten). cols
  /// is scratch: entries for positions outside the image may be overwritten.
  void (*col2im)(const ConvShape& s, T* cols, T* x, int64_t ld);
  /// Convolution of n images without a column matrix, where conv_flat_applies(s) or
  /// conv_flat_strided_applies(s) (then strided: ho x wo pixels at stride 2); null where
  /// the CPU lacks lane masks (then im2col + gemm). With K = c * kh * kw and hw = ho * wo, for
  /// each image b: y_b[o][p] = sum over t < K of w[o * K + t] * cols_b[t][p] (cols_b as im2col
  /// of x_b would write it), o < m, p < hw; x_b = x + b * x_stride ([c, h, w]), y_b = y +
  /// b * y_stride ([m, hw], overwritten).
  void (*conv_flat)(const ConvShape& s, int64_t m, const T* w, int64_t n, const T* x,
                    int64_t x_stride, T* y, int64_t y_stride);
  /// conv_flat of n images lying side by side, for a stride-1 s with conv_flat_applies(s), s.ho ==
  /// s.h and n * s.h * s.w < 2^24: x is [c][n][h * w] and y [m][n][ho * wo] (overwritten), so
  /// that the tiles' pixels run across images (small planes fill their lanes). The weights are
  /// read in place: that of output channel o and tap t is w[o * w_row + taps[t]] (taps null:
  /// w[o * K + t]). Null as conv_flat.
  void (*conv_flat_images)(const ConvShape& s, int64_t m, const T* w, int64_t w_row, const int64_t* taps,
                           int64_t n, const T* x, T* y);
  /// The weight gradient of conv_flat: gw[o * K + t] += sum over images b < n and pixels p of
  /// gy_b[o][p] * cols_b[t][p], with gy_b = gy + b * gy_stride ([m, hw]), where
  /// conv_flat_weight_grad_applies(s, m); null as conv_flat.
  void (*conv_flat_weight_grad)(const ConvShape& s, int64_t m, int64_t n, const T* x,
                                int64_t x_stride, const T* gy, int64_t gy_stride, T* gw);
  /// Winograd's transform of m x c 3x3 kernels w ([m][c][3][3]) for conv_winograd, rows o0 <= o <
  /// o1 of u ([16][m][c], conv_winograd_weights_size(m, c) values): once per call of an op, the
  /// rows shared among its threads, or once for an inference plan. Null as conv_winograd.
  void (*conv_winograd_weights)(int64_t m, int64_t c, int64_t o0, int64_t o1, const T* w, T* u);
  /// conv_flat's product by Winograd's F(2x2, 3x3) (Note [Winograd convolution] in
  /// src/backend/conv_winograd.inl), where conv_winograd_applies(s): conv_flat's arguments with the
  /// weights transformed (u from conv_winograd_weights), its result up to rounding (fewer
  /// multiplies, other sums). Null for double (its convolutions stay the definition's sums) and
  /// where conv_flat is.
  void (*conv_winograd)(const ConvShape& s, int64_t m, const T* u, int64_t n, const T* x, int64_t x_stride, T* y,
                        int64_t y_stride);
  /// conv_flat_weight_grad by the same transforms, where conv_winograd_applies(s); null as
  /// conv_winograd.
  void (*conv_winograd_weight_grad)(const ConvShape& s, int64_t m, int64_t n, const T* x, int64_t x_stride,
                                    const T* gy, int64_t gy_stride, T* gw);
  /// Depthwise convolution of n images (Note [Depthwise convolution] in
  /// src/backend/conv_depthwise.inl), where conv_depthwise_applies(s): s.c input channels, `mult`
  /// output channels each, o = c * mult + r; y_b[o][oh][ow] = the sum over taps (i, j) of
  /// w[o][i][j] * x_b[c][oh * sh + i * dh - ph][ow * sw + j * dw - pw] (zero outside the image),
  /// x_b = x + b * x_stride ([c, h, w]), y_b = y + b * y_stride ([c * mult, ho, wo], overwritten).
  void (*conv_depthwise)(const ConvShape& s, int64_t mult, const T* w, int64_t n, const T* x, int64_t x_stride,
                         T* y, int64_t y_stride);
  /// Its input gradient: gx_b (overwritten) from gy_b, laid out as x_b and y_b.
  void (*conv_depthwise_input_grad)(const ConvShape& s, int64_t mult, const T* w, int64_t n, const T* gy,
                                    int64_t gy_stride, T* gx, int64_t gx_stride);
  /// Its weight gradient, added to gw ([c * mult, kh, kw]): the sum over the n images.
  void (*conv_depthwise_weight_grad)(const ConvShape& s, int64_t mult, int64_t n, const T* x, int64_t x_stride,
                                     const T* gy, int64_t gy_stride, T* gw);
  /// Channel statistics (batch norm) over a contiguous run: without y, *s1 = sum (x - c) and
  /// *s2 = sum (x - c)^2; with y, *s1 = sum y and *s2 = sum y (x - c). Results are added to *s1
  /// and *s2 (accumulated in double across calls; within a call in T lanes, then double).
  void (*centered_sums)(int64_t n, const T* x, T c, const T* y, double* s1, double* s2);
  /// out[i] = a[i] * alpha + b[i] * beta + gamma (b may be null: no b term), evaluated in that
  /// order without fused multiply-adds, so every ISA gives the same bits.
  void (*affine2)(int64_t n, const T* a, T alpha, const T* b, T beta, T gamma, T* out);
  /// Batch norm's per-channel sums over n samples of x [n, channels, inner] (contiguous), added
  /// to acc[2 * ch] and acc[2 * ch + 1] sample by sample, channel by channel: without center,
  /// acc[2 ch] += the reduce(Sum) of each plane; with it, centered_sums of each plane about
  /// center[ch] (y, when given, laid out as x).
  void (*channel_sums)(int64_t n, int64_t channels, int64_t inner, const T* x, const T* center,
                       const T* y, double* acc);
  /// Batch norm's per-channel affine map over `planes` contiguous planes of `inner` elements,
  /// the first of which is plane number first_plane of an [N, channels, inner] tensor: plane p
  /// has channel ch = (first_plane + p) % channels and gets affine2(inner, a_p, alpha[ch], b_p,
  /// beta[ch], gamma[ch], out_p) (b and beta null: no b term).
  void (*channel_affine)(int64_t planes, int64_t first_plane, int64_t channels, int64_t inner,
                         const T* a, const T* alpha, const T* b, const T* beta, const T* gamma, T* out);
  /// 2x2 max pooling with stride 2 (no padding) of `planes` contiguous h x w planes: y[p][oh][ow]
  /// is the maximum of x[p][2oh .. 2oh+1][2ow .. 2ow+1] for oh < h / 2, ow < w / 2, and idx
  /// its index within the plane; among equal maxima the first in row-major order wins, and
  /// the first NaN beats everything (PyTorch's rule).
  void (*max_pool2x2)(int64_t planes, int64_t h, int64_t w, const T* x, T* y, int64_t* idx);
  /// General max pooling of `planes` contiguous planes (s.h x s.w in, s.ho x s.wo out) with
  /// the rule of max_pool2x2; windows are clipped to the plane (padding reads nothing). A window
  /// wholly in the padding (possible with dilation: the padding is bounded by half the kernel,
  /// not by half its dilated extent) gives -inf, as PyTorch, and index -1.
  void (*max_pool2d)(const PoolShape& s, int64_t planes, const T* x, T* y, int64_t* idx);
  /// dst[idx[i]] += src[i * ss] for i < n, in order (indices may repeat): the scatter-add
  /// behind scatter_add, index_add and max pooling's gradient.
  void (*index_accumulate)(int64_t n, const int64_t* idx, const T* src, int64_t ss, T* dst);
  /// Sparse times dense: c[r][i] = the sum over j in [row_offsets[r], row_offsets[r + 1]) of
  /// values[j] * b[cols[j]][i], for r < m and i < n (b [k, n] and c row-major with leading
  /// dimensions ldb and ldc), each sum taken in the order of j from zero, every product rounded on
  /// its own: the same bits on every ISA. row_offsets index into cols and values from their
  /// starts, so a call may cover any range of rows of a CSR matrix. The offsets must be valid; a
  /// column index outside [0, k) reads nothing outside b and makes the call return false (c is
  /// then unspecified).
  bool (*csr_mm)(int64_t m, int64_t n, int64_t k, const int64_t* row_offsets, const int32_t* cols, const T* values,
                 const T* b, int64_t ldb, T* c, int64_t ldc);
  /// SgdStep over n contiguous elements of the parameter, its gradient and momentum buffer.
  void (*sgd_step)(const SgdStep& k, int64_t n, T* p, const T* g, T* buf);
  /// AdamStep over n contiguous elements of the parameter, its gradient and both moments.
  void (*adam_step)(const AdamStep& k, int64_t n, T* p, const T* g, T* m, T* v);

  /// Bit e is set when the ISA's own code provides entry e (set by complete_with).
  uint64_t own = 0;
  /// Whether this table's ISA implements entry e itself rather than borrowing the reference's.
  bool supports(Entry e) const noexcept { return ((own >> static_cast<unsigned>(e)) & 1u) != 0; }
};

/// `table` with its null entries taken from `reference` (optional ones stay null when the
/// reference has none) and `own` recording the entries it had (Note [Kernel table by name]).
template <class T>
Kernels<T> complete_with(Kernels<T> table, const Kernels<T>& reference) noexcept;

/// The kernels of the integer element types (int64, int32, uint8: labels, indices, masks), which
/// have no SIMD tables: comparisons and exact reductions, in scalar code.
template <class T>
struct IntegerKernels {
  /// y[i] = op(a[i * sa], b[i * sb]) ? 1 : 0.
  void (*compare)(Compare op, int64_t n, const T* a, int64_t sa, const T* b, int64_t sb, uint8_t* y);
  /// *acc += the sum of x[i * sx] in int64; false (and *acc unspecified) when that overflows.
  bool (*sum)(int64_t n, const T* x, int64_t sx, int64_t* acc);
  /// *acc = max (or min) of *acc and every x[i * sx].
  void (*extreme)(bool is_max, int64_t n, const T* x, int64_t sx, T* acc);
  /// The number of nonzero x[i * sx], added to *count.
  void (*count_nonzero)(int64_t n, const T* x, int64_t sx, int64_t* count);
};
template <class T>
const IntegerKernels<T>& integer_kernels() noexcept;

/// While alive, gemm on this thread packs its operands into `buffer` (64-byte aligned, at least
/// gemm_workspace(m, n, k) bytes for the products it runs) instead of its thread-local buffers,
/// which grow by allocation the first time a thread runs a large product: what lets an inference
/// plan run from its arena alone (Note [Inference plan]). Products that need more than the buffer
/// holds use the thread-local buffers as before. Worker threads of a threaded product are not
/// covered: it concerns the calling thread.
class GemmWorkspace {
 public:
  GemmWorkspace(std::byte* buffer, size_t bytes) noexcept;
  ~GemmWorkspace();
  GemmWorkspace(const GemmWorkspace&) = delete;
  GemmWorkspace& operator=(const GemmWorkspace&) = delete;

 private:
  std::byte* previous_;
  size_t previous_bytes_;
};

namespace detail {
/// The calling thread's borrowed packing buffer (GemmWorkspace), or {nullptr, 0}; `a_used` is
/// what the A panel took of it in the current product.
struct BorrowedWorkspace {
  std::byte* data = nullptr;
  size_t bytes = 0;
  size_t a_used = 0;
};
BorrowedWorkspace& borrowed_gemm_workspace() noexcept;
}  // namespace detail

Isa best_isa() noexcept;
/// Whether this build and this CPU can run `isa`.
bool isa_available(Isa isa) noexcept;

/// The kernels of `isa`; throws ember::ValueError when it is not available.
template <class T>
const Kernels<T>& kernels_for(Isa isa);

/// The kernels in use: the best available, unless EMBER_ISA=scalar|avx2|avx512|neon asks for less
/// (a name this CPU cannot run leaves the best).
template <class T>
const Kernels<T>& kernels();

}  // namespace ember::backend
