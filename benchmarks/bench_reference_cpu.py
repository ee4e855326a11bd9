"""CPU timings of the reference dynamic message-passing op (and the whole DGMN module).

Usage: python benchmarks/bench_reference_cpu.py [--batch 2] [--size 97] [--reps 3] [--json F]
Prints a table with the machine, versions and date; medians over ``--reps`` runs after one
warm-up, fresh random inputs each repetition.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from dgmn.nn.dgmn import DGMN
from dgmn.ops import dynamic_message_passing

RATES = (1, 6, 12, 24, 36)


def op_inputs(batch: int, channels: int, size: int, groups: int, grad: bool) -> dict:
    s, k = len(RATES), 9
    tensors = {
        "features": torch.randn(batch, channels, size, size),
        "filters": torch.randn(batch, s, groups, k, size, size),
        "affinity_logits": torch.randn(batch, s, k, size, size),
        "walks": 4 * torch.randn(batch, s, k, 2, size, size),
    }
    return {n: t.requires_grad_(grad) for n, t in tensors.items()}


def median_seconds(step: Callable[[], None], reps: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--size", type=int, default=97)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    betas = torch.ones(len(RATES))
    shape = (args.batch, args.channels, args.size, args.groups)

    def op(grad: bool, memory_efficient: bool = False) -> Callable[[], None]:
        def step() -> None:
            t = op_inputs(*shape, grad=grad)
            with torch.set_grad_enabled(grad):
                out = dynamic_message_passing(t["features"], RATES, betas, filters=t["filters"],
                                              affinity_logits=t["affinity_logits"],
                                              walks=t["walks"],
                                              memory_efficient=memory_efficient)
            if grad:
                out.backward(torch.randn_like(out))
        return step

    module = DGMN(args.channels, rates=RATES, groups=args.groups)

    def block(grad: bool) -> Callable[[], None]:
        def step() -> None:
            x = torch.randn(args.batch, args.channels, args.size, args.size, requires_grad=grad)
            with torch.set_grad_enabled(grad):
                out = module(x)
            if grad:
                out.backward(torch.randn_like(out))
        return step

    rows = [
        ("reference op", "fwd", median_seconds(op(False), args.reps)),
        ("reference op", "fwd+bwd", median_seconds(op(True), args.reps)),
        ("reference op, memory_efficient", "fwd+bwd", median_seconds(op(True, True), args.reps)),
        ("DGMN module (DA+DW+DS)", "fwd", median_seconds(block(False), args.reps)),
        ("DGMN module (DA+DW+DS)", "fwd+bwd", median_seconds(block(True), args.reps)),
    ]
    info = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "shape": f"B={args.batch} C={args.channels} {args.size}x{args.size} S={len(RATES)} "
                     f"G={args.groups} K=9 fp32"}
    print(" | ".join(f"{k}: {v}" for k, v in info.items()))
    print(f"{'what':34s} {'pass':8s} {'median s':>9s}")
    for name, kind, seconds in rows:
        print(f"{name:34s} {kind:8s} {seconds:9.3f}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=2)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
