// Compressed models against the originals in one run (docs/benchmarks.md, "Compressed models"):
// the example MNIST CNN with half of its channels and units removed by prune::shrink, forward (eval,
// no gradient) and a training step (forward, cross entropy, backward, SGD), batch 1 and 64, 1 and 2
// threads.
//   build/bench/ember-bench-compress
#include <benchmark/benchmark.h>

#include <memory>

#include "common/mnist_models.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = ember::nn;
using ember::Tensor;

std::shared_ptr<nn::Module<float>> example_cnn(double shrink) {
  ember::manual_seed(0);
  std::shared_ptr<nn::Module<float>> model;
  for (const auto& m : ember::examples::mnist_spec().models) {
    if (m.name == "cnn") model = m.make(1, 28, 10);
  }
  if (shrink > 0) ember::prune::shrink(*model, {.amount = shrink});
  return model;
}

void forward(benchmark::State& state, double shrink) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  auto model = example_cnn(shrink);
  model->eval();
  const Tensor<float> x = ember::randn<float>({state.range(1), 1, 28, 28});
  ember::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize((*model)(x));
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  state.counters["parameters"] = static_cast<double>(parameters);
}

void train_step(benchmark::State& state, double shrink) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  auto model = example_cnn(shrink);
  model->train();
  ember::optim::SGD sgd(model->parameters(), {.lr = 0.01, .momentum = 0.9});
  const int64_t batch = state.range(1);
  const Tensor<float> x = ember::randn<float>({batch, 1, 28, 28});
  const Tensor<int64_t> y = ember::randint<int64_t>(0, 10, {batch});
  for (auto _ : state) {
    sgd.zero_grad();
    const Tensor<float> loss = nn::functional::cross_entropy((*model)(x), y);
    loss.backward();
    sgd.step();
  }
}

void BM_compress_mnist_cnn_forward_dense(benchmark::State& s) { forward(s, 0.0); }
void BM_compress_mnist_cnn_forward_shrunk50(benchmark::State& s) { forward(s, 0.5); }
void BM_compress_mnist_cnn_train_dense(benchmark::State& s) { train_step(s, 0.0); }
void BM_compress_mnist_cnn_train_shrunk50(benchmark::State& s) { train_step(s, 0.5); }

#define EMBER_COMPRESS_ARGS \
  ->ArgsProduct({{1, 2}, {1, 64}})->ArgNames({"threads", "batch"})->Unit(benchmark::kMicrosecond)->UseRealTime()
BENCHMARK(BM_compress_mnist_cnn_forward_dense) EMBER_COMPRESS_ARGS;
BENCHMARK(BM_compress_mnist_cnn_forward_shrunk50) EMBER_COMPRESS_ARGS;
BENCHMARK(BM_compress_mnist_cnn_train_dense) EMBER_COMPRESS_ARGS;
BENCHMARK(BM_compress_mnist_cnn_train_shrunk50) EMBER_COMPRESS_ARGS;

}  // namespace

BENCHMARK_MAIN();
