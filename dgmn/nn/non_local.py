"""Non-local block, embedded-Gaussian version (Wang et al., "Non-local Neural Networks", CVPR 2018).

The fully-connected-graph baseline of the DGMN paper: :class:`NonLocal2d` is the block inserted
into res4 of Mask R-CNN (Table 2); :class:`NonLocalHead`, the block followed by a 3×3 conv, is
the segmentation head whose size Table 1 "+ Non-local" reports.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

from dgmn._checks import check_positive_int

__all__ = ["NonLocal2d", "NonLocalHead"]


class NonLocal2d(nn.Module):
    """Embedded-Gaussian Non-local block with a residual connection.

    ``y = x + BN(W(softmax(θ(x)ᵀ φ(x)) g(x)))`` (Wang et al. 2018, Eq. 1-3 and 6): every position
    attends to all N = H·W positions (or to the 2×2 max-pooled ones with ``sub_sample``). The
    embedded Gaussian uses unscaled dot products, so the attention runs through
    :func:`torch.nn.functional.scaled_dot_product_attention` with ``scale=1.0``; queries, keys
    and values are laid out contiguously as ``(B, 1, N, C')`` so that flash / memory-efficient
    kernels apply on GPU.

    The BN after W starts with weight 0, so the block is the identity at initialisation.
    φ has no bias: it would add ``θ_i·b`` to every logit of row i, which the softmax cancels.

    With ``in_channels=512`` (the paper's setting) it has 525,824 parameters (0.53M); Table 1's
    +2.88M is :class:`NonLocalHead`, this block plus a 3×3 512→512 conv.

    Args:
        in_channels: C, channels of the input and of the output.
        inter_channels: C', channels of θ, φ, g. Default ``max(in_channels // 2, 1)``.
        sub_sample: max-pool φ and g by 2×2 (``ceil_mode``, so odd sizes keep every pixel).

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, inter_channels: int | None = None,
                 sub_sample: bool = False) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        if inter_channels is None:
            inter_channels = max(in_channels // 2, 1)
        check_positive_int("inter_channels", inter_channels)
        self.in_channels = in_channels
        self.inter_channels = inter_channels
        self.out_channels = in_channels
        self.sub_sample = bool(sub_sample)

        self.theta = nn.Conv2d(in_channels, inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, inter_channels, 1, bias=False)
        self.g = nn.Conv2d(in_channels, inter_channels, 1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if self.sub_sample else nn.Identity()
        self.out_conv = nn.Conv2d(inter_channels, in_channels, 1, bias=False)
        self.out_bn = nn.BatchNorm2d(in_channels)
        nn.init.zeros_(self.out_bn.weight)

    @staticmethod
    def _to_tokens(x: Tensor) -> Tensor:
        """``(B, C', H, W) -> (B, 1, H·W, C')``, contiguous."""
        return x.flatten(2).transpose(1, 2).unsqueeze(1).contiguous()

    def attention(self, x: Tensor) -> Tensor:
        """``softmax(θᵀφ) g`` before W: ``(B, C, H, W) -> (B, C', H, W)``."""
        B, _, H, W = x.shape
        query = self._to_tokens(self.theta(x))
        key = self._to_tokens(self.pool(self.phi(x)))
        value = self._to_tokens(self.pool(self.g(x)))
        out = F.scaled_dot_product_attention(query, key, value, scale=1.0)  # (B, 1, N, C')
        return out.squeeze(1).transpose(1, 2).reshape(B, self.inter_channels, H, W)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.out_bn(self.out_conv(self.attention(x)))


class NonLocalHead(nn.Module):
    """The Non-local block followed by a 3×3 conv C→C + BN + ReLU: Table 1's "+ Non-local".

    This is mmsegmentation's ``NLHead`` layout (conv → Non-local → conv, no input concatenation)
    with its first conv left out, because the Dilated FCN's own 3×3 reduction conv plays that
    role. At C = 512 and C' = 256 its convolution weights are 4·512·256 (θ, φ, g, W) + 9·512²
    = 2,883,584 = the paper's 2.88M (biases and BNs add 2,560); on a 97×97 map (a 769×769
    crop at output stride 8) its MACs are 2,883,584·9409 = 27.13G for the convs plus
    2·9409²·256 = 45.33G for the attention, 72.46G against the paper's 73.33G (docs/model.md).

    Args:
        in_channels: C, channels of the input and of the output.
        inter_channels: C' of the block (default ``C // 2``).
        sub_sample: of the block, see :class:`NonLocal2d`.

    Shapes:
        ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, in_channels: int, inter_channels: int | None = None,
                 sub_sample: bool = False) -> None:
        super().__init__()
        self.block = NonLocal2d(in_channels, inter_channels, sub_sample)
        self.conv = Conv2dNormActivation(in_channels, in_channels, 3)
        self.in_channels = self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.block(x))
