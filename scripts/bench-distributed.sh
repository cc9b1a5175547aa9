#!/usr/bin/env bash
# Weak scaling of data-parallel training on this machine: ember-mnist's CNN and MLP training
# steps (each rank with the recipe's batch) in 1 process of 1 thread, 1 process of 2 threads and
# 2 ranks of 1 thread (mpirun), each set-up run ROUNDS times in turn (default 3), then the table of
# docs/distributed.md (medians): samples/s, the 2-rank speed-up over 1 process of 1 thread, and
# the all-reduce figures; and ember's all_reduce latency and bandwidth between 2 ranks.
#   scripts/bench-distributed.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
cmake --build build --target ember-bench-distributed > /dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bench=build/bench/ember-bench-distributed
out=$(mktemp -d)
for r in $(seq "$rounds"); do
  "$bench" --benchmark_filter='train.*threads:1/' --benchmark_format=json > "$out/one-$r.json"
  "$bench" --benchmark_filter='train.*threads:2/' --benchmark_format=json > "$out/two-threads-$r.json"
  mpirun -np 2 --bind-to core "$bench" --benchmark_filter='train.*threads:1/' --benchmark_format=json \
    > "$out/two-ranks-$r.json"
done
mpirun -np 2 --bind-to core "$bench" --benchmark_filter='all_reduce' --benchmark_format=json > "$out/allreduce.json"
python3 tools/distributed_table.py "$out"
rm -rf "$out"
