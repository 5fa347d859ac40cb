"""Which channels-last convolutions crash oneDNN's CPU kernels (a reproduction to report upstream).

Each case runs in a fresh process (a crash must not end the probe, and ``ONEDNN_MAX_CPU_ISA`` is read
once per process): a ``Conv2d(cin, cout, k, stride)`` with its weight and input in the channels-last
layout, three forward/backward passes, one thread unless ``--threads``. The part probed is the forward
pass, the weight gradient (``.sum().backward()``) or the input gradient alone (``autograd.grad`` w.r.t.
the input, as the attacks take it). Exit codes: 0 ok, -11 SIGSEGV, -6 SIGABRT, "hang" past ``--timeout``.

    .venv/bin/python benchmarks/channels_last_probe.py --isa AVX2 default

``default`` is the CPU's own instruction set; ``AVX2`` restricts oneDNN to its AVX2 kernels (what an
AVX2-only CPU runs). Findings with torch 2.14.1 (oneDNN 3.12): docs/performance.md, "channels-last crash".
"""
from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys

CASE = """
import sys, torch
cin, cout, k, stride, n, part, threads = (int(a) if a.isdigit() else a for a in sys.argv[1:])
torch.set_num_threads(threads); torch.manual_seed(0)
conv = torch.nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False).to(memory_format=torch.channels_last)
x = torch.rand(n, cin, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_(part == "input_grad")
for _ in range(3):
    if part == "forward":
        conv(x)
    elif part == "weight_grad":
        conv(x).sum().backward()
    else:
        torch.autograd.grad(conv(x).sum(), x)
"""


def probe(isa: str, cin: int, cout: int, k: int, stride: int, n: int, part: str, threads: int, timeout: int) -> str:
    env = dict(os.environ)
    if isa != "default":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    args = [sys.executable, "-c", CASE, *map(str, (cin, cout, k, stride, n, part, threads))]
    try:
        rc = subprocess.run(args, env=env, capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return "hang"
    return "ok" if rc == 0 else (signal.Signals(-rc).name if rc < 0 else f"exit {rc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", nargs="+", default=["AVX2", "default"], help="ONEDNN_MAX_CPU_ISA values")
    ap.add_argument("--cin", nargs="+", type=int, default=[1, 2, 4, 7, 8, 9, 16])
    ap.add_argument("--kernel", nargs="+", type=int, default=[1, 3])
    ap.add_argument("--stride", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--parts", nargs="+", default=["forward", "weight_grad", "input_grad"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=60, help="seconds before a case counts as a hang")
    a = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {a.threads} thread(s), batch {a.batch}, 32x32 inputs, cout = 2 cin")
    print("isa\tcin\tkernel\tstride\t" + "\t".join(a.parts))
    for isa, k, s, cin in itertools.product(a.isa, a.kernel, a.stride, a.cin):
        res = [probe(isa, cin, 2 * cin, k, s, a.batch, p, a.threads, a.timeout) for p in a.parts]
        print(f"{isa}\t{cin}\t{k}\t{s}\t" + "\t".join(res), flush=True)


if __name__ == "__main__":
    main()
