"""dgmn._io.atomic_write_bytes: the one atomic write (the library's and the pipeline's)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from dgmn import _io
from dgmn.metrics.coco import write_coco_results
from pipeline.common import fs


def test_writes_the_bytes_with_open_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = _io.atomic_write_bytes(tmp_path / "sub" / "a.json", b"[1]")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"[1]"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


@pytest.mark.parametrize("write", [_io.atomic_write_bytes, fs.atomic_write_bytes,
                                   lambda p, d: write_coco_results([{"x": 1}], p)])
def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch,
                                                                     write):
    path = tmp_path / "results.json"
    path.write_bytes(b"old")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_coco_results_and_pipeline_writes_use_it(tmp_path, monkeypatch):
    calls = []
    real = _io.atomic_write_bytes

    def spy(path, data, **kwargs):
        calls.append(path)
        return real(path, data, **kwargs)

    monkeypatch.setattr("dgmn.metrics.coco.atomic_write_bytes", spy)
    monkeypatch.setattr(fs, "_atomic_write_bytes", spy)
    write_coco_results([{"image_id": 1}], tmp_path / "r.json")
    fs.atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert [p.name for p in calls] == ["r.json", "m.json"]


def test_the_library_module_imports_nothing_of_the_pipeline():
    code = "import sys, dgmn._io, dgmn.metrics.coco; print(any(m == 'pipeline' or " \
           "m.startswith('pipeline.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
