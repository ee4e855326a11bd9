"""The benchmark scripts on a CPU: the GPU benchmark's dry run, its failing-row handling and
report writing, its no-CUDA exit, and the offline sm_90 compilation of the fused kernels
(registers, spills, instruction mix)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_exercises_every_section(tmp_path):
    bench = load_script("bench_gpu")
    out = tmp_path / "dry.json"
    assert bench.main(["--dry-run", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["environment"]["card"] == "cpu (dry run)"
    assert {"torch", "triton", "date"} <= set(report["environment"])
    assert report["correctness"] and all(c["passed"] for c in report["correctness"])
    rows = {(r["section"], r["name"]): r for r in report["rows"]}
    for key in [("op", "dgmn_fused"), ("op", "dgmn_reference"), ("op", "nonlocal_flash"),
                ("op", "ccnet"), ("op", "aspp"), ("op", "deform_conv2d"),
                ("inference", "fcn_resnet_tiny_d8+dgmn"), ("train_step", "fcn_resnet_tiny_d8")]:
        assert key in rows, key
    errors = {key: r["error"] for key, r in rows.items() if r["error"]}
    assert not errors
    assert rows[("op", "dgmn_fused")]["fwd_bwd_ms"] > 0
    assert rows[("train_step", "fcn_resnet_tiny_d8")]["extra"]["images_per_s"] > 0


@pytest.mark.parametrize("flag", [True, False], ids=["traceback", "one-line"])
def test_a_failing_row_is_recorded_and_traceback_follows_the_flag(tmp_path, monkeypatch,
                                                                   capsys, flag):
    """Op rows come from ``OP_CASES``; a row that raises keeps its error in the JSON, the run
    goes on, and ``--traceback`` passed to ``main`` (not only on the command line) prints
    the traceback."""
    bench = load_script("bench_gpu")
    from benchmarks.gpu import op

    def broken(inputs, s):
        raise RuntimeError("boom in the broken case")

    monkeypatch.setattr(op, "OP_CASES", (op.OpCase("broken", broken),))
    monkeypatch.setattr(bench, "baseline_rows", lambda s, height, width: [])
    out = tmp_path / "r.json"
    argv = ["--dry-run", "--skip", "correctness", "models", "sweep", "--out", str(out)]
    assert bench.main(argv + (["--traceback"] if flag else [])) == 0
    report = json.loads(out.read_text())
    assert [(r["name"], r["error"]) for r in report["rows"]] == [
        ("broken", "RuntimeError: boom in the broken case")]
    assert "tracebacks" not in report["settings"] and report["settings"]["device"] == "cpu"
    captured = capsys.readouterr()
    assert "! broken 5x6: RuntimeError: boom" in captured.out
    assert ("Traceback (most recent call last)" in captured.err) == flag


def test_report_write_failure_leaves_no_temporary_file(tmp_path):
    load_script("bench_gpu")
    from benchmarks.gpu.common import write_report

    target = tmp_path / "report.json"
    target.mkdir()  # a directory where the JSON should go: the rename fails
    with pytest.raises(OSError):
        write_report({"rows": []}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_report({"rows": [1]}, tmp_path / "ok.json")
    assert json.loads((tmp_path / "ok.json").read_text()) == {"rows": [1]}
    assert not (tmp_path / "ok.json.tmp").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the exit without CUDA")
def test_without_cuda_exits_with_a_message(tmp_path, capsys):
    bench = load_script("bench_gpu")
    assert bench.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_kernels_compile_for_h100_without_spills(tmp_path, monkeypatch):
    """ptxas runs on the CPU: the kernels must build for sm_90 at the benchmark size, the
    gathers must be 16-byte vector loads, nothing may spill, the gather backward must use no
    atomics, and the scatter variant no shared-memory layout conversion before its atomics."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    inspect = load_script("inspect_kernels")
    report = {row["kernel"]: row for row in (
        inspect.compile_report(name, inspect.default_config(128, backward=name != "fwd"),
                               dump_dir=tmp_path, batch=2, channels=512, height=97, width=97,
                               num_rates=5, groups=4, kernel_size=3, dtype="bf16", walks=True)
        for name in inspect.KERNELS)}
    assert set(report) == set(inspect.KERNELS)
    for name, row in report.items():
        # ≤ 168 registers at 4 warps per program still fits 3 programs (12 warps) per SM
        assert row["reg"] <= 168 and row["stack"] == 0, (name, row)
    for name in ("fwd", "bwd_feat_gather", "bwd_param"):
        assert report[name]["sass"].get("LDG.E.128", 0) > 0, name
    gather = report["bwd_feat_gather"]["sass"]
    assert not any(op.startswith(("REDG", "ATOMG", "STS", "LDS")) for op in gather), gather
    scatter = report["bwd_feat_scatter"]["sass"]
    assert any(op.startswith(("REDG", "ATOMG")) for op in scatter)
    assert not any(op.startswith(("STS", "LDS")) for op in scatter), scatter
