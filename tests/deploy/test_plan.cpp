// deploy::compile and Plan::run (Note [Inference plan]): the same outputs as the model's forward
// (bit for bit unless batch norm was folded), the arena's size and alignment, and the errors.
#include <gtest/gtest.h>

#include <cstddef>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/deploy.hpp"
#include "ember/nn.hpp"
#include "ember/prune.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/ops/factory.hpp"
#include "../support/expect_error.hpp"
#include "../support/gzip.hpp"
#include "../../src/deploy/plan_data.hpp"
#include "plan_support.hpp"

namespace {

using ember::Shape;
using ember::Tensor;
namespace nn = ember::nn;
namespace deploy = ember::deploy;
using ember::testing::Arena;
using ember::testing::expect_bitwise_equal;
using ember::testing::random_input;
using ember::testing::randomise_batch_norms;
using ember::testing::run_plan;

std::shared_ptr<nn::Sequential<float>> mlp() {
  return std::make_shared<nn::Sequential<float>>(nn::Flatten(), nn::Linear(784, 64), nn::ReLU(), nn::Dropout(0.2),
                                                 nn::Linear(64, 32), nn::ReLU(), nn::Linear(32, 10));
}

std::shared_ptr<nn::Sequential<float>> cnn() {
  return std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(8, 16, 3, {.padding = 1}), nn::BatchNorm2d(16), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
      nn::Dropout(0.25), nn::Linear(16 * 7 * 7, 32), nn::ReLU(), nn::Linear(32, 10));
}

std::shared_ptr<nn::Sequential<float>> resnet() {
  return std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(3, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(), nn::BasicBlock(8, 8, 1),
      nn::BasicBlock(8, 16, 2), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, 10));
}

void expect_close(const Tensor<float>& want, const Tensor<float>& got, double tol) {
  ASSERT_EQ(want.shape(), got.shape());
  const std::vector<float> a = want.contiguous().to_vector(), b = got.contiguous().to_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_NEAR(a[i], b[i], tol * (1.0 + std::abs(static_cast<double>(a[i])))) << "at " << i;
  }
}

Tensor<float> forward(nn::Module<float>& model, const Tensor<float>& x) {
  ember::NoGradGuard no_grad;
  return model(x);
}

TEST(Plan, MlpMatchesTheModelBitForBit) {
  auto model = mlp();
  model->eval();
  const deploy::Plan plan = deploy::compile(*model, {4, 1, 28, 28});
  EXPECT_EQ(plan.num_steps(), 3u) << plan.str();  // three linear layers, the ReLUs fused
  EXPECT_EQ(plan.output_shape(), Shape({4, 10}));
  const Tensor<float> x = random_input({4, 1, 28, 28}, 1);
  expect_bitwise_equal(forward(*model, x), run_plan(plan, x));
}

// More inputs than the GEMM's K slice (1024): the bias goes in before the product is added to it
// (addmm) in the plan as in the module, or the two would round the slices differently.
TEST(Plan, LinearOverManySlicesMatchesTheModelBitForBit) {
  auto model = std::make_shared<nn::Sequential<float>>(nn::Flatten(), nn::Linear(2352, 40), nn::ReLU(),
                                                       nn::Linear(40, 3));
  model->eval();
  const deploy::Plan plan = deploy::compile(*model, {6, 3, 28, 28});
  const Tensor<float> x = random_input({6, 3, 28, 28}, 3);
  expect_bitwise_equal(forward(*model, x), run_plan(plan, x));
}

TEST(Plan, CnnWithBatchNormFoldedIsCloseAndUnfoldedIsExact) {
  auto model = cnn();
  randomise_batch_norms(*model);
  model->eval();
  const Tensor<float> x = random_input({3, 1, 28, 28}, 2);
  const Tensor<float> want = forward(*model, x);

  const deploy::Plan folded = deploy::compile(*model, {3, 1, 28, 28});
  EXPECT_EQ(folded.num_steps(), 6u) << folded.str();  // conv, pool, conv, pool, linear, linear
  EXPECT_NE(folded.str().find("batch norm folded"), std::string::npos) << folded.str();
  expect_close(want, run_plan(folded, x), 1e-5);

  const deploy::Plan exact = deploy::compile(*model, {3, 1, 28, 28}, {.fold_batch_norm = false});
  EXPECT_EQ(exact.num_steps(), 8u) << exact.str();
  expect_bitwise_equal(want, run_plan(exact, x));
}

