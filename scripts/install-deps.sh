#!/usr/bin/env bash
# Installs ember's build dependencies from Debian's archive. Idempotent: it asks apt for
# nothing when every package is already present.
#   scripts/install-deps.sh            required packages (build + tests)
#   scripts/install-deps.sh --torch    also python3-torch (regenerates test references) and
#                                      libtorch-dev (side-by-side benchmarks)
set -euo pipefail

required=(cmake ninja-build g++ libeigen3-dev libfmt-dev libgtest-dev libgmock-dev
          libbenchmark-dev zlib1g-dev nlohmann-json3-dev libpng-dev)
optional=()
for arg in "$@"; do
  case "$arg" in
    --torch) optional+=(python3-torch libtorch-dev libopenblas-dev) ;;
    *) echo "install-deps.sh: unknown option '$arg' (expected --torch)" >&2; exit 2 ;;
  esac
done

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
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
