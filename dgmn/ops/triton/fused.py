"""Autograd wrapper and launchers of the fused Triton DGMN aggregation.

CUDA tensors run the compiled kernels. CPU tensors run the very same kernel source through
Triton's interpreter: a private copy of :mod:`dgmn.ops.triton._kernels` is loaded with the
``interpret`` knob switched on only while the copy is decorated, so the interpreter never
leaks into other Triton code of the process (``TRITON_INTERPRET`` is read when ``@triton.jit``
runs, i.e. at import). The interpreter is slow: it exists for tests at tiny sizes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import torch
import triton
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from dgmn.ops.reference import aggregate_reference
from dgmn.ops.sampling import check_kernel_size, check_rates

_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class KernelConfig:
    """Blocking of one kernel: a ``tile_h × tile_w`` tile of positions × ``block_c`` channels.

    ``tile_h · tile_w`` and ``block_c`` must be powers of two.
    """

    tile_h: int
    tile_w: int
    block_c: int
    num_warps: int = 4
    num_stages: int = 1

    def __post_init__(self) -> None:
        for name in ("tile_h", "tile_w", "block_c", "num_warps"):
            value = getattr(self, name)
            if value <= 0 or value & (value - 1):
                raise ValueError(f"{name} must be a positive power of two, got {value}")


def default_config(channels_per_group: int, backward: bool,
                   element_size: int = 2) -> KernelConfig:
    """Default blocking: up to 128 channels of one group × 16-64 positions, 4 warps.

    Forward programs hold 4096 elements for 2-byte inputs, 2048 for fp32; backward programs
    2048 (their tiles are fp32). 4 warps beat 8 by 3-7 % in the H200 sweep (forward
    4×8×128: 0.467 vs 0.502 ms at 97×97, 1.549 vs 1.678 ms at 129×257; backward 2×8×128:
    2.79 vs 2.89 ms; see BENCHMARKS.md), with no spills for sm_90
    (``benchmarks/inspect_kernels.py``).
    """
    block_c = min(triton.next_power_of_2(channels_per_group), 128)
    elements = 2048 if backward or element_size > 2 else 4096
    positions = min(max(elements // block_c, 16), 64)
    tile_w = 8
    return KernelConfig(tile_h=positions // tile_w, tile_w=tile_w, block_c=block_c,
                        num_warps=4)


FeatureGrad = Literal["gather", "scatter"]

#: How ∂L/∂features is computed: "gather" (inverse index, no atomics, deterministic; the
#: default) or "scatter" (fp32 atomics into a zeroed buffer).
DEFAULT_FEATURE_GRAD: FeatureGrad = "gather"

_OVERRIDES: dict[str, Any] = {"forward": None, "backward": None, "feature_grad": None}


@contextlib.contextmanager
def kernel_config(forward: KernelConfig | None = None, backward: KernelConfig | None = None,
                  feature_grad: FeatureGrad | None = None) -> Iterator[None]:
    """Use fixed blockings / feature-gradient strategy inside the block (tests, sweeps)."""
    if feature_grad not in (None, "gather", "scatter"):
        raise ValueError(f"feature_grad must be 'gather' or 'scatter', got {feature_grad!r}")
    previous = dict(_OVERRIDES)
    _OVERRIDES.update(forward=forward, backward=backward, feature_grad=feature_grad)
    try:
        yield
    finally:
        _OVERRIDES.update(previous)


def _feature_grad() -> FeatureGrad:
    return _OVERRIDES["feature_grad"] or DEFAULT_FEATURE_GRAD


def _config(problem: _Problem, backward: bool) -> KernelConfig:
    chosen = _OVERRIDES["backward" if backward else "forward"]
    if chosen is not None:
        return chosen
    return default_config(problem.channels_per_group, backward, problem.element_size)


# ----------------------------------------------------------------------------------------------
# Kernel modules: compiled (the package module) and interpreted (a private copy).

_INTERPRETED: ModuleType | None = None


def _interpreted_sum(x: Any, axis: int) -> Any:
    """``tl.sum`` for the interpreted copy: the reduce builtin with Triton's sum combiner,
    which the interpreter evaluates with numpy (the combiner itself is never called)."""
    import triton.language as tl

    return tl.reduce(x, axis, tl.standard._sum_combine)


def kernels(interpret: bool) -> ModuleType:
    """The module holding the kernels, compiled or run by Triton's interpreter."""
    global _INTERPRETED
    if not interpret:
        from dgmn.ops.triton import _kernels

        return _kernels
    if _INTERPRETED is None:
        from dgmn.ops.triton import _kernels

        name = "dgmn.ops.triton._kernels_interpreted"
        spec = importlib.util.spec_from_file_location(name, _kernels.__file__)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = True
            spec.loader.exec_module(module)
        module._sum = _interpreted_sum
        sys.modules[name] = module
        _INTERPRETED = module
    return _INTERPRETED


