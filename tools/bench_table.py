#!/usr/bin/env python3
"""Turns Google Benchmark JSON from ember-bench / ember-bench-torch into the markdown tables of
docs/benchmarks.md, pairing each BM_ember_* row with its BM_torch_* twin and giving the ratio.

    build/bench/ember-bench-torch --benchmark_format=json > bench.json
    python3 tools/bench_table.py bench.json
"""
import json
import sys


def rows(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        out[name] = b
    return data.get("context", {}), out


def ns(b):
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
    return b["real_time"] * scale


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    context, r = rows(argv[1])
    peak = None
    for name, b in r.items():
        if name.startswith("BM_fma_peak"):
            peak = b.get("GFLOPS_1core")

    def twin(name):
        return r.get(name.replace("BM_ember_", "BM_torch_", 1))

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "-"

    print(f"Machine: {context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz; "
          f"FMA peak {peak:.1f} GFLOP/s per core\n" if peak else "")
    print("| sgemm N | threads | ember GFLOP/s | % of FMA peak | LibTorch GFLOP/s | ember / LibTorch |")
    print("|---|---|---|---|---|---|")
    for name, b in r.items():
        if not name.startswith("BM_ember_sgemm"):
            continue
        parts = dict(p.split(":") for p in name.split("/")[1:] if ":" in p)
        n, t = int(parts["N"]), int(parts["threads"])
        g = 2 * n ** 3 / ns(b)
        pct = f"{100 * g / (peak * t):.0f}%" if peak else "-"
        tb = twin(name)
        tg = 2 * n ** 3 / ns(tb) if tb else None
        print(f"| {n} | {t} | {g:.1f} | {pct} | {f'{tg:.1f}' if tg else '-'} | {ratio(g, tg)} |")

    print("\n| op on 1M floats | threads | ember GB/s | LibTorch GB/s | ember / LibTorch |")
    print("|---|---|---|---|---|")
    for name, b in r.items():
        if not name.startswith("BM_ember_") or "bytes_per_second" not in b or "threads:" not in name:
            continue
        op = name.split("/")[0].replace("BM_ember_", "")
        t = name.split("threads:")[1].split("/")[0]
        g = b["bytes_per_second"] / 1e9
        tb = twin(name)
        tg = tb["bytes_per_second"] / 1e9 if tb else None
        print(f"| {op} | {t} | {g:.1f} | {f'{tg:.1f}' if tg else '-'} | {ratio(g, tg)} |")

    print("\n| per-op overhead | threads | ember ns | LibTorch ns | LibTorch / ember |")
    print("|---|---|---|---|---|")
    for name, b in r.items():
        if not name.startswith("BM_ember_") or not any(k in name for k in ("1elem", "fwd_bwd")):
            continue
        case = name.split("/")[0].replace("BM_ember_", "")
        t = name.split("threads:")[1].split("/")[0]
        per = 3 if "fwd_bwd" in case else 1
        e = ns(b) / per
        tb = twin(name)
        tv = ns(tb) / per if tb else None
        print(f"| {case} | {t} | {e:.0f} | {f'{tv:.0f}' if tv else '-'} | {ratio(tv, e)} |")

    def timed(prefix):
        """(case, threads, ember ms, LibTorch ms or None) for every BM_ember_<prefix>* row."""
        for name, b in r.items():
            if name.startswith(f"BM_ember_{prefix}"):
                tb = twin(name)
                yield (name.split("/")[0].replace(f"BM_ember_{prefix}", ""),
                       name.split("threads:")[1].split("/")[0], ns(b) / 1e6, ns(tb) / 1e6 if tb else None)

    def cell(v):
        return f"{v:.3g}" if v else "-"

    print("\n| layer (shape) | pass | threads | ember ms | LibTorch ms | LibTorch / ember |")
    print("|---|---|---|---|---|---|")
    for case, t, e, tv in timed("layer_"):
        shape, _, kind = case.rpartition("_")
        kind = "forward + backward" if kind == "fwdbwd" else "forward"
        print(f"| {shape} | {kind} | {t} | {cell(e)} | {cell(tv)} | {ratio(tv, e)} |")

    print("\n| model | threads | ember ms | LibTorch ms | LibTorch / ember |")
    print("|---|---|---|---|---|")
    for model, t, e, tv in timed("train_"):
        print(f"| {model} | {t} | {cell(e)} | {cell(tv)} | {ratio(tv, e)} |")

    print("\n| kernel (one image; flat convolutions: 16 images) | ember us | rate |")
    print("|---|---|---|")
    for name, b in r.items():
        if not any(name.startswith(f"BM_ember_{k}/") for k in ("im2col", "col2im", "conv_flat", "conv_flat_wgrad")):
            continue
        rate = (f"{b['bytes_per_second'] / 1e9:.1f} GB/s" if "bytes_per_second" in b
                else f"{b['GFLOPs'] / 1e9:.1f} GFLOP/s" if "GFLOPs" in b else "-")
        print(f"| {name.replace('BM_ember_', '')} | {ns(b) / 1e3:.1f} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
