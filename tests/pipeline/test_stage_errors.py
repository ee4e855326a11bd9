"""Faults that used to end in a traceback (exit 1) end in one ``error: …`` line naming the file,
URL or key, exit status 2, and nothing half-written: a full disk during fetch, download,
extraction and preprocess, and backbone weights that do not exist (issue 10, item 9)."""

from __future__ import annotations

import builtins
import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from pipeline.common import archive, download
from pipeline.common.errors import run_stage
from pipeline.data import fetch
from pipeline.data import stage as data_stage
from pipeline.data.synthetic import SyntheticCityscapesConfig, SyntheticCocoConfig, generate_coco

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")


def _no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FillingFile:
    """A binary file opened for writing on a disk with ``room`` bytes left: the write that
    would overflow raises ``ENOSPC`` (as ``write(2)`` does), earlier writes go through."""

    def __init__(self, f: Any, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            raise _no_space()
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def _disk_with_room(monkeypatch: pytest.MonkeyPatch, module: Any, room: int) -> None:
    """Files ``module`` opens for writing fill up after ``room`` bytes."""
    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = builtins.open(file, mode, *args, **kwargs)
        return _FillingFile(f, room) if set(mode) & set("wax") else f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def _disk_full_after_saves(monkeypatch: pytest.MonkeyPatch, saves: int) -> None:
    """``PIL.Image.Image.save`` writes ``saves`` files, then the disk is full."""
    real = Image.Image.save
    left = [saves]

    def save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        if left[0] == 0:
            raise _no_space()
        left[0] -= 1
        real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _nothing_left(parent: Path, name: str) -> None:
    """No output under ``name`` and no temporary tree beside it."""
    assert not (parent / name).exists()
    assert not parent.exists() or not [p for p in parent.iterdir() if p.name.startswith(name)]


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def coco_mirror(tmp_path, http_server, zip_tree, md5) -> Path:
    """Tiny COCO archives served over HTTP and the checksums file describing them."""
    src = tmp_path / "src"
    generate_coco(src, SyntheticCocoConfig(min_side=64, max_side=80, num_train=2, num_val=2),
                  progress=False)
    entries = []
    for name, top in [("train2017.zip", "train2017"), ("val2017.zip", "val2017"),
                      ("annotations_trainval2017.zip", "annotations")]:
        data = zip_tree(tmp_path / "zips" / name, src, top).read_bytes()
        http_server.served.files[f"/{name}"] = data
        entries.append({"name": name, "md5": md5(data), "bytes": len(data), "provides": [top]})
    checksums = tmp_path / "checksums.yaml"
    checksums.write_text(yaml.safe_dump({"coco2017": {"host": http_server.url,
                                                      "archives": entries}}))
    return checksums


def _data_stage(*argv: str) -> int:
    """``python -m pipeline.data argv…`` in this process; its exit status."""
    return run_stage(data_stage.main, list(argv))


def _fetch_coco(tmp_path: Path, checksums: Path) -> int:
    return _data_stage("fetch", "coco", "data.source=real", f"paths.raw={tmp_path / 'raw'}",
                       f"fetch.archives_dir={tmp_path / 'archives'}",
                       f"fetch.checksums={checksums}", "fetch.retries=2")


def test_disk_full_during_download(tmp_path, http_server, coco_mirror, monkeypatch, capsys):
    _disk_with_room(monkeypatch, download, room=1000)
    assert _fetch_coco(tmp_path, coco_mirror) == 2
    line = _one_error_line(capsys)
    part = tmp_path / "archives" / "train2017.zip.part"
    assert line.startswith(f"error: {part}: no space left on device (downloading "), line
    assert f"{http_server.url}/train2017.zip" in line
    # a full disk is not a network problem: no retries
    assert [r["path"] for r in http_server.served.requests] == ["/train2017.zip"]
    _nothing_left(tmp_path / "raw", "coco2017")


def test_disk_full_during_extraction(tmp_path, coco_mirror, monkeypatch, capsys):
    _disk_with_room(monkeypatch, archive, room=0)
    assert _fetch_coco(tmp_path, coco_mirror) == 2
    line = _one_error_line(capsys)
    assert ": no space left on device (extracting " in line and "train2017.zip)" in line, line
    assert "corrupt" not in line
    _nothing_left(tmp_path / "raw", "coco2017")


def test_disk_full_during_synthetic_fetch(tmp_path, monkeypatch, capsys):
    _disk_full_after_saves(monkeypatch, saves=3)
    root = tmp_path / "raw" / "cityscapes"
    rc = _data_stage("fetch", "cityscapes", "profile=smoke", f"paths.raw={tmp_path / 'raw'}",
                     "synthetic.cityscapes.num_train=2", "synthetic.cityscapes.num_val=2")
    assert rc == 2
    assert _one_error_line(capsys) == \
        f"error: {root}: no space left on device (writing synthetic_cityscapes)"
    _nothing_left(root.parent, root.name)


def test_disk_full_during_preprocess(tmp_path, monkeypatch, capsys):
    fetch.run(fetch.FetchConfig(
        dataset="synthetic_cityscapes", root=tmp_path / "raw" / "cityscapes", progress=False,
        synthetic_cityscapes=SyntheticCityscapesConfig(height=64, width=128, num_train=2,
                                                       num_val=1, extra_gt_files=False)))
    _disk_full_after_saves(monkeypatch, saves=1)  # the second trainIds PNG does not fit
    out = tmp_path / "processed" / "cityscapes"
    rc = _data_stage("preprocess", "cityscapes", "profile=smoke", f"paths.raw={tmp_path / 'raw'}",
                     f"paths.processed={tmp_path / 'processed'}")
    assert rc == 2
    assert _one_error_line(capsys) == (f"error: {out}: no space left on device "
                                       f"(writing the preprocessed synthetic_cityscapes)")
    _nothing_left(out.parent, out.name)


# --------------------------------------------------------------------------- backbone weights


@pytest.mark.slow
def test_missing_backbone_weights_is_one_line(tmp_path):
    """``model.weights`` naming a file that does not exist: the library's
    ``BackboneWeightsError`` reaches ``run_stage`` and becomes one line, before Ray starts."""
    (tmp_path / "cityscapes").mkdir()  # an (empty) dataset root: preflight gets to the model
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_ENABLE_TELEMETRY": "false",
           "DGMN_PROGRESS": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "experiment=table1/dilated_fcn", "profile=smoke",
         "model.weights=/nonexistent.pth", f"paths.processed={tmp_path}",
         f"paths.runs={tmp_path / 'runs'}"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "'/nonexistent.pth'" in lines[0]
    assert "neither 'imagenet' nor an existing file" in lines[0]
    assert not (tmp_path / "runs").exists()
