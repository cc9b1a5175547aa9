#!/usr/bin/env bash
# Training steps against LibTorch on every tier this CPU offers, each library in its own process,
# alternating, for several rounds: LibTorch's speed differs by up to 2x between processes started
# minutes apart on these VMs (memory state), so one side-by-side run can flatter either side.
# Prints per tier, model and thread count the range of ember's and LibTorch's medians over the
# rounds and of the per-round ratio LibTorch / ember. Needs libtorch-dev
# (scripts/install-deps.sh --torch).
#   scripts/bench-train-rounds.sh [ROUNDS] [FILTER]    defaults: 3 rounds, every training step
#   scripts/bench-train-rounds.sh 2 'layer_conv'       other twins too (the layers: ms per call)
#   TIERS="avx2" scripts/bench-train-rounds.sh         one tier only
#   MALLOC_DEFAULTS=1 scripts/bench-train-rounds.sh    glibc's malloc thresholds as they are
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
filter="${2:-train_}"
cmake --build build --target ember-bench-torch > /dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
tiers=(avx2)
grep -qw avx512f /proc/cpuinfo && tiers=(avx512 avx2)
[[ -n "${TIERS:-}" ]] && read -r -a tiers <<< "$TIERS"  # e.g. TIERS=avx2
# glibc's malloc hands large freed blocks back to the OS, so a library that frees and reallocates
# its activations each step (LibTorch) pays fresh page faults for them on every step, which on
# these VMs took up to half of its Transformer step (perf: the kernel's page-fault path and
# memset). Keeping freed memory in the process (no trimming, a 256 MB top pad; the mmap threshold
# at 32 MB, the most glibc accepts) takes LibTorch's Transformer step from 48-68 to 21-22 ms there,
# as ember's caching allocator does for ember, so both libraries are measured at their best;
# MALLOC_DEFAULTS=1 measures glibc's defaults.
malloc_env=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456)
[[ "${MALLOC_DEFAULTS:-0}" == 1 ]] && malloc_env=()
run() {  # tier, library, round
  local -a env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${malloc_env[@]}")
  # The AVX2 tier caps both: ember's kernels, and LibTorch's ATen, oneDNN (its convolutions, which
  # ATEN_CPU_CAPABILITY does not reach) and OpenBLAS kernels.
  [[ $1 == avx2 ]] && env+=(EMBER_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell)
  "${env[@]}" build/bench/ember-bench-torch --benchmark_filter="BM_$2_${filter}" --benchmark_min_time=0.5 \
    --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2>/dev/null |
    awk -v t="$1" -v r="$3" '/_median/ {print t, r, $1, $2}' >> "$out"
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) threads; commit $(git rev-parse --short HEAD)"
for r in $(seq "$rounds"); do
  for tier in "${tiers[@]}"; do
    run "$tier" ember "$r"
    run "$tier" torch "$r"
  done
done
python3 - "$out" <<'PY'
import collections, re, sys
ms = collections.defaultdict(dict)  # (tier, model, threads, lib) -> {round: ms}
for line in open(sys.argv[1]):
    tier, rnd, name, value = line.split()
    m = re.match(r"BM_(ember|torch)_(\w+)/threads:(\d+)", name)
    model = m.group(2).removeprefix("train_")
    ms[(tier, model, int(m.group(3)), m.group(1))][rnd] = float(value)
span = lambda v: f"{min(v):.3g}-{max(v):.3g}"
print("| tier | model | threads | ember ms | LibTorch ms | LibTorch / ember |")
print("|---|---|---:|---:|---:|---:|")
for (tier, model, threads, lib) in sorted(ms, key=lambda k: (k[0] != "avx512", k[1], k[2])):
    if lib != "ember" or (tier, model, threads, "torch") not in ms:
        continue
    e, t = ms[(tier, model, threads, "ember")], ms[(tier, model, threads, "torch")]
    ratios = [t[r] / e[r] for r in e if r in t]
    print(f"| {tier} | {model} | {threads} | {span(e.values())} | {span(t.values())} | "
          f"{min(ratios):.2f}-{max(ratios):.2f}x |")
PY
