// deploy::export_onnx (Note [ONNX export]): a PyTorch CNN loaded into ember exports to a file the
// onnx package's checker accepts and whose graph, run by tools/onnx_check.py's interpreter (itself
// checked on PyTorch's own export of the network), gives PyTorch's output; the same with the batch
// symbolic and batch norm unfolded, and for the elementwise ops the exporter writes as formulas.
// Refusals leave no file.
#include <gtest/gtest.h>

#include <unistd.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/deploy.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/nn.hpp"
#include "ember/ops/elementwise.hpp"
#include "ember/ops/factory.hpp"
#include "ember/ops/shape_ops.hpp"
#include "ember/quant.hpp"
#include "../support/expect_error.hpp"
#include "plan_support.hpp"

namespace {

using ember::Shape;
using ember::testing::expect_error;
using ember::Tensor;
namespace nn = ember::nn;
namespace deploy = ember::deploy;
namespace fs = std::filesystem;

std::string data_dir() {
  const char* d = std::getenv("EMBER_TEST_DATA");
  return d != nullptr ? d : "tests/data";
}

struct TempDir {
  TempDir() : path(fs::temp_directory_path() / ("ember_onnx_" + std::to_string(::getpid()))) {
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  fs::path path;
};

// tools/make_torch_refs.py's onnx_net, with ember's modules.
std::shared_ptr<nn::Sequential<float>> onnx_net() {
  return std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(3, 8, 3, {.padding = 1}), nn::BatchNorm2d(8), nn::ReLU(),
      nn::MaxPool2d(3, {.stride = 2, .padding = 1, .ceil_mode = true}),
      nn::Conv2d(8, 8, 3, {.stride = 2, .padding = {1, 0}, .groups = 2, .bias = false}), nn::BatchNorm2d(8),
      nn::LeakyReLU(0.2), nn::Conv2d(8, 16, 1), nn::GELU(), nn::AdaptiveAvgPool2d(1), nn::Flatten(),
      nn::Linear(16, 12), nn::ELU(1.3), nn::Linear(12, 12), nn::Softplus(2.0), nn::Linear(12, 5), nn::Tanh());
}

Tensor<float> forward(nn::Module<float>& model, const Tensor<float>& x) {
  ember::NoGradGuard no_grad;
  return model(x);
}

Tensor<float> named(const nn::StateDict& tensors, const std::string& name) {
  for (const auto& t : tensors) {
    if (t.name == name) return Tensor<float>::from_base(t.tensor);
  }
  throw std::runtime_error("no tensor " + name);
}

void write_io(const std::string& path, const Tensor<float>& input, const Tensor<float>& output) {
  ember::io::write_safetensors(path, {{"input", input}, {"output", output}});
}

// Runs tools/onnx_check.py on (model, io) pairs; skips where no python3 with the onnx package was
// found when the build was configured (scripts/install-deps.sh installs it).
void expect_onnx_check(const std::vector<std::pair<std::string, std::string>>& pairs) {
#ifdef EMBER_ONNX_PYTHON
  std::string command = std::string(EMBER_ONNX_PYTHON) + " " + EMBER_SOURCE_DIR + "/tools/onnx_check.py";
  for (const auto& [model, io] : pairs) command += " " + model + " " + io;
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int status = ::pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command << "\n" << out;
  std::printf("%s", out.c_str());
#else
  (void)pairs;
  GTEST_SKIP() << "no python3 with the onnx package when this build was configured (python3-onnx)";
#endif
}

TEST(Onnx, PyTorchCnnExportsToAGraphThatComputesPyTorchsOutput) {
  auto net = onnx_net();
  ember::load(*net, data_dir() + "/torch_onnx_net.safetensors");
  net->eval();
  const auto io = ember::io::read_safetensors(data_dir() + "/torch_onnx_net_io.safetensors");
  const Tensor<float> x = named(io.tensors, "input"), want = named(io.tensors, "output");
  const Tensor<float> y = forward(*net, x);
  ASSERT_EQ(y.shape(), want.shape());
  EXPECT_TRUE(ember::allclose(y, want, 1e-5, 1e-5));

  TempDir dir;
  deploy::export_onnx(*net, x.shape(), dir / "folded.onnx");
  deploy::export_onnx(*net, x.shape(), dir / "dynamic.onnx", {.dynamic_batch = true, .fold_batch_norm = false});
  // The symbolic batch: a batch of 5 through a graph traced on 2.
  ember::manual_seed(4);
  const Tensor<float> x5 = ember::rand<float>({5, 3, 12, 12}) * 2.0 - 1.0;
  write_io(dir / "io5.safetensors", x5, forward(*net, x5));
  // A plan exports as the model does, with its fused ops as nodes of their own.
  const deploy::Plan plan = deploy::compile(*net, x.shape());
  ASSERT_LT(plan.num_steps(), 14u);  // something was fused
  deploy::export_onnx(plan, dir / "plan.onnx");
  EXPECT_EQ(deploy::to_onnx(plan), deploy::to_onnx(deploy::compile(*net, x.shape(), {.fuse_elementwise = false})));

  const std::string torch_io = data_dir() + "/torch_onnx_net_io.safetensors";
  expect_onnx_check({{data_dir() + "/torch_onnx_net.onnx", torch_io},  // the interpreter, on PyTorch's export
                     {dir / "folded.onnx", torch_io},
                     {dir / "dynamic.onnx", torch_io},
                     {dir / "dynamic.onnx", dir / "io5.safetensors"},
                     {dir / "plan.onnx", torch_io}});
}

// Layer norm over two trailing dims and over one, GELU's tanh form, log_softmax: PyTorch's values
// through the plan, and through the exported graph (layer norm as opset 13's formula).
TEST(Onnx, LayerNormAndLogSoftmaxHeadMatchesPyTorch) {
  auto head = std::make_shared<nn::Sequential<float>>(
      nn::LayerNorm(Shape{4, 3}), nn::Flatten(), nn::Linear(24, 16), nn::GELU("tanh"),
      nn::LayerNorm(16, {.eps = 1e-3}), nn::Linear(16, 6), nn::LogSoftmax(1));
  ember::load(*head, data_dir() + "/torch_onnx_head.safetensors");
  head->eval();
  const auto io = ember::io::read_safetensors(data_dir() + "/torch_onnx_head_io.safetensors");
  const Tensor<float> x = named(io.tensors, "input"), want = named(io.tensors, "output");
  EXPECT_TRUE(ember::allclose(forward(*head, x), want, 1e-5, 1e-5));
  const deploy::Plan plan = deploy::compile(*head, x.shape());
  EXPECT_TRUE(ember::allclose(ember::testing::run_plan(plan, x), want, 1e-5, 1e-5)) << plan.str();

  // Softmax over channels followed by dims of size 1: rows merged for the graph.
  auto pooled = std::make_shared<nn::Sequential<float>>(nn::Conv2d(3, 5, 1), nn::AdaptiveAvgPool2d(1),
                                                        nn::Softmax(1));
  pooled->eval();
  ember::manual_seed(2);
  const Tensor<float> image = ember::randn<float>({2, 3, 4, 4});
  TempDir dir;
  deploy::export_onnx(*head, x.shape(), dir / "head.onnx", {.dynamic_batch = true});
  deploy::export_onnx(*pooled, image.shape(), dir / "pooled.onnx", {.dynamic_batch = true});
  write_io(dir / "pooled.safetensors", image, forward(*pooled, image));
  const std::string torch_io = data_dir() + "/torch_onnx_head_io.safetensors";
  expect_onnx_check({{data_dir() + "/torch_onnx_head.onnx", torch_io},
                     {dir / "head.onnx", torch_io},
                     {dir / "pooled.onnx", dir / "pooled.safetensors"}});
}

// LeNet-5 as drawn (tanh, average pooling; the second pooling padded, ceil_mode, padding left out
// of the count): AveragePool for the first, the plan's window sums and divisors for the second.
TEST(Onnx, LeNetWithAveragePoolingMatchesPyTorch) {
  auto lenet = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 6, 5, {.padding = 2}), nn::Tanh(), nn::AvgPool2d(2), nn::Conv2d(6, 16, 5), nn::Tanh(),
      nn::AvgPool2d(3, {.stride = 2, .padding = 1, .ceil_mode = true, .count_include_pad = false}), nn::Flatten(),
      nn::Linear(16 * 6 * 6, 120), nn::Tanh(), nn::Linear(120, 84), nn::Tanh(), nn::Linear(84, 10));
  ember::load(*lenet, data_dir() + "/torch_onnx_lenet.safetensors");
  lenet->eval();
  const auto io = ember::io::read_safetensors(data_dir() + "/torch_onnx_lenet_io.safetensors");
  const Tensor<float> x = named(io.tensors, "input"), want = named(io.tensors, "output");
  EXPECT_TRUE(ember::allclose(forward(*lenet, x), want, 1e-5, 1e-5));
  const deploy::Plan plan = deploy::compile(*lenet, x.shape());
  ember::testing::expect_bitwise_equal(forward(*lenet, x), ember::testing::run_plan(plan, x));

  TempDir dir;
  deploy::export_onnx(*lenet, x.shape(), dir / "lenet.onnx", {.dynamic_batch = true});
  const std::vector<uint8_t> bytes = deploy::to_onnx(plan);
  const std::string text(bytes.begin(), bytes.end());
  EXPECT_NE(text.find("AveragePool"), std::string::npos);
  EXPECT_NE(text.find("avg_pool2d_1.divisors"), std::string::npos);  // the second pooling's form
  const std::string torch_io = data_dir() + "/torch_onnx_lenet_io.safetensors";
  expect_onnx_check({{data_dir() + "/torch_onnx_lenet.onnx", torch_io}, {dir / "lenet.onnx", torch_io}});
}

