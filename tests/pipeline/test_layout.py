"""The one map of paths: built from the config, and every reader and writer agrees with it
(the report reads where train, evaluate and tune write; MLflow's default store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.layout import Layout
from pipeline.reporting.runs import SEED_SCORES, RunLayout
from pipeline.tracking import artifact_location, tracking_uri
from pipeline.training.identity import data_digest


@pytest.fixture
def cfg():
    return load_config(["experiment=table6/dgmn_da_dw_rates_1", "profile=smoke",
                        "paths.runs=out/runs", "paths.ray_storage=/abs/ray"])


def test_paths_follow_the_config(cfg, tmp_path: Path) -> None:
    layout = Layout.of(cfg, tmp_path)
    assert layout.raw_data == tmp_path / "data" / "raw" / "cityscapes"
    assert layout.processed_data == tmp_path / "data" / "processed" / "cityscapes"
    # an alias row's outputs are those of the experiment it is trained as
    assert cfg.trained_as == "table1/dgmn_da_dw" != cfg.experiment.name
    runs = tmp_path / "out" / "runs" / "smoke"
    assert layout.train_dir == runs / "train" / "table1" / "dgmn_da_dw" / "seed0"
    assert layout.eval_dir == runs / "eval" / "table1" / "dgmn_da_dw" / "seed0"
    assert layout.metrics_file == runs / "metrics" / "table1" / "dgmn_da_dw.json"
    assert layout.plots_dir == runs / "plots" / "table1" / "dgmn_da_dw"
    assert layout.tune_dir == runs / "tune"
    assert layout.reports == tmp_path / "reports" / "smoke"
    assert layout.ray_storage == Path("/abs/ray")  # absolute settings stay as they are
    assert layout.manifest == layout.processed_data / "manifest.json"


def test_the_report_reads_where_the_stages_write(cfg, tmp_path: Path) -> None:
    layout = Layout.of(cfg, tmp_path)
    report = RunLayout(layout.runs_root, cfg.profile)
    assert report.history(cfg.trained_as, cfg.seed) == layout.train_dir / "history.json"
    assert report.metrics(cfg.trained_as) == layout.metrics_file
    assert report.walks(cfg.trained_as, cfg.seed).parent == layout.eval_dir
    assert report.seed_scores(cfg.trained_as, cfg.seed) == layout.eval_dir / SEED_SCORES
    assert report.tune_results() == layout.tune_dir / "results.json"


def test_default_mlflow_store_and_data_manifest(cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    layout = Layout.of(cfg, tmp_path)
    assert tracking_uri(cfg, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert artifact_location(cfg, tmp_path) == layout.mlflow_artifacts.as_uri()
    layout.processed_data.mkdir(parents=True)
    layout.manifest.write_text('{"digest": "d1"}')
    assert data_digest(cfg, tmp_path) == "d1"
