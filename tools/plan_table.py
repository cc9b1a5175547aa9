#!/usr/bin/env python3
"""Turns Google Benchmark JSON from ember-bench-plans into the tables of docs/deploy.md: the size
of each example model's float and int8 plans (steps, arena, file) and the time of a run beside
the model's forward, with the ratios.

    build/bench/ember-bench-plans --benchmark_format=json > plans.json
    python3 tools/plan_table.py plans.json
"""
import json
import re
import sys

MODELS = {
    "mnist_mlp": "MNIST MLP 784-512-512-10",
    "mnist_lenet": "LeNet-5",
    "mnist_cnn": "MNIST CNN (batch norm folded)",
    "cifar_resnet": "CIFAR ResNet-8, width 32",
    "dcgan_generator": "DCGAN generator (ember-gan's)",
    "resnet18_stage4": "ResNet-18 stage 4 (two blocks, 512 channels, 7x7)",
}


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        data = json.load(f)
    runs = {}
    for b in data["benchmarks"]:
        m = re.match(r"BM_plan_(\w+?)_(forward|float|int8first|int8)/threads:(\d+)/batch:(\d+)", b["name"])
        if m:
            runs[(m[1], m[2], int(m[3]), int(m[4]))] = b
    cpu = data.get("context", {})
    print(f"<!-- {cpu.get('date', '')}, {cpu.get('num_cpus', '?')} CPUs -->")
    print("| model | batch | float plan: steps, arena, file | int8 plan: steps, arena, file | int8, first conv float |")
    print("|---|---|---|---|---|")
    batches = lambda model: sorted({key[3] for key in runs if key[0] == model})
    for model, title in MODELS.items():
        for batch in batches(model):
            cells = []
            for kind in ("float", "int8", "int8first"):
                b = runs.get((model, kind, 1, batch))
                cells.append("-" if b is None else
                             f"{int(b['steps'])}, {int(b['arena_bytes']):,} B, {int(b['file_bytes']):,} B")
            if cells != ["-"] * 3:  # the model was run (a filtered run may leave some out)
                print(f"| {title} | {batch} | {cells[0]} | {cells[1]} | {cells[2]} |")
    print()
    print("| model | batch | threads | forward | float plan | int8 plan | int8, first conv float | float plan / best int8 |")
    print("|---|---|---|---|---|---|---|---|")
    for model, title in MODELS.items():
        for batch in batches(model):
            for threads in (1, 2):
                t = {k: runs.get((model, k, threads, batch)) for k in ("forward", "float", "int8", "int8first")}
                if any(t[k] is None for k in ("forward", "float")):
                    continue
                us = {k: v["real_time"] for k, v in t.items() if v is not None}  # microseconds
                int8 = {k: f"{us[k]:.1f} us" if k in us else "-" for k in ("int8", "int8first")}
                ints = [us[k] for k in ("int8", "int8first") if k in us]
                ratio = f"{us['float'] / min(ints):.2f}x" if ints else "-"
                print(f"| {title} | {batch} | {threads} | {us['forward']:.1f} us | {us['float']:.1f} us | "
                      f"{int8['int8']} | {int8['int8first']} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv)
