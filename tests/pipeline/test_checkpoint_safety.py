"""Checkpoints are read as data (``weights_only=True``): a saved state loads that way, and a
state that would run code when unpickled is refused before anything runs."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.train import write_outputs
from pipeline.training.schedules import build_optimizer, build_scheduler
from pipeline.training.state import (
    STATE_FILE,
    CheckpointRefusedError,
    History,
    load_state,
    save_state,
)


class WritesMarker:
    """Unpickling this runs ``exec``, which writes ``marker`` (what an attacker's file does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _training_objects(policy: str = "step"):
    cfg = load_config(["profile=smoke", f"schedule.policy={policy}"])
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    optimizer = build_optimizer(model, cfg.schedule)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


@pytest.mark.parametrize("policy", ["poly", "step"])
def test_saved_state_loads_as_data_and_restores_every_generator(tmp_path, policy):
    model, optimizer, scheduler = _training_objects(policy)
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    np.random.randn()  # a cached Gaussian in NumPy's state
    history = History(train=[{"loss": 1.5, "lr": 0.01, "iteration": 1}],
                      val=[{"miou": 12.5, "iou_per_class": [None, 3.0], "iteration": 1}],
                      worker_nodes=["127.0.0.1"])
    save_state(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler,
               iteration=7, history=history, metrics={"miou": float("nan")})
    torch.load(tmp_path / STATE_FILE, weights_only=True)  # nothing but tensors and plain data
    expected = (random.random(), np.random.rand(3).tolist(), np.random.randn(),
                torch.rand(3).tolist())

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    fresh_model, fresh_optimizer, fresh_scheduler = _training_objects(policy)
    iteration, restored = load_state(tmp_path, model=fresh_model, optimizer=fresh_optimizer,
                                     scheduler=fresh_scheduler)
    assert iteration == 7 and restored == history
    assert (random.random(), np.random.rand(3).tolist(), np.random.randn(),
            torch.rand(3).tolist()) == expected
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[name], value), name


def _malicious_checkpoint(directory: Path, marker: Path) -> Path:
    model, optimizer, scheduler = _training_objects()
    directory.mkdir()
    save_state(directory, model=model, optimizer=optimizer, scheduler=scheduler,
               iteration=2, history=History(), metrics={})
    state = torch.load(directory / STATE_FILE, weights_only=True)
    state["metrics"] = {"miou": WritesMarker(marker)}
    torch.save(state, directory / STATE_FILE)
    return directory


def test_resuming_from_a_malicious_checkpoint_is_refused_before_any_code_runs(tmp_path):
    marker = tmp_path / "marker"
    directory = _malicious_checkpoint(tmp_path / "checkpoint", marker)
    model, optimizer, scheduler = _training_objects()
    with pytest.raises(CheckpointRefusedError) as refused:
        load_state(directory, model=model, optimizer=optimizer, scheduler=scheduler)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{directory / STATE_FILE}: refused to load this checkpoint")
    assert "(it would call exec)" in message
    assert not marker.exists()


def test_exporting_a_malicious_final_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "marker"
    directory = _malicious_checkpoint(tmp_path / "checkpoint", marker)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointRefusedError):
        write_outputs(load_config(["profile=smoke"]), out, directory, "miou", {})
    assert not marker.exists() and not any(out.iterdir())
    assert not (tmp_path / "plots").exists()


def test_the_refusal_is_one_error_line_from_a_stage(tmp_path):
    """Through ``run_stage``: exit 2, one ``error:`` line, no traceback, marker absent."""
    marker = tmp_path / "marker"
    directory = _malicious_checkpoint(tmp_path / "checkpoint", marker)
    script = ("import sys\n"
              "from pathlib import Path\n"
              "from pipeline.common.errors import run_stage\n"
              "from pipeline.training.state import read_state\n"
              "sys.exit(run_stage(lambda argv: read_state(Path(argv[0])), sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", script, str(directory / STATE_FILE)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "refused to load this checkpoint" in result.stderr
    assert not marker.exists()
