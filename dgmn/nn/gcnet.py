"""Global context block (Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks
and Beyond", arXiv 2019 / ICCVW 2019).

A baseline of the DGMN paper on COCO (Table 2 "+ GCNet", after res4 and in every res5 block).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgmn._checks import check_positive_int, check_reduced_channels

__all__ = ["ContextBlock"]


class ContextBlock(nn.Module):
    """GC block with attention pooling and additive fusion.

    ``context = Σ_j softmax_j(W_k x_j) x_j`` (one weight per position, shared by all queries),
    ``y = x + W_v2 ReLU(LN(W_v1 context))`` broadcast over H×W, with ``W_v1: C → C·ratio``.
    ``W_v2`` is zero-initialised, so the block is the identity at initialisation. ``W_k`` has no
    bias: the softmax over positions cancels it.

    With ``in_channels=512`` and ``ratio=1/4`` it has 132,480 parameters (0.13M).

    Args:
        in_channels: C, channels of the input and of the output.
        ratio: bottleneck ratio, ``int(C · ratio) ≥ 1`` channels in the transform.

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, ratio: float = 1.0 / 4) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio <= 0:
            raise ValueError(f"ratio must be a positive float, got ratio={ratio!r}")
        planes = check_reduced_channels(in_channels, int(in_channels * ratio), f"ratio={ratio!r}",
                                        "int(in_channels * ratio)")
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.planes = planes

        self.attention = nn.Conv2d(in_channels, 1, 1, bias=False)
        self.transform = nn.Sequential(
            nn.Conv2d(in_channels, planes, 1),
            nn.LayerNorm([planes, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, in_channels, 1),
        )
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def spatial_pool(self, x: Tensor) -> Tensor:
        """Attention pooling: ``(B, C, H, W) -> (B, C, 1, 1)``."""
        weights = self.attention(x).flatten(1).softmax(dim=1)  # (B, N)
        context = torch.einsum("bcn,bn->bc", x.flatten(2), weights)
        return context[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x + self.transform(self.spatial_pool(x))
