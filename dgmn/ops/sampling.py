"""Sampling grids of the dynamic message-passing op (paper §3.3).

The K = k×k neighbours of a receiving node i at rate ρ sit on the grid dilated by ρ
(uniform sampling); learned walks Δd (Eq. 4) move each of them by a real-valued offset and
the features there are read with a bilinear sampler (Eq. 5), zero outside the map.

Coordinates are in pixels of the feature map, ordered ``(dy, dx)`` as in
:func:`torchvision.ops.deform_conv2d`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_rates(rates: Sequence[int]) -> tuple[int, ...]:
    """Validate the sampling rates φ: a non-empty sequence of positive integers."""
    rates = tuple(rates)
    if len(rates) == 0:
        raise ValueError("rates must be a non-empty sequence of positive integers, got rates=()")
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise ValueError(f"rates must hold positive integers, got rate={rate!r} in {rates}")
    return rates


def check_kernel_size(kernel_size: int) -> int:
    """Validate the kernel size k (K = k×k neighbours): a positive odd integer."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size}")
    return kernel_size


def neighbour_offsets(kernel_size: int, rate: int, *, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """Uniform-sampling displacements of the K neighbours at one rate.

    Returns ``(K, 2)``: row-major over the k×k window, ``(dy, dx) = ρ·(i - k//2, j - k//2)``.
    """
    half = kernel_size // 2
    steps = torch.arange(-half, half + 1, dtype=dtype, device=device) * rate
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dy.reshape(-1), dx.reshape(-1)], dim=1)


def sampling_positions(walks: Tensor | None, kernel_size: int, rate: int, height: int,
                       width: int, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Absolute sampling positions of every neighbour of every node at one rate.

    Args:
        walks: ``(B, K, 2, H, W)`` learned walks Δd (Eq. 4) or ``None`` (uniform sampling).
    Returns:
        ``(B or 1, K, 2, H, W)`` positions ``p_i + ρ·δ_k + Δd_k`` in pixels, ``(y, x)``.
    """
    base = neighbour_offsets(kernel_size, rate, dtype=dtype, device=device)  # (K, 2)
    ys = torch.arange(height, dtype=dtype, device=device).view(1, height, 1)
    xs = torch.arange(width, dtype=dtype, device=device).view(1, 1, width)
    grid = torch.stack(torch.broadcast_tensors(ys, xs), dim=0).squeeze(1)  # (2, H, W)
    positions = (grid.unsqueeze(0) + base.view(-1, 2, 1, 1)).unsqueeze(0)  # (1, K, 2, H, W)
    if walks is not None:
        positions = positions + walks
    return positions
