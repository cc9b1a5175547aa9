// Measures the FP32 FMA peak of one core: independent FMA chains, long enough to hide latency,
// on the vectors of the tier ember runs on (the widest the CPU has, unless EMBER_ISA caps it).
// Benchmarks report GEMM speed as a share of this figure.
#include <chrono>
#include <cstdint>

#include "common.hpp"
#include "ember/backend/kernels.hpp"

namespace {
// The widest FMA chains this CPU runs: the function and its flops per iteration.
struct Chains {
  float (*run)(int64_t);
  double flop_per_iter;
};
}  // namespace

#if defined(__x86_64__)
#include <immintrin.h>

namespace {
constexpr int kChains = 10;  // > FMA latency (4) x pipes (2): the pipes never wait

__attribute__((target("avx512f"), noinline)) float chains512(int64_t iters) {
  __m512 acc[kChains];
  const __m512 mul = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], mul, add);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"), noinline)) float chains256(int64_t iters) {
  __m256 acc[kChains];
  const __m256 mul = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], mul, add);
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// The tier ember runs on (EMBER_ISA=avx2 caps it), so that a GEMM's share is of its own tier's peak.
Chains widest_chains() {
  using ember::backend::Isa;
  const Isa active = ember::backend::kernels<float>().isa;
  if (active == Isa::Avx512) return {&chains512, kChains * 16.0 * 2};
  if (active == Isa::Avx2) return {&chains256, kChains * 8.0 * 2};
  return {nullptr, 0};
}
}  // namespace
#define EMBER_BENCH_HAS_PEAK 1

#elif defined(__aarch64__)
#include <arm_neon.h>

namespace {
constexpr int kChains = 16;  // > FMA latency (4) x pipes (2 to 4 on Cortex-A7x / Neoverse)

__attribute__((noinline)) float chains128(int64_t iters) {
  float32x4_t acc[kChains];
  const float32x4_t mul = vdupq_n_f32(0.9999999f), add = vdupq_n_f32(1e-7f);
  for (int c = 0; c < kChains; ++c) acc[c] = vdupq_n_f32(static_cast<float>(c));
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = vfmaq_f32(add, acc[c], mul);
  float32x4_t s = acc[0];
  for (int c = 1; c < kChains; ++c) s = vaddq_f32(s, acc[c]);
  return vaddvq_f32(s);
}

Chains widest_chains() { return {&chains128, kChains * 4.0 * 2}; }
}  // namespace
#define EMBER_BENCH_HAS_PEAK 1
#endif

#if defined(EMBER_BENCH_HAS_PEAK)
namespace {
volatile float g_sink;
}  // namespace

namespace ember_bench {
double fma_peak_gflops() {
  static const double peak = [] {
    const Chains c = widest_chains();
    if (c.run == nullptr) return 0.0;
    const int64_t iters = 20'000'000;
    const double flop = static_cast<double>(iters) * c.flop_per_iter;
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      g_sink = c.run(iters);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (flop / s / 1e9 > best) best = flop / s / 1e9;
    }
    return best;
  }();
  return peak;
}
}  // namespace ember_bench

static void BM_fma_peak(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(ember_bench::fma_peak_gflops());
  state.counters["GFLOPS_1core"] = ember_bench::fma_peak_gflops();
}
BENCHMARK(BM_fma_peak)->Iterations(1)->Unit(benchmark::kMillisecond);

#else
namespace ember_bench {
double fma_peak_gflops() { return 0.0; }
}  // namespace ember_bench
#endif
