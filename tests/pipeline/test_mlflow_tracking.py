"""What a training and its evaluation leave in MLflow, read back through a real tracking
server's REST API (the ``smoke_run`` fixture: ``python -m pipeline.train`` and
``python -m pipeline.evaluate`` of ``table1/dgmn_da`` on the smoke profile): the evaluation's
numbers in the training run, MLflow's source tags, the table tags, params limited to what the
training reads, the dataset input, and a logged model that loads and gives the logits of the
trained ``model.pt``."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.layout import SEED_SCORES
from pipeline.tasks.registry import build_task
from pipeline.tracking import artifact_location

# one worker runs every test of the shared smoke training (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("smoke_run")


def _slow(test: Any) -> Any:
    """The marks of a test reading the smoke run (it starts Ray and an MLflow server)."""
    return pytest.mark.slow(pytest.mark.cluster(test))


def _rest(url: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call of MLflow's REST API (POST with a JSON body, or GET with none)."""
    if body is None:
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}")
    else:
        request = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def _search(url: str, experiment_id: str, filter_string: str) -> list[dict[str, Any]]:
    return _rest(url, "runs/search", {"experiment_ids": [experiment_id],
                                      "filter": filter_string}).get("runs", [])


def _pairs(entries: list[dict[str, str]]) -> dict[str, str]:
    return {entry["key"]: entry["value"] for entry in entries}


@pytest.fixture(scope="module")
def tracked(smoke_run) -> dict[str, Any]:
    """The experiment and the one training run of the smoke run, as the REST API gives them."""
    query = urllib.parse.urlencode({"experiment_name": "dgmn"})
    experiment = _rest(smoke_run.tracking_uri, f"experiments/get-by-name?{query}")["experiment"]
    runs = _search(smoke_run.tracking_uri, experiment["experiment_id"],
                   "tags.experiment = 'table1/dgmn_da'")
    assert len(runs) == 1
    run = runs[0]
    return {"experiment": experiment, "run": run, "tags": _pairs(run["data"].get("tags", [])),
            "params": _pairs(run["data"].get("params", [])),
            "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])}}


@_slow
def test_the_evaluation_numbers_are_in_the_training_run(smoke_run, tracked):
    printed = json.loads(smoke_run.evaluate_output.strip().splitlines()[-1])
    metrics = tracked["metrics"]
    assert tracked["run"]["info"]["status"] == "FINISHED"
    assert metrics["eval/miou"] == pytest.approx(printed["miou"]["seed0"])
    assert metrics["eval/added_params_m"] == pytest.approx(printed["added_params_m"], abs=1e-3)
    scores = json.loads((smoke_run.root / "runs" / "smoke" / "eval" / "table1" / "dgmn_da"
                         / "seed0" / SEED_SCORES).read_text())
    assert metrics["eval/latency_ms"] == pytest.approx(scores["latency_ms"])
    assert 0.0 <= metrics["eval/miou_ms_flip"] <= 100.0
    assert metrics["eval/added_gmacs_paper"] > 0
    assert metrics["val_miou"] == pytest.approx(metrics["eval/miou"])  # same weights, images


@_slow
def test_the_run_carries_mlflow_source_tags_and_its_table_rows(tracked):
    tags = tracked["tags"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["mlflow.source.name"] == "pipeline/train.py"
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["table"] == "table1_cityscapes_val_ablation"
    # its own row, and the Table 6 row that reuses this training (table6/dgmn_da_rates_1)
    assert tags["table.table1_cityscapes_val_ablation"] == "row 4: + DGMN w/ DA"
    assert tags["table.table6_cityscapes_val_rates"].startswith("row 1: ")
    assert tracked["experiment"]["tags"] == [{"key": "mlflow.experimentKind",
                                              "value": "custom_model_development"}]


@_slow
def test_one_search_lists_a_table_s_rows(smoke_run, tracked):
    experiment_id = tracked["experiment"]["experiment_id"]
    for table in ("table1_cityscapes_val_ablation", "table6_cityscapes_val_rates"):
        found = _search(smoke_run.tracking_uri, experiment_id, f"tags.`table.{table}` LIKE '%'")
        assert [r["info"]["run_id"] for r in found] == [tracked["run"]["info"]["run_id"]]
    assert _search(smoke_run.tracking_uri, experiment_id,
                   "tags.`table.table2_coco_val` LIKE '%'") == []


@_slow
def test_params_are_what_the_training_reads(tracked):
    params = tracked["params"]
    assert params["model.context_kwargs.rates"] == "[1]"
    assert params["model.channels"] == "32" and params["schedule.iterations"] == "4"
    sections = {key.split(".", 1)[0] for key in params}
    assert sections == {"seed", "profile", "data", "model", "schedule", "scaling"}


@_slow
def test_the_dataset_is_the_run_s_input_with_its_manifest_digest(smoke_run, tracked):
    manifest = json.loads((smoke_run.root / "processed" / "cityscapes" / "manifest.json")
                          .read_text())
    [entry] = tracked["run"]["inputs"]["dataset_inputs"]
    assert entry["dataset"]["name"] == "cityscapes"
    assert entry["dataset"]["digest"] == manifest["digest"][:32]
    assert _pairs(entry["tags"]) == {"mlflow.data.context": "training",
                                     "dgmn.manifest_digest": manifest["digest"]}
    assert tracked["tags"]["dataset_manifest"] == manifest["digest"]


@_slow
def test_the_logged_model_loads_and_gives_the_trained_model_s_logits(smoke_run, tracked,
                                                                     monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", smoke_run.tracking_uri)
    run_id = tracked["run"]["info"]["run_id"]
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert info.signature is not None
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 3, 48, 96)
    logged = mlflow.pytorch.load_model(f"runs:/{run_id}/model")

    cfg = load_config(["experiment=table1/dgmn_da", *smoke_run.overrides])
    trained = build_task(cfg, PROJECT_ROOT).build_model()
    trained.load_state_dict(torch.load(smoke_run.train_dir / "model.pt", weights_only=True))
    image = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected, got = trained.eval()(image), logged.eval()(image)
    assert got.shape == expected.shape == (1, 19, 64, 128)
    assert torch.equal(got, expected)


@_slow
def test_the_run_holds_the_outputs_the_log_and_the_evaluation(smoke_run, tracked):
    run_id = tracked["run"]["info"]["run_id"]
    listed = {f["path"] for f in _rest(smoke_run.tracking_uri,
                                       f"artifacts/list?run_id={run_id}").get("files", [])}
    assert {"metrics.json", "history.json", "model.pt", "curves.png", "train.log",
            "eval"} <= listed
    evaluated = _rest(smoke_run.tracking_uri, f"artifacts/list?run_id={run_id}&path=eval")
    assert [f["path"] for f in evaluated["files"]] == ["eval/metrics.json"]
    assert Path(smoke_run.train_dir / "train.log").is_file()


@pytest.mark.parametrize("uri, expected", [
    (None, "{root}/mlruns"),  # the project's own store
    ("sqlite:///{root}/elsewhere/runs.db", "{root}/elsewhere/mlruns"),
    ("http://127.0.0.1:5000", None),  # a server keeps its own
])
def test_a_sqlite_store_keeps_its_artifacts_beside_its_database(tmp_path, monkeypatch, uri,
                                                                expected):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = ["profile=smoke"] + ([f"tracking.uri={uri.format(root=tmp_path)}"] if uri
                                     else [])
    location = artifact_location(load_config(overrides), tmp_path)
    assert location == (None if expected is None
                        else Path(expected.format(root=tmp_path)).resolve().as_uri())
