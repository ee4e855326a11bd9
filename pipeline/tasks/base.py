"""The task interface: what a stage asks of segmentation, detection or any registered task.

A task is built from the config and the project root. It builds the model and the datasets,
computes the training loss of a batch, validates (every rank scores its share of the val
split; results are combined with collectives when a process group is up), evaluates and
exports a trained model, and says how a sweep patches its model config with φ and G.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from pipeline.common.errors import StageError
from pipeline.config.schema import ConfigError, PipelineConfig
from pipeline.layout import Layout


def distributed() -> bool:
    """Whether a process group of more than one rank is up (validation is split over it)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Task(ABC):
    """One kind of experiment. Subclasses set the class attributes and the abstract methods.

    Attributes:
        metric: the headline validation metric (a key of :meth:`validate`'s result), what a
            run reports to Ray Train / Tune and what the stages print.
        model_names: the ``model.name`` values this task trains (checked at start-up).
        collate_fn: the DataLoader's collate function (``None``: PyTorch's default).
        sync_bn: whether BatchNorm becomes SyncBatchNorm when several GPU workers train.
    """

    metric: ClassVar[str]
    model_names: ClassVar[tuple[str, ...]]
    collate_fn: ClassVar[Callable[[list[Any]], Any] | None] = None
    sync_bn: ClassVar[bool] = False

    def __init__(self, cfg: PipelineConfig, project_root: Path) -> None:
        self.cfg = cfg
        self.project_root = project_root
        self._val: Dataset | None = None

    # Data ----------------------------------------------------------------------------------

    def data_root(self) -> Path:
        """The preprocessed dataset (``data/processed/<data.name>``); it must exist."""
        root = Layout.of(self.cfg, self.project_root).processed_data.resolve()
        if not root.is_dir():
            raise StageError(f"{root}: dataset root not found (data.source="
                             f"{self.cfg.data.source!r}); run the fetch and preprocess stages "
                             "first")
        return root

    @abstractmethod
    def train_dataset(self) -> Dataset:
        """The training split with its augmentation."""

    @abstractmethod
    def make_val_dataset(self) -> Dataset:
        """The validation split, deterministic transforms only."""

    def val_dataset(self) -> Dataset:
        """The validation split (built once)."""
        if self._val is None:
            self._val = self.make_val_dataset()
        return self._val

    def val_count(self) -> int:
        """How many val images are scored: all, or the first ``data.val_max_images``."""
        count = len(self.val_dataset())  # type: ignore[arg-type]
        limit = self.cfg.data.val_max_images
        return count if limit is None else min(count, limit)

    def val_indices(self) -> list[int]:
        """This rank's share of the scored val images."""
        if not distributed():
            return list(range(self.val_count()))
        return list(range(dist.get_rank(), self.val_count(), dist.get_world_size()))

    # Model ---------------------------------------------------------------------------------

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The model of ``cfg.model``; a config it cannot build raises
        :class:`dgmn.models.registry.ModelConfigError`."""

    def baseline_model(self) -> nn.Module | None:
        """The same model without its context modules (what they add is measured against it);
        ``None`` when the model has none."""
        return None

    @abstractmethod
    def example_input(self) -> Any:
        """One model input at training size, for counting params and MACs."""

    def with_rates_and_groups(self, model: dict[str, Any], rates: Sequence[int], groups: int
                              ) -> dict[str, Any]:
        """``model`` (a plain model config) with its DGMN modules' φ and G replaced; a
        :class:`~pipeline.config.ConfigError` when it has none to sweep."""
        raise ConfigError(f"data.task={self.cfg.data.task!r}: this task has no DGMN module "
                          "to sweep")

    # Training and evaluation ----------------------------------------------------------------

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any, device: torch.device
             ) -> tuple[Tensor, dict[str, float]]:
        """The loss to minimise and its parts as floats (``"loss"`` among them)."""

    @abstractmethod
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Metrics of ``model`` on the scored val images (``metric`` among them)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, out: Path) -> dict[str, Any]:
        """Score a trained ``model`` on the val split on the CPU, write the task's exports and
        figure data into ``out``; returns the metrics (``metric`` among them)."""

    def context_classes(self) -> tuple[str, ...]:
        """The classes of the evaluated data that only long-range context can tell apart
        (the synthetic data's context pairs, :mod:`dgmn.data.synthetic`); none by default."""
        return ()

    @abstractmethod
    def evaluation_example(self) -> Any:
        """One model input as evaluated (the first val image), for complexity and latency."""
