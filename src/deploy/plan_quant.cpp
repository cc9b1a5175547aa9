// deploy::compile of a quantized model (ember::quant): its stages lowered into plan steps.
//
// Note [Int8 steps]
// A QuantizedModel is a list of stages (Note [Quantized model]); compile() follows what flows
// between them as QuantizedModel::operator() does, but once, on the input shape, deciding each
// stage's path there:
//   - a quantized Linear or Conv2d becomes an Int8Linear or Int8Conv2d step on the stage's packed
//     int8 weights. It takes uint8 activations as they are when they arrive in its input
//     parameters (channels last for images), and floats otherwise, which it quantizes itself, in
//     its scratch, with its static parameters or (dynamic) with the range of each run's input. It
//     writes uint8 in the next layer's parameters (requantized) or floats (channels first). A
//     convolution goes image by image, the images split among as many workers as the compiling
//     process had threads (at most one per image), each with its own part of the scratch;
//   - max pooling of uint8 images is a MaxPoolU8 step, and a Flatten of them a view, as the stages
//     do;
//   - where a uint8 value meets a stage that computes in float, a Dequantize step turns it back
//     into floats (channels first), and that stage is traced as a float model's forward is
//     (Note [Inference plan]): ReLU, float pooling, layers kept in float, Flatten;
//   - the plan's input and output are floats, as the model's.
// The steps call the same raw-pointer code as the stages (src/quant/int8_layer.hpp), so a plan
// gives the quantized model's output bit for bit, on every int8 kernel table (they are exact).
// Sums over K are int32: K is at most 65536, so that no sum of K products of 7-bit activations
// and int8 weights, with the bias in the same units, overflows.
#include "ember/deploy/compile.hpp"

#include "../quant/stage_info.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "plan_build.hpp"

namespace ember::deploy {
namespace {

using quant::detail::StageInfo;
using quant::detail::StageKind;

// A value flowing between stages: floats (traced as `tensor`) or uint8 in (scale, zero).
struct Flow {
  int id = -1;
  Tensor<float> tensor;
  bool quantized = false;
  float scale = 1.0f;
  int32_t zero = 0;
};

class QuantCompiler {
 public:
  QuantCompiler(PlanData& p, Tracer& tracer) : p_(p), tracer_(tracer) {}

  Flow stage(const StageInfo& info, Flow x) {
    switch (info.kind) {
      case StageKind::Int8Linear: return int8_linear(info, std::move(x));
      case StageKind::Int8Conv2d: return int8_conv(info, std::move(x));
      case StageKind::MaxPool:
        if (x.quantized && shape(x).size() == 4 && info.pools_quantized) return max_pool_u8(info, x);
        break;
      case StageKind::Flatten:
        if (x.quantized && shape(x).size() == 4 && info.channels_last && info.flattens_all) {
          const Shape& s = shape(x);
          Flow y = x;
          y.id = add_u8({s[0], s[1] * s[2] * s[3]}, p_.root(x.id));
          return y;
        }
        break;
      case StageKind::BasicBlock: return basic_block(info, x);
      case StageKind::Other: break;
    }
    return traced(info, std::move(x));
  }

  // Floats of a uint8 value, channels first as the stages' to_float gives them.
  Flow to_float(const Flow& x) {
    if (!x.quantized) return x;
    const Shape s = shape(x);
    const Shape out = s.size() == 4 ? Shape{s[0], s[3], s[1], s[2]} : s;
    Step st;
    st.kind = StepKind::Dequantize;
    st.name = "dequantize";
    st.in0 = x.id;
    st.q8.in_scale = x.scale;
    st.q8.in_zero = x.zero;
    st.scratch_bytes = s.size() == 4 ? s.numel() : 0;
    return float_output(std::move(st), out);
  }

 private:
  const Shape& shape(const Flow& x) const { return p_.values[static_cast<size_t>(x.id)].shape; }

  int add_u8(const Shape& s, int alias_of = -1) {
    p_.values.push_back({s, ElemType::U8, alias_of, -1});
    return static_cast<int>(p_.values.size()) - 1;
  }

  Flow float_output(Step st, const Shape& out) {
    Flow y;
    y.tensor = zeros<float>(out);
    y.id = tracer_.add_value(y.tensor);
    st.out = y.id;
    p_.steps.push_back(std::move(st));
    return y;
  }

  // Whether uint8 input x is in the static layer's own input parameters.
  static bool takes(const quant::detail::Int8Affine& l, const Flow& x) {
    return x.quantized && !l.dynamic && x.scale == l.in_scale && x.zero == l.in_zero;
  }

