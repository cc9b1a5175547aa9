// Post-training quantization (Note [Quantized model] in ember/quant/quantize.hpp): the stages, the
// walk over a float model, calibration, and the file format.
#include "ember/quant/quantize.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>

#include "../core/internal.hpp"
#include "../nn/rnn_run.hpp"
#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/core/error.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/nn/activation.hpp"
#include "ember/nn/container.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/dropout.hpp"
#include "ember/nn/functional.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/normalization.hpp"
#include "ember/nn/pooling.hpp"
#include "ember/nn/residual.hpp"
#include "ember/nn/rnn.hpp"
#include "ember/ops/conv.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/pooling.hpp"
#include "ember/ops/shape_ops.hpp"
#include "ember/quant/observer.hpp"
#include "ember/quant/qtensor.hpp"
#include "int8_layer.hpp"
#include "stage_info.hpp"

namespace ember::quant {
namespace {

using ember::detail::cat_str;

std::string pair_str(int64_t a, int64_t b) { return cat_str("(", a, ", ", b, ")"); }

// Per-thread scratch buffers that keep their memory between calls: a stage's temporaries would
// otherwise be fresh pages (and page faults) on every call. `Slot` tells a function's buffers apart.
template <class T, int Slot>
T* scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// The float (channels first) form of an activation.
Tensor<float> to_float(const Activation& a) {
  if (!a.quantized.defined()) {
    if (!a.value.defined()) throw ValueError("the input is undefined");
    return a.value;
  }
  Tensor<float> f = empty<float>(a.quantized.shape());
  backend::int8_kernels().dequantize_u8(a.quantized.numel(), a.quantized.data(),
                                        static_cast<int32_t>(a.params.zero_point), a.params.scale, 0, f.data());
  return a.quantized.dim() == 4 ? f.permute({0, 3, 1, 2}).contiguous() : f;
}

// ---- Quantized Linear and Conv2d -----------------------------------------------------------------

// The int8 weights of one Linear or Conv2d ([out, K] with K = in_features or C * kh * kw), packed
// for gemm_u8s8, with per-output-channel scales (zero points are 0: symmetric).
struct Int8Weights {
  Tensor<int8_t> values;  // the layer's weight shape
  std::vector<float> scales;
  std::vector<int8_t> packed;
  std::vector<int32_t> sums;  // sum over K of each output's weights (the zero-point correction)
  int64_t out = 0, k = 0;
};

// `name`: the weight's state-dict name, for errors.
Int8Weights quantize_weights(const Tensor<float>& weight, bool per_channel,
                             const std::string& name) {
  const std::string label = cat_str("quantize: '", name, "'");
  Int8Weights w;
  w.out = weight.shape()[0];
  w.k = weight.numel() / std::max<int64_t>(w.out, 1);
  if (per_channel) {
    PerChannelMinMaxObserver obs(0, kWeightSpec);
    obs.observe(weight, label.c_str());
    for (const QParams& q : obs.qparams()) w.scales.push_back(q.scale);
  } else {
    MinMaxObserver obs(kWeightSpec);
    obs.observe(weight, label.c_str());
    w.scales.assign(static_cast<size_t>(w.out), obs.qparams().scale);
  }
  const QTensor<int8_t> q = quantize_per_channel<int8_t>(
      weight, tensor<float>(w.scales, {w.out}), zeros<int64_t>({w.out}), 0);
  w.values = q.int_repr();
  return w;
}

// Packing and sums of w.values (also after loading).
// A convolution's weights are packed in (kh, kw, C) order, the order of its im2row rows.
void prepare(Int8Weights& w) {
  const Tensor<int8_t> order = w.values.dim() == 4 ? w.values.permute({0, 2, 3, 1}).contiguous() : w.values;
  const int8_t* v = order.data();
  w.packed.assign(static_cast<size_t>(backend::int8_packed_size(w.out, w.k)), 0);
  backend::pack_int8_weights(w.out, w.k, v, w.k, w.packed.data());
  w.sums.assign(static_cast<size_t>(w.out), 0);
  for (int64_t j = 0; j < w.out; ++j)
    for (int64_t t = 0; t < w.k; ++t) w.sums[static_cast<size_t>(j)] += v[j * w.k + t];
}

// What a Linear or Conv2d stage shares: weights, bias, fused ReLU and how its input is quantized.
struct AffineCore {
  Int8Weights w;
  Tensor<float> bias;  // [out] or undefined
  bool relu = false;
  bool dynamic = false;
  QParams input;  // static quantization's input parameters
  std::vector<float> out_scales;  // input scale * weight scale, per output (static)
  // Static stages whose consumer is quantized too hand it uint8 in its input parameters `out`
  // (Note [Quantized model]): the bias in int32 units of input scale * weight scale, and the
  // multiplier from those units to the output's.
  bool out_quantized = false;
  QParams out;
  std::vector<int32_t> bias_q;
  std::vector<float> out_multiplier;

  void finish() {
    prepare(w);
    if (dynamic) return;
    out_scales.resize(w.scales.size());
    for (size_t j = 0; j < w.scales.size(); ++j) out_scales[j] = input.scale * w.scales[j];
    if (!out_quantized) return;
    bias_q.assign(w.scales.size(), 0);
    out_multiplier.resize(w.scales.size());
    const float* b = bias.defined() ? bias.data() : nullptr;
    for (size_t j = 0; j < w.scales.size(); ++j) {
      if (b != nullptr) {
        const double units = std::nearbyint(static_cast<double>(b[j]) / static_cast<double>(out_scales[j]));
        bias_q[j] = static_cast<int32_t>(std::clamp(units, -1073741824.0, 1073741824.0));
      }
      out_multiplier[j] = out_scales[j] / out.scale;
    }
  }

  // The input's parameters and the per-output scales that go with them: fixed, or (dynamic) from
  // this batch's range, the scales then written to `dynamic_scales`.
  QParams input_params(const Tensor<float>& x, std::vector<float>& dynamic_scales, const float*& scales) const {
    if (!dynamic) {
      scales = out_scales.data();
      return input;
    }
    QParams q;
    float scale = 1.0f;
    int32_t zero = 0;
    if (x.numel() == 0) throw ValueError("the input is empty: nothing to quantize dynamically");
    if (!detail::dynamic_input_params(x.data(), x.numel(), scale, zero)) {
      throw ValueError("NaN or infinity in the input: a dynamic layer quantizes by its range");
    }
    q.scale = scale;
    q.zero_point = zero;
    dynamic_scales.resize(w.scales.size());
    for (size_t j = 0; j < w.scales.size(); ++j) dynamic_scales[j] = q.scale * w.scales[j];
    scales = dynamic_scales.data();
    return q;
  }

  // Whether an incoming uint8 activation is already in this stage's input parameters.
  bool takes(const Activation& a) const {
    return a.quantized.defined() && !dynamic && a.params.scale == input.scale && a.params.zero_point == input.zero_point;
  }

  // The constants as the raw-pointer layer code reads them.
  detail::Int8Affine layer() const {
    detail::Int8Affine l;
    l.out = w.out;
    l.k = w.k;
    l.packed = w.packed.data();
    l.sums = w.sums.data();
    l.weight_scales = w.scales.data();
    l.bias = bias.defined() ? bias.data() : nullptr;
    l.relu = relu;
    l.dynamic = dynamic;
    l.in_scale = input.scale;
    l.in_zero = static_cast<int32_t>(input.zero_point);
    l.out_scales = out_scales.data();
    l.out_quantized = out_quantized;
    l.out_scale = out.scale;
    l.out_zero = static_cast<int32_t>(out.zero_point);
    l.bias_q = bias_q.data();
    l.out_multiplier = out_multiplier.data();
    return l;
  }

  // Rows of u8 activations [m, k] -> float outputs [m, out].
  void multiply(int64_t m, const uint8_t* a, const QParams& in, const float* scales, float* y) const {
    int32_t* acc = scratch<int32_t, 0>(static_cast<size_t>(m * w.out));
    detail::int8_rows_to_float(layer(), m, a, static_cast<int32_t>(in.zero_point), scales, acc, y);
  }

  // Rows of u8 activations [m, k] -> u8 outputs [m, out] in the parameters `out`.
  void multiply_to_u8(int64_t m, const uint8_t* a, uint8_t* y) const {
    int32_t* acc = scratch<int32_t, 0>(static_cast<size_t>(m * w.out));
    detail::int8_rows_to_u8(layer(), m, a, acc, y);
  }

  std::string params_str() const {
    std::string s = relu ? ", relu" : "";
    if (dynamic) return s + ", dynamic";
    s += cat_str(", scale=", input.scale, ", zero_point=", input.zero_point);
    if (out_quantized) s += cat_str(", output_scale=", out.scale, ", output_zero_point=", out.zero_point);
    return s;
  }
};

void quantize_activations(const float* x, int64_t n, const QParams& q, uint8_t* out) {
  detail::quantize_activations(x, n, q.scale, static_cast<int32_t>(q.zero_point), out);
}

class QuantizedLinear final : public Stage {
 public:
  // chw: the [C, H, W] of a channels-last image flattened into this layer's input, when its
  // weights' columns are in that order (0s otherwise).
  QuantizedLinear(AffineCore core, std::array<int64_t, 3> chw) : core_(std::move(core)), chw_(chw) {}

