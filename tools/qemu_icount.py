#!/usr/bin/env python3
"""Counts the aarch64 instructions the NEON and scalar kernel tables execute per GEMM flop and
per element, under qemu-user, where speed cannot be measured.

Debian's qemu-user (7.2) ships without TCG plugins, so instead of the insn plugin this reads
qemu's own logs: `-d in_asm` prints every translated block with its instructions, and
`-d exec,nochain` prints every block executed (chaining off, so none is skipped); the sum over
executions of the block's length is the executed instruction count. Each case runs with 1 and 3
repetitions and the difference, halved, is one repetition: start-up and set-up cancel.

  tools/qemu_icount.py [BUILD_DIR]        default build-aarch64 (scripts/test-aarch64.sh)
Prints a Markdown table (docs/benchmarks.md, "aarch64 instruction counts").
"""
import os
import re
import subprocess
import sys

# (probe arguments, work per repetition, unit, (qemu CPU model, EMBER_ISA) pairs)
FLOAT = (("max", "scalar"), ("max", "neon"))
INT8 = (("max", "scalar"), ("max", "neon"), ("cortex-a76", "neon"), ("cortex-a53", "neon"))
CASES = [
    ("gemm", 96, 2 * 96**3, "flop", FLOAT),    # the lean path: A and B read in place
    ("gemm", 256, 2 * 256**3, "flop", FLOAT),  # the blocked path: packed panels
    ("int8", 96, 2 * 96**3, "op", INT8),       # smmla (max), sdot (A76), widening (A53)
    ("exp", 4096, 4096, "element", FLOAT),
    ("tanh", 4096, 4096, "element", FLOAT),
    ("gelu", 4096, 4096, "element", FLOAT),
    ("sigmoid", 4096, 4096, "element", FLOAT),
    ("relu", 4096, 4096, "element", FLOAT),
]

TB_START = re.compile(r"^IN:")
INSN = re.compile(r"^0x([0-9a-f]+):")
EXEC = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")


def count(probe, cpu, isa, what, n, reps):
    env = dict(os.environ, EMBER_ISA=isa)
    cmd = ["qemu-aarch64", "-L", "/", "-cpu", cpu, "-d", "in_asm,exec,nochain", probe, what, str(n), str(reps)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    sizes = {}  # block start pc -> instructions
    executed = 0
    current = None
    for line in proc.stderr:
        if TB_START.match(line):
            current = None
            continue
        m = INSN.match(line)
        if m:
            if current is None:
                current = int(m.group(1), 16)
                sizes[current] = 0
            sizes[current] += 1
            continue
        m = EXEC.match(line)
        if m:
            current = None
            executed += sizes.get(int(m.group(1), 16), 0)
    out = proc.stdout.read()
    if proc.wait() != 0:
        sys.exit(f"qemu_icount: {' '.join(cmd)} failed")
    return executed, out.split("\n")[0]


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build-aarch64"
    probe = os.path.join(build, "bench", "ember-kernel-probe")
    if not os.path.exists(probe):
        sys.exit(f"qemu_icount: {probe} not found (scripts/test-aarch64.sh builds it)")
    print("| kernel | work per rep | CPU model | table | instructions per unit |")
    print("|---|---|---|---|---|")
    for what, n, work, unit, runs in CASES:
        for cpu, isa in runs:
            one, tables = count(probe, cpu, isa, what, n, 1)
            three, _ = count(probe, cpu, isa, what, n, 3)
            per_rep = (three - one) / 2
            print(f"| {what} {n} | {work} {unit}s | {cpu} | {tables} | {per_rep / work:.3f} per {unit} |",
                  flush=True)

if __name__ == "__main__":
    main()
