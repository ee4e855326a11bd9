"""Task name (``data.task``) → :class:`~pipeline.tasks.base.Task` subclass; the one place the
stages get their task from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config.schema import ConfigError, PipelineConfig
from pipeline.tasks.base import Task
from pipeline.tasks.catalog import DATASETS, TASK_MODELS, DatasetEntry
from pipeline.tasks.detection import DetectionTask
from pipeline.tasks.segmentation import SegmentationTask

#: ``data.task`` → its task class.
TASKS: dict[str, type[Task]] = {}


def register_task(name: str, task: type[Task]) -> type[Task]:
    """Make ``data.task=<name>`` build ``task``; its ``model_names`` become the valid
    ``model.name`` values for that task. Returns ``task``."""
    TASKS[name] = task
    TASK_MODELS[name] = tuple(task.model_names)
    return task


def task_class(name: str) -> type[Task]:
    """The class registered for ``data.task=<name>``."""
    if name not in TASKS:
        raise ConfigError(f"config key data.task={name!r}: no such task; known: {sorted(TASKS)}")
    return TASKS[name]


def build_task(cfg: PipelineConfig, project_root: Path) -> Task:
    """The task of ``cfg`` (``cfg.data.task``)."""
    return task_class(cfg.data.task)(cfg, project_root)


@dataclass(frozen=True)
class Registration:
    """The task class and dataset entry of a config, as the driver has them. Ray workers get
    it with the config: there a task or dataset registered only in the driver (a test's, a
    plug-in's) is unknown, and a config naming it would not validate."""

    task: str
    task_class: type[Task]
    dataset: str
    entry: DatasetEntry

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Registration:
        return cls(cfg.data.task, task_class(cfg.data.task), cfg.data.name,
                   DATASETS[cfg.data.name])

    def install(self) -> type[Task]:
        """Register what this process lacks; returns the driver's task class."""
        DATASETS.setdefault(self.dataset, self.entry)
        TASK_MODELS.setdefault(self.task, tuple(self.task_class.model_names))
        TASKS.setdefault(self.task, self.task_class)
        return self.task_class


register_task("segmentation", SegmentationTask)
register_task("detection", DetectionTask)
