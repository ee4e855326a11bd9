"""Kernel blockings of the fused op (a small sweep) and the compiled kernels' resources."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from benchmarks.gpu.common import (
    CORE_INPUTS,
    Settings,
    fused_call,
    op_inputs,
    short_error,
    size_label,
)
from benchmarks.gpu.timing import nbytes, num_input_sets, time_calls, time_graphs


def _configs(cg: int) -> dict[str, list[Any]]:
    from dgmn.ops.triton import KernelConfig, default_config

    return {
        "forward": [default_config(cg, False), KernelConfig(4, 8, 128, 4),
                    KernelConfig(2, 8, 128, 4), KernelConfig(8, 8, 64, 8),
                    KernelConfig(8, 8, 64, 4), KernelConfig(4, 16, 64, 8),
                    KernelConfig(8, 8, 128, 8), KernelConfig(4, 8, 64, 4)],
        "backward": [default_config(cg, True), KernelConfig(4, 8, 128, 8),
                     KernelConfig(2, 8, 128, 4), KernelConfig(4, 8, 64, 8),
                     KernelConfig(8, 8, 64, 8), KernelConfig(4, 4, 128, 4),
                     KernelConfig(4, 8, 64, 4)],
    }


def sweep_rows(s: Settings) -> list[dict[str, Any]]:
    """Forward / forward+backward ms of each blocking of one kernel, the other at its
    default; eager and graph-replay medians."""
    import triton

    from dgmn.ops.triton import default_config, kernel_config

    if not s.sweep:
        return []
    cg = s.channels // s.groups
    results = []
    for height, width in s.sizes:
        sets = [op_inputs(s, height, width, s.dtype) for _ in range(num_input_sets(
            nbytes(op_inputs(s, height, width, s.dtype, requires_grad=False)), s.device))]
        grad_outs = [torch.randn_like(t["features"]) for t in sets]
        for kind, configs in _configs(cg).items():
            seen = set()
            for config in configs:
                if config in seen or config.block_c > triton.next_power_of_2(cg):
                    continue
                seen.add(config)
                fwd_cfg = config if kind == "forward" else default_config(cg, False)
                bwd_cfg = config if kind == "backward" else default_config(cg, True)
                entry = {"size": size_label(height, width), "kernel": kind, **asdict(config)}
                try:
                    with kernel_config(fwd_cfg, bwd_cfg):
                        entry.update(_time_fused(sets, grad_outs, kind == "backward", s))
                except Exception as error:
                    entry["error"] = short_error(error)
                results.append(entry)
                print(f"    sweep {entry}")
    return results


def _time_fused(sets: list[dict[str, Any]], grad_outs: list[Tensor], backward: bool,
                s: Settings) -> dict[str, float | None]:
    def call(i: int) -> Any:
        if not backward:
            with torch.no_grad():
                return fused_call(sets[i], s)
        out = fused_call(sets[i], s)
        return torch.autograd.grad(out, [sets[i][n] for n in CORE_INPUTS], grad_outs[i])

    graph = time_graphs(call, len(sets), s)
    return {"ms": round(time_calls(call, len(sets), s).median_ms, 4),
            "graph_ms": round(graph.median_ms, 4) if graph else None}


def best_blockings(sweep: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The fastest entry per (size, kernel), by graph-replay time where there is one."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in sweep:
        key = (entry["size"], entry["kernel"])
        ms = entry.get("graph_ms") or entry.get("ms")
        if ms is not None and (key not in best or ms < (best[key].get("graph_ms")
                                                         or best[key]["ms"])):
            best[key] = entry
    return best


def kernel_resources() -> dict[str, Any]:
    """Registers, spills, warps, shared memory and PTX load/atomic counts of the kernels
    compiled by the last launches (GPU only: empty on the dry run)."""
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