  Activation run(const Activation& x) const override {
    const int64_t in = core_.w.k;
    const uint8_t* a = nullptr;
    Shape shape;
    QParams q = core_.input;
    std::vector<float> dynamic_scales;
    const float* scales = core_.out_scales.data();
    if (core_.takes(x) && x.quantized.dim() >= 1 && x.quantized.shape()[x.quantized.dim() - 1] == in) {
      a = x.quantized.data();
      shape = x.quantized.shape();
    } else {
      Tensor<float> xf = to_float(x);
      if (chw_[0] > 0 && xf.dim() == 2 && xf.shape()[1] == in) {  // features in channels-first order
        xf = xf.reshape({xf.shape()[0], chw_[0], chw_[1], chw_[2]}).permute({0, 2, 3, 1}).reshape({xf.shape()[0], in});
      }
      if (xf.dim() < 1 || xf.shape()[xf.dim() - 1] != in) {
        throw ShapeError(cat_str("QuantizedLinear: expected an input [*, ", in, "], got ", xf.shape()));
      }
      const Tensor<float> xc = xf.contiguous();
      q = core_.input_params(xc, dynamic_scales, scales);
      uint8_t* buf = scratch<uint8_t, 1>(static_cast<size_t>(xc.numel()));
      quantize_activations(xc.data(), xc.numel(), q, buf);
      a = buf;
      shape = xc.shape();
    }
    const int64_t m = shape.numel() / std::max<int64_t>(in, 1);
    std::vector<int64_t> out_shape(shape.begin(), shape.end());
    out_shape.back() = core_.w.out;
    Activation y;
    if (core_.out_quantized) {
      y.quantized = empty<uint8_t>(Shape(out_shape));
      y.params = core_.out;
      core_.multiply_to_u8(m, a, y.quantized.data());
    } else {
      y.value = empty<float>(Shape(out_shape));
      core_.multiply(m, a, q, scales, y.value.data());
    }
    return y;
  }
  std::optional<QParams> input_params() const override {
    return core_.dynamic ? std::nullopt : std::optional<QParams>(core_.input);
  }
  std::string str() const override {
    return cat_str("QuantizedLinear(in_features=", core_.w.k, ", out_features=", core_.w.out, core_.params_str(),
                   chw_[0] > 0 ? ", channels_last_input" : "", ")");
  }
  const AffineCore& core() const noexcept { return core_; }
  const std::array<int64_t, 3>& chw() const noexcept { return chw_; }

 private:
  AffineCore core_;
  std::array<int64_t, 3> chw_;
};

class QuantizedConv2d final : public Stage {
 public:
  QuantizedConv2d(AffineCore core, int64_t in_channels, int64_t kh, int64_t kw, Conv2dGeometry g)
      : core_(std::move(core)), c_(in_channels), kh_(kh), kw_(kw), g_(g),
        direct_(detail::int8_direct_conv_weights(core_.layer(), {c_, 0, 0, kh_, kw_, 0, 0, g_})) {}

  Activation run(const Activation& x) const override {
    // The input as channels-last uint8 images.
    const uint8_t* images_u8 = nullptr;
    int64_t n = 0, h = 0, w = 0;
    QParams q = core_.input;
    std::vector<float> dynamic_scales;
    const float* scales = core_.out_scales.data();
    const bool channels_last = core_.takes(x) && x.quantized.dim() == 4 && x.quantized.shape()[3] == c_;
    if (channels_last) {
      n = x.quantized.shape()[0];
      h = x.quantized.shape()[1];
      w = x.quantized.shape()[2];
      images_u8 = x.quantized.data();
    } else {
      const Tensor<float> xf = to_float(x);
      if (xf.dim() != 4 || xf.shape()[1] != c_) {
        throw ShapeError(cat_str("QuantizedConv2d: expected an input [N, ", c_, ", H, W], got ", xf.shape()));
      }
      n = xf.shape()[0];
      h = xf.shape()[2];
      w = xf.shape()[3];
      const Tensor<float> xc = xf.contiguous();
      q = core_.input_params(xc, dynamic_scales, scales);
      uint8_t* qx = scratch<uint8_t, 2>(static_cast<size_t>(xc.numel()));
      quantize_activations(xc.data(), xc.numel(), q, qx);
      images_u8 = qx;
    }
    detail::Int8ConvShape shape{c_, h, w, kh_, kw_, 0, 0, g_};
    detail::int8_conv_output(shape);
    const int64_t ho = shape.ho, wo = shape.wo;
    if (ho <= 0 || wo <= 0) {
      throw ShapeError(cat_str("QuantizedConv2d: input of ", h, "x", w, " pixels is smaller than the ", kh_, "x", kw_,
                               " kernel"));
    }
    const int64_t out_c = core_.w.out, k = core_.w.k, pixels = ho * wo, plane = h * w;
    Activation y;
    if (core_.out_quantized) {
      y.quantized = empty<uint8_t>({n, ho, wo, out_c});
      y.params = core_.out;
    } else {
      y.value = empty<float>({n, out_c, ho, wo});
    }
    detail::Int8Affine layer = core_.layer();
    layer.direct_packed = direct_.empty() ? nullptr : direct_.data();
    // Image by image (the rows of a batch would not stay in cache), images spread over threads.
    auto images = [&](int64_t b0, int64_t b1) {
      uint8_t* nhwc = scratch<uint8_t, 3>(static_cast<size_t>(c_ * plane));
      uint8_t* work = scratch<uint8_t, 4>(static_cast<size_t>(detail::int8_conv_work_bytes(shape, k)));
      int32_t* acc = scratch<int32_t, 0>(static_cast<size_t>(pixels * out_c));
      for (int64_t b = b0; b < b1; ++b) {
        const uint8_t* img = images_u8 + b * c_ * plane;
        if (!channels_last && c_ > 1) {  // channels last, so that each kernel tap of a row is one run of C bytes
          detail::to_channels_last_u8(img, c_, plane, nhwc);
          img = nhwc;
        }
        // Channels last is the GEMM's own output order, and the next quantized layer's input.
        uint8_t* y_u8 = core_.out_quantized ? y.quantized.data() + b * pixels * out_c : nullptr;
        float* y_float = core_.out_quantized ? nullptr : y.value.data() + b * out_c * pixels;
        detail::int8_conv_image(layer, shape, img, static_cast<int32_t>(q.zero_point), scales, work, acc, y_u8,
                                y_float);
      }
    };
    if (n == 1) {
      images(0, 1);
    } else {
      ember::detail::parallel_for(0, n, 1, images);
    }
    return y;
  }

  std::optional<QParams> input_params() const override {
    return core_.dynamic ? std::nullopt : std::optional<QParams>(core_.input);
  }

  std::string str() const override {
    return cat_str("QuantizedConv2d(", c_, ", ", core_.w.out, ", kernel_size=", pair_str(kh_, kw_),
                   ", stride=", pair_str(g_.stride[0], g_.stride[1]), ", padding=(", g_.padding[0], ", ",
                   g_.padding[1], ", ", g_.padding[2], ", ", g_.padding[3], "), dilation=",
                   pair_str(g_.dilation[0], g_.dilation[1]), core_.params_str(), ")");
  }
  const AffineCore& core() const noexcept { return core_; }
  int64_t in_channels() const noexcept { return c_; }
  int64_t kh() const noexcept { return kh_; }
  int64_t kw() const noexcept { return kw_; }
  const Conv2dGeometry& geometry() const noexcept { return g_; }

