// Post-training quantization: observers against torch.ao.quantization (tests/data/torch_quant.safetensors
// from tools/make_torch_refs.py), quantized Linear and Conv2d against their definition (integer sums
// of the quantized input and weights, scaled), batch-norm folding and whole models against the
// float model, save and load, and the bad input each step refuses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>

#include "ember/ember.hpp"
#include "torch_quant_refs.hpp"

namespace {

using namespace ember;

const std::map<std::string, TensorBase>& refs() { return ember::testing::quant_refs(); }
std::vector<float> floats(const std::string& name) { return Tensor<float>::from_base(refs().at(name)).to_vector(); }
std::vector<int64_t> ints(const std::string& name) {
  const TensorBase& t = refs().at(name);
  if (t.dtype() == DType::Int32) {
    std::vector<int64_t> out;
    for (int32_t v : Tensor<int32_t>::from_base(t).to_vector()) out.push_back(v);
    return out;
  }
  return Tensor<int64_t>::from_base(t).to_vector();
}
Tensor<float> ref_tensor(const std::string& name) { return Tensor<float>::from_base(refs().at(name)); }

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no exception";
}

TEST(Observers, MatchTorch) {
  const Tensor<float> x = ref_tensor("x");
  quant::MinMaxObserver act(quant::kActivationSpec);
  act.observe(relu(x) * 1.7f + 0.05f);
  act.observe(x);
  EXPECT_EQ(act.qparams().scale, floats("minmax.scale")[0]);
  EXPECT_EQ(act.qparams().zero_point, ints("minmax.zero_point")[0]);

  const Tensor<float> w = x.reshape({6, 35});
  quant::MinMaxObserver weight(quant::kWeightSpec);
  weight.observe(w);
  EXPECT_EQ(weight.qparams().scale, floats("weight.scale")[0]);
  EXPECT_EQ(weight.qparams().zero_point, 0);

  quant::PerChannelMinMaxObserver per_channel(0, quant::kWeightSpec);
  per_channel.observe(w);
  const std::vector<quant::QParams> q = per_channel.qparams();
  const std::vector<float> want = floats("weight_per_channel.scale");
  ASSERT_EQ(q.size(), want.size());
  for (size_t i = 0; i < q.size(); ++i) {
    EXPECT_EQ(q[i].scale, want[i]) << i;
    EXPECT_EQ(q[i].zero_point, 0);
  }
}

TEST(Observers, HistogramSearchMatchesTorch) {
  quant::HistogramObserver h(quant::kActivationSpec);
  const Tensor<float> values = ref_tensor("histogram.values");
  // Two batches: the second widens nothing (the first holds the range's ends), so the histogram is
  // the same as one of all values.
  h.observe(values.narrow(0, 0, 10000).contiguous());
  quant::HistogramObserver whole(quant::kActivationSpec);
  whole.observe(values);
  const auto [lo, hi] = whole.chosen_range();
  const std::vector<float> want = floats("histogram.range");
  EXPECT_NEAR(lo, want[0], 1e-5);
  EXPECT_NEAR(hi, want[1], 1e-5);
  EXPECT_LT(hi, 11.5f);  // the outliers were clipped
  EXPECT_NEAR(whole.qparams().scale, floats("histogram.scale")[0], 1e-6);
  EXPECT_EQ(whole.qparams().zero_point, ints("histogram.zero_point")[0]);
}

TEST(Observers, HistogramKeepsMassWhenTheRangeGrows) {
  quant::HistogramObserver h(quant::kActivationSpec, 16);
  h.observe(tensor<float>({0.0f, 1.0f, 1.0f, 2.0f}));
  h.observe(tensor<float>({-2.0f, 4.0f}));
  const auto [lo, hi] = h.chosen_range();
  EXPECT_LE(lo, 0.0f);
  EXPECT_GT(hi, 1.0f);
}

