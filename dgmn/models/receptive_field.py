"""The theoretical receptive field of a dense-prediction model, measured on the model itself.

The theoretical receptive field of an output pixel is the set of input pixels that can change
it. It is found here without walking the architecture by hand: a float64 copy of the model is
made *monotone* — every convolution weight positive, biases zero, batch norm the identity, max
pooling replaced by average pooling over the same window (same support) — and fed a positive
image, so every activation is positive, every ReLU passes its gradient and no sum cancels. The
gradient of one output pixel with respect to the input is then nonzero exactly on the pixels
connected to it through the network: its receptive field, including padding, dilation, strides
and the final bilinear upsampling. A model whose output depends on the input through anything
but convolutions, pooling, pointwise maps and interpolation (attention, learned offsets, global
pooling) has no bounded field; use it on models without a context module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ReceptiveField", "receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """How far an output pixel sees, in input pixels, from the output pixel's own position:
    the field is rows ``[y - up, y + down]`` and columns ``[x - left, x + right]``."""

    up: int
    down: int
    left: int
    right: int

    @property
    def radius(self) -> int:
        """The farthest reach in any direction (Chebyshev): a pixel farther than this from an
        output pixel, along rows or along columns, cannot change it."""
        return max(self.up, self.down, self.left, self.right)

    @property
    def size(self) -> tuple[int, int]:
        """``(rows, columns)`` spanned by the field."""
        return self.up + self.down + 1, self.left + self.right + 1


def _monotone_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy with positive weights, zero biases, identity batch norms and
    average instead of max pooling (see the module docstring)."""
    mono = copy.deepcopy(model).double().eval()
    for name, module in list(mono.named_modules()):
        if isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
            with torch.no_grad():
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_parameters()  # running mean 0, var 1, weight 1, bias 0
            module.eps = 0.0
        elif isinstance(module, nn.MaxPool2d):
            parent_name, _, child = name.rpartition(".")
            parent = mono.get_submodule(parent_name) if parent_name else mono
            setattr(parent, child, nn.AvgPool2d(module.kernel_size, module.stride,
                                                module.padding, module.ceil_mode))
    return mono


def _field_at(mono: nn.Module, height: int, width: int, y: int, x: int
              ) -> ReceptiveField | None:
    """The field of output pixel ``(y, x)`` on a ``height × width`` probe, or ``None`` when
    it reaches the probe's border (it may be clipped there)."""
    image = torch.ones(1, 3, height, width, dtype=torch.float64, requires_grad=True)
    out = mono(image)
    out = out["out"] if isinstance(out, dict) else out
    out[0, 0, y, x].backward()
    rows, cols = torch.nonzero(image.grad[0].abs().sum(0) > 0, as_tuple=True)
    top, bottom, first, last = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    if top == 0 or first == 0 or bottom == height - 1 or last == width - 1:
        return None
    return ReceptiveField(up=y - top, down=bottom - y, left=x - first, right=last - x)


def receptive_field(model: nn.Module, image_size: tuple[int, int] = (256, 256), *,
                    phases: int = 16) -> ReceptiveField:
    """The theoretical receptive field of ``model``'s output pixels: the farthest reach in each
    direction over ``phases`` consecutive output positions (a strided network's field shifts
    with the pixel's position on the stride grid; ``phases`` should be a multiple of the
    output stride).

    Args:
        model: maps ``(1, 3, H, W)`` images to ``(1, K, H, W)`` logits (a tensor, or a dict with
            ``"out"``); left unchanged.
        image_size: ``(H, W)`` of the probe image; doubled until every field fits inside it, so
            zero padding at the image border never clips one.
    """
    mono = _monotone_copy(model)
    height, width = image_size
    while True:
        y0, x0 = height // 2 - phases // 2, width // 2 - phases // 2
        fields = [_field_at(mono, height, width, y0 + k, x0 + k) for k in range(phases)]
        if all(f is not None for f in fields):
            return ReceptiveField(up=max(f.up for f in fields), down=max(f.down for f in fields),
                                  left=max(f.left for f in fields),
                                  right=max(f.right for f in fields))
        height, width = 2 * height, 2 * width
