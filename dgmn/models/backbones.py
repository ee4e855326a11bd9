"""torchvision ResNet / ResNeXt backbones: dilation (output stride), multi-grid, weights.

Every backbone is a plain :class:`torchvision.models.resnet.ResNet` (torchvision's own class and
blocks), so torchvision's state dicts, :class:`~torchvision.ops.FrozenBatchNorm2d`,
:class:`~torchvision.models._utils.IntermediateLayerGetter` and
:class:`~torchvision.models.detection.backbone_utils.BackboneWithFPN` apply unchanged.

Names (:data:`BACKBONES`):

- ``resnet50``, ``resnet101``: ResNet-50/101 (He et al. 2016), torchvision ``IMAGENET1K_V1``
  weights (the original Caffe-style-trained torchvision checkpoints);
- ``resnext101_32x8d``: ResNeXt-101 32×8d (Xie et al. 2017), the paper's Table 4 backbone;
- ``resnet_tiny``: a CPU-sized ResNet for tests and the ``default`` profile: torchvision's
  ``ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=16)``, i.e. ResNet-50's block type and
  stage output channels (256, 512, 1024, 2048) with one block per stage and a 1/4-wide bottleneck
  (16·k instead of 64·k channels in the 1×1/3×3/1×1 branch); 3.5M parameters without ``fc``, no
  pretrained weights. Bottleneck rather than BasicBlock because torchvision's BasicBlock refuses
  dilation, and dilation (output stride 8) is what the segmentation model needs; it also makes
  "every 3×3 conv of a stage" mean the same thing as on ResNet-50.
- ``resnet_micro``: ``resnet_tiny``'s blocks and bottleneck widths (16, 32, 64, 128) with
  4× narrower stage outputs (64, 128, 256, 512) and a 16-channel stem: the same layout of
  strides, dilations and 3×3 convs (so the same receptive field) at about a fifth of the CPU
  time per training iteration. torchvision has no ``planes`` argument, so the stages are
  rebuilt with its own ``_make_layer``.
- ``resnet_nano``: ``resnet_micro`` with res4 and res5 halved again (bottlenecks 16, 32, 32,
  64; outputs 64, 128, 128, 256), the same receptive field; the ``default`` profile's
  backbone (a Dilated FCN training iteration about half of ``resnet_micro``'s on 2 CPU cores).

Output stride 8 / 16 uses torchvision's ``replace_stride_with_dilation``: layer3 (res4) and
layer4 (res5) keep stride 1 and dilate by 2 and 4. As in torchvision (and DeepLab / mmseg's
``contract_dilation``), the first block of a dilated stage uses the previous stage's dilation
(layer3: 1, 2, 2, …; layer4: 2, 4, 4). Multi-grid (DeepLabv3 §3.2; the paper's Table 5) sets the
3×3 dilation of layer4's block ``i`` to ``d · multi_grid[i]`` with ``d`` layer4's dilation
(4 at output stride 8, so (1, 2, 4) gives 4, 8, 16), first block included.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models import get_weight
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from dgmn.errors import DgmnError

__all__ = [
    "BACKBONES",
    "OUTPUT_STRIDES",
    "STAGES",
    "BackboneSpec",
    "BackboneWeightsError",
    "BlockLayout",
    "backbone_spec",
    "block_layout",
    "build_resnet",
    "load_backbone_weights",
    "stage_out_channels",
]

#: The four residual stages of a torchvision ResNet, paper name → attribute name.
STAGES: dict[str, str] = {"res2": "layer1", "res3": "layer2", "res4": "layer3", "res5": "layer4"}

#: Supported output strides → torchvision's ``replace_stride_with_dilation`` (layer2..layer4).
OUTPUT_STRIDES: dict[int, list[bool]] = {
    32: [False, False, False],
    16: [False, False, True],
    8: [False, True, True],
}
#: layer4's dilation (that of its blocks after the first) at each output stride.
LAYER4_DILATION: dict[int, int] = {32: 1, 16: 2, 8: 4}



@dataclass(frozen=True)
class BlockLayout:
    """Attribute names inside a torchvision residual block type."""

    convs_3x3: tuple[tuple[str, str], ...]  # every 3×3 conv and the BN that follows it
    branch_end: tuple[str, str]  # the last conv and BN of the residual branch


BLOCK_LAYOUT: dict[type[nn.Module], BlockLayout] = {
    Bottleneck: BlockLayout((("conv2", "bn2"),), ("conv3", "bn3")),
    BasicBlock: BlockLayout((("conv1", "bn1"), ("conv2", "bn2")), ("conv2", "bn2")),
}


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone with :class:`torchvision.models.resnet.ResNet`."""

    block: type[BasicBlock | Bottleneck]
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64
    imagenet_weights: str | None = None  # a torchvision weights enum value, e.g. "X.IMAGENET1K_V1"
    #: the stem's channels and each stage's ``planes`` (its output is ``planes · expansion``);
    #: torchvision's ResNets are (64, (64, 128, 256, 512))
    stem_width: int = 64
    planes: tuple[int, int, int, int] = (64, 128, 256, 512)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet_tiny": BackboneSpec(Bottleneck, (1, 1, 1, 1), width_per_group=16),
    "resnet_micro": BackboneSpec(Bottleneck, (1, 1, 1, 1), stem_width=16,
                                 planes=(16, 32, 64, 128)),
    "resnet_nano": BackboneSpec(Bottleneck, (1, 1, 1, 1), stem_width=16,
                                planes=(16, 32, 32, 64)),
    "resnet50": BackboneSpec(Bottleneck, (3, 4, 6, 3),
                             imagenet_weights="ResNet50_Weights.IMAGENET1K_V1"),
    "resnet101": BackboneSpec(Bottleneck, (3, 4, 23, 3),
                              imagenet_weights="ResNet101_Weights.IMAGENET1K_V1"),
    "resnext101_32x8d": BackboneSpec(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8,
                                     imagenet_weights="ResNeXt101_32X8D_Weights.IMAGENET1K_V1"),
}


