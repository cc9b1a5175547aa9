// Post-training quantization (Note [Quantized model] in ember/quant/quantize.hpp): the stages, the
// walk over a float model, calibration, and the file format.
#include "ember/quant/quantize.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

#include "../core/internal.hpp"
#include "ember/backend/int8_kernels.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/autograd/grad_mode.hpp"
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
#include "ember/ops/conv.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/pooling.hpp"
#include "ember/ops/shape_ops.hpp"
#include "ember/quant/observer.hpp"
#include "ember/quant/qtensor.hpp"

namespace ember::quant {
namespace {

using detail::cat_str;

std::string pair_str(int64_t a, int64_t b) { return cat_str("(", a, ", ", b, ")"); }

// Per-thread scratch buffers that keep their memory between calls: a stage's temporaries would
// otherwise be fresh pages (and page faults) on every call. `Slot` tells a function's buffers apart.
template <class T, int Slot>
T* scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
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

Int8Weights quantize_weights(const Tensor<float>& weight, bool per_channel) {
  Int8Weights w;
  w.out = weight.shape()[0];
  w.k = weight.numel() / std::max<int64_t>(w.out, 1);
  if (per_channel) {
    PerChannelMinMaxObserver obs(0, kWeightSpec);
    obs.observe(weight, "quantize: weight");
    for (const QParams& q : obs.qparams()) w.scales.push_back(q.scale);
  } else {
    MinMaxObserver obs(kWeightSpec);
    obs.observe(weight, "quantize: weight");
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

  void finish() {
    prepare(w);
    if (!dynamic) {
      out_scales.resize(w.scales.size());
      for (size_t j = 0; j < w.scales.size(); ++j) out_scales[j] = input.scale * w.scales[j];
    }
  }

  // The input's parameters: fixed, or (dynamic) from this batch's range.
  QParams input_params(const float* x, int64_t n, std::vector<float>& scales) const {
    if (!dynamic) {
      scales = out_scales;
      return input;
    }
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(x[i])) throw ValueError(cat_str("NaN in the input (element ", i, ")"));
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    const QParams q = calculate_qparams(lo, hi, kActivationSpec);
    scales.resize(w.scales.size());
    for (size_t j = 0; j < w.scales.size(); ++j) scales[j] = q.scale * w.scales[j];
    return q;
  }

  // Rows of u8 activations [m, k] -> float outputs [m, out].
  void multiply(int64_t m, const uint8_t* a, const QParams& in, const std::vector<float>& scales, float* y) const {
    const backend::Int8Kernels& kern = backend::int8_kernels();
    int32_t* acc = scratch<int32_t, 0>(static_cast<size_t>(m * w.out));
    kern.gemm_u8s8(m, w.out, w.k, a, w.k, w.packed.data(), acc, w.out);
    kern.dequantize_s32(m, w.out, acc, w.out, static_cast<int32_t>(in.zero_point), w.sums.data(),
                        scales.data(), bias.defined() ? bias.data() : nullptr, relu, y, w.out);
  }

  std::string params_str() const {
    std::string s = relu ? ", relu" : "";
    if (dynamic) return s + ", dynamic";
    return s + cat_str(", scale=", input.scale, ", zero_point=", input.zero_point);
  }
};

void quantize_activations(const float* x, int64_t n, const QParams& q, uint8_t* out) {
  backend::int8_kernels().quantize_u8(n, x, 1.0f / q.scale, static_cast<int32_t>(q.zero_point),
                                      static_cast<int32_t>(kActivationSpec.quant_min()),
                                      static_cast<int32_t>(kActivationSpec.quant_max()), 0, out);
}

class QuantizedLinear final : public Stage {
 public:
  explicit QuantizedLinear(AffineCore core) : core_(std::move(core)) {}
  Tensor<float> run(const Tensor<float>& x) const override {
    const int64_t in = core_.w.k;
    if (x.dim() < 1 || x.shape()[x.dim() - 1] != in) {
      throw ShapeError(cat_str("QuantizedLinear: expected an input [*, ", in, "], got ", x.shape()));
    }
    const Tensor<float> xc = x.contiguous();
    const int64_t m = xc.numel() / std::max<int64_t>(in, 1);
    std::vector<float> scales;
    const QParams q = core_.input_params(xc.data(), xc.numel(), scales);
    uint8_t* a = scratch<uint8_t, 1>(static_cast<size_t>(xc.numel()));
    quantize_activations(xc.data(), xc.numel(), q, a);
    std::vector<int64_t> shape(x.shape().begin(), x.shape().end());
    shape.back() = core_.w.out;
    Tensor<float> y = empty<float>(Shape(shape));
    core_.multiply(m, a, q, scales, y.data());
    return y;
  }
  std::string str() const override {
    return cat_str("QuantizedLinear(in_features=", core_.w.k, ", out_features=", core_.w.out, core_.params_str(), ")");
  }
  const AffineCore& core() const noexcept { return core_; }

