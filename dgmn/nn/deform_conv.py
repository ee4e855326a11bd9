"""Modulated deformable convolution (Zhu et al., "Deformable ConvNets v2: More Deformable, Better
Results", CVPR 2019; Dai et al., "Deformable Convolutional Networks", ICCV 2017).

The deformable baselines of the DGMN paper: a context module on the Dilated FCN (Table 1
"+ Deformable") and a drop-in replacement of res5's 3×3 convs in Mask R-CNN (Table 2
"+ Deformable (C5)"). The sampling itself is :func:`torchvision.ops.deform_conv2d`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgmn._checks import check_positive_int
from dgmn.ops.deform import deform_conv2d

__all__ = ["DeformableConvContext", "ModulatedDeformConv2d"]


def _pair(name: str, value: int | tuple[int, int], minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, tuple) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair)):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, "
                         f"got {name}={value!r}")
    return pair


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 convolution, a drop-in replacement for ``nn.Conv2d`` with the same arguments.

    A regular conv with the same kernel size, stride, padding and dilation (``offset_mask``)
    predicts, for each output position, ``2·K`` offsets ``(dy, dx)`` (kernel taps in row-major
    order, the layout of :func:`torchvision.ops.deform_conv2d`) and ``K`` mask logits,
    ``K = kh·kw``; the mask is their sigmoid. ``offset_mask`` is zero-initialised: at the start
    every offset is 0 and every mask value ``sigmoid(0) = 0.5``, i.e. a regular conv with half
    the weight.

    ``weight`` and ``bias`` are named, shaped and initialised as in ``nn.Conv2d``, so a conv's
    state dict (e.g. pretrained res5 weights) loads with ``strict=False`` (only ``offset_mask.*``
    is missing).

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H_out, W_out)`` with ``H_out, W_out`` as
        for ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int] = 3, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels={in_channels} and out_channels={out_channels} must be "
                             f"divisible by groups={groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.dilation = _pair("dilation", dilation, 1)
        self.groups = groups
        taps = self.kernel_size[0] * self.kernel_size[1]

        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups,
                                               *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.offset_mask = nn.Conv2d(in_channels, 3 * taps, self.kernel_size, self.stride,
                                     self.padding, self.dilation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation for the conv; zeros for the offset/mask predictor."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def offsets_and_mask(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 2K, H_out, W_out)`` offsets and ``(B, K, H_out, W_out)`` mask in (0, 1)."""
        out = self.offset_mask(x)
        taps = out.shape[1] // 3
        return out[:, : 2 * taps], out[:, 2 * taps:].sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        offset, mask = self.offsets_and_mask(x)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride,
                             padding=self.padding, dilation=self.dilation, mask=mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")


class DeformableConvContext(nn.Module):
    """Deformable-convolution context module: 3×3 :class:`ModulatedDeformConv2d` + BN + ReLU.

    Default width: the paper's Table 1 reports +1.31M parameters at ``in_channels=512``. A 3×3
    DCN 512→256 has 9·512·256 = 1,179,648 weights and its offset/mask predictor
    9·512·27 + 27 = 124,443, which with the BN (512) gives 1,304,603 ≈ 1.30M; 512→512 would be
    2.5M. Hence ``out_channels`` defaults to ``in_channels // 2``.

    Args:
        in_channels: C, input channels.
        out_channels: output channels. Default ``max(in_channels // 2, 1)``.
        dilation: dilation of the 3×3 kernel (padding follows it, so the size is kept).

    Shapes:
        ``(B, C, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None,
                 dilation: int = 1) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        if out_channels is None:
            out_channels = max(in_channels // 2, 1)
        check_positive_int("out_channels", out_channels)
        check_positive_int("dilation", dilation)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv = ModulatedDeformConv2d(in_channels, out_channels, 3, padding=dilation,
                                          dilation=dilation)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))
