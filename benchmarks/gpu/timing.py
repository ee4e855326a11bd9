"""Timing (CUDA events, CUDA-graph replays), peak extra memory, and a row's measurement.

Every measurement rotates among several sets of random inputs whose total size exceeds
twice the L2 cache, so repeated calls do not time the cache; medians are over at least
``Settings.min_reps`` repetitions, as many as fit ``Settings.budget_s``.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmarks.gpu.common import Row, Settings


@dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    reps: int


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[int], Any], num_sets: int, s: Settings) -> Timing:
    """Median time of ``fn(i)`` (input set ``i % num_sets``), CUDA events per repetition."""
    for i in range(s.warmup):
        fn(i % num_sets)
    sync(s.device)
    reps = s.min_reps
    if s.max_reps > s.min_reps:  # as many repetitions as fit the budget
        start = time.perf_counter()
        fn(0)
        sync(s.device)
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
