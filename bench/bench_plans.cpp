// Inference plans of the example models (docs/deploy.md): Plan::run of the float plan beside the
// int8 plan of the same model (quant::quantize, then deploy::compile) and the model's own forward,
// in one run, batch 1 and 64, 1 and 2 threads; for the convolutional models also the int8 plan
// with the first convolution in float; for a DCGAN generator the float plan only. Each row also
// reports the plan's steps, its arena and its file size (counters), which do not depend on the
// weights: the models are untrained, calibrated on random inputs.
//   build/bench/ember-bench-plans --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/cifar_models.hpp"
#include "common/mnist_models.hpp"
#include "ember/backend/int8_kernels.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = ember::nn;
using ember::Tensor;

// Int8FirstFloat: int8 with the first convolution left in float (QuantizeOptions::keep_float), as
// docs/api.md advises for a first layer of few input channels (a GEMM with K = 9 or 25).
enum class Kind { Forward, FloatPlan, Int8Plan, Int8FirstFloat };

// LibTorch's DCGAN example's generator (ember-gan's): noise [N, 100, 1, 1] -> images [N, 1, 28, 28].
std::shared_ptr<nn::Module<float>> dcgan_generator() {
  return std::make_shared<nn::Sequential<float>>(
      nn::ConvTranspose2d(100, 256, 4, {.bias = false}), nn::BatchNorm2d(256), nn::ReLU(),
      nn::ConvTranspose2d(256, 128, 3, {.stride = 2, .padding = 1, .bias = false}), nn::BatchNorm2d(128), nn::ReLU(),
      nn::ConvTranspose2d(128, 64, 4, {.stride = 2, .padding = 1, .bias = false}), nn::BatchNorm2d(64), nn::ReLU(),
      nn::ConvTranspose2d(64, 1, 4, {.stride = 2, .padding = 1, .bias = false}), nn::Tanh());
}

// ResNet-18's last stage: two basic blocks of 512 channels on 7x7, whose convolutions run by
// Winograd's transforms (16 MB of transformed weights each: a plan makes them once).
std::shared_ptr<nn::Module<float>> resnet18_stage4() {
  return std::make_shared<nn::Sequential<float>>(nn::BasicBlock(512, 512, 1), nn::BasicBlock(512, 512, 1));
}

std::shared_ptr<nn::Module<float>> make(const std::string& name) {
  if (name == "cifar_resnet") return ember::examples::make_cifar_resnet(3, 10, 32);
  if (name == "resnet18_stage4") return resnet18_stage4();
  if (name == "dcgan_generator") return dcgan_generator();
  for (const auto& m : ember::examples::mnist_spec().models) {
    if ("mnist_" + m.name == name) return m.make(1, 28, 10);
  }
  return nullptr;
}

void run_plan(benchmark::State& state, const std::string& model_name, Kind kind) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  auto model = make(model_name);
  model->eval();
  const bool gan = model_name == "dcgan_generator", stage = model_name == "resnet18_stage4";
  const int64_t channels = model_name == "cifar_resnet" ? 3 : gan ? 100 : stage ? 512 : 1;
  const int64_t size = model_name == "cifar_resnet" ? 32 : gan ? 1 : stage ? 7 : 28;
  const ember::Shape shape{state.range(1), channels, size, size};
  const Tensor<float> x = ember::randn<float>(shape);
  ember::NoGradGuard no_grad;
  if (kind == Kind::Forward) {
    for (auto _ : state) benchmark::DoNotOptimize((*model)(x));
    return;
  }
  const ember::deploy::Plan plan =
      kind == Kind::FloatPlan
          ? ember::deploy::compile(*model, shape)
          : ember::deploy::compile(
                ember::quant::quantize(*model, {ember::randn<float>({16, channels, size, size})},
                                       {.keep_float = kind == Kind::Int8FirstFloat ? std::vector<std::string>{"0"}
                                                                                    : std::vector<std::string>{}}),
                shape);
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ember_bench_plan_" + std::to_string(::getpid()) + ".ember")).string();
  ember::deploy::save(plan, path);
  state.counters["file_bytes"] = static_cast<double>(std::filesystem::file_size(path));
  std::filesystem::remove(path);
  state.counters["arena_bytes"] = static_cast<double>(plan.arena_bytes());
  state.counters["steps"] = static_cast<double>(plan.num_steps());
  const Tensor<float> y = ember::zeros<float>(plan.output_shape());
  std::vector<std::byte> storage(plan.arena_bytes() + 64);
  std::byte* base = storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
  const std::span<std::byte> arena(base, plan.arena_bytes());
  for (auto _ : state) {
    plan.run(x, y, arena);
    benchmark::ClobberMemory();
  }
  state.SetLabel(kind == Kind::FloatPlan ? ember::backend::isa_name()
                                         : ember::backend::int8_isa_name(ember::backend::int8_kernels().isa));
}

#define EMBER_PLAN_BENCH_FLOAT(model)                                                                       \
  void BM_plan_##model##_forward(benchmark::State& s) { run_plan(s, #model, Kind::Forward); }               \
  void BM_plan_##model##_float(benchmark::State& s) { run_plan(s, #model, Kind::FloatPlan); }               \
  BENCHMARK(BM_plan_##model##_forward)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})      \
      ->Unit(benchmark::kMicrosecond)->UseRealTime();                                                       \
  BENCHMARK(BM_plan_##model##_float)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})        \
      ->Unit(benchmark::kMicrosecond)->UseRealTime()
#define EMBER_PLAN_BENCH(model)                                                                             \
  EMBER_PLAN_BENCH_FLOAT(model);                                                                            \
  void BM_plan_##model##_int8(benchmark::State& s) { run_plan(s, #model, Kind::Int8Plan); }                 \
  BENCHMARK(BM_plan_##model##_int8)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})         \
      ->Unit(benchmark::kMicrosecond)->UseRealTime()
#define EMBER_PLAN_BENCH_CONV(model)                                                                        \
  EMBER_PLAN_BENCH(model);                                                                                  \
  void BM_plan_##model##_int8first(benchmark::State& s) { run_plan(s, #model, Kind::Int8FirstFloat); }      \
  BENCHMARK(BM_plan_##model##_int8first)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})    \
      ->Unit(benchmark::kMicrosecond)->UseRealTime()

EMBER_PLAN_BENCH(mnist_mlp);
EMBER_PLAN_BENCH_CONV(mnist_lenet);
EMBER_PLAN_BENCH_CONV(mnist_cnn);
EMBER_PLAN_BENCH_CONV(cifar_resnet);
EMBER_PLAN_BENCH_FLOAT(dcgan_generator);
void BM_plan_resnet18_stage4_forward(benchmark::State& s) { run_plan(s, "resnet18_stage4", Kind::Forward); }
void BM_plan_resnet18_stage4_float(benchmark::State& s) { run_plan(s, "resnet18_stage4", Kind::FloatPlan); }
BENCHMARK(BM_plan_resnet18_stage4_forward)->ArgsProduct({{1, 2}, {1, 8}})->ArgNames({"threads", "batch"})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_plan_resnet18_stage4_float)->ArgsProduct({{1, 2}, {1, 8}})->ArgNames({"threads", "batch"})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();  // int8 plans have no transposed convolution

}  // namespace

BENCHMARK_MAIN();
