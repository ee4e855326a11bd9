"""Dilated FCN with an optional context module (paper §4.1 "Baseline models", Table 1).

``image (B, 3, H, W) → dilated ResNet → layer4 (B, C5, H/8, W/8) → 3×3 conv to 512 + BN + ReLU
→ [context module] → dropout → 1×1 classifier → bilinear upsampling → (B, K, H, W)``.

The paper: "A randomly initialised 3×3 convolution layer, together with batch normalisation and
ReLU is used after the backbone to produce a dimension-reduced feature map of 512 channels which
is then fed into the final classifier" and "our DGMN module is randomly initialised and inserted
between the 3×3 convolution layer and the final classifier".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.fcn import FCNHead
from torchvision.ops.misc import Conv2dNormActivation

from dgmn._checks import check_positive_int
from dgmn.models.backbones import backbone_spec, build_resnet, stage_out_channels
from dgmn.nn import build_context_module

__all__ = ["DilatedFCN"]


class DilatedFCN(nn.Module):
    """Dilated FCN (Yu & Koltun 2016; the paper's Cityscapes baseline) with a context module.

    Args:
        backbone: a name of :data:`dgmn.models.backbones.BACKBONES`.
        num_classes: K output classes (19 for Cityscapes trainIds).
        context: a name of :data:`dgmn.nn.CONTEXT_MODULES` (``"dgmn"``, ``"nonlocal"``, …) or
            ``None`` for the plain Dilated FCN.
        context_kwargs: keyword arguments of the context module (e.g. ``{"rates": [1, 6, 12,
            24, 36], "groups": 4}`` for DGMN); its ``in_channels`` is ``channels``.
        channels: width of the 3×3 reduction conv (512 in the paper).
        output_stride: 8 (the paper), 16 or 32.
        multi_grid: layer4 multi-grid unit rates, e.g. ``(1, 2, 4)`` (the paper's Table 5). A
            grid longer than layer4 is cut to its blocks, as mmsegmentation's ResNet does: the
            one-block ``resnet_tiny`` of the CPU profiles takes ``(1,)`` from ``(1, 2, 4)``.
        weights: backbone weights, ``None`` | ``"imagenet"`` | path to a local state dict.
        dropout: ``Dropout2d`` probability before the classifier.
        aux_head: add torchvision's :class:`~torchvision.models.segmentation.fcn.FCNHead` on
            layer3 (res4) for an auxiliary loss (not used by the paper; off by default).
        align_corners: of the final bilinear upsampling (``True`` is exact for sizes 8k + 1,
            e.g. 769 crops).

    Shapes:
        ``forward(images (B, 3, H, W)) → logits (B, K, H, W)`` for any H, W. With ``aux_head``
        and in training mode it returns ``{"out": logits, "aux": aux_logits}`` instead (both
        ``(B, K, H, W)``); in eval mode always the logits tensor.
    """

    def __init__(self, backbone: str = "resnet101", num_classes: int = 19,
                 context: str | None = None, context_kwargs: Mapping[str, Any] | None = None,
                 channels: int = 512, output_stride: int = 8,
                 multi_grid: Sequence[int] | None = None,
                 weights: str | os.PathLike[str] | None = None, dropout: float = 0.1,
                 aux_head: bool = False, align_corners: bool = False) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("channels", channels)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got dropout={dropout!r}")
        if context_kwargs is not None and not isinstance(context_kwargs, Mapping):
            raise ValueError(f"context_kwargs must be a mapping or None, got {context_kwargs!r}")
        if context is None and context_kwargs:
            raise ValueError(f"context_kwargs={dict(context_kwargs)!r} given without a context")
        self.num_classes = num_classes
        self.context_name = context
        self.align_corners = bool(align_corners)

        if multi_grid is not None:
            multi_grid = tuple(multi_grid)[: backbone_spec(backbone).layers[3]]
        resnet = build_resnet(backbone, weights=weights, output_stride=output_stride,
                              multi_grid=multi_grid)
        return_layers = {"layer4": "out", **({"layer3": "aux"} if aux_head else {})}
        in_channels = stage_out_channels(resnet, "layer4")
        aux_channels = stage_out_channels(resnet, "layer3")
        self.backbone = IntermediateLayerGetter(resnet, return_layers=return_layers)

        self.reduce = Conv2dNormActivation(in_channels, channels, 3)
        if context is None:
            self.context: nn.Module = nn.Identity()
            context_channels = channels
        else:
            self.context = build_context_module(context, channels, **(context_kwargs or {}))
            context_channels = self.context.out_channels
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(context_channels, num_classes, 1)
        self.aux_head = FCNHead(aux_channels, num_classes) if aux_head else None
        self._init_head()

    def _init_head(self) -> None:
        """Random init of the new layers (the context module initialises itself)."""
        nn.init.kaiming_normal_(self.reduce[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def _upsample(self, x: Tensor, size: Sequence[int]) -> Tensor:
        return F.interpolate(x, size=tuple(size), mode="bilinear",
                             align_corners=self.align_corners)

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        size = images.shape[-2:]
        features = self.backbone(images)
        x = self.context(self.reduce(features["out"]))
        logits = self._upsample(self.classifier(self.dropout(x)), size)
        if self.aux_head is not None and self.training:
            return {"out": logits, "aux": self._upsample(self.aux_head(features["aux"]), size)}
        return logits
