#!/usr/bin/env bash
# Times ember's ports of LibTorch's MNIST and DCGAN examples (examples/libtorch-ports) beside
# LibTorch's own (bench/libtorch-ports), alternating, on the same MNIST-format data: wall time and
# peak memory (max RSS) of each whole program, with the default thread counts of both (all
# cores). Needs libtorch-dev (scripts/install-deps.sh --torch).
#   scripts/bench-ports.sh [DATA_DIR] [ROUNDS]   DATA_DIR holds MNIST's four raw idx files; without
#   one, a synthetic set of MNIST's shapes (60,000 + 10,000 images) is written to build/ports-data.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-}"
rounds="${2:-2}"
cmake --build build --target ember-port-mnist ember-port-dcgan torch-port-mnist torch-port-dcgan > /dev/null
if [ -z "$data" ]; then
  data=build/ports-data
  if [ ! -f "$data/t10k-labels-idx1-ubyte" ]; then
    mkdir -p "$data"
    python3 - "$data" <<'PY'
import os, random, struct, sys
out = sys.argv[1]
random.seed(1)
for prefix, n in (("train", 60000), ("t10k", 10000)):
    labels = bytes(i % 10 for i in range(n))
    noise = bytes(random.randrange(40) for _ in range(1 << 16))
    images = bytearray()
    for i in range(n):
        img = bytearray(noise[(i * 811) % 60000:(i * 811) % 60000 + 784])
        k = i % 10
        for r in range(6 + k, 14 + k):  # a bright bar whose place gives the class
            for c in range(8, 20):
                img[r * 28 + c] = 230
        images += img
    open(f"{out}/{prefix}-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + images)
    open(f"{out}/{prefix}-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + labels)
PY
  fi
fi
out=$(mktemp -d)
measure() {  # name, command...
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$out/time" "$@" > "$out/log" 2>&1
  read -r seconds kib < "$out/time"
  printf '%-28s %8.1f s %8.0f MiB   %s\n' "$name" "$seconds" "$((kib / 1024))" "$(grep -o 'Accuracy: [0-9.]*' "$out/log" | tail -1)"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) threads"
for r in $(seq "$rounds"); do
  measure "ember MNIST (1 epoch)" build/examples/ember-port-mnist "$data" 1
  measure "LibTorch MNIST (1 epoch)" build/bench/torch-port-mnist "$data" 1
  measure "ember DCGAN (100 batches)" build/examples/ember-port-dcgan "$data" 1 100 "$out"
  measure "LibTorch DCGAN (100 batches)" build/bench/torch-port-dcgan "$data" 1 100 "$out"
done
rm -rf "$out"
