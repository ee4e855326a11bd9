"""Small config helpers for the stage CLIs: ``KEY=VALUE`` overrides of dataclass fields and a
JSON-ready dump of a config."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.common.errors import StageError


def apply_overrides(obj: Any, overrides: Iterable[str]) -> Any:
    """Set dataclass fields from ``KEY=VALUE`` strings; a value is parsed as JSON (``4``,
    ``[2, 5]``, ``true``) and falls back to the plain string."""
    names = {f.name for f in dataclasses.fields(obj)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise StageError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(names)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        current = getattr(obj, key)
        if isinstance(current, bool) != isinstance(value, bool) or (
                isinstance(current, (int, float)) and not isinstance(value, (int, float))):
            raise StageError(f"--set {item!r}: {key} expects a {type(current).__name__}")
        setattr(obj, key, value)
    return obj


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths and tuples as plain JSON values (for manifests and MLflow params)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