TEST(Observers, RefuseNaNAndEmptyInput) {
  quant::MinMaxObserver obs;
  EXPECT_NE(message_of([&] { obs.observe(tensor<float>({1.0f, std::nanf("")}), "calibration"); })
                .find("calibration: NaN in the observed values (element 1)"),
            std::string::npos);
  EXPECT_NE(message_of([&] { obs.observe(zeros<float>({0, 3}), "calibration"); }).find("an empty batch"), std::string::npos);
  quant::HistogramObserver histogram;
  EXPECT_NE(message_of([&] { histogram.observe(tensor<float>({1.0f, -INFINITY}), "calibration"); })
                .find("calibration: an infinity in the observed values (element 1)"),
            std::string::npos);
  EXPECT_THROW(quant::calculate_qparams(0.0f, INFINITY, quant::kActivationSpec), ValueError);
  EXPECT_NE(message_of([&] { (void)obs.qparams(); }).find("no values observed"), std::string::npos);
}

// ---- Quantized layers against their definition ----------------------------------------------------

// The definition: input quantized with the min/max of the calibration batch (7-bit), weights per
// channel symmetric, integer sums scaled by input scale * weight scale, plus bias, then ReLU.
Tensor<float> reference_linear(const Tensor<float>& x, const Tensor<float>& w, const Tensor<float>& b, bool relu_after) {
  quant::MinMaxObserver act(quant::kActivationSpec);
  act.observe(x);
  const quant::QParams a = act.qparams();
  quant::PerChannelMinMaxObserver wo(0, quant::kWeightSpec);
  wo.observe(w);
  std::vector<float> ws;
  for (const auto& q : wo.qparams()) ws.push_back(q.scale);
  const int64_t out = w.shape()[0], in = w.shape()[1], m = x.shape()[0];
  const auto qa = quant::quantize_per_tensor<uint8_t>(x, a.scale, a.zero_point).int_repr().to_vector();
  const auto qw = quant::quantize_per_channel<int8_t>(w, tensor<float>(ws, {out}), zeros<int64_t>({out}), 0)
                      .int_repr()
                      .to_vector();
  const std::vector<float> bias = b.to_vector();
  std::vector<float> y(static_cast<size_t>(m * out));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < out; ++j) {
      int64_t acc = 0;
      for (int64_t t = 0; t < in; ++t) acc += (int64_t(qa[i * in + t]) - a.zero_point) * qw[j * in + t];
      const float scale = a.scale * ws[j];
      volatile float p = static_cast<float>(acc) * scale;
      float v = p + bias[j];
      y[i * out + j] = relu_after && v < 0 ? 0.0f : v;
    }
  }
  return tensor<float>(y, {m, out});
}

TEST(Quantize, LinearFollowsItsDefinition) {
  Generator gen(5);
  nn::Sequential net(nn::Linear(37, 19), nn::ReLU());
  net.eval();
  const Tensor<float> x = randn<float>({9, 37}, &gen);
  const quant::QuantizedModel q = quant::quantize(net, {x}, {.observer = quant::Observer::MinMax});
  ASSERT_EQ(q.num_stages(), 1u);  // the ReLU is folded into the Linear
  auto* l0 = dynamic_cast<nn::Linear<float>*>(net.child(0).get());
  const Tensor<float> want = reference_linear(x, l0->weight.detach(), l0->bias.detach(), true);
  const std::vector<float> g = q(x).to_vector(), w = want.to_vector();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(g[i], w[i], 1e-6f * std::max(1.0f, std::fabs(w[i]))) << i;
  EXPECT_NE(q.str().find("QuantizedLinear(in_features=37, out_features=19, relu, scale="), std::string::npos) << q.str();
}