// A DCGAN-style generator of transposed convolutions (output_padding, groups with dilation, a
// stride-1 one) with batch norm: ConvTranspose nodes, against PyTorch's output and export.
TEST(Onnx, TransposedConvolutionGeneratorMatchesPyTorch) {
  auto gen = std::make_shared<nn::Sequential<float>>(
      nn::ConvTranspose2d(6, 8, 4, {.bias = false}), nn::BatchNorm2d(8), nn::ReLU(),
      nn::ConvTranspose2d(8, 4, 3, {.stride = 2, .padding = 1, .output_padding = 1}), nn::BatchNorm2d(4),
      nn::LeakyReLU(0.2), nn::ConvTranspose2d(4, 4, 3, {.stride = 2, .groups = 2, .dilation = 2}), nn::ReLU(),
      nn::ConvTranspose2d(4, 2, 3, {.padding = 1}), nn::Tanh());
  ember::load(*gen, data_dir() + "/torch_onnx_gen.safetensors");
  gen->eval();
  const auto io = ember::io::read_safetensors(data_dir() + "/torch_onnx_gen_io.safetensors");
  const Tensor<float> x = named(io.tensors, "input"), want = named(io.tensors, "output");
  EXPECT_TRUE(ember::allclose(forward(*gen, x), want, 1e-5, 1e-5));
  const deploy::Plan plan = deploy::compile(*gen, x.shape());
  EXPECT_TRUE(ember::allclose(ember::testing::run_plan(plan, x), want, 1e-5, 1e-5)) << plan.str();

  TempDir dir;
  deploy::export_onnx(*gen, x.shape(), dir / "gen.onnx", {.dynamic_batch = true});
  deploy::export_onnx(*gen, x.shape(), dir / "unfolded.onnx", {.fold_batch_norm = false});
  ember::manual_seed(5);
  const Tensor<float> x3 = ember::rand<float>({3, 6, 1, 1}) * 2.0 - 1.0;
  write_io(dir / "gen3.safetensors", x3, forward(*gen, x3));
  const std::vector<uint8_t> bytes = deploy::to_onnx(plan);
  EXPECT_NE(std::string(bytes.begin(), bytes.end()).find("ConvTranspose"), std::string::npos);
  const std::string torch_io = data_dir() + "/torch_onnx_gen_io.safetensors";
  expect_onnx_check({{data_dir() + "/torch_onnx_gen.onnx", torch_io},
                     {dir / "gen.onnx", torch_io},
                     {dir / "gen.onnx", dir / "gen3.safetensors"},
                     {dir / "unfolded.onnx", torch_io}});
}

