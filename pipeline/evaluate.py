"""Stage ``evaluate``: score a trained experiment on the val split and export its predictions.

Usage::

    python -m pipeline.evaluate experiment=table1/dgmn_da_dw_ds [profile=default] [key=value]

Evaluates the run of every seed of ``seeds``: reads ``runs/<profile>/train/<experiment>/
seed<k>/model.pt`` and writes, each atomically (paths from :mod:`pipeline.layout`):

- ``runs/<profile>/metrics/<experiment>.json`` (the numbers only; ``dvc.yaml`` declares it as
  the stage's metrics, so ``dvc metrics show`` and ``dvc exp show`` list it), the mean over the
  seeds, and for the scores of predictions their standard deviation (``<key>_std``, with two
  or more seeds) and ``seeds`` (how many): segmentation mIoU single-scale and multi-scale +
  flip and pixel accuracy; or COCO box and mask AP (AP, AP50, AP75, S/M/L) from pycocotools'
  COCOeval; on the synthetic data the score of the context classes (``context_miou``,
  ``context_bbox_AP``: the classes only long-range context tells apart); plus params and GMACs
  (paper convention and full) of the whole model and of the inserted context modules, and the
  inference latency per image;
- ``runs/<profile>/plots/<experiment>/per_class.json``: the IoU of each class (segmentation) or
  the box AP of each category (detection), mean over the seeds and each seed's, records for
  ``dvc plots``;
- ``runs/<profile>/eval/<experiment>/seed<k>/``: ``scores.json`` (that run's numbers, which the
  report's paired comparisons read), ``evaluation.json`` (what was evaluated and how:
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
from pipeline.evaluation.records import PER_CLASS_KEY, over_seeds, scores
from pipeline.layout import PER_CLASS, SEED_SCORES, Layout, remove_other_seeds
from pipeline.tasks.base import Task
from pipeline.tasks.registry import build_task, task_class
from pipeline.tracking import log_evaluation

#: In a seed's eval directory: the evaluation's fields that are not scores (experiment, task,
#: profile, model config, torch version, latency device), and its scores.
EVALUATION_INFO = "evaluation.json"
#: Scores that describe the model rather than its predictions: the same for every seed, so
#: the metrics file gives no standard deviation for them.
MODEL_SCORES = frozenset({"params_m", "gmacs_paper", "gmacs_full", "added_params_m",
                          "added_gmacs_paper", "added_gmacs_full"})


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


def context_score(task: Task, per_class_records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The mean per-class score over the task's context classes (``context_miou`` for IoU,
    ``context_<metric>`` otherwise); empty when the data has none or none was scored."""
    names = set(task.context_classes())
    found = [r for r in per_class_records if r["class"] in names and r["value"] is not None]
    if not found:
        return {}
    metric = found[0]["metric"]
    key = "context_miou" if metric == "iou" else f"context_{metric}"
    return {key: statistics.fmean(r["value"] for r in found)}


def summarize_seeds(per_seed: Sequence[dict[str, float]]) -> dict[str, float]:
    """The metrics file's numbers: each score's mean over the seeds, the sample standard
    deviation ``<key>_std`` of the prediction scores (two or more seeds), and ``seeds``."""
    summary: dict[str, float] = {"seeds": float(len(per_seed))}
    for key in sorted(set().union(*per_seed)):
        values = [scores[key] for scores in per_seed if key in scores]
        summary[key] = statistics.fmean(values)
        if key not in MODEL_SCORES and len(values) >= 2:
            summary[f"{key}_std"] = statistics.stdev(values)
    return summary


def evaluate_seeds(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT
                   ) -> list[dict[str, Any]]:
    """The evaluate stage: :func:`evaluate` the run of each seed of ``cfg.seeds``, then write
    the per-class records and the metrics file over the seeds (the metrics file last: its
    presence means "evaluated"). Returns each seed's result."""
    results = [evaluate(cfg.with_seed(seed), project_root) for seed in cfg.seeds]
    layout = Layout.of(cfg, project_root)
    remove_other_seeds(layout.runs.eval(layout.experiment), cfg.seeds)
    records = {seed: r.get(PER_CLASS_KEY, []) for seed, r in zip(cfg.seeds, results,
                                                                  strict=True)}
    atomic_write_json(layout.plots_dir / PER_CLASS, over_seeds(records, ("value",)))
    atomic_write_json(layout.metrics_file, summarize_seeds([scores(r) for r in results]))
    return results


def evaluate(cfg: PipelineConfig, project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Evaluate the trained model of ``cfg``'s run (its ``seed``); returns all it measured:
    the task's own (:meth:`~pipeline.tasks.base.Task.evaluate`), the context classes' score,
    complexity and latency, and what was evaluated. The numbers go to the run's
    ``scores.json``, the rest to ``evaluation.json`` (see the module docstring), and into the
    training's MLflow run."""
    task = build_task(cfg, project_root)
    model = load_trained_model(task)
    torch.manual_seed(cfg.seed)
    layout = Layout.of(cfg, project_root)
    with atomic_directory(layout.eval_dir) as tmp:
        metrics = task.evaluate(model, tmp)
        metrics.update(context_score(task, metrics.get(PER_CLASS_KEY, [])))
        example = task.evaluation_example()
        metrics.update(complexity(task, model, example),
                       latency_ms=latency_ms(model, example, cfg.evaluate.latency_reps),
                       experiment=cfg.trained_as, task=cfg.data.task, profile=cfg.profile,
                       latency_device="cpu", torch=torch.__version__, seed=cfg.seed,
                       config={"model": as_dict(cfg)["model"]})
        numbers = scores(metrics)
        atomic_write_json(tmp / EVALUATION_INFO, {k: v for k, v in metrics.items()
                                                  if k not in numbers and k != PER_CLASS_KEY})
        atomic_write_json(tmp / SEED_SCORES, numbers)
    log_evaluation(cfg, project_root, metrics)  # into the training's MLflow run: eval/<name>
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    parsed = parse_stage_args(argv, prog="python -m pipeline.evaluate", doc=__doc__)
    if parsed is None:
        return
    cfg = load_config(parsed.overrides)
    results = evaluate_seeds(cfg)
    key = task_class(cfg.data.task).metric
    print(json.dumps({"experiment": cfg.trained_as,
                      key: {f"seed{r['seed']}": r[key] for r in results},
                      "added_params_m": round(results[0]["added_params_m"], 3)}))


if __name__ == "__main__":
    sys.exit(run_stage(main, None))