 private:
  AffineCore core_;
};

class QuantizedConv2d final : public Stage {
 public:
  QuantizedConv2d(AffineCore core, int64_t in_channels, int64_t kh, int64_t kw, Conv2dGeometry g)
      : core_(std::move(core)), c_(in_channels), kh_(kh), kw_(kw), g_(g) {}

  Tensor<float> run(const Tensor<float>& x) const override {
    if (x.dim() != 4 || x.shape()[1] != c_) {
      throw ShapeError(cat_str("QuantizedConv2d: expected an input [N, ", c_, ", H, W], got ", x.shape()));
    }
    const int64_t n = x.shape()[0], h = x.shape()[2], w = x.shape()[3];
    const int64_t ho = (h + g_.padding[0] + g_.padding[1] - g_.dilation[0] * (kh_ - 1) - 1) / g_.stride[0] + 1;
    const int64_t wo = (w + g_.padding[2] + g_.padding[3] - g_.dilation[1] * (kw_ - 1) - 1) / g_.stride[1] + 1;
    if (ho <= 0 || wo <= 0) {
      throw ShapeError(cat_str("QuantizedConv2d: input ", x.shape(), " is smaller than the ", kh_, "x", kw_, " kernel"));
    }
    const Tensor<float> xc = x.contiguous();
    std::vector<float> scales;
    const QParams q = core_.input_params(xc.data(), xc.numel(), scales);
    uint8_t* qx = scratch<uint8_t, 2>(static_cast<size_t>(xc.numel()));
    quantize_activations(xc.data(), xc.numel(), q, qx);
    const int64_t out_c = core_.w.out, k = core_.w.k, pixels = ho * wo, plane = h * w;
    Tensor<float> y = empty<float>({n, out_c, ho, wo});
    float* yd = y.data();
    // Image by image (the rows of a batch would not stay in cache), images spread over threads.
    auto images = [&](int64_t b0, int64_t b1) {
      uint8_t* nhwc = scratch<uint8_t, 3>(static_cast<size_t>(c_ * plane));
      uint8_t* rows = scratch<uint8_t, 4>(static_cast<size_t>(pixels * k));
      float* out = scratch<float, 5>(static_cast<size_t>(pixels * out_c));
      for (int64_t b = b0; b < b1; ++b) {
        const uint8_t* img = qx + b * c_ * plane;
        if (c_ > 1) {  // channels last, so that each kernel tap of a row is one run of C bytes
          for (int64_t p0 = 0; p0 < plane; p0 += 64) {  // in blocks that stay in L1
            const int64_t p1 = std::min(plane, p0 + 64);
            for (int64_t ch = 0; ch < c_; ++ch)
              for (int64_t p = p0; p < p1; ++p) nhwc[p * c_ + ch] = img[ch * plane + p];
          }
          img = nhwc;
        }
        im2row(img, h, w, ho, wo, static_cast<uint8_t>(q.zero_point), rows);
        core_.multiply(pixels, rows, q, scales, out);
        float* dst = yd + b * out_c * pixels;  // back to channels first
        for (int64_t p0 = 0; p0 < pixels; p0 += 16) {
          const int64_t p1 = std::min(pixels, p0 + 16);
          for (int64_t o = 0; o < out_c; ++o)
            for (int64_t p = p0; p < p1; ++p) dst[o * pixels + p] = out[p * out_c + o];
        }
      }
    };
    if (n == 1) {
      images(0, 1);
    } else {
      detail::parallel_for(0, n, 1, images);
    }
    return y;
  }
  // One row of K = kh * kw * C bytes per output pixel of a channels-last image, the zero point
  // (real 0) outside it.
  void im2row(const uint8_t* img, int64_t h, int64_t w, int64_t ho, int64_t wo, uint8_t pad, uint8_t* row) const {
    const int64_t tap_row = kw_ * c_;
    for (int64_t oh = 0; oh < ho; ++oh) {
      for (int64_t ow = 0; ow < wo; ++ow) {
        const int64_t iw0 = ow * g_.stride[1] - g_.padding[2];
        const bool inside_w = iw0 >= 0 && iw0 + (kw_ - 1) * g_.dilation[1] < w;
        for (int64_t i = 0; i < kh_; ++i) {
          const int64_t ih = oh * g_.stride[0] - g_.padding[0] + i * g_.dilation[0];
          if (inside_w && g_.dilation[1] == 1 && ih >= 0 && ih < h) {
            // The kernel row's taps are neighbouring pixels: one run of kw * C bytes.
            std::memcpy(row, img + (ih * w + iw0) * c_, static_cast<size_t>(tap_row));
            row += tap_row;
            continue;
          }
          for (int64_t j = 0; j < kw_; ++j, row += c_) {
            const int64_t iw = ow * g_.stride[1] - g_.padding[2] + j * g_.dilation[1];
            if (ih < 0 || ih >= h || iw < 0 || iw >= w) {
              std::memset(row, pad, static_cast<size_t>(c_));
            } else if (c_ == 1) {
              *row = img[ih * w + iw];
            } else {
              std::memcpy(row, img + (ih * w + iw) * c_, static_cast<size_t>(c_));
            }
          }
        }
      }
    }
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
};

// ---- Float stages --------------------------------------------------------------------------------

class MaxPoolStage final : public Stage {
 public:
  MaxPoolStage(IntPair k, MaxPool2dOptions o) : k_(k), o_(o) {}
  Tensor<float> run(const Tensor<float>& x) const override { return max_pool2d(x, k_, o_); }
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
  Tensor<float> run(const Tensor<float>& x) const override { return avg_pool2d(x, k_, o_); }
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
  Tensor<float> run(const Tensor<float>& x) const override { return adaptive_avg_pool2d(x, out_); }
  std::string str() const override { return cat_str("AdaptiveAvgPool2d(output_size=", pair_str(out_.h, out_.w), ")"); }
  IntPair out_;
};

class FlattenStage final : public Stage {
 public:
  explicit FlattenStage(nn::FlattenOptions o) : o_(o) {}
  Tensor<float> run(const Tensor<float>& x) const override { return x.flatten(o_.start_dim, o_.end_dim); }
  std::string str() const override { return cat_str("Flatten(start_dim=", o_.start_dim, ", end_dim=", o_.end_dim, ")"); }
  nn::FlattenOptions o_;
};

class ReluStage final : public Stage {
 public:
  Tensor<float> run(const Tensor<float>& x) const override { return relu(x); }
  std::string str() const override { return "ReLU()"; }
};

// ---- From a float model --------------------------------------------------------------------------

// A Linear or Conv2d with its batch norm folded in and its ReLU noted, still in float: what
// calibration runs and observes.
struct FloatAffine {
  std::string path;
  bool conv = false;
  Tensor<float> weight, bias;  // weight [O, in] or [O, C, kh, kw]
  Conv2dGeometry geometry;
  bool relu = false;