// A batch large enough that the steps split their work among threads (and their convolutions
// among workers): the same bits as the model's forward whatever the threads at compile and run.
TEST(Plan, LargeBatchesGiveTheSameBitsOnAnyThreadCount) {
  auto model = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 8, 3, {.padding = 1}), nn::BatchNorm2d(8), nn::ReLU(), nn::MaxPool2d(3, {.stride = 2}),
      nn::Conv2d(8, 8, 3, {.stride = 2, .padding = 1, .groups = 2}), nn::GELU(), nn::AdaptiveAvgPool2d(1), nn::Flatten(),
      nn::Linear(8, 10));
  randomise_batch_norms(*model);
  model->eval();
  const Tensor<float> x = random_input({24, 1, 28, 28}, 5);
  const int threads = ember::get_num_threads();
  const Tensor<float> want = forward(*model, x);
  for (int compile_threads : {1, 3}) {
    ember::set_num_threads(compile_threads);
    const deploy::Plan plan = deploy::compile(*model, {24, 1, 28, 28}, {.fold_batch_norm = false});
    EXPECT_NE(plan.str().find("(im2col)"), std::string::npos) << plan.str();
    for (int run_threads : {1, 2, 4}) {
      ember::set_num_threads(run_threads);
      expect_bitwise_equal(want, run_plan(plan, x));
    }
  }
  ember::set_num_threads(threads);
}

// A pruned model: its forward pre-hooks compute weight_orig * weight_mask (constants) first.
TEST(Plan, PrunedModelsCompile) {
  auto model = cnn();
  model->eval();
  ember::prune::l1_unstructured(model->submodule("0"), "weight", 0.5);
  ember::prune::ln_structured(model->submodule("10"), "weight", 0.25, 2.0, 0);
  const Tensor<float> x = random_input({2, 1, 28, 28}, 4);
  const deploy::Plan plan = deploy::compile(*model, {2, 1, 28, 28}, {.fold_batch_norm = false});
  EXPECT_EQ(plan.str().find("mul"), std::string::npos) << plan.str();
  expect_bitwise_equal(forward(*model, x), run_plan(plan, x));
}

TEST(Plan, ResidualNetworkWithAddsAndGlobalPooling) {
  auto model = resnet();
  randomise_batch_norms(*model);
  model->eval();
  const Tensor<float> x = random_input({2, 3, 16, 16}, 3);
  const Tensor<float> want = forward(*model, x);
  expect_close(want, run_plan(deploy::compile(*model, {2, 3, 16, 16}), x), 1e-5);
  const deploy::Plan exact = deploy::compile(*model, {2, 3, 16, 16}, {.fold_batch_norm = false});
  expect_bitwise_equal(want, run_plan(exact, x));
  // Without fusing, each ReLU and add is a step of its own, and still exact.
  const deploy::Plan plain = deploy::compile(*model, {2, 3, 16, 16}, {.fold_batch_norm = false, .fuse_elementwise = false});
  EXPECT_GT(plain.num_steps(), exact.num_steps());
  expect_bitwise_equal(want, run_plan(plain, x));
}

TEST(Plan, ArenaIsSharedAcrossLifetimesAndExact) {
  auto model = cnn();
  model->eval();
  const deploy::Plan plan = deploy::compile(*model, {1, 1, 28, 28});
  // Buffers whose lifetimes do not meet share memory: the arena holds at least the largest
  // step's input, output and column matrix (conv2: 8 x 14 x 14 in, 16 x 14 x 14 out, 72 x 196),
  // and well under every buffer and scratch area side by side (counted from the plan's steps).
  const size_t f = sizeof(float);
  EXPECT_GE(plan.arena_bytes(), (8 * 14 * 14 + 16 * 14 * 14 + 72 * 196) * f);
  const deploy::PlanData& data = *plan.data();
  size_t side_by_side = 0;
  for (const deploy::Step& s : data.steps) {
    side_by_side += static_cast<size_t>(s.scratch_bytes);
    if (s.out != data.output) side_by_side += static_cast<size_t>(data.values[static_cast<size_t>(s.out)].shape.numel()) * f;
  }
  EXPECT_LT(plan.arena_bytes(), side_by_side * 3 / 4) << plan.str();
  const Tensor<float> x = random_input({1, 1, 28, 28}, 4);
  const Tensor<float> want = run_plan(plan, x);
  Tensor<float> y = ember::full<float>({1, 10}, 7.0);
  {
    Arena small(plan.arena_bytes() - 1);
    EXPECT_THROW(plan.run(x, y, small.span), ember::ValueError);
    Arena misaligned(plan.arena_bytes(), 8);
    EXPECT_THROW(plan.run(x, y, misaligned.span), ember::ValueError);
    EXPECT_THROW(plan.run(random_input({2, 1, 28, 28}, 5), y, Arena(plan.arena_bytes()).span), ember::ShapeError);
    EXPECT_THROW(plan.run(x, ember::zeros<float>({1, 11}), Arena(plan.arena_bytes()).span), ember::ShapeError);
    EXPECT_THROW(plan.run(x, x, Arena(plan.arena_bytes()).span), ember::ShapeError);
  }
  for (float v : y.to_vector()) ASSERT_EQ(v, 7.0f);  // nothing ran
  Arena exact(plan.arena_bytes());
  plan.run(x, y, exact.span);
  expect_bitwise_equal(want, y);
}

