"""Where the report reads a profile's run outputs, and reading them with clear errors."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.common.errors import StageError
from pipeline.layout import RunDirs


class MissingRunError(StageError):
    """Evaluation results the report needs are absent; the message names the files."""


@dataclass(frozen=True)
class RunLayout:
    """The files the report reads from one profile's runs (:class:`pipeline.layout.RunDirs`)."""

    runs_dir: Path
    profile: str

    @property
    def dirs(self) -> RunDirs:
        return RunDirs.of(self.runs_dir, self.profile)

    @property
    def root(self) -> Path:
        return self.dirs.root

    def metrics(self, trained_as: str) -> Path:
        return self.dirs.metrics(trained_as)

    def qualitative(self, trained_as: str) -> Path:
        return self.dirs.eval(trained_as) / "qualitative.npz"

    def walks(self, trained_as: str) -> Path:
        return self.dirs.eval(trained_as) / "walks.npz"

    def history(self, trained_as: str) -> Path:
        return self.dirs.train(trained_as) / "history.json"

    def tune_results(self) -> Path:
        return self.dirs.tune() / "results.json"


def read_json(path: Path) -> Any:
    """Parse a JSON file (``NaN``/``Infinity`` allowed); a bad file is a :class:`StageError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingRunError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: cannot read JSON ({exc})") from None


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` file; a missing key or bad file is a StageError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise StageError(f"{path}: missing arrays {missing} (has {data.files})")
            return {k: data[k] for k in keys}
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: cannot read npz ({exc})") from None


def as_number(value: Any) -> float | None:
    """A metric value as a float: ``None`` when absent or not a number (NaN stays NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