class BackboneWeightsError(DgmnError, RuntimeError):
    """Backbone weights could not be obtained or loaded (no network, missing or bad file)."""


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of ``name``; ``ValueError`` listing the known names."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone={name!r}; known: {', '.join(BACKBONES)}") from None


def _download_state_dict(weights_name: str) -> dict[str, torch.Tensor]:
    """Fetch a torchvision weights enum value's state dict (download or torch hub cache)."""
    return get_weight(weights_name).get_state_dict(progress=False, check_hash=True)


def _read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise TypeError(f"expected a state dict (a mapping), got {type(state).__name__}")
    return state


def load_backbone_weights(model: ResNet, name: str, weights: str | os.PathLike[str]) -> None:
    """Load ``weights`` (``"imagenet"`` or a local ``.pth`` state dict) into ``model`` in place.

    The classifier (``fc.*``) may be absent from a file; every other key must match. Any failure
    raises one :class:`BackboneWeightsError` naming the backbone and the weights value.
    """
    spec = backbone_spec(name)
    hint = ("pass weights=None to start from random initialisation, or weights=<path to a local "
            "torchvision ResNet state_dict (.pth)>")
    if weights == "imagenet":
        if spec.imagenet_weights is None:
            raise BackboneWeightsError(
                f"backbone={name!r} has no ImageNet weights (weights={weights!r}); {hint}")
        try:
            state: Mapping[str, Any] = _download_state_dict(spec.imagenet_weights)
        except Exception as err:
            raise BackboneWeightsError(
                f"could not get ImageNet weights for backbone={name!r} (weights={weights!r}, "
                f"torchvision {spec.imagenet_weights}; this needs network access or the file in "
                f"the torch hub cache): {type(err).__name__}: {err}. Download it elsewhere and "
                f"pass weights=<path to the .pth file>, or {hint}") from err
    else:
        if not os.path.isfile(weights):
            raise BackboneWeightsError(
                f"backbone={name!r}: weights={str(weights)!r} is neither 'imagenet' nor an "
                f"existing file; {hint}")
        try:
            state = _read_state_dict(weights)
        except Exception as err:
            raise BackboneWeightsError(
                f"backbone={name!r}: could not read weights={str(weights)!r}: "
                f"{type(err).__name__}: {err}; {hint}") from err
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise BackboneWeightsError(
            f"backbone={name!r}: weights={str(weights)!r} do not fit: {err}") from err
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise BackboneWeightsError(
            f"backbone={name!r}: weights={str(weights)!r} do not fit: missing keys "
            f"{missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected keys "
            f"{list(unexpected)[:5]}{'…' if len(unexpected) > 5 else ''}")


