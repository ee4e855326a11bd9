"""Declarative specs of the report's tables: which paper table, which columns, which curves.

A table has the columns ``model`` (the experiment's label) and ``run`` (the experiment whose
results it shows; ``missing …`` when its evaluation is absent), then the spec's columns in
order. A :class:`Column` reads one value from our ``metrics.json`` (``source="ours"``) or from
the paper's row in ``dgmn/paper/tables.yaml`` (``source="paper"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["ours", "paper"]
Kind = Literal["number", "rates", "flag", "text"]


@dataclass(frozen=True)
class Column:
    """One table column.

    Attributes:
        header: column title (markdown/CSV; LaTeX escapes it).
        source: ``"ours"`` (a ``metrics.json`` key) or ``"paper"`` (a ``tables.yaml`` key).
        key: the key read.
        digits: decimals of numbers.
        kind: ``number``; ``rates`` (a φ list shown as ``{1,6,12}``); ``flag`` (✓ or blank);
            ``text`` (shown as is).
    """

    header: str
    source: Source
    key: str
    digits: int = 1
    kind: Kind = "number"


def versus(name: str, ours: str, paper: str, digits: int = 1, ours_note: str = "",
           paper_note: str = "") -> tuple[Column, Column]:
    """The pair ``<name> (ours[, ours_note])`` / ``<name> (paper[, paper_note])`` of one
    quantity; the notes say where the two differ (a convention, an evaluation split)."""
    def header(source: str, note: str) -> str:
        return f"{name} ({source}{f', {note}' if note else ''})"

    return (Column(header("ours", ours_note), "ours", ours, digits),
            Column(header("paper", paper_note), "paper", paper, digits))


@dataclass(frozen=True)
class TableSpec:
    """How one paper table is reported.

    Attributes:
        table: name in ``tables.yaml`` (and the output file stem).
        title: heading in the README section and the LaTeX caption.
        columns: columns after ``model`` and ``run``.
        curves: validation metrics (``history.json`` ``val`` keys) plotted per model, one panel
            each (Fig. 5).
        headline, context: the scores of the seed-statistics table (``scores.json`` keys):
            the table's headline metric and that of the context classes.
        baseline_row: the row every other row is compared with, seed by seed.
    """

    table: str
    title: str
    columns: tuple[Column, ...]
    curves: tuple[str, ...]
    headline: str = "miou"
    context: str = "context_miou"
    baseline_row: int = 0

    @property
    def ours_keys(self) -> tuple[str, ...]:
        """The ``metrics.json`` keys this table shows."""
        return tuple(c.key for c in self.columns if c.source == "ours")


_AP = (("AP box", "bbox_AP", "ap_box"), ("AP50 box", "bbox_AP50", "ap50_box"),
       ("AP75 box", "bbox_AP75", "ap75_box"), ("AP mask", "segm_AP", "ap_mask"),
       ("AP50 mask", "segm_AP50", "ap50_mask"), ("AP75 mask", "segm_AP75", "ap75_mask"))
_AP_COLUMNS = tuple(col for name, ours, paper in _AP for col in versus(name, ours, paper))
#: Table 4's paper figures are COCO test-dev (scored only by the evaluation server); our runs
#: are scored on val, so every header names its split.
_AP_VAL_VS_TESTDEV = tuple(col for name, ours, paper in _AP
                           for col in versus(name, ours, paper, ours_note="val",
                                             paper_note="test-dev"))
_BACKBONE = Column("backbone", "paper", "backbone", kind="text")
_SWITCHES = tuple(Column(name.upper(), "paper", name, kind="flag") for name in ("da", "dw", "ds"))
_RATES = Column("φ", "paper", "rates", kind="rates")
_DETECTION_CURVES = ("bbox_AP", "segm_AP")

TABLE_SPECS: dict[str, TableSpec] = {spec.table: spec for spec in (
    TableSpec(
        "table1_cityscapes_val_ablation",
        "Table 1: ablation on Cityscapes val (Dilated FCN, single-scale mIoU %)",
        (*versus("mIoU", "miou", "miou"),
         *versus("+params M", "added_params_m", "params_m", 2),
         *versus("+GFLOPs", "added_gmacs_paper", "flops_g", 2, ours_note="paper convention")),
        ("miou",)),
    TableSpec(
        "table2_coco_val",
        "Table 2: Mask R-CNN R50-FPN on COCO val (box and mask AP %)",
        _AP_COLUMNS, _DETECTION_CURVES, headline="bbox_AP", context="context_bbox_AP"),
    TableSpec(
        "table4_coco_testdev",
        "Table 4: Mask R-CNN with DGMN (box and mask AP %); paper: COCO test-dev, ours: COCO val "
        "(test-dev is scored by the evaluation server only; Table 8 has the paper's val figures)",
        (_BACKBONE, *_AP_VAL_VS_TESTDEV),
        _DETECTION_CURVES, headline="bbox_AP", context="context_bbox_AP"),
    TableSpec(
        "table5_cityscapes_val_tricks",
        "Table 5: OHEM, multi-grid and multi-scale inference on Cityscapes val "
        "(FCN w/ DGMN DA+DW+US, mIoU %)",
        (*(Column(header, "paper", key, kind="flag") for header, key in (
            ("OHEM", "ohem"), ("Multi-grid", "multigrid"), ("MS", "multiscale"))),
         Column("mIoU (ours, single scale)", "ours", "miou"),
         Column("mIoU (ours, MS + flip)", "ours", "miou_ms_flip"),
         Column("mIoU (paper)", "paper", "miou")),
        ("miou",)),
    TableSpec(
        "table6_cityscapes_val_rates",
        "Table 6: sampling rates φ on Cityscapes val (mIoU %)",
        (*_SWITCHES, _RATES, *versus("mIoU", "miou", "miou")),
        ("miou",)),
    TableSpec(
        "table7_coco_val_rates_groups",
        "Table 7: sampling rates φ and groups G on COCO val (Mask R-CNN R50, C5; AP %)",
        (*_SWITCHES, _RATES, Column("G", "paper", "groups", kind="text"),
         *versus("AP box", "bbox_AP", "ap_box"), *versus("AP mask", "segm_AP", "ap_mask")),
        _DETECTION_CURVES, headline="bbox_AP", context="context_bbox_AP"),
    TableSpec(
        "table8_coco_val_backbones",
        "Table 8: Mask R-CNN with DGMN (C5) on ResNet-101 and ResNeXt-101, COCO val "
        "(box and mask AP %)",
        (_BACKBONE, *_AP_COLUMNS),
        _DETECTION_CURVES, headline="bbox_AP", context="context_bbox_AP"),
)}

#: Display names of metrics (plot axes, the Tune table).
METRIC_NAMES = {"miou": "mIoU %", "bbox_AP": "AP box %", "segm_AP": "AP mask %",
                "context_miou": "context mIoU %", "context_bbox_AP": "context AP box %"}


def metric_name(key: str) -> str:
    """The display name of a ``metrics.json``/``history.json`` key (the key when unknown)."""
    return METRIC_NAMES.get(key, key)


#: Reported unless ``tables`` says otherwise.
DEFAULT_TABLES = ("table1_cityscapes_val_ablation", "table2_coco_val",
                  "table6_cityscapes_val_rates", "table7_coco_val_rates_groups")
#: Added to the defaults when at least one of their runs has been evaluated.
OPTIONAL_TABLES = ("table4_coco_testdev",)
