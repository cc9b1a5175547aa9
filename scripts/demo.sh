#!/usr/bin/env bash
# The main job: installs dependencies, builds ember in Release and runs the bundled demo, which
# trains a small MLP on a generated spiral problem and prints the loss falling.
# Extra arguments go to the demo (e.g. --steps 1000 --threads 1).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j "$(nproc)" --target ember-demo
"$build_dir/examples/ember-demo" "$@"
