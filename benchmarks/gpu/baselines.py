"""What the fused op is compared with, at the op-level sizes: the DGMN module (fused and
reference), Non-local (flash SDPA), CCNet, ASPP, the bare SDPA core and ``deform_conv2d``."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor

from benchmarks.gpu.common import (
    KS,
    Row,
    Settings,
    autocast,
    flash_context,
    guarded,
    short_error,
    size_label,
)
from benchmarks.gpu.timing import measure_callable

Inputs = dict[str, Any]


@dataclass(frozen=True)
class ModuleCase:
    """A context module of the registry, timed on ``(B, C, H, W)`` features with gradients
    for the input and every parameter."""

    name: str
    registry_name: str
    kwargs: Callable[[Settings], dict[str, Any]] = field(default=lambda s: {})
    flash: bool = False  # SDPA restricted to flash attention (falls back to the default)
    # fp32 parameters under bf16 autocast, rather than bf16 parameters: the DGMN module's
    # walk predictor is a torchvision deform_conv2d, which has no bf16 kernel
    autocast: bool = False


def _dgmn_kwargs(backend: str) -> Callable[[Settings], dict[str, Any]]:
    return lambda s: {"rates": list(s.rates), "groups": s.groups, "backend": backend}


MODULE_CASES: tuple[ModuleCase, ...] = (
    ModuleCase("dgmn_module_fused", "dgmn", _dgmn_kwargs("auto"), autocast=True),
    ModuleCase("dgmn_module_reference", "dgmn", _dgmn_kwargs("reference"), autocast=True),
    ModuleCase("nonlocal_flash", "nonlocal", flash=True),
    ModuleCase("ccnet", "ccnet"),
    ModuleCase("aspp", "aspp"),
)


def _features(s: Settings, height: int, width: int, dtype: torch.dtype) -> Inputs:
    x = torch.randn(s.batch, s.channels, height, width, device=s.device, dtype=dtype)
    return {"x": x.requires_grad_()}


def _module_row(row: Row, case: ModuleCase, s: Settings, height: int, width: int) -> None:
    from dgmn.nn import build_context_module

    dtype = torch.float32 if case.autocast else s.dtype
    module = build_context_module(case.registry_name, s.channels, **case.kwargs(s))
    module = module.to(device=s.device, dtype=dtype).train()
    params = [p for p in module.parameters() if p.requires_grad]
    row.extra["params"] = sum(p.numel() for p in params)

    def forward(inputs: Inputs) -> Tensor:
        with autocast(s) if case.autocast else contextlib.nullcontext():
            return module(inputs["x"])

    # no CUDA graphs for modules: on the H200 (torch 2.11) capturing the DGMN module's
    # forward+backward raised a sticky CUDA error (cudaErrorInvalidAddressSpace) that ended
    # the whole run
    measure = partial(measure_callable, row, partial(_features, s, height, width, s.dtype),
                      forward, ("x",), params, s, graphs=False)
    try:
        with flash_context(s) if case.flash else contextlib.nullcontext():
            measure()
    except RuntimeError as error:
        if not case.flash:
            raise
        row.extra["note"] = f"flash failed ({short_error(error)}): default SDPA"
        measure()


def _sdpa_row(row: Row, s: Settings, height: int, width: int) -> None:
    """The attention core of Non-local alone: one head of C/2 channels over H·W tokens."""
    shape = (s.batch, 1, height * width, s.channels // 2)

    def make() -> Inputs:
        return {n: torch.randn(shape, device=s.device, dtype=s.dtype).requires_grad_()
                for n in ("q", "k", "v")}

    def forward(inputs: Inputs) -> Tensor:
        return torch.nn.functional.scaled_dot_product_attention(
            inputs["q"], inputs["k"], inputs["v"], scale=1.0)

    with flash_context(s):
        measure_callable(row, make, forward, ("q", "k", "v"), (), s)


def _deform_row(row: Row, s: Settings, height: int, width: int) -> None:
    """``deform_conv2d`` C→C, 3×3 with a DCNv2 mask, in the first dtype torchvision runs."""
    from torchvision.ops import deform_conv2d

    def make(dtype: torch.dtype) -> Inputs:
        c, k = s.channels, KS * KS
        inputs = {
            "x": torch.randn(s.batch, c, height, width, device=s.device),
            "offset": 2.0 * torch.randn(s.batch, 2 * k, height, width, device=s.device),
            "mask": torch.rand(s.batch, k, height, width, device=s.device),
            "weight": torch.randn(c, c, KS, KS, device=s.device) / math.sqrt(c * k),
        }
        return {n: v.to(dtype).requires_grad_() for n, v in inputs.items()}

    def forward(inputs: Inputs) -> Tensor:
        return deform_conv2d(inputs["x"], inputs["offset"], inputs["weight"], padding=1,
                             mask=inputs["mask"])

    candidates = [s.dtype] + [d for d in (torch.float16, torch.float32) if d != s.dtype]
    for n, candidate in enumerate(candidates):
        try:
            measure_callable(row, partial(make, candidate), forward,
                             ("x", "offset", "mask", "weight"), (), s, graphs=False)
            row.dtype = str(candidate).removeprefix("torch.")
            return
        except (RuntimeError, NotImplementedError) as error:  # torchvision has no bf16 kernel
            row.extra["note"] = f"{candidate} failed ({short_error(error)})"
            if n == len(candidates) - 1:
                raise


def baseline_rows(s: Settings, height: int, width: int) -> list[Row]:
    """The module rows of :data:`MODULE_CASES`, then the SDPA core and ``deform_conv2d``."""
    size = size_label(height, width)
    cases: list[tuple[str, str, Callable[[Row], None]]] = [
        (case.name, "bf16 autocast" if case.autocast and s.cuda else s.dtype_name,
         partial(_module_row, case=case, s=s, height=height, width=width))
        for case in MODULE_CASES]
    cases += [("sdpa_core_flash", s.dtype_name, partial(_sdpa_row, s=s, height=height,
                                                         width=width)),
              ("deform_conv2d", s.dtype_name, partial(_deform_row, s=s, height=height,
                                                       width=width))]
    rows = []
    for name, dtype_name, measure in cases:
        row = Row("op", name, size, dtype_name)
        rows.append(row)
        print(f"    {name}")
        with guarded(row, s):
            measure(row)
    return rows
