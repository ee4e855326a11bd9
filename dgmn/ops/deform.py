"""Deformable convolution (DCNv1/v2) with a fast CPU path.

:func:`torchvision.ops.deform_conv2d` is the reference, but its CPU backward is a per-pixel
loop: on the ``default`` profile's CPU training one DGMN with dynamic sampling spent 70 % of
its module time in it. For the "same"-size case every module here uses (stride 1, padding
``dilation·(k-1)/2``), a deformable convolution is a bilinear read of the K walked neighbours
(:func:`~dgmn.ops.reference.bilinear_neighbours`, one ``grid_sample``) followed by one matrix
product with the weights — the same numbers, with vectorised forward and backward. Other
strides, paddings and groups, and every CUDA tensor, go to torchvision.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import deform_conv2d as _torchvision_deform_conv2d

from dgmn.ops.reference import bilinear_neighbours

__all__ = ["deform_conv2d"]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _sampled_form_applies(x: Tensor, weight: Tensor, offset: Tensor, stride: tuple[int, int],
                          padding: tuple[int, int], dilation: tuple[int, int]) -> bool:
    """Whether the bilinear-read form computes this call: CPU, square odd kernel, no groups,
    one offset group, stride 1 and "same" padding."""
    k_h, k_w = weight.shape[-2:]
    return (x.device.type == "cpu" and k_h == k_w and k_h % 2 == 1
            and weight.shape[1] == x.shape[1] and offset.shape[1] == 2 * k_h * k_w
            and stride == (1, 1) and dilation[0] == dilation[1]
            and padding == (dilation[0] * (k_h // 2),) * 2)


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, mask: Tensor | None = None) -> Tensor:
    """:func:`torchvision.ops.deform_conv2d` with its arguments and results.

    Args:
        x: ``(B, C_in, H, W)``.
        offset: ``(B, 2K, H_out, W_out)``, ``(dy, dx)`` per kernel tap in row-major order.
        weight: ``(C_out, C_in / groups, k, k)``; ``bias``: ``(C_out,)`` or ``None``.
        mask: ``(B, K, H_out, W_out)`` modulation (DCNv2) or ``None``.
    Returns:
        ``(B, C_out, H_out, W_out)``.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if not _sampled_form_applies(x, weight, offset, stride, padding, dilation):
        return _torchvision_deform_conv2d(x, offset, weight, bias, stride=stride,
                                          padding=padding, dilation=dilation, mask=mask)
    batch, channels, height, width = x.shape
    k = weight.shape[-1]
    walks = offset.view(batch, k * k, 2, height, width)
    sampled = bilinear_neighbours(x, walks, k, dilation[0])  # (B, C_in, K, H, W)
    if mask is not None:
        sampled = sampled * mask.unsqueeze(1)
    # the weights applied to the K read neighbours: a 1×1 convolution over C_in·K channels
    # (a conv, so MAC counters see the deformable conv's weights × positions)
    return F.conv2d(sampled.reshape(batch, channels * k * k, height, width),
                    weight.reshape(weight.shape[0], channels * k * k, 1, 1), bias)
