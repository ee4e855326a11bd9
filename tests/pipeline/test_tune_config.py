"""The tune stage's start-up check of its grid (``conf/tune/phi_g.yaml``: ``tune.rates`` φ and
``tune.groups`` G): a value the DGMN module rejects fails before data, MLflow or Ray, with one
``error:`` line naming the key and the value, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT, with_experiment
from pipeline.config.schema import ConfigError
from pipeline.tune import check_grid

SMOKE = ["profile=smoke"]  # the base experiment's context: DGMN with C = 32 channels


def _configs(overrides: list[str]):
    cfg = load_config(overrides)
    return load_config(with_experiment(overrides, cfg.tune.base_experiment)), cfg.tune


def test_a_grid_of_dividing_groups_and_valid_rates_passes():
    base, settings = _configs([*SMOKE, "tune.groups=[1,2,4,8]", "tune.rates=[[1],[1,2,3]]"])
    assert base.model["channels"] % 8 == 0
    check_grid(base, settings)


def test_groups_not_dividing_the_channels_name_the_key_and_value():
    base, settings = _configs([*SMOKE, "tune.groups=[2,3]"])
    with pytest.raises(ConfigError, match=r"config key tune\.groups=3 .*table1/dgmn_da_dw_ds.*"
                                          r"must divide"):
        check_grid(base, settings)


def test_tune_stage_with_a_bad_group_exits_2_before_data_mlflow_or_ray(tmp_path):
    """The real entry point: one error line, status 2, and nothing started or written (no
    dataset needed to get there, no MLflow store, no Ray session)."""
    ray_tmp = tmp_path / "ray"
    ray_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.tune", *SMOKE, "tune.groups=[3]",
         f"paths.processed={tmp_path / 'nowhere'}", f"paths.runs={tmp_path / 'runs'}",
         f"paths.ray_storage={tmp_path / 'ray_storage'}",
         f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=PROJECT_ROOT, env={**env, "RAY_TMPDIR": str(ray_tmp), "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config key tune.groups=3 "), lines
    assert "must divide" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ray"] and not any(ray_tmp.iterdir())
