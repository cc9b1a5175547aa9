// The plan file: its format (Note [Plan file]) and its reader, deploy::load (memory-mapped) and
// deploy::parse; deploy::save is in plan_save.cpp (ember::runtime reads plans, it does not write them).
//
// Note [Plan file]
// One little-endian file:
//   header (64 bytes): "EMBRPLAN", u32 version (3), u32 0, u64 file size, u64 arena bytes,
//                      u64 graph offset (64), u64 graph bytes, u64 weights offset, u64 weights bytes
//   graph:   the input and output shapes, the values (shape, type: float32 or uint8, alias,
//            arena offset), the output value and the steps (kind, operands, attributes, fused
//            ops, scratch, and for weights an offset and a count into the weight section)
//   weights: float32, int32 and int8 arrays (int8 steps' weights packed as gemm_u8s8 reads them
//            on every tier), each starting on a 64-byte boundary of the file
//   u32 CRC-32 (zlib's) of every byte before it.
// The reader checks the magic, version, sizes, the CRC, then every field as it parses: counts
// against the bytes left, ids against the values, shapes and types against the steps' attributes
// (a convolution's output shape is recomputed from its input, weights and geometry), an int8
// step's arrays against what keeps its integers in range (check_int8_arrays), every buffer and
// scratch area against the arena size, that no step's output, operands and scratch overlap, and
// that each step reads only values written before it. Only then is the plan returned: nothing
// runs on a partly checked file. Which kernels run (flat convolutions, the 2x2 pooling kernel) and
// how many images a convolution lowers per GEMM are decided again where the plan is loaded.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <limits>

#include "../core/internal.hpp"
#include "ember/core/error.hpp"
#include "ember/deploy/plan.hpp"
#include "plan_format.hpp"

