"""Seeds and Ray Train's local mode: one run per seed, the stage outputs over the seeds, a rerun
that reproduces every number bit for bit, and a local run that resumes from its own checkpoint.

Local mode (``scaling.num_workers=0``) trains in the test process: no Ray instance starts.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.config.schema import ConfigError
from pipeline.data.fetch import FetchConfig
from pipeline.data.fetch import run as fetch
from pipeline.data.preprocess import PreprocessConfig
from pipeline.data.preprocess import run as preprocess
from pipeline.data.synthetic.cityscapes import SyntheticCityscapesConfig
from pipeline.evaluate import SEED_SCORES, evaluate_seeds
from pipeline.layout import PER_CLASS, TRAINING_CURVE, Layout
from pipeline.train import train_seeds
from pipeline.training import identity as identity_module
from pipeline.training.identity import code_digest
from pipeline.training.local_checkpoints import KEEP
from pipeline.training.trainer import LOCAL_CHECKPOINTS

pytestmark = pytest.mark.slow
EXPERIMENT = "experiment=table1/nonlocal"
#: the run files a rerun must reproduce byte for byte (the weights and the final validation
#: with its confusion matrix, the curves; config.json differs by its paths)
REPRODUCED = ("metrics.json", "history.json", "confusion.json", "model.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic Cityscapes, preprocessed (6 train / 3 val images)."""
    root = tmp_path_factory.mktemp("seeds")
    raw = root / "raw" / "cityscapes"
    fetch(FetchConfig(dataset="synthetic_cityscapes", root=raw, progress=False,
                      synthetic_cityscapes=SyntheticCityscapesConfig(
                          height=64, width=128, num_train=6, num_val=3, extra_gt_files=False)))
    preprocess(PreprocessConfig(dataset="synthetic_cityscapes", raw_root=raw,
                                out_root=root / "processed" / "cityscapes", progress=False))
    return root / "processed"


