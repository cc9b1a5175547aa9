#!/usr/bin/env python3
"""Predicted data-parallel scaling of ember's example models beyond one machine.

The cost model of docs/distributed.md: an all-reduce of n bytes over p processes costs

    ring:                       2 (p - 1) a + 2 (p - 1) / p * n / B
    recursive halving/doubling: 2 log2(p) a + 2 (p - 1) / p * n / B   (Rabenseifner)

with a the per-message latency and B the link bandwidth. Both move the same bytes; MPI libraries
use the second for small messages and many processes, where the ring's 2 (p - 1) latencies
dominate. Gradients become ready at an even rate over backward (reverse layer order); each bucket
of `bucket` bytes is all-reduced as soon as it is full and the one before it is done, by the
network while backward goes on (so the last bucket is always exposed). A step then takes

    compute + exposed,   exposed = (when the last bucket's all-reduce ends) - (end of backward)

and weak-scaling efficiency is compute / (compute + exposed). For each model, network and process
count it prints the efficiency with the bucket size (from a list) that minimises the step.

Inputs are measurements of this repository (docs/distributed.md says where each comes from):
per-rank step time at 1 thread, the backward share of it, and the gradient bytes.

    python3 tools/distributed_cost_model.py            # the tables of docs/distributed.md
    python3 tools/distributed_cost_model.py --check    # the model against this machine's run
"""
import argparse
import math

# name: (gradient bytes, step seconds at 1 thread, samples per rank per step)
MODELS = {
    "ember-mnist cnn": (421_738 * 4, 0.0320, 64),
    "ember-mnist mlp": (669_706 * 4, 0.00395, 128),
    "ember-cifar10 resnet": (None, None, 128),  # filled from the command line or the defaults below
}
BACKWARD_SHARE = 2 / 3  # of a step: backward costs about twice the forward pass
NETWORKS = {
    # name: (latency seconds per message, bandwidth bytes/s)
    "10 Gbit/s Ethernet (TCP)": (25e-6, 10e9 / 8),
    "100 Gbit/s InfiniBand (RDMA)": (2e-6, 100e9 / 8),
}
PROCESSES = [8, 64, 512]
BUCKETS = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 25 << 20]


def allreduce_seconds(n, p, latency, bandwidth, algorithm):
    steps = 2 * (p - 1) if algorithm == "ring" else 2 * math.ceil(math.log2(p))
    return steps * latency + 2 * (p - 1) / p * n / bandwidth


def exposed_seconds(total, backward, bucket, p, latency, bandwidth, algorithm):
    """Communication left after backward: buckets ready at an even rate, all-reduced in order."""
    count = max(1, math.ceil(total / bucket))
    done = 0.0
    for i in range(count):
        size = min(bucket, total - i * bucket)
        ready = backward * (i + 1) / count
        done = max(done, ready) + allreduce_seconds(size, p, latency, bandwidth, algorithm)
    return max(0.0, done - backward)


def best(total, step, p, latency, bandwidth, algorithm):
    backward = BACKWARD_SHARE * step
    options = []
    for bucket in BUCKETS:
        exposed = exposed_seconds(total, backward, bucket, p, latency, bandwidth, algorithm)
        options.append((step / (step + exposed), bucket))
    return max(options)


def size_label(b):
    return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resnet-params", type=int, default=308_650)
    parser.add_argument("--resnet-step", type=float, default=0.354, help="seconds per step, batch 128, 1 thread")
    parser.add_argument("--check", action="store_true",
                        help="predict this machine's 2-rank run (shared memory) instead of the cluster tables")
    parser.add_argument("--latency", type=float, default=1.0e-6, help="for --check: seconds per message")
    parser.add_argument("--bandwidth", type=float, default=6.0e9, help="for --check: bytes/s")
    args = parser.parse_args()
    MODELS["ember-cifar10 resnet"] = (args.resnet_params * 4, args.resnet_step, 128)

    if args.check:
        print("| model | all-reduce of all gradients, predicted (2 ranks) |")
        print("|---|---|")
        for name, (total, step, _) in MODELS.items():
            t = allreduce_seconds(total, 2, args.latency, args.bandwidth, "ring")
            print(f"| {name} | {t * 1e3:.2f} ms |")
        return

    for algorithm in ("ring", "halving-doubling"):
        print(f"\n### {algorithm} all-reduce\n")
        header = "| model | network | " + " | ".join(f"{p} processes" for p in PROCESSES) + " |"
        print(header)
        print("|" + "---|" * (2 + len(PROCESSES)))
        for name, (total, step, _) in MODELS.items():
            for net, (latency, bandwidth) in NETWORKS.items():
                cells = []
                for p in PROCESSES:
                    eff, bucket = best(total, step, p, latency, bandwidth, algorithm)
                    cells.append(f"{100 * eff:.0f}% ({size_label(bucket)})")
                print(f"| {name} | {net} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
