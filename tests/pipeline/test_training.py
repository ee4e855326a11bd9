"""Training and sweeps on the synthetic data: outputs, MLflow record, fault tolerance, a
two-node Ray cluster on loopback addresses, a Tune sweep. Slow: they start Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.evaluate import evaluate
from pipeline.fetch import FetchConfig
from pipeline.fetch import run as fetch
from pipeline.preprocess import PreprocessConfig
from pipeline.preprocess import run as preprocess
from pipeline.synthetic.cityscapes import SyntheticCityscapesConfig
from pipeline.train import train
from pipeline.tune import sweep

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
EXPERIMENT = "experiment=table1/dgmn_da_dw_ds"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A synthetic Cityscapes (8 train / 4 val images) and overrides pointing every output
    (runs, Ray storage, MLflow store) into a temporary folder."""
    root = tmp_path_factory.mktemp("project")
    raw = root / "raw" / "cityscapes"
    fetch(FetchConfig(dataset="synthetic_cityscapes", root=raw, progress=False,
                      synthetic_cityscapes=SyntheticCityscapesConfig(num_train=8, num_val=4)))
    preprocess(PreprocessConfig(dataset="synthetic_cityscapes", raw_root=raw,
                                out_root=root / "processed" / "cityscapes",
                                progress=False))
    overrides = [f"paths.processed={root / 'processed'}", f"paths.runs={root / 'runs'}",
                 f"paths.ray_storage={root / 'ray'}",
                 f"tracking.uri=sqlite:///{root / 'mlflow.db'}", "profile=smoke"]
    return {"root": root, "overrides": overrides, "uri": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture
def local_ray():
    yield
    ray.shutdown()


def test_train_writes_outputs_and_a_complete_mlflow_record(project, local_ray):
    cfg = load_config([EXPERIMENT, *project["overrides"]])
    final = train(cfg)
    out = project["root"] / "runs" / "smoke" / "train" / "table1" / "dgmn_da_dw_ds"
    for name in ("metrics.json", "history.json", "config.json", "model.pt", "curves.png",
                 "confusion.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(final))
    assert 0.0 <= metrics["miou"] <= 100.0 and metrics["iteration"] == cfg.schedule.iterations
    history = json.loads((out / "history.json").read_text())
    assert [r["iteration"] for r in history["train"]] == [1, 2, 3, 4]
    assert [r["iteration"] for r in history["val"]] == [2, 4]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = MlflowClient(project["uri"])
    runs = client.search_runs([client.get_experiment_by_name("dgmn").experiment_id],
                              filter_string="tags.experiment = 'table1/dgmn_da_dw_ds'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.context_kwargs.rates"] == "[1, 6, 12, 24, 36]"
    assert run.data.params["schedule.lr"] == "0.01"
    assert len(run.data.tags["git_commit"]) >= 40
    assert len(run.data.tags["dataset_manifest"]) == 64
    assert run.data.metrics["val_miou"] == pytest.approx(metrics["miou"])
    assert run.data.metrics["params"] == metrics["params"] > 0  # params and MACs logged
    assert run.data.metrics["gmacs_full"] >= run.data.metrics["gmacs_paper"] > 0
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3, 4]
    lrs = [m.value for m in client.get_metric_history(run.info.run_id, "lr")]
    assert lrs[0] == pytest.approx(0.01) and lrs == sorted(lrs, reverse=True)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.json", "curves.png", "model.pt", "confusion.json"} <= artifacts

    # evaluate: the exported labelId PNGs score the same with the official Cityscapes script
    scores = evaluate(cfg)
    assert scores["miou"] == pytest.approx(metrics["miou"])  # same weights, same images
    assert scores["added_params_m"] > 0 and scores["added_gmacs_paper"] > 0
    exported = project["root"] / "runs" / "smoke" / "eval" / "table1" / "dgmn_da_dw_ds"
    official = _official_cityscapes_miou(exported / "cityscapes_results",
                                         project["root"] / "processed" / "cityscapes")
    assert official == pytest.approx(scores["miou"] / 100, abs=1e-9)
    assert {"qualitative.npz", "walks.npz", "metrics.json"} <= {p.name for p in
                                                                exported.iterdir()}


def _official_cityscapes_miou(predictions: Path, root: Path) -> float:
    """``evalPixelLevelSemanticLabeling`` (class IoU only: its iIoU path needs numpy < 2.4)."""
    import contextlib
    import copy
    import io

    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev  # noqa: N813

    ground_truth = [p for p in sorted(root.glob("gtFine/val/*/*_gtFine_labelIds.png"))
                    if (predictions / p.name.replace("_gtFine_labelIds", "_leftImg8bit")).is_file()]
    predicted = [predictions / p.name.replace("_gtFine_labelIds", "_leftImg8bit")
                 for p in ground_truth]
    assert len(predicted) == len(list(predictions.iterdir())) == 2  # data.val_max_images
    args = copy.copy(ev.args)
    args.evalInstLevelScore = args.evalPixelAccuracy = False
    args.quiet, args.JSONOutput = True, False
    with contextlib.redirect_stdout(io.StringIO()):
        result = ev.evaluateImgLists([str(p) for p in predicted], [str(p) for p in ground_truth],
                                     args)
    return float(result["averageScoreClasses"])


def test_killed_worker_resumes_and_ends_like_an_uninterrupted_run(project, local_ray, tmp_path):
    overrides = [EXPERIMENT, *project["overrides"], "schedule.iterations=6",
                 "schedule.checkpoint_every=2", "schedule.val_every=3", "tracking.enabled=false"]
    clean = train(load_config([*overrides, f"paths.ray_storage={tmp_path / 'clean'}"]))
    marker = tmp_path / "killed"
    resumed = train(load_config([*overrides, f"paths.ray_storage={tmp_path / 'faulty'}"]),
                    fault={"iteration": 3, "marker": str(marker)})
    assert marker.read_text().startswith("killed pid")  # the worker really died mid-run
    for key in ("miou", "pixel_accuracy", "iou_per_class", "iteration"):
        assert resumed[key] == clean[key], key


def test_two_node_cluster_on_loopback_trains_across_both_nodes(project, loopback_ray):
    """A Ray head on 127.0.0.2 and a second node on 127.0.0.3; a 2-worker DDP training must
    place one worker on each; both nodes are stopped by PID (by the fixture)."""
    cluster = loopback_ray(nodes=("127.0.0.2", "127.0.0.3"), cpus=1)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", EXPERIMENT, *project["overrides"],
         f"scaling.address={cluster.address}", "scaling.num_workers=2",
         "scaling.cpus_per_worker=1", "schedule.iterations=2", "schedule.val_every=2",
         "schedule.checkpoint_every=2"],
        env=cluster.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((project["root"] / "runs" / "smoke" / "train" / "table1"
                          / "dgmn_da_dw_ds" / "metrics.json").read_text())
    assert sorted(metrics["worker_nodes"]) == ["127.0.0.2", "127.0.0.3"]
    assert metrics["iteration"] == 2