// Linear -> ReLU -> Linear: the first hands the second uint8 in its input parameters, one
// rounding of the definition's float output onto that grid.
TEST(Quantize, LinearChainRequantizes) {
  Generator gen(15);
  nn::Sequential net(nn::Linear(37, 19), nn::ReLU(), nn::Linear(19, 5));
  net.eval();
  const Tensor<float> x = randn<float>({9, 37}, &gen);
  const quant::QuantizedModel q = quant::quantize(net, {x}, {.observer = quant::Observer::MinMax});
  ASSERT_EQ(q.num_stages(), 2u);
  auto* l0 = dynamic_cast<nn::Linear<float>*>(net.child(0).get());
  const Tensor<float> first = reference_linear(x, l0->weight.detach(), l0->bias.detach(), true);
  quant::MinMaxObserver next(quant::kActivationSpec);
  next.observe(relu(net.child(0)->forward(x)));
  const quant::QParams p = next.qparams();
  const quant::Activation a = q.stage(0).run(quant::Activation{x});
  ASSERT_TRUE(a.quantized.defined());
  EXPECT_EQ(a.params.scale, p.scale);
  EXPECT_EQ(a.params.zero_point, p.zero_point);
  const std::vector<uint8_t> got = a.quantized.to_vector();
  const std::vector<float> w = first.to_vector();
  for (size_t i = 0; i < got.size(); ++i) {
    const float value = (static_cast<float>(got[i]) - static_cast<float>(p.zero_point)) * p.scale;
    ASSERT_LE(std::fabs(value - w[i]), 1.01f * p.scale) << i;
    ASSERT_GE(got[i], p.zero_point) << i;  // the ReLU
  }
  const Tensor<float> yf = net(x), yq = q(x);
  EXPECT_LT((yf - yq).abs().max().item(), 0.05f * yf.abs().max().item());
  EXPECT_NE(q.str().find("output_scale="), std::string::npos) << q.str();
}

// Kernel rows of neighbouring pixels run on the image's windows (Note [Direct int8 convolution]),
// a dilation across through im2row rows: both against the definition.
class QuantizedConv : public ::testing::TestWithParam<nn::Conv2dOptions> {};

TEST_P(QuantizedConv, FollowsItsDefinition) {
  Generator gen(6);
  const nn::Conv2dOptions options = GetParam();
  nn::Sequential net(nn::Conv2d(3, 8, {3, 3}, options));
  net.eval();
  const Tensor<float> x = randn<float>({2, 3, 9, 7}, &gen);
  const quant::QuantizedModel q = quant::quantize(net, {x}, {.observer = quant::Observer::MinMax});
  auto* conv = dynamic_cast<nn::Conv2d<float>*>(net.child(0).get());
  // The definition through the float convolution of the dequantized input and weights (exact
  // products; sums in double so only the final rounding differs).
  quant::MinMaxObserver act(quant::kActivationSpec);
  act.observe(x);
  const quant::QParams a = act.qparams();
  quant::PerChannelMinMaxObserver wo(0, quant::kWeightSpec);
  wo.observe(conv->weight.detach());
  std::vector<float> ws;
  for (const auto& p : wo.qparams()) ws.push_back(p.scale);
  const Tensor<double> xd = quant::quantize_per_tensor<uint8_t>(x, a.scale, a.zero_point).dequantize().to<double>();
  const Tensor<double> wd =
      quant::quantize_per_channel<int8_t>(conv->weight.detach(), tensor<float>(ws, {8}), zeros<int64_t>({8}), 0)
          .dequantize()
          .to<double>();
  const Tensor<double> want = nn::functional::conv2d(xd, wd, conv->bias.detach().to<double>(),
                                                     {.stride = options.stride, .padding = options.padding,
                                                      .dilation = options.dilation});
  const Tensor<float> got = q(x);
  ASSERT_EQ(got.shape(), want.shape());
  const std::vector<float> g = got.to_vector();
  const std::vector<double> w = want.to_vector();
  for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(g[i], w[i], 2e-6 * std::max(1.0, std::fabs(w[i]))) << i;
}

