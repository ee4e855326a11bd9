"""Semantic segmentation: a Dilated FCN on (image, trainId mask) pairs; metric: mIoU (%).

The datasets it reads are in :data:`SEGMENTATION_DATASETS` (``data.name`` → reader and official
result export); Cityscapes is the one the paper uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from dgmn.data import synthetic as synthetic_rule
from dgmn.data.cityscapes import CityscapesSegmentation
from dgmn.data.labels import train_id_to_label_id
from dgmn.data.transforms import segmentation_eval_transform, segmentation_train_transform
from dgmn.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from dgmn.models import build_model
from dgmn.nn.ohem_loss import OhemCrossEntropy
from pipeline.config.schema import ConfigError, PipelineConfig
from pipeline.evaluation.figures import denormalise, walks_figure
from pipeline.evaluation.inference import image_batches, segment_batch, segmentation_confusion
from pipeline.evaluation.progress import over_images
from pipeline.evaluation.records import PER_CLASS_KEY, per_class
from pipeline.tasks.base import Task, distributed

#: Writes the official result file of val image ``index`` from its ``(H, W) uint8`` trainId
#: prediction into a directory.
ResultWriter = Callable[[Dataset, int, np.ndarray, Path], None]


@dataclass(frozen=True)
class SegmentationSource:
    """One segmentation dataset: ``reader(root, split, transforms=…, cache=…)`` yields
    ``(image (3, H, W) float, mask (H, W) int64 trainIds)`` and has ``classes`` (names by
    trainId); ``results`` names the folder of official result files ``write_result`` fills
    (``None``: the dataset has no official format)."""

    reader: Callable[..., Dataset]
    results: str | None = None
    write_result: ResultWriter | None = None


def _cityscapes_result(dataset: Dataset, index: int, prediction: np.ndarray,
                       directory: Path) -> None:
    """labelIds under the image's own file name, as ``evalPixelLevelSemanticLabeling`` reads."""
    name = Path(dataset.samples[index][0]).name  # type: ignore[attr-defined]
    Image.fromarray(train_id_to_label_id()[prediction]).save(directory / name)


#: ``data.name`` → how the segmentation task reads it.
SEGMENTATION_DATASETS: dict[str, SegmentationSource] = {
    "cityscapes": SegmentationSource(CityscapesSegmentation, "cityscapes_results",
                                     _cityscapes_result),
}


