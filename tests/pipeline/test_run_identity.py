"""The run key (pipeline.training.identity): config, dataset manifest digest and code digest;
what changes it, what does not, and the log line that says why a run is new."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.common.errors import StageError
from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.training.identity import (
    CODE_SOURCES,
    code_digest,
    code_files,
    describe_run,
    record_identity,
    run_identity,
)

EXPERIMENT = "experiment=table1/dgmn_da_dw_ds"


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """A copy of the project's code, docs, report stage and viz (what the digest must ignore)."""
    root = tmp_path / "src"
    for path in [*code_files(PROJECT_ROOT), *PROJECT_ROOT.glob("dgmn/viz/*.py"),
                 PROJECT_ROOT / "pipeline" / "report.py", *PROJECT_ROOT.glob("docs/*.md")]:
        target = root / path.relative_to(PROJECT_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return root


def _append(path: Path, text: str = "\n# edited\n") -> None:
    path.write_text(path.read_text() + text)


def test_code_digest_covers_the_library_and_training_code(sources):
    relative = {p.relative_to(sources).as_posix() for p in code_files(sources)}
    assert {"dgmn/nn/dgmn.py", "dgmn/ops/reference.py", "dgmn/models/segmentation.py",
            "pipeline/train.py", "pipeline/training/loop.py", "pipeline/config/schema.py",
            "pipeline/evaluation/inference.py"} <= relative
    assert not any(p.startswith(("dgmn/viz/", "docs/")) or p == "pipeline/report.py"
                   for p in relative)
    assert code_digest(sources) == code_digest(PROJECT_ROOT)  # paths relative, bytes only


@pytest.mark.parametrize("edited", ["dgmn/nn/dgmn.py", "dgmn/ops/reference.py",
                                    "pipeline/training/loop.py", "pipeline/train.py",
                                    "pipeline/config/schema.py"])
def test_editing_training_code_changes_the_code_digest(sources, edited):
    before = code_digest(sources)
    original = (sources / edited).read_bytes()
    _append(sources / edited)
    assert code_digest(sources) != before
    (sources / edited).write_bytes(original)
    assert code_digest(sources) == before  # the same bytes give the same digest again


def test_a_new_training_module_changes_the_code_digest(sources):
    before = code_digest(sources)
    (sources / "pipeline" / "training" / "extra.py").write_text("X = 1\n")
    assert code_digest(sources) != before


def test_unrelated_edits_and_timestamps_leave_the_code_digest_unchanged(sources):
    before = code_digest(sources)
    _append(sources / "pipeline" / "report.py")
    _append(next((sources / "docs").glob("*.md")), "\nedited\n")
    _append(next((sources / "dgmn" / "viz").glob("*.py")))
    (sources / "dgmn" / "nn" / "__pycache__").mkdir(exist_ok=True)
    (sources / "dgmn" / "nn" / "__pycache__" / "dgmn.cpython-311.pyc").write_bytes(b"\0")
    for path in code_files(sources):
        os.utime(path, (1, 1))
    assert code_digest(sources) == before
    assert all(pattern.endswith(".py") for pattern in CODE_SOURCES)


def _project(root: Path, digest: str) -> list[str]:
    """A processed dataset folder holding only a manifest with ``digest``; overrides to use it."""
    manifest = root / "processed" / "cityscapes" / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"digest": digest}))
    return [EXPERIMENT, "profile=smoke", f"paths.processed={root / 'processed'}"]


def test_run_key_changes_with_config_data_and_code_only(tmp_path, sources):
    overrides = _project(tmp_path, "a" * 64)
    base = run_identity(load_config(overrides), tmp_path, sources)
    assert base.key.startswith("table1-dgmn_da_dw_ds-smoke-seed0-") and base.data == "a" * 64

    def key(extra: list[str]) -> str:
        return run_identity(load_config([*overrides, *extra]), tmp_path, sources).key

    assert key([]) == base.key  # deterministic
    # where and how it runs, and the later stages: the same run
    for same in (["tracking.uri=sqlite:////elsewhere/mlflow.db"], ["paths.runs=/elsewhere"],
                 ["evaluate.latency_reps=7"], ["scaling.max_failures=0"],
                 ["data.loader_workers=3"], ["data.cache_decoded=true"],
                 ["report.tables=[table1_cityscapes_val_ablation]"]):
        assert key(same) == base.key, same
    # what shapes the result: a new run
    assert key(["schedule.lr=0.02"]) != base.key
    assert key(["data.val_batch_size=4"]) != base.key  # the validation numbers' float sums
    assert key(["model.context_kwargs.rates=[1,2]"]) != base.key
    _project(tmp_path, "b" * 64)
    assert run_identity(load_config(overrides), tmp_path, sources).key != base.key
    _project(tmp_path, "a" * 64)
    _append(sources / "dgmn" / "nn" / "dgmn.py")
    assert run_identity(load_config(overrides), tmp_path, sources).key != base.key


def test_a_missing_manifest_is_one_clear_error(tmp_path):
    cfg = load_config([EXPERIMENT, "profile=smoke", f"paths.processed={tmp_path}"])
    with pytest.raises(StageError, match=r"cityscapes/manifest.json: not found; run the "
                                         r"preprocess stage"):
        run_identity(cfg, tmp_path)


def test_the_log_line_says_resumed_or_which_component_changed(tmp_path, sources):
    storage = tmp_path / "ray"
    overrides = _project(tmp_path, "a" * 64)
    cfg = load_config(overrides)
    first = run_identity(cfg, tmp_path, sources)
    assert describe_run(storage, first, cfg).endswith(
        f"new (no earlier run of table1-dgmn_da_dw_ds-smoke-seed0 in {storage})")
    (storage / first.key).mkdir(parents=True)
    record_identity(storage / first.key, first, cfg)
    assert "config, data and code match its record; resuming it" in describe_run(
        storage, first, cfg)

    _project(tmp_path, "b" * 64)
    line = describe_run(storage, run_identity(cfg, tmp_path, sources), cfg)
    assert f"not reusing run {first.key}: data changed (manifest digest aaaaaaaaaaaa -> " \
           "bbbbbbbbbbbb)" in line
    assert "config changed" not in line and "code changed" not in line

    _project(tmp_path, "a" * 64)
    _append(sources / "pipeline" / "training" / "loop.py")
    line = describe_run(storage, run_identity(cfg, tmp_path, sources), cfg)
    assert line.endswith(f"code changed (code digest {first.code[:12]} -> "
                         f"{code_digest(sources)[:12]})")

    lr = load_config([*overrides, "schedule.lr=0.02"])
    line = describe_run(storage, run_identity(lr, tmp_path, sources), lr)
    assert "config changed (schedule.lr: 0.01 -> 0.02)" in line and "data changed" not in line


def test_the_record_holds_no_credentials(tmp_path):
    overrides = _project(tmp_path, "a" * 64)
    cfg = load_config([*overrides, "model.weights=https://user:s3cr3t@host/resnet.pth"])
    identity = run_identity(cfg, tmp_path)
    record_identity(tmp_path, identity, cfg)
    record = json.loads(next(tmp_path.glob("*identity*.json")).read_text())
    assert "s3cr3t" not in json.dumps(record)
    assert record["shaping_config"]["model"]["weights"] == "https://***@host/resnet.pth"
    assert record["key"] == identity.key
