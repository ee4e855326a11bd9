"""The DGMN ablation variants of the paper's Table 1 / Table 6, as named builders.

``dgmn_da``: dynamic affinities only (φ = {1}); ``dgmn_da_dw``: plus grouped dynamic filters
(φ = {1}, G = 4); ``dgmn_da_dw_ds``: the full model with learned walks
(φ = {1, 6, 12, 24, 36}, G = 4). Keyword arguments override the variant's defaults.
"""

from __future__ import annotations

from typing import Any

from dgmn.nn.dgmn import DGMN

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
