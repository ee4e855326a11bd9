"""Mask R-CNN with FPN and context modules inserted into the backbone (paper §4.1, Tables 2, 4, 7).

Built only from torchvision classes: :class:`~torchvision.models.resnet.ResNet` (with
:class:`~torchvision.ops.FrozenBatchNorm2d`: "All the batch normalisation layers in the backbone
are 'frozen' during fine-tuning on COCO"), :class:`~torchvision.models.detection.backbone_utils.
BackboneWithFPN` and :class:`~torchvision.models.detection.MaskRCNN`. Insertion points and their
placement inside the blocks are documented in :mod:`dgmn.models.insertion`.

Class convention: ``num_classes`` counts the background, labels are contiguous ``1..K`` with 0
background, so COCO's 80 categories give ``num_classes=81`` (not torchvision's sparse 91).
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from dgmn.metrics.complexity import Complexity, count_complexity
from dgmn.models.backbones import STAGES, build_resnet, stage_out_channels
from dgmn.models.insertion import insert_modules, parse_insert

__all__ = ["COCO_RATES", "DGMN_COCO_KWARGS", "MASK_RCNN_PRESETS", "PAPER_IMAGE_SIZE",
           "MaskRCNNTotals", "build_mask_rcnn", "mask_rcnn_totals", "resolve_insert",
           "trainable_parameters"]

#: The paper's DGMN settings on COCO: φ = {1, 4, 8, 12}, G = 4 (§4.1, supplementary).
COCO_RATES: tuple[int, ...] = (1, 4, 8, 12)
#: DGMN in the detection tables: the authors' residual form ``f + Σ_q β_q m_q`` (no
#: projections, bias-free predictors, their initialisation; see :mod:`dgmn.nn.dgmn`).
DGMN_COCO_KWARGS: dict[str, Any] = {"rates": list(COCO_RATES), "groups": 4, "form": "residual"}

#: Insertion specs of the paper's Mask R-CNN rows, keyed like ``tables.yaml`` (Tables 2, 4).
#: First part of Table 2: one module "right before the last residual block of res4" — for DGMN
#: and the deformable message-passing baseline the authors' reduced modules (C → C/4 → C, see
#: :mod:`dgmn.nn.reduced`); second part: "C5" = after every 3×3 conv of res5 (after its BN and
#: ReLU) — for GCNet too ("in the same locations"; GCNet's own end-of-branch placement is
#: ``at="c5_residual"``); Deformable (C5) replaces those convs.
MASK_RCNN_PRESETS: dict[str, tuple[dict[str, Any], ...]] = {
    "maskrcnn": (),
    "gcnet": ({"module": "gcnet", "at": "res4"},),
    "deformable_message_passing": ({"module": "deformable_message_passing", "at": "res4"},),
    "nonlocal": ({"module": "nonlocal", "at": "res4"},),
    "ccnet": ({"module": "ccnet", "at": "res4"},),
    "dgmn_res4": ({"module": "dgmn_reduced", "at": "res4", "kwargs": DGMN_COCO_KWARGS},),
    "gcnet_c5": ({"module": "gcnet", "at": "c5"},),
    "deformable_c5": ({"module": "deformable", "at": "c5"},),
    "dgmn_c5": ({"module": "dgmn", "at": "c5", "kwargs": DGMN_COCO_KWARGS},),
    "dgmn_c4_c5": ({"module": "dgmn", "at": "c4_c5", "kwargs": DGMN_COCO_KWARGS},),
}

#: Keyword arguments that MaskRCNN accepts besides ours (it forwards unknown ones silently).
_MASK_RCNN_KWARGS: frozenset[str] = frozenset(
    name
    for cls in (MaskRCNN, FasterRCNN, GeneralizedRCNNTransform)
    for name, p in inspect.signature(cls.__init__).parameters.items()
    if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "backbone", "num_classes")
)

InsertArg = str | Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def _preset(name: str) -> list[dict[str, Any]]:
    try:
        return copy.deepcopy(list(MASK_RCNN_PRESETS[name]))
    except KeyError:
        raise ValueError(f"unknown insert preset insert={name!r}; known presets: "
                         f"{', '.join(MASK_RCNN_PRESETS)} (or give a spec mapping)") from None


def resolve_insert(insert: InsertArg) -> list[dict[str, Any]]:
    """Turn an insertion argument into specs: a preset name (:data:`MASK_RCNN_PRESETS`); a
    preset with module arguments changed, ``{"preset": "dgmn_c5", "kwargs": {"rates": [1, 4, 8]}}``
    (the presets stay the one definition of the paper's placements and module settings; a table
    row states only what it varies); a spec; or a list of those."""
    if isinstance(insert, str):
        return _preset(insert)
    if insert is None:
        return []
    specs: list[dict[str, Any]] = []
    for item in [insert] if isinstance(insert, Mapping) else insert:
        if isinstance(item, str):
            specs += _preset(item)
        elif "preset" in item:
            unknown = set(item) - {"preset", "kwargs"}
            if unknown:
                raise ValueError(f"insert={dict(item)!r}: a preset takes only 'kwargs' besides "
                                 f"its name, got {sorted(unknown)}")
            changes = dict(item.get("kwargs") or {})
            specs += [{**spec, "kwargs": {**spec.get("kwargs", {}), **changes}}
                      for spec in _preset(item["preset"])]
        else:
            specs.append(dict(item))
    return specs


def build_mask_rcnn(backbone: str = "resnet50", num_classes: int = 81, insert: InsertArg = None,
                    weights: str | os.PathLike[str] | None = None, frozen_bn: bool | None = None,
                    trainable_layers: int | None = None, min_size: int = 800,
                    max_size: int = 1333, fpn_channels: int = 256, **kwargs: Any) -> MaskRCNN:
    """Mask R-CNN + FPN on a torchvision ResNet/ResNeXt, with context modules inserted.

    Args:
        backbone: ``resnet50``, ``resnet101``, ``resnext101_32x8d`` or ``resnet_tiny``.
        num_classes: K + 1 (background included; 81 for COCO with contiguous labels).
        insert: a preset name of :data:`MASK_RCNN_PRESETS` (e.g. ``"dgmn_c5"``), a preset
            with changed module arguments (``{"preset": "dgmn_c5", "kwargs": {"groups": 2}}``),
            a spec ``{"module": "dgmn", "at": "c5", "kwargs": {"rates": [1, 4, 8, 12]}}``, a
            list of those, or ``None``. See :mod:`dgmn.models.insertion` for the points.
        weights: backbone weights, ``None`` | ``"imagenet"`` | local state dict path.
        frozen_bn: backbone BNs as :class:`~torchvision.ops.FrozenBatchNorm2d` (the paper,
            which fine-tunes ImageNet weights) or trainable ``BatchNorm2d``. Default (``None``):
            frozen iff ``weights`` is given, torchvision's rule; frozen BN on randomly
            initialised weights would be the identity and leave the network unnormalised.
        trainable_layers: trainable stages counted from res5 (0…5), torchvision's convention;
            default 3 with ``weights`` (stem and res2 frozen, as Detectron's 1x) else 5.
        min_size, max_size: image resizing of torchvision's transform (800 / 1333 in the paper).
        fpn_channels: FPN width.
        **kwargs: further :class:`~torchvision.models.detection.MaskRCNN` arguments (e.g.
            ``box_detections_per_img``); unknown names raise ``ValueError``.

    Returns:
        A torchvision ``MaskRCNN``; ``model.inserted_modules`` lists the qualified names of the
        inserted (or substituted) modules. Train mode: ``model(images, targets) → loss dict``;
        eval: ``model(images) → [{"boxes", "labels", "scores", "masks"}]``.
    """
    unknown = sorted(set(kwargs) - _MASK_RCNN_KWARGS)
    if unknown:
        raise ValueError(f"unknown Mask R-CNN argument(s) {unknown}; accepted besides ours: "
                         f"{', '.join(sorted(_MASK_RCNN_KWARGS))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background included), "
                         f"got num_classes={num_classes!r}")
    specs = resolve_insert(insert)
    parse_insert(specs)  # validate everything before building anything
    if frozen_bn is None:
        frozen_bn = weights is not None
    if trainable_layers is None:
        trainable_layers = 3 if weights is not None else 5
    if isinstance(trainable_layers, bool) or trainable_layers not in range(6):
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers!r}")

    resnet = build_resnet(backbone, weights=weights, output_stride=32,
                          norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trainable.append("bn1")
    for name, parameter in resnet.named_parameters():
        if not any(name.startswith(prefix) for prefix in trainable):
            parameter.requires_grad_(False)
    stages = list(STAGES.values())
    in_channels = [stage_out_channels(resnet, stage) for stage in stages]
    inserted = insert_modules(resnet, specs)  # after freezing: new modules stay trainable

    body = BackboneWithFPN(resnet, return_layers={stage: str(i) for i, stage in enumerate(stages)},
                           in_channels_list=in_channels, out_channels=fpn_channels,
                           extra_blocks=LastLevelMaxPool())
    model = MaskRCNN(body, num_classes=num_classes, min_size=min_size, max_size=max_size,
                     **kwargs)
    model.inserted_modules = [f"backbone.body.{name}" for name in inserted]
    return model


#: The input of the paper's whole-model totals (§4.3): COCO images are resized to a shorter side
#: of 800 and a longer side of at most 1333 (§A.2.3); an 800×1333 image is the largest.
PAPER_IMAGE_SIZE: tuple[int, int] = (800, 1333)


def trainable_parameters(model: nn.Module) -> int:
    """Parameters that training updates: the paper's convention for its Mask R-CNN totals
    (R-101 baseline 63.1M, R-50 + DGMN (C4, C5) 51.1M, §4.3): frozen BN statistics and the
    frozen stem and res2 (``trainable_layers=3``) are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class MaskRCNNTotals:
    """Whole-model figures of one Mask R-CNN on one image: trainable parameters and the
    forward's MACs (:func:`dgmn.metrics.count_complexity`; ``None`` when not counted)."""

    trainable_params: int
    complexity: Complexity | None

    @property
    def params_m(self) -> float:
        return self.trainable_params / 1e6


@torch.no_grad()
def _calibrate_frozen_bn(model: MaskRCNN, images: list[torch.Tensor]) -> None:
    """Give every frozen BN of the backbone its input's per-channel mean and variance on
    ``images``, in execution order (each BN sees inputs already normalised upstream).

    Frozen BN without pretrained statistics is the identity, and without normalisation the
    activations of a deep random network (and DGMN's filters, linear in them) overflow; the
    heads' workload, which depends on finite scores, would then not be the model's.
    """
    def set_statistics(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        bn.running_mean.copy_(args[0].mean(dim=(0, 2, 3)))
        bn.running_var.copy_(args[0].var(dim=(0, 2, 3)))

    body = model.backbone.body
    handles = [m.register_forward_pre_hook(set_statistics) for m in body.modules()
               if isinstance(m, FrozenBatchNorm2d)]
    was_training = model.training
    model.eval()
    try:
        body(model.transform(images)[0].tensors)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def mask_rcnn_totals(insert: InsertArg = None, backbone: str = "resnet50",
                     image_size: tuple[int, int] | None = PAPER_IMAGE_SIZE,
                     num_classes: int = 81, **kwargs: Any) -> MaskRCNNTotals:
    """Totals in the paper's training setting (ImageNet-initialised backbone: frozen BN, stem
    and res2), without downloading weights; MACs of one eval forward on a random
    ``image_size`` image (``None``: parameters only, no forward).

    The heads' workload is the test-time one whatever the random weights predict: the frozen
    BNs get the image's statistics (:func:`_calibrate_frozen_bn`), the RPN passes its 1000
    proposals to the box head and all 100 detections go to the mask head
    (``box_score_thresh=0``). ``kwargs`` go to :func:`build_mask_rcnn`.
    """
    settings = {"box_score_thresh": 0.0, **kwargs}
    model = build_mask_rcnn(backbone, num_classes=num_classes, insert=insert, frozen_bn=True,
                            trainable_layers=3, **settings)
    counts = None
    if image_size is not None:
        generator = torch.Generator().manual_seed(0)
        images = [torch.rand(3, *image_size, generator=generator)]
        _calibrate_frozen_bn(model, images)
        counts = count_complexity(model, images)
    return MaskRCNNTotals(trainable_parameters(model), counts)