_RATES_CACHE: dict[tuple[tuple[int, ...], torch.device], Tensor] = {}


def _rates_tensor(rates: tuple[int, ...], device: torch.device) -> Tensor:
    """The rates as an int32 tensor on ``device`` (cached: no host→device copy per call)."""
    key = (rates, device)
    if key not in _RATES_CACHE:
        _RATES_CACHE[key] = torch.tensor(rates, dtype=torch.int32, device=device)
    return _RATES_CACHE[key]


#: The compiled kernels of the last launches (GPU only), for resource reports.
LAST_COMPILED: dict[str, Any] = {}


@dataclass(frozen=True)
class _Problem:
    batch: int
    channels: int
    height: int
    width: int
    num_rates: int
    groups: int
    kernel_size: int
    element_size: int = 2

    @property
    def channels_per_group(self) -> int:
        return self.channels // self.groups


def _launch_shape(problem: _Problem, config: KernelConfig) -> tuple[tuple[int, int], int]:
    chunks = triton.cdiv(problem.channels_per_group, config.block_c)
    tiles = triton.cdiv(problem.height, config.tile_h) * triton.cdiv(problem.width, config.tile_w)
    programs = problem.batch * problem.groups * chunks
    if programs > 65535:
        raise ValueError(f"B·G·ceil(C/G / block_c) = {programs} exceeds the grid limit 65535")
    return (tiles, programs), chunks


