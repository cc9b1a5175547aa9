// ONNX export (ember/deploy/onnx.hpp).
//
// Note [ONNX export]
// The model's forward is traced into a plan (Note [Inference plan]) and each step becomes ONNX
// nodes of opset 13 (ai.onnx), written as a ModelProto by the protocol-buffer encoder below (the
// wire format: varint keys and values, length-delimited strings and messages, little-endian
// fixed32 floats). One plan step maps to:
//   - Conv2d: Conv (pads begin then end: top, left, bottom, right), its weights and bias as
//     initializers "conv2d_<i>.weight" / "conv2d_<i>.bias" (the i-th convolution);
//   - Linear: Gemm with transB = 1 on a 2-D input, else MatMul by the transposed weight + Add;
//   - Binary and BroadcastBinary: Add, Sub, Mul, Div, Max, Min, Pow (ONNX broadcasts as PyTorch
//     does), a constant operand an initializer "<op>_<i>.constant";
//   - ChannelAffine (batch norm not folded; the plan keeps only x * scale + shift per channel):
//     BatchNormalization with scale and shift, mean 0, variance 1 and epsilon 0, which computes
//     exactly that;
//   - Unary and the fused elementwise ops: the ONNX op of the same name, or a few nodes where
//     opset 13 has none (gelu through Erf, softplus's beta as a scaling, mish, silu, expm1...);
//   - MaxPool: MaxPool, ceil_mode set when the plan's output size is the ceiling one;
//   - AvgPool2d: AveragePool when every window divides by the kernel's size, else the plan's own
//     form (a depthwise Conv of ones, then Div by the window sizes);
//   - MeanHW: ReduceMean over the last two axes, keeping them;
//   - Concat: Concat (a cat of more than two values is a chain of them, as in the plan);
//   - Permute: Transpose; MatMul: MatMul (a constant second operand an initializer);
//   - Softmax: Softmax or LogSoftmax over the last axis (opset 13's single-axis form);
//   - LayerNorm: its formula, (x - mean) / sqrt(var + eps) * weight + bias, with ReduceMean over
//     the last axis (LayerNormalization is opset 17's); rows over several trailing dims are merged
//     into one by a Reshape first;
//   - views (and 3-D images, which Conv and MaxPool take as a batch of one): Reshape to the
//     traced shape, whose first dim is 0 ("as the input's") under dynamic_batch.
// Shapes come from the trace, so every value's shape is fixed unless dynamic_batch makes the batch
// symbolic. Nothing is written until the whole graph is built, so a refused op leaves no file.
#include "ember/deploy/onnx.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>

#include "../core/internal.hpp"
#include "ember/core/error.hpp"
#include "ember/deploy/compile.hpp"
#include "ember/io/safetensors.hpp"
#include "plan_data.hpp"

