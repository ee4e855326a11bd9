"""Stage ``evaluate``: score a trained experiment on the val split and export its predictions.

Usage::

    python -m pipeline.evaluate experiment=table1/dgmn_da_dw_ds [profile=default] [key=value]

Reads ``runs/<profile>/train/<experiment>/model.pt`` and writes, each atomically
(paths from :mod:`pipeline.layout`):

- ``runs/<profile>/metrics/<experiment>.json`` (the numbers only; ``dvc.yaml`` declares it as
  the stage's metrics, so ``dvc metrics show`` and ``dvc exp show`` list it): segmentation mIoU
  single-scale and multi-scale + flip and pixel accuracy; or COCO box and mask AP (AP, AP50,
  AP75, S/M/L) from pycocotools' COCOeval; plus params and GMACs (paper convention and full) of
  the whole model and of the inserted context modules, and the inference latency per image;
- ``runs/<profile>/plots/<experiment>/per_class.json``: the IoU of each class (segmentation) or
  the box AP of each category (detection), records for ``dvc plots``;
- ``runs/<profile>/eval/<experiment>/``: ``evaluation.json`` (what was evaluated and how:
  experiment, task, profile, model config, torch version, latency device);
  ``cityscapes_results/*.png`` (labelIds, official file names; the official
  ``evalPixelLevelSemanticLabeling`` scores them) or ``coco_results.json`` (the test-dev format);
  ``qualitative.npz`` (images, ground truth, predictions) and, for DGMN models, ``walks.npz``
  (the sampled nodes of one receiving pixel) for the report's figures.

On a terminal, a progress bar with ETA follows the passes over the val images.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgmn.metrics import count_complexity
from pipeline.common.cli import parse_stage_args
from pipeline.common.errors import StageError, run_stage
from pipeline.common.fs import atomic_directory, atomic_write_json
from pipeline.config import PipelineConfig, as_dict, load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.evaluation.records import PER_CLASS_KEY, scores
from pipeline.layout import PER_CLASS, Layout
from pipeline.tasks.base import Task
from pipeline.tasks.registry import build_task, task_class
from pipeline.tracking import log_evaluation

#: In the eval directory: the evaluation's fields that are not scores (experiment, task,
#: profile, model config, torch version, latency device).
EVALUATION_INFO = "evaluation.json"


def load_trained_model(task: Task) -> nn.Module:
    """The task's model with its trained weights, in eval mode. The model is built first, so a
    model config that cannot be built fails (naming its key) before any file is read."""
    cfg = task.cfg
    model = task.build_model()
    weights = Layout.of(cfg, task.project_root).train_dir / "model.pt"
    if not weights.is_file():
        raise StageError(f"{weights}: no trained model; run the train stage for "
                         f"experiment={cfg.trained_as} profile={cfg.profile} first")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def complexity(task: Task, model: nn.Module, example: Any) -> dict[str, float]:
    """Params (M) and GMACs (paper convention and full) of the model and of what its context
    modules add (the model minus the task's baseline model without them)."""
    full = count_complexity(model, example)
    baseline = task.baseline_model()
    base = full if baseline is None else count_complexity(baseline, example)
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


def evaluate(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Evaluate ``cfg``'s trained model; returns all it measured: the task's own
    (:meth:`~pipeline.tasks.base.Task.evaluate`), complexity and latency, and what was
    evaluated. The numbers go to the metrics file, the ``per_class`` records to the plots
    directory, the rest to ``evaluation.json`` (see the module docstring)."""
    task = build_task(cfg, project_root)
    model = load_trained_model(task)
    torch.manual_seed(cfg.seed)
    layout = Layout.of(cfg, project_root)
    with atomic_directory(layout.eval_dir) as tmp:
        metrics = task.evaluate(model, tmp)
        example = task.evaluation_example()
        metrics.update(complexity(task, model, example),
                       latency_ms=latency_ms(model, example, cfg.evaluate.latency_reps),
                       experiment=cfg.trained_as, task=cfg.data.task, profile=cfg.profile,
                       latency_device="cpu", torch=torch.__version__,
                       config={"model": as_dict(cfg)["model"]})
        numbers = scores(metrics)
        atomic_write_json(tmp / EVALUATION_INFO, {k: v for k, v in metrics.items()
                                                  if k not in numbers and k != PER_CLASS_KEY})
    atomic_write_json(layout.plots_dir / PER_CLASS, metrics.get(PER_CLASS_KEY, []))
    atomic_write_json(layout.metrics_file, numbers)  # last: its presence means "evaluated"
    log_evaluation(cfg, project_root, metrics)  # into the training's MLflow run: eval/<name>
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(argv, prog="python -m pipeline.evaluate", doc=__doc__)
    if parsed is None:
        return
    cfg = load_config(parsed.overrides)
    metrics = evaluate(cfg)
    key = task_class(cfg.data.task).metric
    print(json.dumps({"experiment": cfg.trained_as, key: metrics[key],
                      "added_params_m": round(metrics["added_params_m"], 3),
                      "latency_ms": round(metrics["latency_ms"], 1)}))


if __name__ == "__main__":
    sys.exit(run_stage(main, None))
