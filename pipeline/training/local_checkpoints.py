"""Checkpoints of a run in Ray Train's local mode (``scaling.num_workers: 0``).

Ray Train keeps no checkpoints when the training function runs in the driver process, so the
loop keeps them in the run directory itself: ``<run dir>/local_checkpoints/iteration_<n>/``,
each written under a temporary name and renamed when complete (a killed run never leaves a
half-written one under the final name), the newest :data:`KEEP` kept. A local run that is
started again resumes from the newest, as a Ray Train run resumes from its storage.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import ray.train

from pipeline.common.fs import atomic_directory

#: How many checkpoints a run keeps (as ``CheckpointConfig(num_to_keep=2)`` with Ray).
KEEP = 2
_NAME = re.compile(r"iteration_(\d{9})")


def _complete(root: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))


def latest(root: Path) -> ray.train.Checkpoint | None:
    """The newest complete checkpoint under ``root``, or ``None``."""
    found = _complete(root)
    return ray.train.Checkpoint.from_directory(str(found[-1])) if found else None


def save(root: Path, iteration: int, write: Callable[[Path], None]) -> Path:
    """Write a checkpoint for ``iteration`` with ``write(directory)``; keep the newest
    :data:`KEEP`. Returns its directory."""
    final = root / f"iteration_{iteration:09d}"
    with atomic_directory(final) as tmp:
        write(tmp)
    for old in _complete(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final