namespace ember::deploy {
namespace {

using backend::Binary;
using backend::KernelParams;
using backend::Unary;
using ember::detail::cat_str;

// ---- Protocol-buffer encoding ----------------------------------------------------------------

class Proto {
 public:
  void varint(int field, uint64_t v) {
    key(field, 0);
    raw_varint(v);
  }
  void int64(int field, int64_t v) { varint(field, static_cast<uint64_t>(v)); }
  void float32(int field, float v) {
    key(field, 5);
    const auto bits = std::bit_cast<uint32_t>(v);
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(bits >> (8 * i)));
  }
  void string(int field, const std::string& s) {
    key(field, 2);
    raw_varint(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void message(int field, const Proto& m) {
    key(field, 2);
    raw_varint(m.bytes_.size());
    bytes_.insert(bytes_.end(), m.bytes_.begin(), m.bytes_.end());
  }
  void raw_bytes(int field, const std::vector<uint8_t>& b) {
    key(field, 2);
    raw_varint(b.size());
    bytes_.insert(bytes_.end(), b.begin(), b.end());
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  void key(int field, int wire_type) {
    raw_varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
  }
  void raw_varint(uint64_t v) {
    while (v >= 0x80) {
      bytes_.push_back(static_cast<uint8_t>(v | 0x80));
      v >>= 7;
    }
    bytes_.push_back(static_cast<uint8_t>(v));
  }
  std::vector<uint8_t> bytes_;
};

// onnx.proto's numbers.
namespace field {
constexpr int kModelIrVersion = 1, kModelProducerName = 2, kModelProducerVersion = 3, kModelGraph = 7,
              kModelOpset = 8;
constexpr int kOpsetDomain = 1, kOpsetVersion = 2;
constexpr int kGraphNode = 1, kGraphName = 2, kGraphInitializer = 5, kGraphInput = 11, kGraphOutput = 12;
constexpr int kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5;
constexpr int kAttrName = 1, kAttrF = 2, kAttrI = 3, kAttrInts = 8, kAttrType = 20;
constexpr int kTensorDims = 1, kTensorDataType = 2, kTensorName = 8, kTensorRawData = 9;
constexpr int kValueName = 1, kValueType = 2, kTypeTensor = 1, kTensorTypeElem = 1, kTensorTypeShape = 2;
constexpr int kShapeDim = 1, kDimValue = 1, kDimParam = 2;
constexpr int kAttrFloat = 1, kAttrInt = 2, kAttrIntList = 7;
constexpr int kFloat = 1, kInt64 = 7;
}  // namespace field

struct Attribute {
  std::string name;
  enum class Kind { Float, Int, Ints } kind;
  double f = 0;
  int64_t i = 0;
  std::vector<int64_t> ints;
};
Attribute attr_f(std::string name, double f) { return {std::move(name), Attribute::Kind::Float, f, 0, {}}; }
Attribute attr_i(std::string name, int64_t i) { return {std::move(name), Attribute::Kind::Int, 0, i, {}}; }
Attribute attr_ints(std::string name, std::vector<int64_t> v) {
  return {std::move(name), Attribute::Kind::Ints, 0, 0, std::move(v)};
}

template <class T>
void put_little_endian(std::vector<uint8_t>& out, T v) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const auto bits = std::bit_cast<U>(v);
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(bits >> (8 * i)));
}

// ---- The graph -------------------------------------------------------------------------------

class GraphBuilder {
 public:
  GraphBuilder(const PlanData& p, const OnnxOptions& o) : p_(p), o_(o) {}

  std::vector<uint8_t> build() {
    if (o_.input_name.empty() || o_.output_name.empty() || o_.input_name == o_.output_name) {
      throw ValueError(cat_str("deploy::export_onnx: the input and output names must be distinct and non-empty (got '",
                               o_.input_name, "' and '", o_.output_name, "')"));
    }
    if (o_.dynamic_batch && (p_.input_shape.empty() || p_.output_shape.empty())) {
      throw ShapeError(cat_str("deploy::export_onnx: dynamic_batch needs a batch dim in the input and the output "
                               "(shapes ", p_.input_shape, " and ", p_.output_shape, ")"));
    }
    names_.assign(p_.values.size(), std::string());
    names_[0] = o_.input_name;
    for (size_t i = 0; i < p_.steps.size(); ++i) add_step(p_.steps[i], i);
    // The output: the plan's output buffer, under the output's name and shape.
    const std::string last = name_of(p_.output);
    if (p_.values[static_cast<size_t>(p_.output)].shape != p_.output_shape) {
      reshape(last, p_.values[static_cast<size_t>(p_.output)].shape, p_.output_shape, o_.output_name);
    } else {
      node("Identity", {last}, o_.output_name, {});
    }

    Proto graph;
    for (const Proto& n : nodes_) graph.message(field::kGraphNode, n);
    graph.string(field::kGraphName, o_.graph_name);
    for (const Proto& t : initializers_) graph.message(field::kGraphInitializer, t);
    graph.message(field::kGraphInput, value_info(o_.input_name, p_.input_shape));
    graph.message(field::kGraphOutput, value_info(o_.output_name, p_.output_shape));

    Proto opset;
    opset.string(field::kOpsetDomain, "");
    opset.int64(field::kOpsetVersion, kOnnxOpset);
    Proto model;
    model.int64(field::kModelIrVersion, kOnnxIrVersion);
    model.string(field::kModelProducerName, "ember");
    model.string(field::kModelProducerVersion, "0.1");
    model.message(field::kModelGraph, graph);
    model.message(field::kModelOpset, opset);
    return std::move(model.bytes());
  }

 private:
  // ---- Values, nodes and initializers

