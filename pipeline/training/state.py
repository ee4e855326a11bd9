"""Training state in a checkpoint: model, optimiser, scheduler, scaler, RNG states, history.

Written to a temporary file and renamed into place, so a checkpoint directory never holds a
half-written state; Ray Train persists the directory once :func:`ray.train.report` takes it.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

STATE_FILE = "state.pt"


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
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_state(directory: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, scaler: Any, iteration: int, history: History,
               metrics: dict[str, Any]) -> Path:
    """Write ``state.pt`` into ``directory`` atomically and return its path."""
    state = {
        "iteration": iteration,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
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
               scheduler: Any, scaler: Any) -> tuple[int, History]:
    """Restore everything :func:`save_state` wrote; returns (iteration, history)."""
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    restore_rng_states(state["rng"])
    return state["iteration"], History(**state["history"])

