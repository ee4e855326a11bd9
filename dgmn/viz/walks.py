"""The nodes a DGMN module samples for one receiving node (what Fig. 4 draws)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dgmn.ops import neighbour_offsets


@torch.no_grad()
def sampled_nodes(module: Any, state: Tensor, receiver: Sequence[int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Uniform and walked sampling positions of one receiving node of a DGMN module.

    Args:
        module: a :class:`dgmn.nn.DGMN` (anything with ``rates``, ``kernel_size`` and
            ``predict_walks(state) -> (B, S, K, 2, H, W) | None``).
        state: ``(B, C, H, W)`` the module's input features; batch element 0 is used.
        receiver: ``(y, x)`` of the receiving node in feature cells.
    Returns:
        ``(positions, uniform)``, each ``(S, K, 2) float32`` ``(y, x)`` in feature cells:
        ``p_i + ρ·δ_k + Δd_k`` (walks included; equal to ``uniform`` without dynamic sampling)
        and ``p_i + ρ·δ_k``.
    """
    y, x = (int(v) for v in receiver)
    height, width = state.shape[-2:]
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"receiver {(y, x)} outside the {height}x{width} feature map")
    centre = torch.tensor([y, x], dtype=torch.float32)
    uniform = torch.stack([centre + neighbour_offsets(module.kernel_size, rate)
                           for rate in module.rates])  # (S, K, 2)
    walks = module.predict_walks(state)
    positions = uniform if walks is None else uniform + walks[0, :, :, :, y, x].float().cpu()
    return positions.numpy(), uniform.numpy()
