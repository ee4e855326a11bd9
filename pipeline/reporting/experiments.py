"""Which experiment reproduces which paper table row, from the composed Hydra configs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pipeline.common.errors import StageError
from pipeline.config import experiment_names, load_config


@dataclass(frozen=True)
class ExperimentRef:
    """One ``conf/experiment`` entry as the report sees it.

    Attributes:
        name: ``table6/dgmn_da_rates_1``-style experiment name.
        table, row, label: the paper table row it stands for and its label.
        trained_as: the experiment whose training and evaluation it shares (itself unless it
            is an alias); its files live under ``runs/<profile>/{train,eval}/<trained_as>``.
        task: ``segmentation`` or ``detection``.
    """

    name: str
    table: str
    row: int
    label: str
    trained_as: str
    task: str


@functools.cache
def experiment_index(profile: str) -> tuple[ExperimentRef, ...]:
    """Every experiment (aliases included), composed once per profile and process."""
    refs = []
    for name in experiment_names(include_aliases=True):
        cfg = load_config([f"experiment={name}", f"profile={profile}"])
        meta = cfg.experiment
        refs.append(ExperimentRef(name=name, table=meta.table, row=meta.row, label=meta.label,
                                  trained_as=cfg.trained_as, task=cfg.data.task))
    return tuple(refs)


def row_experiments(index: tuple[ExperimentRef, ...], table: str) -> dict[int, ExperimentRef]:
    """``{paper row: experiment}`` of one table; two experiments claiming a row is an error."""
    rows: dict[int, ExperimentRef] = {}
    for ref in index:
        if ref.table != table:
            continue
        if ref.row in rows:
            raise StageError(f"experiments {rows[ref.row].name!r} and {ref.name!r} both claim "
                             f"row {ref.row} of {table}")
        rows[ref.row] = ref
    return rows
