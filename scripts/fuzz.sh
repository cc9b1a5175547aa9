#!/usr/bin/env bash
# Builds the libFuzzer targets with clang under ASan + UBSan and runs each for SECONDS (default
# 60) on the seeds ember writes plus the committed regression inputs. A crash, a sanitizer
# report, an exception other than ember::Error, a slow input (10 s) or more than 2 GiB of memory
# is a finding: libFuzzer saves the input in fuzz/regressions/<target>/ (commit it with the fix;
# the test suite replays that folder) and this script fails.
#   scripts/fuzz.sh [SECONDS]          BUILD_DIR (default build-fuzz), JOBS (default: all cores)
# A BUILD_DIR already configured with the same compiler and flags (CI's ASan + UBSan tree, built
# with EMBER_BUILD_FUZZERS=ON) is reused: only the fuzz targets are left to build.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build="${BUILD_DIR:-build-fuzz}"
jobs="${JOBS:-$(nproc)}"
targets=(safetensors checkpoint idx cifar plan png)

scripts/install-deps.sh --fuzz
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
  -DEMBER_SANITIZE=address,undefined -DEMBER_BUILD_FUZZERS=ON \
  -DEMBER_BUILD_TESTS=OFF -DEMBER_BUILD_EXAMPLES=OFF -DEMBER_BUILD_BENCHMARKS=OFF \
  -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCMAKE_CXX_FLAGS=-g1 > /dev/null
cmake --build "$build" -j "$jobs" --target ember_fuzz_seeds "${targets[@]/#/fuzz_}"
"$build/fuzz/ember_fuzz_seeds" "$build/fuzz/seeds"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for t in "${targets[@]}"; do
  corpus="$build/fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/regressions/$t"
  echo "== fuzz_$t: $seconds s =="
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="fuzz/regressions/$t/" \
    "$corpus" "$build/fuzz/seeds/$t" "fuzz/regressions/$t" 2>&1 | tail -n 12
  test "${PIPESTATUS[0]}" -eq 0
done
echo "fuzz: no findings"
