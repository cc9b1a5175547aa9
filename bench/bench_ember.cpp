// ember's benchmarks. Each is registered at 1 and 2 threads (the last argument). bench_torch.cpp
// registers the same rows for LibTorch when it is installed; tools/bench_table.py joins them.
#include <vector>

#include "common.hpp"
#include "ember/ember.hpp"

namespace {

using ember::Tensor;

// ---- sgemm: C = A x B, square, row-major, output allocated per call (as a user writes it) ----
void BM_ember_sgemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  ember::set_num_threads(static_cast<int>(state.range(1)));
  ember::Generator gen(1);
  auto a = ember::randn<float>({n, n}, false, &gen);
  auto b = ember::randn<float>({n, n}, false, &gen);
  for (auto _ : state) {
    auto c = ember::matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  state.counters["FLOPS"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
  const double peak = ember_bench::fma_peak_gflops() * static_cast<double>(state.range(1));
  if (peak > 0) state.counters["peak_GFLOPS"] = peak;
}

// ---- elementwise and reductions on 1M floats, GB/s of data read + written ----
template <class F>
void elementwise(benchmark::State& state, F f, int tensors_touched) {
  const int64_t n = 1 << 20;
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::Generator gen(2);
  auto x = ember::randn<float>({n}, false, &gen);
  auto y = ember::randn<float>({n}, false, &gen);
  for (auto _ : state) {
    auto r = f(x, y);
    benchmark::DoNotOptimize(r.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * n * 4 * tensors_touched);
}

void BM_ember_relu(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return ember::relu(x); }, 2); }
void BM_ember_relu_inplace(benchmark::State& s) {
  elementwise(s, [](auto& x, auto&) { return x.relu_(); }, 2);
}
void BM_ember_add(benchmark::State& s) { elementwise(s, [](auto& x, auto& y) { return x + y; }, 3); }
void BM_ember_exp(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return ember::exp(x); }, 2); }
void BM_ember_tanh(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return ember::tanh(x); }, 2); }
void BM_ember_sigmoid(benchmark::State& s) {
  elementwise(s, [](auto& x, auto&) { return ember::sigmoid(x); }, 2);
}
void BM_ember_gelu(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return ember::gelu(x); }, 2); }
void BM_ember_sum(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return x.sum(); }, 1); }
void BM_ember_softmax(benchmark::State& s) {
  elementwise(s, [](auto& x, auto&) { return ember::softmax(x.view({1024, 1024}), 1); }, 2);
}

// ---- per-op overhead on 1-element tensors ----
void BM_ember_add_1elem(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  auto a = ember::ones<float>({1});
  auto b = ember::ones<float>({1});
  for (auto _ : state) {
    auto c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
}

void BM_ember_add_1elem_grad(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  auto a = ember::ones<float>({1}, true);
  auto b = ember::ones<float>({1}, true);
  for (auto _ : state) {
    auto c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
}

// y = (a * b + a).sum(); y.backward(): 3 ops forward and backward; reported per op.
void BM_ember_fwd_bwd_per_op(benchmark::State& state) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  auto a = ember::ones<float>({1}, true);
  auto b = ember::ones<float>({1}, true);
  for (auto _ : state) {
    auto y = (a * b + a).sum();
    y.backward();
    a.set_grad(Tensor<float>());
    b.set_grad(Tensor<float>());
  }
  state.SetItemsProcessed(state.iterations() * 3);  // items/s = ops/s
}

}  // namespace

BENCHMARK(BM_ember_sgemm)
    ->ArgsProduct({{64, 128, 256, 512, 1024, 2048}, {1, 2}})
    ->ArgNames({"N", "threads"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
#define EMBER_ELEMENTWISE(name) \
  BENCHMARK(name)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMicrosecond)->UseRealTime()
EMBER_ELEMENTWISE(BM_ember_relu);
EMBER_ELEMENTWISE(BM_ember_relu_inplace);
EMBER_ELEMENTWISE(BM_ember_add);
EMBER_ELEMENTWISE(BM_ember_exp);
EMBER_ELEMENTWISE(BM_ember_tanh);
EMBER_ELEMENTWISE(BM_ember_sigmoid);
EMBER_ELEMENTWISE(BM_ember_gelu);
EMBER_ELEMENTWISE(BM_ember_sum);
EMBER_ELEMENTWISE(BM_ember_softmax);
BENCHMARK(BM_ember_add_1elem)->Arg(1)->Arg(2)->ArgName("threads");
BENCHMARK(BM_ember_add_1elem_grad)->Arg(1)->Arg(2)->ArgName("threads");
BENCHMARK(BM_ember_fwd_bwd_per_op)->Arg(1)->Arg(2)->ArgName("threads");
