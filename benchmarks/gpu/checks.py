"""Correctness of the fused op at the benchmark size, before anything is timed."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from benchmarks.gpu.common import CORE_INPUTS, KS, Settings, fused_call, op_inputs, size_label
from benchmarks.gpu.timing import sync
from dgmn.ops.reference import aggregate_reference

_BOUNDS = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def rel_error(got: Tensor, want: Tensor) -> float:
    if not torch.isfinite(got).all():
        return float("inf")
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def check_correctness(s: Settings) -> list[dict[str, Any]]:
    """Values and gradients against the reference (fp32, fp64 on CPU) on the same values,
    fp32 and bf16, per feature-gradient strategy; then a NaN-poisoned output buffer that
    the forward must overwrite entirely."""
    from dgmn.ops.triton import kernel_config

    height, width = s.sizes[0]
    combos = [(torch.float32, "gather"), (torch.bfloat16, "gather")]
    if s.extended:
        combos += [(torch.float32, "scatter"), (torch.bfloat16, "scatter")]
    checks = []
    for dtype, feature_grad in combos:
        inputs = op_inputs(s, height, width, dtype)
        with kernel_config(feature_grad=feature_grad):
            out = fused_call(inputs, s)
            grad_out = torch.randn_like(out)
            grads = torch.autograd.grad(out, [inputs[n] for n in CORE_INPUTS], grad_out)
        ref_dtype = torch.float64 if not s.cuda else torch.float32
        high = {n: inputs[n].detach().to(ref_dtype).requires_grad_() for n in CORE_INPUTS}
        ref = aggregate_reference(*(high[n] for n in CORE_INPUTS), s.rates, KS)
        ref_grads = torch.autograd.grad(ref, [high[n] for n in CORE_INPUTS], grad_out.to(ref_dtype))
        errors = {"out": rel_error(out, ref)}
        errors.update({n: rel_error(g, r) for n, g, r in zip(CORE_INPUTS, grads, ref_grads,
                                                             strict=True)})
        bound = _BOUNDS[dtype]
        checks.append({"check": f"fused_vs_reference ({feature_grad} feature grad)",
                       "dtype": str(dtype).removeprefix("torch."),
                       "size": size_label(height, width), "bound": bound,
                       "rel_errors": {k: float(f"{v:.3g}") for k, v in errors.items()},
                       "passed": all(v < bound for v in errors.values())})
    checks.append(_poisoned_output_check(s, height, width))
    return checks


def _poisoned_output_check(s: Settings, height: int, width: int) -> dict[str, Any]:
    from dgmn.ops.triton import fused as fused_module

    inputs = op_inputs(s, height, width, s.dtype, requires_grad=False)
    features = inputs["features"].contiguous(memory_format=torch.channels_last)
    out = torch.full_like(inputs["features"], float("nan"))
    problem = fused_module._Problem(s.batch, s.channels, height, width, len(s.rates), s.groups,
                                    KS)
    rates_t = torch.tensor(s.rates, dtype=torch.int32, device=s.device)
    fused_module._forward(features, inputs["walks"], inputs["weights"], rates_t, out, problem,
                          interpret=not s.cuda)
    sync(s.device)
    return {"check": "poisoned_output_fully_written", "dtype": str(s.dtype),
            "passed": bool(torch.isfinite(out).all())}