INSTANTIATE_TEST_SUITE_P(Quantize, QuantizedConv,
                         ::testing::Values(nn::Conv2dOptions{.stride = {2, 1}, .padding = {1, 2}},
                                           nn::Conv2dOptions{.padding = {2, 1}, .dilation = {1, 2}}));

// Max pooling on uint8 channels-last values equals pooling the dequantized floats (max commutes
// with the monotonic quantization): with padding, a stride and a dilation, and for windows that
// tile the image (2x2, and 3x2 on sizes that leave rows and columns over).
TEST(Quantize, MaxPoolOnQuantizedValuesIsExact) {
  const std::vector<std::pair<nn::IntPair, nn::MaxPool2dOptions>> pools = {
      {3, {.stride = 2, .padding = 1, .dilation = {1, 2}}}, {2, {}}, {{3, 2}, {}}};
  for (const auto& [kernel, options] : pools) {
    Generator gen(8);
    nn::Sequential net(nn::Conv2d(2, 5, {3, 3}, {.padding = 1}), nn::MaxPool2d(kernel, options),
                       nn::Conv2d(5, 3, {1, 1}), nn::Flatten());  // a quantized consumer: the pool gets uint8
    net.eval();
    const Tensor<float> x = randn<float>({3, 2, 9, 11}, &gen);
    const quant::QuantizedModel q = quant::quantize(net, {x}, {.observer = quant::Observer::MinMax});
    const quant::Activation a = q.stage(0).run({x});
    ASSERT_TRUE(a.quantized.defined()) << q.str();
    const Tensor<float> a_float = quant::QTensor<uint8_t>::per_tensor(a.quantized, a.params.scale, a.params.zero_point)
                                      .dequantize()
                                      .permute({0, 3, 1, 2})
                                      .contiguous();
    const quant::Activation pooled = q.stage(1).run(a);
    ASSERT_TRUE(pooled.quantized.defined());
    const Tensor<float> got =
        quant::QTensor<uint8_t>::per_tensor(pooled.quantized, pooled.params.scale, pooled.params.zero_point)
            .dequantize()
            .permute({0, 3, 1, 2})
            .contiguous();
    const Tensor<float> want = q.stage(1).run(quant::Activation{a_float, {}, {}}).value;
    ASSERT_EQ(got.shape(), want.shape()) << q.stage(1).str();
    EXPECT_EQ(got.to_vector(), want.to_vector()) << q.stage(1).str();
  }
}

nn::Sequential<float> small_cnn() {
  return nn::Sequential(nn::Conv2d(1, 6, {3, 3}, {.padding = 1}), nn::BatchNorm2d(6), nn::ReLU(), nn::MaxPool2d(2),
                        nn::Conv2d(6, 8, {3, 3}), nn::ReLU(), nn::Flatten(), nn::Dropout(0.3), nn::Linear(8 * 2 * 2, 16),
                        nn::ReLU(), nn::Linear(16, 4));
}

// A CNN with batch norm (folded), pooling, dropout and ReLUs, quantized with either observer, per
// channel or per tensor: outputs close to the float model's.
TEST(Quantize, CnnStaysCloseToTheFloatModel) {
  Generator gen(7);
  nn::Sequential<float> net = small_cnn();
  // Batch norm with statistics of its own, so folding matters.
  net.train();
  for (int i = 0; i < 5; ++i) net(randn<float>({16, 1, 8, 8}, &gen) * 2.0f + 0.5f);
  net.eval();
  std::vector<Tensor<float>> calibration;
  for (int i = 0; i < 4; ++i) calibration.push_back(randn<float>({16, 1, 8, 8}, &gen));
  const Tensor<float> x = randn<float>({32, 1, 8, 8}, &gen);
  const Tensor<float> yf = net(x);
  for (auto observer : {quant::Observer::MinMax, quant::Observer::Histogram}) {
    for (bool per_channel : {true, false}) {
      const quant::QuantizedModel q = quant::quantize(net, calibration, {.per_channel = per_channel, .observer = observer});
      EXPECT_EQ(q.num_stages(), 6u) << q.str();  // conv+bn+relu, pool, conv+relu, flatten, linear+relu, linear
      const Tensor<float> yq = q(x);
      EXPECT_LT((yf - yq).abs().max().item(), 0.08f * yf.abs().max().item()) << q.str();
      EXPECT_GE(yf.argmax(1).eq(yq.argmax(1)).sum().item(), 28);
    }
  }
}