// Upsampling, nearest and bilinear (with align_corners too): Gather of the plan's source positions
// and their weighted sums, against PyTorch's output; group and instance norm.
TEST(Onnx, UpsamplingExportsAsGathersAndMatchesPyTorch) {
  auto up = std::make_shared<nn::Sequential<float>>(
      nn::Upsample({.scale_factor = {2}, .mode = "nearest"}), nn::Conv2d(3, 4, 3, {.padding = 1}), nn::ReLU(),
      nn::Upsample({.size = {13, 9}, .mode = "bilinear", .align_corners = false}), nn::Conv2d(4, 2, 3),
      nn::Upsample({.scale_factor = {1.5}, .mode = "bilinear", .align_corners = true}));
  ember::load(*up, data_dir() + "/torch_onnx_upsample.safetensors");
  up->eval();
  const auto io = ember::io::read_safetensors(data_dir() + "/torch_onnx_upsample_io.safetensors");
  const Tensor<float> x = named(io.tensors, "input"), want = named(io.tensors, "output");
  EXPECT_TRUE(ember::allclose(forward(*up, x), want, 1e-5, 1e-5));
  TempDir dir;
  deploy::export_onnx(*up, x.shape(), dir / "up.onnx", {.dynamic_batch = true});
  ember::manual_seed(6);
  const Tensor<float> x3 = ember::randn<float>({3, 3, 5, 4});
  write_io(dir / "up3.safetensors", x3, forward(*up, x3));
  // Group and instance norm: layer norm's formula over each group, then the channel weights.
  auto norms = std::make_shared<nn::Sequential<float>>(nn::Conv2d(3, 8, 3, {.padding = 1}), nn::GroupNorm(4, 8),
                                                       nn::SiLU(), nn::Upsample({.size = {7, 7}, .mode = "bilinear"}),
                                                       nn::InstanceNorm2d(8, {.affine = true}));
  norms->eval();
  {
    ember::NoGradGuard no_grad;
    for (auto& [name, t] : norms->named_parameters()) t.copy_(ember::randn<float>(t.shape()) * 0.5 + 0.2);
  }
  deploy::export_onnx(*norms, x.shape(), dir / "norms.onnx", {.dynamic_batch = true});
  write_io(dir / "norms.safetensors", x3, forward(*norms, x3));
  expect_onnx_check({{dir / "up.onnx", data_dir() + "/torch_onnx_upsample_io.safetensors"},
                     {dir / "up.onnx", dir / "up3.safetensors"},
                     {dir / "norms.onnx", dir / "norms.safetensors"}});
}

