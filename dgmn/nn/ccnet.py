"""Criss-cross attention (Huang et al., "CCNet: Criss-Cross Attention for Semantic
Segmentation", ICCV 2019).

A baseline of the DGMN paper (Table 2 "+ CCNet", Table 3).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dgmn._checks import check_positive_int, check_reduced_channels

__all__ = ["CrissCrossAttention"]


class CrissCrossAttention(nn.Module):
    """Recurrent criss-cross attention (RCCA).

    One pass: every position ``u`` attends to the ``H + W - 1`` positions of its row and column
    (itself once), with logits ``q_u · k_v``, one softmax over all of them, and
    ``y_u = x_u + γ Σ_v A_uv v_v``. The pass is applied ``recurrence`` times with the same
    weights; two passes connect every pair of positions. γ starts at 0 (identity).

    Vectorised with einsum: memory ``O(B·H·W·(H+W))`` for the logits. The key conv has no bias
    (the softmax cancels it).

    With ``in_channels=512`` it has 328,257 parameters (0.33M).

    Args:
        in_channels: C, channels of the input, of the values and of the output.
        recurrence: R, number of passes (2 in CCNet).
        reduction: query/key channels are ``in_channels // reduction`` (must be ≥ 1).

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, recurrence: int = 2, reduction: int = 8) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("recurrence", recurrence)
        check_positive_int("reduction", reduction)
        key_channels = check_reduced_channels(in_channels, in_channels // reduction,
                                              f"reduction={reduction}",
                                              "query/key channels in_channels // reduction")
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.recurrence = recurrence
        self.key_channels = key_channels

        self.query = nn.Conv2d(in_channels, key_channels, 1)
        self.key = nn.Conv2d(in_channels, key_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def criss_cross(self, x: Tensor) -> Tensor:
        """One pass: ``(B, C, H, W) -> (B, C, H, W)``."""
        H, W = x.shape[-2:]
        q, k, v = self.query(x), self.key(x), self.value(x)
        # column logits (B, H, W, H'): position (h, w) with (h', w); the self term is masked here
        # and kept in the row logits.
        col = torch.einsum("bchw,bcgw->bhwg", q, k)
        self_mask = torch.eye(H, dtype=torch.bool, device=x.device).unsqueeze(1)  # (H, 1, H')
        col = col.masked_fill(self_mask, float("-inf"))
        row = torch.einsum("bchw,bchv->bhwv", q, k)  # (B, H, W, W'): (h, w) with (h, w')
        attn = torch.cat([col, row], dim=-1).softmax(dim=-1)
        attn_col, attn_row = attn.split([H, W], dim=-1)
        out = (torch.einsum("bhwg,bcgw->bchw", attn_col, v)
               + torch.einsum("bhwv,bchv->bchw", attn_row, v))
        return x + self.gamma * out

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.recurrence):
            x = self.criss_cross(x)
        return x
