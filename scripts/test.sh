#!/usr/bin/env bash
# Installs dependencies, configures, builds and runs the test suite (ctest).
#   scripts/test.sh                      Release build in build/
#   BUILD_DIR=build-asan SANITIZE=address,undefined scripts/test.sh
# Other knobs: BUILD_TYPE (default Release), JOBS (default: all cores), CMAKE_ARGS (extra flags).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
args=(-S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}")
if [ -n "${SANITIZE:-}" ]; then
  args+=(-DEMBER_SANITIZE="$SANITIZE" -DEMBER_BUILD_BENCHMARKS=OFF -DEMBER_BUILD_EXAMPLES=OFF -DEMBER_CHECK_HEADERS=OFF)
fi
# shellcheck disable=SC2206
args+=(${CMAKE_ARGS:-})

cmake "${args[@]}"
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
