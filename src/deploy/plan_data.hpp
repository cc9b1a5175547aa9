#pragma once
// Internal: what a Plan holds (Note [Inference plan] in ember/deploy/plan.hpp), shared by the
// compiler and runner (plan.cpp) and the file format (plan_file.cpp).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../ops/conv_forward.hpp"
#include "../quant/int8_layer.hpp"
#include "ember/backend/kernels.hpp"
#include "ember/core/shape.hpp"
#include "ember/deploy/plan.hpp"

namespace ember::deploy {

enum class StepKind : uint8_t {
  Conv2d, Linear, ChannelAffine, Unary, Binary, MaxPool, MeanHW,
  // A quantized model's (Note [Int8 steps] in plan_quant.cpp):
  Int8Linear, Int8Conv2d, MaxPoolU8, Dequantize,
  // Rows of `inner` values (planes of them): softmax or log_softmax (log_softmax set), layer
  // norm (weight and bias optional, eps in `eps`).
  Softmax, LayerNorm,
  // avg_pool2d: a depthwise convolution of ones (a Conv2d step's fields), each output plane then
  // divided by `divisors` (PyTorch's window sizes, [ho * wo]).
  AvgPool2d,
  // An elementwise binary op whose operands broadcast to its output (PyTorch's rules), one of
  // them possibly a constant (a parameter or buffer of the model, or computed from them): then
  // `constant_operand` says which (1: a, 2: b), its values are `weight`, its shape weight_shape,
  // and in0 is the other operand.
  BroadcastBinary,
  // cat of two values along `axis`: `planes` runs of in0's `inner` values then in1's `numel`
  // (a cat of more is a chain of these).
  Concat,
  // permute: in0's values in the order of `perm` (the output's dim j is the input's perm[j]).
  Permute,
  // matmul: `planes` products of rows x in_features by in_features x out_features; the second
  // operand is in1 or the step's constant (`weight`, weight_shape), one matrix for every product
  // (b_batches 1) or one each (b_batches = planes).
  MatMul,
  // conv_transpose2d (conv2d's input gradient): the Conv2d fields of the convolution whose gradient
  // it is (its input is this step's output), `conv` from ember::detail::conv_transpose_setup.
  ConvTranspose2d,
  // One axis of interpolate: in0 as `planes` x in_features x `inner` values, out_features positions
  // along the axis, position o read from index i0[o] (nearest) or i0[o] * near[o] + i1[o] * far[o]
  // (linear; the op's products and sum, each rounded); i0 then i1 in `ints`, near in `weight`,
  // far in `bias` (empty: nearest).
  Resample,
  Count
};

/// The most positions a Resample step reads or writes along its axis (its indices are int32).
inline constexpr int64_t kMaxResample = int64_t(1) << 30;

/// The most dims a value has (the file's limit; a broadcasting step's loop counters).
inline constexpr int kMaxValueRank = 8;

/// What a value holds: floats, or uint8 activations (channels last when 4-D: [N, H, W, C]).
enum class ElemType : uint8_t { F32, U8, Count };
inline int64_t elem_bytes(ElemType t) { return t == ElemType::U8 ? 1 : 4; }

/// The most products an int8 step sums per output (Note [Int8 steps]).
inline constexpr int64_t kMaxInt8K = 65536;

/// An int8 Linear or Conv2d step's quantization (quant::detail::Int8Affine without the arrays).
struct Int8Params {
  bool relu = false, dynamic = false, out_quantized = false;
  float in_scale = 1.0f, out_scale = 1.0f;
  int32_t in_zero = 0, out_zero = 0;
};

struct PostOp {
  backend::Unary op;
  backend::KernelParams params;
};

struct Step {
  StepKind kind = StepKind::Unary;
  int in0 = -1, in1 = -1, out = -1;  // value ids
  // Conv2d and Linear: weights and bias (empty: none); ChannelAffine: scale and shift. The
  // vectors own them in a compiled or parsed plan; w and b are what the step reads (the vectors,
  // or a memory-mapped file's bytes).
  std::vector<float> weight, bias;
  std::span<const float> w, b;
  Shape weight_shape;                   // Conv2d: [O, C / groups, kh, kw]
  Conv2dGeometry geometry{};            // Conv2d
  ember::detail::ConvForward<float> conv{};
  std::vector<float> winograd_u;        // conv.winograd: the weights transformed (prepare_winograd)
  int64_t rows = 0, in_features = 0, out_features = 0;  // Linear
  backend::Unary unary_op = backend::Unary::Relu;
  backend::KernelParams unary_params{};
  backend::Binary binary_op = backend::Binary::Add;
  backend::PoolShape pool{};
  bool two_by_two = false;
  bool log_softmax = false;  // Softmax
  uint8_t constant_operand = 0;  // BroadcastBinary
  int64_t axis = 0;              // Concat
  Shape perm;                    // Permute
  int64_t b_batches = 0;         // MatMul
  double eps = 0.0;          // LayerNorm
  int64_t numel = 0, planes = 0, inner = 0, channels = 0;
  // Int8Linear and Int8Conv2d: the packed int8 weights, the int32 arrays (weight sums [out], then
  // when out_quantized the bias in output units [out]) and the float ones (weight scales [out],
  // when static input scale * weight scale [out], when out_quantized the output multipliers
  // [out]); the float bias is `bias`. Dequantize: the value's scale and zero point in `q8`.
  Int8Params q8{};
  std::vector<int8_t> qweight;
  std::vector<int32_t> ints;
  std::vector<float> scales;
  std::span<const int8_t> qw;
  std::span<const int32_t> iv;
  std::span<const float> sv;
  // Int8Conv2d: the weights in the direct convolution's order when it differs from qw's
  // (quant::detail::int8_direct_conv_weights), derived when the plan is compiled or read.
  std::vector<int8_t> qdirect;
  std::vector<float> divisors;  // AvgPool2d, owned as `weight`; dv is what the step reads
  std::span<const float> dv;
  std::vector<PostOp> post;  // fused elementwise ops, in order
  std::string name;          // the op, for str() and errors
  bool folded_batch_norm = false;
  int64_t scratch_bytes = 0, scratch_offset = 0;
  int64_t workers = 1;  // Int8Conv2d: the image ranges run in parallel, each with its own scratch
};

struct Value {
  Shape shape;
  ElemType type = ElemType::F32;
  int alias_of = -1;    // a view of this value
  int64_t offset = -1;  // in the arena, for intermediate buffers
};

struct PlanData {
  Shape input_shape, output_shape;
  std::vector<Value> values;  // values[0] is the input
  std::vector<Step> steps;
  int output = -1;  // the root value written to the caller's output tensor
  size_t arena_bytes = 0;
  std::shared_ptr<const void> mapping;  // a loaded file's bytes, when the steps read weights there