class SegmentationTask(Task):
    """Dilated FCN with a context module; cross-entropy (or OHEM) over trainIds."""

    metric = "miou"
    model_names = ("dilated_fcn",)
    sync_bn = True

    def __init__(self, cfg: PipelineConfig, project_root: Path) -> None:
        super().__init__(cfg, project_root)
        if cfg.data.name not in SEGMENTATION_DATASETS:
            raise ConfigError(f"config key data.name={cfg.data.name!r}: no segmentation reader; "
                              f"known: {sorted(SEGMENTATION_DATASETS)}")
        self.source = SEGMENTATION_DATASETS[cfg.data.name]
        schedule, data = cfg.schedule, cfg.data
        self.criterion: nn.Module = (
            OhemCrossEntropy(schedule.ohem_threshold, schedule.ohem_min_kept,
                             data.ignore_index) if schedule.ohem
            else nn.CrossEntropyLoss(ignore_index=data.ignore_index))

    def train_dataset(self) -> Dataset:
        data = self.cfg.data
        transform = segmentation_train_transform(
            crop_size=data.crop_size, scale_range=data.scale_range,
            hflip_prob=0.5 if data.flip else 0.0, ignore_index=data.ignore_index)
        return self.source.reader(self.data_root(), data.train_split, transforms=transform,
                                  cache=data.cache_decoded)

    def make_val_dataset(self) -> Dataset:
        return self.source.reader(self.data_root(), self.cfg.data.val_split,
                                  transforms=segmentation_eval_transform(),
                                  cache=self.cfg.data.cache_decoded)

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model)

    def baseline_model(self) -> nn.Module:
        return build_model({**self.cfg.model, "context": None, "context_kwargs": {}})

    def example_input(self) -> Tensor:
        return torch.randn(1, 3, *self.cfg.data.crop_size)

    def with_rates_and_groups(self, model: dict[str, Any], rates: Sequence[int], groups: int
                              ) -> dict[str, Any]:
        if model.get("context") != "dgmn":
            raise ConfigError(f"tune.base_experiment={self.cfg.experiment.name!r}: its model has "
                              f"context={model.get('context')!r}, not a DGMN module to sweep")
        return {**model, "context_kwargs": {**model["context_kwargs"], "rates": list(rates),
                                            "groups": groups}}

    def loss(self, model: nn.Module, batch: Any, device: torch.device
             ) -> tuple[Tensor, dict[str, float]]:
        images, masks = batch
        logits = model(images.to(device))
        loss = self.criterion(logits.float(), masks.to(device))
        return loss, {"loss": float(loss.detach())}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        confusion = segmentation_confusion(model, self.val_dataset(), self.val_indices(),
                                           self.cfg.data.num_classes, device,
                                           self.cfg.data.ignore_index,
                                           batch_size=self.cfg.data.val_batch_size)
        if distributed():
            confusion = confusion.to(device)
            dist.all_reduce(confusion)
            confusion = confusion.cpu()
        return {**_scores(confusion), "confusion": confusion.tolist()}

    def evaluate(self, model: nn.Module, out: Path) -> dict[str, Any]:
        """Single-scale mIoU (with the official result files and the report's figure data in
        the same pass) and multi-scale + flip mIoU (``evaluate.scales``, ``evaluate.flip``);
        the single-scale IoU of each class as records under ``per_class``."""
        dataset, count, data = self.val_dataset(), self.val_count(), self.cfg.data
        settings = self.cfg.evaluate
        # one scale without flip is the single-scale pass below: not computed twice
        plain = list(settings.scales) == [1.0] and not settings.flip
        multi = None if plain else segmentation_confusion(
            model, dataset, over_images(count, "evaluate: MS + flip"), data.num_classes,
            torch.device("cpu"), data.ignore_index, scales=settings.scales, flip=settings.flip,
            window=settings.window, batch_size=data.val_batch_size)
        single = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
        results = out / self.source.results if settings.export and self.source.results else None
        if results is not None:
            results.mkdir()
        images, labels, predictions = [], [], []
        for indices, batch, masks in image_batches(
                dataset, over_images(count, "evaluate: single scale"), data.val_batch_size):
            batch_predictions = segment_batch(model, batch, window=settings.window).argmax(1)
            single += confusion_matrix(batch_predictions, masks, data.num_classes,
                                       data.ignore_index)
            for index, image, mask, prediction in zip(indices, batch, masks, batch_predictions,
                                                      strict=True):
                prediction = prediction.byte().numpy()
                if results is not None and self.source.write_result is not None:
                    self.source.write_result(dataset, index, prediction, results)
                if index < settings.qualitative_images:
                    images.append(denormalise(image))
                    labels.append(mask.numpy().astype(np.uint8))
                    predictions.append(prediction)
        if images:
            np.savez_compressed(out / "qualitative.npz", images=np.stack(images),
                                labels=np.stack(labels), predictions=np.stack(predictions))
        walks = walks_figure(model, dataset[0][0])
        if walks is not None:
            np.savez_compressed(out / "walks.npz", **walks)
        scores = _scores(single)
        ious = scores.pop("iou_per_class")
        return {**scores, "miou_ms_flip": 100 * mean_iou(single if multi is None else multi),
                PER_CLASS_KEY: per_class("iou", dataset.classes, ious)}  # type: ignore[attr-defined]

    def context_classes(self) -> tuple[str, ...]:
        """The context pairs' classes of the synthetic stand-in (none on the real data)."""
        if self.cfg.data.source != "synthetic":
            return ()
        pairs = synthetic_rule.CITYSCAPES_CONTEXT_PAIRS
        return tuple(name for pair in pairs for name in pair.classes)

    def evaluation_example(self) -> Tensor:
        return torch.randn(1, 3, *self.val_dataset()[0][0].shape[-2:])


def _scores(confusion: Tensor) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU (%, ``None`` for a class never seen)."""
    ious = iou_per_class(confusion)
    return {"miou": 100.0 * mean_iou(confusion),
            "pixel_accuracy": 100.0 * pixel_accuracy(confusion),
            "iou_per_class": [None if torch.isnan(v) else 100.0 * float(v) for v in ious]}