TEST(Plan, OutlivesTheModelAndIgnoresLaterChanges) {
  auto model = mlp();
  model->eval();
  const Tensor<float> x = random_input({2, 1, 28, 28}, 6);
  const Tensor<float> want = forward(*model, x);
  const deploy::Plan plan = deploy::compile(*model, {2, 1, 28, 28});
  {
    ember::NoGradGuard no_grad;
    for (auto& [name, p] : model->named_parameters()) p.fill_(0.0);
  }
  model.reset();
  expect_bitwise_equal(want, run_plan(plan, x));
  expect_bitwise_equal(want, plan(x));
}

// MobileNetV3's activations are elementwise ops a plan runs: the same bits as the model. An
// unbatched input ([C, H, W], a batch of one for the layers) compiles too.
TEST(Plan, HardswishHardsigmoidReLU6AndUnbatchedInputs) {
  auto model = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 8, 3, {.padding = 1}), nn::Hardswish(), nn::MaxPool2d(2), nn::Conv2d(8, 8, 3), nn::ReLU6(),
      nn::Hardsigmoid());
  model->eval();
  const Tensor<float> x = random_input({2, 1, 12, 12}, 7) * 4.0f;
  expect_bitwise_equal(forward(*model, x), run_plan(deploy::compile(*model, {2, 1, 12, 12}), x));
  const Tensor<float> one = x.narrow(0, 1, 1).reshape({1, 12, 12});
  const deploy::Plan unbatched = deploy::compile(*model, {1, 12, 12});
  EXPECT_EQ(unbatched.output_shape(), Shape({8, 4, 4}));
  expect_bitwise_equal(forward(*model, one), run_plan(unbatched, one));
}

TEST(Plan, RefusesWhatItCannotRun) {
  auto pooled = std::make_shared<nn::Sequential<float>>(nn::Conv2d(1, 4, 3), nn::AdaptiveAvgPool2d(2),
                                                        nn::Flatten(), nn::Linear(4 * 2 * 2, 10));
  pooled->eval();
  try {
    deploy::compile(*pooled, {1, 1, 28, 28});
    FAIL() << "adaptive_avg_pool2d to 2 x 2 compiled";
  } catch (const ember::Error& e) {
    EXPECT_EQ(e.module_path(), "1");
    EXPECT_NE(std::string(e.what()).find("adaptive_avg_pool2d to an output other than 1 x 1 is not supported"),
              std::string::npos)
        << e.what();
  }
  // A softmax over a dim other than the last (rows with a stride).
  auto soft = std::make_shared<nn::Sequential<float>>(nn::Linear(8, 4), nn::Softmax(0), nn::Linear(4, 2));
  soft->eval();
  ember::testing::expect_error<ember::ValueError>([&] { deploy::compile(*soft, {2, 8}); }, "softmax over dim 0 of [2, 4]");

  auto model = mlp();  // still in training mode
  EXPECT_THROW(deploy::compile(*model, {1, 1, 28, 28}), ember::ValueError);
  model->eval();
  EXPECT_THROW(deploy::compile(*model, {1, 1, 28, 27}), ember::ShapeError);
  EXPECT_THROW(deploy::compile(*model, {0, 1, 28, 28}), ember::ShapeError);
  EXPECT_THROW(deploy::Plan().run(Tensor<float>(), Tensor<float>(), {}), ember::ValueError);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("ember_plan_" + std::to_string(::getpid()) + "_" + name)).string();
}

