"""The tune stage's start-up check of its grid (``conf/tune/<profile>.yaml``: ``tune.rates`` φ
and ``tune.groups`` G): a value the DGMN module rejects fails before data, MLflow or Ray, with one
``error:`` line naming the key and the value, exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pipeline.tune as tune_stage
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


SECRET = "s3cr3t-pw"


def test_trial_space_holds_only_the_grid_and_trials_get_the_real_uri(monkeypatch):
    """Ray Tune prints ``param_space`` per trial and writes it into its experiment files under
    the (shared) Ray storage: it holds φ and G only. The base config (credentials redacted)
    and the parent run are bound with ``tune.with_parameters``; a credentialed
    ``tracking.uri`` reaches the trial's MLflow run and trainer unredacted."""
    uri = f"https://dgmn:{SECRET}@mlflow.example:5000"
    base, settings = _configs([*SMOKE, f"tracking.uri={uri}"])
    space = tune_stage.trial_space(settings)
    assert set(space) == {"rates", "groups"}
    bound = tune_stage.redact(tune_stage.as_dict(base))
    assert SECRET not in json.dumps(bound, default=str)

    seen: dict[str, object] = {}

    class FakeTracker:
        uri, run_id = "real", "run"

        def log_metrics(self, metrics, step):
            seen["complexity"] = sorted(metrics)

        def finish(self, status: str = "FINISHED") -> None:
            seen["status"] = status

    class FakeTrainer:
        def fit(self) -> None:
            seen["fit"] = True
            raise RuntimeError("stop after fit")  # what follows needs a real checkpoint

    def fake_open_run(store_uri, *args, **kwargs):
        seen["store_uri"] = store_uri
        seen["params"] = kwargs["params"]
        return FakeTracker()

    def fake_make_trainer(cfg, *args, **kwargs):
        seen["cfg_uri"] = cfg.tracking.uri
        seen["rates"] = cfg.model["context_kwargs"]["rates"]
        return FakeTrainer()

    monkeypatch.setattr(tune_stage, "open_run", fake_open_run)
    monkeypatch.setattr(tune_stage, "make_trainer", fake_make_trainer)
    monkeypatch.setattr(tune_stage, "run_key", lambda cfg, root: "key")  # no dataset here
    monkeypatch.setattr(tune_stage, "TuneReportCallback", lambda: None)  # no Tune session
    trial = {"rates": [1, 2], "groups": settings.groups[0]}
    with pytest.raises(RuntimeError, match="stop after fit"):
        tune_stage.run_trial(trial, base=bound, project_root=str(PROJECT_ROOT),
                             parent={"run_id": "0123", "commit": "abc"},
                             config_uri=uri, parent_uri=uri)
    params = seen.pop("params")
    assert "tune" not in params and "model_overrides" not in params  # what the run reads
    assert params["model"]["context_kwargs"]["rates"] == [1, 2]
    assert seen == {"store_uri": uri, "cfg_uri": uri, "rates": [1, 2], "fit": True,
                    "complexity": ["gmacs_paper", "params_m"], "status": "FAILED"}
