"""Name → class registry of the context modules that models can insert.

Every registered module maps ``(B, C, H, W) → (B, C_out, H, W)``, takes ``in_channels`` as its
first argument and exposes ``out_channels``. Entries are import paths so that building one
module does not import the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from dgmn._imports import import_target

CONTEXT_MODULES: dict[str, str] = {
    "dgmn": "dgmn.nn.dgmn:DGMN",
    "dgmn_da": "dgmn.nn.dgmn_variants:dgmn_da",
    "dgmn_da_dw": "dgmn.nn.dgmn_variants:dgmn_da_dw",
    "dgmn_da_dw_ds": "dgmn.nn.dgmn_variants:dgmn_da_dw_ds",
    "dgmn_reduced": "dgmn.nn.dgmn_variants:dgmn_reduced",
    "deformable_message_passing": "dgmn.nn.deform_mp:DeformableMessagePassing",
    "nonlocal": "dgmn.nn.non_local:NonLocal2d",
    "nonlocal_head": "dgmn.nn.non_local:NonLocalHead",
    "aspp": "dgmn.nn.aspp:ASPP",
    "deformable": "dgmn.nn.deform_conv:DeformableConvContext",
    "gcnet": "dgmn.nn.gcnet:ContextBlock",
    "ccnet": "dgmn.nn.ccnet:CrissCrossAttention",
    "danet": "dgmn.nn.danet:DualAttention",
}


def context_module_class(name: str) -> Callable[..., nn.Module]:
    """Return the class (or builder) registered under ``name``; ``ValueError`` if unknown."""
    try:
        target = CONTEXT_MODULES[name]
    except KeyError:
        known = ", ".join(sorted(CONTEXT_MODULES))
        raise ValueError(f"unknown context module name={name!r}; known: {known}") from None
    return import_target(target)


def build_context_module(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    """Build the context module ``name`` for ``in_channels`` input channels."""
    return context_module_class(name)(in_channels, **kwargs)
