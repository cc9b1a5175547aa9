#!/usr/bin/env bash
# Data-parallel training on this machine: installs dependencies (Open MPI included), builds
# ember-mnist, gets Fashion-MNIST and trains the MNIST example's CNN with $RANKS processes
# (default 2) started by mpirun, each on its share of every batch with one progress bar (rank 0).
# Extra arguments go to ember-mnist (e.g. --epochs 1 --model mlp; see ember-mnist --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEMBER_WITH_MPI=ON > /dev/null
echo "demo-distributed: building ember-mnist in $build_dir"
cmake --build "$build_dir" -j "$(nproc)" --target ember-mnist | tail -n 1
scripts/get-data.sh fashion-mnist
# Open MPI refuses to start as root without these two variables (containers and CI run as root);
# --oversubscribe lets more ranks than cores start.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np "${RANKS:-2}" --oversubscribe --bind-to none "$build_dir/examples/ember-mnist" --distributed \
  --data data/fashion-mnist --model cnn --epochs 3 --out out/demo-distributed "$@"
