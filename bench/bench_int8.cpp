// Quantized (int8) Linear and Conv2d against ember's own float layers in the same run, at the
// example models' shapes (the MNIST CNN and MLP, the CIFAR ResNet's 3x3 convolution), batch 1 and 64,
// forward in eval mode. Each int8 layer is a one-stage quant::QuantizedModel calibrated on its input;
// its time includes quantizing the float input and producing the float output.
#include <functional>
#include <memory>

#include "common.hpp"
#include "ember/backend/int8_kernels.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = ember::nn;
using ember::Tensor;

using Make = std::function<std::shared_ptr<nn::Module<float>>()>;

void run_layer(benchmark::State& state, const Make& make, ember::Shape in, bool int8) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  in[0] = state.range(1);
  auto layer = std::make_shared<nn::Sequential<float>>();
  layer->push_back(make());
  layer->eval();
  const Tensor<float> x = ember::randn<float>(in);
  ember::NoGradGuard no_grad;
  if (!int8) {
    for (auto _ : state) benchmark::DoNotOptimize((*layer)(x));
  } else {
    const ember::quant::QuantizedModel q = ember::quant::quantize(*layer, {x}, {.observer = ember::quant::Observer::MinMax});
    for (auto _ : state) benchmark::DoNotOptimize(q(x));
  }
  state.SetLabel(ember::backend::int8_isa_name(ember::backend::int8_kernels().isa));
}

#define EMBER_INT8_BENCH(name, make, ...)                                                                \
  void BM_int8_##name##_float(benchmark::State& s) { run_layer(s, make, __VA_ARGS__, false); }           \
  void BM_int8_##name##_int8(benchmark::State& s) { run_layer(s, make, __VA_ARGS__, true); }             \
  BENCHMARK(BM_int8_##name##_float)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})     \
      ->Unit(benchmark::kMicrosecond)->UseRealTime();                                                    \
  BENCHMARK(BM_int8_##name##_int8)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})      \
      ->Unit(benchmark::kMicrosecond)->UseRealTime()

EMBER_INT8_BENCH(linear_784_512, [] { return std::make_shared<nn::Linear<float>>(784, 512); }, {1, 784});
EMBER_INT8_BENCH(linear_3136_128, [] { return std::make_shared<nn::Linear<float>>(3136, 128); }, {1, 3136});
EMBER_INT8_BENCH(conv_mnist1_1to32_28_k3,
                 [] { return std::make_shared<nn::Conv2d<float>>(1, 32, 3, nn::Conv2dOptions{.padding = 1}); },
                 {1, 1, 28, 28});
EMBER_INT8_BENCH(conv_mnist2_32to64_14_k3,
                 [] { return std::make_shared<nn::Conv2d<float>>(32, 64, 3, nn::Conv2dOptions{.padding = 1}); },
                 {1, 32, 14, 14});
EMBER_INT8_BENCH(conv_cifar_64to64_32_k3,
                 [] { return std::make_shared<nn::Conv2d<float>>(64, 64, 3, nn::Conv2dOptions{.padding = 1}); },
                 {1, 64, 32, 32});

}  // namespace
