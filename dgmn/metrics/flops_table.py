"""Table 1's params/FLOPs columns: our modules counted beside the paper's figures.

Usage::

    python -m dgmn.metrics.flops_table [--channels 512] [--size 97] [--json out.json]

The paper's "FLOPs" are multiply-accumulates of the convolution layers (``paper`` column, see
:mod:`dgmn.metrics.complexity`); ``full`` adds sampling, aggregation and every matmul.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dgmn.metrics.complexity import count_complexity
from dgmn.nn import build_context_module
from dgmn.paper import paper_rows

TABLE1_MODULES: dict[str, str] = {
    "deformable": "deformable",
    "aspp": "aspp",
    "nonlocal": "nonlocal_head",
    "dgmn_da": "dgmn_da",
    "dgmn_da_dw": "dgmn_da_dw",
    "dgmn_da_dw_ds": "dgmn_da_dw_ds",
}
"""Table 1 row name → context-module registry name (with that module's default arguments)."""


@dataclass(frozen=True)
class Table1Row:
    model: str
    params_m: float
    paper_gmacs: float
    full_gmacs: float
    paper_params_m: float | None
    paper_flops_g: float | None


def table1_rows(channels: int = 512, size: int = 97, models: Sequence[str] | None = None
                ) -> list[Table1Row]:
    """Count every Table 1 context module on a ``(1, channels, size, size)`` feature map."""
    paper = {row["model"]: row for row in paper_rows("table1_cityscapes_val_ablation")}
    features = torch.randn(1, channels, size, size)
    rows = []
    for model in models or TABLE1_MODULES:
        if model not in TABLE1_MODULES:
            raise ValueError(f"unknown Table 1 model {model!r}; known: {list(TABLE1_MODULES)}")
        counts = count_complexity(build_context_module(TABLE1_MODULES[model], channels),
                                  features)
        rows.append(Table1Row(model, counts.params_m, counts.paper_gmacs, counts.full_gmacs,
                              paper[model]["params_m"], paper[model]["flops_g"]))
    return rows


def format_markdown(rows: Sequence[Table1Row], channels: int, size: int) -> str:
    """A Markdown table: ours beside the paper's, in the paper's units."""
    def num(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    lines = [
        f"Added params and GMACs of each context module at C={channels}, {size}×{size} "
        "positions (paper convention: conv MACs; full: + sampling, aggregation, matmuls).",
        "",
        "| model | params (M) | paper params (M) | GMACs | paper GFLOPs | full GMACs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.model} | {num(r.params_m)} | {num(r.paper_params_m)} | "
              f"{num(r.paper_gmacs)} | {num(r.paper_flops_g)} | {num(r.full_gmacs)} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--size", type=int, default=97, help="feature-map side (97 for 769²)")
    parser.add_argument("--models", nargs="*", default=None, choices=list(TABLE1_MODULES))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.channels <= 0 or args.size <= 0:
        parser.error(f"--channels and --size must be positive, got {args.channels}, {args.size}")
    rows = table1_rows(args.channels, args.size, args.models)
    print(format_markdown(rows, args.channels, args.size))
    if args.json is not None:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