// The elementwise kernels the exporter writes as formulas or ONNX ops of other names, binary ops
// between two computed values, a linear layer on a 3-D input (MatMul) and views.
class ElementwiseZoo : public nn::Module<float> {
 public:
  ElementwiseZoo() { fc = register_module("fc", nn::Linear(6, 6)); }
  Tensor<float> forward(const Tensor<float>& x) override {
    using namespace ember;
    const Tensor<float> h = fc(x);                        // [2, 3, 6] through MatMul
    const Tensor<float> pos = sigmoid(h) + 0.25;          // in (0.25, 1.25)
    Tensor<float> a = log1p(pos) + expm1(h * 0.5) + rsqrt(pos) + square(h) + sqrt(pos) + reciprocal(pos);
    a = a + sin(h) * cos(h) + erf(h) + sign(h) + floor(h * 3.0) + ceil(h * 3.0) + round(h * 3.0) + abs(-h);
    a = a + silu(h) + mish(h) + gelu(h) + gelu(h, "tanh") + softplus(h) + softplus(h, 2.0, 0.5) + elu(h, 0.7);
    a = a + clamp(h, -0.3, 0.4) + clamp(h, 0.1, INFINITY) + pow(pos, 2.5) + (1.5 - h) + 2.0 / pos + exp(h) + log(pos);
    a = a + maximum(h, pos) - minimum(h, pos) + pow(pos, h) / pos + leaky_relu(h, 0.3) + tanh(h) + relu(h);
    return a.reshape({2, 18}).reshape({2, 3, 6});
  }
  std::string type_name() const override { return "ElementwiseZoo"; }
  nn::ModuleHolder<nn::Linear<float>> fc;
};