@pytest.fixture
def frozen_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code digest as it is now, whatever is edited while the test runs."""
    frozen = code_digest()
    monkeypatch.setattr(identity_module, "code_digest", lambda root=PROJECT_ROOT: frozen)


def _config(dataset: Path, root: Path, *extra: str):
    return load_config([EXPERIMENT, "profile=smoke", f"paths.processed={dataset}",
                        f"paths.runs={root / 'runs'}", f"paths.ray_storage={root / 'ray'}",
                        "tracking.enabled=false", "scaling.num_workers=0", "seeds=[0,1]",
                        "schedule.iterations=4", "schedule.checkpoint_every=2",
                        "schedule.val_every=2", *extra])


def test_each_seed_is_a_run_and_a_rerun_reproduces_every_file_bit_for_bit(
        dataset, tmp_path, frozen_code):
    first = _config(dataset, tmp_path / "first")
    train_seeds(first)
    train_seeds(_config(dataset, tmp_path / "second"))  # elsewhere: trains again, not reused
    out = {name: tmp_path / name / "runs" / "smoke" / "train" / "table1" / "nonlocal"
           for name in ("first", "second")}
    for seed in (0, 1):
        for name in REPRODUCED:
            assert ((out["first"] / f"seed{seed}" / name).read_bytes()
                    == (out["second"] / f"seed{seed}" / name).read_bytes()), (seed, name)
        assert json.loads((out["first"] / f"seed{seed}" / "metrics.json").read_text())[
            "seed"] == seed
    seed0, seed1 = (json.loads((out["first"] / f"seed{s}" / "history.json").read_text())
                    for s in (0, 1))
    assert seed0["train"] != seed1["train"]  # the seeds are different runs
    # the curves over the seeds: the mean of the seeds' values, each seed's beside it
    curve = json.loads((Layout.of(first, PROJECT_ROOT).plots_dir / TRAINING_CURVE).read_text())
    assert len(curve) == len(seed0["train"]) > 0
    for record, r0, r1 in zip(curve, seed0["train"], seed1["train"], strict=True):
        assert record["loss_seed0"] == r0["loss"] and record["loss_seed1"] == r1["loss"]
        assert record["loss"] == pytest.approx((r0["loss"] + r1["loss"]) / 2, abs=1e-12)


@pytest.mark.parametrize("exact", [
    False,
    pytest.param(True, marks=pytest.mark.xfail(
        strict=True, reason="known gap: after a local-mode resume the losses differ from the "
        "uninterrupted run's from the first resumed iteration (a Ray Train resume is exact: "
        "test_training.py); not yet found")),
])
def test_a_local_run_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_one(
        dataset, tmp_path, frozen_code, caplog, exact):
    clean = _config(dataset, tmp_path / "clean", "seeds=[0]")
    train_seeds(clean)
    interrupted = _config(dataset, tmp_path / "interrupted", "seeds=[0]")
    train_seeds(interrupted)
    # as if killed after iteration 2: the last checkpoint and the outputs are gone
    storage = tmp_path / "interrupted" / "ray"
    (run_dir,) = storage.iterdir()
    checkpoints = sorted((run_dir / LOCAL_CHECKPOINTS).iterdir())
    assert [c.name for c in checkpoints] == ["iteration_000000002", "iteration_000000004"]
    assert len(checkpoints) == KEEP
    shutil.rmtree(checkpoints[-1])
    shutil.rmtree(tmp_path / "interrupted" / "runs")
    with caplog.at_level(logging.INFO):
        train_seeds(interrupted)
    assert "resumed from iteration 2" in caplog.text
    a = tmp_path / "clean" / "runs" / "smoke" / "train" / "table1" / "nonlocal" / "seed0"
    b = tmp_path / "interrupted" / "runs" / "smoke" / "train" / "table1" / "nonlocal" / "seed0"
    clean_history, resumed = (json.loads((d / "history.json").read_text()) for d in (a, b))
    assert [r["iteration"] for r in resumed["train"]] == [1, 2, 3, 4]
    assert resumed["train"][:2] == clean_history["train"][:2]  # restored, not retrained
    if exact:
        for name in REPRODUCED:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_evaluate_writes_each_seed_and_the_mean_and_std_over_the_seeds(dataset, tmp_path,
                                                                        frozen_code):
    cfg = _config(dataset, tmp_path)
    train_seeds(cfg)
    results = evaluate_seeds(cfg, PROJECT_ROOT)
    assert [r["seed"] for r in results] == [0, 1]
    eval_root = tmp_path / "runs" / "smoke" / "eval" / "table1" / "nonlocal"
    per_seed = [json.loads((eval_root / f"seed{s}" / SEED_SCORES).read_text()) for s in (0, 1)]
    summary = json.loads((tmp_path / "runs" / "smoke" / "metrics" / "table1"
                          / "nonlocal.json").read_text())
    assert summary["seeds"] == 2
    for key in ("miou", "miou_ms_flip", "pixel_accuracy", "context_miou"):
        values = [scores[key] for scores in per_seed]
        assert summary[key] == pytest.approx(statistics.fmean(values), abs=1e-12), key
        assert summary[f"{key}_std"] == pytest.approx(statistics.stdev(values), abs=1e-12), key
    assert "params_m_std" not in summary  # the same model for every seed
    # the context classes' score is the mean IoU of car, truck, person and rider
    names = {"car", "truck", "person", "rider"}
    records = json.loads((tmp_path / "runs" / "smoke" / "plots" / "table1" / "nonlocal"
                          / PER_CLASS).read_text())
    for seed, scores in zip((0, 1), per_seed, strict=True):
        found = [r[f"value_seed{seed}"] for r in records
                 if r["class"] in names and r[f"value_seed{seed}"] is not None]
        assert scores["context_miou"] == pytest.approx(statistics.fmean(found), abs=1e-9)


@pytest.mark.parametrize("seeds", ["[]", "[1,1]", "[-1]"])
def test_bad_seeds_fail_at_start_up_naming_the_key(seeds):
    with pytest.raises(ConfigError, match="seeds"):
        load_config(["profile=smoke", f"seeds={seeds}"])
