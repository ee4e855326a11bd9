"""Task adapters: what differs between segmentation (Cityscapes) and detection (COCO) training.

Each task builds its model and datasets from the config, computes the training loss of a batch
and validates (every rank evaluates its share of the val split; the results are combined with
collectives when a process group is up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dgmn.data.cityscapes import CityscapesSegmentation
from dgmn.data.coco import CocoInstances, collate_detection
from dgmn.data.transforms import segmentation_eval_transform, segmentation_train_transform
from dgmn.metrics.coco import evaluate_coco
from dgmn.metrics.segmentation import iou_per_class, mean_iou, pixel_accuracy
from dgmn.models import build_model
from dgmn.nn.ohem_loss import OhemCrossEntropy
from pipeline.common.errors import StageError
from pipeline.config.schema import PipelineConfig
from pipeline.evaluation.inference import detection_results, segmentation_confusion


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def dataset_root(cfg: PipelineConfig, project_root: Path) -> Path:
    """The preprocessed dataset of ``cfg`` (``data/processed/<name>``); it must exist."""
    root = (project_root / cfg.paths.processed / cfg.data.name).resolve()
    if not root.is_dir():
        raise StageError(f"{root}: dataset root not found (data.source={cfg.data.source!r}); "
                         f"run the fetch and preprocess stages first")
    return root


class Task(Protocol):
    metric: str
    collate_fn: Any

    def build_model(self) -> nn.Module: ...
    def train_dataset(self) -> Dataset: ...
    def val_dataset(self) -> Dataset: ...
    def loss(self, model: nn.Module, batch: Any, device: torch.device
             ) -> tuple[Tensor, dict[str, float]]: ...
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]: ...


def val_count(dataset: Dataset, cfg: PipelineConfig) -> int:
    """How many val images are scored: all, or the first ``data.val_max_images``."""
    count = len(dataset)  # type: ignore[arg-type]
    if cfg.data.val_max_images is not None:
        count = min(count, cfg.data.val_max_images)
    return count


def _val_indices(dataset: Dataset, cfg: PipelineConfig) -> list[int]:
    """This rank's share of the scored val images."""
    count = val_count(dataset, cfg)
    if not _distributed():
        return list(range(count))
    return list(range(dist.get_rank(), count, dist.get_world_size()))


class SegmentationTask:
    """Dilated FCN on Cityscapes trainIds; metric: mIoU (%)."""

    metric = "miou"
    collate_fn = None

    def __init__(self, cfg: PipelineConfig, project_root: Path) -> None:
        self.cfg = cfg
        self.root = dataset_root(cfg, project_root)
        schedule = cfg.schedule
        self.criterion: nn.Module = (
            OhemCrossEntropy(schedule.ohem_threshold, schedule.ohem_min_kept,
                             cfg.data.ignore_index) if schedule.ohem
            else nn.CrossEntropyLoss(ignore_index=cfg.data.ignore_index))
        self._val: Dataset | None = None

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model)

    def train_dataset(self) -> Dataset:
        data = self.cfg.data
        transform = segmentation_train_transform(
            crop_size=data.crop_size, scale_range=data.scale_range,
            hflip_prob=0.5 if data.flip else 0.0, ignore_index=data.ignore_index)
        return CityscapesSegmentation(self.root, data.train_split, transforms=transform)

    def val_dataset(self) -> Dataset:
        if self._val is None:
            self._val = CityscapesSegmentation(self.root, self.cfg.data.val_split,
                                               transforms=segmentation_eval_transform())
        return self._val

    def loss(self, model: nn.Module, batch: Any, device: torch.device
             ) -> tuple[Tensor, dict[str, float]]:
        images, masks = batch
        logits = model(images.to(device))
        loss = self.criterion(logits.float(), masks.to(device))
        return loss, {"loss": float(loss.detach())}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        dataset = self.val_dataset()
        confusion = segmentation_confusion(model, dataset, _val_indices(dataset, self.cfg),
                                           self.cfg.data.num_classes, device,
                                           self.cfg.data.ignore_index)
        if _distributed():
            confusion = confusion.to(device)
            dist.all_reduce(confusion)
            confusion = confusion.cpu()
        ious = iou_per_class(confusion)
        return {"miou": 100.0 * mean_iou(confusion),
                "pixel_accuracy": 100.0 * pixel_accuracy(confusion),
                "iou_per_class": [None if torch.isnan(v) else 100.0 * float(v) for v in ious],
                "confusion": confusion.tolist()}


class DetectionTask:
    """Mask R-CNN on COCO instances; metric: box AP (%), mask AP alongside."""

    metric = "bbox_AP"
    collate_fn = staticmethod(collate_detection)

    def __init__(self, cfg: PipelineConfig, project_root: Path) -> None:
        self.cfg = cfg
        self.root = dataset_root(cfg, project_root)
        self._val: CocoInstances | None = None

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model, min_size=self.cfg.data.min_size,
                           max_size=self.cfg.data.max_size)

    def train_dataset(self) -> Dataset:
        # Mask R-CNN resizes and normalises inside the model (min_size / max_size).
        flip = v2.RandomHorizontalFlip(0.5 if self.cfg.data.flip else 0.0)
        transform = v2.Compose([flip, v2.ToDtype(torch.float32, scale=True),
                                v2.SanitizeBoundingBoxes(min_size=1.0)])
        return CocoInstances(self.root, self.cfg.data.train_split, transforms=transform,
                             remove_images_without_annotations=True)

    def val_dataset(self) -> CocoInstances:
        if self._val is None:
            self._val = CocoInstances(self.root, self.cfg.data.val_split,
                                      transforms=v2.ToDtype(torch.float32, scale=True),
                                      include_crowd=True)
        return self._val

    def loss(self, model: nn.Module, batch: Any, device: torch.device
             ) -> tuple[Tensor, dict[str, float]]:
        images, targets = batch
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) if isinstance(v, Tensor) else v for k, v in t.items()
                    if k in ("boxes", "labels", "masks")} for t in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        parts = {name: float(value.detach()) for name, value in losses.items()}
        return loss, {"loss": float(loss.detach()), **parts}  # type: ignore[arg-type]

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        dataset = self.val_dataset()
        indices = _val_indices(dataset, self.cfg)
        results = detection_results(model, dataset, indices, device)
        if _distributed():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, results)
            results = [r for part in gathered for r in part]
        image_ids = [dataset.ids[i] for i in range(val_count(dataset, self.cfg))]
        return dict(evaluate_coco(dataset.coco, results, img_ids=image_ids))


def example_input(cfg: PipelineConfig) -> Any:
    """One input of the model at its training size, for counting params and MACs: a
    ``(1, 3, H, W)`` crop for segmentation, a list with one square image for detection."""
    if cfg.data.task == "segmentation":
        return torch.randn(1, 3, *cfg.data.crop_size)
    return [torch.rand(3, cfg.data.min_size, cfg.data.min_size)]


def build_task(cfg: PipelineConfig, project_root: Path) -> Task:
    """The task adapter of ``cfg.data.task``."""
    return (SegmentationTask if cfg.data.task == "segmentation" else DetectionTask)(
        cfg, project_root)