 private:
  AffineCore core_;
  int64_t c_, kh_, kw_;
  Conv2dGeometry g_;
  std::vector<int8_t> direct_;  // the weights in the direct convolution's order, when it differs
};

// ---- Float stages --------------------------------------------------------------------------------

class MaxPoolStage final : public Stage {
 public:
  MaxPoolStage(IntPair k, MaxPool2dOptions o) : k_(k), o_(o) {}
  // uint8 images pool as they are (max commutes with quantization); floats through the op.
  bool pools_quantized() const noexcept { return !o_.ceil_mode; }
  Activation run(const Activation& x) const override {
    if (!x.quantized.defined() || x.quantized.dim() != 4 || !pools_quantized()) return {max_pool2d(to_float(x), k_, o_)};
    const int64_t n = x.quantized.shape()[0], h = x.quantized.shape()[1], w = x.quantized.shape()[2];
    const int64_t c = x.quantized.shape()[3];
    const int64_t sh = o_.stride.h ? o_.stride.h : k_.h, sw = o_.stride.w ? o_.stride.w : k_.w;
    const int64_t ho = (h + 2 * o_.padding.h - o_.dilation.h * (k_.h - 1) - 1) / sh + 1;
    const int64_t wo = (w + 2 * o_.padding.w - o_.dilation.w * (k_.w - 1) - 1) / sw + 1;
    if (ho <= 0 || wo <= 0) throw ShapeError(cat_str("MaxPool2d: input of ", h, "x", w, " pixels is smaller than the window"));
    Activation y;
    y.quantized = empty<uint8_t>({n, ho, wo, c});
    y.params = x.params;
    const backend::PoolShape shape{h, w, ho, wo, k_.h, k_.w, sh, sw, o_.padding.h, o_.padding.w, o_.dilation.h,
                                   o_.dilation.w};
    // Images in parallel, in pieces of some 32k compared bytes (as a plan's MaxPoolU8 step).
    const int64_t in_image = h * w * c, out_image = ho * wo * c;
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(out_image * k_.h * k_.w, 1));
    ember::detail::parallel_for(0, n, grain, [&](int64_t b0, int64_t b1) {
      backend::int8_kernels().max_pool_u8(shape, b1 - b0, c, x.quantized.data() + b0 * in_image,
                                          y.quantized.data() + b0 * out_image);
    });
    return y;
  }
  std::string str() const override {
    return cat_str("MaxPool2d(kernel_size=", pair_str(k_.h, k_.w), ", stride=",
                   pair_str(o_.stride.h ? o_.stride.h : k_.h, o_.stride.w ? o_.stride.w : k_.w), ", padding=",
                   pair_str(o_.padding.h, o_.padding.w), ")");
  }
  IntPair k_;
  MaxPool2dOptions o_;
};

class AvgPoolStage final : public Stage {
 public:
  AvgPoolStage(IntPair k, AvgPool2dOptions o) : k_(k), o_(o) {}
  Activation run(const Activation& x) const override { return {avg_pool2d(to_float(x), k_, o_)}; }
  std::string str() const override {
    return cat_str("AvgPool2d(kernel_size=", pair_str(k_.h, k_.w), ", stride=",
                   pair_str(o_.stride.h ? o_.stride.h : k_.h, o_.stride.w ? o_.stride.w : k_.w), ")");
  }
  IntPair k_;
  AvgPool2dOptions o_;
};

class AdaptiveAvgPoolStage final : public Stage {
 public:
  explicit AdaptiveAvgPoolStage(IntPair out) : out_(out) {}
  Activation run(const Activation& x) const override { return {adaptive_avg_pool2d(to_float(x), out_)}; }
  std::string str() const override { return cat_str("AdaptiveAvgPool2d(output_size=", pair_str(out_.h, out_.w), ")"); }
  IntPair out_;
};

class FlattenStage final : public Stage {
 public:
  // channels_last: a uint8 image stays channels last, flattened as [N, H * W * C], for a
  // QuantizedLinear whose weights expect that order.
  FlattenStage(nn::FlattenOptions o, bool channels_last) : o_(o), channels_last_(channels_last) {}
  bool full() const noexcept { return o_.start_dim == 1 && (o_.end_dim == -1 || o_.end_dim == 3); }
  Activation run(const Activation& x) const override {
    if (channels_last_ && full() && x.quantized.defined() && x.quantized.dim() == 4) {
      const Shape& s = x.quantized.shape();
      return {Tensor<float>(), x.quantized.reshape({s[0], s[1] * s[2] * s[3]}), x.params};
    }
    return {to_float(x).flatten(o_.start_dim, o_.end_dim)};
  }
  std::string str() const override { return cat_str("Flatten(start_dim=", o_.start_dim, ", end_dim=", o_.end_dim, ")"); }
  nn::FlattenOptions o_;
  bool channels_last_;
};

class ReluStage final : public Stage {
 public:
  Activation run(const Activation& x) const override { return {relu(to_float(x))}; }
  std::string str() const override { return "ReLU()"; }
};

// ---- From a float model --------------------------------------------------------------------------

// A Linear or Conv2d with its batch norm folded in and its ReLU noted, still in float: what
// calibration runs and observes.
struct FloatAffine {
  std::string path;
  std::string weight_name = "weight";  // an RNN's projections: "weight_ih_l0" and so on
  bool conv = false;
  Tensor<float> weight, bias;  // weight [O, in] or [O, C, kh, kw]
  Conv2dGeometry geometry;
  bool relu = false;

  Tensor<float> run(const Tensor<float>& x) const {
    Tensor<float> y = conv ? conv2d(x, weight, bias, geometry) : nn::functional::linear(x, weight, bias);
    return relu ? ember::relu(y) : y;
  }
};

// A Linear or Conv2d left in float (QuantizeOptions::keep_float), batch norm and ReLU folded in.
class FloatAffineStage final : public Stage {
 public:
  explicit FloatAffineStage(FloatAffine layer) : layer_(std::move(layer)) {}
  Activation run(const Activation& x) const override { return {layer_.run(to_float(x))}; }
  std::string str() const override {
    const Tensor<float>& w = layer_.weight;
    const std::string tail = cat_str(layer_.bias.defined() ? "" : ", bias=False", layer_.relu ? ", relu" : "", ", float)");
    if (!layer_.conv) return cat_str("Linear(in_features=", w.shape()[1], ", out_features=", w.shape()[0], tail);
    const Conv2dGeometry& g = layer_.geometry;
    return cat_str("Conv2d(", w.shape()[1], ", ", w.shape()[0], ", kernel_size=", pair_str(w.shape()[2], w.shape()[3]),
                   ", stride=", pair_str(g.stride[0], g.stride[1]), ", padding=(", g.padding[0], ", ", g.padding[1],
                   ", ", g.padding[2], ", ", g.padding[3], "), dilation=", pair_str(g.dilation[0], g.dilation[1]), tail);
  }
  const FloatAffine& layer() const noexcept { return layer_; }

 private:
  FloatAffine layer_;
};

// A ResNet BasicBlock: relu(conv2(conv1(x)) + shortcut(x)) with int8 convolutions (batch norms
// folded in, conv1's ReLU fused). conv1 hands conv2 uint8 (channels last); conv2 and the
// downsampling shortcut output floats, which are added, with the identity shortcut's x, and
// rectified in float: the block takes and gives floats.
class QuantizedBasicBlock final : public Stage {
 public:
  QuantizedBasicBlock(std::shared_ptr<const QuantizedConv2d> conv1, std::shared_ptr<const QuantizedConv2d> conv2,
                      std::shared_ptr<const QuantizedConv2d> downsample)
      : conv1_(std::move(conv1)), conv2_(std::move(conv2)), downsample_(std::move(downsample)) {}
  Activation run(const Activation& x) const override {
    const Activation input{to_float(x)};
    const Tensor<float> residual = to_float(conv2_->run(conv1_->run(input)));
    const Tensor<float> shortcut = downsample_ ? to_float(downsample_->run(input)) : input.value;
    return {relu(residual + shortcut)};
  }
  std::string str() const override {
    return cat_str("QuantizedBasicBlock(conv1=", conv1_->str(), ", conv2=", conv2_->str(),
                   downsample_ ? ", downsample=" + downsample_->str() : std::string(), ")");
  }
  const std::shared_ptr<const QuantizedConv2d>& conv1() const noexcept { return conv1_; }
  const std::shared_ptr<const QuantizedConv2d>& conv2() const noexcept { return conv2_; }
  const std::shared_ptr<const QuantizedConv2d>& downsample() const noexcept { return downsample_; }

