// Quantized (int8) Linear and Conv2d against ember's own float layers in the same run, at the
// example models' shapes (the MNIST CNN and MLP, the CIFAR ResNet's 3x3 convolution), batch 1 and 64,
// forward in eval mode. Two int8 figures per shape:
// - `int8`: a one-stage quant::QuantizedModel, float in and float out (quantizing the input and
//   producing float output included), as a lone quantized layer costs;
// - `int8_chained`: the layer inside a quantized network, followed by another quantized layer, so
//   it takes uint8 (channels last) and hands on uint8 (Note [Quantized model]).
#include <functional>
#include <memory>

#include "common.hpp"
#include "ember/backend/int8_kernels.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = ember::nn;
namespace quant = ember::quant;
using ember::Tensor;

using Make = std::function<std::shared_ptr<nn::Module<float>>()>;
enum class Mode { Float, Int8, Int8Chained };

void run_layer(benchmark::State& state, const Make& make, const Make& next, ember::Shape in, Mode mode) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  in[0] = state.range(1);
  auto layer = std::make_shared<nn::Sequential<float>>();
  layer->push_back(make());
  if (mode == Mode::Int8Chained) layer->push_back(next());
  layer->eval();
  const Tensor<float> x = ember::randn<float>(in);
  ember::NoGradGuard no_grad;
  if (mode == Mode::Float) {
    for (auto _ : state) benchmark::DoNotOptimize((*layer)(x));
  } else {
    const quant::QuantizedModel q = quant::quantize(*layer, {x}, {.observer = quant::Observer::MinMax});
    if (mode == Mode::Int8) {
      for (auto _ : state) benchmark::DoNotOptimize(q(x));
    } else {
      const quant::Stage& first = q.stage(0);
      const quant::QParams p = *first.input_params();
      Tensor<float> channels_last = x.dim() == 4 ? x.permute({0, 2, 3, 1}).contiguous() : x;
      const quant::Activation a{Tensor<float>(),
                                quant::quantize_per_tensor<uint8_t>(channels_last, p.scale, p.zero_point).int_repr(), p};
      if (!first.run(a).quantized.defined()) state.SkipWithError("the stage did not chain");
      for (auto _ : state) benchmark::DoNotOptimize(first.run(a));
    }
  }
  state.SetLabel(ember::backend::int8_isa_name(ember::backend::int8_kernels().isa));
}