  // The ONNX name of value v: a view gets a Reshape of its root the first time it is read.
  std::string name_of(int v) {
    auto& name = names_[static_cast<size_t>(v)];
    if (!name.empty()) return name;
    const Value& value = p_.values[static_cast<size_t>(v)];
    if (value.alias_of < 0) {
      throw ValueError(cat_str("deploy::export_onnx: value ", v, " is read before it is written"));
    }
    const int root = p_.root(v);
    name = cat_str("v", v);
    reshape(name_of(root), p_.values[static_cast<size_t>(root)].shape, value.shape, name);
    return name;
  }
  std::string fresh(const std::string& hint) { return cat_str(hint, "_", counter_++); }

  void node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
            const std::vector<Attribute>& attributes) {
    Proto n;
    for (const std::string& in : inputs) n.string(field::kNodeInput, in);
    n.string(field::kNodeOutput, output);
    n.string(field::kNodeName, cat_str(op, "_", nodes_.size()));
    n.string(field::kNodeOpType, op);
    for (const Attribute& a : attributes) {
      Proto m;
      m.string(field::kAttrName, a.name);
      switch (a.kind) {
        case Attribute::Kind::Float:
          m.float32(field::kAttrF, static_cast<float>(a.f));
          m.int64(field::kAttrType, field::kAttrFloat);
          break;
        case Attribute::Kind::Int:
          m.int64(field::kAttrI, a.i);
          m.int64(field::kAttrType, field::kAttrInt);
          break;
        case Attribute::Kind::Ints:
          for (int64_t v : a.ints) m.int64(field::kAttrInts, v);
          m.int64(field::kAttrType, field::kAttrIntList);
          break;
      }
      n.message(field::kNodeAttribute, m);
    }
    nodes_.push_back(std::move(n));
  }
  // A node with a fresh output name; returns it.
  std::string op(const std::string& op_type, const std::vector<std::string>& inputs,
                 const std::vector<Attribute>& attributes = {}) {
    std::string out = fresh(op_type);
    node(op_type, inputs, out, attributes);
    return out;
  }

  std::string initializer(const std::string& name, const Shape& dims, std::span<const float> values) {
    Proto t;
    for (int64_t d : dims) t.int64(field::kTensorDims, d);
    t.int64(field::kTensorDataType, field::kFloat);
    t.string(field::kTensorName, name);
    std::vector<uint8_t> raw;
    raw.reserve(values.size() * 4);
    for (float v : values) put_little_endian(raw, v);
    t.raw_bytes(field::kTensorRawData, raw);
    initializers_.push_back(std::move(t));
    return name;
  }
  std::string int64_initializer(const std::string& name, const std::vector<int64_t>& values) {
    Proto t;
    t.int64(field::kTensorDims, static_cast<int64_t>(values.size()));
    t.int64(field::kTensorDataType, field::kInt64);
    t.string(field::kTensorName, name);
    std::vector<uint8_t> raw;
    for (int64_t v : values) put_little_endian(raw, v);
    t.raw_bytes(field::kTensorRawData, raw);
    initializers_.push_back(std::move(t));
    return name;
  }
  // A float scalar (shape []), one initializer per distinct value.
  std::string scalar(float v) {
    const auto bits = std::bit_cast<uint32_t>(v);
    auto it = scalars_.find(bits);
    if (it != scalars_.end()) return it->second;
    const std::string name = initializer(cat_str("const_", scalars_.size()), Shape{}, std::span<const float>(&v, 1));
    scalars_.emplace(bits, name);
    return name;
  }

  Proto value_info(const std::string& name, const Shape& shape) const {
    Proto dims;
    for (int64_t i = 0; i < shape.size(); ++i) {
      Proto d;
      if (i == 0 && o_.dynamic_batch) {
        d.string(field::kDimParam, "batch");
      } else {
        d.int64(field::kDimValue, shape[i]);
      }
      dims.message(field::kShapeDim, d);
    }
    Proto tensor;
    tensor.int64(field::kTensorTypeElem, field::kFloat);
    tensor.message(field::kTensorTypeShape, dims);
    Proto type;
    type.message(field::kTypeTensor, tensor);
    Proto info;
    info.string(field::kValueName, name);
    info.message(field::kValueType, type);
    return info;
  }

