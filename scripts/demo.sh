#!/usr/bin/env bash
# The main job: installs dependencies, builds ember in Release, gets Fashion-MNIST (Debian's
# dataset-fashion-mnist) and trains the MNIST example's CNN on it, printing its progress, the test
# accuracy and where the model, metrics and pictures were written.
# Extra arguments go to ember-mnist (e.g. --epochs 5 --threads 1; see ember-mnist --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
echo "demo: building ember-mnist in $build_dir"
cmake --build "$build_dir" -j "$(nproc)" --target ember-mnist | tail -n 1
scripts/get-data.sh fashion-mnist
"$build_dir/examples/ember-mnist" --data data/fashion-mnist --model cnn --epochs 3 --out out/demo "$@"