#define EMBER_INT8_BENCH(name, make, next, ...)                                                                \
  void BM_int8_##name##_float(benchmark::State& s) { run_layer(s, make, next, __VA_ARGS__, Mode::Float); }      \
  void BM_int8_##name##_int8(benchmark::State& s) { run_layer(s, make, next, __VA_ARGS__, Mode::Int8); }        \
  void BM_int8_##name##_int8_chained(benchmark::State& s) {                                                    \
    run_layer(s, make, next, __VA_ARGS__, Mode::Int8Chained);                                                  \
  }                                                                                                            \
  BENCHMARK(BM_int8_##name##_float)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})           \
      ->Unit(benchmark::kMicrosecond)->UseRealTime();                                                          \
  BENCHMARK(BM_int8_##name##_int8)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})            \
      ->Unit(benchmark::kMicrosecond)->UseRealTime();                                                          \
  BENCHMARK(BM_int8_##name##_int8_chained)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})    \
      ->Unit(benchmark::kMicrosecond)->UseRealTime()

std::shared_ptr<nn::Module<float>> conv3x3(int64_t in, int64_t out) {
  return std::make_shared<nn::Conv2d<float>>(in, out, 3, nn::Conv2dOptions{.padding = 1});
}
std::shared_ptr<nn::Module<float>> conv1x1(int64_t in) { return std::make_shared<nn::Conv2d<float>>(in, 8, 1); }
std::shared_ptr<nn::Module<float>> linear(int64_t in, int64_t out) { return std::make_shared<nn::Linear<float>>(in, out); }

EMBER_INT8_BENCH(linear_784_512, [] { return linear(784, 512); }, [] { return linear(512, 8); }, {1, 784});
EMBER_INT8_BENCH(linear_3136_128, [] { return linear(3136, 128); }, [] { return linear(128, 8); }, {1, 3136});
EMBER_INT8_BENCH(conv_mnist1_1to32_28_k3, [] { return conv3x3(1, 32); }, [] { return conv1x1(32); }, {1, 1, 28, 28});
EMBER_INT8_BENCH(conv_mnist2_32to64_14_k3, [] { return conv3x3(32, 64); }, [] { return conv1x1(64); }, {1, 32, 14, 14});
EMBER_INT8_BENCH(conv_cifar_64to64_32_k3, [] { return conv3x3(64, 64); }, [] { return conv1x1(64); }, {1, 64, 32, 32});

// The whole Fashion-MNIST CNN of ember-mnist (random weights; batch norm with statistics from a
// few training-mode batches), float against its quant::quantize'd int8 model, and against the
// int8 model with the first convolution (one input channel: K = 9) kept in float.
void run_mnist_cnn(benchmark::State& state, bool int8, bool first_conv_float = false) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  nn::Sequential<float> net(
      nn::Conv2d(1, 32, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(32), nn::ReLU(), nn::MaxPool2d(2),
      nn::Conv2d(32, 64, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(64), nn::ReLU(), nn::MaxPool2d(2),
      nn::Flatten(), nn::Dropout(0.25), nn::Linear(64 * 7 * 7, 128), nn::ReLU(), nn::Dropout(0.5), nn::Linear(128, 10));
  {
    ember::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) net(ember::randn<float>({32, 1, 28, 28}));
  }
  net.eval();
  const Tensor<float> x = ember::randn<float>({state.range(1), 1, 28, 28});
  ember::NoGradGuard no_grad;
  if (!int8) {
    for (auto _ : state) benchmark::DoNotOptimize(net(x));
  } else {
    quant::QuantizeOptions options;
    if (first_conv_float) options.keep_float = {"0"};
    const quant::QuantizedModel q = quant::quantize(net, {ember::randn<float>({64, 1, 28, 28})}, options);
    for (auto _ : state) benchmark::DoNotOptimize(q(x));
  }
  state.SetLabel(ember::backend::int8_isa_name(ember::backend::int8_kernels().isa));
}
void BM_int8_mnist_cnn_float(benchmark::State& s) { run_mnist_cnn(s, false); }
void BM_int8_mnist_cnn_int8(benchmark::State& s) { run_mnist_cnn(s, true); }
void BM_int8_mnist_cnn_int8_first_conv_float(benchmark::State& s) { run_mnist_cnn(s, true, true); }
BENCHMARK(BM_int8_mnist_cnn_float)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_int8_mnist_cnn_int8)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_int8_mnist_cnn_int8_first_conv_float)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();

// A dynamically quantized LSTM (quant::quantize_dynamic, Note [Dynamic RNN]) against the float
// one: 128 features, 256 hidden, 32 steps; batch 1 spends its time in the per-step [1, 256] x
// [1024, 256] recurrent projection, batch 64 in GEMMs.
void run_lstm(benchmark::State& state, bool int8) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  nn::LSTM<float> lstm(128, 256);
  lstm.eval();
  const Tensor<float> x = ember::randn<float>({32, state.range(1), 128});
  ember::NoGradGuard no_grad;
  if (!int8) {
    for (auto _ : state) benchmark::DoNotOptimize(lstm(x));
  } else {
    const auto q = quant::quantize_dynamic(lstm);
    for (auto _ : state) benchmark::DoNotOptimize(q->forward_with_state(x));
  }
  state.SetLabel(ember::backend::int8_isa_name(ember::backend::int8_kernels().isa));
}
void BM_int8_lstm_128_256_float(benchmark::State& s) { run_lstm(s, false); }
void BM_int8_lstm_128_256_dynamic(benchmark::State& s) { run_lstm(s, true); }
BENCHMARK(BM_int8_lstm_128_256_float)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_int8_lstm_128_256_dynamic)->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