TEST(Quantize, SaveAndLoadGiveTheSameModel) {
  Generator gen(8);
  nn::Sequential<float> net = small_cnn();
  net.eval();
  const Tensor<float> x = randn<float>({8, 1, 8, 8}, &gen);
  const quant::QuantizedModel q = quant::quantize(net, {x});
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/ember_quantized.safetensors";
  quant::save(q, path);
  const quant::QuantizedModel back = quant::load(path);
  EXPECT_EQ(back.str(), q.str());
  EXPECT_EQ(back(x).to_vector(), q(x).to_vector());
  const io::SafetensorsFile f = io::read_safetensors(path);
  EXPECT_EQ(f.metadata.at("ember.quant.stage.0").rfind("conv2d", 0), 0u);
  bool found = false;
  for (const auto& e : f.tensors) {
    if (e.name == "0.weight") {
      EXPECT_EQ(e.tensor.dtype(), DType::Int8);
      found = true;
    }
  }
  EXPECT_TRUE(found);

  // A float model file, a truncated file and a file whose tensor has the wrong shape are refused.
  const std::string float_path = dir + "/ember_float.safetensors";
  save(net, float_path);
  EXPECT_NE(message_of([&] { quant::load(float_path); }).find("no 'ember.quant.format' metadata"), std::string::npos);
  const std::vector<uint8_t> bytes = io::read_file(path);
  io::write_file_atomically(dir + "/ember_truncated.safetensors", std::vector<uint8_t>(bytes.begin(), bytes.end() - 10));
  EXPECT_THROW(quant::load(dir + "/ember_truncated.safetensors"), FormatError);
  nn::StateDict tensors = f.tensors;
  for (auto& e : tensors)
    if (e.name == "0.weight_scale") e.tensor = zeros<float>({3});
  io::write_safetensors(dir + "/ember_wrong.safetensors", tensors, f.metadata);
  EXPECT_NE(message_of([&] { quant::load(dir + "/ember_wrong.safetensors"); })
                .find("tensor '0.weight_scale' is float32 [3], expected float32 [6]"),
            std::string::npos);
}