namespace ember::deploy {

static_assert(std::endian::native == std::endian::little, "the plan file is little-endian, as this code");

namespace {

using ember::detail::cat_str;
using namespace file;

// ---- Reading ---------------------------------------------------------------------------------

class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}
  template <class T>
  T get(const char* what) {
    if (bytes_.size() - at_ < sizeof(T)) fail(cat_str("truncated in ", what));
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  int64_t get_count(const char* what, int64_t max) {
    const auto v = get<int64_t>(what);
    if (v < 0 || v > max) fail(cat_str(what, " ", v, " is out of range [0, ", max, "]"));
    return v;
  }
  int get_id(const char* what, size_t values, bool optional) {
    const auto v = get<int32_t>(what);
    if ((optional && v == -1) || (v >= 0 && static_cast<size_t>(v) < values)) return v;
    fail(cat_str(what, " ", v, " names no value (", values, " values)"));
  }
  Shape get_shape(const char* what) {
    const auto rank = get<uint32_t>(what);
    if (rank > kMaxRank) fail(cat_str(what, ": rank ", rank, " is over ", kMaxRank));
    Shape s;
    int64_t numel = 1;
    for (uint32_t i = 0; i < rank; ++i) {
      const int64_t d = get<int64_t>(what);
      if (d <= 0 || d > (int64_t(1) << 40) / numel) fail(cat_str(what, ": dim ", d, " is out of range"));
      numel *= d;
      s.push_back(d);
    }
    return s;
  }
  size_t position() const { return at_; }
  [[noreturn]] void fail(const std::string& why) const {
    throw FormatError(cat_str(name_, ": not a valid ember plan file: ", why));
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
  const std::string& name_;
};

int64_t numel_of(const PlanData& p, int v) { return p.values[static_cast<size_t>(v)].shape.numel(); }

// Whether `workers` (at least one) split `bytes` of scratch into equal areas that each start on the
// arena's alignment, as the builder sizes them: the runner casts each area to floats (and int64 taps).
bool shared_evenly(int64_t bytes, int64_t workers) {
  return workers >= 1 && bytes >= 0 && bytes % workers == 0 &&
         bytes / workers % static_cast<int64_t>(Plan::kArenaAlignment) == 0;
}

ElemType type_of(const PlanData& p, int v) { return p.values[static_cast<size_t>(v)].type; }

// An array of `want` T's in the weight section (offset and count read from the graph); empty
// when optional and absent.
template <class T>
std::span<const T> get_array(Reader& r, std::span<const uint8_t> weights, const char* what, int64_t want,
                             bool optional, size_t index) {
  const auto offset = r.get<uint64_t>(what);
  const auto count = r.get<uint64_t>(what);
  if (optional && count == 0) return {};
  if (want < 0 || count != static_cast<uint64_t>(want)) {
    r.fail(cat_str("step ", index, ": ", what, " holds ", count, " values, the step needs ", want));
  }
  if (offset % 64 != 0 || offset > weights.size() || (weights.size() - offset) / sizeof(T) < count) {
    r.fail(cat_str("step ", index, ": ", what, " lies outside the weight section"));
  }
  return {reinterpret_cast<const T*>(weights.data() + offset), static_cast<size_t>(count)};
}

// The checks of an int8 step's arrays that keep its integer sums in range and its float steps
// finite (Note [Int8 steps]): positive finite scales, zero points of 7-bit activations, bias
// within +-2^30, and weight sums that are those of the packed weights, whose padding is zero.
void check_int8_arrays(const Reader& r, const Step& s, size_t index) {
  auto fail = [&](const std::string& why) { r.fail(cat_str("step ", index, " (", s.name, "): ", why)); };
  auto scale_ok = [](float v) { return std::isfinite(v) && v > 0.0f; };
  auto zero_ok = [](int32_t z) { return z >= quant::detail::kActivationMin && z <= quant::detail::kActivationMax; };
  if (!scale_ok(s.q8.in_scale) || !scale_ok(s.q8.out_scale) || !zero_ok(s.q8.in_zero) || !zero_ok(s.q8.out_zero)) {
    fail("an activation scale or zero point is out of range");
  }
  for (float v : s.sv) {
    if (!scale_ok(v)) fail(cat_str("a scale or multiplier is ", v));
  }
  const int64_t out = s.out_features, k = s.in_features, kp = backend::int8_padded_k(k);
  for (int64_t j = out; j < static_cast<int64_t>(s.iv.size()); ++j) {
    if (s.iv[static_cast<size_t>(j)] < -(int32_t(1) << 30) || s.iv[static_cast<size_t>(j)] > (int32_t(1) << 30)) {
      fail("a quantized bias is out of range");
    }
  }
  const int64_t panels = (out + backend::kInt8Panel - 1) / backend::kInt8Panel;
  for (int64_t j = 0; j < panels * backend::kInt8Panel; ++j) {
    const int8_t* column = s.qw.data() + (j / backend::kInt8Panel) * backend::kInt8Panel * kp + (j % backend::kInt8Panel) * 4;
    int64_t sum = 0;
    for (int64_t t = 0; t < kp; ++t) {
      const int8_t v = column[(t / 4) * (4 * backend::kInt8Panel) + t % 4];
      if ((t >= k || j >= out) && v != 0) fail("the packed weights' padding is not zero");
      sum += v;
    }
    if (j < out && sum != s.iv[static_cast<size_t>(j)]) fail("its weight sums do not match its weights");
  }
}

// The product of non-negative factors read from a file, or -1 when it overflows (no value's
// size is negative, so a comparison with one then fails).
int64_t product(std::initializer_list<int64_t> factors) {
  int64_t r = 1;
  for (int64_t f : factors) {
    if (f < 0 || __builtin_mul_overflow(r, f, &r)) return -1;
  }
  return r;
}

// Reads one step and checks it against the values; weights are spans into `weights`.
Step get_step(Reader& r, const PlanData& p, std::span<const uint8_t> weights, size_t index) {
  Step s;
  const auto kind = r.get<uint8_t>("step kind");
  if (kind >= static_cast<uint8_t>(StepKind::Count)) r.fail(cat_str("step ", index, ": unknown kind ", int(kind)));
  s.kind = static_cast<StepKind>(kind);
  s.in0 = r.get_id("step input", p.values.size(), false);
  s.in1 = r.get_id("step input", p.values.size(), true);
  s.out = r.get_id("step output", p.values.size(), false);
  s.folded_batch_norm = r.get<uint8_t>("step flags") != 0;
  s.scratch_bytes = r.get_count("scratch bytes", int64_t(1) << 40);
  s.scratch_offset = r.get_count("scratch offset", int64_t(1) << 40);
  const int64_t posts = r.get_count("fused op count", 64);
  auto unary_op = [&](const char* what) {
    const auto op = r.get<uint8_t>(what);
    if (op >= static_cast<uint8_t>(backend::Unary::Count)) r.fail(cat_str("step ", index, ": unknown ", what, " ", int(op)));
    return static_cast<backend::Unary>(op);
  };
  for (int64_t i = 0; i < posts; ++i) {
    PostOp op{unary_op("fused op"), {}};
    op.params.a = r.get<double>("fused op");
    op.params.b = r.get<double>("fused op");
    s.post.push_back(op);
  }
  auto array = [&](const char* what, int64_t want, bool optional) {
    return get_array<float>(r, weights, what, want, optional, index);
  };
  auto need = [&](bool ok, const std::string& why) {
    if (!ok) r.fail(cat_str("step ", index, " (", s.name, "): ", why));
  };
  auto pool_geometry = [&] {
    int64_t* fields[] = {&s.pool.h,        &s.pool.w,        &s.pool.ho,    &s.pool.wo,
                         &s.pool.kh,       &s.pool.kw,       &s.pool.stride_h, &s.pool.stride_w,
                         &s.pool.pad_h,    &s.pool.pad_w,    &s.pool.dil_h, &s.pool.dil_w};
    for (int64_t* f : fields) *f = r.get_count("pooling geometry", int64_t(1) << 30);
    s.planes = r.get_count("planes", int64_t(1) << 40);
    const auto& q = s.pool;
    need(q.h > 0 && q.w > 0 && q.ho > 0 && q.wo > 0 && q.kh > 0 && q.kw > 0 && q.stride_h > 0 && q.stride_w > 0 &&
             q.dil_h > 0 && q.dil_w > 0 && 2 * q.pad_h <= q.kh && 2 * q.pad_w <= q.kw,
         "invalid pooling geometry");
    // A window fits the padded plane, and every window starts inside the plane (the kernels
    // clip windows, never skip them).
    need((q.kh - 1) * q.dil_h + 1 <= q.h + 2 * q.pad_h && (q.kw - 1) * q.dil_w + 1 <= q.w + 2 * q.pad_w,
         "a window larger than the padded plane");
    need((q.ho - 1) * q.stride_h - q.pad_h < q.h && (q.wo - 1) * q.stride_w - q.pad_w < q.w,
         "windows beyond the plane");
  };
  auto types = [&](ElemType in, ElemType out) {
    need(type_of(p, s.in0) == in && (s.in1 < 0 || type_of(p, s.in1) == in) && type_of(p, s.out) == out,
         "its values are not of the types it reads and writes");
  };
  auto int8_common = [&] {
    const auto flags = r.get<uint8_t>("int8 flags");
    need(flags < 8, "unknown int8 flags");
    s.q8.relu = (flags & 1) != 0;
    s.q8.dynamic = (flags & 2) != 0;
    s.q8.out_quantized = (flags & 4) != 0;
    s.q8.in_scale = r.get<float>("int8 parameters");
    s.q8.in_zero = r.get<int32_t>("int8 parameters");
    s.q8.out_scale = r.get<float>("int8 parameters");
    s.q8.out_zero = r.get<int32_t>("int8 parameters");
    s.rows = r.get_count("rows", int64_t(1) << 40);
    s.in_features = r.get_count("in_features", kMaxInt8K);
    s.out_features = r.get_count("out_features", int64_t(1) << 30);
    need(s.in_features > 0 && s.out_features > 0, "no features");
    need(!(s.q8.dynamic && s.q8.out_quantized), "a dynamic layer cannot output uint8");
    need(type_of(p, s.in0) == ElemType::F32 || !s.q8.dynamic, "a dynamic layer reads floats");
    need(type_of(p, s.out) == (s.q8.out_quantized ? ElemType::U8 : ElemType::F32),
         "its output value is not of the type it writes");
  };
  auto int8_arrays = [&] {
    s.qw = get_array<int8_t>(r, weights, "int8 weights", backend::int8_packed_size(s.out_features, s.in_features),
                             false, index);
    s.iv = get_array<int32_t>(r, weights, "int8 sums", int8_ints(s), false, index);
    s.sv = get_array<float>(r, weights, "int8 scales", int8_floats(s), false, index);
    s.b = array("bias", s.out_features, true);
    check_int8_arrays(r, s, index);
    need(s.scratch_bytes >= int8_scratch(s, p.values[static_cast<size_t>(s.in0)]).total,
         "its scratch is smaller than its buffers");
  };
  // Which operand is the step's constant (1: a, only where `a_may_be` says so; 2: b; 0: none), its
  // shape and values; in1 is read exactly when there is none.
  auto constant_operand = [&](bool a_may_be) {
    s.constant_operand = r.get<uint8_t>("constant operand");
    need(s.constant_operand <= 2 && (a_may_be || s.constant_operand != 1), "unknown constant operand");
    need((s.in1 >= 0) == (s.constant_operand == 0), "it reads two values or one and its constant");
    if (s.constant_operand != 0) {
      s.weight_shape = r.get_shape("constant shape");
      s.w = array("constant", s.weight_shape.numel(), false);
    }
  };
  // A convolution's weight shape, geometry and workers.
  auto conv_fields = [&] {
    s.weight_shape = r.get_shape("weight shape");
    for (int64_t& v : s.geometry.stride) v = r.get<int64_t>("geometry");
    for (int64_t& v : s.geometry.padding) v = r.get<int64_t>("geometry");
    for (int64_t& v : s.geometry.dilation) v = r.get<int64_t>("geometry");
    s.geometry.groups = r.get<int64_t>("geometry");
    s.workers = r.get_count("workers", 1024);
  };
  if (!s.post.empty() && type_of(p, s.out) != ElemType::F32) r.fail(cat_str("step ", index, ": fused ops on uint8 values"));
  switch (s.kind) {
    case StepKind::ConvTranspose2d: {
      s.name = "conv_transpose2d";
      conv_fields();
      // The convolution whose input gradient this is: its input is the step's output.
      try {
        const auto d = ember::detail::conv_dims("conv_transpose2d", p.values[static_cast<size_t>(s.out)].shape,
                                                s.weight_shape, s.geometry);
        s.conv = ember::detail::conv_transpose_setup(backend::kernels<float>(), d, s.geometry);
      } catch (const Error& e) {
        r.fail(cat_str("step ", index, ": ", e.message()));
      }
      const auto& d = s.conv.d;
      need(p.values[static_cast<size_t>(s.out)].shape.size() == 4 && numel_of(p, s.in0) == d.n * d.o * d.hw_out(),
           "its input value does not hold the gradient of the convolution's output");
      const int64_t shared = s.scratch_bytes - conv_transpose_flipped_bytes(s.conv);  // the workers' part
      need(s.workers <= d.n && shared_evenly(shared, s.workers),
           "its workers are not between 1 and its images, or do not share its scratch in equal aligned areas");
      need(product({d.k(), d.hw_out(), int64_t(sizeof(float))}) >= 0 &&
               shared / s.workers >= conv_columns_bytes(s.conv, 1),
           "its scratch is smaller than its column matrix");
      types(ElemType::F32, ElemType::F32);
      s.channels = d.c;
      s.inner = d.h * d.w;
      s.w = array("weights", s.weight_shape.numel(), false);
      s.b = array("bias", d.c, true);
      break;
    }
    case StepKind::Conv2d:
    case StepKind::AvgPool2d: {
      const bool avg = s.kind == StepKind::AvgPool2d;
      s.name = avg ? "avg_pool2d" : "conv2d";
      conv_fields();
      const Shape& x = p.values[static_cast<size_t>(s.in0)].shape;
      try {
        s.conv = ember::detail::conv_forward_setup(backend::kernels<float>(),
                                                   ember::detail::conv_dims("conv2d", x, s.weight_shape, s.geometry),
                                                   s.geometry);
      } catch (const Error& e) {
        r.fail(cat_str("step ", index, ": ", e.message()));
      }
      const auto& d = s.conv.d;
      need(numel_of(p, s.out) == d.n * d.o * d.hw_out(), "its output value does not hold the convolution's output");
      need(s.workers <= d.n && shared_evenly(s.scratch_bytes, s.workers),
           "its workers are not between 1 and its images, or do not share its scratch in equal aligned areas");
      need(s.conv.pointwise || (product({d.k(), d.hw_out(), int64_t(sizeof(float))}) >= 0 &&
                                s.scratch_bytes / s.workers >= conv_columns_bytes(s.conv, 1)),
           "its scratch is smaller than its column matrix");
      types(ElemType::F32, ElemType::F32);
      s.channels = d.o;
      s.inner = d.hw_out();
      s.w = array("weights", s.weight_shape.numel(), false);
      if (!avg) {
        s.b = array("bias", d.o, true);
        break;
      }
      // Window sums of ones over positive window sizes: what avg_pool2d computes.
      need(s.geometry.groups == d.o && d.cg == 1 && d.og == 1, "its convolution is not depthwise");
      need(std::all_of(s.w.begin(), s.w.end(), [](float v) { return v == 1.0f; }), "its weights are not ones");
      s.dv = array("divisors", d.hw_out(), false);
      need(std::all_of(s.dv.begin(), s.dv.end(), [](float v) { return std::isfinite(v) && v >= 1.0f; }),
           "its divisors are not window sizes");
      break;
    }
    case StepKind::Linear:
      s.name = "linear";
      s.rows = r.get_count("rows", int64_t(1) << 40);
      s.in_features = r.get_count("in_features", int64_t(1) << 30);
      s.out_features = r.get_count("out_features", int64_t(1) << 30);
      need(s.in_features > 0 && s.out_features > 0, "no features");
      need(numel_of(p, s.in0) == product({s.rows, s.in_features}) &&
               numel_of(p, s.out) == product({s.rows, s.out_features}),
           "its values do not hold rows x features");
      types(ElemType::F32, ElemType::F32);
      s.channels = s.out_features;
      s.w = array("weights", product({s.in_features, s.out_features}), false);
      s.b = array("bias", s.out_features, true);
      break;
    case StepKind::ChannelAffine:
      s.name = "batch_norm";
      s.planes = r.get_count("planes", int64_t(1) << 40);
      s.channels = r.get_count("channels", int64_t(1) << 30);
      s.inner = r.get_count("inner", int64_t(1) << 40);
      need(s.channels > 0 && s.planes % s.channels == 0, "planes are not whole samples");
      need(numel_of(p, s.in0) == product({s.planes, s.inner}) && numel_of(p, s.out) == product({s.planes, s.inner}),
           "its values do not hold planes x inner");
      types(ElemType::F32, ElemType::F32);
      s.w = array("scale", s.channels, false);
      s.b = array("shift", s.channels, false);
      break;
    case StepKind::Unary:
      s.name = "elementwise op";
      s.unary_op = unary_op("elementwise op");
      s.unary_params.a = r.get<double>("elementwise op");
      s.unary_params.b = r.get<double>("elementwise op");
      s.numel = r.get_count("numel", int64_t(1) << 40);
      need(numel_of(p, s.in0) == s.numel && numel_of(p, s.out) == s.numel, "its values do not hold numel");
      types(ElemType::F32, ElemType::F32);
      break;
    case StepKind::Binary: {
      s.name = "binary op";
      const auto op = r.get<uint8_t>("binary op");
      if (op >= static_cast<uint8_t>(backend::Binary::Count)) r.fail(cat_str("step ", index, ": unknown binary op ", int(op)));
      s.binary_op = static_cast<backend::Binary>(op);
      s.numel = r.get_count("numel", int64_t(1) << 40);
      need(s.in1 >= 0 && numel_of(p, s.in0) == s.numel && numel_of(p, s.in1) == s.numel &&
               numel_of(p, s.out) == s.numel,
           "its values do not hold numel");
      types(ElemType::F32, ElemType::F32);
      break;
    }
    case StepKind::Permute: {
      s.name = "permute";
      const int64_t rank = r.get_count("permute rank", kMaxRank);
      std::vector<char> seen(static_cast<size_t>(rank), 0);
      for (int64_t i = 0; i < rank; ++i) {
        const int64_t d = r.get_count("permute dim", rank - 1);
        need(seen[static_cast<size_t>(d)] == 0, "its dims are not a permutation");
        seen[static_cast<size_t>(d)] = 1;
        s.perm.push_back(d);
      }
      const Shape& in = p.values[static_cast<size_t>(s.in0)].shape;
      const Shape& out = p.values[static_cast<size_t>(s.out)].shape;
      need(in.size() == rank && out.size() == rank, "its values are not of its rank");
      for (int64_t i = 0; i < rank; ++i) need(out[i] == in[s.perm[i]], "its output is not its input permuted");
      s.numel = in.numel();
      types(ElemType::F32, ElemType::F32);
      break;
    }
    case StepKind::MatMul: {
      s.name = "matmul";
      s.rows = r.get_count("rows", int64_t(1) << 40);
      s.in_features = r.get_count("inner dim", int64_t(1) << 30);
      s.out_features = r.get_count("columns", int64_t(1) << 30);
      s.planes = r.get_count("products", int64_t(1) << 40);
      s.b_batches = r.get_count("second operand's matrices", int64_t(1) << 40);
      constant_operand(false);
      need(s.b_batches == 1 || s.b_batches == s.planes, "its second operand's matrices are neither one nor one each");
      const int64_t b_numel = product({s.b_batches, s.in_features, s.out_features});
      if (s.constant_operand != 0) {
        need(s.weight_shape.numel() == b_numel, "its constant does not hold the second operand");
      } else {
        need(numel_of(p, s.in1) == b_numel, "its second value does not hold the second operand");
      }
      need(numel_of(p, s.in0) == product({s.planes, s.rows, s.in_features}) &&
               numel_of(p, s.out) == product({s.planes, s.rows, s.out_features}),
           "its values do not hold the products");
      types(ElemType::F32, ElemType::F32);
      break;
    }
    case StepKind::Resample: {
      s.name = "interpolate";
      s.planes = r.get_count("planes", int64_t(1) << 40);
      s.in_features = r.get_count("resampled size", kMaxResample);
      s.out_features = r.get_count("resampled size", kMaxResample);
      s.inner = r.get_count("inner size", int64_t(1) << 40);
      need(s.in_features > 0 && s.out_features > 0, "an empty axis");
      need(numel_of(p, s.in0) == product({s.planes, s.in_features, s.inner}) &&
               numel_of(p, s.out) == product({s.planes, s.out_features, s.inner}),
           "its values do not hold the resampled planes");
      types(ElemType::F32, ElemType::F32);
      // i0, then for the linear modes i1: indices into the axis; the weights finite.
      const auto mode = r.get<uint8_t>("resampling mode");
      need(mode <= 1, "unknown resampling mode");
      const bool linear = mode == 1;
      s.workers = r.get_count("workers", 1024);
      need(s.workers <= std::max<int64_t>(s.planes, 1) && shared_evenly(s.scratch_bytes, s.workers),
           "its workers are not between 1 and its planes, or do not share its scratch in equal aligned areas");
      s.iv = get_array<int32_t>(r, weights, "indices", (linear ? 2 : 1) * s.out_features, false, index);
      need(std::all_of(s.iv.begin(), s.iv.end(), [&](int32_t i) { return i >= 0 && i < s.in_features; }),
           "an index outside the axis");
      s.w = array("near weights", linear ? s.out_features : 0, !linear);
      s.b = array("far weights", linear ? s.out_features : 0, !linear);
      need(std::all_of(s.w.begin(), s.w.end(), [](float v) { return std::isfinite(v); }) &&
               std::all_of(s.b.begin(), s.b.end(), [](float v) { return std::isfinite(v); }),
           "a weight that is not finite");
      need(s.scratch_bytes / s.workers >= (linear ? std::max(s.out_features, s.inner) * int64_t(sizeof(float)) : 0),
           "its scratch is smaller than a row per worker");
      break;
    }
    case StepKind::Concat: {
      s.name = "cat";
      const auto axis = r.get<int64_t>("cat axis");
      need(s.in1 >= 0, "it reads one value");
      types(ElemType::F32, ElemType::F32);
      need(concat_layout(p.values[static_cast<size_t>(s.in0)].shape, p.values[static_cast<size_t>(s.in1)].shape,
                         p.values[static_cast<size_t>(s.out)].shape, axis, s),
           "its values are not a cat along its axis");
      break;
    }
    case StepKind::BroadcastBinary: {
      s.name = "binary op";
      const auto op = r.get<uint8_t>("binary op");
      need(op < static_cast<uint8_t>(backend::Binary::Count), cat_str("unknown binary op ", int(op)));
      s.binary_op = static_cast<backend::Binary>(op);
      s.numel = r.get_count("numel", int64_t(1) << 40);
      constant_operand(true);
      types(ElemType::F32, ElemType::F32);
      // The operands broadcast to the output, dim by dim from the right.
      const BroadcastOperands ops = broadcast_operands(s);
      const Shape& out = p.values[static_cast<size_t>(s.out)].shape;
      need(numel_of(p, s.out) == s.numel, "its output value does not hold numel");
      for (int v : {ops.a, ops.b}) {
        const Shape& in = v < 0 ? s.weight_shape : p.values[static_cast<size_t>(v)].shape;
        need(in.size() <= out.size(), "an operand has more dims than the output");
        for (int64_t i = 1; i <= in.size(); ++i) {
          const int64_t d = in[in.size() - i], o = out[out.size() - i];
          need(d == o || d == 1, "its operands do not broadcast to its output");
        }
      }
      for (int64_t i = 1; i <= out.size(); ++i) {  // and every output dim comes from one of them
        bool made = false;
        for (int v : {ops.a, ops.b}) {
          const Shape& in = v < 0 ? s.weight_shape : p.values[static_cast<size_t>(v)].shape;
          made = made || (i <= in.size() && in[in.size() - i] == out[out.size() - i]);
        }
        need(made || out[out.size() - i] == 1, "its output is larger than its operands broadcast");
      }
      break;
    }
    case StepKind::MaxPool: {
      s.name = "max_pool2d";
      pool_geometry();
      const auto& q = s.pool;
      types(ElemType::F32, ElemType::F32);
      need(numel_of(p, s.in0) == product({s.planes, q.h, q.w}) && numel_of(p, s.out) == product({s.planes, q.ho, q.wo}),
           "its values do not hold the planes");
      need(s.scratch_bytes >= product({s.planes, q.ho, q.wo, int64_t(sizeof(int64_t))}),
           "its scratch is smaller than its indices");
      s.two_by_two = q.kh == 2 && q.kw == 2 && q.stride_h == 2 && q.stride_w == 2 && q.pad_h == 0 && q.pad_w == 0 &&
                     q.dil_h == 1 && q.dil_w == 1 && q.ho == q.h / 2 && q.wo == q.w / 2;
      break;
    }
    case StepKind::MeanHW:
      s.name = "adaptive_avg_pool2d";
      s.planes = r.get_count("planes", int64_t(1) << 40);
      s.inner = r.get_count("inner", int64_t(1) << 40);
      need(s.inner > 0 && numel_of(p, s.in0) == product({s.planes, s.inner}) && numel_of(p, s.out) == s.planes,
           "its values do not hold the planes");
      types(ElemType::F32, ElemType::F32);
      break;
    case StepKind::Softmax: {
      s.planes = r.get_count("planes", int64_t(1) << 40);
      s.inner = r.get_count("inner", int64_t(1) << 40);
      const auto log = r.get<uint8_t>("softmax flags");
      need(log <= 1, "unknown softmax flags");
      s.log_softmax = log == 1;
      s.name = s.log_softmax ? "log_softmax" : "softmax";
      need(s.inner > 0 && numel_of(p, s.in0) == product({s.planes, s.inner}) &&
               numel_of(p, s.out) == product({s.planes, s.inner}),
           "its values do not hold planes x inner");
      types(ElemType::F32, ElemType::F32);
      break;
    }
    case StepKind::LayerNorm:
      s.name = "layer_norm";
      s.planes = r.get_count("planes", int64_t(1) << 40);
      s.inner = r.get_count("inner", int64_t(1) << 40);
      s.eps = r.get<double>("layer norm eps");
      need(std::isfinite(s.eps) && s.eps >= 0, "its eps is not a finite non-negative number");
      need(s.inner > 0 && numel_of(p, s.in0) == product({s.planes, s.inner}) &&
               numel_of(p, s.out) == product({s.planes, s.inner}),
           "its values do not hold planes x inner");
      types(ElemType::F32, ElemType::F32);
      s.w = array("weight", s.inner, true);
      s.b = array("bias", s.inner, true);
      break;
    case StepKind::Int8Linear:
      s.name = "int8 linear";
      int8_common();
      need(numel_of(p, s.in0) == product({s.rows, s.in_features}) &&
               numel_of(p, s.out) == product({s.rows, s.out_features}),
           "its values do not hold rows x features");
      int8_arrays();
      break;
    case StepKind::Int8Conv2d: {
      s.name = "int8 conv2d";
      int8_common();
      s.workers = r.get_count("workers", 1024);
      s.weight_shape = r.get_shape("weight shape");
      for (int64_t& v : s.geometry.stride) v = r.get<int64_t>("geometry");
      for (int64_t& v : s.geometry.padding) v = r.get<int64_t>("geometry");
      for (int64_t& v : s.geometry.dilation) v = r.get<int64_t>("geometry");
      const Value& in = p.values[static_cast<size_t>(s.in0)];
      need(s.weight_shape.size() == 4 && in.shape.size() == 4, "its input or weights are not 4-D");
      need(s.weight_shape[0] == s.out_features && product({s.weight_shape[1], s.weight_shape[2], s.weight_shape[3]}) ==
                                                      s.in_features,
           "its weight shape does not match its features");
      const bool nhwc = in.type == ElemType::U8;
      const Shape nchw = nhwc ? Shape{in.shape[0], in.shape[3], in.shape[1], in.shape[2]} : in.shape;
      try {
        (void)ember::detail::conv_dims("int8 conv2d", nchw, s.weight_shape, s.geometry);
      } catch (const Error& e) {
        r.fail(cat_str("step ", index, ": ", e.message()));
      }
      const quant::detail::Int8ConvShape c = int8_conv_shape(s, in);
      const Shape want = s.q8.out_quantized ? Shape{nchw[0], c.ho, c.wo, s.out_features}
                                            : Shape{nchw[0], s.out_features, c.ho, c.wo};
      need(p.values[static_cast<size_t>(s.out)].shape == want, "its output value does not hold the convolution's output");
      need(s.rows == 0, "rows are a linear step's");
      need(s.workers >= 1 && s.workers <= nchw[0], "its workers are not between 1 and its images");
      int8_arrays();
      s.qdirect = quant::detail::int8_direct_conv_weights(int8_layer(s), c);
      break;
    }
    case StepKind::MaxPoolU8: {
      s.name = "max_pool2d";
      pool_geometry();
      s.channels = r.get_count("channels", int64_t(1) << 30);
      const auto& q = s.pool;
      types(ElemType::U8, ElemType::U8);
      need(p.values[static_cast<size_t>(s.in0)].shape == Shape{s.planes, q.h, q.w, s.channels} &&
               p.values[static_cast<size_t>(s.out)].shape == Shape{s.planes, q.ho, q.wo, s.channels},
           "its values do not hold the images");
      break;
    }
    case StepKind::Dequantize: {
      s.name = "dequantize";
      s.q8.in_scale = r.get<float>("dequantize");
      s.q8.in_zero = r.get<int32_t>("dequantize");
      types(ElemType::U8, ElemType::F32);
      need(std::isfinite(s.q8.in_scale) && s.q8.in_scale > 0.0f && s.q8.in_zero >= 0 && s.q8.in_zero <= 255,
           "its scale or zero point is out of range");
      const Shape& in = p.values[static_cast<size_t>(s.in0)].shape;
      const Shape& out = p.values[static_cast<size_t>(s.out)].shape;
      if (in.size() == 4) {
        need(out == Shape{in[0], in[3], in[1], in[2]}, "its output is not its channels-last input channels first");
        need(s.scratch_bytes >= in.numel(), "its scratch is smaller than its input");
      } else {
        need(out.numel() == in.numel(), "its values differ in size");
      }
      break;
    }
    case StepKind::Count: break;
  }
  return s;
}

// Checks that ties the steps, the values and the arena together.
void check_graph(const Reader& r, const PlanData& p) {
  std::vector<char> written(p.values.size(), 0);
  written[0] = 1;
  auto is_written = [&](int v) { return written[static_cast<size_t>(p.root(v))] != 0; };
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    if (!is_written(s.in0) || (s.in1 >= 0 && !is_written(s.in1))) {
      r.fail(cat_str("step ", i, " reads a value no earlier step writes"));
    }
    if (s.out == 0 || p.values[static_cast<size_t>(s.out)].alias_of >= 0) {
      r.fail(cat_str("step ", i, " writes the input or a view"));
    }
    if (s.scratch_bytes > 0 &&
        (s.scratch_offset % 64 != 0 || static_cast<uint64_t>(s.scratch_offset) + static_cast<uint64_t>(s.scratch_bytes) >
                                           p.arena_bytes)) {
      r.fail(cat_str("step ", i, ": its scratch lies outside the arena"));
    }
    written[static_cast<size_t>(s.out)] = 1;
  }
  if (!written[static_cast<size_t>(p.output)] || p.output == 0) r.fail("no step writes the output");
  if (p.values[static_cast<size_t>(p.output)].shape.numel() != p.output_shape.numel() ||
      p.values[static_cast<size_t>(p.output)].type != ElemType::F32) {
    r.fail("the output value does not hold the output shape in floats");
  }
  for (size_t v = 1; v < p.values.size(); ++v) {
    const Value& val = p.values[v];
    if (val.alias_of >= 0) {
      if (static_cast<size_t>(val.alias_of) >= v) r.fail(cat_str("value ", v, " is a view of a later value"));
      if (val.shape.numel() != p.values[static_cast<size_t>(val.alias_of)].shape.numel() ||
          val.type != p.values[static_cast<size_t>(val.alias_of)].type) {
        r.fail(cat_str("value ", v, " views a value of another size or type"));
      }
      continue;
    }
    if (static_cast<int>(v) == p.output || !written[v]) continue;
    const uint64_t bytes = static_cast<uint64_t>(round_up_arena(value_bytes(val)));
    if (val.offset < 0 || val.offset % 64 != 0 || static_cast<uint64_t>(val.offset) + bytes > p.arena_bytes) {
      r.fail(cat_str("value ", v, " lies outside the arena"));
    }
  }
  // Each step's output, operands and scratch lie apart in the arena: the kernels take them as
  // distinct buffers (memcpy, restrict-qualified loops), and a compiled plan never overlaps them.
  struct Range {
    uint64_t lo = 0, hi = 0;  // empty when lo == hi (the caller's input or output)
  };
  auto value_range = [&](int v) {
    const int root = p.root(v);
    const Value& val = p.values[static_cast<size_t>(root)];
    if (root == 0 || root == p.output) return Range{};
    return Range{static_cast<uint64_t>(val.offset), static_cast<uint64_t>(val.offset + value_bytes(val))};
  };
  auto overlap = [](Range a, Range b) { return a.lo < a.hi && b.lo < b.hi && a.lo < b.hi && b.lo < a.hi; };
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    const Range out = value_range(s.out), in0 = value_range(s.in0), in1 = s.in1 >= 0 ? value_range(s.in1) : Range{};
    const Range scratch{static_cast<uint64_t>(s.scratch_offset), static_cast<uint64_t>(s.scratch_offset + s.scratch_bytes)};
    if (overlap(out, in0) || overlap(out, in1) || overlap(scratch, out) || overlap(scratch, in0) || overlap(scratch, in1)) {
      r.fail(cat_str("step ", i, ": its output, operands and scratch overlap in the arena"));
    }
  }
}