 private:
  std::shared_ptr<const QuantizedConv2d> conv1_, conv2_, downsample_;
};

// A BasicBlock's convolutions in float, batch norms folded, as calibration runs them.
struct BlockPlan {
  std::string path;
  FloatAffine conv1, conv2;  // conv1 with its ReLU
  std::shared_ptr<FloatAffine> downsample;
};

struct PlanStep {
  std::shared_ptr<const Stage> fixed;  // a float stage
  std::shared_ptr<FloatAffine> affine;  // or a layer to quantize
  bool keep_float = false;              // ... or to leave in float, folded
  std::shared_ptr<BlockPlan> block;     // or a residual block to quantize
};

void flatten_modules(nn::Module<float>& m, const std::string& path,
                     std::vector<std::pair<std::string, nn::Module<float>*>>& out) {
  if (dynamic_cast<nn::Sequential<float>*>(&m) != nullptr) {
    for (const auto& [name, child] : m.named_children())
      flatten_modules(*child, path.empty() ? name : path + "." + name, out);
    return;
  }
  out.emplace_back(path, &m);
}

std::string describe(const std::string& path, const nn::Module<float>& m) {
  return cat_str("module '", path.empty() ? "<root>" : path, "' (", m.type_name(), ")");
}

// BatchNorm2d folded into the convolution before it, as torch.nn.utils.fuse_conv_bn_weights does.
void fold_batch_norm(FloatAffine& conv, const nn::BatchNorm<float>& bn, const std::string& path) {
  if (!bn.running_mean.defined() || !bn.running_var.defined()) {
    throw ValueError(cat_str("quantize: ", describe(path, bn), " has no running statistics to fold"));
  }
  NoGradGuard no_grad;
  const int64_t o = conv.weight.shape()[0];
  if (bn.num_features != o) {
    throw ShapeError(cat_str("quantize: ", describe(path, bn), " has ", bn.num_features,
                             " features but the convolution before it ", o, " outputs"));
  }
  const Tensor<float> inv_std = rsqrt(bn.running_var + static_cast<float>(bn.options.eps));
  const Tensor<float> gamma = bn.weight.defined() ? bn.weight.detach() : ones<float>({o});
  const Tensor<float> beta = bn.bias.defined() ? bn.bias.detach() : zeros<float>({o});
  const Tensor<float> factor = gamma * inv_std;
  conv.weight = (conv.weight * factor.reshape({o, 1, 1, 1})).contiguous();
  const Tensor<float> b = conv.bias.defined() ? conv.bias : zeros<float>({o});
  conv.bias = ((b - bn.running_mean) * factor + beta).contiguous();
}

FloatAffine conv_affine(nn::Conv2d<float>& conv, const std::string& path) {
  if (conv.options.groups != 1) {
    throw ValueError(cat_str("quantize: ", describe(path, conv), " has groups=", conv.options.groups,
                             "; quantized convolutions support groups=1"));
  }
  FloatAffine a;
  a.path = path;
  a.conv = true;
  a.weight = conv.weight.detach().contiguous();
  if (conv.bias.defined()) a.bias = conv.bias.detach().contiguous();
  a.geometry = nn::conv2d_geometry(conv.options, conv.kernel_size.h, conv.kernel_size.w, "quantize");
  return a;
}

std::shared_ptr<const DynamicRNN> quantize_rnn(const nn::RNNBase<float>& rnn, bool lstm,
                                               const std::string& path, bool per_channel);

std::vector<PlanStep> plan(nn::Module<float>& model, bool dynamic_only,
                           const std::vector<std::string>& keep_float = {},
                           bool per_channel = true) {
  std::vector<std::pair<std::string, nn::Module<float>*>> modules;
  flatten_modules(model, "", modules);
  std::string affine_paths;
  for (const auto& [path, m] : modules) {
    if (dynamic_cast<nn::Linear<float>*>(m) != nullptr || dynamic_cast<nn::Conv2d<float>*>(m) != nullptr) {
      affine_paths += (affine_paths.empty() ? "" : ", ") + path;
    }
  }
  for (const std::string& name : keep_float) {
    bool found = false;
    for (const auto& [path, m] : modules) {
      found = found || (path == name && (dynamic_cast<nn::Linear<float>*>(m) != nullptr ||
                                         dynamic_cast<nn::Conv2d<float>*>(m) != nullptr));
    }
    if (!found) {
      throw ValueError(cat_str("quantize: keep_float names '", name, "', which is not a Linear or Conv2d of the model (",
                               affine_paths.empty() ? std::string("it has none") : "they are: " + affine_paths, ")"));
    }
  }
  auto kept = [&](const std::string& path) {
    return std::find(keep_float.begin(), keep_float.end(), path) != keep_float.end();
  };
  std::vector<PlanStep> steps;
  NoGradGuard no_grad;
  for (const auto& [path, m] : modules) {
    FloatAffine* last = steps.empty() || !steps.back().affine ? nullptr : steps.back().affine.get();
    if (auto* lin = dynamic_cast<nn::Linear<float>*>(m)) {
      auto a = std::make_shared<FloatAffine>();
      a->path = path;
      a->weight = lin->weight.detach().contiguous();
      if (lin->bias.defined()) a->bias = lin->bias.detach().contiguous();
      steps.push_back({nullptr, a, kept(path)});
    } else if (auto* conv = dynamic_cast<nn::Conv2d<float>*>(m); conv != nullptr && !dynamic_only) {
      steps.push_back({nullptr, std::make_shared<FloatAffine>(conv_affine(*conv, path)), kept(path)});
    } else if (auto* bb = dynamic_cast<nn::BasicBlock<float>*>(m); bb != nullptr && !dynamic_only) {
      auto block = std::make_shared<BlockPlan>();
      block->path = path;
      block->conv1 = conv_affine(*bb->conv1, path + ".conv1");
      fold_batch_norm(block->conv1, *bb->bn1, path + ".bn1");
      block->conv1.relu = true;
      block->conv2 = conv_affine(*bb->conv2, path + ".conv2");
      fold_batch_norm(block->conv2, *bb->bn2, path + ".bn2");
      if (bb->downsample) {
        auto* ds_conv = dynamic_cast<nn::Conv2d<float>*>(bb->downsample->named_children().at(0).second.get());
        auto* ds_bn = dynamic_cast<nn::BatchNorm<float>*>(bb->downsample->named_children().at(1).second.get());
        if (ds_conv == nullptr || ds_bn == nullptr || bb->downsample->named_children().size() != 2) {
          throw ValueError(cat_str("quantize: ", describe(path + ".downsample", *bb->downsample),
                                   " is not a Conv2d and a BatchNorm2d"));
        }
        block->downsample = std::make_shared<FloatAffine>(conv_affine(*ds_conv, path + ".downsample.0"));
        fold_batch_norm(*block->downsample, *ds_bn, path + ".downsample.1");
      }
      steps.push_back({nullptr, nullptr, false, block});
    } else if (auto* bn = dynamic_cast<nn::BatchNorm<float>*>(m); bn != nullptr && !dynamic_only) {
      if (last == nullptr || !last->conv || last->relu) {
        throw ValueError(cat_str("quantize: ", describe(path, *m),
                                 " must follow a Conv2d directly to be folded into it"));
      }
      fold_batch_norm(*last, *bn, path);
    } else if (dynamic_cast<nn::ReLU<float>*>(m) != nullptr) {
      if (last != nullptr && !last->relu && !dynamic_only) {
        last->relu = true;
      } else {
        steps.push_back({std::make_shared<ReluStage>(), nullptr});
      }
    } else if (auto* lstm = dynamic_cast<nn::LSTM<float>*>(m); lstm != nullptr && dynamic_only) {
      steps.push_back({quantize_rnn(*lstm, true, path, per_channel), nullptr});
    } else if (auto* gru = dynamic_cast<nn::GRU<float>*>(m); gru != nullptr && dynamic_only) {
      steps.push_back({quantize_rnn(*gru, false, path, per_channel), nullptr});
    } else if (dynamic_cast<nn::Dropout<float>*>(m) != nullptr ||
               dynamic_cast<nn::Identity<float>*>(m) != nullptr) {
      continue;
    } else if (auto* f = dynamic_cast<nn::Flatten<float>*>(m)) {
      steps.push_back({std::make_shared<FlattenStage>(f->options(), false), nullptr});
    } else if (auto* mp = dynamic_cast<nn::MaxPool2d<float>*>(m)) {
      steps.push_back({std::make_shared<MaxPoolStage>(mp->kernel_size(), mp->options()), nullptr});
    } else if (auto* ap = dynamic_cast<nn::AvgPool2d<float>*>(m)) {
      steps.push_back({std::make_shared<AvgPoolStage>(ap->kernel_size(), ap->options()), nullptr});
    } else if (auto* aap = dynamic_cast<nn::AdaptiveAvgPool2d<float>*>(m)) {
      steps.push_back({std::make_shared<AdaptiveAvgPoolStage>(aap->output_size()), nullptr});
    } else {
      throw ValueError(
          cat_str(dynamic_only ? "quantize_dynamic: " : "quantize: ", describe(path, *m),
                  " is not supported (supported: Sequential of Linear, ",
                  dynamic_only ? "LSTM, GRU, " : "Conv2d, BatchNorm2d after a Conv2d, BasicBlock, ",
                  "ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Identity)"));
    }
  }
  if (steps.empty()) throw ValueError("quantize: the model has no layers");
  return steps;
}

// How a quantized layer connects to the next (Note [Quantized model]).
struct Link {
  bool out_quantized = false;
  QParams out;
  std::array<int64_t, 3> chw{0, 0, 0};  // a Linear fed a flattened channels-last image
};

std::shared_ptr<const Stage> make_quantized(const FloatAffine& a, bool per_channel, bool dynamic, QParams input,
                                            const Link& link = {}) {
  AffineCore core;
  Tensor<float> weight = a.weight;
  if (link.chw[0] > 0) {  // columns in the channels-last order the flattened image arrives in
    const int64_t out = weight.shape()[0];
    if (link.chw[0] * link.chw[1] * link.chw[2] != weight.shape()[1]) {
      throw ShapeError(cat_str("quantize: '", a.path, "' takes ", weight.shape()[1], " features but is fed a ",
                               link.chw[0], "x", link.chw[1], "x", link.chw[2], " image"));
    }
    weight = weight.reshape({out, link.chw[0], link.chw[1], link.chw[2]}).permute({0, 2, 3, 1}).reshape({out, -1}).contiguous();
  }
  core.w = quantize_weights(weight, per_channel,
                            a.path.empty() ? a.weight_name : a.path + "." + a.weight_name);
  core.bias = a.bias;
  core.relu = a.relu;
  core.dynamic = dynamic;
  core.input = input;
  core.out_quantized = link.out_quantized;
  core.out = link.out;
  core.finish();
  if (!a.conv) return std::make_shared<QuantizedLinear>(std::move(core), link.chw);
  return std::make_shared<QuantizedConv2d>(std::move(core), a.weight.shape()[1], a.weight.shape()[2],
                                           a.weight.shape()[3], a.geometry);
}

// Calls f(name, in_features) for an RNN's projections in PyTorch's order (Note [Dynamic RNN]):
// per layer and direction the input one, then the recurrent one, named by PyTorch's parameter
// suffixes ("ih_l0", "hh_l1_reverse").
template <class F>
void for_each_projection(const nn::RNNOptions& o, int64_t input_size, int64_t hidden_size, F f) {
  const int64_t dirs = o.bidirectional ? 2 : 1;
  for (int64_t layer = 0; layer < o.num_layers; ++layer)
    for (int64_t d = 0; d < dirs; ++d)
      for (bool recurrent : {false, true}) {
        f(cat_str(recurrent ? "hh" : "ih", "_l", layer, d ? "_reverse" : ""),
          recurrent ? hidden_size : layer == 0 ? input_size : hidden_size * dirs);
      }
}

std::shared_ptr<const DynamicRNN> quantize_rnn(const nn::RNNBase<float>& rnn, bool lstm,
                                               const std::string& path, bool per_channel) {
  NoGradGuard no_grad;
  std::map<std::string, Tensor<float>> params;
  for (const auto& [name, t] : rnn.named_parameters()) params[name] = t.detach().contiguous();
  DynamicRNN::Projections projections;
  for_each_projection(rnn.options, rnn.input_size, rnn.hidden_size, [&](const std::string& name, int64_t) {
    FloatAffine a;
    a.path = path;
    a.weight_name = "weight_" + name;
    a.weight = params.at("weight_" + name);
    if (rnn.options.bias) a.bias = params.at("bias_" + name);
    projections.emplace_back(name, make_quantized(a, per_channel, true, {}));
  });
  return std::make_shared<DynamicRNN>(lstm, rnn.input_size, rnn.hidden_size, rnn.options,
                                      std::move(projections));
}

}  // namespace

