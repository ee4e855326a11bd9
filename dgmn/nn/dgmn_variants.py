"""Named DGMN builders: the ablation variants of Tables 1 / 6 and the reduced res4 module.

``dgmn_da``: dynamic affinities only (φ = {1}); ``dgmn_da_dw``: plus grouped dynamic filters
(φ = {1}, G = 4); ``dgmn_da_dw_ds``: the full model with learned walks
(φ = {1, 6, 12, 24, 36}, G = 4). Keyword arguments override the variant's defaults.

``dgmn_reduced``: the single DGMN of Table 2's first part ("right before the last residual
block of res4"), a residual-form DGMN at C/4 inside the shell of
:class:`~dgmn.nn.reduced.ReducedResidual` — the module that the deformable message-passing
baseline (:mod:`dgmn.nn.deform_mp`) is "a variant of" (§4.1).
"""

from __future__ import annotations

from typing import Any

from dgmn._checks import check_positive_int
from dgmn.nn.dgmn import DGMN
from dgmn.nn.reduced import ReducedResidual

VARIANTS: dict[str, dict[str, Any]] = {
    "dgmn_da": {"rates": (1,), "dynamic_affinity": True, "dynamic_filters": False,
                "dynamic_sampling": False},
    "dgmn_da_dw": {"rates": (1,), "groups": 4, "dynamic_affinity": True,
                   "dynamic_filters": True, "dynamic_sampling": False},
    "dgmn_da_dw_ds": {"rates": (1, 6, 12, 24, 36), "groups": 4, "dynamic_affinity": True,
                      "dynamic_filters": True, "dynamic_sampling": True},
}


def _variant(name: str, in_channels: int, overrides: dict[str, Any]) -> DGMN:
    return DGMN(in_channels, **{**VARIANTS[name], **overrides})


def dgmn_da(in_channels: int, **overrides: Any) -> DGMN:
    """DGMN w/ DA (Table 1)."""
    return _variant("dgmn_da", in_channels, overrides)


def dgmn_da_dw(in_channels: int, **overrides: Any) -> DGMN:
    """DGMN w/ DA+DW (Table 1)."""
    return _variant("dgmn_da_dw", in_channels, overrides)


def dgmn_da_dw_ds(in_channels: int, **overrides: Any) -> DGMN:
    """DGMN w/ DA+DW+DS, the full model (Table 1)."""
    return _variant("dgmn_da_dw_ds", in_channels, overrides)


def dgmn_reduced(in_channels: int, reduction: int = 4, norm_groups: int | None = None,
                 **dgmn_kwargs: Any) -> ReducedResidual:
    """DGMN at res4 (Table 2): ``x + ReLU(GN(W_up DGMN(ReLU(GN(W_down x)))))``.

    The inner :class:`DGMN` runs at ``in_channels // reduction`` channels in the residual form
    unless ``dgmn_kwargs`` say otherwise; its other defaults are DGMN's own.
    """
    check_positive_int("in_channels", in_channels)
    check_positive_int("reduction", reduction)
    body = DGMN(max(in_channels // reduction, 1), **{"form": "residual", **dgmn_kwargs})
    return ReducedResidual(in_channels, body, reduction=reduction, norm_groups=norm_groups)
