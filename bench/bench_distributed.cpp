// Data-parallel training steps of ember-mnist's CNN and MLP (their recipes' batch per rank: weak
// scaling) through DistributedDataParallel, in one process or in several under mpirun:
//
//   ember-bench-distributed --benchmark_filter='threads:1/'                 1 process, 1 thread
//   ember-bench-distributed --benchmark_filter='threads:2/'                 1 process, 2 threads
//   mpirun -np 2 ember-bench-distributed --benchmark_filter='threads:1/'    2 ranks of 1 thread
//
// items_per_second counts every rank's samples. With more than one rank it reports, per step, the
// time the training thread spent in communication (exposed_ms: starting and advancing the
// buckets' all-reduces in the gradient hooks, and the wait after backward), the same buckets
// all-reduced alone with nothing to overlap (allreduce_ms), and the share hidden behind backward,
// 1 - exposed / allreduce; and overlap_share, the part of the buckets' all-reduce time on the
// communication thread that ran while backward was still computing. scripts/bench-distributed.sh runs the
// three set-ups and prints the table of docs/distributed.md. Iteration counts are fixed so that
// every rank runs the same number of collectives.
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <string>

#include "common/mnist_models.hpp"
#include "ember/distributed.hpp"
#include "ember/ember.hpp"

namespace {

namespace nn = ember::nn;
namespace dist = ember::distributed;
using ember::Tensor;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// range(0): threads per rank; range(1): bucket cap in KiB.
void train_steps(benchmark::State& state, const std::string& model_name) {
  ember::set_num_threads(static_cast<int>(state.range(0)));
  ember::manual_seed(0);
  const ember::examples::ExampleSpec spec = ember::examples::mnist_spec();
  const ember::examples::ModelChoice* choice = nullptr;
  for (const auto& m : spec.models) {
    if (m.name == model_name) choice = &m;
  }
  const int64_t batch = choice->recipe.batch_size;
  std::shared_ptr<nn::Module<float>> model = choice->make(1, 28, 10);
  nn::convert_sync_batch_norm(*model);
  dist::DistributedDataParallel<float> ddp(*model, {.bucket_cap_mb = static_cast<double>(state.range(1)) / 1024});
  ember::optim::Adam<float> adam(model->parameters(), {.lr = 1e-3});
  ember::Generator gen(1 + static_cast<uint64_t>(dist::rank()));
  const Tensor<float> x = ember::randn<float>({batch, 1, 28, 28}, &gen);
  const Tensor<int64_t> y = ember::randint<int64_t>(0, 10, {batch}, &gen);
  auto step = [&] {
    adam.zero_grad();
    nn::functional::cross_entropy(ddp(x), y).backward();
    adam.step();
  };
  for (int i = 0; i < 3; ++i) step();  // warm-up: allocator, packed weights
  dist::barrier();
  double exposed = 0, all_reduce = 0, overlapped = 0;
  for (auto _ : state) {
    step();
    const auto& s = ddp.last_step_stats();
    exposed += s.exposed_seconds;
    all_reduce += s.all_reduce_seconds;
    overlapped += s.overlapped_seconds;
  }
  const double steps = static_cast<double>(state.iterations());
  const int world = dist::world_size();
  state.SetItemsProcessed(state.iterations() * batch * world);
  state.counters["ranks"] = world;
  state.counters["buckets"] = static_cast<double>(ddp.last_step_stats().buckets);
  if (world > 1) {
    // The same buckets all-reduced with nothing to hide behind.
    std::map<std::string, int64_t> numel;
    for (const auto& [name, p] : model->named_parameters()) numel[name] = p.numel();
    std::vector<Tensor<float>> buffers;
    for (const auto& names : ddp.bucket_names()) {
      int64_t n = 0;
      for (const auto& name : names) n += numel[name];
      buffers.push_back(ember::zeros<float>({n}));
    }
    const int reps = 20;
    dist::barrier();
    const auto start = Clock::now();
    for (int r = 0; r < reps; ++r) {
      for (auto& b : buffers) dist::all_reduce(b);
    }
    const double alone = seconds_since(start) / reps;
    state.counters["exposed_ms"] = 1e3 * exposed / steps;
    state.counters["allreduce_ms"] = 1e3 * alone;
    state.counters["hidden_share"] = std::max(0.0, 1.0 - exposed / steps / alone);
    state.counters["overlap_share"] = all_reduce > 0 ? overlapped / all_reduce : 0.0;
  }
}

void BM_ddp_train_cnn(benchmark::State& state) { train_steps(state, "cnn"); }
void BM_ddp_train_mlp(benchmark::State& state) { train_steps(state, "mlp"); }

// Buckets: PyTorch's default 25 MiB (each model then has one bucket, all-reduced after backward)
// and 512 KiB (several, started during backward).
BENCHMARK(BM_ddp_train_cnn)->ArgNames({"threads", "bucket_kb"})->ArgsProduct({{1, 2}, {25600, 512}})
    ->Iterations(40)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ddp_train_mlp)->ArgNames({"threads", "bucket_kb"})->ArgsProduct({{1, 2}, {25600, 512}})
    ->Iterations(60)->Unit(benchmark::kMillisecond)->UseRealTime();

// ember's all_reduce (queued on the communication thread, the ranks' calls compared first) of
// `bytes` of floats: the latency and bandwidth docs/distributed.md's cost model takes. bus_GBps is
// the bandwidth the ring moves, 2 (p - 1) / p * bytes / time.
void BM_all_reduce(benchmark::State& state) {
  const int64_t bytes = state.range(0);
  Tensor<float> t = ember::ones<float>({std::max<int64_t>(1, bytes / 4)});
  dist::barrier();
  for (auto _ : state) dist::all_reduce(t);
  const double p = dist::world_size();
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["bus_GBps"] = benchmark::Counter(2 * (p - 1) / p * static_cast<double>(bytes) * 1e-9,
                                                  benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_all_reduce)->ArgName("bytes")->Arg(4)->Arg(1 << 10)->Arg(64 << 10)->Arg(1 << 20)->Arg(16 << 20)
    ->Iterations(200)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Ranks other than 0 run the same benchmarks (their collectives must match) but report nothing.
class SilentReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (dist::rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    SilentReporter silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  return 0;
}
