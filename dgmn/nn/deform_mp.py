"""The "deformable message passing" baseline of the paper's Table 2 (§4.1, baseline (i)).

"A variant of our model using randomly initialised deformable convolutions for message
calculation, but without using the proposed dynamic sampling and dynamic weights/affinities":
DGMN's res4 module with its message computed by one deformable convolution (DCNv1: learned
offsets, one static filter shared by every node, no mask, no affinities), at the reduced width
of the authors' code (:class:`~dgmn.nn.reduced.ReducedResidual`, C → C/4 → C)::

    h = ReLU(GN(W_down x))
    m = DCN(h; offsets = conv3×3(h))             C/4 → C/4
    y = x + ReLU(GN(W_up (h + m)))

Every conv is bias-free and initialised U(±1/√fan_in) (PyTorch's default for ``nn.Conv2d``,
the authors' deformable conv's own rule), so the offsets start random, not at zero. At
C = 1024: 0.53M (shell) + 9·256·18 (offsets) + 9·256·256 (DCN) = 1.16M parameters.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from dgmn._checks import check_positive_int
from dgmn.nn.reduced import ReducedResidual
from dgmn.ops import check_kernel_size
from dgmn.ops.deform import deform_conv2d


class DeformableMessage(nn.Module):
    """``h + DCN(h)``: a k×k deformable conv C→C whose offsets a k×k conv predicts from ``h``.

    Shapes: ``(B, C, H, W) → (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        self.kernel_size = check_kernel_size(kernel_size)
        self.in_channels = self.out_channels = in_channels
        self.padding = kernel_size // 2
        self.offsets = nn.Conv2d(in_channels, 2 * kernel_size ** 2, kernel_size,
                                 padding=self.padding, bias=False)
        self.weight = nn.Parameter(self.offsets.weight.new_empty(
            in_channels, in_channels, kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(±1/√fan_in) for the offset predictor and the deformable filter."""
        for weight in (self.offsets.weight, self.weight):
            bound = 1.0 / math.sqrt(weight[0].numel())
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, h: Tensor) -> Tensor:
        return h + deform_conv2d(h, self.offsets(h), self.weight, padding=self.padding)


class DeformableMessagePassing(ReducedResidual):
    """Deformable message passing; ``(B, C, H, W) → (B, C, H, W)``.

    Args:
        in_channels: C.
        kernel_size: k of the deformable conv and of its offset predictor.
        reduction: width reduction r of the shell (4 in the authors' code).
        norm_groups: GroupNorm groups of the shell (default: 32, the authors', where it
            divides C/r; see :class:`~dgmn.nn.reduced.ReducedResidual`).
    """

    def __init__(self, in_channels: int, kernel_size: int = 3, reduction: int = 4,
                 norm_groups: int | None = None) -> None:
        check_positive_int("in_channels", in_channels)
        check_positive_int("reduction", reduction)
        body = DeformableMessage(max(in_channels // reduction, 1), kernel_size)
        super().__init__(in_channels, body, reduction=reduction, norm_groups=norm_groups)