def test_tune_sweep_writes_the_results_table_and_child_runs(project, local_ray):
    rows = sweep([*project["overrides"], "tune.rates=[[1],[1,2]]", "tune.groups=[2]",
                  "schedule.iterations=2"])
    assert [(r["rates"], r["groups"]) for r in rows] == [([1], 2), ([1, 2], 2)]
    for row in rows:
        assert row["error"] is None and 0.0 <= row["value"] <= 100.0
        assert row["iterations"] == 2  # the sweep's overrides reach every trial
        assert row["params_m"] > 0 and row["gmacs"] > 0
    assert rows[1]["gmacs"] > rows[0]["gmacs"]  # a second rate adds predictor convs
    table = (project["root"] / "runs" / "smoke" / "tune" / "results.md").read_text()
    assert "| {1, 2} | 2 |" in table
    client = MlflowClient(project["uri"])
    experiment = client.get_experiment_by_name("dgmn").experiment_id
    parent = client.search_runs([experiment], filter_string="tags.stage = 'tune'")[0]
    children = client.search_runs(
        [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)


def test_missing_dataset_root_stops_before_ray_with_one_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", EXPERIMENT, "profile=smoke",
         f"paths.processed={tmp_path / 'nowhere'}", "tracking.enabled=false"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "nowhere/cityscapes: dataset root not found" in result.stderr
    assert "Traceback" not in result.stderr