def block_layout(block: nn.Module) -> BlockLayout:
    """The :class:`BlockLayout` of a torchvision block; ``TypeError`` for other modules."""
    try:
        return BLOCK_LAYOUT[type(block)]
    except KeyError:
        raise TypeError(f"unsupported residual block type {type(block).__name__}; known: "
                        f"{', '.join(t.__name__ for t in BLOCK_LAYOUT)}") from None


def stage_out_channels(model: ResNet, stage: str) -> int:
    """Output channels of ``stage`` (``"layer1"``…``"layer4"``) of a torchvision ResNet."""
    last = getattr(model, stage)[-1]
    return getattr(last, block_layout(last).branch_end[0]).out_channels


def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    """Give a stride-1 3×3 conv ``dilation`` and the padding that keeps its size."""
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation * (conv.kernel_size[0] // 2), dilation * (conv.kernel_size[1] // 2))


def _rebuild_narrow(model: ResNet, spec: BackboneSpec, dilate: Sequence[bool]) -> None:
    """Replace the stem, the four stages and ``fc`` of ``model`` by ones of the spec's widths,
    initialised as torchvision initialises a ResNet. Uses torchvision's own ``_make_layer``
    (private, torchvision pinned): the blocks, strides and dilations are built exactly as in
    ``ResNet.__init__``, only with other ``planes``."""
    norm = model._norm_layer
    model.inplanes, model.dilation = spec.stem_width, 1
    model.conv1 = nn.Conv2d(3, spec.stem_width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = norm(spec.stem_width)
    model.layer1 = model._make_layer(spec.block, spec.planes[0], spec.layers[0])
    for index, stage in enumerate(("layer2", "layer3", "layer4"), start=1):
        setattr(model, stage, model._make_layer(spec.block, spec.planes[index],
                                                spec.layers[index], stride=2,
                                                dilate=dilate[index - 1]))
    model.fc = nn.Linear(spec.planes[3] * spec.block.expansion, model.fc.out_features)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_resnet(name: str = "resnet50", weights: str | os.PathLike[str] | None = None,
                 output_stride: int = 32, multi_grid: Sequence[int] | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> ResNet:
    """Build a torchvision ResNet by name, optionally dilated and with pretrained weights.

    Args:
        name: a key of :data:`BACKBONES`.
        weights: ``None`` (random init), ``"imagenet"`` (torchvision's ImageNet weights,
            downloaded or from the torch hub cache) or a path to a local ResNet state dict.
        output_stride: 32 (classification layout), 16 or 8 (dilated, segmentation).
        multi_grid: per-block unit rates of layer4 (one per block), e.g. ``(1, 2, 4)``.
        norm_layer: normalisation layer (default ``nn.BatchNorm2d``; detection passes
            :class:`~torchvision.ops.FrozenBatchNorm2d`).

    Returns:
        The ResNet, ``(B, 3, H, W) → layer4 (B, C5, ⌈H/s⌉, ⌈W/s⌉)`` with ``s = output_stride``
        (its ``avgpool``/``fc`` are left in place; wrappers take the stages they need).
    """
    spec = backbone_spec(name)
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"unsupported output_stride={output_stride!r} for backbone={name!r}; "
                         f"supported: {sorted(OUTPUT_STRIDES)}")
    grid = None if multi_grid is None else tuple(multi_grid)
    if grid is not None and (len(grid) != spec.layers[3] or any(
            isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid)):
        raise ValueError(f"multi_grid={multi_grid!r} must give one positive int per block of "
                         f"layer4 ({spec.layers[3]} blocks for backbone={name!r})")
    model = ResNet(spec.block, list(spec.layers), groups=spec.groups,
                   width_per_group=spec.width_per_group,
                   replace_stride_with_dilation=OUTPUT_STRIDES[output_stride],
                   norm_layer=norm_layer)
    if (spec.stem_width, spec.planes) != (64, (64, 128, 256, 512)):
        _rebuild_narrow(model, spec, OUTPUT_STRIDES[output_stride])
    if weights is not None:
        load_backbone_weights(model, name, weights)
    if grid is not None:
        base = LAYER4_DILATION[output_stride]
        for block, unit in zip(model.layer4, grid, strict=True):
            for conv_name, _ in block_layout(block).convs_3x3:
                _set_dilation(getattr(block, conv_name), base * unit)
    return model

