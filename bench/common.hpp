#pragma once
// Shared helpers for ember's Google Benchmark programs.
#include <benchmark/benchmark.h>

namespace ember_bench {
/// The machine's measured single-core FP32 FMA peak in GFLOP/s (see peak.cpp), or 0 when this
/// CPU has no AVX-512/AVX2 FMA to measure.
double fma_peak_gflops();
}  // namespace ember_bench
