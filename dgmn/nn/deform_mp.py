"""The "deformable message passing" baseline of the paper's Table 2 (§4.1, baseline (i)).

DGMN's message-passing layer with its message calculation done by randomly initialised
modulated deformable convolutions (DCNv2) instead of the dynamic op: the offsets are learned,
but the filters are static (shared by every node) and there are no predicted affinities::

    m = Σ_q β_q DCN_q(h)        (one 3×3 deformable conv C→C per rate ρ_q, dilated by ρ_q)
    h' = ReLU(f + BN(m))        (Eq. 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dgmn._checks import check_positive_int
from dgmn.nn.deform_conv import ModulatedDeformConv2d
from dgmn.ops import check_kernel_size, check_rates


class DeformableMessagePassing(nn.Module):
    """Deformable message passing; ``(B, C, H, W) → (B, C, H, W)``.

    Args:
        in_channels: C.
        rates: dilation of each deformable conv (φ); the paper's baseline uses one, ρ = 1.
        kernel_size: k of every deformable conv.
        beta_init: initial value of the per-rate scales β.
    """

    def __init__(self, in_channels: int, rates: Sequence[int] = (1,), kernel_size: int = 3,
                 beta_init: float = 1.0) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        self.rates = check_rates(rates)
        self.kernel_size = check_kernel_size(kernel_size)
        self.in_channels = self.out_channels = in_channels
        self.messages = nn.ModuleList(
            ModulatedDeformConv2d(in_channels, in_channels, kernel_size,
                                  padding=rate * (kernel_size // 2), dilation=rate)
            for rate in self.rates)
        self.betas = nn.Parameter(torch.full((len(self.rates),), float(beta_init)))
        self.norm = nn.BatchNorm2d(in_channels)

    def forward(self, features: Tensor) -> Tensor:
        message = sum(beta * conv(features) for beta, conv in zip(self.betas, self.messages,
                                                                  strict=True))
        return torch.relu(features + self.norm(message))
