"""A residual shell that runs a message-passing body at reduced width (C → C/r → C).

The authors' public code wraps the single modules it inserts between res4's blocks (the paper's
Table 2, first part: "deformable message passing" and DGMN "right before the last residual
block of res4") in the same shell::

    h = ReLU(GN(W_down x))            W_down: 1×1 conv C → C/r, no bias
    y = x + ReLU(GN(W_up body(h)))    W_up:   1×1 conv C/r → C, no bias

with GroupNorm of 32 groups on both sides and r = 4. The body keeps its C/r channels and is
itself residual (``h + message``): a deformable conv for the deformable message-passing
baseline, a residual-form :class:`~dgmn.nn.dgmn.DGMN` for DGMN at res4. At C = 1024 the shell
costs 2·1024·256 + 2·(256 + 1024) = 0.53M parameters.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from dgmn._checks import check_positive_int

#: GroupNorm groups of the authors' shell (maskrcnn-benchmark's default).
NORM_GROUPS = 32


class ReducedResidual(nn.Module):
    """``x + ReLU(GN(W_up · body(ReLU(GN(W_down x)))))``; ``(B, C, H, W) → (B, C, H, W)``.

    Args:
        in_channels: C.
        body: a module ``(B, C/r, H, W) → (B, C/r, H, W)`` exposing ``in_channels = C/r``.
        reduction: r; must divide C.
        norm_groups: groups of both GroupNorms; must divide C/r (and so C). Default: 32 (the
            authors') where it divides C/r — every ResNet width — else ``gcd(32, C/r)``.
    """

    def __init__(self, in_channels: int, body: nn.Module, reduction: int = 4,
                 norm_groups: int | None = None) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("reduction", reduction)
        if in_channels % reduction:
            raise ValueError(f"reduction={reduction} must divide in_channels={in_channels}")
        reduced = in_channels // reduction
        if norm_groups is None:
            norm_groups = math.gcd(NORM_GROUPS, reduced)
        check_positive_int("norm_groups", norm_groups)
        if reduced % norm_groups:
            raise ValueError(f"norm_groups={norm_groups} must divide in_channels // reduction = "
                             f"{reduced}")
        if getattr(body, "in_channels", None) != reduced:
            raise ValueError(f"body {type(body).__name__} must take in_channels // reduction = "
                             f"{reduced} channels, has in_channels="
                             f"{getattr(body, 'in_channels', None)}")
        self.in_channels = self.out_channels = in_channels
        self.reduction = reduction
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, reduced, 1, bias=False),
                                    nn.GroupNorm(norm_groups, reduced), nn.ReLU())
        self.body = body
        self.expand = nn.Sequential(nn.Conv2d(reduced, in_channels, 1, bias=False),
                                    nn.GroupNorm(norm_groups, in_channels), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return x + self.expand(self.body(self.reduce(x)))