  // Reshape `in` (of shape `from`) to `to`, written to `out`.
  void reshape(const std::string& in, const Shape& from, const Shape& to, const std::string& out) {
    std::vector<int64_t> target(to.begin(), to.end());
    if (o_.dynamic_batch) {
      if (from.empty() || to.empty() || from[0] != to[0] || from[0] != p_.input_shape[0]) {
        throw ShapeError(cat_str("deploy::export_onnx: with dynamic_batch, a view from ", from, " to ", to,
                                 " must keep the batch (", p_.input_shape[0], ") as its first dim"));
      }
      target[0] = 0;  // as the input's
    }
    node("Reshape", {in, int64_initializer(cat_str("shape_", counter_++), target)}, out, {});
  }

  // ---- Steps

  void add_step(const Step& s, size_t index) {
    // "conv2d_0", "linear_2": numbered per op, so the names do not depend on fusion.
    std::string prefix = s.name;
    for (char& c : prefix) c = c == ' ' ? '_' : c;
    prefix = cat_str(prefix, "_", per_op_[prefix]++);
    std::string y;
    switch (s.kind) {
      case StepKind::Conv2d: y = conv(s, prefix); break;
      case StepKind::AvgPool2d: y = avg_pool(s, prefix); break;
      case StepKind::ConvTranspose2d: y = conv_transpose(s, prefix); break;
      case StepKind::Resample: y = resample(s, prefix); break;
      case StepKind::Linear: y = linear(s, prefix); break;
      case StepKind::ChannelAffine: y = channel_affine(s, prefix); break;
      case StepKind::Unary: y = unary(name_of(s.in0), s.unary_op, s.unary_params); break;
      case StepKind::Binary: y = binary(s, name_of(s.in0), name_of(s.in1)); break;
      case StepKind::Permute:
        y = op("Transpose", {name_of(s.in0)}, {attr_ints("perm", {s.perm.begin(), s.perm.end()})});
        break;
      case StepKind::MatMul: {
        const std::string a = name_of(s.in0);
        y = op("MatMul", {a, s.in1 >= 0 ? name_of(s.in1) : initializer(prefix + ".constant", s.weight_shape, s.w)});
        break;
      }
      case StepKind::Concat: y = op("Concat", {name_of(s.in0), name_of(s.in1)}, {attr_i("axis", s.axis)}); break;
      case StepKind::BroadcastBinary: {
        const BroadcastOperands ops = broadcast_operands(s);
        auto operand = [&](int v) {
          return v >= 0 ? name_of(v) : initializer(prefix + ".constant", s.weight_shape, s.w);
        };
        const std::string a = operand(ops.a);
        y = binary(s, a, operand(ops.b));
        break;
      }
      case StepKind::MaxPool: y = max_pool(s); break;
      case StepKind::MeanHW:
        y = op("ReduceMean", {name_of(s.in0)}, {attr_ints("axes", {-2, -1}), attr_i("keepdims", 1)});
        break;
      case StepKind::Softmax: y = rows(s, [&](const std::string& x) {
          return op(s.log_softmax ? "LogSoftmax" : "Softmax", {x}, {attr_i("axis", -1)});
        });
        break;
      case StepKind::LayerNorm: y = rows(s, [&](const std::string& x) { return layer_norm(s, prefix, x); }); break;
      default:
        throw ValueError(cat_str("deploy::export_onnx: step ", index, " (", s.name,
                                 ") runs on int8 kernels; a quantized model's plan has no ONNX export here"));
    }
    for (const PostOp& post : s.post) y = unary(y, post.op, post.params);
    const Shape& out_shape = p_.values[static_cast<size_t>(s.out)].shape;
    if (s.kind == StepKind::MeanHW && out_shape != in_shape(s)) {
      Shape kept = in_shape(s);
      kept[kept.size() - 1] = kept[kept.size() - 2] = 1;
      if (kept != out_shape) {
        const std::string named = cat_str("v", s.out);
        reshape(y, kept, out_shape, named);
        y = named;
      }
    }
    names_[static_cast<size_t>(s.out)] = y;
  }
  const Shape& in_shape(const Step& s) const { return p_.values[static_cast<size_t>(s.in0)].shape; }