// A ResNet of BasicBlocks (identity and downsampling shortcuts): each block's convolutions run in
// int8 with batch norm folded, conv1 handing conv2 uint8, the sum and ReLU in float.
TEST(Quantize, ResidualBlocksStayCloseAndSaveAndLoad) {
  Generator gen(12);
  nn::Sequential<float> net(nn::Conv2d(3, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(),
                            nn::BasicBlock(8, 8, 1), nn::BasicBlock(8, 16, 2), nn::AdaptiveAvgPool2d(1), nn::Flatten(),
                            nn::Linear(16, 10));
  net.train();
  for (int i = 0; i < 5; ++i) net(randn<float>({16, 3, 8, 8}, &gen) * 1.5f + 0.2f);
  net.eval();
  std::vector<Tensor<float>> calibration;
  for (int i = 0; i < 4; ++i) calibration.push_back(randn<float>({16, 3, 8, 8}, &gen));
  const Tensor<float> x = randn<float>({32, 3, 8, 8}, &gen);
  const Tensor<float> yf = net(x);
  const quant::QuantizedModel q = quant::quantize(net, calibration);
  ASSERT_EQ(q.num_stages(), 6u) << q.str();  // stem, block, block, pool, flatten, linear
  EXPECT_NE(q.stage(1).str().find("QuantizedBasicBlock(conv1=QuantizedConv2d(8, 8"), std::string::npos) << q.str();
  EXPECT_NE(q.stage(2).str().find("downsample=QuantizedConv2d(8, 16, kernel_size=(1, 1), stride=(2, 2)"),
            std::string::npos) << q.str();
  const Tensor<float> yq = q(x);
  EXPECT_LT((yf - yq).abs().max().item(), 0.1f * yf.abs().max().item()) << q.str();
  EXPECT_GE(yf.argmax(1).eq(yq.argmax(1)).sum().item(), 26);

  const std::string path = ::testing::TempDir() + "/ember_quantized_resnet.safetensors";
  quant::save(q, path);
  const quant::QuantizedModel back = quant::load(path);
  EXPECT_EQ(back.str(), q.str());
  EXPECT_EQ(back(x).to_vector(), yq.to_vector());
  // A block whose convolutions do not fit together is refused.
  io::SafetensorsFile f = io::read_safetensors(path);
  f.metadata["ember.quant.stage.2.conv2"] = f.metadata.at("ember.quant.stage.1.conv2");
  nn::StateDict tensors = f.tensors;
  for (auto& e : tensors) {
    for (const char* part : {"weight", "weight_scale", "weight_zero_point", "bias", "input_scale", "input_zero_point"}) {
      if (e.name == std::string("2.conv2.") + part) {
        for (const auto& o : f.tensors)
          if (o.name == std::string("1.conv2.") + part) e.tensor = o.tensor;
      }
    }
  }
  io::write_safetensors(path, tensors, f.metadata);
  EXPECT_THROW(quant::load(path), FormatError);
  nn::Sequential<float> block_only(nn::BasicBlock(3, 3, 1));
  block_only.eval();
  EXPECT_NE(message_of([&] { quant::quantize_dynamic(block_only); }).find("module '0' (BasicBlock) is not supported"),
            std::string::npos);
}

// A layer named in keep_float stays in float with its batch norm and ReLU folded in; the layers
// around it quantize their own inputs and outputs, and the file keeps it as F32.
TEST(Quantize, KeepFloatLeavesNamedLayersInFloat) {
  Generator gen(10);
  nn::Sequential<float> net = small_cnn();
  net.train();
  for (int i = 0; i < 3; ++i) net(randn<float>({16, 1, 8, 8}, &gen));
  net.eval();
  std::vector<Tensor<float>> calibration{randn<float>({16, 1, 8, 8}, &gen), randn<float>({16, 1, 8, 8}, &gen)};
  const Tensor<float> x = randn<float>({8, 1, 8, 8}, &gen);
  const quant::QuantizedModel q = quant::quantize(net, calibration, {.keep_float = {"0"}});
  ASSERT_EQ(q.num_stages(), 6u) << q.str();
  EXPECT_EQ(q.stage(0).str().rfind("Conv2d(1, 6, kernel_size=(3, 3)", 0), 0u) << q.str();
  EXPECT_NE(q.stage(0).str().find("relu, float)"), std::string::npos) << q.str();
  // The kept stage is the float conv, batch norm and ReLU (folded: equal to rounding).
  const Tensor<float> first = relu(net.submodule("1")(net.submodule("0")(x)));
  EXPECT_LT((q.stage(0).forward(x) - first).abs().max().item(), 1e-5f * (1 + first.abs().max().item()));
  const Tensor<float> yf = net(x), yq = q(x);
  EXPECT_LT((yf - yq).abs().max().item(), 0.08f * yf.abs().max().item()) << q.str();

  const std::string path = ::testing::TempDir() + "/ember_keep_float.safetensors";
  quant::save(q, path);
  const quant::QuantizedModel back = quant::load(path);
  EXPECT_EQ(back.str(), q.str());
  EXPECT_EQ(back(x).to_vector(), yq.to_vector());
  const io::SafetensorsFile f = io::read_safetensors(path);
  EXPECT_EQ(f.metadata.at("ember.quant.stage.0").rfind("float_conv2d", 0), 0u);
  for (const auto& e : f.tensors) {
    if (e.name == "0.weight") {
      EXPECT_EQ(e.tensor.dtype(), DType::Float32);
    }
  }
  // The last Linear kept too; a name that is not a Linear or Conv2d of the model is refused.
  const quant::QuantizedModel q2 = quant::quantize(net, calibration, {.keep_float = {"0", "10"}});
  EXPECT_NE(q2.stage(5).str().find("float)"), std::string::npos) << q2.str();
  EXPECT_NE(message_of([&] { quant::quantize(net, calibration, {.keep_float = {"1"}}); })
                .find("keep_float names '1', which is not a Linear or Conv2d of the model (they are: 0, 4, 8, 10)"),
            std::string::npos);
}

TEST(Quantize, DynamicLinear) {
  Generator gen(9);
  nn::Sequential net(nn::Linear(20, 30), nn::ReLU(), nn::Dropout(0.1), nn::Linear(30, 3));
  net.eval();
  const quant::QuantizedModel q = quant::quantize_dynamic(net);
  EXPECT_EQ(q.num_stages(), 3u);  // Linear, ReLU, Linear: dynamic Linear keeps its ReLU apart
  const Tensor<float> x = randn<float>({5, 20}, &gen);
  const Tensor<float> yf = net(x), yq = q(x);
  EXPECT_LT((yf - yq).abs().max().item(), 0.05f * yf.abs().max().item());
  EXPECT_NE(q.str().find("dynamic"), std::string::npos);
  const std::string path = ::testing::TempDir() + "/ember_dynamic.safetensors";
  quant::save(q, path);
  EXPECT_EQ(quant::load(path)(x).to_vector(), yq.to_vector());
}

TEST(Quantize, BadInputIsRefused) {
  Generator gen(10);
  nn::Sequential<float> net = small_cnn();
  const Tensor<float> x = randn<float>({4, 1, 8, 8}, &gen);
  EXPECT_NE(message_of([&] { quant::quantize(net, {x}); }).find("the model is in training mode"), std::string::npos);
  net.eval();
  EXPECT_NE(message_of([&] { quant::quantize(net, {}); }).find("no calibration data"), std::string::npos);
  EXPECT_NE(message_of([&] { quant::quantize(net, {zeros<float>({0, 1, 8, 8})}); }).find("calibration batch 0 is empty"),
            std::string::npos);
  Tensor<float> nan = x.clone();
  nan.data()[3] = std::nanf("");
  EXPECT_NE(message_of([&] { quant::quantize(net, {x, nan}); })
                .find("calibration batch 1 at the input of '0': NaN in the observed values (element 3)"),
            std::string::npos);
  EXPECT_NE(message_of([&] { quant::quantize(net, {randn<float>({4, 2, 8, 8}, &gen)}); }).find("0"), std::string::npos);
  nn::Sequential gelu(nn::Linear(3, 3), nn::GELU());
  gelu.eval();
  EXPECT_NE(message_of([&] { quant::quantize(gelu, {randn<float>({2, 3}, &gen)}); })
                .find("module '1' (GELU) is not supported"),
            std::string::npos);
  const quant::QuantizedModel q = quant::quantize(net, {x});
  EXPECT_NE(message_of([&] { q(randn<float>({4, 3, 8, 8}, &gen)); })
                .find("QuantizedConv2d: expected an input [N, 1, H, W], got [4, 3, 8, 8]"),
            std::string::npos);
  EXPECT_NE(message_of([&] { quant::QuantizedModel()(x); }).find("the model is empty"), std::string::npos);
}

}  // namespace