Tensor<float> Stage::forward(const Tensor<float>& x) const {
  NoGradGuard no_grad;
  return to_float(run(Activation{x.detach()}));
}

DynamicRNN::DynamicRNN(bool lstm, int64_t input_size, int64_t hidden_size, nn::RNNOptions options,
                       Projections projections)
    : lstm_(lstm),
      input_size_(input_size),
      hidden_size_(hidden_size),
      options_(options),
      projections_(std::move(projections)) {
  const std::string name = lstm ? "DynamicQuantizedLSTM" : "DynamicQuantizedGRU";
  if (input_size <= 0 || hidden_size <= 0 || options.num_layers <= 0) {
    throw ValueError(cat_str(name, ": input_size ", input_size, ", hidden_size ", hidden_size,
                             " and num_layers ", options.num_layers, " must be positive"));
  }
  const int64_t dirs = options.bidirectional ? 2 : 1, gates = lstm ? 4 : 3;
  // Counted first: the walk below indexes projections_.
  if (static_cast<int64_t>(projections_.size()) != options.num_layers * dirs * 2) {
    throw ValueError(cat_str(name, ": ", projections_.size(), " projections, expected ",
                             options.num_layers * dirs * 2,
                             " (input and recurrent, per layer and direction)"));
  }
  size_t next = 0;
  for_each_projection(options, input_size, hidden_size, [&](const std::string& expected, int64_t in) {
    const auto& [given, stage] = projections_[next++];
    const auto* linear = dynamic_cast<const QuantizedLinear*>(stage.get());
    if (given != expected || linear == nullptr) {
      throw ValueError(cat_str(name, ": projection ", next - 1, " is '", given, "' (", stage ? stage->str() : "none",
                               "), expected '", expected, "', a quantized Linear"));
    }
    const AffineCore& c = linear->core();
    if (!c.dynamic || c.relu || c.out_quantized || linear->chw()[0] != 0 || c.w.k != in ||
        c.w.out != gates * hidden_size || c.bias.defined() != options.bias) {
      throw ValueError(cat_str(name, ": projection '", expected, "' is ", linear->str(),
                               c.bias.defined() ? " with" : " without", " bias; expected a dynamic Linear of ", in,
                               " -> ", gates * hidden_size, options.bias ? " with" : " without", " bias"));
    }
  });
}

std::tuple<Tensor<float>, Tensor<float>, Tensor<float>> DynamicRNN::forward_with_state(
    const Tensor<float>& x, const Tensor<float>& h0, const Tensor<float>& c0) const {
  NoGradGuard no_grad;
  const nn::detail::RnnShape shape{lstm_ ? "DynamicQuantizedLSTM" : "DynamicQuantizedGRU",
                                   lstm_ ? nn::detail::RnnCell::LSTM : nn::detail::RnnCell::GRU,
                                   input_size_, hidden_size_, options_};
  const int64_t dirs = options_.bidirectional ? 2 : 1;
  auto project = [&](const Tensor<float>& in, int64_t layer, int64_t d, bool recurrent) {
    const auto& [name, stage] =
        projections_[static_cast<size_t>((layer * dirs + d) * 2 + (recurrent ? 1 : 0))];
    try {
      return stage->forward(in);
    } catch (Error& e) {
      e.prepend_module(cat_str(shape.name, " (projection weight_", name, ")"));
      throw;
    }
  };
  auto detached = [](const Tensor<float>& t) { return t.defined() ? t.detach() : t; };
  return nn::detail::run_rnn<float>(shape, false, detached(x), detached(h0), detached(c0), project);
}

Activation DynamicRNN::run(const Activation& x) const {
  return {std::get<0>(forward_with_state(to_float(x)))};
}

std::string DynamicRNN::str() const {
  return cat_str(
      lstm_ ? "DynamicQuantizedLSTM(" : "DynamicQuantizedGRU(", input_size_, ", ", hidden_size_,
      options_.num_layers != 1 ? cat_str(", num_layers=", options_.num_layers) : "",
      options_.bias ? "" : ", bias=False", options_.batch_first ? ", batch_first=True" : "",
      options_.bidirectional ? ", bidirectional=True" : "", ")");
}

Tensor<float> QuantizedModel::operator()(const Tensor<float>& x) const {
  if (stages_.empty()) throw ValueError("QuantizedModel: the model is empty (default-constructed?)");
  if (!x.defined()) throw ValueError("QuantizedModel: the input is undefined");
  NoGradGuard no_grad;
  Activation y{x.detach()};
  for (size_t i = 0; i < stages_.size(); ++i) {
    try {
      y = stages_[i]->run(y);
    } catch (Error& e) {
      e.prepend_module(cat_str("stage ", i));
      throw;
    }
  }
  return to_float(y);
}

std::string QuantizedModel::str() const {
  std::string s = "QuantizedModel(\n";
  for (size_t i = 0; i < stages_.size(); ++i) s += cat_str("  (", i, "): ", stages_[i]->str(), "\n");
  return s + ")";
}

QuantizedModel quantize(nn::Module<float>& model, const std::vector<Tensor<float>>& calibration,
                        const QuantizeOptions& options) {
  if (model.is_training()) {
    throw ValueError("quantize: the model is in training mode; call model.eval() first (batch norm is folded "
                     "with its running statistics and dropout removed)");
  }
  if (calibration.empty()) {
    throw ValueError("quantize: no calibration data; pass at least one batch of inputs");
  }
  std::vector<PlanStep> steps = plan(model, false, options.keep_float);
  // One observer per quantized layer's input.
  // (A block's: at its input, and at its conv2's.)
  std::vector<MinMaxObserver> minmax(steps.size()), minmax_mid(steps.size());
  std::vector<HistogramObserver> histogram(steps.size()), histogram_mid(steps.size());
  auto observe = [&](size_t i, bool mid, const Tensor<float>& x, const std::string& what) {
    if (options.observer == Observer::MinMax) {
      (mid ? minmax_mid : minmax)[i].observe(x, what.c_str());
    } else {
      (mid ? histogram_mid : histogram)[i].observe(x, what.c_str());
    }
  };
  std::vector<std::array<int64_t, 3>> image_shape(steps.size(), {0, 0, 0});  // at each Flatten's input
  NoGradGuard no_grad;
  for (size_t b = 0; b < calibration.size(); ++b) {
    const Tensor<float>& batch = calibration[b];
    if (!batch.defined() || batch.numel() == 0) {
      throw ValueError(cat_str("quantize: calibration batch ", b, " is empty"));
    }
    Tensor<float> y = batch;
    for (size_t i = 0; i < steps.size(); ++i) {
      if (dynamic_cast<const FlattenStage*>(steps[i].fixed.get()) != nullptr && y.dim() == 4) {
        image_shape[i] = {y.shape()[1], y.shape()[2], y.shape()[3]};
      }
      if (steps[i].affine) {
        const std::string what = cat_str("quantize: calibration batch ", b, " at the input of '", steps[i].affine->path, "'");
        if (!steps[i].keep_float) observe(i, false, y, what);
        try {
          y = steps[i].affine->run(y);
        } catch (Error& e) {
          e.prepend_module(steps[i].affine->path);
          throw;
        }
      } else if (steps[i].block) {
        const BlockPlan& block = *steps[i].block;
        observe(i, false, y, cat_str("quantize: calibration batch ", b, " at the input of '", block.path, "'"));
        try {
          const Tensor<float> mid = block.conv1.run(y);
          observe(i, true, mid, cat_str("quantize: calibration batch ", b, " at the input of '", block.conv2.path, "'"));
          const Tensor<float> shortcut = block.downsample ? block.downsample->run(y) : y;
          y = relu(block.conv2.run(mid) + shortcut);
        } catch (Error& e) {
          e.prepend_module(block.path);
          throw;
        }
      } else {
        y = steps[i].fixed->forward(y);
      }
    }
  }
  std::vector<QParams> inputs(steps.size()), mids(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    if ((steps[i].affine && !steps[i].keep_float) || steps[i].block) {
      inputs[i] = options.observer == Observer::MinMax ? minmax[i].qparams() : histogram[i].qparams();
    }
    if (steps[i].block) mids[i] = options.observer == Observer::MinMax ? minmax_mid[i].qparams() : histogram_mid[i].qparams();
  }
  // Links: a layer hands uint8 to the next quantized layer when only max pooling and a Flatten
  // (conv -> linear) stand between them.
  std::vector<Link> links(steps.size());
  std::vector<bool> flatten_channels_last(steps.size(), false);
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i].affine || steps[i].keep_float) continue;
    size_t j = i + 1;
    int64_t flatten = -1;
    bool passable = true;
    for (; j < steps.size() && !steps[j].affine; ++j) {
      const Stage* st = steps[j].fixed.get();
      if (const auto* mp = dynamic_cast<const MaxPoolStage*>(st); mp != nullptr && mp->pools_quantized() &&
                                                                  steps[i].affine->conv && flatten < 0) {
        continue;
      }
      if (const auto* fl = dynamic_cast<const FlattenStage*>(st); fl != nullptr && fl->full() && flatten < 0 &&
                                                                  steps[i].affine->conv && image_shape[j][0] > 0) {
        flatten = static_cast<int64_t>(j);
        continue;
      }
      passable = false;
      break;
    }
    if (!passable || j >= steps.size() || steps[j].keep_float) continue;
    const bool conv_to_conv = steps[i].affine->conv && steps[j].affine->conv && flatten < 0;
    const bool to_linear = !steps[j].affine->conv && (steps[i].affine->conv ? flatten >= 0 : true);
    if (!conv_to_conv && !to_linear) continue;
    links[i].out_quantized = true;
    links[i].out = inputs[j];
    if (flatten >= 0) {
      flatten_channels_last[static_cast<size_t>(flatten)] = true;
      links[j].chw = image_shape[static_cast<size_t>(flatten)];
    }
  }
  std::vector<std::shared_ptr<const Stage>> stages;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].block) {
      const BlockPlan& block = *steps[i].block;
      auto conv = [&](const FloatAffine& a, QParams input, const Link& link) {
        return std::dynamic_pointer_cast<const QuantizedConv2d>(
            make_quantized(a, options.per_channel, false, input, link));
      };
      stages.push_back(std::make_shared<QuantizedBasicBlock>(
          conv(block.conv1, inputs[i], {.out_quantized = true, .out = mids[i]}), conv(block.conv2, mids[i], {}),
          block.downsample ? conv(*block.downsample, inputs[i], {}) : nullptr));
      continue;
    }
    if (!steps[i].affine) {
      const auto* fl = dynamic_cast<const FlattenStage*>(steps[i].fixed.get());
      stages.push_back(fl != nullptr && flatten_channels_last[i] ? std::make_shared<FlattenStage>(fl->o_, true)
                                                                 : steps[i].fixed);
      continue;
    }
    if (steps[i].keep_float) {
      stages.push_back(std::make_shared<FloatAffineStage>(*steps[i].affine));
      continue;
    }
    stages.push_back(make_quantized(*steps[i].affine, options.per_channel, false, inputs[i], links[i]));
  }
  return QuantizedModel(std::move(stages));
}