  // Conv and MaxPool take [N, C, H, W]: a 3-D image runs as a batch of one.
  std::string as_batch(const Step& s, bool& unbatched) {
    const Shape& x = in_shape(s);
    unbatched = x.size() == 3;
    if (!unbatched) return name_of(s.in0);
    const std::string out = fresh("batched");
    reshape(name_of(s.in0), x, Shape{1, x[0], x[1], x[2]}, out);
    return out;
  }
  std::string unbatch(const Step& s, const std::string& y, bool unbatched) {
    if (!unbatched) return y;
    const Shape& out = p_.values[static_cast<size_t>(s.out)].shape;
    const std::string name = fresh("unbatched");
    reshape(y, Shape{1, out[0], out[1], out[2]}, out, name);
    return name;
  }

  // `f` applied to the input seen as rows of s.inner values along its last dim: the trailing dims
  // whose product is s.inner are merged first (and split again after) when they are not one dim.
  template <class F>
  std::string rows(const Step& s, F f) {
    const Shape& x = in_shape(s);
    Shape merged;
    int64_t trailing = 1;
    int64_t k = x.size();
    do {
      trailing *= k > 0 ? x[--k] : 0;
    } while (k > 0 && trailing < s.inner);
    if (trailing != s.inner) {
      throw ShapeError(cat_str("deploy::export_onnx: ", s.name, " over rows of ", s.inner, " values of ", x,
                               ", which no trailing dims make"));
    }
    for (int64_t i = 0; i < k; ++i) merged.push_back(x[static_cast<size_t>(i)]);
    merged.push_back(s.inner);
    if (merged == x) return f(name_of(s.in0));
    const std::string flat = fresh("rows");
    reshape(name_of(s.in0), x, merged, flat);
    const std::string y = f(flat), out = fresh("unrows");
    reshape(y, merged, x, out);
    return out;
  }

  // Opset 13 has no LayerNormalization (17 has): its formula over the last axis.
  std::string layer_norm(const Step& s, const std::string& prefix, const std::string& x) {
    const std::vector<Attribute> last{attr_ints("axes", {-1}), attr_i("keepdims", 1)};
    const std::string centred = op("Sub", {x, op("ReduceMean", {x}, last)});
    const std::string var = op("ReduceMean", {op("Mul", {centred, centred})}, last);
    std::string y = op("Div", {centred, op("Sqrt", {op("Add", {var, scalar(static_cast<float>(s.eps))})})});
    if (!s.w.empty()) y = op("Mul", {y, initializer(prefix + ".weight", Shape{s.inner}, s.w)});
    if (!s.b.empty()) y = op("Add", {y, initializer(prefix + ".bias", Shape{s.inner}, s.b)});
    return y;
  }

  std::string conv(const Step& s, const std::string& prefix) {
    bool unbatched = false;
    const std::string x = as_batch(s, unbatched);
    std::vector<std::string> inputs{x, initializer(prefix + ".weight", s.weight_shape, s.w)};
    if (!s.b.empty()) inputs.push_back(initializer(prefix + ".bias", Shape{s.channels}, s.b));
    const Conv2dGeometry& g = s.geometry;
    const std::string y = op("Conv", inputs,
                             {attr_ints("kernel_shape", {s.weight_shape[2], s.weight_shape[3]}),
                              attr_ints("strides", {g.stride[0], g.stride[1]}),
                              attr_ints("pads", {g.padding[0], g.padding[2], g.padding[1], g.padding[3]}),
                              attr_ints("dilations", {g.dilation[0], g.dilation[1]}), attr_i("group", g.groups)});
    return unbatch(s, y, unbatched);
  }

