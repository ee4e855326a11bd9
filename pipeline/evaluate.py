"""Stage ``evaluate``: score a trained experiment on the val split and export its predictions.

Usage::

    python -m pipeline.evaluate experiment=table1/dgmn_da_dw_ds [profile=default] [key=value]

Reads ``runs/<profile>/train/<experiment>/model.pt`` and writes, atomically,
``runs/<profile>/eval/<experiment>/``:

- ``metrics.json``: segmentation mIoU single-scale and multi-scale + flip, per-class IoU; or
  COCO box and mask AP (AP, AP50, AP75, S/M/L) from pycocotools' COCOeval; plus params and
  GMACs (paper convention and full) of the whole model and of the inserted context modules,
  and the inference latency per image;
- ``cityscapes_results/*.png`` (labelIds, official file names; the official
  ``evalPixelLevelSemanticLabeling`` scores them) or ``coco_results.json`` (the test-dev format);
- ``qualitative.npz`` (images, ground truth, predictions) and, for DGMN models, ``walks.npz``
  (the sampled nodes of one receiving pixel) for the report's figures.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from dgmn.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dgmn.metrics import count_complexity
from dgmn.metrics.coco import evaluate_coco, write_coco_results
from dgmn.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from dgmn.models import build_model
from dgmn.nn.dgmn import DGMN
from dgmn.viz.walks import sampled_nodes
from pipeline.common.cli import parse_stage_args
from pipeline.common.errors import StageError, run_stage
from pipeline.common.fs import atomic_directory
from pipeline.config import PipelineConfig, as_dict, load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.evaluation.inference import detection_results, segment, segmentation_confusion
from pipeline.training.tasks import build_task, val_count


def train_dir(cfg: PipelineConfig, project_root: Path) -> Path:
    return project_root / cfg.paths.runs / cfg.profile / "train" / cfg.trained_as


def eval_dir(cfg: PipelineConfig, project_root: Path) -> Path:
    return project_root / cfg.paths.runs / cfg.profile / "eval" / cfg.trained_as


def load_trained_model(cfg: PipelineConfig, project_root: Path) -> nn.Module:
    """The experiment's model with its trained weights, in eval mode."""
    weights = train_dir(cfg, project_root) / "model.pt"
    if not weights.is_file():
        raise StageError(f"{weights}: no trained model; run the train stage for "
                         f"experiment={cfg.trained_as} profile={cfg.profile} first")
    model = build_task(cfg, project_root).build_model()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def _baseline_model(cfg: PipelineConfig) -> nn.Module:
    """The same model without context modules (to measure what they add)."""
    model = dict(cfg.model)
    if model["name"] == "dilated_fcn":
        model.update(context=None, context_kwargs={})
        return build_model(model)
    model.update(insert=None)
    return build_model(model, min_size=cfg.data.min_size, max_size=cfg.data.max_size)


def complexity(cfg: PipelineConfig, model: nn.Module, example: Any) -> dict[str, float]:
    """Params (M) and GMACs (paper convention and full) of the model and of what its context
    modules add (the model minus the same model without them)."""
    full = count_complexity(model, example)
    base = count_complexity(_baseline_model(cfg), example)
    return {"params_m": full.params_m, "gmacs_paper": full.paper_gmacs,
            "gmacs_full": full.full_gmacs,
            "added_params_m": full.params_m - base.params_m,
            "added_gmacs_paper": full.paper_gmacs - base.paper_gmacs,
            "added_gmacs_full": full.full_gmacs - base.full_gmacs}