// The plan saved, then loaded and parsed from its bytes (which parse copies: they are zeroed
// before it runs): both give the model's bits.
void expect_file_keeps_bits(const deploy::Plan& plan, nn::Module<float>& model, const Tensor<float>& x,
                            const std::string& name) {
  const std::string path = temp_path(name + ".ember");
  deploy::save(plan, path);
  expect_bitwise_equal(forward(model, x), run_plan(deploy::load(path), x));
  std::vector<uint8_t> bytes = ember::io::read_file(path);
  const deploy::Plan parsed = deploy::parse(bytes, name);
  std::fill(bytes.begin(), bytes.end(), uint8_t{0});
  expect_bitwise_equal(forward(model, x), run_plan(parsed, x));
  std::filesystem::remove(path);
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                               static_cast<std::streamsize>(bytes.size()));
}

TEST(Plan, LayerNormSoftmaxAndLogSoftmaxMatchTheModelBitForBit) {
  auto head = std::make_shared<nn::Sequential<float>>(
      nn::LayerNorm(Shape{4, 3}), nn::Flatten(), nn::Linear(12, 16), nn::GELU("tanh"),
      nn::LayerNorm(16, {.elementwise_affine = false}), nn::Linear(16, 6), nn::LogSoftmax(1));
  head->eval();
  const Tensor<float> x = random_input({5, 4, 3}, 3) * 3.0f;
  const deploy::Plan plan = deploy::compile(*head, x.shape());
  EXPECT_NE(plan.str().find("layer_norm [5, 4, 3] -> [5, 4, 3]"), std::string::npos) << plan.str();
  EXPECT_NE(plan.str().find("log_softmax [5, 6] -> [5, 6]"), std::string::npos) << plan.str();
  expect_bitwise_equal(forward(*head, x), run_plan(plan, x));
  // Through the file, whose reader checks the new steps' fields.
  const std::string path = temp_path("head.ember");
  deploy::save(plan, path);
  expect_bitwise_equal(forward(*head, x), run_plan(deploy::load(path), x));
  std::filesystem::remove(path);

  // Softmax over channels followed by dims of size 1, a ReLU fused after it; unbatched too.
  auto pooled = std::make_shared<nn::Sequential<float>>(nn::Conv2d(3, 5, 1), nn::AdaptiveAvgPool2d(1),
                                                        nn::Softmax(1), nn::ReLU());
  pooled->eval();
  const Tensor<float> image = random_input({2, 3, 4, 4}, 4);
  expect_bitwise_equal(forward(*pooled, image), run_plan(deploy::compile(*pooled, image.shape()), image));
  auto rows = std::make_shared<nn::Sequential<float>>(nn::Softmax(-1));
  rows->eval();
  const Tensor<float> one = random_input({7}, 5);
  expect_bitwise_equal(forward(*rows, one), run_plan(deploy::compile(*rows, one.shape()), one));
}

TEST(Plan, AveragePoolingMatchesTheModelBitForBit) {
  auto model = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(2, 4, 3, {.padding = 1}), nn::AvgPool2d(2), nn::ReLU(),
      nn::AvgPool2d(3, {.stride = 2, .padding = 1, .ceil_mode = true, .count_include_pad = false}),
      nn::AvgPool2d(2, {.stride = 1, .padding = 1}));
  model->eval();
  const Tensor<float> x = random_input({3, 2, 10, 10}, 8);
  const deploy::Plan plan = deploy::compile(*model, x.shape());
  EXPECT_NE(plan.str().find("avg_pool2d [3, 4, 10, 10] -> [3, 4, 5, 5], relu fused"), std::string::npos) << plan.str();
  expect_bitwise_equal(forward(*model, x), run_plan(plan, x));
  expect_file_keeps_bits(plan, *model, x, "avg");  // parse copies the divisors too
  const Tensor<float> one = x.narrow(0, 0, 1).reshape({2, 10, 10});  // unbatched
  expect_bitwise_equal(forward(*model, one), run_plan(deploy::compile(*model, one.shape()), one));
}