  // ConvTranspose from the geometry of the convolution whose input gradient the step is: the
  // output's size is the convolution's input size, and what the top/left padding leaves over is
  // end padding (or, when negative, output_padding).
  std::string conv_transpose(const Step& s, const std::string& prefix) {
    std::vector<std::string> inputs{name_of(s.in0), initializer(prefix + ".weight", s.weight_shape, s.w)};
    if (!s.b.empty()) inputs.push_back(initializer(prefix + ".bias", Shape{s.channels}, s.b));
    const Conv2dGeometry& g = s.geometry;
    const auto& d = s.conv.d;
    int64_t end[2], out_pad[2];
    const int64_t in[2] = {d.ho, d.wo}, out[2] = {d.h, d.w}, k[2] = {d.kh, d.kw};
    const int64_t begin[2] = {g.padding[0], g.padding[2]};
    for (int i = 0; i < 2; ++i) {
      const int64_t extra = g.stride[i] * (in[i] - 1) + g.dilation[i] * (k[i] - 1) + 1 - begin[i] - out[i];
      end[i] = std::max<int64_t>(extra, 0);
      out_pad[i] = std::max<int64_t>(-extra, 0);
    }
    return op("ConvTranspose", inputs,
              {attr_ints("kernel_shape", {d.kh, d.kw}), attr_ints("strides", {g.stride[0], g.stride[1]}),
               attr_ints("pads", {begin[0], begin[1], end[0], end[1]}),
               attr_ints("output_padding", {out_pad[0], out_pad[1]}),
               attr_ints("dilations", {g.dilation[0], g.dilation[1]}), attr_i("group", g.groups)});
  }

  // One axis of interpolate as the plan's own tables: Gather of the source positions (and for the
  // linear modes their weighted sum, the op's formula), not Resize, whose coordinate modes would
  // recompute PyTorch's float source indices and could land on another pixel at a boundary.
  std::string resample(const Step& s, const std::string& prefix) {
    const Shape& x = in_shape(s);
    int64_t dim = -1, before = 1;
    for (int64_t d = 0; d < x.size() && dim < 0; before *= x[d], ++d) {
      if (before > 0 && before == s.planes && x[d] == s.in_features && x.numel() / before / x[d] == s.inner) dim = d;
    }
    if (dim < 0) throw ValueError(cat_str("deploy::export_onnx: interpolate of ", x, " along no axis of it"));
    const auto out = static_cast<size_t>(s.out_features);
    auto gather = [&](const char* name, size_t first) {
      const std::vector<int64_t> indices(s.iv.begin() + static_cast<std::ptrdiff_t>(first),
                                         s.iv.begin() + static_cast<std::ptrdiff_t>(first + out));
      return op("Gather", {name_of(s.in0), int64_initializer(prefix + name, indices)}, {attr_i("axis", dim)});
    };
    const std::string a = gather(".indices", 0);
    if (s.b.empty()) return a;
    Shape weights = Shape::filled(x.size() - dim, 1);  // broadcast along the axis
    weights[0] = s.out_features;
    const std::string near = op("Mul", {a, initializer(prefix + ".near", weights, s.w)});
    const std::string far = op("Mul", {gather(".far_indices", out), initializer(prefix + ".far", weights, s.b)});
    return op("Add", {near, far});
  }

  // AveragePool where every window's divisor is the kernel's size over symmetric padding;
  // otherwise (padding left out of the count, ceil_mode's extra windows) the plan's own form:
  // window sums by a depthwise Conv of ones, divided by PyTorch's window sizes.
  std::string avg_pool(const Step& s, const std::string& prefix) {
    const Conv2dGeometry& g = s.geometry;
    const int64_t kh = s.weight_shape[2], kw = s.weight_shape[3];
    const bool uniform = std::all_of(s.dv.begin(), s.dv.end(), [&](float v) { return v == float(kh * kw); });
    if (!uniform || g.padding[0] != g.padding[1] || g.padding[2] != g.padding[3]) {
      const std::string sums = conv(s, prefix);
      const Shape& out = p_.values[static_cast<size_t>(s.out)].shape;
      const Shape plane{out[out.size() - 2], out[out.size() - 1]};
      return op("Div", {sums, initializer(prefix + ".divisors", plane, s.dv)});
    }
    bool unbatched = false;
    const std::string x = as_batch(s, unbatched);
    const std::string y = op("AveragePool", {x},
                             {attr_ints("kernel_shape", {kh, kw}), attr_ints("strides", {g.stride[0], g.stride[1]}),
                              attr_ints("pads", {g.padding[0], g.padding[2], g.padding[1], g.padding[3]}),
                              attr_i("count_include_pad", 1)});
    return unbatch(s, y, unbatched);
  }

