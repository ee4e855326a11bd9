"""The report's PNG figures, drawn with :mod:`dgmn.viz` from a profile's run files:
training loss and validation curves per table (Fig. 5), sampled nodes of a receiving pixel
(Fig. 4) and qualitative segmentations (image | ground truth | prediction, Cityscapes colours,
with a legend of the classes shown)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dgmn.data.labels import train_id_colors, train_id_names
from dgmn.viz import Panel, curves_figure, prediction_figure, sampling_figure
from dgmn.viz.curves import Curve
from pipeline.reporting.runs import RunLayout, as_number, read_json, read_npz
from pipeline.reporting.specs import TableSpec, metric_name
from pipeline.reporting.statistics import mean
from pipeline.reporting.tables import RowResult

DPI = 100
WALK_ARRAYS = ("image", "stride", "rates", "kernel_size", "receiver", "positions", "uniform")
QUALITATIVE_ARRAYS = ("images", "labels", "predictions")


def slug(experiment: str) -> str:
    """A file-name form of an experiment name (``table1/dgmn_da`` → ``table1-dgmn_da``)."""
    return experiment.replace("/", "-")


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def history_curve(history: dict[str, Any], part: str, key: str) -> Curve | None:
    """``(iterations, values)`` of ``key`` in a ``history.json``'s ``part`` records
    (``train``: per logged iteration; ``val``: per validation)."""
    points = [(r["iteration"], as_number(r.get(key))) for r in history.get(part, [])
              if "iteration" in r and key in r]
    return (tuple(p[0] for p in points), tuple(p[1] for p in points)) if points else None


def mean_curve(curves: Sequence[Curve]) -> Curve | None:
    """The mean of several seeds' curves at the iterations all of them have (one schedule:
    every iteration); a value absent or not finite in one seed leaves a gap (NaN)."""
    if not curves:
        return None
    by_iteration = [dict(zip(iterations, values, strict=True)) for iterations, values in curves]
    common = sorted(set.intersection(*(set(points) for points in by_iteration)))
    if not common:
        return None
    means = []
    for iteration in common:
        values = [points[iteration] for points in by_iteration]
        means.append(math.nan if any(v is None for v in values) else mean(values))
    return tuple(common), tuple(means)


def write_curves(spec: TableSpec, rows: Sequence[RowResult], layout: RunLayout,
                 seeds: Sequence[int], path: Path) -> Path | None:
    """The training loss, then one panel per ``spec.curves`` validation metric; one line per
    evaluated row: the mean over its seeds' ``history.json`` (the title says over how many
    seeds, the legend names a row with fewer); ``None`` when no row has a history."""
    # (history part, key, panel title, y label) of each panel
    sources = [("train", "loss", "training loss", "loss")]
    sources += [("val", m, f"validation {metric_name(m)}", metric_name(m)) for m in spec.curves]
    histories = {}
    for row in rows:
        if row.status != "ok" or row.trained_as is None:
            continue
        files = [file for seed in seeds
                 if (file := layout.history(row.trained_as, seed)).is_file()]
        if files:
            histories[row.label] = [read_json(file) for file in files]
    most = max((len(found) for found in histories.values()), default=0)
    curves: list[dict[str, Curve]] = [{} for _ in sources]
    for label, found in histories.items():
        shown = label if len(found) == most else f"{label} ({len(found)} of {most} seeds)"
        for (part, key, _, _), panel in zip(sources, curves, strict=True):
            curve = mean_curve([c for history in found
                                if (c := history_curve(history, part, key)) is not None])
            if curve is not None:
                panel[shown] = curve
    if not any(curves):
        return None
    panels = [Panel(title, ylabel, panel)
              for (_, _, title, ylabel), panel in zip(sources, curves, strict=True)]
    title = spec.title if most == 1 else f"{spec.title}; mean over {most} seeds"
    return save(curves_figure(panels, title=title), path)


def write_sampling(trained_as: str, seed: int, label: str, layout: RunLayout,
                   path: Path) -> Path:
    """The sampled nodes of one seed's ``walks.npz`` (one receiver, every rate) on its image."""
    data = read_npz(layout.walks(trained_as, seed), WALK_ARRAYS)
    rates = [int(r) for r in np.atleast_1d(data["rates"])]
    fig = sampling_figure(data["image"], data["positions"], data["uniform"],
                          np.asarray(data["receiver"], dtype=float), float(data["stride"]),
                          rates, title=f"sampled nodes: {label}")
    return save(fig, path)


def write_qualitative(trained_as: str, seed: int, label: str, layout: RunLayout,
                      path: Path) -> Path:
    """Image | ground truth | prediction rows from one seed's ``qualitative.npz`` (Cityscapes
    colours and a legend naming those shown)."""
    data = read_npz(layout.qualitative(trained_as, seed), QUALITATIVE_ARRAYS)
    fig = prediction_figure(data["images"], data["labels"], data["predictions"],
                            train_id_colors(), title=label, class_names=train_id_names())
    return save(fig, path)
