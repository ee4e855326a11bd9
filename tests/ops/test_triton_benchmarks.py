"""The benchmark scripts on a CPU: the GPU benchmark's dry run, its no-CUDA exit, and the
offline sm_90 compilation of the fused kernels (registers, spills, instruction mix)."""

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