  std::string linear(const Step& s, const std::string& prefix) {
    const std::string x = name_of(s.in0);
    const bool two_d = in_shape(s).size() == 2;
    if (two_d) {
      std::vector<std::string> inputs{x, initializer(prefix + ".weight", Shape{s.out_features, s.in_features}, s.w)};
      if (!s.b.empty()) inputs.push_back(initializer(prefix + ".bias", Shape{s.out_features}, s.b));
      return op("Gemm", inputs, {attr_i("transB", 1)});
    }
    // MatMul takes any rank: the weight transposed, [in, out].
    std::vector<float> wt(static_cast<size_t>(s.in_features * s.out_features));
    for (int64_t o = 0; o < s.out_features; ++o) {
      for (int64_t i = 0; i < s.in_features; ++i) {
        wt[static_cast<size_t>(i * s.out_features + o)] = s.w[static_cast<size_t>(o * s.in_features + i)];
      }
    }
    std::string y = op("MatMul", {x, initializer(prefix + ".weight_t", Shape{s.in_features, s.out_features}, wt)});
    if (!s.b.empty()) y = op("Add", {y, initializer(prefix + ".bias", Shape{s.out_features}, s.b)});
    return y;
  }

  std::string channel_affine(const Step& s, const std::string& prefix) {
    const Shape c{s.channels};
    const std::vector<float> zero(static_cast<size_t>(s.channels), 0.0f), one(static_cast<size_t>(s.channels), 1.0f);
    return op("BatchNormalization",
              {name_of(s.in0), initializer(prefix + ".scale", c, s.w), initializer(prefix + ".shift", c, s.b),
               initializer(prefix + ".mean", c, zero), initializer(prefix + ".var", c, one)},
              {attr_f("epsilon", 0.0)});
  }

  std::string binary(const Step& s, const std::string& a, const std::string& b) {
    static constexpr std::pair<Binary, const char*> kOps[] = {
        {Binary::Add, "Add"}, {Binary::Sub, "Sub"}, {Binary::Mul, "Mul"}, {Binary::Div, "Div"},
        {Binary::Max, "Max"}, {Binary::Min, "Min"}, {Binary::Pow, "Pow"}};
    for (const auto& [kind, name] : kOps) {
      if (kind == s.binary_op) return op(name, {a, b});  // ONNX broadcasts as PyTorch does
    }
    throw ValueError(cat_str("deploy::export_onnx: the elementwise op '", s.name, "' has no ONNX form here"));
  }

  std::string max_pool(const Step& s) {
    bool unbatched = false;
    const std::string x = as_batch(s, unbatched);
    const backend::PoolShape& q = s.pool;
    // The floor-mode size; the plan's larger one is ceil_mode's.
    const int64_t floor_ho = (q.h + 2 * q.pad_h - q.dil_h * (q.kh - 1) - 1) / q.stride_h + 1;
    const int64_t floor_wo = (q.w + 2 * q.pad_w - q.dil_w * (q.kw - 1) - 1) / q.stride_w + 1;
    const bool ceil_mode = q.ho != floor_ho || q.wo != floor_wo;
    const std::string y = op("MaxPool", {x},
                             {attr_ints("kernel_shape", {q.kh, q.kw}), attr_ints("strides", {q.stride_h, q.stride_w}),
                              attr_ints("pads", {q.pad_h, q.pad_w, q.pad_h, q.pad_w}),
                              attr_ints("dilations", {q.dil_h, q.dil_w}), attr_i("ceil_mode", ceil_mode ? 1 : 0)});
    return unbatch(s, y, unbatched);
  }