std::shared_ptr<PlanData> parse_plan(std::span<const uint8_t> bytes, const std::string& name) {
  Reader r(bytes, name);
  if (bytes.size() < kHeaderBytes + 4) r.fail(cat_str("it has ", bytes.size(), " bytes, less than a header"));
  char magic[8];
  std::memcpy(magic, bytes.data(), 8);
  if (std::memcmp(magic, kMagic, 8) != 0) r.fail("it does not start with EMBRPLAN");
  for (int i = 0; i < 8; ++i) (void)r.get<uint8_t>("magic");
  const auto version = r.get<uint32_t>("version");
  if (version != kVersion) r.fail(cat_str("version ", version, ", this build reads version ", kVersion));
  (void)r.get<uint32_t>("header");
  const auto file_size = r.get<uint64_t>("header");
  if (file_size != bytes.size()) r.fail(cat_str("it has ", bytes.size(), " bytes, its header says ", file_size));
  uint32_t stored_crc;
  std::memcpy(&stored_crc, bytes.data() + bytes.size() - 4, 4);
  if (crc_of(bytes.first(bytes.size() - 4)) != stored_crc) r.fail("its CRC-32 does not match: the file is corrupted");
  auto p = std::make_shared<PlanData>();
  p->arena_bytes = r.get<uint64_t>("header");
  const auto graph_offset = r.get<uint64_t>("header"), graph_bytes = r.get<uint64_t>("header");
  const auto weights_offset = r.get<uint64_t>("header"), weights_bytes = r.get<uint64_t>("header");
  const uint64_t body = bytes.size() - 4;
  if (graph_offset != kHeaderBytes || graph_bytes > body - graph_offset || weights_offset % 64 != 0 ||
      weights_offset < graph_offset + graph_bytes || weights_offset > body || weights_bytes > body - weights_offset) {
    r.fail("its sections do not fit the file");
  }
  if (p->arena_bytes > (uint64_t(1) << 40)) r.fail("its arena size is out of range");
  Reader g(bytes.subspan(graph_offset, graph_bytes), name);
  const std::span<const uint8_t> weights = bytes.subspan(weights_offset, weights_bytes);
  p->input_shape = g.get_shape("input shape");
  p->output_shape = g.get_shape("output shape");
  const int64_t nvalues = g.get_count("value count", int64_t(1) << 20);
  if (nvalues < 1) g.fail("no values");
  for (int64_t v = 0; v < nvalues; ++v) {
    Value val;
    val.shape = g.get_shape("value shape");
    const auto type = g.get<uint8_t>("value type");
    if (type >= static_cast<uint8_t>(ElemType::Count)) g.fail(cat_str("value ", v, ": unknown type ", int(type)));
    val.type = static_cast<ElemType>(type);
    val.alias_of = g.get<int32_t>("value alias");
    if (val.alias_of < -1 || val.alias_of >= v) g.fail(cat_str("value ", v, ": alias ", val.alias_of, " out of range"));
    val.offset = g.get<int64_t>("value offset");
    p->values.push_back(std::move(val));
  }
  if (p->values[0].shape != p->input_shape || p->values[0].alias_of != -1 || p->values[0].type != ElemType::F32) {
    g.fail("value 0 is not the input");
  }
  p->output = g.get_id("output", p->values.size(), false);
  if (p->values[static_cast<size_t>(p->output)].alias_of != -1) g.fail("the output value is a view");
  const int64_t nsteps = g.get_count("step count", int64_t(1) << 20);
  for (int64_t i = 0; i < nsteps; ++i) p->steps.push_back(get_step(g, *p, weights, static_cast<size_t>(i)));
  if (g.position() != graph_bytes) g.fail("bytes left over after the steps");
  check_graph(g, *p);
  for (Step& s : p->steps) prepare_winograd(s);
  return p;
}

