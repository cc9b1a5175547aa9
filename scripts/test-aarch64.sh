#!/usr/bin/env bash
# Cross-builds ember, its tests and ember-bench for aarch64 and runs the suite under qemu-user: the
# build an ARM machine gets (the NEON kernel tables, no x86 code), checked on this x86-64 one.
# qemu's default CPU model (max) has every extension, so the suite runs the NEON tables with the
# sdot and smmla int8 kernels, and the kernel tests compare each against the scalar reference;
# the kernel tests run again on a Cortex-A53 model, which lacks the dot-product extension, so the
# choice of the widening int8 kernels is exercised too.
#   scripts/test-aarch64.sh              build in build-aarch64/
# Knobs: BUILD_DIR, JOBS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --aarch64

build_dir=${BUILD_DIR:-build-aarch64}
jobs=${JOBS:-$(nproc)}
# No MPI: the distributed tests start several processes with the host's mpirun (x86-64), which
# cannot launch binaries under emulation.
# qemu runs the binaries against the arm64 libraries installed by multiarch (-L /); with the
# cross toolchain's own libc (/usr/aarch64-linux-gnu) qemu 7.2 hangs in pthread_create.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ "-DCMAKE_CROSSCOMPILING_EMULATOR=qemu-aarch64;-L;/" \
  -DEMBER_BUILD_EXAMPLES=OFF -DEMBER_BUILD_BENCHMARKS=ON -DEMBER_WARNINGS_AS_ERRORS=ON \
  -DEMBER_WITH_MPI=OFF -DEMBER_CHECK_HEADERS=OFF
cmake --build "$build_dir" -j "$jobs"
# Left out under emulation: the installed-package consumer (a host-compiler project) and the
# killed-writer checkpoint test (it spawns an aarch64 binary, which needs binfmt_misc).
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" \
  -E '^(consumer_installed_package|Checkpoint\.KilledSavesLeaveALoadableCheckpoint)$'
for test in test_backend_kernels test_int8_kernels; do
  QEMU_CPU=cortex-a53 qemu-aarch64 -L / "$build_dir/tests/$test" --gtest_brief=1
done
# The tables each CPU model gets: the probe prints the float and int8 tables in use.
expect_tables() {
  local got
  got=$(QEMU_CPU=$1 qemu-aarch64 -L / "$build_dir/bench/ember-kernel-probe" int8 8 1 | head -1)
  if [[ "$got" != "$2" ]]; then
    echo "test-aarch64.sh: qemu -cpu $1 chose '$got', expected '$2'" >&2
    exit 1
  fi
  echo "qemu -cpu $1: $got"
}
expect_tables max "isa neon int8 neon_i8mm"
expect_tables cortex-a76 "isa neon int8 neon_dotprod"
expect_tables cortex-a53 "isa neon int8 neon"