QuantizedModel quantize_dynamic(nn::Module<float>& model, const DynamicOptions& options) {
  std::vector<PlanStep> steps = plan(model, true, {}, options.per_channel);
  std::vector<std::shared_ptr<const Stage>> stages;
  for (const PlanStep& s : steps) {
    stages.push_back(s.affine ? make_quantized(*s.affine, options.per_channel, true, {}) : s.fixed);
  }
  return QuantizedModel(std::move(stages));
}

std::shared_ptr<const DynamicRNN> quantize_dynamic(const nn::LSTM<float>& lstm,
                                                   const DynamicOptions& options) {
  return quantize_rnn(lstm, true, "", options.per_channel);
}

std::shared_ptr<const DynamicRNN> quantize_dynamic(const nn::GRU<float>& gru,
                                                   const DynamicOptions& options) {
  return quantize_rnn(gru, false, "", options.per_channel);
}

// ---- For deploy::compile -------------------------------------------------------------------------

namespace {

detail::StageInfo stage_info(const std::shared_ptr<const Stage>& s) {
  using detail::StageKind;
  detail::StageInfo info;
  info.stage = s;
  if (const auto* l = dynamic_cast<const QuantizedLinear*>(s.get())) {
    info.kind = StageKind::Int8Linear;
    info.layer = l->core().layer();
    info.chw = l->chw();
  } else if (const auto* c = dynamic_cast<const QuantizedConv2d*>(s.get())) {
    info.kind = StageKind::Int8Conv2d;
    info.layer = c->core().layer();
    info.in_channels = c->in_channels();
    info.kh = c->kh();
    info.kw = c->kw();
    info.geometry = c->geometry();
  } else if (const auto* mp = dynamic_cast<const MaxPoolStage*>(s.get())) {
    info.kind = StageKind::MaxPool;
    info.pools_quantized = mp->pools_quantized();
    const MaxPool2dOptions& o = mp->o_;
    info.kernel = {mp->k_.h, mp->k_.w};
    info.stride = {o.stride.h ? o.stride.h : mp->k_.h, o.stride.w ? o.stride.w : mp->k_.w};
    info.padding = {o.padding.h, o.padding.w};
    info.dilation = {o.dilation.h, o.dilation.w};
  } else if (const auto* fl = dynamic_cast<const FlattenStage*>(s.get())) {
    info.kind = StageKind::Flatten;
    info.flattens_all = fl->full();
    info.channels_last = fl->channels_last_;
  } else if (const auto* block = dynamic_cast<const QuantizedBasicBlock*>(s.get())) {
    info.kind = StageKind::BasicBlock;
    info.parts.push_back(stage_info(block->conv1()));
    info.parts.push_back(stage_info(block->conv2()));
    if (block->downsample()) info.parts.push_back(stage_info(block->downsample()));
  }
  return info;
}

}  // namespace

std::vector<detail::StageInfo> detail::stage_infos(const QuantizedModel& model) {
  std::vector<StageInfo> infos;
  for (const std::shared_ptr<const Stage>& s : model.stages()) infos.push_back(stage_info(s));
  return infos;
}

// ---- Files ---------------------------------------------------------------------------------------
//
// Note [Quantized model file]
// Safetensors, metadata "ember.quant.format" = "1" and "ember.quant.stages" = the count; stage i is
// described by "ember.quant.stage.i" = its kind and key=value fields (linear, conv2d, max_pool2d,
// avg_pool2d, adaptive_avg_pool2d, flatten, relu), and a Linear or Conv2d stage's tensors are
// "i.weight" (I8, the layer's weight shape), "i.weight_scale" (F32 [out]), "i.weight_zero_point"
// (I64 [out], zeros), "i.bias" (F32 [out], when it has one), for static quantization
// "i.input_scale" (F32 []) and "i.input_zero_point" (I64 []), and for a stage that hands uint8 to
// the next (out_quantized=1) "i.output_scale" and "i.output_zero_point". A Linear fed a flattened
// channels-last image (image_c/h/w not 0) stores its weight columns in that order. A layer kept in
// float (float_linear, float_conv2d) stores "i.weight" and "i.bias" as F32, batch norm folded in.
// A residual block (basic_block, downsample=0|1) describes its convolutions under
// "ember.quant.stage.i.conv1", ".conv2" and ".downsample", their tensors under "i.conv1." and so
// on; load checks that they fit together (conv1 hands conv2 uint8 in conv2's input parameters). A
// dynamic LSTM or GRU (lstm, gru: input, hidden, layers, bias, batch_first, bidirectional)
// describes its projections as dynamic linear stages under "ember.quant.stage.i.ih_l0", ".hh_l0",
// ".ih_l0_reverse" and so on (PyTorch's parameter suffixes), their tensors "i.ih_l0.weight" (I8
// [gates * hidden, in]), "i.ih_l0.weight_scale", "i.ih_l0.weight_zero_point", "i.ih_l0.bias".

namespace {

std::string fields(const std::map<std::string, int64_t>& f) {
  std::string s;
  for (const auto& [k, v] : f) s += cat_str(" ", k, "=", v);
  return s;
}

void put_affine(nn::StateDict& tensors, const std::string& prefix, const AffineCore& c) {
  tensors.push_back({prefix + "weight", c.w.values});
  tensors.push_back({prefix + "weight_scale", tensor<float>(c.w.scales, {c.w.out})});
  tensors.push_back({prefix + "weight_zero_point", zeros<int64_t>({c.w.out})});
  if (c.bias.defined()) tensors.push_back({prefix + "bias", c.bias});
  if (!c.dynamic) {
    tensors.push_back({prefix + "input_scale", tensor<float>(std::vector<float>{c.input.scale}, Shape{})});
    tensors.push_back({prefix + "input_zero_point", tensor<int64_t>(std::vector<int64_t>{c.input.zero_point}, Shape{})});
  }
  if (c.out_quantized) {
    tensors.push_back({prefix + "output_scale", tensor<float>(std::vector<float>{c.out.scale}, Shape{})});
    tensors.push_back({prefix + "output_zero_point", tensor<int64_t>(std::vector<int64_t>{c.out.zero_point}, Shape{})});
  }
}

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  throw FormatError(cat_str("quant::load: ", path, ": ", what));
}

struct StageFields {
  std::string kind;
  std::map<std::string, int64_t> values;
  int64_t get(const std::string& key, const std::string& path, size_t i) const {
    auto it = values.find(key);
    if (it == values.end()) bad_file(path, cat_str("stage ", i, " (", kind, ") lacks the field '", key, "'"));
    return it->second;
  }
};

