// deploy::compile of quantized models (Note [Int8 steps]): the plan gives the QuantizedModel's
// output bit for bit (static per channel and per tensor, dynamic, layers kept in float, float
// stages between), saves and loads as float plans do, and refuses what it cannot run.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ember/autograd/grad_mode.hpp"
#include "ember/backend/parallel.hpp"
#include "ember/deploy.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/nn.hpp"
#include "ember/ops/factory.hpp"
#include "ember/quant.hpp"
#include "../support/expect_error.hpp"
#include "../support/gzip.hpp"
#include "plan_support.hpp"

namespace {

using ember::Shape;
using ember::Tensor;
namespace nn = ember::nn;
namespace deploy = ember::deploy;
namespace quant = ember::quant;
using ember::testing::Arena;
using ember::testing::expect_bitwise_equal;
using ember::testing::expect_error;
using ember::testing::random_input;
using ember::testing::randomise_batch_norms;
using ember::testing::run_plan;

std::vector<Tensor<float>> calibration(const Shape& one, int batches) {
  std::vector<Tensor<float>> out;
  std::vector<int64_t> dims(one.begin(), one.end());
  dims[0] = 8;
  for (int b = 0; b < batches; ++b) out.push_back(random_input(Shape(dims), 100 + static_cast<uint64_t>(b)));
  return out;
}

std::shared_ptr<nn::Sequential<float>> cnn() {
  auto m = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(1, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(8, 16, 3, {.padding = 1}), nn::BatchNorm2d(16), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
      nn::Dropout(0.25), nn::Linear(16 * 7 * 7, 32), nn::ReLU(), nn::Linear(32, 10));
  randomise_batch_norms(*m);
  m->eval();
  return m;
}

std::shared_ptr<nn::Sequential<float>> mlp() {
  auto m = std::make_shared<nn::Sequential<float>>(nn::Flatten(), nn::Linear(784, 64), nn::ReLU(), nn::Linear(64, 32),
                                                   nn::ReLU(), nn::Linear(32, 10));
  m->eval();
  return m;
}

// The plan against the quantized model on a few inputs of the compiled shape.
void expect_plan_matches(const quant::QuantizedModel& q, const Shape& shape) {
  const deploy::Plan plan = deploy::compile(q, shape);
  for (uint64_t seed : {1, 2, 3}) {
    const Tensor<float> x = random_input(shape, seed) * static_cast<float>(seed);  // past the calibrated range too
    expect_bitwise_equal(q(x), run_plan(plan, x));
  }
}

TEST(PlanInt8, CnnMatchesTheQuantizedModelBitForBit) {
  auto model = cnn();
  for (bool per_channel : {true, false}) {
    const quant::QuantizedModel q = quant::quantize(*model, calibration({1, 1, 28, 28}, 2), {.per_channel = per_channel});
    for (int64_t batch : {1, 3}) expect_plan_matches(q, {batch, 1, 28, 28});
  }
  const quant::QuantizedModel q = quant::quantize(*model, calibration({1, 1, 28, 28}, 2));
  const std::string text = deploy::compile(q, {1, 1, 28, 28}).str();
  // uint8 images flow from convolution to convolution through pooling, flattened channels last.
  EXPECT_NE(text.find("int8 conv2d [1, 1, 28, 28] -> [1, 28, 28, 8] u8, relu"), std::string::npos) << text;
  EXPECT_NE(text.find("max_pool2d [1, 28, 28, 8] u8 -> [1, 14, 14, 8] u8"), std::string::npos) << text;
  EXPECT_NE(text.find("int8 linear [1, 784] u8 -> [1, 32] u8, relu"), std::string::npos) << text;
  EXPECT_NE(text.find("int8 linear [1, 32] u8 -> [1, 10]"), std::string::npos) << text;
  EXPECT_EQ(text.find("dequantize"), std::string::npos) << text;
  // A batch's images split among the compiling process's threads; any thread count runs them.
  const int threads = ember::get_num_threads();
  ember::set_num_threads(3);
  const deploy::Plan plan = deploy::compile(q, {5, 1, 28, 28});
  const Tensor<float> x = random_input({5, 1, 28, 28}, 11);
  for (int t : {1, 2, 4}) {
    ember::set_num_threads(t);
    expect_bitwise_equal(q(x), run_plan(plan, x));
  }
  ember::set_num_threads(threads);
}

TEST(PlanInt8, MlpStaticAndDynamic) {
  auto model = mlp();
  const quant::QuantizedModel q = quant::quantize(*model, calibration({1, 1, 28, 28}, 2));
  expect_plan_matches(q, {1, 1, 28, 28});
  expect_plan_matches(q, {5, 784});
  const quant::QuantizedModel d = quant::quantize_dynamic(*model);
  expect_plan_matches(d, {1, 1, 28, 28});
  expect_plan_matches(d, {4, 784});
  const deploy::Plan plan = deploy::compile(d, {1, 784});
  EXPECT_NE(plan.str().find("int8 linear [1, 784] -> [1, 64], dynamic, relu"), std::string::npos) << plan.str();
  // A dynamic layer quantizes by its input's range: NaN has none.
  Tensor<float> x = random_input({1, 784}, 4);
  x.data_ptr()[17] = std::numeric_limits<float>::quiet_NaN();
  Tensor<float> y = ember::zeros<float>(plan.output_shape());
  Arena arena(plan.arena_bytes());
  expect_error<ember::ValueError>([&] { plan.run(x, y, arena.span); }, "NaN");
  x.data_ptr()[17] = std::numeric_limits<float>::infinity();
  expect_error<ember::ValueError>([&] { plan.run(x, y, arena.span); }, "NaN or infinity");
  expect_error<ember::ValueError>([&] { d(x); }, "NaN or infinity");
}

TEST(PlanInt8, FloatStagesBetweenQuantizedOnes) {
  // The first convolution kept in float; a lone ReLU after pooling and global average pooling run
  // on floats.
  auto model = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(3, 8, 3, {.padding = 1}), nn::ReLU(), nn::Conv2d(8, 16, 3, {.stride = 2, .padding = 1}),
      nn::MaxPool2d(2), nn::ReLU(), nn::Conv2d(16, 16, 1), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, 10));
  model->eval();
  const quant::QuantizedModel q = quant::quantize(*model, calibration({1, 3, 16, 16}, 2), {.keep_float = {"0"}});
  expect_plan_matches(q, {1, 3, 16, 16});
  expect_plan_matches(q, {2, 3, 16, 16});
  const std::string text = deploy::compile(q, {1, 3, 16, 16}).str();
  EXPECT_NE(text.find("conv2d [1, 3, 16, 16] -> [1, 8, 16, 16], relu fused"), std::string::npos) << text;
  EXPECT_NE(text.find("max_pool2d [1, 16, 8, 8] -> [1, 16, 4, 4], relu fused"), std::string::npos) << text;
  EXPECT_NE(text.find("adaptive_avg_pool2d"), std::string::npos) << text;
}