  int root(int v) const {
    while (values[static_cast<size_t>(v)].alias_of >= 0) v = values[static_cast<size_t>(v)].alias_of;
    return v;
  }
  /// Points every step's w and b at its own vectors.
  void bind_owned_weights() {
    for (Step& s : steps) {
      s.w = s.weight;
      s.b = s.bias;
      s.qw = s.qweight;
      s.iv = s.ints;
      s.sv = s.scales;
      s.dv = s.divisors;
    }
  }
};

/// A BroadcastBinary step's operands: a and b as the op saw them, each either a value or the
/// step's constant.
struct BroadcastOperands {
  int a = -1, b = -1;  // value ids, -1 for the constant
};
inline BroadcastOperands broadcast_operands(const Step& s) {
  if (s.constant_operand == 1) return {-1, s.in0};
  if (s.constant_operand == 2) return {s.in0, -1};
  return {s.in0, s.in1};
}

/// A Concat step's runs from its operands' and output's shapes (planes, inner, numel as
/// StepKind::Concat reads them); false where the shapes are not a cat along `axis`.
inline bool concat_layout(const Shape& a, const Shape& b, const Shape& out, int64_t axis, Step& s) {
  if (a.size() != out.size() || b.size() != out.size() || axis < 0 || axis >= out.size()) return false;
  int64_t outer = 1, after = 1;
  for (int64_t i = 0; i < out.size(); ++i) {
    if (i != axis && (a[i] != out[i] || b[i] != out[i])) return false;
    if (i < axis) outer *= out[i];
    if (i > axis) after *= out[i];
  }
  if (a[axis] + b[axis] != out[axis] || a[axis] <= 0 || b[axis] <= 0) return false;
  s.axis = axis;
  s.planes = outer;
  s.inner = a[axis] * after;
  s.numel = b[axis] * after;
  return true;
}

/// Bytes of value v's buffer (its own, not rounded).
inline int64_t value_bytes(const Value& v) { return v.shape.numel() * elem_bytes(v.type); }

/// The int8 layer a step runs, its arrays pointing into the step.
inline quant::detail::Int8Affine int8_layer(const Step& s) {
  quant::detail::Int8Affine l;
  l.out = s.out_features;
  l.k = s.in_features;
  l.packed = s.qw.data();
  l.direct_packed = s.qdirect.empty() ? nullptr : s.qdirect.data();
  l.sums = s.iv.data();
  l.weight_scales = s.sv.data();
  l.bias = s.b.empty() ? nullptr : s.b.data();
  l.relu = s.q8.relu;
  l.dynamic = s.q8.dynamic;
  l.in_scale = s.q8.in_scale;
  l.in_zero = s.q8.in_zero;
  l.out_scales = s.q8.dynamic ? nullptr : s.sv.data() + l.out;
  l.out_quantized = s.q8.out_quantized;
  l.out_scale = s.q8.out_scale;
  l.out_zero = s.q8.out_zero;
  l.bias_q = s.q8.out_quantized ? s.iv.data() + l.out : nullptr;
  l.out_multiplier = s.q8.out_quantized ? s.sv.data() + (s.q8.dynamic ? 1 : 2) * l.out : nullptr;
  return l;
}

/// The arrays' lengths an int8 step with `out` outputs needs.
inline int64_t int8_ints(const Step& s) { return s.out_features * (s.q8.out_quantized ? 2 : 1); }
inline int64_t int8_floats(const Step& s) {
  return s.out_features * (1 + (s.q8.dynamic ? 0 : 1) + (s.q8.out_quantized ? 1 : 0));
}

/// Where an int8 step's scratch puts each buffer (offsets, 64-byte aligned), from its input
/// value: a dynamic layer's scales, then for each worker (an Int8Conv2d splits its images among
/// s.workers, Note [Int8 steps]) an area of `per_worker` bytes holding, at these offsets within
/// it, the quantized input, its channels-last copy, the convolution's work buffer (im2row rows or
/// the padded image: quant::detail::int8_conv_work_bytes) and the int32 sums.
struct Int8Scratch {
  int64_t dynamic_scales = 0, first_worker = 0, per_worker = 0, total = 0;
  int64_t quantized = 0, channels_last = 0, rows = 0, acc = 0;  // within a worker's area
};
Int8Scratch int8_scratch(const Step& s, const Value& input);

/// An Int8Conv2d step's image geometry from its input value (channels last when uint8).
quant::detail::Int8ConvShape int8_conv_shape(const Step& s, const Value& input);

/// The plan's data; throws ember::ValueError for an empty (default-constructed) plan.
const PlanData& checked_plan(const PlanData* p);

inline int64_t round_up_arena(int64_t bytes) {
  const auto a = static_cast<int64_t>(Plan::kArenaAlignment);
  return (bytes + a - 1) / a * a;
}

/// The column scratch of a convolution step (Conv2d, AvgPool2d, ConvTranspose2d) lowering `images`
/// images per GEMM: their column matrices and, for more than one, a GEMM operand of theirs side by
/// side (ConvForward::scratch_elements, conv_transpose_scratch_elements), rounded to the arena's
/// alignment. Reserved whether or not the compiling table has flat kernels: a plan compiled where
/// they exist may run where they do not.
inline int64_t conv_columns_bytes(const ember::detail::ConvForward<float>& f, int64_t images) {
  if (f.pointwise) return 0;
  if (f.phased) {
    return round_up_arena(ember::detail::conv_transpose_scratch_elements(f, images) * int64_t(sizeof(float)));
  }
  const int64_t hw = f.d.hw_out();
  return round_up_arena((f.d.k() * hw * images + (images > 1 ? f.d.og * hw * images : 0)) *
                        static_cast<int64_t>(sizeof(float)));
}

/// The flat kernels' weight panels for a transposed convolution's gradient (m = cg rows of at
/// most K = og * kh * kw taps), as kConvFlatRowBlock bounds them.
inline int64_t conv_transpose_panel_bytes(const ember::detail::ConvForward<float>& f) {
  const auto& d = f.d;
  return round_up_arena((d.cg + backend::kConvFlatRowBlock) * d.og * d.kh * d.kw * int64_t(sizeof(float))) + 64;
}

/// The GEMM a convolution step's im2col / col2im path runs for `images` images: m x n x k.
struct GemmDims {
  int64_t m, n, k;
};
inline GemmDims conv_gemm_dims(const Step& s, int64_t images) {
  const auto& d = s.conv.d;
  if (s.kind == StepKind::ConvTranspose2d) return {d.k(), images * d.hw_out(), d.og};
  return {d.og, images * d.hw_out(), d.k()};
}

/// Images per GEMM of a convolution step's im2col / col2im path, `samples` per worker: as the op
/// lowers them (Note [Columns of several images] in src/ops/conv_forward.cpp: the same bits), when
/// a worker's `per_worker` bytes of scratch hold their columns and the GEMM's packing room on
/// kernels `k`; else one.
inline int64_t conv_step_images(const Step& s, const backend::Kernels<float>& k, int64_t per_worker,
                                int64_t samples) {
  if (s.conv.pointwise || s.conv.flat) return 1;
  if (s.conv.phased) {  // as many as fit beside the flat kernels' weight panels, up to the op's count
    const auto& d = s.conv.d;
    const int64_t room = per_worker - conv_transpose_panel_bytes(s.conv);
    const int64_t per_image = (s.conv.phase_elements + d.og * d.hw_out()) * int64_t(sizeof(float));
    int64_t images = std::clamp<int64_t>(room / std::max<int64_t>(per_image, 1), 1,
                                         ember::detail::conv_transpose_images(s.conv, samples));
    while (images > 1 && conv_columns_bytes(s.conv, images) > room) --images;  // the taps' table, rounding
    return images;
  }
  const int64_t images = ember::detail::images_per_gemm(s.conv.d, samples);
  if (images <= 1) return 1;
  const GemmDims g = conv_gemm_dims(s, images);
  const int64_t need =
      conv_columns_bytes(s.conv, images) + round_up_arena(static_cast<int64_t>(k.gemm_workspace(g.m, g.n, g.k)));
  return need <= per_worker ? images : 1;
}

/// Fills a convolution step's (Conv2d, AvgPool2d, ConvTranspose2d) winograd_u from its weights w
/// where it runs Winograd's product (Note [Winograd's weights once per call] in
/// src/ops/conv_forward.cpp): once when a plan is made or read, not on each run.
void prepare_winograd(Step& s);

/// A ConvTranspose2d step's scratch: the transposed and flipped weights the flat kernels take,
/// then one area per worker holding the columns (conv_columns_bytes), then the packing room.
inline int64_t conv_transpose_flipped_bytes(const ember::detail::ConvForward<float>& f) {
  return round_up_arena(f.d.o * f.d.k() * static_cast<int64_t>(sizeof(float)));
}

}  // namespace ember::deploy
