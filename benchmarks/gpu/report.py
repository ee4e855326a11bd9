"""What the run concludes: the fused op's traffic model, the issue's targets, the table."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.gpu.common import KS, Row, Settings, size_label
from benchmarks.gpu.models import fcn_label
from benchmarks.gpu.sweep import best_blockings


def traffic_model(s: Settings, height: int, width: int, element: int) -> dict[str, float]:
    """Bytes and operations of the fused op (see BENCHMARKS.md), in MB and GFLOP."""
    b, c, hw = s.batch, s.channels, height * width
    num_rates, k, g = len(s.rates), KS * KS, s.groups
    samples = b * hw * num_rates * k
    feat = b * c * hw * element
    walks = samples * 2 * element
    weights = b * num_rates * g * k * hw * element
    return {
        "fwd_min_dram_MB": (2 * feat + walks + weights) / 1e6,
        # backward: read grad_out, features, walks, weights; write the three gradients
        "bwd_min_dram_MB": (3 * feat + 2 * walks + 2 * weights) / 1e6,
        "gather_MB": samples * 4 * c * element / 1e6,  # four corners × C, per pass
        "atomic_adds_M": samples * 4 * c / 1e6,
        "fwd_GFLOP": samples * 4 * c * 2 / 1e9,
    }


def _find(rows: list[Row], section: str, name: str, size: str | None = None) -> Row | None:
    for r in rows:
        if r.section == section and r.name == name and (size is None or r.size == size):
            return r
    return None


def _best(row: Row | None, eager: str, graph: str) -> float | None:
    if row is None:
        return None
    values = [v for v in (getattr(row, eager), getattr(row, graph)) if v is not None]
    return min(values) if values else None


def evaluate_targets(rows: list[Row], s: Settings) -> list[dict[str, Any]]:
    """The issue's targets (H100, bf16), with measured values; times use the faster of the
    eager and graph medians."""
    if not s.cuda:
        return []
    small = size_label(*s.sizes[0])
    large = size_label(*s.sizes[-1])
    out = []

    def target(name: str, value: float | None, limit: float, smaller_is_better: bool) -> None:
        ok = None if value is None else (value <= limit if smaller_is_better else value >= limit)
        out.append({"target": name, "value": None if value is None else round(value, 4),
                    "limit": limit, "met": ok})

    fused_small = _find(rows, "op", "dgmn_fused", small)
    fused_large = _find(rows, "op", "dgmn_fused", large)
    nl_small = _find(rows, "op", "nonlocal_flash", small)
    nl_large = _find(rows, "op", "nonlocal_flash", large)
    ref_small = _find(rows, "op", "dgmn_reference", small)
    target(f"fused fwd ms @ {small}", _best(fused_small, "fwd_ms", "fwd_graph_ms"), 0.25, True)
    target(f"fused fwd+bwd ms @ {small}", _best(fused_small, "fwd_bwd_ms",
                                                 "fwd_bwd_graph_ms"), 1.0, True)
    for label, fused, nl, limit in ((small, fused_small, nl_small, 4.0),
                                    (large, fused_large, nl_large, 10.0)):
        a = _best(nl, "fwd_bwd_ms", "fwd_bwd_graph_ms")
        b = _best(fused, "fwd_bwd_ms", "fwd_bwd_graph_ms")
        target(f"Non-local / fused fwd+bwd @ {label}", a / b if a and b else None, limit, False)
    if fused_small and ref_small and fused_small.fwd_bwd_mib and ref_small.fwd_bwd_mib:
        target(f"fused / reference peak extra memory @ {small}",
               fused_small.fwd_bwd_mib / ref_small.fwd_bwd_mib, 0.25, True)
    dgmn = _find(rows, "inference", f"{fcn_label(s)}+dgmn")
    target("FCN+DGMN / FCN inference", dgmn.extra.get("vs_plain") if dgmn else None, 1.05, True)
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def print_table(rows: list[Row]) -> None:
    header = ("section", "name", "size", "dtype", "fwd ms", "f+b ms", "fwd graph", "f+b graph",
              "fwd MiB", "f+b MiB", "note")
    lines = [header]
    for r in rows:
        note = r.error or ", ".join(f"{k}={v}" for k, v in r.extra.items()
                                    if k in ("vs_plain", "images_per_s", "note"))
        lines.append((r.section, r.name, r.size, r.dtype, _fmt(r.fwd_ms), _fmt(r.fwd_bwd_ms),
                      _fmt(r.fwd_graph_ms), _fmt(r.fwd_bwd_graph_ms), _fmt(r.fwd_mib, 1),
                      _fmt(r.fwd_bwd_mib, 1), note[:60]))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_summary(report: dict[str, Any], rows: list[Row]) -> None:
    """The table, the compiled kernels, the best blockings and the targets."""
    print()
    print_table(rows)
    if report.get("kernels"):
        print(f"kernels: {json.dumps(report['kernels'])}")
    for (size, kind), entry in sorted(best_blockings(report.get("sweep") or []).items()):
        print(f"best {kind} blocking @ {size}: {entry}")
    for t in report["targets"]:
        status = {True: "MET ", False: "MISS", None: "n/a "}[t["met"]]
        print(f"target {status} {t['target']}: {t['value']} (limit {t['limit']})")