TEST(Onnx, ElementwiseOpsExportAsTheirFormulas) {
  ember::manual_seed(7);
  ElementwiseZoo zoo;
  zoo.eval();
  const Tensor<float> x = ember::randn<float>({2, 3, 6});
  TempDir dir;
  deploy::export_onnx(zoo, x.shape(), dir / "zoo.onnx");
  write_io(dir / "zoo.safetensors", x, forward(zoo, x));
  // Images without a batch dim: Conv and MaxPool see a batch of one.
  auto unbatched = std::make_shared<nn::Sequential<float>>(nn::Conv2d(3, 4, 3, {.padding = 1}), nn::ReLU(),
                                                           nn::MaxPool2d(2), nn::Flatten({.start_dim = 0}),
                                                           nn::Linear(4 * 3 * 3, 5));
  unbatched->eval();
  const Tensor<float> image = ember::randn<float>({3, 6, 6});
  deploy::export_onnx(*unbatched, image.shape(), dir / "unbatched.onnx");
  write_io(dir / "unbatched.safetensors", image, forward(*unbatched, image));
  expect_onnx_check({{dir / "zoo.onnx", dir / "zoo.safetensors"}, {dir / "unbatched.onnx", dir / "unbatched.safetensors"}});
}

// Broadcasting ops between computed values and with the model's parameters and buffers, whose
// values become initializers of the graph; concatenations.
TEST(Onnx, BroadcastingOpsConstantsAndConcatenationsExport) {
  ember::manual_seed(12);
  ember::testing::Broadcasts model;
  model.eval();
  const Tensor<float> x = ember::randn<float>({2, 3, 6, 6});
  TempDir dir;
  deploy::export_onnx(model, x.shape(), dir / "broadcasts.onnx", {.dynamic_batch = true});
  write_io(dir / "broadcasts.safetensors", x, forward(model, x));
  const ember::Tensor<float> x3 = ember::randn<float>({3, 3, 6, 6});
  write_io(dir / "broadcasts3.safetensors", x3, forward(model, x3));
  ember::testing::DenseCat dense;
  dense.eval();
  const Tensor<float> image = ember::randn<float>({2, 2, 5, 5});
  deploy::export_onnx(dense, image.shape(), dir / "cat.onnx", {.dynamic_batch = true});
  write_io(dir / "cat.safetensors", image, forward(dense, image));
  expect_onnx_check({{dir / "broadcasts.onnx", dir / "broadcasts.safetensors"},
                     {dir / "broadcasts.onnx", dir / "broadcasts3.safetensors"},
                     {dir / "cat.onnx", dir / "cat.safetensors"}});
}