TEST(PlanInt8, UintValuesMeetingFloatStagesAreDequantized) {
  // Models made of the first stages of a quantized CNN end on uint8 values: images channels last
  // (back to channels first), or flattened channels last.
  const quant::QuantizedModel q = quant::quantize(*cnn(), calibration({1, 1, 28, 28}, 2));
  ASSERT_EQ(q.num_stages(), 7u) << q.str();
  for (size_t stages : {2u, 4u, 5u, 6u}) {
    const quant::QuantizedModel part(std::vector(q.stages().begin(), q.stages().begin() + static_cast<std::ptrdiff_t>(stages)));
    const deploy::Plan plan = deploy::compile(part, {2, 1, 28, 28});
    EXPECT_NE(plan.str().find("dequantize"), std::string::npos) << plan.str();
    const Tensor<float> x = random_input({2, 1, 28, 28}, stages);
    expect_bitwise_equal(part(x), run_plan(plan, x));
  }
  // A stage that takes uint8 from the one before, fed floats instead, quantizes them itself.
  const quant::QuantizedModel tail(std::vector(q.stages().begin() + 2, q.stages().end()));
  expect_plan_matches(tail, {2, 8, 14, 14});
}

TEST(PlanInt8, ResidualNetworkMatchesBitForBit) {
  auto model = std::make_shared<nn::Sequential<float>>(
      nn::Conv2d(3, 8, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(8), nn::ReLU(), nn::BasicBlock(8, 8, 1),
      nn::BasicBlock(8, 16, 2), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, 10));
  randomise_batch_norms(*model);
  model->eval();
  const quant::QuantizedModel q = quant::quantize(*model, calibration({1, 3, 16, 16}, 2));
  expect_plan_matches(q, {1, 3, 16, 16});
  expect_plan_matches(q, {2, 3, 16, 16});
  const std::string text = deploy::compile(q, {1, 3, 16, 16}).str();
  EXPECT_NE(text.find("int8 conv2d [1, 8, 16, 16] -> [1, 16, 16, 8] u8, relu"), std::string::npos) << text;
  EXPECT_NE(text.find("int8 conv2d [1, 16, 16, 8] u8 -> [1, 8, 16, 16]"), std::string::npos) << text;
  EXPECT_NE(text.find("add [1, 8, 16, 16], [1, 8, 16, 16] -> [1, 8, 16, 16], relu fused"), std::string::npos) << text;
}

