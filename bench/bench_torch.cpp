// The same rows as bench_ember.cpp, for LibTorch (built only when libtorch-dev is installed).
// Run without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the environment (see docs/benchmarks.md):
// they force OpenBLAS's AVX2 kernels and halve LibTorch's matmul speed.
#include <dlfcn.h>
#include <torch/torch.h>

#include "common.hpp"

namespace {

// LibTorch's matmul runs in OpenBLAS, whose thread pool ignores torch::set_num_threads; set it
// directly when the library is loaded, so that "threads:1" really is one thread.
void set_threads(int64_t t) {
  torch::set_num_threads(static_cast<int>(t));
  using SetFn = void (*)(int);
  if (auto f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(static_cast<int>(t));
}

void BM_torch_sgemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  set_threads(state.range(1));
  torch::manual_seed(1);
  auto a = torch::randn({n, n});
  auto b = torch::randn({n, n});
  for (auto _ : state) {
    auto c = torch::mm(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  state.counters["FLOPS"] = benchmark::Counter(flop, benchmark::Counter::kIsIterationInvariantRate);
}

template <class F>
void elementwise(benchmark::State& state, F f, int tensors_touched) {
  const int64_t n = 1 << 20;
  set_threads(state.range(0));
  torch::manual_seed(2);
  auto x = torch::randn({n});
  auto y = torch::randn({n});
  torch::NoGradGuard no_grad;
  for (auto _ : state) {
    auto r = f(x, y);
    benchmark::DoNotOptimize(r.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * n * 4 * tensors_touched);
}

void BM_torch_relu(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return torch::relu(x); }, 2); }
void BM_torch_relu_inplace(benchmark::State& s) {
  elementwise(s, [](auto& x, auto&) { return x.relu_(); }, 2);
}
void BM_torch_add(benchmark::State& s) { elementwise(s, [](auto& x, auto& y) { return x + y; }, 3); }
void BM_torch_exp(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return torch::exp(x); }, 2); }
void BM_torch_tanh(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return torch::tanh(x); }, 2); }
void BM_torch_sigmoid(benchmark::State& s) {
  elementwise(s, [](auto& x, auto&) { return torch::sigmoid(x); }, 2);
}
void BM_torch_gelu(benchmark::State& s) {
  elementwise(s, [](auto& x, auto&) { return torch::gelu(x); }, 2);
}
void BM_torch_sum(benchmark::State& s) { elementwise(s, [](auto& x, auto&) { return x.sum(); }, 1); }
void BM_torch_softmax(benchmark::State& s) {
  elementwise(s, [](auto& x, auto&) { return torch::softmax(x.view({1024, 1024}), 1); }, 2);
}

void BM_torch_add_1elem(benchmark::State& state) {
  set_threads(state.range(0));
  auto a = torch::ones({1});
  auto b = torch::ones({1});
  for (auto _ : state) {
    auto c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
}

void BM_torch_add_1elem_grad(benchmark::State& state) {
  set_threads(state.range(0));
  auto a = torch::ones({1}, torch::requires_grad());
  auto b = torch::ones({1}, torch::requires_grad());
  for (auto _ : state) {
    auto c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());
  }
}

void BM_torch_fwd_bwd_per_op(benchmark::State& state) {
  set_threads(state.range(0));
  auto a = torch::ones({1}, torch::requires_grad());
  auto b = torch::ones({1}, torch::requires_grad());
  for (auto _ : state) {
    auto y = (a * b + a).sum();
    y.backward();
    a.mutable_grad().reset();
    b.mutable_grad().reset();
  }
  state.SetItemsProcessed(state.iterations() * 3);
}

}  // namespace

BENCHMARK(BM_torch_sgemm)
    ->ArgsProduct({{64, 128, 256, 512, 1024, 2048}, {1, 2}})
    ->ArgNames({"N", "threads"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
#define TORCH_ELEMENTWISE(name) \
  BENCHMARK(name)->Arg(1)->Arg(2)->ArgName("threads")->Unit(benchmark::kMicrosecond)->UseRealTime()
TORCH_ELEMENTWISE(BM_torch_relu);
TORCH_ELEMENTWISE(BM_torch_relu_inplace);
TORCH_ELEMENTWISE(BM_torch_add);
TORCH_ELEMENTWISE(BM_torch_exp);
TORCH_ELEMENTWISE(BM_torch_tanh);
TORCH_ELEMENTWISE(BM_torch_sigmoid);
TORCH_ELEMENTWISE(BM_torch_gelu);
TORCH_ELEMENTWISE(BM_torch_sum);
TORCH_ELEMENTWISE(BM_torch_softmax);
BENCHMARK(BM_torch_add_1elem)->Arg(1)->Arg(2)->ArgName("threads");
BENCHMARK(BM_torch_add_1elem_grad)->Arg(1)->Arg(2)->ArgName("threads");
BENCHMARK(BM_torch_fwd_bwd_per_op)->Arg(1)->Arg(2)->ArgName("threads");
