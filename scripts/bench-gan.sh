#!/usr/bin/env bash
# One DCGAN epoch on Fashion-MNIST (60,000 images, 938 batches of 64): ember-gan's training epoch
# beside LibTorch's own DCGAN example (bench/libtorch-ports/dcgan.cpp, the same networks, loss and
# optimizers) for one epoch, alternating, with the default thread counts of both (all cores).
# Prints each program's wall time and peak memory, and ember-gan's epoch time (training only,
# without its quality metrics). Needs libtorch-dev (scripts/install-deps.sh --torch) and
# scripts/get-data.sh fashion-mnist.
#   scripts/bench-gan.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-1}"
cmake --build build --target ember-gan ember-mnist torch-port-dcgan > /dev/null
scripts/get-data.sh fashion-mnist > /dev/null
# LibTorch's MNIST reader takes the raw IDX files.
raw=build/fashion-mnist-raw
mkdir -p "$raw"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$raw/$f" ] || gzip -dc "data/fashion-mnist/$f.gz" > "$raw/$f"
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# ember-gan measures its samples with a classifier; train a quick one once, outside the timing.
build/examples/ember-mnist --data "$raw" --model cnn --epochs 1 --out "$out/classifier" > /dev/null
measure() {  # name, command...
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$out/time" "$@" > "$out/log" 2>&1
  read -r seconds kib < "$out/time"
  printf '%-34s %8.1f s %8.0f MiB   %s\n' "$name" "$seconds" "$((kib / 1024))" \
    "$(tr '\r' '\n' < "$out/log" | grep -o 'G(z)) [0-9.]* | [0-9.]* s' | sed 's/.*| /epoch (training): /' | tail -1)"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) threads"
for r in $(seq "$rounds"); do
  measure "ember-gan (1 epoch)" build/examples/ember-gan --data "$raw" --epochs 1 --out "$out/gan" \
    --classifier "$out/classifier/model.safetensors"
  measure "LibTorch DCGAN example (1 epoch)" build/bench/torch-port-dcgan "$raw" 1 0 "$out"
done