// Transposed convolutions on each of their paths (a 1x1 code through col2im, output_padding,
// groups with dilation, a stride-1 "same" one on the flat kernels, a pointwise one), their bias
// added by the step, through a file, on 3-D inputs; batch norm folded into them.
TEST(Plan, TransposedConvolutionsMatchTheModelBitForBit) {
  ember::manual_seed(21);
  auto gen = std::make_shared<nn::Sequential<float>>(
      nn::ConvTranspose2d(6, 8, 4, {.bias = false}), nn::ReLU(),
      nn::ConvTranspose2d(8, 4, 3, {.stride = 2, .padding = 1, .output_padding = 1}), nn::LeakyReLU(0.2),
      nn::ConvTranspose2d(4, 4, 3, {.stride = 2, .groups = 2, .dilation = 2}),
      nn::ConvTranspose2d(4, 6, 3, {.padding = 1}), nn::Tanh(), nn::ConvTranspose2d(6, 2, 1));
  gen->eval();
  const Tensor<float> x = random_input({3, 6, 1, 1}, 9);
  const deploy::Plan plan = deploy::compile(*gen, x.shape());
  const std::string text = plan.str();
  EXPECT_EQ(plan.num_steps(), 5u) << text;  // the activations fused, the biases added by the steps
  EXPECT_NE(text.find("conv_transpose2d [3, 8, 4, 4] -> [3, 4, 8, 8], leaky_relu fused"), std::string::npos) << text;
  EXPECT_NE(text.find("(pointwise)"), std::string::npos) << text;
  expect_bitwise_equal(forward(*gen, x), run_plan(plan, x));
  const std::string path = temp_path("gen.ember");
  deploy::save(plan, path);
  const deploy::Plan loaded = deploy::load(path);
  EXPECT_EQ(loaded.str(), text);
  expect_bitwise_equal(forward(*gen, x), run_plan(loaded, x));
  std::filesystem::remove(path);
  const Tensor<float> one = x.narrow(0, 0, 1).reshape({6, 1, 1});  // unbatched
  expect_bitwise_equal(forward(*gen, one), run_plan(deploy::compile(*gen, one.shape()), one));

  // Batch norm after a transposed convolution (grouped: the scale goes by output channel).
  auto block = std::make_shared<nn::Sequential<float>>(
      nn::ConvTranspose2d(4, 6, 4, {.stride = 2, .padding = 1, .groups = 2}), nn::BatchNorm2d(6), nn::ReLU());
  randomise_batch_norms(*block);
  block->eval();
  const Tensor<float> image = random_input({2, 4, 5, 5}, 10);
  const deploy::Plan folded = deploy::compile(*block, image.shape());
  EXPECT_NE(folded.str().find("batch norm folded, relu fused"), std::string::npos) << folded.str();
  expect_close(forward(*block, image), run_plan(folded, image), 1e-5);
  expect_bitwise_equal(forward(*block, image),
                       run_plan(deploy::compile(*block, image.shape(), {.fold_batch_norm = false}), image));
}

// Winograd's product (Note [Winograd's weights once per call]): a plan transforms the weights once
// when it is made or read, for a convolution, a grouped one, a stride-1 transposed one and one
// whose weights batch norm folding changed; the same bits as the model, through a file and bytes.
TEST(Plan, WinogradConvolutionsMatchTheModel) {
  ember::manual_seed(23);
  auto net = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(32, 32, 3, {.padding = 1}), nn::ReLU(), nn::Conv2d(32, 64, 3, {.padding = 1, .groups = 2}),
      nn::ConvTranspose2d(64, 32, 3, {.padding = 1}), nn::Tanh());
  net->eval();
  const Tensor<float> x = random_input({2, 32, 16, 16}, 12);
  const deploy::Plan plan = deploy::compile(*net, x.shape());
  const std::string text = plan.str();
  const bool winograd = ember::backend::kernels<float>().conv_winograd != nullptr;
  size_t runs = 0;
  for (size_t at = text.find("(winograd)"); at != std::string::npos; at = text.find("(winograd)", at + 1)) ++runs;
  EXPECT_EQ(runs, winograd ? 3u : 0u) << text;
  expect_bitwise_equal(forward(*net, x), run_plan(plan, x));
  expect_file_keeps_bits(plan, *net, x, "winograd");  // transformed again when read
  const Tensor<float> one = x.narrow(0, 0, 1).contiguous();  // a batch of one: its own plan, the same bits
  expect_bitwise_equal(forward(*net, one), run_plan(deploy::compile(*net, one.shape()), one));

  auto block = std::make_shared<nn::Sequential<float>>(nn::Conv2d(32, 32, 3, {.padding = 1, .bias = false}),
                                                       nn::BatchNorm2d(32), nn::ReLU());
  randomise_batch_norms(*block);
  block->eval();
  const deploy::Plan folded = deploy::compile(*block, x.shape());
  EXPECT_NE(folded.str().find("batch norm folded, relu fused"), std::string::npos) << folded.str();
  expect_close(forward(*block, x), run_plan(folded, x), 1e-5);
}

