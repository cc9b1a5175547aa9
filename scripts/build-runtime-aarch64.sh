#!/usr/bin/env bash
# Cross-builds ember-run for aarch64 (a Raspberry Pi-class board running 64-bit Linux): statically
# linked against ember::runtime, zlib and glibc, stripped, so the one file runs on any
# aarch64 Linux. Checks that the result is static and prints its size (docs/deploy.md).
#   scripts/build-runtime-aarch64.sh       builds build-runtime-aarch64/examples/ember-run
# Knobs: BUILD_DIR, JOBS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --aarch64

build_dir=${BUILD_DIR:-build-runtime-aarch64}
jobs=${JOBS:-$(nproc)}
lib=/usr/lib/aarch64-linux-gnu
# -Os: the runtime is for small devices; the kernels' hot loops are written with intrinsics and
# explicit unrolling, which -Os keeps. --gc-sections drops what no caller reaches.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=MinSizeRel \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
  -DEMBER_BUILD_TESTS=OFF -DEMBER_BUILD_BENCHMARKS=OFF -DEMBER_BUILD_EXAMPLES=ON -DEMBER_WITH_MPI=OFF \
  -DEMBER_WARNINGS_AS_ERRORS=ON \
  "-DCMAKE_CXX_FLAGS=-ffunction-sections -fdata-sections" \
  "-DCMAKE_EXE_LINKER_FLAGS=-static -s -Wl,--gc-sections" \
  -DZLIB_LIBRARY=$lib/libz.a > /dev/null
cmake --build "$build_dir" -j "$jobs" --target ember-run
run="$build_dir/examples/ember-run"
file "$run" | grep -q "statically linked" || { echo "build-runtime-aarch64.sh: $run is not static" >&2; exit 1; }
echo "ember-run (aarch64, static, stripped): $(stat -c %s "$run") bytes"
