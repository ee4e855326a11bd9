"""Datasets and tasks by name, without importing torch: the config schema validates
``data.name``, ``data.task`` and ``model.name`` against it at start-up.

A dataset names its task and what ``data.source=synthetic`` materialises in its place; a task
names the model names it can train. :func:`pipeline.tasks.registry.register_task` fills
:data:`TASK_MODELS`, :func:`register_dataset` fills :data:`DATASETS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset the pipeline knows: its task and its synthetic stand-in (``None``: none)."""

    task: str
    synthetic: str | None = None


#: dataset name (``data.name``, the folder under data/raw and data/processed) → entry.
DATASETS: dict[str, DatasetEntry] = {
    "cityscapes": DatasetEntry("segmentation", "synthetic_cityscapes"),
    "coco2017": DatasetEntry("detection", "synthetic_coco"),
}

#: task name (``data.task``) → the model names (``model.name``) it trains.
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "segmentation": ("dilated_fcn",),
    "detection": ("mask_rcnn",),
}


def register_dataset(name: str, task: str, synthetic: str | None = None) -> None:
    """Make ``data.name=<name>`` valid for ``data.task=<task>``."""
    DATASETS[name] = DatasetEntry(task, synthetic)
