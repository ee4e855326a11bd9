"""Argument checks shared by the library's constructors (errors name the argument)."""

from __future__ import annotations


def check_positive_int(name: str, value: object) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is an ``int`` > 0 (``bool`` is not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")


def check_probability(name: str, value: object) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a real number in ``[0, 1)`` (a dropout
    probability; ``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {name}={value!r}")


def check_reduced_channels(in_channels: int, reduced: int, setting: str, formula: str) -> int:
    """``reduced`` (the channels a reduction ``setting`` leaves of ``in_channels``, computed as
    ``formula``); ``ValueError`` naming the setting when none are left."""
    if reduced < 1:
        raise ValueError(f"{setting} leaves no channels for in_channels={in_channels} "
                         f"({formula} = {reduced})")
    return reduced
