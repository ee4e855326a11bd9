"""Vectorised PyTorch reference of the sampling + aggregation core (Eq. 3 and 5).

Runs on any device and dtype with autograd. One rate is processed at a time, so the largest
temporary is one rate's sampled neighbourhood ``(B, C, K, H, W)``; with ``memory_efficient``
each rate is recomputed in the backward pass instead of kept (activation checkpointing), so
the memory held for backward no longer grows with S.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from dgmn.ops.sampling import sampling_positions


def bilinear_neighbours(features: Tensor, walks: Tensor | None, kernel_size: int,
                        rate: int) -> Tensor:
    """Read the K neighbours of every node at one rate with the bilinear sampler ϱ (Eq. 5).

    Args:
        features: ``(B, C, H, W)``.
        walks: ``(B, K, 2, H, W)`` walks in pixels ``(dy, dx)``, or ``None``.
    Returns:
        ``(B, C, K, H, W)``; positions outside the map read zeros (per bilinear corner).
    """
    batch, _, height, width = features.shape
    positions = sampling_positions(walks, kernel_size, rate, height, width,
                                   dtype=features.dtype, device=features.device)
    positions = positions.expand(batch, -1, -1, -1, -1)
    k = positions.shape[1]
    # Pixel → normalised coordinates for align_corners=False: u = (2p + 1) / size - 1.
    # This mapping is exact for every size (also 1) and keeps pixel centres at integers.
    y = (2.0 * positions[:, :, 0] + 1.0) / height - 1.0  # (B, K, H, W)
    x = (2.0 * positions[:, :, 1] + 1.0) / width - 1.0
    grid = torch.stack([x, y], dim=-1).reshape(batch, k * height, width, 2)
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # (B, C, K*H, W)
    return sampled.view(batch, -1, k, height, width)


def _aggregate_one_rate(features: Tensor, walks: Tensor | None, weights: Tensor,
                        kernel_size: int, rate: int) -> Tensor:
    """``Σ_k weights[g, k] · ϱ(h, p + ρδ_k + Δd_k)`` for one rate; ``weights``: (B, G, K, H, W)."""
    batch, channels, height, width = features.shape
    groups, k = weights.shape[1], weights.shape[2]
    sampled = bilinear_neighbours(features, walks, kernel_size, rate)
    sampled = sampled.view(batch, groups, channels // groups, k, height, width)
    message = torch.einsum("bgckhw,bgkhw->bgchw", sampled, weights)
    return message.reshape(batch, channels, height, width)


def aggregate_reference(features: Tensor, walks: Tensor | None, weights: Tensor,
                        rates: Sequence[int], kernel_size: int, *,
                        memory_efficient: bool = False) -> Tensor:
    """Multi-rate grouped aggregation over walked neighbourhoods.

    ``m[b, c, i] = Σ_q Σ_k weights[b, q, g(c), k, i] · ϱ(features[b, c], p_i + ρ_q δ_k + Δd_qk)``

    Args:
        features: ``(B, C, H, W)`` node features h.
        walks: ``(B, S, K, 2, H, W)`` walks Δd in pixels ``(dy, dx)``, or ``None``.
        weights: ``(B, S, G, K, H, W)`` per-neighbour weights (β_q A'_q w_q of Eq. 5).
        rates: the S sampling rates φ.
        kernel_size: k, with K = k².
        memory_efficient: recompute each rate in backward instead of storing it.
    Returns:
        ``(B, C, H, W)`` messages.
    """
    checkpointed = memory_efficient and torch.is_grad_enabled()
    message = None
    for q, rate in enumerate(rates):
        walk = None if walks is None else walks[:, q]
        args = (features, walk, weights[:, q], kernel_size, rate)
        if checkpointed:
            part = checkpoint(_aggregate_one_rate, *args, use_reentrant=False)
        else:
            part = _aggregate_one_rate(*args)
        message = part if message is None else message + part
    assert message is not None  # rates is non-empty (validated by the caller)
    return message
