"""Where the report reads a profile's run outputs, and reading them with clear errors."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.common.errors import StageError
from pipeline.layout import SEED_SCORES, RunDirs

#: The files of one seed's run: its evaluation scores (flat numbers, what the seed
#: statistics compare), its training history (curves), and the evaluation's arrays for the
#: figures. The evaluate and train stages write them under these names.
HISTORY = "history.json"
QUALITATIVE = "qualitative.npz"
WALKS = "walks.npz"


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

    def seed_scores(self, trained_as: str, seed: int) -> Path:
        """The evaluation scores of one seed's run (``eval/<trained_as>/seed<k>/``)."""
        return self.dirs.eval(trained_as, seed) / SEED_SCORES

    def qualitative(self, trained_as: str, seed: int) -> Path:
        return self.dirs.eval(trained_as, seed) / QUALITATIVE

    def walks(self, trained_as: str, seed: int) -> Path:
        return self.dirs.eval(trained_as, seed) / WALKS

    def history(self, trained_as: str, seed: int) -> Path:
        """The training history of one seed's run (``train/<trained_as>/seed<k>/``)."""
        return self.dirs.train(trained_as, seed) / HISTORY

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