// Stride-2 transposed convolutions wide enough for the phased path on AVX-512 (Note [Input
// gradient by phases]): DCGAN's kernels 4 and 3, groups, output_padding; the plan's workers split
// the batch, and a file written here loads and runs the same bits.
TEST(Plan, PhasedTransposedConvolutionsMatchTheModelBitForBit) {
  ember::manual_seed(24);
  auto gen = std::make_shared<nn::Sequential<float>>(
      nn::ConvTranspose2d(12, 16, 3, {.stride = 2, .padding = 1, .bias = false}), nn::ReLU(),
      nn::ConvTranspose2d(16, 24, 4, {.stride = 2, .padding = 1, .groups = 2}), nn::ReLU(),
      nn::ConvTranspose2d(24, 10, 3, {.stride = 2, .padding = 1, .output_padding = 1}), nn::Tanh());
  gen->eval();
  for (int threads : {1, 2}) {
    const int before = ember::get_num_threads();
    ember::set_num_threads(threads);
    const Tensor<float> x = random_input({5, 12, 4, 3}, 11);
    const deploy::Plan plan = deploy::compile(*gen, x.shape());
    const std::string text = plan.str();
    if (ember::backend::kernels<float>().isa == ember::backend::Isa::Avx512) {
      EXPECT_NE(text.find("[5, 16, 7, 5] -> [5, 24, 14, 10], relu fused (phases)"), std::string::npos) << text;
    }
    expect_bitwise_equal(forward(*gen, x), run_plan(plan, x));
    const std::string path = temp_path("phased.ember");
    deploy::save(plan, path);
    expect_bitwise_equal(forward(*gen, x), run_plan(deploy::load(path), x));
    std::filesystem::remove(path);
    ember::set_num_threads(before);
  }
}

// interpolate in each mode, by factors and to sizes, on 4-D and 3-D inputs: one step per
// resampled axis (none for a size it already has), through a file.
TEST(Plan, UpsamplingMatchesTheModelBitForBit) {
  ember::manual_seed(22);
  auto up = std::make_shared<nn::Sequential<float>>(
      nn::Upsample({.scale_factor = {2}, .mode = "nearest"}), nn::Conv2d(2, 3, 3, {.padding = 1}),
      nn::Upsample({.size = {13, 9}, .mode = "bilinear"}), nn::ReLU(),
      nn::Upsample({.scale_factor = {1.5, 0.7}, .mode = "bilinear", .align_corners = true}),
      nn::Upsample({.size = {19, 6}, .mode = "nearest-exact"}), nn::Upsample({.size = {19, 6}, .mode = "bilinear"}),
      nn::Conv2d(3, 2, 1));
  up->eval();
  const Tensor<float> x = random_input({2, 2, 5, 4}, 12);
  const deploy::Plan plan = deploy::compile(*up, x.shape());
  const std::string text = plan.str();
  EXPECT_NE(text.find("interpolate [2, 3, 10, 8] -> [2, 3, 13, 8]"), std::string::npos) << text;
  EXPECT_NE(text.find("interpolate [2, 3, 13, 8] -> [2, 3, 13, 9], relu fused"), std::string::npos) << text;
  expect_bitwise_equal(forward(*up, x), run_plan(plan, x));
  // Without a graph interpolate runs the plans' row function; with one, index_select and
  // elementwise ops: the same bits.
  const Tensor<float> xg = x.clone().requires_grad_(true);
  expect_bitwise_equal(forward(*up, x), (*up)(xg).detach());
  const std::string path = temp_path("upsample.ember");
  deploy::save(plan, path);
  expect_bitwise_equal(forward(*up, x), run_plan(deploy::load(path), x));
  std::filesystem::remove(path);

  auto line = std::make_shared<nn::Sequential<float>>(
      nn::Upsample({.scale_factor = {2.5}, .mode = "linear"}), nn::Upsample({.size = {7}, .mode = "nearest"}));
  line->eval();
  const Tensor<float> seq = random_input({3, 4, 6}, 13);
  expect_bitwise_equal(forward(*line, seq), run_plan(deploy::compile(*line, seq.shape()), seq));
}

