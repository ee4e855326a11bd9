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
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import math
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dgmn.ops import dynamic_message_passing
from dgmn.ops.reference import aggregate_reference

RATES = (1, 6, 12, 24, 36)
KS = 3


# ----------------------------------------------------------------------------------------------
# Settings


@dataclass
class Settings:
    """Everything that differs between a GPU run and the CPU dry run."""

    device: torch.device
    dtype: torch.dtype
    batch: int = 2
    channels: int = 512
    groups: int = 4
    rates: tuple[int, ...] = RATES
    sizes: tuple[tuple[int, int], ...] = ((97, 97), (129, 257))
    image: tuple[int, int] = (1024, 2048)
    crop: int = 769
    train_batch: int = 2
    backbone: str = "resnet101"
    fcn_channels: int = 512
    min_reps: int = 10
    max_reps: int = 200
    warmup: int = 3
    budget_s: float = 1.0
    graphs: bool = True
    channels_last: bool = True
    sweep: bool = True
    extended: bool = True  # backward breakdown rows, both feature-gradient variants checked

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def dry_run_settings() -> Settings:
    return Settings(device=torch.device("cpu"), dtype=torch.float32, batch=1, channels=8,
                    groups=2, rates=(1, 2), sizes=((5, 6),), image=(32, 64), crop=33,
                    train_batch=2, backbone="resnet_tiny", fcn_channels=32, min_reps=1,
                    max_reps=1, warmup=0, budget_s=0.0, graphs=False, sweep=False,
                    extended=False)


# ----------------------------------------------------------------------------------------------
# Timing and memory


@dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    reps: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[int], Any], num_sets: int, s: Settings) -> Timing:
    """Median time of ``fn(i)`` (input set ``i % num_sets``), CUDA events per repetition."""
    for i in range(s.warmup):
        fn(i % num_sets)
    _sync(s.device)
    reps = s.min_reps
    if s.max_reps > s.min_reps:  # as many repetitions as fit the budget
        start = time.perf_counter()
        fn(0)
        _sync(s.device)
        estimate = max(time.perf_counter() - start, 1e-6)
        reps = int(min(max(s.budget_s / estimate, s.min_reps), s.max_reps))
    times: list[float] = []
    if s.cuda:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
        for i, (begin, end) in enumerate(events):
            begin.record()
            fn(i % num_sets)
            end.record()
        torch.cuda.synchronize(s.device)
        times = [begin.elapsed_time(end) for begin, end in events]
    else:
        for i in range(reps):
            start = time.perf_counter()
            fn(i % num_sets)
            times.append(1e3 * (time.perf_counter() - start))
    times.sort()
    return Timing(statistics.median(times), times[len(times) // 10],
                  times[min(len(times) - 1, (9 * len(times)) // 10)], reps)


def time_graphs(fn: Callable[[int], Any], num_sets: int, s: Settings) -> Timing | None:
    """Median replay time of CUDA graphs capturing ``fn(i)``, one graph per input set."""
    if not (s.cuda and s.graphs):
        return None
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for i in range(num_sets):  # warm up on a side stream (required before capture)
                fn(i)
        torch.cuda.current_stream().wait_stream(stream)
        pool = torch.cuda.graph_pool_handle()
        graphs = []
        keep = []
        for i in range(num_sets):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                keep.append(fn(i))
            graphs.append(graph)
        return time_calls(lambda i: graphs[i].replay(), num_sets, s)
    except Exception as error:  # capture is best effort: some ops are not capturable
        print(f"    (graph capture failed: {type(error).__name__}: {error})".splitlines()[0])
        return None
    finally:
        gc.collect()
        torch.cuda.empty_cache()


def peak_extra_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory allocated during ``fn()`` beyond what was allocated before, in MiB."""
    if device.type != "cuda":
        return None
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del result
    return peak / 2**20


def num_input_sets(bytes_per_set: int, device: torch.device) -> int:
    """Enough rotating input sets to exceed twice the L2 cache (2..8)."""
    if device.type != "cuda":
        return 1
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * 2**20)
    return int(min(max(math.ceil(2 * l2 / max(bytes_per_set, 1)), 2), 8))


def nbytes(obj: Any) -> int:
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(nbytes(v) for v in obj)
    return 0


# ----------------------------------------------------------------------------------------------
# Rows


@dataclass
class Row:
    section: str
    name: str
    size: str
    dtype: str
    fwd_ms: float | None = None
    fwd_bwd_ms: float | None = None
    fwd_graph_ms: float | None = None
    fwd_bwd_graph_ms: float | None = None
    fwd_mib: float | None = None
    fwd_bwd_mib: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _short_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]


@contextlib.contextmanager
def guarded(row: Row) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    except Exception as error:
        row.error = _short_error(error)
        print(f"    ! {row.name} {row.size}: {row.error}")
        if "--traceback" in sys.argv:
            traceback.print_exc()
    finally:
        row.extra["wall_s"] = round(time.perf_counter() - start, 2)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def measure_callable(row: Row, make_inputs: Callable[[], dict[str, Any]],
                     forward: Callable[[dict[str, Any]], Tensor], leaves: Sequence[str],
                     params: Sequence[Tensor], s: Settings, graphs: bool = True) -> None:
    """Fill ``row`` with forward / forward+backward times and memory of ``forward(inputs)``.

    ``leaves`` names the inputs that get gradients; ``params`` are module parameters that
    get gradients too. Backward uses ``torch.autograd.grad`` with a fixed random grad_out.
    """
    first = make_inputs()
    num_sets = num_input_sets(nbytes(first), s.device)
    sets = [first] + [make_inputs() for _ in range(num_sets - 1)]
    for inputs in sets:
        out = forward(inputs)
        inputs["_grad_out"] = torch.randn_like(out)
        del out

    def fwd(i: int) -> Tensor:
        with torch.no_grad():
            return forward(sets[i])

    def fwd_bwd(i: int) -> tuple[Tensor, ...]:
        inputs = sets[i]
        out = forward(inputs)
        wrt = [inputs[n] for n in leaves] + list(params)
        return torch.autograd.grad(out, wrt, inputs["_grad_out"])

    row.fwd_ms = time_calls(fwd, num_sets, s).median_ms
    timing = time_calls(fwd_bwd, num_sets, s)
    row.fwd_bwd_ms = timing.median_ms
    row.extra["reps"] = timing.reps
    row.extra["p10_p90_fwd_bwd_ms"] = [round(timing.p10_ms, 4), round(timing.p90_ms, 4)]
    if graphs:
        graph = time_graphs(fwd, num_sets, s)
        row.fwd_graph_ms = graph.median_ms if graph else None
        graph = time_graphs(fwd_bwd, num_sets, s)
        row.fwd_bwd_graph_ms = graph.median_ms if graph else None

    def fwd_train() -> Tensor:
        return forward(sets[0])  # grad enabled: keeps what backward needs

    row.fwd_mib = peak_extra_mib(fwd_train, s.device)
    row.fwd_bwd_mib = peak_extra_mib(lambda: fwd_bwd(0), s.device)


# ----------------------------------------------------------------------------------------------
# Inputs


def fractional_walks(shape: tuple[int, ...], scale: float, device: torch.device) -> Tensor:
    """Random walks (pixels) whose fractional parts avoid pixel borders (see the tests)."""
    whole = torch.round(scale * torch.randn(shape, device=device).abs())
    frac = 0.15 + 0.7 * torch.rand(shape, device=device)
    sign = torch.where(torch.rand(shape, device=device) < 0.5, -1.0, 1.0)
    return sign * (whole + frac)


def op_inputs(s: Settings, height: int, width: int, dtype: torch.dtype,
              requires_grad: bool = True) -> dict[str, Any]:
    """Random inputs of the aggregation core: features, walks, combined weights."""
    num_rates, k = len(s.rates), KS * KS
    dev = s.device
    features = torch.randn(s.batch, s.channels, height, width, device=dev).to(dtype)
    walks = fractional_walks((s.batch, num_rates, k, 2, height, width), 3.0, dev).to(dtype)
    logits = torch.randn(s.batch, num_rates, k, height, width, device=dev)
    filters = torch.randn(s.batch, num_rates, s.groups, k, height, width, device=dev)
    weights = (torch.softmax(logits, dim=2).unsqueeze(2) * filters).to(dtype)
    inputs = {"features": features, "walks": walks, "weights": weights}
    for tensor in inputs.values():
        tensor.requires_grad_(requires_grad)
    return inputs


# ----------------------------------------------------------------------------------------------
# 1. ceilings


def measure_ceilings(s: Settings) -> dict[str, float]:
    if not s.cuda:
        return {}
    result = {}
    src = torch.randn(2**28 // 2, device=s.device, dtype=torch.bfloat16)  # 256 MiB
    dst = torch.empty_like(src)
    timing = time_calls(lambda i: dst.copy_(src), 1, s)
    result["copy_GBps"] = 2 * nbytes(src) / (timing.median_ms * 1e-3) / 1e9
    small = torch.randn(2**22, device=s.device, dtype=torch.bfloat16)  # 8 MiB: L2-resident
    small_dst = torch.empty_like(small)

    def copies(i: int) -> None:  # 50 back-to-back copies, replayed as one graph
        for _ in range(50):
            small_dst.copy_(small)

    timing = time_graphs(copies, 1, s) or time_calls(copies, 1, s)
    result["l2_copy_GBps"] = 50 * 2 * nbytes(small) / (timing.median_ms * 1e-3) / 1e9
    a = torch.randn(8192, 8192, device=s.device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=s.device, dtype=torch.bfloat16)
    timing = time_calls(lambda i: a @ b, 1, s)
    result["bf16_matmul_TFLOPs"] = 2 * 8192**3 / (timing.median_ms * 1e-3) / 1e12
    a32 = torch.randn(4096, 4096, device=s.device)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        timing = time_calls(lambda i: a32 @ a32, 1, s)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    result["fp32_matmul_TFLOPs"] = 2 * 4096**3 / (timing.median_ms * 1e-3) / 1e12
    return {k: round(v, 1) for k, v in result.items()}


# ----------------------------------------------------------------------------------------------
# 2. correctness


def rel_error(got: Tensor, want: Tensor) -> float:
    if not torch.isfinite(got).all():
        return float("inf")
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def check_correctness(s: Settings) -> list[dict[str, Any]]:
    from dgmn.ops.triton import aggregate_fused
    from dgmn.ops.triton import fused as fused_module

    height, width = s.sizes[0]
    checks = []
    bounds = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
    from dgmn.ops.triton import kernel_config

    combos = [(torch.float32, "gather"), (torch.bfloat16, "gather")]
    if s.extended:
        combos += [(torch.float32, "scatter"), (torch.bfloat16, "scatter")]
    for dtype, feature_grad in combos:
        inputs = op_inputs(s, height, width, dtype)
        names = ("features", "walks", "weights")
        with kernel_config(feature_grad=feature_grad):
            out = aggregate_fused(*(inputs[n] for n in names), s.rates, KS)
            grad_out = torch.randn_like(out)
            grads = torch.autograd.grad(out, [inputs[n] for n in names], grad_out)
        # reference in fp32 (fp64 on CPU) on the very same values
        ref_dtype = torch.float64 if not s.cuda else torch.float32
        high = {n: inputs[n].detach().to(ref_dtype).requires_grad_() for n in names}
        ref = aggregate_reference(*(high[n] for n in names), s.rates, KS)
        ref_grads = torch.autograd.grad(ref, [high[n] for n in names], grad_out.to(ref_dtype))
        errors = {"out": rel_error(out, ref)}
        errors.update({n: rel_error(g, r) for n, g, r in zip(names, grads, ref_grads,
                                                             strict=True)})
        bound = bounds[dtype]
        checks.append({"check": f"fused_vs_reference ({feature_grad} feature grad)",
                       "dtype": str(dtype).removeprefix("torch."),
                       "size": f"{height}x{width}", "bound": bound,
                       "rel_errors": {k: float(f"{v:.3g}") for k, v in errors.items()},
                       "passed": all(v < bound for v in errors.values())})
    # poisoned output: every element must be written
    inputs = op_inputs(s, height, width, s.dtype, requires_grad=False)
    features = inputs["features"].contiguous(memory_format=torch.channels_last)
    out = torch.full_like(inputs["features"], float("nan"))
    problem = fused_module._Problem(s.batch, s.channels, height, width, len(s.rates), s.groups,
                                    KS)
    rates_t = torch.tensor(s.rates, dtype=torch.int32, device=s.device)
    fused_module._forward(features, inputs["walks"], inputs["weights"], rates_t, out, problem,
                          interpret=not s.cuda)
    _sync(s.device)
    checks.append({"check": "poisoned_output_fully_written", "dtype": str(s.dtype),
                   "passed": bool(torch.isfinite(out).all())})
    return checks


# ----------------------------------------------------------------------------------------------
# 3. op-level rows


def _module(name: str, channels: int, s: Settings, dtype: torch.dtype, **kwargs: Any) -> nn.Module:
    from dgmn.nn import build_context_module

    module = build_context_module(name, channels, **kwargs)
    return module.to(device=s.device, dtype=dtype).train()


def _features_input(s: Settings, height: int, width: int, dtype: torch.dtype,
                    channels_last: bool = False) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        x = torch.randn(s.batch, s.channels, height, width, device=s.device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return {"x": x.requires_grad_()}

    return make


def _autocast(s: Settings) -> contextlib.AbstractContextManager[Any]:
    if not s.cuda:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def _flash_context(s: Settings) -> contextlib.AbstractContextManager[Any]:
    if not s.cuda:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


def op_rows(s: Settings) -> list[Row]:
    rows: list[Row] = []
    dtype = s.dtype
    dname = str(dtype).removeprefix("torch.")
    for height, width in s.sizes:
        size = f"{height}x{width}"
        print(f"  op level {size}")

        def add(name: str, dtype_name: str = dname, size: str = size) -> Row:
            row = Row("op", name, size, dtype_name)
            rows.append(row)
            print(f"    {name}")
            return row

        names = ("features", "walks", "weights")

        # the aggregation core
        for label, fn, graphs in (
            ("dgmn_fused", _fused_call, True),
            ("dgmn_reference", lambda f, w, a, r: aggregate_reference(f, w, a, r, KS), True),
            # checkpointing saves the RNG state: not capturable, eager timing only
            ("dgmn_reference_memeff", lambda f, w, a, r: aggregate_reference(
                f, w, a, r, KS, memory_efficient=True), False),
        ):
            row = add(label)
            with guarded(row):
                measure_callable(row, lambda h=height, w=width: op_inputs(s, h, w, dtype),
                                 lambda t, fn=fn: fn(t["features"], t["walks"], t["weights"],
                                                     s.rates),
                                 names, (), s, graphs=graphs)
        # where backward time goes: each backward kernel alone, and the atomic variant
        from dgmn.ops.triton import kernel_config

        breakdown = (
            ("dgmn_fused_scatter", names, "scatter"),
            ("dgmn_fused_grad_features_only", ("features",), None),
            ("dgmn_fused_grad_features_only_scatter", ("features",), "scatter"),
            ("dgmn_fused_grad_walks_weights_only", ("walks", "weights"), None),
        )
        for label, wrt, feature_grad in breakdown if s.extended else ():
            row = add(label)
            with guarded(row), kernel_config(feature_grad=feature_grad):
                def make_some(h: int = height, w: int = width, wrt: tuple[str, ...] = wrt
                              ) -> dict[str, Any]:
                    t = op_inputs(s, h, w, dtype, requires_grad=False)
                    for n in wrt:
                        t[n].requires_grad_()
                    return t

                measure_callable(row, make_some, lambda t: _fused_call(
                    t["features"], t["walks"], t["weights"], s.rates), wrt, (), s)

        def make_cl(h: int = height, w: int = width) -> dict[str, Any]:
            t = op_inputs(s, h, w, dtype, requires_grad=False)
            t["features"] = t["features"].contiguous(memory_format=torch.channels_last)
            for v in t.values():
                v.requires_grad_()
            return t

        if s.extended:  # no layout copy of the features in forward
            row = add("dgmn_fused_channels_last_in")
            with guarded(row):
                measure_callable(row, make_cl, lambda t: _fused_call(
                    t["features"], t["walks"], t["weights"], s.rates), names, (), s)

        # the public op: weights combined in PyTorch (softmax, β, filters), then the kernel
        row = add("dgmn_op_auto")
        with guarded(row):
            def make_op(h: int = height, w: int = width) -> dict[str, Any]:
                num_rates, k = len(s.rates), KS * KS
                t = {
                    "features": torch.randn(s.batch, s.channels, h, w, device=s.device),
                    "walks": fractional_walks((s.batch, num_rates, k, 2, h, w), 3.0, s.device),
                    "filters": torch.randn(s.batch, num_rates, s.groups, k, h, w,
                                           device=s.device),
                    "logits": torch.randn(s.batch, num_rates, k, h, w, device=s.device),
                    "betas": torch.rand(num_rates, device=s.device) + 0.5,
                }
                return {n: v.to(dtype).requires_grad_() for n, v in t.items()}

            measure_callable(row, make_op, lambda t: dynamic_message_passing(
                t["features"], s.rates, t["betas"], filters=t["filters"],
                affinity_logits=t["logits"], walks=t["walks"], kernel_size=KS),
                ("features", "walks", "filters", "logits", "betas"), (), s)

        # modules (inputs (B, C, H, W); gradients for the input and every parameter)
        # The DGMN module's walk predictor is a torchvision deform_conv2d, which has no bf16
        # kernel: the module keeps fp32 parameters and runs under bf16 autocast (which runs
        # deform_conv2d in fp32); the other modules are cast to bf16.
        module_specs: list[tuple[str, str, dict[str, Any], bool, bool]] = [
            ("dgmn_module_fused", "dgmn", {"rates": list(s.rates), "groups": s.groups,
                                           "backend": "auto"}, False, True),
            ("dgmn_module_reference", "dgmn", {"rates": list(s.rates), "groups": s.groups,
                                               "backend": "reference"}, False, True),
            ("nonlocal_flash", "nonlocal", {}, True, False),
            ("ccnet", "ccnet", {}, False, False),
            ("aspp", "aspp", {}, False, False),
        ]
        for label, registry_name, kwargs, flash, autocast in module_specs:
            row = add(label, "bf16 autocast" if autocast and s.cuda else dname)
            with guarded(row):
                module = _module(registry_name, s.channels, s,
                                 torch.float32 if autocast else dtype, **kwargs)
                params = [p for p in module.parameters() if p.requires_grad]
                row.extra["params"] = sum(p.numel() for p in params)

                def forward(t: dict[str, Any], m: nn.Module = module,
                            autocast: bool = autocast) -> Tensor:
                    with _autocast(s) if autocast else contextlib.nullcontext():
                        return m(t["x"])

                try:
                    with _flash_context(s) if flash else contextlib.nullcontext():
                        # no CUDA graphs for modules: on the H200 (torch 2.11) capturing the
                        # DGMN module's forward+backward raised a sticky CUDA error
                        # (cudaErrorInvalidAddressSpace) that ended the whole run
                        measure_callable(row, _features_input(s, height, width, dtype),
                                         forward, ("x",), params, s, graphs=False)
                except RuntimeError as error:
                    if not flash:
                        raise
                    row.extra["note"] = f"flash failed ({_short_error(error)}): default SDPA"
                    measure_callable(row, _features_input(s, height, width, dtype), forward,
                                     ("x",), params, s, graphs=False)
                del module, params

        row = add("sdpa_core_flash")
        with guarded(row):
            inter = s.channels // 2

            def make_qkv(h: int = height, w: int = width, inter: int = inter
                         ) -> dict[str, Any]:
                shape = (s.batch, 1, h * w, inter)
                return {n: torch.randn(shape, device=s.device, dtype=dtype).requires_grad_()
                        for n in ("q", "k", "v")}

            with _flash_context(s):
                measure_callable(row, make_qkv, lambda t: torch.nn.functional.
                                 scaled_dot_product_attention(t["q"], t["k"], t["v"],
                                                              scale=1.0),
                                 ("q", "k", "v"), (), s)

        row = add("deform_conv2d")
        with guarded(row):
            _deform_row(row, s, height, width, dtype)
    return rows


def _fused_call(features: Tensor, walks: Tensor, weights: Tensor,
                rates: tuple[int, ...]) -> Tensor:
    from dgmn.ops.triton import aggregate_fused

    return aggregate_fused(features, walks, weights, rates, KS)


def _deform_row(row: Row, s: Settings, height: int, width: int, dtype: torch.dtype) -> None:
    from torchvision.ops import deform_conv2d

    def make(dt: torch.dtype) -> Callable[[], dict[str, Any]]:
        def inner() -> dict[str, Any]:
            c, k = s.channels, KS * KS
            t = {
                "x": torch.randn(s.batch, c, height, width, device=s.device),
                "offset": 2.0 * torch.randn(s.batch, 2 * k, height, width, device=s.device),
                "mask": torch.rand(s.batch, k, height, width, device=s.device),
                "weight": torch.randn(c, c, KS, KS, device=s.device) / math.sqrt(c * k),
            }
            return {n: v.to(dt).requires_grad_() for n, v in t.items()}
        return inner

    def forward(t: dict[str, Any]) -> Tensor:
        return deform_conv2d(t["x"], t["offset"], t["weight"], padding=1, mask=t["mask"])

    names = ("x", "offset", "mask", "weight")
    candidates = [dtype] + [d for d in (torch.float16, torch.float32) if d != dtype]
    for n, candidate in enumerate(candidates):
        try:
            measure_callable(row, make(candidate), forward, names, (), s, graphs=False)
            row.dtype = str(candidate).removeprefix("torch.")
            return
        except (RuntimeError, NotImplementedError) as error:  # torchvision has no bf16 kernel
            row.extra["note"] = f"{candidate} failed ({_short_error(error)})"
            if n == len(candidates) - 1:
                raise


# ----------------------------------------------------------------------------------------------
# 4. kernel blockings and resources


def sweep_rows(s: Settings) -> list[dict[str, Any]]:
    from dgmn.ops.triton import KernelConfig, default_config, kernel_config

    if not s.sweep:
        return []
    cg = s.channels // s.groups
    forward_configs = [default_config(cg, False), KernelConfig(4, 8, 128, 4),
                       KernelConfig(2, 8, 128, 4), KernelConfig(8, 8, 64, 8),
                       KernelConfig(8, 8, 64, 4), KernelConfig(4, 16, 64, 8),
                       KernelConfig(8, 8, 128, 8), KernelConfig(4, 8, 64, 4)]
    backward_configs = [default_config(cg, True), KernelConfig(4, 8, 128, 8),
                        KernelConfig(2, 8, 128, 4), KernelConfig(4, 8, 64, 8),
                        KernelConfig(8, 8, 64, 8), KernelConfig(4, 4, 128, 4),
                        KernelConfig(4, 8, 64, 4)]
    results = []
    for height, width in s.sizes:
        sets = [op_inputs(s, height, width, s.dtype) for _ in range(num_input_sets(
            nbytes(op_inputs(s, height, width, s.dtype, requires_grad=False)), s.device))]
        grad_outs = [torch.randn_like(t["features"]) for t in sets]
        default_bwd = default_config(cg, True)
        for kind, configs in (("forward", forward_configs), ("backward", backward_configs)):
            seen = set()
            for config in configs:
                if config in seen or config.block_c > triton_next_pow2(cg):
                    continue
                seen.add(config)
                fwd_cfg = config if kind == "forward" else default_config(cg, False)
                bwd_cfg = config if kind == "backward" else default_bwd
                entry = {"size": f"{height}x{width}", "kernel": kind, **asdict(config)}
                try:
                    with kernel_config(fwd_cfg, bwd_cfg):
                        entry.update(_time_fused(sets, grad_outs, kind == "backward", s))
                except Exception as error:
                    entry["error"] = _short_error(error)
                results.append(entry)
                print(f"    sweep {entry}")
    return results


def _time_fused(sets: list[dict[str, Any]], grad_outs: list[Tensor], backward: bool,
                s: Settings) -> dict[str, float | None]:
    names = ("features", "walks", "weights")

    def call(i: int) -> Any:
        if not backward:
            with torch.no_grad():
                return _fused_call(*(sets[i][n] for n in names), s.rates)
        out = _fused_call(*(sets[i][n] for n in names), s.rates)
        return torch.autograd.grad(out, [sets[i][n] for n in names], grad_outs[i])

    graph = time_graphs(call, len(sets), s)
    return {"ms": round(time_calls(call, len(sets), s).median_ms, 4),
            "graph_ms": round(graph.median_ms, 4) if graph else None}


def triton_next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def kernel_resources() -> dict[str, Any]:
    from dgmn.ops.triton.fused import LAST_COMPILED

    report = {}
    for name, compiled in LAST_COMPILED.items():
        entry: dict[str, Any] = {}
        for attr in ("n_regs", "n_spills", "n_max_threads"):
            value = getattr(compiled, attr, None)
            if value is not None:
                entry[attr] = int(value)
        metadata = getattr(compiled, "metadata", None)
        for attr in ("num_warps", "num_stages", "shared"):
            value = getattr(metadata, attr, None)
            if value is not None:
                entry[attr] = int(value)
        ptx = getattr(compiled, "asm", {}).get("ptx", "")
        if ptx:
            entry["ptx_counts"] = {key: ptx.count(key) for key in (
                "ld.global.v4", "ld.global.v2", "atom.global", "red.global", ".v4.f32",
                "st.global")}
        report[name] = entry
    return report


# ----------------------------------------------------------------------------------------------
# 5. models


def _build_fcn(s: Settings, context: str | None, backend: str = "auto") -> nn.Module:
    from dgmn.models import build_model

    cfg: dict[str, Any] = {"name": "dilated_fcn", "backbone": s.backbone, "num_classes": 19,
                           "context": context, "channels": s.fcn_channels}
    if context == "dgmn":
        cfg["context_kwargs"] = {"rates": list(s.rates), "groups": s.groups,
                                 "backend": backend}
    return build_model(cfg).to(s.device)


def fcn_label(s: Settings) -> str:
    return "fcn_r101_d8" if s.backbone == "resnet101" else f"fcn_{s.backbone}_d8"


def model_rows(s: Settings) -> list[Row]:
    """FCN inference (bf16 autocast: DGMN's deform_conv2d has no bf16 kernel, so every variant
    keeps fp32 parameters and runs under autocast) and training steps."""
    rows = []
    base_label = fcn_label(s)
    variants = [(base_label, None, "auto"), (f"{base_label}+dgmn", "dgmn", "auto"),
                (f"{base_label}+nonlocal", "nonlocal", "auto"),
                (f"{base_label}+dgmn_reference", "dgmn", "reference")]
    memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
    height, width = s.image
    precision = "bf16 autocast" if s.cuda else "float32"
    for label, context, backend in variants:
        row = Row("inference", label, f"1x3x{height}x{width}", precision)
        rows.append(row)
        print(f"    {label} inference")
        with guarded(row):
            model = _build_fcn(s, context, backend).to(memory_format=memory_format).eval()
            images = [torch.randn(1, 3, height, width, device=s.device)
                      .contiguous(memory_format=memory_format) for _ in range(2)]
            flash = _flash_context(s) if context == "nonlocal" else contextlib.nullcontext()
            with torch.inference_mode(), _autocast(s), flash:
                row.fwd_ms = time_calls(lambda i, m=model, x=images: m(x[i]), 2, s).median_ms
                row.fwd_mib = peak_extra_mib(lambda m=model, x=images: m(x[0]), s.device)
            row.extra["memory_format"] = str(memory_format).removeprefix("torch.")
            del model, images
    base = rows[0].fwd_ms
    for row in rows:
        if base and row.fwd_ms:
            row.extra["vs_plain"] = round(row.fwd_ms / base, 3)
    if s.cuda:  # the plain FCN with bf16 parameters, as in the 19.4 ms
        row = Row("inference", f"{base_label} (bf16 params)", f"1x3x{height}x{width}",
                  "bfloat16")
        rows.append(row)
        with guarded(row):
            model = _build_fcn(s, None).to(dtype=torch.bfloat16,
                                           memory_format=memory_format).eval()
            images = [torch.randn(1, 3, height, width, device=s.device, dtype=torch.bfloat16)
                      .contiguous(memory_format=memory_format) for _ in range(2)]
            with torch.inference_mode():
                row.fwd_ms = time_calls(lambda i, m=model, x=images: m(x[i]), 2, s).median_ms
            del model, images

    for label, context, backend in variants[:3]:
        row = Row("train_step", label, f"{s.train_batch}x3x{s.crop}x{s.crop}",
                  "bf16 autocast" if s.cuda else "float32")
        rows.append(row)
        print(f"    {label} training step")
        with guarded(row):
            _train_row(row, s, context, backend, memory_format)
    return rows


def _train_row(row: Row, s: Settings, context: str | None, backend: str,
               memory_format: torch.memory_format) -> None:
    model = _build_fcn(s, context, backend).to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    crops = [torch.randn(s.train_batch, 3, s.crop, s.crop, device=s.device)
             .contiguous(memory_format=memory_format) for _ in range(2)]
    labels = [torch.randint(0, 19, (s.train_batch, s.crop, s.crop), device=s.device)
              for _ in range(2)]
    for target in labels:
        target[:, :8] = 255  # some ignored pixels, as in Cityscapes
    def step(i: int) -> None:
        # fresh context managers per step: sdpa_kernel's is generator-based (one use only)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if s.cuda
                    else contextlib.nullcontext())
        flash = _flash_context(s) if context == "nonlocal" else contextlib.nullcontext()
        optimizer.zero_grad(set_to_none=True)
        with autocast, flash:
            logits = model(crops[i])
            loss = nn.functional.cross_entropy(logits.float(), labels[i], ignore_index=255)
        loss.backward()
        optimizer.step()

    timing = time_calls(step, 2, s)
    row.fwd_bwd_ms = timing.median_ms
    row.extra["images_per_s"] = round(1e3 * s.train_batch / timing.median_ms, 2)
    row.fwd_bwd_mib = peak_extra_mib(lambda: step(0), s.device)


# ----------------------------------------------------------------------------------------------
# Analysis, table, JSON


def traffic_model(s: Settings, height: int, width: int, element: int) -> dict[str, float]:
    """Bytes and operations of the fused op (see BENCHMARKS.md), in MB and GFLOP."""
    b, c, hw = s.batch, s.channels, height * width
    num_rates, k, g = len(s.rates), KS * KS, s.groups
    samples = b * hw * num_rates * k
    feat = b * c * hw * element
    walks = samples * 2 * element
    weights = b * num_rates * g * k * hw * element
    return {
        "fwd_min_dram_MB": (2 * feat + walks + weights) / 1e6,
        # backward: read grad_out, features, walks, weights; write the three gradients
        "bwd_min_dram_MB": (3 * feat + 2 * walks + 2 * weights) / 1e6,
        "gather_MB": samples * 4 * c * element / 1e6,  # four corners × C, per pass
        "atomic_adds_M": samples * 4 * c / 1e6,
        "fwd_GFLOP": samples * 4 * c * 2 / 1e9,
    }


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def print_table(rows: list[Row]) -> None:
    header = ("section", "name", "size", "dtype", "fwd ms", "f+b ms", "fwd graph", "f+b graph",
              "fwd MiB", "f+b MiB", "note")
    lines = [header]
    for r in rows:
        note = r.error or ", ".join(f"{k}={v}" for k, v in r.extra.items()
                                    if k in ("vs_plain", "images_per_s", "note"))
        lines.append((r.section, r.name, r.size, r.dtype, fmt(r.fwd_ms), fmt(r.fwd_bwd_ms),
                      fmt(r.fwd_graph_ms), fmt(r.fwd_bwd_graph_ms), fmt(r.fwd_mib, 1),
                      fmt(r.fwd_bwd_mib, 1), note[:60]))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _find(rows: list[Row], section: str, name: str, size: str | None = None) -> Row | None:
    for r in rows:
        if r.section == section and r.name == name and (size is None or r.size == size):
            return r
    return None


def _best(row: Row | None, eager: str, graph: str) -> float | None:
    if row is None:
        return None
    values = [v for v in (getattr(row, eager), getattr(row, graph)) if v is not None]
    return min(values) if values else None


def evaluate_targets(rows: list[Row], s: Settings) -> list[dict[str, Any]]:
    """The issue's targets (H100, bf16), with measured values; times use the faster of the
    eager and graph medians."""
    if not s.cuda:
        return []
    small = f"{s.sizes[0][0]}x{s.sizes[0][1]}"
    large = f"{s.sizes[-1][0]}x{s.sizes[-1][1]}"
    out = []

    def target(name: str, value: float | None, limit: float, smaller_is_better: bool) -> None:
        ok = None if value is None else (value <= limit if smaller_is_better else value >= limit)
        out.append({"target": name, "value": None if value is None else round(value, 4),
                    "limit": limit, "met": ok})

    fused_small = _find(rows, "op", "dgmn_fused", small)
    fused_large = _find(rows, "op", "dgmn_fused", large)
    nl_small = _find(rows, "op", "nonlocal_flash", small)
    nl_large = _find(rows, "op", "nonlocal_flash", large)
    ref_small = _find(rows, "op", "dgmn_reference", small)
    target(f"fused fwd ms @ {small}", _best(fused_small, "fwd_ms", "fwd_graph_ms"), 0.25, True)
    target(f"fused fwd+bwd ms @ {small}", _best(fused_small, "fwd_bwd_ms",
                                                 "fwd_bwd_graph_ms"), 1.0, True)
    for label, fused, nl, limit in ((small, fused_small, nl_small, 4.0),
                                    (large, fused_large, nl_large, 10.0)):
        a = _best(nl, "fwd_bwd_ms", "fwd_bwd_graph_ms")
        b = _best(fused, "fwd_bwd_ms", "fwd_bwd_graph_ms")
        target(f"Non-local / fused fwd+bwd @ {label}", a / b if a and b else None, limit, False)
    if fused_small and ref_small and fused_small.fwd_bwd_mib and ref_small.fwd_bwd_mib:
        target(f"fused / reference peak extra memory @ {small}",
               fused_small.fwd_bwd_mib / ref_small.fwd_bwd_mib, 0.25, True)
    dgmn = _find(rows, "inference", f"{fcn_label(s)}+dgmn")
    target("FCN+DGMN / FCN inference", dgmn.extra.get("vs_plain") if dgmn else None, 1.05, True)
    return out


def environment(s: Settings) -> dict[str, Any]:
    import torchvision
    import triton

    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "triton": triton.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
        "host": platform.node(),
    }
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                           text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["git_commit"] = None
    if s.cuda:
        props = torch.cuda.get_device_properties(s.device)
        env.update(card=props.name, sm_count=props.multi_processor_count,
                   memory_GiB=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}",
                   l2_MiB=round(getattr(props, "L2_cache_size", 0) / 2**20, 1))
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,"
                 "power.limit,temperature.gpu", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["nvidia_smi"] = None
    else:
        env["card"] = "cpu (dry run)"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_gpu.json"))
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, fused op in Triton's interpreter: proves the "
                             "code paths, measures nothing meaningful")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["correctness", "ops", "sweep", "models"])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--min-reps", type=int, default=10)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="models in contiguous (NCHW) memory format")
    parser.add_argument("--traceback", action="store_true")
    args = parser.parse_args(argv)

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
    torch.manual_seed(0)
    started = time.perf_counter()
    env = environment(s)
    print(f"bench_gpu on {env['card']}: torch {env['torch']}, triton {env['triton']}, "
          f"cuda {env['cuda']}, {env['date']}")
    report: dict[str, Any] = {"environment": env, "settings": {
        k: (str(v) if isinstance(v, torch.device | torch.dtype) else v)
        for k, v in asdict(s).items()}}
    report["ceilings"] = measure_ceilings(s)
    print(f"  ceilings: {report['ceilings']}")
    element = torch.tensor([], dtype=s.dtype).element_size()
    report["traffic_model"] = {f"{h}x{w}": {k: round(v, 2) for k, v in
                                            traffic_model(s, h, w, element).items()}
                               for h, w in s.sizes}

    rows: list[Row] = []

    def save() -> None:
        """Write what is measured so far (atomically), so a run cut short still leaves data."""
        report["rows"] = [asdict(r) for r in rows]
        report["wall_s"] = round(time.perf_counter() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.out.with_name(args.out.name + ".tmp")
        partial.write_text(json.dumps(report, indent=2, default=str))
        partial.replace(args.out)

    if "correctness" not in args.skip:
        print("  correctness")
        try:
            report["correctness"] = check_correctness(s)
        except Exception as error:
            report["correctness"] = [{"check": "error", "error": _short_error(error),
                                      "passed": False}]
            traceback.print_exc()
        for check in report["correctness"]:
            print(f"    {'ok  ' if check['passed'] else 'FAIL'} {check}")
        save()
    if "ops" not in args.skip:
        rows += op_rows(s)
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
    print()
    print_table(rows)
    if report.get("kernels"):
        print(f"kernels: {json.dumps(report['kernels'])}")
    if report.get("sweep"):
        best: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in report["sweep"]:
            key = (entry["size"], entry["kernel"])
            ms = entry.get("graph_ms") or entry.get("ms")
            if ms is not None and (key not in best or ms < (best[key].get("graph_ms")
                                                             or best[key]["ms"])):
                best[key] = entry
        for (size, kind), entry in sorted(best.items()):
            print(f"best {kind} blocking @ {size}: {entry}")
    for t in report["targets"]:
        status = {True: "MET ", False: "MISS", None: "n/a "}[t["met"]]
        print(f"target {status} {t['target']}: {t['value']} (limit {t['limit']})")
    failed = [c for c in report.get("correctness", []) if not c["passed"]]
    print(f"correctness: {'FAILED ' + str(len(failed)) if failed else 'all passed'}; "
          f"wrote {args.out} in {report['wall_s']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
