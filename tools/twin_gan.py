#!/usr/bin/python3
"""The PyTorch twin of ember-gan, for docs/examples.md's side-by-side quality and speed figures.

The same DCGAN (LibTorch's example: transposed-convolution generator 100 -> 256 -> 128 -> 64 -> 1,
convolutional discriminator with LeakyReLU 0.2 and batch norm), the same initialisation (N(0, 0.02)
convolutions, N(1, 0.02) batch-norm scales), loss (BCE on logits, real labels drawn from
[0.8, 1)), optimizers (Adam lr 2e-4, beta1 0.5), batch size 64 and data scaling ([-1, 1]) as
examples/gan/main.cpp. After each epoch it writes the generator's images for a fixed noise batch
(5,000 by default) as safetensors, and, given --ember-gan, scores them with ember-gan --evaluate,
so both programs are measured by the same classifier and the same code. Debian's python3-torch
is importable only from the system python3:

    /usr/bin/python3 tools/twin_gan.py --data data/fashion-mnist --epochs 5 --threads 2 \\
        --out out/twin-gan --ember-gan build/examples/ember-gan --classifier out/gan/classifier/model.safetensors
"""
import argparse
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_torch_refs import st_write  # noqa: E402
from twin_mnist import read_idx  # noqa: E402

NOISE = 100


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(NOISE, 256, 4, bias=False)
        self.batch_norm1 = nn.BatchNorm2d(256)
        self.conv2 = nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, bias=False)
        self.batch_norm2 = nn.BatchNorm2d(128)
        self.conv3 = nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1, bias=False)
        self.batch_norm3 = nn.BatchNorm2d(64)
        self.conv4 = nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1, bias=False)

    def forward(self, z):
        x = F.relu(self.batch_norm1(self.conv1(z)))
        x = F.relu(self.batch_norm2(self.conv2(x)))
        x = F.relu(self.batch_norm3(self.conv3(x)))
        return torch.tanh(self.conv4(x))


def discriminator():
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, stride=2, padding=1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 256, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2),
        nn.Conv2d(256, 1, 3, bias=False), nn.Flatten(0))


def dcgan_init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batches", type=int, default=0, help="batches per epoch (0: all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--out", default="out/twin-gan")
    ap.add_argument("--ember-gan", help="ember-gan binary to score the samples with (--evaluate)")
    ap.add_argument("--classifier", help="passed to ember-gan --evaluate")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    x = torch.from_numpy(read_idx(os.path.join(args.data, "train-images-idx3-ubyte")).copy()).unsqueeze(1)
    images = x.float() / 255 * 2 - 1  # Normalize(0.5, 0.5), as ember-gan's data set
    g, d = Generator(), discriminator()
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = math.ceil(len(images) / 64)
    if args.batches:
        batches = min(batches, args.batches)
    fixed = torch.randn(args.samples, NOISE, 1, 1, generator=torch.Generator().manual_seed(args.seed + 2000))
    print(f"twin_gan: torch {torch.__version__}, {args.threads} threads, {batches} batches per epoch", flush=True)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(images))
        d_sum = g_sum = 0.0
        for b in range(batches):
            real = images[order[b * 64:(b + 1) * 64]]
            n = len(real)
            d.zero_grad()
            d_loss_real = F.binary_cross_entropy_with_logits(d(real), torch.empty(n).uniform_(0.8, 1.0))
            d_loss_real.backward()
            fake = g(torch.randn(n, NOISE, 1, 1))
            d_loss_fake = F.binary_cross_entropy_with_logits(d(fake.detach()), torch.zeros(n))
            d_loss_fake.backward()
            opt_d.step()
            g.zero_grad()
            g_loss = F.binary_cross_entropy_with_logits(d(fake), torch.ones(n))
            g_loss.backward()
            opt_g.step()
            d_sum += d_loss_real.item() + d_loss_fake.item()
            g_sum += g_loss.item()
        seconds = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{args.epochs}: D loss {d_sum / batches:.4f} | G loss {g_sum / batches:.4f} | "
              f"{seconds:.1f} s", flush=True)
        g.eval()
        with torch.no_grad():
            samples = torch.cat([g(fixed[i:i + 500]) for i in range(0, len(fixed), 500)])
        g.train()
        path = os.path.join(args.out, f"twin_samples_epoch_{epoch + 1}.safetensors")
        st_write(path, {"samples": samples})
        if args.ember_gan:
            cmd = [args.ember_gan, "--evaluate", path, "--data", args.data, "--out", args.out]
            if args.classifier:
                cmd += ["--classifier", args.classifier]
            result = subprocess.run(cmd, capture_output=True, text=True, check=True)
            print(result.stdout, end="", flush=True)
        print(f"epoch_seconds={seconds:.1f}", flush=True)


if __name__ == "__main__":
    main()