// A Transformer encoder layer: Transpose and MatMul for the heads, Softmax, layer norm's formula.
TEST(Onnx, TransformerEncoderLayerExports) {
  ember::manual_seed(15);
  nn::TransformerEncoderLayer layer(16, 4, {.dim_feedforward = 32, .activation = "gelu", .batch_first = true});
  layer.eval();
  const Tensor<float> x = ember::randn<float>({2, 5, 16}), x3 = ember::randn<float>({3, 5, 16});
  TempDir dir;
  deploy::export_onnx(layer, x.shape(), dir / "encoder.onnx", {.dynamic_batch = true});
  write_io(dir / "encoder.safetensors", x, forward(layer, x));
  write_io(dir / "encoder3.safetensors", x3, forward(layer, x3));
  expect_onnx_check({{dir / "encoder.onnx", dir / "encoder.safetensors"},
                     {dir / "encoder.onnx", dir / "encoder3.safetensors"}});
}

TEST(Onnx, WritesAModelProtoOfOpset13) {
  auto net = onnx_net();
  net->eval();
  const std::vector<uint8_t> bytes = deploy::to_onnx(deploy::compile(*net, {1, 3, 12, 12}, {.fold_batch_norm = false}));
  ASSERT_GT(bytes.size(), 2u);
  EXPECT_EQ(bytes[0], 0x08);  // field 1 (ir_version), varint
  EXPECT_EQ(bytes[1], deploy::kOnnxIrVersion);
  const std::string text(bytes.begin(), bytes.end());
  for (const char* op : {"Conv", "BatchNormalization", "conv2d_2.bias", "linear_1.weight", "MaxPool", "Gemm", "ReduceMean", "Reshape", "LeakyRelu", "Erf", "Elu", "Softplus"}) {
    EXPECT_NE(text.find(op), std::string::npos) << op;
  }
  // The weights are there, raw: the first convolution's first weight, little-endian.
  const float w0 = net->named_parameters().front().second.to_vector()[0];
  const auto* p = reinterpret_cast<const uint8_t*>(&w0);
  EXPECT_NE(text.find(std::string(p, p + 4)), std::string::npos);
}

TEST(Onnx, RefusalsNameTheProblemAndLeaveNoFile) {
  TempDir dir;
  const std::string path = dir / "refused.onnx";
  auto net = onnx_net();
  expect_error<ember::ValueError>([&] { deploy::export_onnx(*net, {1, 3, 12, 12}, path); }, "model.eval()");
  net->eval();
  expect_error<ember::ShapeError>([&] { deploy::export_onnx(*net, {1, 4, 12, 12}, path); }, "export_onnx");

  auto pooled = std::make_shared<nn::Sequential<float>>(nn::Conv2d(1, 2, 3), nn::AdaptiveAvgPool2d(2));
  pooled->eval();
  expect_error<ember::ValueError>(
      [&] { deploy::export_onnx(*pooled, {1, 1, 8, 8}, path); },
      "deploy::export_onnx: tracing the forward: 1: deploy::compile: adaptive_avg_pool2d to an output other than");

  // A view that moves the batch cannot keep it symbolic.
  auto flat = std::make_shared<nn::Sequential<float>>(nn::Flatten({.start_dim = 0}), nn::ReLU());
  flat->eval();
  expect_error<ember::ShapeError>(
      [&] { deploy::export_onnx(*flat, {2, 3}, path, {.dynamic_batch = true}); }, "must keep the batch");
  deploy::export_onnx(*flat, {2, 3}, path + ".static");  // fine with a fixed batch
  EXPECT_TRUE(fs::exists(path + ".static"));

  expect_error<ember::ValueError>(
      [&] { deploy::export_onnx(*flat, {2, 3}, path, {.input_name = "x", .output_name = "x"}); }, "distinct");
  expect_error<ember::ValueError>([&] { deploy::export_onnx(deploy::Plan(), path); }, "empty");

  // A quantized model's plan runs int8 kernels that this export does not write.
  auto mlp = std::make_shared<nn::Sequential<float>>(nn::Linear(8, 8), nn::ReLU(), nn::Linear(8, 4));
  mlp->eval();
  std::vector<Tensor<float>> calibration{ember::randn<float>({4, 8})};
  const auto q = ember::quant::quantize(*mlp, calibration);
  expect_error<ember::ValueError>([&] { deploy::export_onnx(deploy::compile(q, {1, 8}), path); }, "int8");
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