StageFields parse_fields(const std::string& text, const std::string& path, size_t i) {
  std::istringstream in(text);
  StageFields f;
  in >> f.kind;
  std::string token;
  while (in >> token) {
    const size_t eq = token.find('=');
    if (eq == std::string::npos) bad_file(path, cat_str("stage ", i, ": malformed field '", token, "'"));
    char* end = nullptr;
    const std::string value = token.substr(eq + 1);
    const long long v = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0') bad_file(path, cat_str("stage ", i, ": field '", token, "' is not an integer"));
    f.values[token.substr(0, eq)] = v;
  }
  return f;
}

// Stage s's description for metadata key `key`, its tensors added under `prefix` (a block's
// convolutions described under key.conv1 and so on).
void save_stage(const Stage& s, const std::string& key, const std::string& prefix, nn::StateDict& tensors,
              std::map<std::string, std::string>& meta) {
  std::string desc;
  if (const auto* l = dynamic_cast<const QuantizedLinear*>(&s)) {
    const AffineCore& c = l->core();
    desc = "linear" + fields({{"in", c.w.k}, {"out", c.w.out}, {"relu", c.relu}, {"dynamic", c.dynamic},
                              {"out_quantized", c.out_quantized}, {"image_c", l->chw()[0]}, {"image_h", l->chw()[1]},
                              {"image_w", l->chw()[2]}});
    put_affine(tensors, prefix, c);
  } else if (const auto* cv = dynamic_cast<const QuantizedConv2d*>(&s)) {
    const AffineCore& c = cv->core();
    const Conv2dGeometry& g = cv->geometry();
    desc = "conv2d" + fields({{"in", cv->in_channels()}, {"out", c.w.out}, {"kh", cv->kh()}, {"kw", cv->kw()},
                              {"stride_h", g.stride[0]}, {"stride_w", g.stride[1]}, {"pad_top", g.padding[0]},
                              {"pad_bottom", g.padding[1]}, {"pad_left", g.padding[2]}, {"pad_right", g.padding[3]},
                              {"dil_h", g.dilation[0]}, {"dil_w", g.dilation[1]}, {"relu", c.relu},
                              {"dynamic", c.dynamic}, {"out_quantized", c.out_quantized}});
    put_affine(tensors, prefix, c);
  } else if (const auto* fa = dynamic_cast<const FloatAffineStage*>(&s)) {
    const FloatAffine& a = fa->layer();
    const Shape& ws = a.weight.shape();
    if (!a.conv) {
      desc = "float_linear" + fields({{"in", ws[1]}, {"out", ws[0]}, {"relu", a.relu}});
    } else {
      const Conv2dGeometry& g = a.geometry;
      desc = "float_conv2d" + fields({{"in", ws[1]}, {"out", ws[0]}, {"kh", ws[2]}, {"kw", ws[3]},
                                      {"stride_h", g.stride[0]}, {"stride_w", g.stride[1]}, {"pad_top", g.padding[0]},
                                      {"pad_bottom", g.padding[1]}, {"pad_left", g.padding[2]},
                                      {"pad_right", g.padding[3]}, {"dil_h", g.dilation[0]},
                                      {"dil_w", g.dilation[1]}, {"relu", a.relu}});
    }
    tensors.push_back({prefix + "weight", a.weight});
    if (a.bias.defined()) tensors.push_back({prefix + "bias", a.bias});
  } else if (const auto* mp = dynamic_cast<const MaxPoolStage*>(&s)) {
    const MaxPool2dOptions& o = mp->o_;
    desc = "max_pool2d" + fields({{"kh", mp->k_.h}, {"kw", mp->k_.w}, {"stride_h", o.stride.h},
                                  {"stride_w", o.stride.w}, {"pad_h", o.padding.h}, {"pad_w", o.padding.w},
                                  {"dil_h", o.dilation.h}, {"dil_w", o.dilation.w}, {"ceil", o.ceil_mode}});
  } else if (const auto* ap = dynamic_cast<const AvgPoolStage*>(&s)) {
    const AvgPool2dOptions& o = ap->o_;
    desc = "avg_pool2d" + fields({{"kh", ap->k_.h}, {"kw", ap->k_.w}, {"stride_h", o.stride.h},
                                  {"stride_w", o.stride.w}, {"pad_h", o.padding.h}, {"pad_w", o.padding.w},
                                  {"ceil", o.ceil_mode}, {"count_include_pad", o.count_include_pad}});
  } else if (const auto* aap = dynamic_cast<const AdaptiveAvgPoolStage*>(&s)) {
    desc = "adaptive_avg_pool2d" + fields({{"h", aap->out_.h}, {"w", aap->out_.w}});
  } else if (const auto* fl = dynamic_cast<const FlattenStage*>(&s)) {
    desc = "flatten" + fields({{"start_dim", fl->o_.start_dim}, {"end_dim", fl->o_.end_dim},
                               {"channels_last", fl->channels_last_}});
  } else if (dynamic_cast<const ReluStage*>(&s) != nullptr) {
    desc = "relu";
  } else if (const auto* rnn = dynamic_cast<const DynamicRNN*>(&s)) {
    const nn::RNNOptions& o = rnn->options();
    desc =
        std::string(rnn->is_lstm() ? "lstm" : "gru") + fields({{"input", rnn->input_size()},
                                                               {"hidden", rnn->hidden_size()},
                                                               {"layers", o.num_layers},
                                                               {"bias", o.bias},
                                                               {"batch_first", o.batch_first},
                                                               {"bidirectional", o.bidirectional}});
    for (const auto& [name, projection] : rnn->projections()) {
      save_stage(*projection, key + "." + name, prefix + name + ".", tensors, meta);
    }
  } else if (const auto* block = dynamic_cast<const QuantizedBasicBlock*>(&s)) {
    desc = "basic_block" + fields({{"downsample", block->downsample() != nullptr}});
    save_stage(*block->conv1(), key + ".conv1", prefix + "conv1.", tensors, meta);
    save_stage(*block->conv2(), key + ".conv2", prefix + "conv2.", tensors, meta);
    if (block->downsample()) save_stage(*block->downsample(), key + ".downsample", prefix + "downsample.", tensors, meta);
  } else {
    throw ValueError(cat_str("quant::save: ", key, " (", s.str(), ") cannot be saved"));
  }
  meta[key] = desc;
}

}  // namespace

void save(const QuantizedModel& model, const std::string& path) {
  if (model.num_stages() == 0) throw ValueError("quant::save: the model is empty");
  nn::StateDict tensors;
  std::map<std::string, std::string> meta = {{"ember.quant.format", "1"},
                                             {"ember.quant.stages", std::to_string(model.num_stages())}};
  for (size_t i = 0; i < model.num_stages(); ++i) {
    save_stage(model.stage(i), cat_str("ember.quant.stage.", i), cat_str(i, "."), tensors, meta);
  }
  io::write_safetensors(path, tensors, meta);
}

