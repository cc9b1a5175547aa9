// Compressed models against the originals in one run (docs/benchmarks.md, "Compressed models"):
// the example MNIST CNN with half of its channels and units removed by prune::shrink, forward
// (eval, no gradient) and a training step (forward, cross entropy, backward, SGD), batch 1 and 64,
// 1 and 2 threads; and the sparse Linear against the dense one (docs/benchmarks.md, "Sparse
// Linear").
//   build/bench/ember-bench-compress
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

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

// One Linear layer of the examples (state.range(0) picks it) with state.range(1) percent of its
// weights pruned at random, dense (nn::Linear, the zeros multiplied) or sparse (nn::SparseLinear),
// forward in eval mode at batch state.range(2), one thread.
void linear_layer(benchmark::State& state, bool sparse) {
  ember::set_num_threads(1);
  const int64_t in = state.range(0) == 0 ? 3136 : 784, out = state.range(0) == 0 ? 128 : 512;
  ember::manual_seed(0);
  nn::Linear<float> dense(in, out);
  if (state.range(1) > 0) {
    ember::prune::random_unstructured(dense, "weight", static_cast<double>(state.range(1)) / 100.0);
    ember::prune::remove(dense, "weight");
  }
  nn::SparseLinear<float> sparse_layer(dense);
  nn::Module<float>& layer = sparse ? static_cast<nn::Module<float>&>(sparse_layer) : dense;
  layer.eval();
  const Tensor<float> x = ember::randn<float>({state.range(2), in});
  ember::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(layer(x));
}
void BM_sparse_linear_dense(benchmark::State& s) { linear_layer(s, false); }
void BM_sparse_linear_sparse(benchmark::State& s) { linear_layer(s, true); }
#define EMBER_SPARSE_ARGS                                    \
  ->ArgsProduct({{0, 1}, {50, 70, 80, 90, 95, 99}, {1, 64}}) \
      ->ArgNames({"layer", "pruned", "batch"})               \
      ->Unit(benchmark::kMicrosecond)                        \
      ->UseRealTime()
BENCHMARK(BM_sparse_linear_dense) EMBER_SPARSE_ARGS;
BENCHMARK(BM_sparse_linear_sparse) EMBER_SPARSE_ARGS;

// The example CNN with 90% of its weights pruned (global magnitude, as ember-compress prunes),
// as pruned (dense layers) and after prune::sparsify; forward, one thread.
void pruned_cnn(benchmark::State& state, bool sparsified) {
  ember::set_num_threads(1);
  auto model = example_cnn(0.0);
  std::vector<std::pair<nn::Module<float>*, std::string>> weights;
  for (auto& [path, m] : model->named_modules()) {
    if (m->type_name() == "Conv2d" || m->type_name() == "Linear") weights.emplace_back(m, "weight");
  }
  ember::prune::global_unstructured(weights, 0.9);
  for (auto& [m, name] : weights) ember::prune::remove(*m, name);
  if (sparsified) ember::prune::sparsify(*model);
  model->eval();
  const Tensor<float> x = ember::randn<float>({state.range(0), 1, 28, 28});
  ember::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize((*model)(x));
}
void BM_compress_mnist_cnn_forward_pruned90(benchmark::State& s) { pruned_cnn(s, false); }
void BM_compress_mnist_cnn_forward_pruned90_sparse(benchmark::State& s) { pruned_cnn(s, true); }
BENCHMARK(BM_compress_mnist_cnn_forward_pruned90)
    ->Arg(1)
    ->Arg(64)
    ->ArgName("batch")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_compress_mnist_cnn_forward_pruned90_sparse)
    ->Arg(1)
    ->Arg(64)
    ->ArgName("batch")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

#define EMBER_COMPRESS_ARGS            \
  ->ArgsProduct({{1, 2}, {1, 64}})     \
      ->ArgNames({"threads", "batch"}) \
      ->Unit(benchmark::kMicrosecond)  \
      ->UseRealTime()
BENCHMARK(BM_compress_mnist_cnn_forward_dense) EMBER_COMPRESS_ARGS;
BENCHMARK(BM_compress_mnist_cnn_forward_shrunk50) EMBER_COMPRESS_ARGS;
BENCHMARK(BM_compress_mnist_cnn_train_dense) EMBER_COMPRESS_ARGS;
BENCHMARK(BM_compress_mnist_cnn_train_shrunk50) EMBER_COMPRESS_ARGS;

}  // namespace

BENCHMARK_MAIN();