// Group norm and instance norm are layer norm over each group's values then the per-channel
// affine (instance norm with running statistics: batch norm's, in eval mode): a U-Net-style block
// of them compiles and gives the model's bits.
TEST(Plan, GroupAndInstanceNormMatchTheModelBitForBit) {
  ember::manual_seed(23);
  auto block = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(3, 8, 3, {.padding = 1}), nn::GroupNorm(4, 8), nn::SiLU(),
      nn::Upsample({.scale_factor = {2}, .mode = "nearest"}), nn::Conv2d(8, 4, 3, {.padding = 1}),
      nn::InstanceNorm2d(4, {.affine = true}), nn::ReLU(), nn::InstanceNorm2d(4), nn::GroupNorm(1, 4),
      nn::InstanceNorm2d(4, {.affine = true, .track_running_stats = true}));  // eval: its running statistics
  randomise_batch_norms(*block);  // the norms' weights and biases
  block->eval();
  const Tensor<float> x = random_input({2, 3, 6, 5}, 14);
  const deploy::Plan plan = deploy::compile(*block, x.shape());
  EXPECT_NE(plan.str().find("layer_norm [2, 4, 60] -> [2, 4, 60]"), std::string::npos) << plan.str();
  expect_bitwise_equal(forward(*block, x), run_plan(plan, x));
}

TEST(Plan, BroadcastingOpsAndConstantOperandsMatchTheModelBitForBit) {
  ember::manual_seed(11);
  ember::testing::Broadcasts model;
  model.eval();
  const Tensor<float> x = random_input({2, 3, 6, 6}, 9);
  const deploy::Plan plan = deploy::compile(model, x.shape());
  EXPECT_NE(plan.str().find("mul [2, 4, 6, 6], [2, 4, 1, 1] -> [2, 4, 6, 6]"), std::string::npos) << plan.str();
  expect_bitwise_equal(forward(model, x), run_plan(plan, x));
  const std::string path = temp_path("broadcasts.ember");
  deploy::save(plan, path);
  const deploy::Plan loaded = deploy::load(path);
  std::vector<uint8_t> bytes = ember::io::read_file(path);
  std::filesystem::remove(path);
  EXPECT_EQ(loaded.str(), plan.str());
  expect_bitwise_equal(forward(model, x), run_plan(loaded, x));
  const deploy::Plan parsed = deploy::parse(bytes, "broadcasts");
  std::fill(bytes.begin(), bytes.end(), uint8_t{0});
  expect_bitwise_equal(forward(model, x), run_plan(parsed, x));
  // The plan holds the constants' values at compile time.
  const Tensor<float> before = run_plan(plan, x);
  {
    ember::NoGradGuard no_grad;
    model.shift.add_(1.0);
  }
  expect_bitwise_equal(before, run_plan(plan, x));
}

TEST(Plan, ConcatenationsMatchTheModelBitForBit) {
  ember::manual_seed(13);
  ember::testing::DenseCat model;
  model.eval();
  const Tensor<float> x = random_input({2, 2, 5, 5}, 10);
  const deploy::Plan plan = deploy::compile(model, x.shape());
  EXPECT_NE(plan.str().find("cat [2, 7, 5, 5], [2, 2, 5, 5] -> [2, 9, 5, 5]"), std::string::npos) << plan.str();
  expect_bitwise_equal(forward(model, x), run_plan(plan, x));
  const std::string path = temp_path("cat.ember");
  deploy::save(plan, path);
  expect_bitwise_equal(forward(model, x), run_plan(deploy::load(path), x));
  std::filesystem::remove(path);
}

// Attention: the heads' permutes, the batched products, softmax, layer norm; post- and pre-norm,
// batch first or not, a stack of two with a final norm.
TEST(Plan, TransformerEncoderLayersMatchTheModel) {
  for (const bool norm_first : {false, true}) {
    for (const bool batch_first : {true, false}) {
      ember::manual_seed(14);
      nn::TransformerEncoderLayer layer(16, 4, {.dim_feedforward = 32, .activation = "gelu",
                                                .batch_first = batch_first, .norm_first = norm_first});
      layer.eval();
      const Tensor<float> x = random_input(batch_first ? Shape{2, 5, 16} : Shape{5, 2, 16}, 12);
      const deploy::Plan plan = deploy::compile(layer, x.shape());
      EXPECT_NE(plan.str().find("matmul [2, 4, 5, 4], [2, 4, 4, 5] -> [2, 4, 5, 5]"), std::string::npos) << plan.str();
      expect_bitwise_equal(forward(layer, x), run_plan(plan, x));
    }
  }
  nn::TransformerEncoder stack(nn::TransformerEncoderLayer(16, 4, {.dim_feedforward = 32, .batch_first = true}), 2,
                               nn::LayerNorm(16));
  stack.eval();
  const Tensor<float> x = random_input({3, 4, 16}, 13);
  const deploy::Plan plan = deploy::compile(stack, x.shape());
  expect_bitwise_equal(forward(stack, x), run_plan(plan, x));
  const std::string path = temp_path("encoder.ember");
  deploy::save(plan, path);
  expect_bitwise_equal(forward(stack, x), run_plan(deploy::load(path), x));
  std::filesystem::remove(path);
}