TEST(PlanInt8, RefusesWhatItCannotRun) {
  auto model = std::make_shared<nn::Sequential<float>>(nn::Conv2d(1, 4, 3), nn::ReLU(), nn::AvgPool2d(2), nn::Flatten(),
                                                       nn::Linear(4 * 13 * 13, 10));
  model->eval();
  const quant::QuantizedModel q = quant::quantize(*model, calibration({1, 1, 28, 28}, 1));
  expect_plan_matches(q, {1, 1, 28, 28});  // average pooling runs in float, traced
  auto adaptive = std::make_shared<nn::Sequential<float>>(nn::Conv2d(1, 4, 3), nn::ReLU(), nn::AdaptiveAvgPool2d(2),
                                                          nn::Flatten(), nn::Linear(4 * 2 * 2, 10));
  adaptive->eval();
  const quant::QuantizedModel qa = quant::quantize(*adaptive, calibration({1, 1, 28, 28}, 1));
  expect_error<ember::ValueError>([&] { deploy::compile(qa, {1, 1, 28, 28}); },
                                  "stage 1: deploy::compile: AdaptiveAvgPool2d(output_size=(2, 2)) computes with an op "
                                  "a plan cannot run (adaptive_avg_pool2d to an output other than 1 x 1");
  expect_error<ember::ShapeError>([&] { deploy::compile(q, {1, 2, 28, 28}); }, "stage 0: QuantizedConv2d: expected");
  expect_error<ember::ValueError>([&] { deploy::compile(quant::QuantizedModel(), {1, 4}); }, "empty");
  const deploy::Plan plan = deploy::compile(quant::quantize(*cnn(), calibration({1, 1, 28, 28}, 1)), {1, 1, 28, 28});
  Tensor<float> y = ember::zeros<float>(plan.output_shape());
  Arena arena(plan.arena_bytes());
  EXPECT_THROW(plan.run(ember::zeros<float>({2, 1, 28, 28}), y, arena.span), ember::ShapeError);
  EXPECT_THROW(plan.run(ember::zeros<float>({1, 1, 28, 28}), y, arena.span.first(plan.arena_bytes() - 1)),
               ember::ValueError);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("ember_int8_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(PlanInt8, SavedPlansLoadAndRunTheSame) {
  const quant::QuantizedModel q = quant::quantize(*cnn(), calibration({1, 1, 28, 28}, 2));
  const quant::QuantizedModel d = quant::quantize_dynamic(*mlp());
  for (const quant::QuantizedModel* m : {&q, &d}) {
    const deploy::Plan plan = deploy::compile(*m, {2, 1, 28, 28});
    const std::string path = temp_path("model.ember");
    deploy::save(plan, path);
    const deploy::Plan loaded = deploy::load(path);
    EXPECT_EQ(loaded.str(), plan.str());
    EXPECT_EQ(loaded.arena_bytes(), plan.arena_bytes());
    const Tensor<float> x = random_input({2, 1, 28, 28}, 9);
    expect_bitwise_equal((*m)(x), run_plan(loaded, x));
    const std::vector<uint8_t> bytes = ember::io::read_file(path);
    std::filesystem::remove(path);
    expect_bitwise_equal((*m)(x), run_plan(deploy::parse(bytes, "int8"), x));
  }
}

TEST(PlanInt8, DamagedFilesAreRefused) {
  const quant::QuantizedModel q = quant::quantize(*cnn(), calibration({1, 1, 28, 28}, 1));
  const std::string path = temp_path("damaged.ember");
  deploy::save(deploy::compile(q, {1, 1, 28, 28}), path);
  const std::vector<uint8_t> good = ember::io::read_file(path);
  std::filesystem::remove(path);
  // Every float the steps keep, in turn, made NaN with a consistent CRC: each is refused or, for
  // a bias (any float is one), runs; none may crash.
  size_t refused = 0;
  for (size_t at = 64; at + 8 <= good.size(); at += at < 4096 ? 4 : 60) {  // the graph, then samples of the weights
    std::vector<uint8_t> b = good;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data() + at, &nan, 4);
    const uint32_t crc = ember::testing::crc32_of(b.data(), b.size() - 4);
    std::memcpy(b.data() + b.size() - 4, &crc, 4);
    try {
      const deploy::Plan p = deploy::parse(b, "damaged.ember");
      (void)run_plan(p, random_input({1, 1, 28, 28}, 1));
    } catch (const ember::FormatError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0u);
}

}  // namespace
