"""Instance detection and segmentation: Mask R-CNN on a COCO-format dataset; metric: box AP
(%), mask AP alongside (pycocotools' COCOeval)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchvision.transforms import v2

from dgmn.data import synthetic as synthetic_rule
from dgmn.data.coco import CocoInstances, collate_detection
from dgmn.metrics.coco import evaluate_coco, write_coco_results
from dgmn.models import build_model
from dgmn.models.detection import resolve_insert
from pipeline.config.schema import ConfigError
from pipeline.evaluation.inference import detection_results
from pipeline.evaluation.progress import over_images
from pipeline.evaluation.records import PER_CLASS_KEY, per_class
from pipeline.tasks.base import Task, distributed

#: Inserted modules whose φ and G a sweep sets: the DGMN and its reduced (res4) form.
SWEEPABLE_MODULES = ("dgmn", "dgmn_reduced")


class DetectionTask(Task):
    """Mask R-CNN (DGMN modules inserted in the backbone); the model resizes and normalises
    its inputs itself (``data.min_size`` / ``data.max_size``)."""

    metric = "bbox_AP"
    model_names = ("mask_rcnn",)
    collate_fn = staticmethod(collate_detection)

    def train_dataset(self) -> CocoInstances:
        flip = v2.RandomHorizontalFlip(0.5 if self.cfg.data.flip else 0.0)
        transform = v2.Compose([flip, v2.ToDtype(torch.float32, scale=True),
                                v2.SanitizeBoundingBoxes(min_size=1.0)])
        return CocoInstances(self.data_root(), self.cfg.data.train_split, transforms=transform,
                             remove_images_without_annotations=True)

    def make_val_dataset(self) -> CocoInstances:
        return CocoInstances(self.data_root(), self.cfg.data.val_split,
                             transforms=v2.ToDtype(torch.float32, scale=True),
                             include_crowd=True)

    def _build(self, **changes: Any) -> nn.Module:
        return build_model({**self.cfg.model, **changes}, min_size=self.cfg.data.min_size,
                           max_size=self.cfg.data.max_size)

    def build_model(self) -> nn.Module:
        return self._build()

    def baseline_model(self) -> nn.Module:
        return self._build(insert=None)

    def example_input(self) -> list[Tensor]:
        size = self.cfg.data.min_size
        return [torch.rand(3, size, size)]

    def with_rates_and_groups(self, model: dict[str, Any], rates: Sequence[int], groups: int
                              ) -> dict[str, Any]:
        """Every inserted DGMN module (``dgmn`` or the reduced ``dgmn_reduced``) gets φ and G;
        presets are expanded to their specs first (:func:`dgmn.models.detection.resolve_insert`)."""
        try:
            specs = resolve_insert(model.get("insert"))
        except ValueError as exc:
            raise ConfigError(f"model.insert: {exc}") from None
        if not any(spec.get("module") in SWEEPABLE_MODULES for spec in specs):
            raise ConfigError(f"tune.base_experiment={self.cfg.experiment.name!r}: model.insert "
                              f"has no {' or '.join(SWEEPABLE_MODULES)} module to sweep φ and G")
        specs = [{**spec, "kwargs": {**spec.get("kwargs", {}), "rates": list(rates),
                                     "groups": groups}}
                 if spec.get("module") in SWEEPABLE_MODULES else spec for spec in specs]
        return {**model, "insert": specs}

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
        results = detection_results(model, dataset, self.val_indices(), device)
        if distributed():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, results)
            results = [r for part in gathered for r in part]
        return dict(evaluate_coco(dataset.coco, results, img_ids=self._scored_ids()))

    def evaluate(self, model: nn.Module, out: Path) -> dict[str, Any]:
        """COCO box and mask AP, and the box AP of each category as records under
        ``per_class``; ``coco_results.json`` (the test-dev format) when exporting."""
        dataset = self.val_dataset()
        results = detection_results(model, dataset, over_images(self.val_count(), "evaluate"),
                                    torch.device("cpu"))
        if self.cfg.evaluate.export:
            write_coco_results(results, out / "coco_results.json")
        scores = evaluate_coco(dataset.coco, results, img_ids=self._scored_ids(),
                               per_category=True)
        # per-category APs come back as "<iou type>_AP/<category id>" keys
        per_category = {k: scores.pop(k) for k in [k for k in scores if "/" in k]}
        ids = dataset.coco.getCatIds()
        return {**scores, PER_CLASS_KEY: per_class(
            "bbox_AP", [dataset.coco.cats[i]["name"] for i in ids],
            [per_category[f"bbox_AP/{i}"] for i in ids])}

    def context_classes(self) -> tuple[str, ...]:
        """The context pairs' classes of the synthetic stand-in (none on the real data)."""
        if self.cfg.data.source != "synthetic":
            return ()
        return tuple(name for pair in synthetic_rule.COCO_CONTEXT_PAIRS for name in pair.classes)

    def evaluation_example(self) -> list[Tensor]:
        return [self.val_dataset()[0][0]]

    def _scored_ids(self) -> list[int]:
        dataset = self.val_dataset()
        return [dataset.ids[i] for i in range(self.val_count())]  # type: ignore[attr-defined]