// An operand computed from the input by an op a plan does not trace is not a constant.
class SumsTheInput : public nn::Module<float> {
 public:
  Tensor<float> forward(const Tensor<float>& x) override { return ember::relu(x) + x.sum(std::vector<int64_t>{1}, true); }
  std::string type_name() const override { return "SumsTheInput"; }
};

TEST(Plan, ValuesComputedByUntracedOpsAreNotConstants) {
  SumsTheInput model;
  model.eval();
  ember::testing::expect_error<ember::ValueError>([&] { deploy::compile(model, {2, 5}); },
                                                  "an operand of shape [2, 1] was computed by an op a plan cannot run");
}

TEST(PlanFile, SavedPlansLoadAndRunTheSame) {
  auto model = resnet();
  randomise_batch_norms(*model);
  model->eval();
  const deploy::Plan plan = deploy::compile(*model, {2, 3, 16, 16});
  const std::string path = temp_path("resnet.ember");
  deploy::save(plan, path);
  const deploy::Plan loaded = deploy::load(path);
  EXPECT_EQ(loaded.arena_bytes(), plan.arena_bytes());
  EXPECT_EQ(loaded.str(), plan.str());
  const Tensor<float> x = random_input({2, 3, 16, 16}, 7);
  const Tensor<float> want = run_plan(plan, x);
  expect_bitwise_equal(want, run_plan(loaded, x));
  const std::vector<uint8_t> bytes = ember::io::read_file(path);
  std::filesystem::remove(path);
  expect_bitwise_equal(want, run_plan(loaded, x));  // the mapping outlives the file's name
  expect_bitwise_equal(want, run_plan(deploy::parse(bytes, "resnet"), x));
}

TEST(PlanFile, DamagedFilesAreRefusedWhole) {
  auto model = cnn();
  model->eval();
  const std::string path = temp_path("cnn.ember");
  deploy::save(deploy::compile(*model, {1, 1, 28, 28}), path);
  const std::vector<uint8_t> good = ember::io::read_file(path);
  std::filesystem::remove(path);
  using ember::testing::expect_error;
  auto parse = [](const std::vector<uint8_t>& b) { return deploy::parse(b, "damaged.ember"); };

  for (size_t at : {size_t(3), size_t(20), size_t(70), good.size() / 2, good.size() - 2}) {
    std::vector<uint8_t> b = good;
    b[at] ^= 0x10;
    EXPECT_THROW(parse(b), ember::FormatError) << "byte " << at;
  }
  for (size_t keep : {size_t(0), size_t(10), size_t(64), good.size() - 1}) {
    EXPECT_THROW(parse(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep))),
                 ember::FormatError) << keep << " bytes";
  }
  expect_error<ember::FormatError>([&] { parse(std::vector<uint8_t>(good.size(), 0)); }, "damaged.ember: not a valid ember plan file");
  {
    std::vector<uint8_t> b = good;
    b[good.size() / 2] ^= 1;
    expect_error<ember::FormatError>([&] { parse(b); }, "CRC-32");
  }
  // A consistent CRC over inconsistent contents: an arena too small for the buffers.
  {
    std::vector<uint8_t> b = good;
    const uint64_t arena = 64;
    std::memcpy(b.data() + 24, &arena, 8);
    const uint32_t crc = ember::testing::crc32_of(b.data(), b.size() - 4);
    std::memcpy(b.data() + b.size() - 4, &crc, 4);
    expect_error<ember::FormatError>([&] { parse(b); }, "outside the arena");
  }
  expect_error<ember::IOError>([&] { deploy::load(temp_path("missing.ember")); }, "cannot open");
  write_bytes(path, {});
  EXPECT_THROW(deploy::load(path), ember::IOError);
  std::filesystem::remove(path);
  EXPECT_THROW(deploy::save(deploy::Plan(), path), ember::ValueError);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