// A read-only private mapping of a whole regular file.
std::shared_ptr<const void> map_file(const std::string& path, size_t& size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw IOError(cat_str("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
    ::close(fd);
    throw IOError(cat_str("cannot read ", path, ": not a regular, non-empty file"));
  }
  size = static_cast<size_t>(st.st_size);
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw IOError(cat_str("cannot map ", path, ": ", std::strerror(errno)));
  return std::shared_ptr<const void>(m, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
}

}  // namespace

Plan parse(std::span<const uint8_t> bytes, const std::string& name) {
  std::shared_ptr<PlanData> p = parse_plan(bytes, name);
  for (Step& s : p->steps) {  // copies: the bytes are the caller's
    s.weight.assign(s.w.begin(), s.w.end());
    s.bias.assign(s.b.begin(), s.b.end());
    s.qweight.assign(s.qw.begin(), s.qw.end());
    s.ints.assign(s.iv.begin(), s.iv.end());
    s.scales.assign(s.sv.begin(), s.sv.end());
    s.divisors.assign(s.dv.begin(), s.dv.end());
  }
  p->bind_owned_weights();
  return Plan(std::move(p));
}

Plan load(const std::string& path) {
  size_t size = 0;
  std::shared_ptr<const void> mapping = map_file(path, size);
  std::shared_ptr<PlanData> p = parse_plan({static_cast<const uint8_t*>(mapping.get()), size}, path);
  p->mapping = std::move(mapping);  // the steps' weights point into it
  return Plan(std::move(p));
}

}  // namespace ember::deploy
