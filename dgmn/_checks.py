"""Argument checks shared by the library's constructors (errors name the argument)."""

from __future__ import annotations


def check_positive_int(name: str, value: object) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is an ``int`` > 0 (``bool`` is not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