@torch.inference_mode()
def latency_ms(model: nn.Module, example: Any, reps: int) -> float:
    """Median wall time of one forward pass (after one warm-up), in milliseconds."""
    inputs = example if isinstance(example, tuple) else (example,)
    model(*inputs)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        model(*inputs)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _denormalise(image: Tensor) -> np.ndarray:
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    pixels = (image.float().cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().byte().permute(1, 2, 0).numpy()


def _train_to_label_ids() -> np.ndarray:
    from cityscapesscripts.helpers.labels import trainId2label

    lut = np.zeros(256, dtype=np.uint8)
    for train_id, label in trainId2label.items():
        if 0 <= train_id < 255:
            lut[train_id] = label.id
    return lut


def _walks_figure(model: nn.Module, image: Tensor) -> dict[str, np.ndarray] | None:
    """Sampled nodes of the centre receiver in the first DGMN module, for Fig. 4."""
    module = next((m for m in model.modules() if isinstance(m, DGMN)), None)
    if module is None:
        return None
    captured: dict[str, Tensor] = {}
    handle = module.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    with torch.no_grad():
        model(image.unsqueeze(0))
    handle.remove()
    height, width = captured["x"].shape[-2:]
    receiver = (height // 2, width // 2)
    positions, uniform = sampled_nodes(module, captured["x"], receiver)
    return {"image": _denormalise(image), "stride": np.array(image.shape[-1] // width),
            "rates": np.array(module.rates), "kernel_size": np.array(module.kernel_size),
            "receiver": np.array(receiver), "positions": positions, "uniform": uniform}


def evaluate_segmentation(cfg: PipelineConfig, model: nn.Module, out: Path,
                          project_root: Path) -> dict[str, Any]:
    task = build_task(cfg, project_root)
    dataset = task.val_dataset()
    count = val_count(dataset, cfg)
    device = torch.device("cpu")
    settings = cfg.evaluate
    window = settings.window
    multi = segmentation_confusion(model, dataset, range(count), cfg.data.num_classes, device,
                                   cfg.data.ignore_index, scales=settings.scales,
                                   flip=settings.flip, window=window)
    single = torch.zeros_like(multi)
    lut = _train_to_label_ids()
    images, labels, predictions = [], [], []
    if settings.export:
        (out / "cityscapes_results").mkdir()
    for index in range(count):  # single scale: metrics, official export, figures in one pass
        image, mask = dataset[index]
        prediction = segment(model, image, window=window).argmax(0)
        single += confusion_matrix(prediction, mask.as_subclass(Tensor), cfg.data.num_classes,
                                   cfg.data.ignore_index)
        prediction = prediction.byte().numpy()
        wanted = index < settings.qualitative_images
        if settings.export:
            stem = Path(dataset.samples[index][0]).name.replace("_leftImg8bit.png", "")
            Image.fromarray(lut[prediction]).save(
                out / "cityscapes_results" / f"{stem}_leftImg8bit.png")
        if wanted:
            images.append(_denormalise(image))
            labels.append(mask.numpy().astype(np.uint8))
            predictions.append(prediction)
    ious = iou_per_class(single)
    metrics: dict[str, Any] = {
        "miou": 100 * mean_iou(single), "miou_ms_flip": 100 * mean_iou(multi),
        "pixel_accuracy": 100 * pixel_accuracy(single),
        "iou_per_class": [None if torch.isnan(v) else 100 * float(v) for v in ious],
        "class_names": list(dataset.classes)}
    if images:
        np.savez_compressed(out / "qualitative.npz", images=np.stack(images),
                            labels=np.stack(labels), predictions=np.stack(predictions))
    first_image = dataset[0][0]
    walks = _walks_figure(model, first_image)
    if walks is not None:
        np.savez_compressed(out / "walks.npz", **walks)
    example = torch.randn(1, 3, *first_image.shape[-2:])
    return {**metrics, **complexity(cfg, model, example),
            "latency_ms": latency_ms(model, example, settings.latency_reps)}


def evaluate_detection(cfg: PipelineConfig, model: nn.Module, out: Path,
                       project_root: Path) -> dict[str, Any]:
    task = build_task(cfg, project_root)
    dataset = task.val_dataset()
    count = val_count(dataset, cfg)
    results = detection_results(model, dataset, range(count), torch.device("cpu"))
    if cfg.evaluate.export:
        write_coco_results(results, out / "coco_results.json")
    metrics = evaluate_coco(dataset.coco, results, img_ids=[dataset.ids[i] for i in range(count)])
    image = dataset[0][0]
    example = [image]
    return {**metrics, **complexity(cfg, model, example),
            "latency_ms": latency_ms(model, example, cfg.evaluate.latency_reps)}


def evaluate(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Evaluate ``cfg``'s trained model; returns the metrics written to ``metrics.json``."""
    model = load_trained_model(cfg, project_root)
    torch.manual_seed(cfg.seed)
    target = eval_dir(cfg, project_root)
    run = evaluate_segmentation if cfg.data.task == "segmentation" else evaluate_detection
    with atomic_directory(target) as tmp:
        metrics = run(cfg, model, tmp, project_root)
        metrics.update(experiment=cfg.trained_as, task=cfg.data.task, profile=cfg.profile,
                       latency_device="cpu", torch=torch.__version__,
                       config={"model": as_dict(cfg)["model"]})
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(argv, prog="python -m pipeline.evaluate", doc=__doc__)
    if parsed is None:
        return
    overrides = parsed.overrides
    cfg = load_config(overrides)
    metrics = evaluate(cfg)
    key = "miou" if cfg.data.task == "segmentation" else "bbox_AP"
    print(json.dumps({"experiment": cfg.trained_as, key: metrics[key],
                      "added_params_m": round(metrics["added_params_m"], 3),
                      "latency_ms": round(metrics["latency_ms"], 1)}))


if __name__ == "__main__":
    sys.exit(run_stage(main, None))
