"""Our params/FLOPs beside the paper's: Table 1's added columns and the COCO whole-model totals.

Usage::

    python -m dgmn.metrics.flops_table [--channels 512] [--size 97] [--models …]
                                       [--coco | --no-coco] [--coco-size 800 1333]
                                       [--json out.json]

Table 1: each context module as its ``table1/*`` experiment builds it, on a ``(1, C, size,
size)`` feature map; the paper's "FLOPs" are multiply-accumulates of the convolution layers
(``paper`` column, see :mod:`dgmn.metrics.complexity`), ``full`` adds sampling, aggregation and
every matmul. COCO totals (§4.3; ``--no-coco`` skips them, they take minutes on a CPU): the
whole Mask R-CNN of each ``table2``/``table4`` experiment, with the paper's training-time
parameter count and one forward on a random ``--coco-size`` image
(:func:`dgmn.models.detection.mask_rcnn_totals`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dgmn._io import atomic_write_bytes
from dgmn.metrics.complexity import count_complexity
from dgmn.models.detection import mask_rcnn_totals
from dgmn.nn import build_context_module
from dgmn.paper import paper_rows, paper_tables

TABLE1_MODULES: dict[str, str] = {
    "deformable": "deformable",
    "aspp": "aspp",
    "nonlocal": "nonlocal_head",
    "dgmn_da": "dgmn_da",
    "dgmn_da_dw": "dgmn_da_dw",
    "dgmn_da_dw_ds": "dgmn_da_dw_ds",
}
"""Table 1 row name → context-module registry name (with that module's default arguments), the
module its ``conf/experiment/table1`` experiment builds."""

COCO_MODELS: dict[tuple[str, str], dict[str, Any]] = {
    ("maskrcnn", "resnet50"): {"backbone": "resnet50", "insert": "maskrcnn"},
    ("maskrcnn", "resnet101"): {"backbone": "resnet101", "insert": "maskrcnn"},
    ("dgmn_c4_c5", "resnet50"): {"backbone": "resnet50", "insert": "dgmn_c4_c5"},
}
"""(model, backbone) of ``model_totals`` in ``tables.yaml`` → the Mask R-CNN arguments of the
experiments that train it (``table2/maskrcnn``, ``table4/r101_maskrcnn``,
``table4/r50_dgmn_c4_c5``). The R-50 baseline has no paper total; it is the reference for what
DGMN (C4, C5) adds."""

PAPER_COCO_SIZE: tuple[int, int] = (800, 1333)
"""The largest COCO input at the paper's 800 / 1333 resizing (supplementary A.2.3)."""


@dataclass(frozen=True)
class Table1Row:
    model: str
    params_m: float
    paper_gmacs: float
    full_gmacs: float
    paper_params_m: float | None
    paper_flops_g: float | None


@dataclass(frozen=True)
class CocoRow:
    """One whole Mask R-CNN: trainable parameters (M) and the MACs (G) of one forward,
    ``None`` when not counted."""

    model: str
    backbone: str
    params_m: float
    paper_gmacs: float | None
    full_gmacs: float | None
    paper_params_m: float | None
    paper_gflops: float | None


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


def coco_rows(image_size: tuple[int, int] | None = PAPER_COCO_SIZE,
              **build_kwargs: Any) -> list[CocoRow]:
    """The whole-model totals of :data:`COCO_MODELS` beside the paper's (``image_size=None``:
    parameters only). ``build_kwargs`` go to the Mask R-CNN builder (e.g. a smaller
    ``min_size``/``max_size`` with a smaller image)."""
    paper = {(row["model"], row["backbone"]): row for row in paper_tables()["model_totals"]}
    rows = []
    for (model, backbone), arguments in COCO_MODELS.items():
        totals = mask_rcnn_totals(**arguments, image_size=image_size, **build_kwargs)
        counts = totals.complexity
        reported: Mapping[str, Any] = paper.get((model, backbone), {})
        rows.append(CocoRow(model, backbone, totals.params_m,
                            counts.paper_gmacs if counts else None,
                            counts.full_gmacs if counts else None,
                            reported.get("params_m"), reported.get("gflops")))
    return rows


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_markdown(rows: Sequence[Table1Row], channels: int, size: int) -> str:
    """Table 1 as Markdown: ours beside the paper's, in the paper's units."""
    lines = [
        f"Added params and GMACs of each context module at C={channels}, {size}×{size} "
        "positions (paper convention: conv MACs; full: + sampling, aggregation, matmuls).",
        "",
        "| model | params (M) | paper params (M) | GMACs | paper GFLOPs | full GMACs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.model} | {_num(r.params_m)} | {_num(r.paper_params_m)} | "
              f"{_num(r.paper_gmacs)} | {_num(r.paper_flops_g)} | {_num(r.full_gmacs)} |"
              for r in rows]
    return "\n".join(lines)


def format_coco_markdown(rows: Sequence[CocoRow], image_size: tuple[int, int] | None) -> str:
    """The COCO whole-model totals as Markdown, ours beside the paper's (§4.3)."""
    where = ("parameters only" if image_size is None
             else f"one forward on a {image_size[0]}×{image_size[1]} image")
    lines = [
        f"Whole Mask R-CNN (trainable parameters of the paper's setting; {where}; conv: the "
        "paper convention, full: + fully connected layers, sampling, aggregation).",
        "",
        "| model | backbone | params (M) | paper params (M) | GMACs conv | GMACs full "
        "| paper GFLOPs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r.model} | {r.backbone} | {_num(r.params_m)} | {_num(r.paper_params_m, 1)} "
              f"| {_num(r.paper_gmacs, 1)} | {_num(r.full_gmacs, 1)} | "
              f"{_num(r.paper_gflops, 1)} |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--size", type=int, default=97, help="feature-map side (97 for 769²)")
    parser.add_argument("--models", nargs="*", default=None, choices=list(TABLE1_MODULES))
    parser.add_argument("--coco", action=argparse.BooleanOptionalAction, default=True,
                        help="also count the COCO whole-model totals (minutes on a CPU)")
    parser.add_argument("--coco-size", type=int, nargs=2, default=list(PAPER_COCO_SIZE),
                        metavar=("H", "W"), help="COCO image size (default 800 1333)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.channels <= 0 or args.size <= 0 or min(args.coco_size) <= 0:
        parser.error(f"--channels, --size and --coco-size must be positive, got "
                     f"{args.channels}, {args.size}, {args.coco_size}")
    rows = table1_rows(args.channels, args.size, args.models)
    print(format_markdown(rows, args.channels, args.size))
    data: dict[str, Any] = {"table1": [asdict(r) for r in rows]}
    if args.coco:
        height, width = args.coco_size
        totals = coco_rows((height, width), min_size=min(height, width),
                           max_size=max(height, width))
        print()
        print(format_coco_markdown(totals, (height, width)))
        data["coco_totals"] = [asdict(r) for r in totals]
    if args.json is not None:
        atomic_write_bytes(args.json, (json.dumps(data, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