  // An elementwise op on x: the ONNX op of that name, or its formula in opset 13's ops.
  std::string unary(const std::string& x, Unary kind, KernelParams p) {
    const auto a = static_cast<float>(p.a), b = static_cast<float>(p.b);
    switch (kind) {
      case Unary::Neg: return op("Neg", {x});
      case Unary::Abs: return op("Abs", {x});
      case Unary::Exp: return op("Exp", {x});
      case Unary::Log: return op("Log", {x});
      case Unary::Log1p: return op("Log", {op("Add", {x, scalar(1.0f)})});
      case Unary::Expm1: return op("Sub", {op("Exp", {x}), scalar(1.0f)});
      case Unary::Sqrt: return op("Sqrt", {x});
      case Unary::Rsqrt: return op("Reciprocal", {op("Sqrt", {x})});
      case Unary::Reciprocal: return op("Reciprocal", {x});
      case Unary::Square: return op("Mul", {x, x});
      case Unary::Sin: return op("Sin", {x});
      case Unary::Cos: return op("Cos", {x});
      case Unary::Tanh: return op("Tanh", {x});
      case Unary::Sigmoid: return op("Sigmoid", {x});
      case Unary::Relu: return op("Relu", {x});
      case Unary::Silu: return op("Mul", {x, op("Sigmoid", {x})});
      case Unary::Erf: return op("Erf", {x});
      case Unary::Sign: return op("Sign", {x});
      case Unary::Floor: return op("Floor", {x});
      case Unary::Ceil: return op("Ceil", {x});
      case Unary::Round: return op("Round", {x});  // half to even in both
      case Unary::LeakyRelu: return op("LeakyRelu", {x}, {attr_f("alpha", p.a)});
      case Unary::Elu: return op("Elu", {x}, {attr_f("alpha", p.a)});
      case Unary::Gelu: {  // x * (1 + erf(x / sqrt 2)) / 2
        const std::string e = op("Erf", {op("Mul", {x, scalar(static_cast<float>(M_SQRT1_2))})});
        return op("Mul", {op("Mul", {x, op("Add", {e, scalar(1.0f)})}), scalar(0.5f)});
      }
      case Unary::GeluTanh: {  // x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2
        const std::string cube = op("Mul", {op("Mul", {x, x}), x});
        const std::string inner = op("Add", {x, op("Mul", {cube, scalar(0.044715f)})});
        const std::string t = op("Tanh", {op("Mul", {inner, scalar(static_cast<float>(M_2_SQRTPI * M_SQRT1_2))})});
        return op("Mul", {op("Mul", {x, op("Add", {t, scalar(1.0f)})}), scalar(0.5f)});
      }
      case Unary::Softplus: {  // log(1 + exp(beta x)) / beta, x itself where beta x > threshold
        const std::string bx = a == 1.0f ? x : op("Mul", {x, scalar(a)});
        std::string y = op("Softplus", {bx});
        if (a != 1.0f) y = op("Div", {y, scalar(a)});
        if (std::isinf(b)) return y;
        return op("Where", {op("Greater", {bx, scalar(b)}), x, y});
      }
      case Unary::Mish: return op("Mul", {x, op("Tanh", {op("Softplus", {x})})});
      case Unary::Clamp: {
        std::vector<std::string> inputs{x, std::isinf(a) ? std::string() : scalar(a)};
        if (!std::isinf(b)) inputs.push_back(scalar(b));
        return op("Clip", inputs);
      }
      case Unary::PowScalar: return op("Pow", {x, scalar(a)});
      case Unary::AddScalar: return op("Add", {x, scalar(a)});
      case Unary::MulScalar: return op("Mul", {x, scalar(a)});
      case Unary::RsubScalar: return op("Sub", {scalar(a), x});
      case Unary::RdivScalar: return op("Div", {scalar(a), x});
      default: break;
    }
    throw ValueError(cat_str("deploy::export_onnx: elementwise kernel ", static_cast<int>(kind),
                             " has no ONNX form here"));
  }

  const PlanData& p_;
  const OnnxOptions& o_;
  std::vector<std::string> names_;
  std::vector<Proto> nodes_, initializers_;
  std::map<uint32_t, std::string> scalars_;
  std::map<std::string, int64_t> per_op_;
  int64_t counter_ = 0;
};

}  // namespace

std::vector<uint8_t> to_onnx(const Plan& plan, const OnnxOptions& options) {
  return GraphBuilder(checked_plan(plan.data()), options).build();
}

void export_onnx(const Plan& plan, const std::string& path, const OnnxOptions& options) {
  io::write_file_atomically(path, to_onnx(plan, options));
}

void export_onnx(nn::Module<float>& model, const Shape& input_shape, const std::string& path,
                 const OnnxOptions& options) {
  // The trace is deploy::compile's; its errors say so after the call the user made.
  const char* here = "deploy::export_onnx: tracing the forward: ";
  Plan plan;
  try {
    plan = compile(model, input_shape, {.fold_batch_norm = options.fold_batch_norm, .fuse_elementwise = false});
  } catch (const ShapeError& e) {
    throw ShapeError(here + std::string(e.what()));
  } catch (const ValueError& e) {
    throw ValueError(here + std::string(e.what()));
  }
  export_onnx(plan, path, options);
}

}  // namespace ember::deploy
