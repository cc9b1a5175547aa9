#pragma once
// Internal: the forward of conv2d on raw pointers, shared by the op (src/ops/conv.cpp) and the
// inference plan (src/deploy), which must compute the same bits without allocating; no tensors
// (it is part of ember::runtime).
#include <cstdint>

#include "ember/backend/kernels.hpp"
#include "ember/core/shape.hpp"
#include "ember/ops/conv.hpp"

namespace ember::detail {

struct ConvDims {
  int64_t n, c, h, w;   // input
  int64_t o, kh, kw;    // weight
  int64_t ho, wo;       // output
  int64_t g, cg, og;    // groups, channels per group in and out
  int64_t k() const { return cg * kh * kw; }
  int64_t hw_out() const { return ho * wo; }
};

/// The dims of conv2d(x, weight) with `geometry`, checked (errors name `op`).
ConvDims conv_dims(const char* op, const Shape& x, const Shape& weight, const Conv2dGeometry& geometry);

/// One image of the convolution, for the backend's im2col / col2im.
backend::ConvShape conv_shape(const ConvDims& d, const Conv2dGeometry& geometry);
/// A 1x1, stride-1, unpadded convolution reads its input directly as the GEMM operand.
bool is_pointwise(const ConvDims& d, const Conv2dGeometry& geometry);
/// Whether a stride-1 convolution runs on the backend's flat kernels, without a column matrix
/// (Note [Flat convolution] in src/backend/conv_flat.inl), forward and input gradient. Pointwise
/// convolutions are plain GEMMs. (The forward of a stride-2 one may too: ConvForward::flat.)
template <class T>
bool use_flat(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& geometry,
              const backend::ConvShape& cs);
/// Samples per task: enough GEMM work per task to pay for the hand-off.
int64_t sample_grain(const ConvDims& d);
/// How many of `images` images the im2col paths lower side by side into one GEMM (Note [Columns
/// of several images] in src/ops/conv_forward.cpp).
int64_t images_per_gemm(const ConvDims& d, int64_t images);
/// dst[r][j * hw + p] = src[j * image_stride + r * hw + p] for m images of `rows` rows of hw
/// values each: the images' rows side by side, as their column matrices lie.
template <class T>
void side_by_side(const T* src, int64_t image_stride, int64_t m, int64_t rows, int64_t hw, T* dst);

/// Images the op lowers at once with the images innermost (Note [Columns with the images
/// innermost] in src/ops/conv_forward.cpp), of `images`; 0 where it does not apply (output rows
/// wider than kInnermostMaxColumns, or one image). Callers take it in place of their im2col +
/// GEMM paths only; inference plans keep the image-by-image lowering.
int64_t images_innermost(const ConvDims& d, int64_t images);
/// dst[i * m + j] = src[j * image_stride + i] for i < count, j < m: m images' values interleaved.
template <class T>
void interleave_images(const T* src, int64_t image_stride, int64_t m, int64_t count, T* dst);
/// The inverse: dst[j * image_stride + i] = src[i * m + j].
template <class T>
void deinterleave_images(const T* src, int64_t m, int64_t count, T* dst, int64_t image_stride);
/// im2col of m interleaved images: x is [c][h][w][m], cols [K][ho * wo][m] (row t of cols: the m
/// images' columns for tap t, pixel by pixel); zeros outside the image.
template <class T>
void im2col_innermost(const backend::ConvShape& s, int64_t m, const T* x, T* cols);
/// Its adjoint: x [c][h][w][m] += cols, each tap's contributions added in tap order.
template <class T>
void col2im_innermost(const backend::ConvShape& s, int64_t m, const T* cols, T* x);

/// How a convolution runs on kernels `k`: on the flat kernels, as a GEMM on the input itself
/// (pointwise), or through a column matrix of cols_elements() values per sample.
template <class T>
struct ConvForward {
  ConvDims d;
  backend::ConvShape shape;
  bool pointwise = false;
  bool flat = false;
  /// One group per input channel, run by the backend's depthwise kernels (Note [Depthwise
  /// convolution] in src/backend/conv_depthwise.inl); none of the other flags is then set.
  bool depthwise = false;
  /// (Input gradients only.) A stride-2 convolution's input gradient as a stride-1 flat
  /// convolution of gy for each of its four phases (Note [Input gradient by phases] in
  /// src/ops/conv_forward.cpp); phase_elements: the phase planes of one image and group.
  bool phased = false;
  int64_t phase_elements = 0;
  /// The product by Winograd's F(2x2, 3x3) (Note [Where Winograd runs] in src/ops/conv_forward.cpp) instead of
  /// conv_flat's; sets flat too (the same arguments, threaded over the samples the same way).
  bool winograd = false;
  /// The weights Winograd's product takes, transformed (winograd_weights), for all groups; 0 when
  /// it does not run.
  int64_t winograd_weights_elements() const { return winograd ? d.g * 16 * d.og * d.cg : 0; }
  int64_t cols_elements() const { return pointwise || flat || depthwise ? 0 : d.k() * d.hw_out(); }
  /// Scratch for `images` images in one GEMM: their column matrices and, for more than one, the
  /// GEMM's output before it goes to each image.
  int64_t scratch_elements(int64_t images) const {
    return cols_elements() * images + (cols_elements() > 0 && images > 1 ? d.og * d.hw_out() * images : 0);
  }
};
template <class T>
ConvForward<T> conv_forward_setup(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& geometry);

/// Whether kernels k run convolution d (shape cs) by their depthwise kernels: as many groups as
/// input channels, conv_depthwise_applies(cs).
template <class T>
bool use_depthwise(const backend::Kernels<T>& k, const ConvDims& d, const backend::ConvShape& cs);
/// The depthwise forward (or, input_grad, its input gradient) of the (image, channel) pairs
/// i0 .. i1 (pair i: image i / d.c, channel i % d.c): from x into y, or from gy into gx.
template <class T>
void depthwise_pairs(const backend::Kernels<T>& k, const ConvForward<T>& f, bool input_grad, const T* in,
                     const T* w, T* out, int64_t i0, int64_t i1);
/// (Image, channel) pairs per task of the depthwise kernels: enough work to pay for the hand-off.
int64_t depthwise_grain(const ConvDims& d);

/// Whether some tier may run conv_winograd for m output channels from c input channels of shape
/// cs (the loosest of use_winograd's rules): inference plans keep room for it wherever it may run.
bool winograd_candidate(const backend::ConvShape& cs, int64_t c, int64_t m);
/// Whether kernels k run a convolution of shape cs (m output channels from c input channels) by
/// Winograd's transforms (Note [Where Winograd runs] in src/ops/conv_forward.cpp): its forward or
/// input gradient (cs then the transposed shape), or its weight gradient.
template <class T>
bool use_winograd(const backend::Kernels<T>& k, const backend::ConvShape& cs, int64_t c, int64_t m,
                  bool weight_grad);
/// The stride-1 shape the flat kernels run an input gradient of d in (gy with the weights
/// transposed and flipped).
backend::ConvShape transposed_flat_shape(const ConvDims& d, const backend::ConvShape& cs);

/// u = the weights w transformed for Winograd's product (f.winograd_weights_elements() values):
/// the convolution's weights for a forward, the transposed and flipped ones for an input gradient
/// (f from conv_transpose_setup). The output channels are shared among the threads.
template <class T>
void winograd_weights(const backend::Kernels<T>& k, const ConvForward<T>& f, bool input_grad, const T* w, T* u);

/// out[b .. e) = conv(x, w) for samples b .. e (no bias), `images` of them per GEMM; `scratch`
/// holds scratch_elements(images) values (unused when zero). The flat path threads over the
/// samples it is given, Winograd's from the transformed weights `winograd_u` (winograd_weights).
template <class T>
void conv_forward_samples(const backend::Kernels<T>& k, const ConvForward<T>& f, const T* x, const T* w, T* out,
                          int64_t b, int64_t e, T* scratch, int64_t images = 1, const T* winograd_u = nullptr);

/// conv2d's input gradient (conv_transpose2d's forward) on raw pointers, shared by the op and the
/// inference plans. `d` and the geometry are those of the convolution whose gradient it is: its
/// input [n, c, h, w] is what this computes, from gy [n, o, ho, wo]. ConvForward's flags mean: the
/// flat kernels run a stride-1 correlation of gy with the weights transposed and flipped
/// (transposed_weights), phased one such correlation per phase of a stride-2 convolution's gx,
/// pointwise a GEMM writes gx directly, else a GEMM into columns then col2im adds them up.
template <class T>
ConvForward<T> conv_transpose_setup(const backend::Kernels<T>& k, const ConvDims& d, const Conv2dGeometry& geometry);
/// Scratch for `images` images per GEMM (the columns; for more than one, gy's images side by side),
/// or per run of the phased path (their phase planes).
template <class T>
int64_t conv_transpose_scratch_elements(const ConvForward<T>& f, int64_t images);
/// Images the GEMM (Note [Columns of several images]) or the phased path takes at once, of
/// `samples`.
template <class T>
int64_t conv_transpose_images(const ConvForward<T>& f, int64_t samples);
/// w'[g][c][o][kh-1-i][kw-1-j] = w[g][o][c][i][j] for each group g, into out (d.o * d.k() values):
/// the weights the flat kernels take for the input gradient.
template <class T>
void transposed_flipped_weights(const T* w, const ConvDims& d, T* out);
/// gx[b .. e) from gy; w is the flipped weights when f.flat, else the convolution's. The flat path
/// threads over the samples it is given (Winograd's from `winograd_u`, the flipped weights
/// transformed); the others use `scratch` (conv_transpose_scratch_elements(images) values,
/// 8-byte aligned).
template <class T>
void conv_transpose_samples(const backend::Kernels<T>& k, const ConvForward<T>& f, const T* gy, const T* w, T* gx,
                            int64_t b, int64_t e, T* scratch, int64_t images = 1, const T* winograd_u = nullptr);

}  // namespace ember::detail
