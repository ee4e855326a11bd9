"""Training state in a checkpoint: model, optimiser, scheduler, RNG states, history.

Written to a temporary file and renamed into place, so a checkpoint directory never holds a
half-written state; Ray Train persists the directory once :func:`ray.train.report` takes it.

Checkpoints live under ``paths.ray_storage``, which a cluster shares (docs/cluster.md), so they
are read as data, never unpickled: ``torch.load(weights_only=True)`` accepts tensors and plain
containers and numbers only, and everything here is saved in that form (the NumPy and Python RNG
states included). A file holding anything else is refused with :class:`CheckpointRefusedError`.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.common.errors import StageError

STATE_FILE = "state.pt"


class CheckpointRefusedError(StageError):
    """A checkpoint holds something other than tensors and plain data; it is not loaded."""


@dataclass
class History:
    """Curves for MLflow and the report: per logged iteration and per validation."""

    train: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    worker_nodes: list[str] = field(default_factory=list)  # node IP of each rank


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def rng_states() -> dict[str, Any]:
    """Torch, NumPy, Python (and CUDA) generator states as tensors, ints and floats (what
    ``weights_only`` loading accepts)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    python = states["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()),
                     python["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def read_state(path: Path) -> dict[str, Any]:
    """Load a ``state.pt`` as data (``weights_only=True``); anything that would need unpickling
    arbitrary objects (code that runs on load) raises :class:`CheckpointRefusedError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        culprit = f"it would call {found[1]}" if found else "it is not plain data"
        raise CheckpointRefusedError(
            f"{path}: refused to load this checkpoint: it holds objects other than tensors and "
            f"plain data ({culprit}); checkpoints are never unpickled, since the storage may be "
            "shared. Delete it, or the run directory, to train afresh") from None


def save_state(directory: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, iteration: int, history: History,
               metrics: dict[str, Any]) -> Path:
    """Write ``state.pt`` into ``directory`` atomically and return its path."""
    state = {
        "iteration": iteration,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_states(),
        "history": {"train": history.train, "val": history.val,
                    "worker_nodes": history.worker_nodes},
        "metrics": metrics,
    }
    path = directory / STATE_FILE
    tmp = directory / f".{STATE_FILE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(directory: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any) -> tuple[int, History]:
    """Restore everything :func:`save_state` wrote; returns (iteration, history). (Training
    runs in bf16 autocast, which needs no gradient scaler, so there is no scaler state.)"""
    state = read_state(directory / STATE_FILE)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_states(state["rng"])
    return state["iteration"], History(**state["history"])