def _forward(features_cl: Tensor, walks: Tensor | None, weights: Tensor, rates: Tensor,
             out: Tensor, problem: _Problem, interpret: bool) -> None:
    config = _config(problem, backward=False)
    grid, chunks = _launch_shape(problem, config)
    walks_arg = walks if walks is not None else features_cl
    walk_strides = walks.stride() if walks is not None else (0,) * 6
    compiled = kernels(interpret).dgmn_fwd_kernel[grid](
        features_cl, walks_arg, weights, rates, out,
        problem.height, problem.width, problem.channels_per_group, problem.groups,
        problem.num_rates,
        *features_cl.stride(), *walk_strides, *weights.stride(), *out.stride(),
        KS=problem.kernel_size, HAS_WALKS=walks is not None, CHUNKS=chunks,
        TILE_H=config.tile_h, TILE_W=config.tile_w, BLOCK_C=config.block_c,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    if compiled is not None and not interpret:
        LAST_COMPILED["forward"] = compiled


def _inverse_index(walks: Tensor, rates: Tensor, problem: _Problem, config: KernelConfig,
                   interpret: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Samples sorted by bilinear cell, per-cell offsets and the longest list per tile.

    Returns ``order`` (int32 sample ids of the flat ``(B, S, K, H, W)`` order, sorted by
    cell, stable), ``starts`` (int32, ``B·(cells + 1) + 1`` offsets into ``order``) and
    ``tile_max`` (int32 ``(B, tiles)``: the most samples any cell list read by a tile holds).
    """
    p = problem
    total = p.batch * p.num_rates * p.kernel_size**2 * p.height * p.width
    if total >= 2**31:
        raise ValueError("B·S·K·H·W must be below 2**31 for the gather backward")
    keys = torch.empty(total, dtype=torch.int32, device=walks.device)
    block = 1024
    kernels(interpret).dgmn_cell_keys_kernel[(triton.cdiv(total, block),)](
        walks, rates, keys, p.height, p.width, p.num_rates, total, *walks.stride(),
        KS=p.kernel_size, BLOCK=block, num_warps=4)
    cells = (p.height + 1) * (p.width + 1)
    # sort + searchsorted, not bincount: bincount syncs with the host to size its output
    sorted_keys, order = torch.sort(keys, stable=True)
    order = order.to(torch.int32)
    boundaries = torch.arange(p.batch * (cells + 1) + 1, dtype=torch.int32,
                              device=walks.device)
    starts = torch.searchsorted(sorted_keys, boundaries, out_int32=True)
    counts = starts[1:] - starts[:-1]
    # A tile of TILE_H × TILE_W targets reads the (TILE_H+1) × (TILE_W+1) cells at its corner.
    tiles_h = triton.cdiv(p.height, config.tile_h)
    tiles_w = triton.cdiv(p.width, config.tile_w)
    grid_counts = counts.view(p.batch, cells + 1)[:, :cells].view(p.batch, 1, p.height + 1,
                                                                   p.width + 1)
    padded = torch.nn.functional.pad(grid_counts.float(), (
        0, tiles_w * config.tile_w + 1 - (p.width + 1),
        0, tiles_h * config.tile_h + 1 - (p.height + 1)))
    tile_max = torch.nn.functional.max_pool2d(
        padded, kernel_size=(config.tile_h + 1, config.tile_w + 1),
        stride=(config.tile_h, config.tile_w))
    return order, starts, tile_max.view(p.batch, tiles_h * tiles_w).to(torch.int32)


def _feature_gradient(walks: Tensor | None, weights: Tensor, rates: Tensor, grad_out: Tensor,
                      problem: _Problem, dtype: torch.dtype, interpret: bool) -> Tensor:
    """``∂L/∂features`` ``(B, C, H, W)`` (channels_last strides) by gather or by scatter."""
    p = problem
    module = kernels(interpret)
    config = _config(p, backward=True)
    grid, chunks = _launch_shape(p, config)
    walks_arg = walks if walks is not None else weights
    walk_strides = walks.stride() if walks is not None else (0,) * 6
    common = dict(KS=p.kernel_size, HAS_WALKS=walks is not None, CHUNKS=chunks,
                  TILE_H=config.tile_h, TILE_W=config.tile_w, BLOCK_C=config.block_c,
                  num_warps=config.num_warps, num_stages=config.num_stages)
    if _feature_grad() == "scatter":
        # fp32 channels-last grad_out: its register layout equals the fp32 atomics', so the
        # compiler needs no shared-memory layout conversion per sample.
        grad_out = grad_out.to(torch.float32, memory_format=torch.channels_last)
        buffer = torch.zeros((p.batch, p.height, p.width, p.channels), dtype=torch.float32,
                             device=grad_out.device)
        compiled = module.dgmn_bwd_feat_kernel[grid](
            walks_arg, weights, rates, grad_out, buffer,
            p.height, p.width, p.channels_per_group, p.groups, p.num_rates,
            *walk_strides, *weights.stride(), *grad_out.stride(), *buffer.stride()[:3],
            **common)
        grad = buffer.permute(0, 3, 1, 2).to(dtype)
    else:
        grad = torch.empty((p.batch, p.channels, p.height, p.width), dtype=dtype,
                           device=grad_out.device, memory_format=torch.channels_last)
        if walks is not None:
            order, starts, tile_max = _inverse_index(walks, rates, p, config, interpret)
        else:
            order = starts = tile_max = rates  # unused without walks
        compiled = module.dgmn_bwd_feat_gather_kernel[grid](
            walks_arg, weights, rates, grad_out, grad, order, starts, tile_max,
            p.height, p.width, p.channels_per_group, p.groups, p.num_rates,
            *walk_strides, *weights.stride(), *grad_out.stride(), *grad.stride(), **common)
    if compiled is not None and not interpret:
        LAST_COMPILED["backward_features"] = compiled
    return grad


def _backward(features_cl: Tensor, walks: Tensor | None, weights: Tensor, rates: Tensor,
              grad_out: Tensor, problem: _Problem, needs: tuple[bool, bool, bool],
              interpret: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Launch the feature-gradient kernel and the parameter kernel (walks, weights).

    ``grad_out`` is channels-last in its own dtype; returns gradients in the inputs' dtypes.
    """
    need_feat, need_walk, need_weight = needs
    need_walk = need_walk and walks is not None
    p = problem
    device = features_cl.device
    k = p.kernel_size * p.kernel_size
    grad_feat = grad_walk = grad_weight = None
    if need_feat:
        grad_feat = _feature_gradient(walks, weights, rates, grad_out, p, features_cl.dtype,
                                      interpret)
    if need_walk or need_weight:
        config = _config(p, backward=True)
        grid, chunks = _launch_shape(p, config)
        atomic_walk = p.groups * chunks > 1
        atomic_weight = chunks > 1
        if need_walk:
            assert walks is not None
            grad_walk = torch.empty((p.batch, p.num_rates, k, 2, p.height, p.width),
                                    dtype=torch.float32 if atomic_walk else walks.dtype,
                                    device=device)
            if atomic_walk:
                grad_walk.zero_()
        if need_weight:
            grad_weight = torch.empty((p.batch, p.num_rates, p.groups, k, p.height, p.width),
                                      dtype=torch.float32 if atomic_weight else weights.dtype,
                                      device=device)
            if atomic_weight:
                grad_weight.zero_()
        walks_arg = walks if walks is not None else features_cl
        walk_strides = walks.stride() if walks is not None else (0,) * 6
        gk = grad_walk if grad_walk is not None else features_cl
        gt = grad_weight if grad_weight is not None else features_cl
        gk_strides = grad_walk.stride()[:4] if grad_walk is not None else (0,) * 4
        gt_strides = grad_weight.stride()[:4] if grad_weight is not None else (0,) * 4
        compiled = kernels(interpret).dgmn_bwd_param_kernel[grid](
            features_cl, walks_arg, weights, rates, grad_out, gk, gt,
            p.height, p.width, p.channels_per_group, p.groups, p.num_rates,
            *features_cl.stride(), *walk_strides, *weights.stride(), *grad_out.stride(),
            *gk_strides, *gt_strides,
            KS=p.kernel_size, HAS_WALKS=walks is not None, CHUNKS=chunks,
            TILE_H=config.tile_h, TILE_W=config.tile_w, BLOCK_C=config.block_c,
            NEED_WALK=need_walk, NEED_WEIGHT=need_weight,
            ATOMIC_WALK=atomic_walk, ATOMIC_WEIGHT=atomic_weight,
            num_warps=config.num_warps, num_stages=config.num_stages,
        )
        if compiled is not None and not interpret:
            LAST_COMPILED["backward_params"] = compiled
        if grad_walk is not None:
            grad_walk = grad_walk.to(walks.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weights.dtype)
    return grad_feat, grad_walk, grad_weight


class FusedAggregation(torch.autograd.Function):
    """Autograd Function of the fused aggregation (see :func:`aggregate_fused`)."""

    @staticmethod
    def forward(ctx: FunctionCtx, features: Tensor, walks: Tensor | None, weights: Tensor,
                rates: tuple[int, ...], kernel_size: int) -> Tensor:
        batch, channels, height, width = features.shape
        problem = _Problem(batch, channels, height, width, len(rates), weights.shape[2],
                           kernel_size, features.element_size())
        interpret = not features.is_cuda
        # Channels-last: each bilinear corner reads C/G contiguous channels. A no-op when the
        # caller already works in channels_last; the copy is what backward keeps.
        features_cl = features.contiguous(memory_format=torch.channels_last)
        rates_t = _rates_tensor(rates, features.device)
        out = torch.empty_like(features)  # same memory format as the input
        _forward(features_cl, walks, weights, rates_t, out, problem, interpret)
        ctx.save_for_backward(features_cl, walks, weights)
        ctx.problem = problem
        ctx.rates = rates
        ctx.interpret = interpret
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        features_cl, walks, weights = ctx.saved_tensors
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        if not any(needs):
            return None, None, None, None, None
        rates_t = _rates_tensor(ctx.rates, features_cl.device)
        # channels-last: each sample reads a contiguous run of channels of grad_out
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        grad_feat, grad_walk, grad_weight = _backward(
            features_cl, walks, weights, rates_t, grad_out, ctx.problem, needs, ctx.interpret)
        return grad_feat, grad_walk, grad_weight, None, None


def _check_inputs(features: Tensor, walks: Tensor | None, weights: Tensor,
                  rates: tuple[int, ...], kernel_size: int) -> None:
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    batch, channels, height, width = features.shape
    s, k = len(rates), kernel_size * kernel_size
    if weights.dim() != 6 or weights.shape[:2] != (batch, s) or weights.shape[3:] != (
            k, height, width):
        raise ValueError(f"weights must be (B, S, G, K, H, W) = ({batch}, {s}, G, {k}, {height}, "
                         f"{width}), got {tuple(weights.shape)}")
    groups = weights.shape[2]
    if groups <= 0 or channels % groups != 0:
        raise ValueError(f"groups G={groups} (weights.shape[2]) must divide C={channels}")
    if walks is not None and tuple(walks.shape) != (batch, s, k, 2, height, width):
        raise ValueError(f"walks must have shape {(batch, s, k, 2, height, width)}, "
                         f"got {tuple(walks.shape)}")
    for name, tensor in (("walks", walks), ("weights", weights)):
        if tensor is None:
            continue
        if tensor.device != features.device:
            raise ValueError(f"{name} is on {tensor.device}, features on {features.device}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {tensor.dtype}")
    if height * width * channels >= 2**31:
        raise ValueError("one image of features must hold fewer than 2**31 elements")


def aggregate_fused(features: Tensor, walks: Tensor | None, weights: Tensor,
                    rates: Sequence[int], kernel_size: int) -> Tensor:
    """Fused multi-rate grouped aggregation; same semantics as ``aggregate_reference``.

    ``m[b, c, i] = Σ_q Σ_k weights[b, q, g(c), k, i] · ϱ(features[b, c], p_i + ρ_q δ_k + Δd_qk)``
    with ``g(c) = c // (C/G)`` and bilinear corners outside the map reading zero.

    Args:
        features: ``(B, C, H, W)`` fp32, bf16 or fp16 (any memory format; channels_last
            avoids one copy).
        walks: ``(B, S, K, 2, H, W)`` walks in pixels ``(dy, dx)``, or ``None`` (uniform).
        weights: ``(B, S, G, K, H, W)`` per-neighbour weights; expanded (stride-0) views are
            read in place.
        rates: the S positive integer rates.
        kernel_size: odd k, K = k².
    Returns:
        ``(B, C, H, W)`` messages in ``features``' dtype and memory format. Accumulation is
        fp32. CUDA tensors run the compiled kernels, CPU tensors Triton's interpreter (slow,
        for tests). float64 inputs go to the reference (the kernels accumulate in fp32).
    """
    rates = check_rates(rates)
    kernel_size = check_kernel_size(kernel_size)
    _check_inputs(features, walks, weights, rates, kernel_size)
    if features.dtype not in _SUPPORTED_DTYPES:
        if features.dtype == torch.float64:
            return aggregate_reference(features, walks, weights, rates, kernel_size)
        raise TypeError(f"features must be float32, bfloat16 or float16, got {features.dtype}")
    if features.numel() == 0:
        return aggregate_reference(features, walks, weights, rates, kernel_size)
    return FusedAggregation.apply(features, walks, weights, rates, kernel_size)
