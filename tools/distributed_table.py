#!/usr/bin/env python3
"""The tables of docs/distributed.md from scripts/bench-distributed.sh's JSON files (medians over
the rounds): training steps per set-up and ember's all_reduce between 2 ranks.

    python3 tools/distributed_table.py DIR   # DIR holds one-*.json, two-threads-*.json, two-ranks-*.json
"""
import glob
import json
import os
import statistics
import sys


def load(pattern):
    runs = {}
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            runs.setdefault(b["name"], []).append(b)
    return data.get("context", {}), runs


def median(runs, key):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else float("nan")


def main(directory):
    context, one = load(os.path.join(directory, "one-*.json"))
    _, two_threads = load(os.path.join(directory, "two-threads-*.json"))
    _, two_ranks = load(os.path.join(directory, "two-ranks-*.json"))
    print(f"CPU: {context.get('num_cpus', '?')} x {context.get('mhz_per_cpu', '?')} MHz; "
          f"date {context.get('date', '?')}\n")
    print("| model | buckets | 1 process, 1 thread | 1 process, 2 threads | 2 ranks of 1 thread | "
          "2 ranks / 1 thread | all-reduce alone | exposed | hidden | overlapped |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in one:
        model = name.split("/")[0].replace("BM_ddp_train_", "")
        bucket = name.split("bucket_kb:")[1].split("/")[0]
        twin = name.replace("threads:1", "threads:2")
        s1 = median(one[name], "items_per_second")
        s2t = median(two_threads.get(twin, []), "items_per_second")
        s2r = median(two_ranks.get(name, []), "items_per_second")
        ranks = two_ranks.get(name, [])
        print(f"| {model} | {int(bucket) // 1024 if int(bucket) >= 1024 else bucket}"
              f"{' MiB' if int(bucket) >= 1024 else ' KiB'} | {s1:,.0f}/s | {s2t:,.0f}/s | {s2r:,.0f}/s | "
              f"{s2r / s1:.2f}x | {median(ranks, 'allreduce_ms'):.2f} ms | {median(ranks, 'exposed_ms'):.2f} ms | "
              f"{100 * median(ranks, 'hidden_share'):.0f}% | {100 * median(ranks, 'overlap_share'):.0f}% |")
    _, allreduce = load(os.path.join(directory, "allreduce.json"))
    if allreduce:
        print("\n| bytes | ember all_reduce, 2 ranks | bus bandwidth |")
        print("|---|---|---|")
        for name, runs in allreduce.items():
            size = int(name.split("bytes:")[1].split("/")[0])
            print(f"| {size:,} | {median(runs, 'real_time'):.1f} us | {median(runs, 'bus_GBps'):.2f} GB/s |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