  Tensor<float> run(const Tensor<float>& x) const {
    Tensor<float> y = conv ? conv2d(x, weight, bias, geometry) : nn::functional::linear(x, weight, bias);
    return relu ? ember::relu(y) : y;
  }
};

struct PlanStep {
  std::shared_ptr<const Stage> fixed;  // a float stage
  std::shared_ptr<FloatAffine> affine;  // or a layer to quantize
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

std::vector<PlanStep> plan(nn::Module<float>& model, bool dynamic_only) {
  std::vector<std::pair<std::string, nn::Module<float>*>> modules;
  flatten_modules(model, "", modules);
  std::vector<PlanStep> steps;
  NoGradGuard no_grad;
  for (const auto& [path, m] : modules) {
    FloatAffine* last = steps.empty() || !steps.back().affine ? nullptr : steps.back().affine.get();
    if (auto* lin = dynamic_cast<nn::Linear<float>*>(m)) {
      auto a = std::make_shared<FloatAffine>();
      a->path = path;
      a->weight = lin->weight.detach().contiguous();
      if (lin->bias.defined()) a->bias = lin->bias.detach().contiguous();
      steps.push_back({nullptr, a});
    } else if (auto* conv = dynamic_cast<nn::Conv2d<float>*>(m); conv != nullptr && !dynamic_only) {
      if (conv->options.groups != 1) {
        throw ValueError(cat_str("quantize: ", describe(path, *m), " has groups=", conv->options.groups,
                                 "; quantized convolutions support groups=1"));
      }
      auto a = std::make_shared<FloatAffine>();
      a->path = path;
      a->conv = true;
      a->weight = conv->weight.detach().contiguous();
      if (conv->bias.defined()) a->bias = conv->bias.detach().contiguous();
      a->geometry = nn::conv2d_geometry(conv->options, conv->kernel_size.h, conv->kernel_size.w, "quantize");
      steps.push_back({nullptr, a});
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
    } else if (dynamic_cast<nn::Dropout<float>*>(m) != nullptr || dynamic_cast<nn::Identity<float>*>(m) != nullptr) {
      continue;
    } else if (auto* f = dynamic_cast<nn::Flatten<float>*>(m)) {
      steps.push_back({std::make_shared<FlattenStage>(f->options()), nullptr});
    } else if (auto* mp = dynamic_cast<nn::MaxPool2d<float>*>(m)) {
      steps.push_back({std::make_shared<MaxPoolStage>(mp->kernel_size(), mp->options()), nullptr});
    } else if (auto* ap = dynamic_cast<nn::AvgPool2d<float>*>(m)) {
      steps.push_back({std::make_shared<AvgPoolStage>(ap->kernel_size(), ap->options()), nullptr});
    } else if (auto* aap = dynamic_cast<nn::AdaptiveAvgPool2d<float>*>(m)) {
      steps.push_back({std::make_shared<AdaptiveAvgPoolStage>(aap->output_size()), nullptr});
    } else {
      throw ValueError(cat_str(dynamic_only ? "quantize_dynamic: " : "quantize: ", describe(path, *m),
                               " is not supported (supported: Sequential of Linear, Conv2d, BatchNorm2d after a "
                               "Conv2d, ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Identity)"));
    }
  }
  if (steps.empty()) throw ValueError("quantize: the model has no layers");
  return steps;
}

std::shared_ptr<const Stage> make_quantized(const FloatAffine& a, bool per_channel, bool dynamic, QParams input) {
  AffineCore core;
  core.w = quantize_weights(a.weight, per_channel);
  core.bias = a.bias;
  core.relu = a.relu;
  core.dynamic = dynamic;
  core.input = input;
  core.finish();
  if (!a.conv) return std::make_shared<QuantizedLinear>(std::move(core));
  return std::make_shared<QuantizedConv2d>(std::move(core), a.weight.shape()[1], a.weight.shape()[2],
                                           a.weight.shape()[3], a.geometry);
}

}  // namespace

Tensor<float> QuantizedModel::operator()(const Tensor<float>& x) const {
  if (stages_.empty()) throw ValueError("QuantizedModel: the model is empty (default-constructed?)");
  if (!x.defined()) throw ValueError("QuantizedModel: the input is undefined");
  NoGradGuard no_grad;
  Tensor<float> y = x.detach();
  for (size_t i = 0; i < stages_.size(); ++i) {
    try {
      y = stages_[i]->run(y);
    } catch (Error& e) {
      e.prepend_module(cat_str("stage ", i));
      throw;
    }
  }
  return y;
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
  std::vector<PlanStep> steps = plan(model, false);
  // One observer per quantized layer's input.
  std::vector<MinMaxObserver> minmax(steps.size());
  std::vector<HistogramObserver> histogram(steps.size());
  NoGradGuard no_grad;
  for (size_t b = 0; b < calibration.size(); ++b) {
    const Tensor<float>& batch = calibration[b];
    if (!batch.defined() || batch.numel() == 0) {
      throw ValueError(cat_str("quantize: calibration batch ", b, " is empty"));
    }
    Tensor<float> y = batch;
    for (size_t i = 0; i < steps.size(); ++i) {
      if (steps[i].affine) {
        const std::string what = cat_str("quantize: calibration batch ", b, " at the input of '", steps[i].affine->path, "'");
        if (options.observer == Observer::MinMax) minmax[i].observe(y, what.c_str());
        else histogram[i].observe(y, what.c_str());
        try {
          y = steps[i].affine->run(y);
        } catch (Error& e) {
          e.prepend_module(steps[i].affine->path);
          throw;
        }
      } else {
        y = steps[i].fixed->run(y);
      }
    }
  }
  std::vector<std::shared_ptr<const Stage>> stages;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i].affine) {
      stages.push_back(steps[i].fixed);
      continue;
    }
    const QParams input = options.observer == Observer::MinMax ? minmax[i].qparams() : histogram[i].qparams();
    stages.push_back(make_quantized(*steps[i].affine, options.per_channel, false, input));
  }
  return QuantizedModel(std::move(stages));
}

