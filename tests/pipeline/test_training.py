"""Training and sweeps on the synthetic data: outputs, MLflow record, fault tolerance, a
two-node Ray cluster on loopback addresses, a Tune sweep. Slow: they start Ray."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import ray
from mlflow import MlflowClient
from PIL import Image
from ray import cloudpickle

from pipeline.common.manifest import MANIFEST, write_manifest
from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.data.fetch import FetchConfig
from pipeline.data.fetch import run as fetch
from pipeline.data.preprocess import PreprocessConfig
from pipeline.data.preprocess import run as preprocess
from pipeline.data.synthetic.cityscapes import SyntheticCityscapesConfig
from pipeline.evaluate import evaluate_seeds
from pipeline.layout import PER_CLASS, VALIDATION_CURVE, Layout
from pipeline.tasks import registry as task_registry
from pipeline.tasks.segmentation import SegmentationTask
from pipeline.train import run_lock, train, train_seeds
from pipeline.training import identity as identity_module
from pipeline.training.identity import code_digest, run_identity
from pipeline.training.state import STATE_FILE, CheckpointRefusedError
from pipeline.tune import sweep

# The tests share the module's dataset and runs: one worker runs them all (scripts/test.sh:
# --dist loadgroup), but the loopback-cluster one, which joins the other cluster test's group.
pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.xdist_group("training")]
EXPERIMENT = "experiment=table1/dgmn_da_dw_ds"


def _overrides(root: Path) -> list[str]:
    """Every output (runs, Ray storage, MLflow store) of a training into ``root``."""
    return [f"paths.processed={root / 'processed'}", f"paths.runs={root / 'runs'}",
            f"paths.ray_storage={root / 'ray'}",
            f"tracking.uri=sqlite:///{root / 'mlflow.db'}", "profile=smoke"]


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
    return {"root": root, "overrides": _overrides(root), "uri": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture
def own_project(project: dict, tmp_path: Path) -> dict:
    """A copy of the module's dataset with its own runs, Ray storage and MLflow store, for a
    test that changes the data or the checkpoints."""
    root = tmp_path / "project"
    shutil.copytree(project["root"] / "processed", root / "processed")
    return {"root": root, "overrides": _overrides(root), "uri": f"sqlite:///{root / 'mlflow.db'}",
            "out": root / "runs" / "smoke" / "train" / "table1" / "dgmn_da_dw_ds" / "seed0"}


@pytest.fixture
def frozen_code(monkeypatch: pytest.MonkeyPatch) -> str:
    """The code digest as it is now, whatever is edited while the test runs (a test that trains
    twice and expects the same run; test_run_identity covers what changes the digest)."""
    frozen = code_digest()
    monkeypatch.setattr(identity_module, "code_digest", lambda root=PROJECT_ROOT: frozen)
    return frozen


@pytest.fixture
def local_ray():
    yield
    ray.shutdown()


def test_train_writes_outputs_and_a_complete_mlflow_record(project, local_ray, frozen_code):
    cfg = load_config([EXPERIMENT, *project["overrides"]])
    (final,) = train_seeds(cfg)  # the stage: its one seed, then the curves over the seeds
    out = project["root"] / "runs" / "smoke" / "train" / "table1" / "dgmn_da_dw_ds" / "seed0"
    for name in ("metrics.json", "history.json", "config.json", "model.pt", "curves.png",
                 "confusion.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(final))
    assert 0.0 <= metrics["miou"] <= 100.0 and metrics["iteration"] == cfg.schedule.iterations
    manifest = json.loads((project["root"] / "processed" / "cityscapes" / MANIFEST).read_text())
    identity = run_identity(cfg, PROJECT_ROOT)
    assert metrics["run_key"] == identity.key
    assert metrics["run_identity"] == {"config": identity.config, "data": manifest["digest"],
                                       "code": frozen_code}
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
    assert run.data.tags["dataset_manifest"] == manifest["digest"]
    assert run.data.tags["code_digest"] == metrics["run_identity"]["code"]
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
    (scores,) = evaluate_seeds(cfg)
    assert scores["miou"] == pytest.approx(metrics["miou"])  # same weights, same images
    assert scores["added_params_m"] > 0 and scores["added_gmacs_paper"] > 0
    exported = project["root"] / "runs" / "smoke" / "eval" / "table1" / "dgmn_da_dw_ds" / "seed0"
    official = _official_cityscapes_miou(exported / "cityscapes_results",
                                         project["root"] / "processed" / "cityscapes")
    assert official == pytest.approx(scores["miou"] / 100, abs=1e-9)
    assert {"qualitative.npz", "walks.npz", "evaluation.json"} <= {p.name for p in
                                                                   exported.iterdir()}
    layout = Layout.of(cfg, project["root"])
    assert json.loads(layout.metrics_file.read_text())["miou"] == scores["miou"]
    ious = [r["value"] for r in json.loads((layout.plots_dir / PER_CLASS).read_text())
            if r["value"] is not None]
    assert sum(ious) / len(ious) == pytest.approx(scores["miou"])  # mIoU: mean class IoU
    validation = json.loads((layout.plots_dir / VALIDATION_CURVE).read_text())
    assert [(r["iteration"], r["value"]) for r in validation] == \
        [(r["iteration"], r["miou"]) for r in history["val"]]


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


class _KilledOnce(SegmentationTask):
    """Segmentation whose worker kills itself (SIGKILL) at its 4th training step (iteration 3)
    unless ``marker`` exists, i.e. once: Ray Train restarts it from the iteration-2 checkpoint."""

    marker: ClassVar[str] = ""

    def loss(self, model: Any, batch: Any, device: Any) -> Any:
        self.steps = getattr(self, "steps", 0) + 1
        marker = Path(self.marker)
        if self.steps == 4 and not marker.exists():
            marker.write_text(f"killed pid {os.getpid()} at step {self.steps}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(model, batch, device)


def test_killed_worker_resumes_and_ends_like_an_uninterrupted_run(project, local_ray, tmp_path,
                                                                  monkeypatch):
    overrides = [EXPERIMENT, *project["overrides"], "schedule.iterations=6",
                 "schedule.checkpoint_every=2", "schedule.val_every=3", "tracking.enabled=false"]
    clean = train(load_config([*overrides, f"paths.ray_storage={tmp_path / 'clean'}"]))
    marker = tmp_path / "killed"
    # The workers get the driver's task class: this one travels by value (the test module is
    # not importable there).
    monkeypatch.setattr(_KilledOnce, "marker", str(marker))
    monkeypatch.setitem(task_registry.TASKS, "segmentation", _KilledOnce)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        resumed = train(load_config([*overrides, f"paths.ray_storage={tmp_path / 'faulty'}"]))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.read_text().startswith("killed pid")  # the worker really died mid-run
    for key in ("miou", "pixel_accuracy", "iou_per_class", "iteration"):
        assert resumed[key] == clean[key], key


@pytest.mark.xdist_group("loopback_ray")  # one loopback Ray cluster at a time
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
                          / "dgmn_da_dw_ds" / "seed0" / "metrics.json").read_text())
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


def _change_one_training_image(dataset: Path) -> tuple[str, str]:
    """Invert the top rows of one processed training image and rewrite the manifest, as a
    changed dataset would; returns the manifest digest (before, after)."""
    manifest = json.loads((dataset / MANIFEST).read_text())
    image = sorted(dataset.glob("leftImg8bit/train/*/*.png"))[0]
    pixels = np.array(Image.open(image))
    pixels[:16] = 255 - pixels[:16]
    Image.fromarray(pixels).save(image)
    body = {k: v for k, v in manifest.items()
            if k not in ("schema", "files", "num_files", "total_bytes", "digest")}
    return manifest["digest"], write_manifest(dataset, body, progress=False)["digest"]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """What was logged since the last call (the trainer logs whether a run is new)."""
    text = caplog.text
    caplog.clear()
    return text


def test_a_finished_run_is_reused_only_while_config_data_and_code_match(own_project, local_ray,
                                                                        frozen_code, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.training.trainer")
    cfg = load_config([EXPERIMENT, *own_project["overrides"], "tracking.enabled=false"])
    first = train(cfg)
    assert "new (no earlier run of table1-dgmn_da_dw_ds-smoke-seed0" in _logged(caplog)
    history = (own_project["out"] / "history.json").read_text()

    again = train(cfg)  # same config, data and code: the finished run is reused
    assert (f"run {first['run_key']}: config, data and code match its record; resuming it"
            in _logged(caplog))
    assert again == first and (own_project["out"] / "history.json").read_text() == history

    before, after = _change_one_training_image(own_project["root"] / "processed" / "cityscapes")
    changed = train(cfg)
    log = _logged(caplog)
    assert (f"new, not reusing run {first['run_key']}: data changed (manifest digest "
            f"{before[:12]} -> {after[:12]})") in log
    assert "resuming" not in log
    assert changed["run_key"] != first["run_key"]
    assert changed["run_identity"] == {**first["run_identity"], "data": after}
    storage = own_project["root"] / "ray"
    assert {p.name for p in storage.iterdir()} >= {first["run_key"], changed["run_key"]}
    written = json.loads((own_project["out"] / "metrics.json").read_text())
    assert written["run_identity"]["data"] == after  # the outputs come from the new run


def test_a_malicious_checkpoint_in_the_run_storage_is_refused(own_project, local_ray,
                                                              frozen_code):
    """Someone with write access to the shared Ray storage swaps the latest checkpoint for a
    pickle that runs code: resuming stops with one error, the code never runs."""
    overrides = [EXPERIMENT, *own_project["overrides"], "tracking.enabled=false",
                 "schedule.iterations=2", "scaling.max_failures=0"]
    cfg = load_config(overrides)
    train(cfg)
    marker = own_project["root"] / "marker"
    run_dir = own_project["root"] / "ray" / run_identity(cfg, PROJECT_ROOT).key
    for state in run_dir.glob(f"checkpoint_*/{STATE_FILE}"):
        payload = f"open({str(marker)!r}, 'w').write('code ran')"
        state.write_bytes(_pickle_calling(exec, payload))
    with pytest.raises(CheckpointRefusedError, match="refused to load this checkpoint"):
        train(cfg)
    assert not marker.exists()


def _pickle_calling(function: object, argument: str) -> bytes:
    """A ``torch.save`` file whose unpickling calls ``function(argument)``."""
    import io

    import torch

    class Payload:
        def __reduce__(self):
            return (function, (argument,))

    buffer = io.BytesIO()
    torch.save({"iteration": 2, "model": Payload()}, buffer)
    return buffer.getvalue()


HOLD_LOCK = """
import sys, time
from pipeline.common.locks import exclusive
with exclusive(sys.argv[1], "held by the test"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_training_of_the_same_run_fails_at_once_naming_the_holder(own_project):
    """While a process holds the run (here a stand-in holding its lock), ``pipeline.train`` of
    the same experiment exits 2 with one line naming it, before touching MLflow or Ray."""
    overrides = [EXPERIMENT, *own_project["overrides"]]
    lock = run_lock(load_config(overrides), PROJECT_ROOT,
                    run_identity(load_config(overrides), PROJECT_ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = subprocess.run([sys.executable, "-m", "pipeline.train", *overrides],
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith(f"error: {lock}: locked by pid {holder.pid} on "
                                    f"{socket.gethostname()} since 20")
    assert "another training of table1-dgmn_da_dw_ds-smoke-seed0 is using run" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (own_project["root"] / "mlflow.db").exists()  # stopped before MLflow
    assert [p.name for p in lock.parent.iterdir()] == [lock.name]  # and before Ray


SECRET = "Pa55-w0rd-in-uri"


def test_credentials_in_the_tracking_uri_reach_no_output(own_project, mlflow_server):
    """``tracking.uri=http://user:password@host``: MLflow connects with it, yet no output file,
    MLflow param or tag, or line of the training's stdout/stderr holds the password."""
    port = mlflow_server["port"]
    overrides = [o for o in own_project["overrides"] if not o.startswith("tracking.uri=")]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", EXPERIMENT, *overrides,
         f"tracking.uri=http://dgmn:{SECRET}@127.0.0.1:{port}", "schedule.iterations=2"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr

    leaks = [path for folder in (own_project["root"], mlflow_server["folder"] / "artifacts")
             for path in folder.rglob("*") if path.is_file() and SECRET.encode() in
             path.read_bytes()]
    assert leaks == []
    config = json.loads((own_project["out"] / "config.json").read_text())
    assert config["tracking"]["uri"] == f"http://***@127.0.0.1:{port}"
    assert "run_identity" in json.loads((own_project["out"] / "metrics.json").read_text())

    client = MlflowClient(f"http://127.0.0.1:{port}")
    runs = client.search_runs([client.get_experiment_by_name("dgmn").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # it did connect and log
    data = runs[0].data
    assert "tracking.uri" not in data.params  # params: what the run's training reads
    assert SECRET not in json.dumps([data.params, data.tags])
    assert {"metrics.json", "config.json"} <= {a.path for a in
                                               client.list_artifacts(runs[0].info.run_id)}
