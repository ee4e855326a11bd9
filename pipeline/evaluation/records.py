"""The small files DVC compares between experiments: an evaluation's scores (``dvc metrics``)
and flat records for ``dvc plots`` (training curves, per-class scores).

A metrics file holds numbers only (DVC would show strings and nested keys as columns too, and
it drops lists). A plot file is one list of records with the same fields; ``dvc.yaml`` names
the fields each plot draws: ``iteration``/``loss`` (training curve), ``iteration``/``value``
(validation curve), ``value``/``class`` (per-class scores). The field names are the same for
every task, so one ``dvc.yaml`` entry serves all; ``metric`` in a record says what ``value``
is (``miou`` or ``bbox_AP`` per validation, ``iou`` or ``bbox_AP`` per class).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: The key of an evaluation's per-class records in the dict a task's ``evaluate`` returns.
PER_CLASS_KEY = "per_class"


def _number(value: Any) -> float | None:
    """A finite number as a float, else ``None`` (JSON ``null``: strict JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def scores(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of an evaluation's result (``miou``, ``bbox_AP``, ``params_m`` …), sorted by
    name; strings, lists and nested records are left out (they are not metrics)."""
    return {k: float(v) for k, v in sorted(result.items())
            if isinstance(v, int | float) and not isinstance(v, bool)}


def per_class(metric: str, names: Sequence[str], values: Sequence[float | None]
              ) -> list[dict[str, Any]]:
    """One record per class: ``{"class", "metric", "value"}`` (``value`` ``None`` where the
    metric is undefined, e.g. a class absent from the evaluated images)."""
    if len(names) != len(values):
        raise ValueError(f"{len(names)} class names for {len(values)} {metric} values")
    return [{"class": name, "metric": metric, "value": _number(value)}
            for name, value in zip(names, values, strict=True)]


def training_curve(train: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``{"iteration", "loss", "lr"}`` per logged iteration (a history's ``train`` records)."""
    return [{"iteration": int(r["iteration"]), "loss": _number(r["loss"]), "lr": _number(r["lr"])}
            for r in train]


def validation_curve(val: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """``{"iteration", "metric", "value"}`` per validation (a history's ``val`` records),
    ``value`` being the task's headline ``metric``."""
    return [{"iteration": int(r["iteration"]), "metric": metric, "value": _number(r.get(metric))}
            for r in val]


def over_seeds(records: Mapping[int, Sequence[Mapping[str, Any]]], fields: Sequence[str]
               ) -> list[dict[str, Any]]:
    """Curves of several seeds as one list of records: per position, the first seed's record
    with each of ``fields`` replaced by its mean over the seeds (``None`` where a seed has
    none) and each seed's own value as ``<field>_seed<k>``. The seeds' curves must have the
    same length (one schedule)."""
    seeds = sorted(records)
    lengths = {len(records[seed]) for seed in seeds}
    if len(lengths) != 1:
        raise ValueError(f"curves of seeds {seeds} differ in length: {sorted(lengths)}")
    merged = []
    for position, first in enumerate(records[seeds[0]]):
        record = dict(first)
        for name in fields:
            values = [records[seed][position].get(name) for seed in seeds]
            record[name] = (None if any(v is None for v in values)
                            else sum(values) / len(values))
            record.update({f"{name}_seed{seed}": value for seed, value in zip(seeds, values,
                                                                               strict=True)})
        merged.append(record)
    return merged