QuantizedModel quantize_dynamic(nn::Module<float>& model, const DynamicOptions& options) {
  std::vector<PlanStep> steps = plan(model, true);
  std::vector<std::shared_ptr<const Stage>> stages;
  for (const PlanStep& s : steps) {
    stages.push_back(s.affine ? make_quantized(*s.affine, options.per_channel, true, {}) : s.fixed);
  }
  return QuantizedModel(std::move(stages));
}

// ---- Files ---------------------------------------------------------------------------------------
//
// Note [Quantized model file]
// Safetensors, metadata "ember.quant.format" = "1" and "ember.quant.stages" = the count; stage i is
// described by "ember.quant.stage.i" = its kind and key=value fields (linear, conv2d, max_pool2d,
// avg_pool2d, adaptive_avg_pool2d, flatten, relu), and a Linear or Conv2d stage's tensors are
// "i.weight" (I8, the layer's weight shape), "i.weight_scale" (F32 [out]), "i.weight_zero_point"
// (I64 [out], zeros), "i.bias" (F32 [out], when it has one), and for static quantization
// "i.input_scale" (F32 []) and "i.input_zero_point" (I64 []).

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

}  // namespace

void save(const QuantizedModel& model, const std::string& path) {
  if (model.num_stages() == 0) throw ValueError("quant::save: the model is empty");
  nn::StateDict tensors;
  std::map<std::string, std::string> meta = {{"ember.quant.format", "1"},
                                             {"ember.quant.stages", std::to_string(model.num_stages())}};
  for (size_t i = 0; i < model.num_stages(); ++i) {
    const Stage& s = model.stage(i);
    const std::string prefix = cat_str(i, ".");
    std::string desc;
    if (const auto* l = dynamic_cast<const QuantizedLinear*>(&s)) {
      const AffineCore& c = l->core();
      desc = "linear" + fields({{"in", c.w.k}, {"out", c.w.out}, {"relu", c.relu}, {"dynamic", c.dynamic}});
      put_affine(tensors, prefix, c);
    } else if (const auto* cv = dynamic_cast<const QuantizedConv2d*>(&s)) {
      const AffineCore& c = cv->core();
      const Conv2dGeometry& g = cv->geometry();
      desc = "conv2d" + fields({{"in", cv->in_channels()}, {"out", c.w.out}, {"kh", cv->kh()}, {"kw", cv->kw()},
                                {"stride_h", g.stride[0]}, {"stride_w", g.stride[1]}, {"pad_top", g.padding[0]},
                                {"pad_bottom", g.padding[1]}, {"pad_left", g.padding[2]}, {"pad_right", g.padding[3]},
                                {"dil_h", g.dilation[0]}, {"dil_w", g.dilation[1]}, {"relu", c.relu},
                                {"dynamic", c.dynamic}});
      put_affine(tensors, prefix, c);
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
      desc = "flatten" + fields({{"start_dim", fl->o_.start_dim}, {"end_dim", fl->o_.end_dim}});
    } else if (dynamic_cast<const ReluStage*>(&s) != nullptr) {
      desc = "relu";
    } else {
      throw ValueError(cat_str("quant::save: stage ", i, " (", s.str(), ") cannot be saved"));
    }
    meta[cat_str("ember.quant.stage.", i)] = desc;
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
  std::vector<std::shared_ptr<const Stage>> stages;
  for (size_t i = 0; i < static_cast<size_t>(count); ++i) {
    const StageFields f = parse_fields(meta(cat_str("ember.quant.stage.", i)), path, i);
    const std::string prefix = cat_str(i, ".");
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
      if (!c.dynamic) {
        c.input.scale = Tensor<float>::from_base(take(prefix + "input_scale", DType::Float32, Shape{})).item();
        c.input.zero_point = Tensor<int64_t>::from_base(take(prefix + "input_zero_point", DType::Int64, Shape{})).item();
        if (!(c.input.scale > 0.0f) || !std::isfinite(c.input.scale) || c.input.zero_point < kActivationSpec.quant_min() ||
            c.input.zero_point > kActivationSpec.quant_max()) {
          bad_file(path, cat_str("stage ", i, ": input scale ", c.input.scale, " / zero point ", c.input.zero_point,
                                 " out of range"));
        }
      }
      c.finish();
      if (!conv) {
        stages.push_back(std::make_shared<QuantizedLinear>(std::move(c)));
      } else {
        Conv2dGeometry g;
        g.stride = {positive(f.get("stride_h", path, i), "stride_h", i), positive(f.get("stride_w", path, i), "stride_w", i)};
        g.dilation = {positive(f.get("dil_h", path, i), "dil_h", i), positive(f.get("dil_w", path, i), "dil_w", i)};
        g.padding = {f.get("pad_top", path, i), f.get("pad_bottom", path, i), f.get("pad_left", path, i),
                     f.get("pad_right", path, i)};
        for (int64_t p : g.padding) {
          if (p < 0 || p > (int64_t(1) << 16)) bad_file(path, cat_str("stage ", i, ": padding ", p, " is out of range"));
        }
        stages.push_back(std::make_shared<QuantizedConv2d>(std::move(c), in, kh, kw, g));
      }
    } else if (f.kind == "max_pool2d") {
      MaxPool2dOptions o;
      o.stride = IntPair(f.get("stride_h", path, i), f.get("stride_w", path, i));
      o.padding = IntPair(f.get("pad_h", path, i), f.get("pad_w", path, i));
      o.dilation = IntPair(f.get("dil_h", path, i), f.get("dil_w", path, i));
      o.ceil_mode = f.get("ceil", path, i) != 0;
      stages.push_back(std::make_shared<MaxPoolStage>(IntPair(positive(f.get("kh", path, i), "kh", i),
                                                              positive(f.get("kw", path, i), "kw", i)), o));
    } else if (f.kind == "avg_pool2d") {
      AvgPool2dOptions o;
      o.stride = IntPair(f.get("stride_h", path, i), f.get("stride_w", path, i));
      o.padding = IntPair(f.get("pad_h", path, i), f.get("pad_w", path, i));
      o.ceil_mode = f.get("ceil", path, i) != 0;
      o.count_include_pad = f.get("count_include_pad", path, i) != 0;
      stages.push_back(std::make_shared<AvgPoolStage>(IntPair(positive(f.get("kh", path, i), "kh", i),
                                                              positive(f.get("kw", path, i), "kw", i)), o));
    } else if (f.kind == "adaptive_avg_pool2d") {
      stages.push_back(std::make_shared<AdaptiveAvgPoolStage>(
          IntPair(positive(f.get("h", path, i), "h", i), positive(f.get("w", path, i), "w", i))));
    } else if (f.kind == "flatten") {
      stages.push_back(std::make_shared<FlattenStage>(
          nn::FlattenOptions{f.get("start_dim", path, i), f.get("end_dim", path, i)}));
    } else if (f.kind == "relu") {
      stages.push_back(std::make_shared<ReluStage>());
    } else {
      bad_file(path, cat_str("stage ", i, " has the unknown kind '", f.kind, "'"));
    }
  }
  if (used != tensors.size()) bad_file(path, cat_str("holds ", tensors.size() - used, " tensors no stage uses"));
  return QuantizedModel(std::move(stages));
}

}  // namespace ember::quant