  Step int8_step(const StageInfo& info, StepKind kind, const char* name, int input) const {
    const quant::detail::Int8Affine& l = info.layer;
    if (l.k > kMaxInt8K) {
      throw ValueError(cat_str("deploy::compile: ", info.stage->str(), " sums ", l.k, " products per output; int8 "
                               "plans take at most ", kMaxInt8K, " (int32 sums)"));
    }
    Step s;
    s.kind = kind;
    s.name = name;
    s.in0 = input;
    s.in_features = l.k;
    s.out_features = l.out;
    s.q8 = {l.relu, l.dynamic, l.out_quantized, l.in_scale, l.out_scale, l.in_zero, l.out_zero};
    s.qweight.assign(l.packed, l.packed + backend::int8_packed_size(l.out, l.k));
    s.ints.assign(l.sums, l.sums + l.out);
    s.scales.assign(l.weight_scales, l.weight_scales + l.out);
    if (!l.dynamic) s.scales.insert(s.scales.end(), l.out_scales, l.out_scales + l.out);
    if (l.out_quantized) {
      s.ints.insert(s.ints.end(), l.bias_q, l.bias_q + l.out);
      s.scales.insert(s.scales.end(), l.out_multiplier, l.out_multiplier + l.out);
    }
    if (l.bias != nullptr) s.bias.assign(l.bias, l.bias + l.out);
    return s;
  }

  Flow finish_int8(Step s, const Flow& x, const Shape& u8_shape, const Shape& float_shape) {
    s.scratch_bytes = int8_scratch(s, p_.values[static_cast<size_t>(x.id)]).total;
    if (!s.q8.out_quantized) return float_output(std::move(s), float_shape);
    Flow y;
    y.quantized = true;
    y.scale = s.q8.out_scale;
    y.zero = s.q8.out_zero;
    y.id = add_u8(u8_shape);
    s.out = y.id;
    p_.steps.push_back(std::move(s));
    return y;
  }

  Flow int8_linear(const StageInfo& info, Flow x) {
    const quant::detail::Int8Affine& l = info.layer;
    if (!(takes(l, x) && shape(x).size() >= 1 && shape(x).back() == l.k)) {
      x = to_float(x);
      const Shape& s = shape(x);
      if (info.chw[0] > 0 && s.size() == 2 && s[1] == l.k) {
        throw ValueError(cat_str("deploy::compile: ", info.stage->str(), " takes its features channels last and is "
                                 "fed floats; plans run it on the uint8 images of the convolution before it only"));
      }
      if (s.empty() || s.back() != l.k) {
        throw ShapeError(cat_str("QuantizedLinear: expected an input [*, ", l.k, "], got ", s));
      }
    }
    Step s = int8_step(info, StepKind::Int8Linear, "int8 linear", x.id);
    std::vector<int64_t> out(shape(x).begin(), shape(x).end());
    s.rows = shape(x).numel() / l.k;
    out.back() = l.out;
    return finish_int8(std::move(s), x, Shape(out), Shape(out));
  }

  Flow int8_conv(const StageInfo& info, Flow x) {
    const quant::detail::Int8Affine& l = info.layer;
    const bool channels_last = takes(l, x) && shape(x).size() == 4 && shape(x)[3] == info.in_channels;
    if (!channels_last) {
      x = to_float(x);
      const Shape& s = shape(x);
      if (s.size() != 4 || s[1] != info.in_channels) {
        throw ShapeError(cat_str("QuantizedConv2d: expected an input [N, ", info.in_channels, ", H, W], got ", s));
      }
    }
    Step s = int8_step(info, StepKind::Int8Conv2d, "int8 conv2d", x.id);
    s.weight_shape = {l.out, info.in_channels, info.kh, info.kw};
    s.geometry = info.geometry;
    const quant::detail::Int8ConvShape c = int8_conv_shape(s, p_.values[static_cast<size_t>(x.id)]);
    if (c.ho <= 0 || c.wo <= 0) {
      throw ShapeError(cat_str("QuantizedConv2d: input of ", c.h, "x", c.w, " pixels is smaller than the ", c.kh, "x",
                               c.kw, " kernel"));
    }
    s.qdirect = quant::detail::int8_direct_conv_weights(l, c);
    const int64_t n = shape(x)[0];
    s.workers = std::clamp<int64_t>(get_num_threads(), 1, n);
    return finish_int8(std::move(s), x, {n, c.ho, c.wo, l.out}, {n, l.out, c.ho, c.wo});
  }

