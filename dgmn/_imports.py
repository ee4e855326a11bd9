"""Resolve the ``"package.module:Name"`` import strings of the library's registries (entries
are strings so that building one module does not import the others)."""

from __future__ import annotations

import importlib
from typing import Any


def import_target(target: str) -> Any:
    """The object ``Name`` of ``"package.module:Name"``; ``ValueError`` for a malformed string,
    ``ImportError``/``AttributeError`` as Python raises them for a missing module or name."""
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"import target {target!r}: expected 'package.module:Name'")
    return getattr(importlib.import_module(module_name), name)
