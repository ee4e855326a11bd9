"""Dual attention (Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019).

A baseline of the DGMN paper (Table 3).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from dgmn._checks import check_positive_int, check_probability

__all__ = ["ChannelAttention", "DualAttention", "PositionAttention"]


class PositionAttention(nn.Module):
    """DANet position attention module (PAM).

    ``y_i = x_i + γ Σ_j softmax_j(q_i · k_j) v_j`` over all N = H·W positions; q, k are 1×1 convs
    to ``key_channels``, v a 1×1 conv to C; γ starts at 0. The key conv has no bias (the softmax
    cancels it). Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, key_channels: int) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("key_channels", key_channels)
        self.query = nn.Conv2d(in_channels, key_channels, 1)
        self.key = nn.Conv2d(in_channels, key_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (conv(x).flatten(2) for conv in (self.query, self.key, self.value))
        attn = torch.einsum("bci,bcj->bij", q, k).softmax(dim=-1)  # (B, N, N)
        out = torch.einsum("bij,bcj->bci", attn, v).view_as(x)
        return x + self.gamma * out


class ChannelAttention(nn.Module):
    """DANet channel attention module (CAM).

    With ``A = x`` reshaped to ``(B, C, N)``: energy ``E = A Aᵀ`` (C×C), attention
    ``softmax(max_j E_ij - E_ij)`` over j (as in DANet), ``y = x + γ · attention · A``; γ starts
    at 0. No other parameters. Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        a = x.flatten(2)
        energy = torch.einsum("bin,bjn->bij", a, a)
        energy = energy.amax(dim=-1, keepdim=True) - energy
        attn = energy.softmax(dim=-1)
        out = torch.einsum("bij,bjn->bin", attn, a).view_as(x)
        return x + self.gamma * out


class DualAttention(nn.Module):
    """DANet head without its classifier: a position and a channel attention branch, summed.

    Each branch is 3×3 conv + BN + ReLU (C → C_i), its attention module, 3×3 conv + BN + ReLU
    (C_i → C_i); the sum of the two branches goes through dropout and a 1×1 conv (with bias)
    to ``out_channels``.

    With ``in_channels=512`` and the defaults it has 1,562,258 parameters (1.56M).

    Args:
        in_channels: C, input channels.
        out_channels: output channels. Default ``in_channels``.
        inter_channels: C_i, channels inside the branches. Default ``in_channels // 4``.
        reduction: PAM query/key channels are ``inter_channels // reduction`` (must be ≥ 1).
        dropout: dropout probability before the 1×1 conv, in ``[0, 1)``.

    Shapes:
        ``(B, C, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None,
                 inter_channels: int | None = None, reduction: int = 8,
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        if out_channels is None:
            out_channels = in_channels
        check_positive_int("out_channels", out_channels)
        if inter_channels is None:
            inter_channels = in_channels // 4
        check_positive_int("inter_channels", inter_channels)
        check_positive_int("reduction", reduction)
        if inter_channels // reduction < 1:
            raise ValueError(f"inter_channels={inter_channels} is too small for "
                             f"reduction={reduction} (no query/key channels left)")
        check_probability("dropout", dropout)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.inter_channels = inter_channels

        attentions = [PositionAttention(inter_channels, inter_channels // reduction),
                      ChannelAttention()]
        self.branches = nn.ModuleList(
            nn.Sequential(Conv2dNormActivation(in_channels, inter_channels, 3), attention,
                          Conv2dNormActivation(inter_channels, inter_channels, 3))
            for attention in attentions
        )
        self.dropout = nn.Dropout2d(dropout)
        self.project = nn.Conv2d(inter_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = sum(branch(x) for branch in self.branches)
        return self.project(self.dropout(y))
