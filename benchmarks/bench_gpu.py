"""One-run GPU benchmark of the fused DGMN op against the reference op and the baselines.

Checks first, then times (issue #6):

1. device ceilings: device-to-device copy bandwidth and a bf16 matmul rate (the two floors);
2. correctness of the fused op at the benchmark size, bf16 and fp32, values and gradients
   (features, walks, weights) against the reference on upcast inputs, plus a poisoned-output
   check;
3. op level, B=2, C=512, S=5 (rates 1, 6, 12, 24, 36), G=4, K=9, at 97×97 and 129×257:
   forward, forward+backward and peak extra memory of the fused op, the reference op (also
   ``memory_efficient``), the whole ``dynamic_message_passing`` call, the DGMN module (fused
   and reference), the Non-local block (flash SDPA, contiguous q/k/v), the bare SDPA core,
   CCNet, ASPP and ``deform_conv2d`` (512→512, 3×3, DCNv2 mask);
4. a small sweep of kernel blockings for the fused op, and the compiled kernels' registers and
   spills;
5. FCN-R101-D8 inference at 1×3×1024×2048 with no context module, with DGMN and with
   Non-local; training-step throughput (images/s) at 769×769 crops.

Timing: CUDA events around every repetition after warm-up; the median over ≥ ``--min-reps``
repetitions (up to ``--budget`` seconds per measurement), rotating among several sets of
random inputs whose total size exceeds twice the L2 cache (so repeated runs do not measure the
cache); op-level rows are also timed as CUDA-graph replays (launch overhead removed). Peak
extra memory: ``torch.cuda.max_memory_allocated()`` during one call minus the memory held
before it (inputs and parameters excluded; outputs, saved tensors, gradients and temporaries
included).

Run on a GPU machine from the repository root::

    python benchmarks/bench_gpu.py --out benchmarks/results/h100.json

Check the code paths on a CPU (tiny sizes, fused op in Triton's interpreter, no targets)::

    python benchmarks/bench_gpu.py --dry-run

Without CUDA (and without ``--dry-run``) it prints one line and exits with status 2.

This file parses the flags and runs the sections in order, writing the JSON after each; the
sections live in ``benchmarks/gpu/`` (one module per thing measured, see its ``__init__``).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script or loaded by path: make `benchmarks` importable
    _ROOT = str(Path(__file__).resolve().parents[1])
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

import torch

from benchmarks.gpu.baselines import baseline_rows
from benchmarks.gpu.ceilings import measure_ceilings
from benchmarks.gpu.checks import check_correctness
from benchmarks.gpu.common import (
    Row,
    Settings,
    dry_run_settings,
    environment,
    short_error,
    size_label,
    write_report,
)
from benchmarks.gpu.models import model_rows
from benchmarks.gpu.op import op_rows
from benchmarks.gpu.report import evaluate_targets, print_summary, traffic_model
from benchmarks.gpu.sweep import kernel_resources, sweep_rows

SECTIONS = ("correctness", "ops", "sweep", "models")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_gpu.json"))
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, fused op in Triton's interpreter: proves the "
                             "code paths, measures nothing meaningful")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(SECTIONS))
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--min-reps", type=int, default=10)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="models in contiguous (NCHW) memory format")
    parser.add_argument("--traceback", action="store_true")
    return parser.parse_args(argv)


def _correctness(s: Settings) -> list[dict[str, Any]]:
    try:
        checks = check_correctness(s)
    except Exception as error:
        checks = [{"check": "error", "error": short_error(error), "passed": False}]
        traceback.print_exc()
    for check in checks:
        print(f"    {'ok  ' if check['passed'] else 'FAIL'} {check}")
    return checks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        s = dry_run_settings()
    else:
        if not torch.cuda.is_available():
            print("bench_gpu: no CUDA device available; nothing measured. Run it on a GPU "
                  "machine, or use --dry-run to check the code paths on a CPU.")
            return 2
        s = Settings(device=torch.device("cuda"), dtype=torch.bfloat16, budget_s=args.budget,
                     min_reps=args.min_reps, train_batch=args.train_batch,
                     graphs=not args.no_graphs, channels_last=not args.no_channels_last)
        torch.backends.cudnn.benchmark = True
    s.tracebacks = args.traceback
    torch.manual_seed(0)
    started = time.perf_counter()
    env = environment(s)
    print(f"bench_gpu on {env['card']}: torch {env['torch']}, triton {env['triton']}, "
          f"cuda {env['cuda']}, {env['date']}")
    report: dict[str, Any] = {"environment": env, "settings": s.record()}
    report["ceilings"] = measure_ceilings(s)
    print(f"  ceilings: {report['ceilings']}")
    element = torch.tensor([], dtype=s.dtype).element_size()
    report["traffic_model"] = {size_label(h, w): {k: round(v, 2) for k, v in
                                                  traffic_model(s, h, w, element).items()}
                               for h, w in s.sizes}
    rows: list[Row] = []

    def save() -> None:
        """Write what is measured so far, so that a run cut short still leaves data."""
        report["rows"] = [asdict(r) for r in rows]
        report["wall_s"] = round(time.perf_counter() - started, 1)
        write_report(report, args.out)

    if "correctness" not in args.skip:
        print("  correctness")
        report["correctness"] = _correctness(s)
        save()
    if "ops" not in args.skip:
        for height, width in s.sizes:
            print(f"  op level {size_label(height, width)}")
            rows += op_rows(s, height, width) + baseline_rows(s, height, width)
        report["kernels"] = kernel_resources()
        save()
    if "models" not in args.skip:
        print("  models")
        rows += model_rows(s)
        save()
    if "sweep" not in args.skip:
        print("  kernel blocking sweep")
        report["sweep"] = sweep_rows(s)
    report["targets"] = evaluate_targets(rows, s)
    save()
    print_summary(report, rows)
    failed = [c for c in report.get("correctness", []) if not c["passed"]]
    print(f"correctness: {'FAILED ' + str(len(failed)) if failed else 'all passed'}; "
          f"wrote {args.out} in {report['wall_s']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