  Flow max_pool_u8(const StageInfo& info, const Flow& x) {
    const Shape& s = shape(x);
    const int64_t h = s[1], w = s[2];
    const int64_t ho = (h + 2 * info.padding[0] - info.dilation[0] * (info.kernel[0] - 1) - 1) / info.stride[0] + 1;
    const int64_t wo = (w + 2 * info.padding[1] - info.dilation[1] * (info.kernel[1] - 1) - 1) / info.stride[1] + 1;
    if (ho <= 0 || wo <= 0) throw ShapeError(cat_str("MaxPool2d: input of ", h, "x", w, " pixels is smaller than the window"));
    Step st;
    st.kind = StepKind::MaxPoolU8;
    st.name = "max_pool2d";
    st.in0 = x.id;
    st.pool = {h, w, ho, wo, info.kernel[0], info.kernel[1], info.stride[0], info.stride[1], info.padding[0],
               info.padding[1], info.dilation[0], info.dilation[1]};
    st.planes = s[0];
    st.channels = s[3];
    Flow y = x;
    y.id = add_u8({s[0], ho, wo, s[3]});
    st.out = y.id;
    p_.steps.push_back(std::move(st));
    return y;
  }

  // relu(conv2(conv1(x)) + shortcut(x)): the convolutions' int8 steps, then the sum and the ReLU
  // traced, as the stage computes them.
  Flow basic_block(const StageInfo& info, const Flow& x) {
    const Flow input = to_float(x);
    const Flow mid = int8_conv(info.parts.at(0), input);
    const Flow residual = to_float(int8_conv(info.parts.at(1), mid));
    const Flow shortcut = info.parts.size() > 2 ? to_float(int8_conv(info.parts[2], input)) : input;
    Flow y;
    y.tensor = relu(residual.tensor + shortcut.tensor);
    y.id = tracer_.id_of(y.tensor);
    if (y.id < 0) throw ValueError(cat_str("deploy::compile: ", info.stage->str(), ": its sum was not traced"));
    return y;
  }

  // A stage that computes in float: its ops, traced.
  Flow traced(const StageInfo& info, Flow x) {
    x = to_float(x);
    quant::Activation y;
    try {
      y = info.stage->run(quant::Activation{x.tensor});
    } catch (const ValueError& e) {
      // The tracer's refusal names an op inside the stage (a GRU's cat, say): name the stage.
      if (!e.message().starts_with("deploy::compile: ")) throw;
      throw ValueError(cat_str("deploy::compile: ", info.stage->str(), " computes with an op a plan cannot run (",
                               e.message().substr(17), ")"));
    }
    Flow out;
    out.tensor = y.value;
    out.id = y.quantized.defined() ? -1 : tracer_.id_of(y.value);
    if (out.id < 0) {
      throw ValueError(cat_str("deploy::compile: ", info.stage->str(), " computes with an op a plan cannot run (",
                               kSupported, ")"));
    }
    return out;
  }

  PlanData& p_;
  Tracer& tracer_;
};

}  // namespace

Plan compile(const quant::QuantizedModel& model, const Shape& input_shape, const CompileOptions& options) {
  if (model.num_stages() == 0) throw ValueError("deploy::compile: the quantized model is empty");
  for (int64_t d : input_shape) {
    if (d <= 0) throw ShapeError(cat_str("deploy::compile: input shape ", input_shape, " has a dim that is not positive"));
  }
  auto data = std::make_shared<PlanData>();
  data->input_shape = input_shape;
  Tracer tracer(*data);
  QuantCompiler compiler(*data, tracer);
  Flow x;
  x.tensor = zeros<float>(input_shape);
  x.id = tracer.add_value(x.tensor);
  {
    NoGradGuard no_grad;
    ember::detail::OpTracerScope scope(&tracer);
    const std::vector<StageInfo> stages = quant::detail::stage_infos(model);
    for (size_t i = 0; i < stages.size(); ++i) {
      try {
        x = compiler.stage(stages[i], std::move(x));
      } catch (Error& e) {
        e.prepend_module(cat_str("stage ", i));
        throw;
      }
    }
    x = compiler.to_float(x);
  }
  data->output = data->root(x.id);
  data->output_shape = data->values[static_cast<size_t>(x.id)].shape;
  if (data->output == 0) throw ValueError("deploy::compile: the model's output is its input: there is nothing to plan");
  finish_plan(*data, options);
  return Plan(std::move(data));
}

}  // namespace ember::deploy
