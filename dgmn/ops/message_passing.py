"""The dynamic message-passing op (paper Eq. 3-7), functional and stateless.

For every receiving node i, every sampling rate ρ_q ∈ φ and every neighbour j of the k×k grid
dilated by ρ_q, moved by its learned walk Δd_j^q (Eq. 4) and read with a bilinear sampler ϱ:

    m_i = Σ_q β_q Σ_j A'^q_ij · w^q_ij ⊙ ϱ(h | p_i + ρ_q δ_j + Δd_j^q)          (Eq. 3, 5)
    A'^q_ij = softmax_j(a^q_ij)  over the K neighbours of rate q                 (Eq. 7)

with w^q_ij one scalar per (node, group, neighbour), shared by the C/G channels of a group
(grouped dynamic filters, §3.4). The op has no parameters; the predictors of Δd, w and a
live in :class:`dgmn.nn.DGMN`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from dgmn.ops.reference import aggregate_reference
from dgmn.ops.sampling import check_kernel_size, check_rates

Backend = Literal["auto", "reference", "triton"]


def _check_shape(name: str, tensor: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")


def message_weights(filters: Tensor | None, affinity_logits: Tensor | None, betas: Tensor,
                    num_neighbours: int) -> Tensor:
    """Combine β, the normalised affinities and the dynamic filters per neighbour.

    Args:
        filters: ``(B, S, G, K, H, W)`` dynamic filters w, or ``None`` (w ≡ 1, G = 1).
        affinity_logits: ``(B, S, K, H, W)`` logits a, or ``None`` (A' ≡ 1/K, the uniform
            average of a static graph with self-loops).
        betas: ``(S,)`` message scales β.
    Returns:
        ``(B, S, G, K, H, W)`` weights ``β_q · A'^q_ij · w^q_ij`` (broadcast dims may be 1).
    """
    scale = betas.view(1, -1, 1, 1, 1, 1)
    if affinity_logits is None:
        weights = scale / num_neighbours
    else:
        weights = scale * torch.softmax(affinity_logits, dim=2).unsqueeze(2)  # Eq. 7
    if filters is not None:
        weights = weights * filters
    return weights


def dynamic_message_passing(features: Tensor, rates: Sequence[int], betas: Tensor, *,
                            filters: Tensor | None = None,
                            affinity_logits: Tensor | None = None,
                            walks: Tensor | None = None,
                            kernel_size: int = 3,
                            memory_efficient: bool = False,
                            backend: Backend = "auto") -> Tensor:
    """Dynamic message calculation over S rates (Eq. 3-7).

    Args:
        features: ``(B, C, H, W)`` latent node features h.
        rates: φ, S positive integers (the dilation of each uniform sampling grid).
        betas: ``(S,)`` scale β_q of the message of rate q.
        filters: ``(B, S, G, K, H, W)`` dynamic filters (G must divide C), or ``None``.
        affinity_logits: ``(B, S, K, H, W)`` unnormalised affinities, or ``None``.
        walks: ``(B, S, K, 2, H, W)`` learned walks Δd in pixels ``(dy, dx)``, or ``None``
            for uniform sampling.
        kernel_size: k (odd); K = k².
        memory_efficient: trade compute for memory in the reference backward.
        backend: ``"auto"`` uses the fused Triton kernel for CUDA tensors when available and
            the PyTorch reference otherwise.
    Returns:
        ``(B, C, H, W)`` messages m.
    """
    rates = check_rates(rates)
    kernel_size = check_kernel_size(kernel_size)
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    batch, channels, height, width = features.shape
    num_rates, k = len(rates), kernel_size * kernel_size
    _check_shape("betas", betas, (num_rates,))
    groups = 1
    if filters is not None:
        if filters.dim() != 6:
            raise ValueError(f"filters must be (B, S, G, K, H, W), got {tuple(filters.shape)}")
        groups = filters.shape[2]
        if groups <= 0 or channels % groups != 0:
            raise ValueError(f"groups G={groups} (filters.shape[2]) must divide C={channels}")
        _check_shape("filters", filters, (batch, num_rates, groups, k, height, width))
    if affinity_logits is not None:
        _check_shape("affinity_logits", affinity_logits, (batch, num_rates, k, height, width))
    if walks is not None:
        _check_shape("walks", walks, (batch, num_rates, k, 2, height, width))

    weights = message_weights(filters, affinity_logits, betas, k)
    weights = weights.expand(batch, num_rates, groups, k, height, width)
    if backend not in ("auto", "reference", "triton"):
        raise ValueError(f"backend must be 'auto', 'reference' or 'triton', got {backend!r}")
    if backend == "triton" or (backend == "auto" and _fused_available(features)):
        from dgmn.ops.triton import aggregate_fused

        return aggregate_fused(features, walks, weights, rates, kernel_size)
    return aggregate_reference(features, walks, weights, rates, kernel_size,
                               memory_efficient=memory_efficient)


def _fused_available(features: Tensor) -> bool:
    """Whether the fused Triton kernel can run on ``features``' device."""
    if not features.is_cuda:
        return False
    try:
        from dgmn.ops.triton import aggregate_fused  # noqa: F401
    except ImportError:
        return False
    return True
