"""Op-level rows: the fused aggregation, the reference op, and where the fused op's time goes.

Each row is one :class:`OpCase` of :data:`OP_CASES`: how its inputs are made, which of them
get gradients, which forward is timed, and under which feature-gradient strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from benchmarks.gpu.common import (
    CORE_INPUTS,
    KS,
    Row,
    Settings,
    fractional_walks,
    fused_call,
    guarded,
    op_inputs,
    size_label,
)
from benchmarks.gpu.timing import measure_callable
from dgmn.ops import dynamic_message_passing
from dgmn.ops.reference import aggregate_reference

Inputs = dict[str, Any]


def _core_inputs(s: Settings, height: int, width: int) -> Inputs:
    return op_inputs(s, height, width, s.dtype, requires_grad=False)


def _channels_last_inputs(s: Settings, height: int, width: int) -> Inputs:
    inputs = _core_inputs(s, height, width)
    inputs["features"] = inputs["features"].contiguous(memory_format=torch.channels_last)
    return inputs


def _public_op_inputs(s: Settings, height: int, width: int) -> Inputs:
    """Inputs of ``dynamic_message_passing``: filters, affinity logits and β separately."""
    num_rates, k = len(s.rates), KS * KS
    inputs = {
        "features": torch.randn(s.batch, s.channels, height, width, device=s.device),
        "walks": fractional_walks((s.batch, num_rates, k, 2, height, width), 3.0, s.device),
        "filters": torch.randn(s.batch, num_rates, s.groups, k, height, width,
                               device=s.device),
        "logits": torch.randn(s.batch, num_rates, k, height, width, device=s.device),
        "betas": torch.rand(num_rates, device=s.device) + 0.5,
    }
    return {name: tensor.to(s.dtype) for name, tensor in inputs.items()}


def _reference(inputs: Inputs, s: Settings, memory_efficient: bool = False) -> Tensor:
    return aggregate_reference(inputs["features"], inputs["walks"], inputs["weights"], s.rates,
                               KS, memory_efficient=memory_efficient)


def _public_op(inputs: Inputs, s: Settings) -> Tensor:
    return dynamic_message_passing(inputs["features"], s.rates, inputs["betas"],
                                   filters=inputs["filters"], affinity_logits=inputs["logits"],
                                   walks=inputs["walks"], kernel_size=KS)


@dataclass(frozen=True)
class OpCase:
    """One op-level row: ``forward(inputs, settings)`` on ``make_inputs(settings, H, W)``."""

    name: str
    forward: Callable[[Inputs, Settings], Tensor]
    make_inputs: Callable[[Settings, int, int], Inputs] = _core_inputs
    leaves: tuple[str, ...] = CORE_INPUTS  # the inputs that get gradients
    feature_grad: str | None = None  # "gather" / "scatter"; None: the default
    graphs: bool = True  # also time CUDA-graph replays
    extended: bool = False  # only when Settings.extended (the full GPU run)


OP_CASES: tuple[OpCase, ...] = (
    # the aggregation core
    OpCase("dgmn_fused", fused_call),
    OpCase("dgmn_reference", _reference),
    # checkpointing saves the RNG state: not capturable, eager timing only
    OpCase("dgmn_reference_memeff", partial(_reference, memory_efficient=True), graphs=False),
    # where backward time goes: each backward kernel alone, and the atomic variant
    OpCase("dgmn_fused_scatter", fused_call, feature_grad="scatter", extended=True),
    OpCase("dgmn_fused_grad_features_only", fused_call, leaves=("features",), extended=True),
    OpCase("dgmn_fused_grad_features_only_scatter", fused_call, leaves=("features",),
           feature_grad="scatter", extended=True),
    OpCase("dgmn_fused_grad_walks_weights_only", fused_call, leaves=("walks", "weights"),
           extended=True),
    # no layout copy of the features in forward
    OpCase("dgmn_fused_channels_last_in", fused_call, make_inputs=_channels_last_inputs,
           extended=True),
    # the public op: weights combined in PyTorch (softmax, β, filters), then the kernel
    OpCase("dgmn_op_auto", _public_op, make_inputs=_public_op_inputs,
           leaves=("features", "walks", "filters", "logits", "betas")),
)


def _case_inputs(case: OpCase, s: Settings, height: int, width: int) -> Inputs:
    inputs = case.make_inputs(s, height, width)
    for name in case.leaves:
        inputs[name].requires_grad_()
    return inputs


def op_rows(s: Settings, height: int, width: int) -> list[Row]:
    """The rows of :data:`OP_CASES` at one map size (extended cases only when enabled)."""
    from dgmn.ops.triton import kernel_config

    rows = []
    for case in OP_CASES:
        if case.extended and not s.extended:
            continue
        row = Row("op", case.name, size_label(height, width), s.dtype_name)
        rows.append(row)
        print(f"    {case.name}")
        with guarded(row, s), kernel_config(feature_grad=case.feature_grad):
            measure_callable(row, partial(_case_inputs, case, s, height, width),
                             partial(case.forward, s=s), case.leaves, (), s,
                             graphs=case.graphs)
    return rows
