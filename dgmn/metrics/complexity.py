"""Parameter and multiply-accumulate counting, in the paper's convention and in full.

Built on :class:`torch.utils.flop_counter.FlopCounterMode` (which counts 2 FLOPs per MAC); every
number returned here is in **MACs**, which is what the paper's "FLOPs" columns hold.

- ``paper_macs``: the paper's convention (``../shared/paper/tables.yaml``, ``conventions``):
  multiply-accumulates of the convolution layers (deformable ones included, their sampling
  excluded) plus scaled-dot-product attention, which is how the paper counts Non-local's N²
  attention. DGMN's sampling and aggregation are not counted, as in the paper.
- ``full_macs``: everything: convolutions, attention, every matmul/bmm (DGMN's aggregation over
  the K neighbours, CCNet's and DANet's attention), and bilinear sampling (4 MACs per sampled
  value, for ``grid_sample`` and for the sampling inside ``deform_conv2d``).

Elementwise work (normalisation, activations, softmax) is not counted in either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_flop_count

aten = torch.ops.aten

PAPER_OPS = frozenset({"aten.convolution", "torchvision.deform_conv2d",
                       "aten._scaled_dot_product_flash_attention_for_cpu",
                       "aten._scaled_dot_product_flash_attention",
                       "aten._scaled_dot_product_efficient_attention",
                       "aten._scaled_dot_product_cudnn_attention"})
"""Ops whose FLOPs the paper's convention counts (sampling parts are counted separately)."""


def _cpu_sdpa_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _deform_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """The convolution part of ``deform_conv2d`` (its sampling: :func:`_deform_sampling_flop`)."""
    return conv_flop_count(list(x_shape), list(w_shape), list(out_shape), transposed=False)


def _deform_sampling_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """Bilinear reads inside ``deform_conv2d``: C_in·K values per output position, 4 MACs each."""
    batch, in_channels = x_shape[0], x_shape[1]
    k = w_shape[2] * w_shape[3]
    positions = out_shape[2] * out_shape[3]
    return 2 * 4 * batch * in_channels * k * positions


def _grid_sample_flop(x_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
    """Bilinear ``grid_sample``: 4 MACs per output value."""
    numel = 1
    for size in out_shape:
        numel *= size
    return 2 * 4 * numel


_FORMULAS: dict[Any, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    aten.grid_sampler_2d: _grid_sample_flop,
}
DEFORM_SAMPLING = "torchvision.deform_conv2d (sampling)"


@dataclass(frozen=True)
class Complexity:
    """Counts of one module on one input. MACs, not FLOPs (1 MAC = 2 FLOPs)."""

    params: int
    paper_macs: int
    full_macs: int
    by_op: dict[str, int]

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def paper_gmacs(self) -> float:
        return self.paper_macs / 1e9

    @property
    def full_gmacs(self) -> float:
        return self.full_macs / 1e9


def _count(module: nn.Module, inputs: tuple) -> dict[str, int]:
    """FLOPs by op name. FlopCounterMode takes one formula per op, so deform_conv2d's formula
    returns its convolution part and books its sampling part under its own name."""
    sampling = [0]

    def deform_conv(*args: Any, **kwargs: Any) -> int:
        sampling[0] += _deform_sampling_flop(*args, **kwargs)
        return _deform_conv_flop(*args, **kwargs)

    formulas = {**_FORMULAS, torch.ops.torchvision.deform_conv2d: deform_conv}
    counter = FlopCounterMode(display=False, custom_mapping=formulas)
    with counter, torch.no_grad():
        module(*inputs)
    by_op = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    if sampling[0]:
        by_op[DEFORM_SAMPLING] = sampling[0]
    return by_op


def count_complexity(module: nn.Module, *inputs: torch.Tensor) -> Complexity:
    """Params and forward MACs of ``module(*inputs)``, in the paper's convention and in full.

    The module runs in eval mode, without gradients; its mode is restored afterwards.
    """
    was_training = module.training
    module.eval()
    try:
        by_op = _count(module, inputs)
    finally:
        module.train(was_training)
    paper = sum(flops for op, flops in by_op.items() if op in PAPER_OPS)
    full = sum(by_op.values())
    params = sum(p.numel() for p in module.parameters())
    return Complexity(params=params, paper_macs=paper // 2, full_macs=full // 2,
                      by_op={op: flops // 2 for op, flops in by_op.items()})
