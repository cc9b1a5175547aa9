#!/usr/bin/env bash
# Installs ember's build dependencies from Debian's archive. Idempotent: it asks apt for
# nothing when every package is already present.
#   scripts/install-deps.sh            required packages (build + tests)
#   scripts/install-deps.sh --torch    also python3-torch (regenerates test references) and
#                                      libtorch-dev (side-by-side benchmarks)
#   scripts/install-deps.sh --clang    also clang (CI builds and tests with it too)
#   scripts/install-deps.sh --fuzz     also clang's runtime libraries (libFuzzer, sanitizers) for
#                                      scripts/fuzz.sh; apt would not bring them (only recommended)
#   scripts/install-deps.sh --aarch64  also the aarch64 cross compiler, qemu-user and the arm64
#                                      builds of the test and benchmark dependencies (scripts/test-aarch64.sh);
#                                      adds arm64 as a dpkg architecture (multiarch)
# python3-onnx is the ONNX project's own checker: the tests run exported models through it
# (tools/onnx_check.py). It is a test dependency; the library does not need it.
set -euo pipefail

required=(cmake ninja-build g++ libeigen3-dev libfmt-dev libgtest-dev libgmock-dev python3-onnx python3-numpy
          libbenchmark-dev zlib1g-dev nlohmann-json3-dev libpng-dev libopenmpi-dev openmpi-bin)
optional=()
want_arm64=false
for arg in "$@"; do
  case "$arg" in
    --torch) optional+=(python3-torch libtorch-dev libopenblas-dev) ;;
    --clang) optional+=(clang) ;;
    --fuzz) optional+=(clang libclang-rt-dev) ;;
    --aarch64)
      want_arm64=true
      optional+=(g++-aarch64-linux-gnu qemu-user zlib1g-dev:arm64 libgtest-dev:arm64
                 libgmock-dev:arm64 libfmt-dev:arm64 libbenchmark-dev:arm64
                 libpng-dev:arm64) ;;
    *) echo "install-deps.sh: unknown option '$arg' (expected --torch, --clang, --fuzz or --aarch64)" >&2
       exit 2 ;;
  esac
done

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
if $want_arm64 && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  "${sudo_cmd[@]}" dpkg --add-architecture arm64
fi

missing=()
for pkg in "${required[@]}" "${optional[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all dependencies present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
