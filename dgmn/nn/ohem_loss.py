"""Online hard example mining cross-entropy for segmentation (the paper's Table 5 "OHEM").

Keeps the pixels whose predicted probability of their true class is below ``threshold``;
if fewer than ``min_kept`` pixels are that hard, keeps the ``min_kept`` hardest instead (all
pixels when there are fewer). The loss is the mean cross-entropy over the kept pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OhemCrossEntropy(nn.Module):
    """``(B, N, H, W)`` logits, ``(B, H, W)`` targets → scalar loss."""

    def __init__(self, threshold: float = 0.7, min_kept: int = 100_000,
                 ignore_index: int = 255) -> None:
        super().__init__()
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got threshold={threshold}")
        if min_kept < 0:
            raise ValueError(f"min_kept must be >= 0, got min_kept={min_kept}")
        self.threshold = threshold
        self.min_kept = min_kept
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        losses = F.cross_entropy(logits, target, ignore_index=self.ignore_index,
                                 reduction="none").flatten()
        valid = target.flatten() != self.ignore_index
        losses = losses[valid]
        if losses.numel() == 0:
            return logits.sum() * 0.0
        # p(true class) < threshold  <=>  loss > -log(threshold)
        hard = losses > -torch.log(torch.tensor(self.threshold, dtype=losses.dtype))
        if int(hard.sum()) >= self.min_kept:
            return losses[hard].mean()
        kept = min(self.min_kept, losses.numel())
        return torch.topk(losses, kept).values.mean() if kept else losses.mean()
