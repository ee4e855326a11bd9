"""Insert context modules into the stages of a torchvision ResNet (paper §4.1, Tables 2, 4, 7).

An insertion spec is a mapping ``{"module": <context module name>, "at": <point(s)>,
"kwargs": {...}}`` (``kwargs`` optional); ``module`` is a name of
:data:`dgmn.nn.CONTEXT_MODULES`, ``at`` one name of :data:`INSERTION_POINTS` / :data:`ALIASES`
or a list of them. Points, for ``k`` in 2…5 (``res{k}`` is torchvision's ``layer{k-1}``):

- ``res{k}``: one module right before the last residual block of the stage (Non-local's
  placement, Wang et al. 2018 §4.1; the paper's Table 2 "res4" rows). It sees the last block's
  input: the stage's output channels (1024 for res4 of ResNet-50), or the previous stage's for
  a one-block stage (``resnet_tiny``).
- ``c{k}``: one module after every 3×3 conv of the stage (the paper's "C5" / "C4, C5": "after all
  3×3 conv layers in res5"), ``len(stage)`` modules on Bottleneck stages. Placement inside the
  block, the authors' (their code's "after3x3" position, also mmdetection's ``after_conv2``
  plugin position): **conv → BN → ReLU → module → next conv**, i.e. the module reads the
  conv's normalised and rectified output and nothing rectifies its own output; the layer
  after it (``conv3`` of a Bottleneck) becomes ``Sequential(module, conv=conv3)``. The block's
  frozen BN still normalises the conv's own output, which is what its pretrained statistics
  describe. A BasicBlock's second 3×3 conv has no activation before the identity is added: its
  module goes after that conv's BN (``bn2`` becomes ``Sequential(bn=bn2, module)``). The same
  placement is used for every module name at ``c{k}``, baselines included.
- ``c{k}_residual``: one module at the end of every block's residual branch, after its last conv
  and BN and before the identity is added (GCNet's own placement, Cao et al. 2019 §4, and
  mmdetection's ``after_conv3`` plugin position); the block's last BN becomes
  ``Sequential(bn, module)``.
- aliases: ``c4_c5`` = ``c4`` + ``c5``, ``c3_c4_c5`` = ``c3`` + ``c4`` + ``c5``.

Modules named in :data:`CONV_REPLACEMENTS` (``"deformable"``) do not insert: at ``c{k}`` they
replace every 3×3 conv of the stage by a :class:`~dgmn.nn.deform_conv.ModulatedDeformConv2d`
with the same arguments and the conv's weights (DCNv2 "in C5", the paper's Table 2
"Deformable (C5)"); their own offset/mask predictor starts at zero.

Inserted modules are randomly initialised and keep their own (trainable) normalisation layers;
only the backbone's original BNs are frozen in detection. Names in the module tree:
``layer3.<name>`` for ``res4`` (the stage's blocks keep their indices, so backbone state dicts
still load), ``layer4.<i>.conv3.<name>`` for ``c5`` (the conv itself moves to ``…conv3.conv``;
backbone weights are loaded before insertion), ``layer4.<i>.bn3.<name>`` for ``c5_residual``
(the BN moves to ``…bn3.bn``), ``layer4.<i>.conv2`` for a replaced conv (same ``weight`` key,
plus ``offset_mask.*``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from dgmn._imports import import_target
from dgmn.models.backbones import BLOCK_LAYOUT, STAGES, block_layout
from dgmn.nn import build_context_module, context_module_class

__all__ = [
    "ALIASES",
    "CONV_REPLACEMENTS",
    "INSERTION_POINTS",
    "InsertSpec",
    "insert_modules",
    "parse_insert",
]

#: point name → (kind, torchvision stage attribute).
INSERTION_POINTS: dict[str, tuple[str, str]] = {}
for _res, _layer in STAGES.items():
    _k = _res[len("res"):]
    INSERTION_POINTS[f"res{_k}"] = ("before_last_block", _layer)
    INSERTION_POINTS[f"c{_k}"] = ("after_3x3", _layer)
    INSERTION_POINTS[f"c{_k}_residual"] = ("residual_end", _layer)

#: composite point names.
ALIASES: dict[str, tuple[str, ...]] = {"c4_c5": ("c4", "c5"), "c3_c4_c5": ("c3", "c4", "c5")}

#: modules that replace the 3×3 convs (only valid at ``c{k}`` points), name → import path.
CONV_REPLACEMENTS: dict[str, str] = {"deformable": "dgmn.nn.deform_conv:ModulatedDeformConv2d"}

_SPEC_KEYS = ("module", "at", "kwargs")

#: Per block type: where the module of each 3×3 conv goes at ``c{k}`` (see the module
#: docstring), 3×3 conv → (attribute, ``"before"`` it | ``"after"`` it).
AFTER_3X3_SLOTS: dict[type[nn.Module], dict[str, tuple[str, str]]] = {
    Bottleneck: {"conv2": ("conv3", "before")},
    BasicBlock: {"conv1": ("conv2", "before"), "conv2": ("bn2", "after")},
}


@dataclass(frozen=True)
class InsertSpec:
    """One validated insertion: ``module`` (registry name) at ``points`` with ``kwargs``."""

    module: str
    points: tuple[str, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _expand_points(at: object) -> tuple[str, ...]:
    names = [at] if isinstance(at, str) else at
    if not isinstance(names, Sequence) or isinstance(names, str) or len(names) == 0:
        raise ValueError(f"insertion point at={at!r} must be a point name or a non-empty list")
    points: list[str] = []
    for name in names:
        if isinstance(name, str) and name in ALIASES:
            points += ALIASES[name]
        elif isinstance(name, str) and name in INSERTION_POINTS:
            points.append(name)
        else:
            known = ", ".join([*INSERTION_POINTS, *ALIASES])
            raise ValueError(f"unknown insertion point at={name!r}; known: {known}")
    if len(set(points)) != len(points):
        raise ValueError(f"insertion point at={at!r} names a point twice")
    return tuple(points)


def parse_insert(insert: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
                 ) -> list[InsertSpec]:
    """Validate insertion specs (one mapping, a list of them, or ``None``) without building.

    Raises ``ValueError`` naming an unknown module, point or key.
    """
    if insert is None:
        return []
    items = [insert] if isinstance(insert, Mapping) else insert
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise ValueError(f"insert={insert!r} must be a mapping {{'module', 'at', 'kwargs'}}, a "
                         f"list of them, or None")
    specs = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ValueError(f"insertion spec {item!r} must be a mapping with keys {_SPEC_KEYS}")
        unknown = sorted(set(item) - set(_SPEC_KEYS))
        if unknown or "module" not in item or "at" not in item:
            raise ValueError(f"insertion spec {dict(item)!r}: needs keys 'module' and 'at' "
                             f"(optional 'kwargs'); unknown keys: {unknown}")
        module, points = item["module"], _expand_points(item["at"])
        kwargs = item.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"insertion spec kwargs={kwargs!r} must be a mapping")
        if module in CONV_REPLACEMENTS:
            bad = [p for p in points if INSERTION_POINTS[p][0] != "after_3x3"]
            if bad or kwargs:
                raise ValueError(f"module={module!r} replaces the 3×3 convs of a stage: use "
                                 f"at='c<k>' points without kwargs, got at={bad or points} "
                                 f"kwargs={dict(kwargs)}")
        else:
            context_module_class(module)  # ValueError naming an unknown module name
        specs.append(InsertSpec(module, points, dict(kwargs)))
    return specs


def _build(spec: InsertSpec, channels: int, where: str) -> nn.Module:
    module = build_context_module(spec.module, channels, **spec.kwargs)
    out = getattr(module, "out_channels", None)
    if out != channels:
        raise ValueError(f"module={spec.module!r} at {where} must keep its {channels} channels "
                         f"inside the backbone, but has out_channels={out}")
    return module


def _free_name(parent: nn.Module, name: str) -> str:
    candidate, i = name, 1
    while candidate in parent._modules:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def _append_after(block: nn.Module, attr: str, name: str, module: nn.Module) -> str:
    """``block.attr`` becomes ``Sequential(bn=block.attr, name=module)`` (or grows by one).

    The block's shared ``relu`` (in place in torchvision) may then act on the module's output,
    which modules ending in a ReLU of their own keep for their backward: it is made out of
    place (same values).
    """
    if isinstance(getattr(block, "relu", None), nn.ReLU) and block.relu.inplace:
        block.relu = nn.ReLU(inplace=False)
    current = getattr(block, attr)
    if not isinstance(current, nn.Sequential):
        current = nn.Sequential(OrderedDict([("bn", current)]))
        setattr(block, attr, current)
    name = _free_name(current, name)
    current.add_module(name, module)
    return f"{attr}.{name}"


def _insert_before(parent: nn.Module, attr: str, name: str, module: nn.Module) -> str:
    """``parent.attr`` becomes ``Sequential(name=module, conv=parent.attr)``, or, if it is a
    ``Sequential`` already (a stage, or a conv wrapped before), gets ``module`` right before its
    last child: later modules at one place run after the earlier ones."""
    current = getattr(parent, attr)
    if not isinstance(current, nn.Sequential):
        current = nn.Sequential(OrderedDict([("conv", current)]))
    *earlier, last = current.named_children()
    name = _free_name(current, name)
    setattr(parent, attr, nn.Sequential(OrderedDict([*earlier, (name, module), last])))
    return f"{attr}.{name}"


_ATTACH: dict[str, Callable[[nn.Module, str, str, nn.Module], str]] = {
    "after": _append_after, "before": _insert_before}


def _unwrapped(block: nn.Module, attr: str) -> nn.Module:
    """``block.attr``, or the layer at its end if insertion wrapped it in a ``Sequential``."""
    layer = getattr(block, attr)
    return layer.conv if isinstance(layer, nn.Sequential) and "conv" in layer._modules else layer


def _replace_conv(block: nn.Module, attr: str, replacement: Callable[..., nn.Module]) -> str:
    conv = _unwrapped(block, attr)
    if type(conv) is not nn.Conv2d:
        raise ValueError(f"cannot replace {attr} ({type(conv).__name__}): it is no longer a "
                         f"plain nn.Conv2d (replaced twice?)")
    new = replacement(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size,
                      stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                      groups=conv.groups, bias=conv.bias is not None)
    with torch.no_grad():  # keep (pretrained) conv weights; the offsets start at zero
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.weight.requires_grad_(conv.weight.requires_grad)
    wrapper = getattr(block, attr)
    if isinstance(wrapper, nn.Sequential):  # modules inserted before it stay in front
        wrapper.conv = new
        return f"{attr}.conv"
    setattr(block, attr, new)
    return attr


def _blocks(layer: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """The residual blocks of a stage (skipping modules inserted between blocks)."""
    return [(index, block) for index, block in layer.named_children()
            if type(block) in BLOCK_LAYOUT]


def _before_last_block(model: ResNet, stage: str, spec: InsertSpec, where: str) -> list[str]:
    layer: nn.Sequential = getattr(model, stage)
    module = _build(spec, layer[-1].conv1.in_channels, where)
    return [_insert_before(model, stage, spec.module, module)]


def _after_3x3(model: ResNet, stage: str, spec: InsertSpec, where: str) -> list[str]:
    names = []
    for index, block in _blocks(getattr(model, stage)):
        for conv, _bn in block_layout(block).convs_3x3:
            if spec.module in CONV_REPLACEMENTS:
                attr = _replace_conv(block, conv, import_target(CONV_REPLACEMENTS[spec.module]))
            else:
                module = _build(spec, _unwrapped(block, conv).out_channels, where)
                slot, position = AFTER_3X3_SLOTS[type(block)][conv]
                attr = _ATTACH[position](block, slot, spec.module, module)
            names.append(f"{stage}.{index}.{attr}")
    return names


def _residual_end(model: ResNet, stage: str, spec: InsertSpec, where: str) -> list[str]:
    names = []
    for index, block in _blocks(getattr(model, stage)):
        conv, bn = block_layout(block).branch_end
        module = _build(spec, _unwrapped(block, conv).out_channels, where)
        names.append(f"{stage}.{index}.{_append_after(block, bn, spec.module, module)}")
    return names


_INSERTERS: dict[str, Callable[[ResNet, str, InsertSpec, str], list[str]]] = {
    "before_last_block": _before_last_block,
    "after_3x3": _after_3x3,
    "residual_end": _residual_end,
}


def insert_modules(model: ResNet, insert: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
                   ) -> list[str]:
    """Insert (or, for :data:`CONV_REPLACEMENTS`, substitute) modules into ``model`` in place.

    Args:
        model: a torchvision ResNet (Bottleneck or BasicBlock stages).
        insert: spec(s), see the module docstring. Module names, points and spec keys are all
            validated before anything changes; module kwargs when each module is built.

    Returns:
        Qualified names (``model.get_submodule(name)``) of the new modules, in insertion order.
    """
    names: list[str] = []
    for spec in parse_insert(insert):
        for point in spec.points:
            kind, stage = INSERTION_POINTS[point]
            names += _INSERTERS[kind](model, stage, spec, f"{point} ({stage})")
    return names