QuantizedModel load(const std::string& path) {
  const io::SafetensorsFile file = io::read_safetensors(path);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) {
      bad_file(path, cat_str("no '", key, "' metadata: not a quantized model written by quant::save"));
    }
    return it->second;
  };
  if (meta("ember.quant.format") != "1") bad_file(path, "unknown ember.quant.format '" + meta("ember.quant.format") + "'");
  const std::string& count_text = meta("ember.quant.stages");
  char* end = nullptr;
  const long long count = std::strtoll(count_text.c_str(), &end, 10);
  if (count_text.empty() || *end != '\0' || count <= 0 || count > 100000) {
    bad_file(path, "ember.quant.stages = '" + count_text + "' is not a stage count");
  }
  std::map<std::string, TensorBase> tensors;
  for (const auto& e : file.tensors) tensors.emplace(e.name, e.tensor);
  size_t used = 0;
  auto take = [&](const std::string& name, DType dtype, const Shape& shape) -> TensorBase {
    auto it = tensors.find(name);
    if (it == tensors.end()) bad_file(path, "missing tensor '" + name + "'");
    if (it->second.dtype() != dtype || it->second.shape() != shape) {
      bad_file(path, cat_str("tensor '", name, "' is ", dtype_name(it->second.dtype()), " ", it->second.shape(),
                             ", expected ", dtype_name(dtype), " ", shape));
    }
    ++used;
    return it->second;
  };
  auto positive = [&](int64_t v, const char* what, size_t i) {
    if (v <= 0 || v > (int64_t(1) << 24)) bad_file(path, cat_str("stage ", i, ": ", what, " = ", v, " is out of range"));
    return v;
  };
  auto geometry = [&](const StageFields& f, size_t i) {
    Conv2dGeometry g;
    g.stride = {positive(f.get("stride_h", path, i), "stride_h", i), positive(f.get("stride_w", path, i), "stride_w", i)};
    g.dilation = {positive(f.get("dil_h", path, i), "dil_h", i), positive(f.get("dil_w", path, i), "dil_w", i)};
    g.padding = {f.get("pad_top", path, i), f.get("pad_bottom", path, i), f.get("pad_left", path, i),
                 f.get("pad_right", path, i)};
    for (int64_t p : g.padding) {
      if (p < 0 || p > (int64_t(1) << 16)) bad_file(path, cat_str("stage ", i, ": padding ", p, " is out of range"));
    }
    return g;
  };
  // Stage i described by metadata `key`, its tensors under `prefix` (a block's parts under
  // key.conv1 and so on).
  std::function<std::shared_ptr<const Stage>(const std::string&, const std::string&, size_t)> load_stage;
  load_stage = [&](const std::string& key, const std::string& prefix, size_t i) -> std::shared_ptr<const Stage> {
    const StageFields f = parse_fields(meta(key), path, i);
    if (f.kind == "linear" || f.kind == "conv2d") {
      const bool conv = f.kind == "conv2d";
      AffineCore c;
      const int64_t out = positive(f.get("out", path, i), "out", i), in = positive(f.get("in", path, i), "in", i);
      const int64_t kh = conv ? positive(f.get("kh", path, i), "kh", i) : 1;
      const int64_t kw = conv ? positive(f.get("kw", path, i), "kw", i) : 1;
      const Shape wshape = conv ? Shape{out, in, kh, kw} : Shape{out, in};
      c.w.values = Tensor<int8_t>::from_base(take(prefix + "weight", DType::Int8, wshape));
      c.w.out = out;
      c.w.k = in * kh * kw;
      c.w.scales = Tensor<float>::from_base(take(prefix + "weight_scale", DType::Float32, Shape{out})).to_vector();
      for (float s : c.w.scales) {
        if (!(s > 0.0f) || !std::isfinite(s)) bad_file(path, cat_str("stage ", i, ": a weight scale is ", s));
      }
      for (int64_t z : Tensor<int64_t>::from_base(take(prefix + "weight_zero_point", DType::Int64, Shape{out})).to_vector()) {
        if (z != 0) bad_file(path, cat_str("stage ", i, ": weight zero points must be 0 (symmetric), got ", z));
      }
      if (tensors.count(prefix + "bias")) c.bias = Tensor<float>::from_base(take(prefix + "bias", DType::Float32, Shape{out}));
      c.relu = f.get("relu", path, i) != 0;
      c.dynamic = f.get("dynamic", path, i) != 0;
      c.out_quantized = f.get("out_quantized", path, i) != 0;
      auto activation_params = [&](const std::string& name) {
        QParams p;
        p.scale = Tensor<float>::from_base(take(prefix + name + "_scale", DType::Float32, Shape{})).item();
        p.zero_point = Tensor<int64_t>::from_base(take(prefix + name + "_zero_point", DType::Int64, Shape{})).item();
        if (!(p.scale > 0.0f) || !std::isfinite(p.scale) || p.zero_point < kActivationSpec.quant_min() ||
            p.zero_point > kActivationSpec.quant_max()) {
          bad_file(path, cat_str("stage ", i, ": ", name, " scale ", p.scale, " / zero point ", p.zero_point,
                                 " out of range"));
        }
        return p;
      };
      if (c.dynamic && c.out_quantized) bad_file(path, cat_str("stage ", i, ": a dynamic stage cannot output uint8"));
      if (c.out_quantized) c.out = activation_params("output");
      if (!c.dynamic) c.input = activation_params("input");
      c.finish();
      if (!conv) {
        const std::array<int64_t, 3> chw{f.get("image_c", path, i), f.get("image_h", path, i), f.get("image_w", path, i)};
        if (chw[0] != 0 && (chw[0] < 0 || chw[1] <= 0 || chw[2] <= 0 || chw[0] * chw[1] * chw[2] != in)) {
          bad_file(path, cat_str("stage ", i, ": image ", chw[0], "x", chw[1], "x", chw[2], " does not hold ", in,
                                 " features"));
        }
        return std::make_shared<QuantizedLinear>(std::move(c), chw);
      } else {
        return std::make_shared<QuantizedConv2d>(std::move(c), in, kh, kw, geometry(f, i));
      }
    } else if (f.kind == "float_linear" || f.kind == "float_conv2d") {
      FloatAffine a;
      a.path = cat_str("stage ", i);
      a.conv = f.kind == "float_conv2d";
      const int64_t out = positive(f.get("out", path, i), "out", i), in = positive(f.get("in", path, i), "in", i);
      const Shape wshape = a.conv ? Shape{out, in, positive(f.get("kh", path, i), "kh", i), positive(f.get("kw", path, i), "kw", i)}
                                  : Shape{out, in};
      a.weight = Tensor<float>::from_base(take(prefix + "weight", DType::Float32, wshape));
      if (tensors.count(prefix + "bias")) a.bias = Tensor<float>::from_base(take(prefix + "bias", DType::Float32, Shape{out}));
      a.relu = f.get("relu", path, i) != 0;
      if (a.conv) a.geometry = geometry(f, i);
      return std::make_shared<FloatAffineStage>(std::move(a));
    } else if (f.kind == "max_pool2d") {
      MaxPool2dOptions o;
      o.stride = IntPair(f.get("stride_h", path, i), f.get("stride_w", path, i));
      o.padding = IntPair(f.get("pad_h", path, i), f.get("pad_w", path, i));
      o.dilation = IntPair(f.get("dil_h", path, i), f.get("dil_w", path, i));
      o.ceil_mode = f.get("ceil", path, i) != 0;
      return std::make_shared<MaxPoolStage>(IntPair(positive(f.get("kh", path, i), "kh", i),
                                                              positive(f.get("kw", path, i), "kw", i)), o);
    } else if (f.kind == "avg_pool2d") {
      AvgPool2dOptions o;
      o.stride = IntPair(f.get("stride_h", path, i), f.get("stride_w", path, i));
      o.padding = IntPair(f.get("pad_h", path, i), f.get("pad_w", path, i));
      o.ceil_mode = f.get("ceil", path, i) != 0;
      o.count_include_pad = f.get("count_include_pad", path, i) != 0;
      return std::make_shared<AvgPoolStage>(IntPair(positive(f.get("kh", path, i), "kh", i),
                                                              positive(f.get("kw", path, i), "kw", i)), o);
    } else if (f.kind == "adaptive_avg_pool2d") {
      return std::make_shared<AdaptiveAvgPoolStage>(
          IntPair(positive(f.get("h", path, i), "h", i), positive(f.get("w", path, i), "w", i)));
    } else if (f.kind == "flatten") {
      return std::make_shared<FlattenStage>(
          nn::FlattenOptions{f.get("start_dim", path, i), f.get("end_dim", path, i)}, f.get("channels_last", path, i) != 0);
    } else if (f.kind == "relu") {
      return std::make_shared<ReluStage>();
    } else if (f.kind == "basic_block") {
      auto conv = [&](const std::string& part) {
        auto c = std::dynamic_pointer_cast<const QuantizedConv2d>(load_stage(key + "." + part, prefix + part + ".", i));
        if (c == nullptr || c->core().dynamic) {
          bad_file(path, cat_str("stage ", i, ": its ", part, " is not a static quantized convolution"));
        }
        return c;
      };
      auto conv1 = conv("conv1"), conv2 = conv("conv2");
      auto downsample = f.get("downsample", path, i) != 0 ? conv("downsample") : nullptr;
      const AffineCore &c1 = conv1->core(), &c2 = conv2->core();
      const bool links = c1.out_quantized && c1.out.scale == c2.input.scale && c1.out.zero_point == c2.input.zero_point;
      const int64_t out = downsample ? downsample->core().w.out : conv1->in_channels();
      if (!links || c2.out_quantized || conv2->in_channels() != c1.w.out || c2.w.out != out ||
          (downsample && (downsample->core().out_quantized || downsample->in_channels() != conv1->in_channels()))) {
        bad_file(path, cat_str("stage ", i, ": the block's convolutions do not fit together"));
      }
      return std::make_shared<QuantizedBasicBlock>(conv1, conv2, downsample);
    } else if (f.kind == "lstm" || f.kind == "gru") {
      nn::RNNOptions o;
      o.num_layers = positive(f.get("layers", path, i), "layers", i);
      o.bias = f.get("bias", path, i) != 0;
      o.batch_first = f.get("batch_first", path, i) != 0;
      o.bidirectional = f.get("bidirectional", path, i) != 0;
      const int64_t input = positive(f.get("input", path, i), "input", i);
      const int64_t hidden = positive(f.get("hidden", path, i), "hidden", i);
      DynamicRNN::Projections projections;
      for_each_projection(o, input, hidden, [&](const std::string& name, int64_t) {
        projections.emplace_back(name, load_stage(key + "." + name, prefix + name + ".", i));
      });
      try {
        return std::make_shared<DynamicRNN>(f.kind == "lstm", input, hidden, o, std::move(projections));
      } catch (const ValueError& e) {
        bad_file(path, cat_str("stage ", i, ": ", e.what()));
      }
    }
    bad_file(path, cat_str("stage ", i, " has the unknown kind '", f.kind, "'"));
  };
  std::vector<std::shared_ptr<const Stage>> stages;
  for (size_t i = 0; i < static_cast<size_t>(count); ++i) {
    stages.push_back(load_stage(cat_str("ember.quant.stage.", i), cat_str(i, "."), i));
  }
  if (used != tensors.size()) bad_file(path, cat_str("holds ", tensors.size() - used, " tensors no stage uses"));
  return QuantizedModel(std::move(stages));
}

}  // namespace ember::quant
