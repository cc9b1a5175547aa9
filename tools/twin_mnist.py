#!/usr/bin/python3
"""The PyTorch twin of ember-mnist's recipes, for docs/examples.md's side-by-side figures.

Same architecture and PyTorch-default initialisation, same optimizer, schedule (stepped per batch),
batch size, epochs, normalisation (per-channel mean and std of the training images) and dropout as
examples/mnist/main.cpp; prints per-epoch lines and `test_accuracy=` like the ember program.
Debian's python3-torch is importable only from the system python3:

    /usr/bin/python3 tools/twin_mnist.py --data data/fashion-mnist --model cnn --threads 2

With --evaluate FILE it instead loads a model that ember-mnist saved (safetensors, strict
load_state_dict with PyTorch's names) and prints its test accuracy in PyTorch, which must equal the
`test_accuracy=` ember printed.
"""
import argparse
import gzip
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

RECIPES = {  # keep in step with examples/mnist/main.cpp
    "cnn": dict(epochs=5, batch_size=64, lr=2e-3, optimizer="adam", schedule="onecycle"),
    "mlp": dict(epochs=10, batch_size=128, lr=1e-3, optimizer="adam", schedule="cosine"),
    "lenet": dict(epochs=5, batch_size=64, lr=0.05, optimizer="sgd", schedule="cosine"),
}


def make_model(name, channels, size, classes):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 512), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, classes))
    if name == "cnn":
        side = size // 4
        return nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, classes))
    if name == "lenet":
        side = (size // 2 - 4) // 2
        return nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, classes))
    raise SystemExit(f"unknown model {name}")


def read_idx(path):
    for candidate in (path, path + ".gz", path.replace("-idx", ".idx"), path.replace("-idx", ".idx") + ".gz"):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(candidate, "rb") as f:
                data = f.read()
            ndim = data[3]
            dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise SystemExit(f"{path}: not found")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--model", default="cnn", choices=sorted(RECIPES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--evaluate", metavar="FILE", help="test accuracy of a model ember-mnist saved")
    args = ap.parse_args()
    r = dict(RECIPES[args.model])
    if args.epochs:
        r["epochs"] = args.epochs
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def load(prefix):
        x = read_idx(os.path.join(args.data, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(os.path.join(args.data, f"{prefix}-labels-idx1-ubyte"))
        return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))

    xtr, ytr = load("train")
    xte, yte = load("t10k")
    scaled = xtr.double() / 255
    mean, std = scaled.mean().item(), scaled.std(unbiased=False).item()

    def prepare(x):
        return ((x.float() / 255) - mean) / std

    if args.evaluate:
        import sys
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_torch_refs import st_read
        tensors, meta = st_read(args.evaluate)
        model = make_model(meta["ember.model"], 1, xtr.shape[-1], 10)
        model.load_state_dict(tensors, strict=True)
        model.eval()
        mean, std = float(meta["ember.mean"]), float(meta["ember.std"])
        with torch.no_grad():
            correct = sum((model(prepare(xte[i:i + 500])).argmax(1) == yte[i:i + 500]).sum().item()
                          for i in range(0, len(xte), 500))
        print(f"pytorch_test_accuracy={correct / len(xte):.4f} (ember saved {meta['ember.test_accuracy']})")
        return

    model = make_model(args.model, 1, xtr.shape[-1], 10)
    if r["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=0.9)
    batches = math.ceil(len(xtr) / r["batch_size"])
    total = r["epochs"] * batches
    sched = None
    if r["schedule"] == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=total)
    elif r["schedule"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    print(f"twin_mnist: torch {torch.__version__}, {args.model}, {r}, {args.threads} threads")
    gen = torch.Generator().manual_seed(args.seed)
    train_time = 0.0
    for epoch in range(r["epochs"]):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(xtr), generator=gen)
        loss_sum, correct = 0.0, 0
        for b in range(batches):
            idx = order[b * r["batch_size"]:(b + 1) * r["batch_size"]]
            x, y = prepare(xtr[idx]), ytr[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched:
                sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        seconds = time.perf_counter() - start
        train_time += seconds
        model.eval()
        with torch.no_grad():
            test_correct = sum((model(prepare(xte[i:i + 500])).argmax(1) == yte[i:i + 500]).sum().item()
                               for i in range(0, len(xte), 500))
        acc = test_correct / len(xte)
        print(f"epoch {epoch + 1}/{r['epochs']}: train loss {loss_sum / len(xtr):.4f} "
              f"acc {100 * correct / len(xtr):.2f}% | test acc {100 * acc:.2f}% | {seconds:.1f} s", flush=True)
    print(f"test_accuracy={acc:.4f}")
    print(f"train_time_s={train_time:.1f}")


if __name__ == "__main__":
    main()
