"""Standard error of one trained model's val mIoU, by bootstrap over the val images.

Issue 12 asks for a validation set large enough that one model's mIoU has a standard error
below 0.5 points. The mIoU of a set of images is a ratio of summed confusion counts, not a
mean of per-image scores, so its standard error is estimated by the bootstrap: resample the
val images with replacement, sum their confusion matrices, take the mIoU; the standard
deviation over the resamples is the standard error. The same for the context classes' mean
IoU. Reads the trained seed-0 model of each experiment of a profile's finished run::

    python -m benchmarks.val_standard_error [profile=default] [experiments=...]

Prints a table and records the date, versions and the machine.
"""

from __future__ import annotations

import datetime
import platform
import sys

import numpy as np
import torch

from dgmn.metrics.segmentation import confusion_matrix
from pipeline.config import load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.evaluate import load_trained_model
from pipeline.evaluation.inference import segment
from pipeline.tasks.registry import build_task

EXPERIMENTS = ("table1/dilated_fcn", "table1/nonlocal", "table1/dgmn_da_dw_ds")
RESAMPLES = 2000


def _miou(confusion: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Mean IoU (%) over the classes present in prediction or ground truth (as the pipeline)."""
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    keep = union > 0 if classes is None else (union > 0) & classes
    return 100.0 * float(np.mean(tp[keep] / union[keep]))


def per_image_confusions(overrides: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """``(N, K, K)`` confusion of each val image for the seed-0 model of ``overrides``, the
    mask of the context classes and the experiment name."""
    cfg = load_config(overrides).with_seed(0)
    task = build_task(cfg, PROJECT_ROOT)
    model = load_trained_model(task)
    dataset = task.val_dataset()
    data = cfg.data
    out = []
    with torch.inference_mode():
        for index in range(task.val_count()):
            image, mask = dataset[index]
            prediction = segment(model, image).argmax(0)
            out.append(confusion_matrix(prediction, mask.as_subclass(torch.Tensor),
                                        data.num_classes, data.ignore_index).numpy())
    names = set(task.context_classes())
    context = np.array([name in names for name in dataset.classes])  # type: ignore[attr-defined]
    return np.stack(out), context, cfg.trained_as


def bootstrap(confusions: np.ndarray, context: np.ndarray, rng: np.random.Generator
              ) -> dict[str, float]:
    n = len(confusions)
    draws = rng.integers(0, n, size=(RESAMPLES, n))
    total = confusions.sum(0)
    mious, contexts = [], []
    for draw in draws:
        resampled = confusions[draw].sum(0)
        mious.append(_miou(resampled))
        contexts.append(_miou(resampled, context))
    return {"images": n, "miou": _miou(total), "se": float(np.std(mious, ddof=1)),
            "context_miou": _miou(total, context), "context_se": float(np.std(contexts, ddof=1))}


def main(argv: list[str]) -> None:
    overrides = [a for a in argv if not a.startswith("experiments=")]
    chosen = next((a.split("=", 1)[1].split(",") for a in argv if a.startswith("experiments=")),
                  EXPERIMENTS)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print(f"# val mIoU standard error (bootstrap, {RESAMPLES} resamples of the val images)")
    print(f"# {datetime.date.today()} · {platform.node()} · {platform.processor() or 'cpu'} · "
          f"torch {torch.__version__} · numpy {np.__version__}")
    print("| experiment | val images | mIoU | SE | context mIoU | SE |")
    print("|---|---|---|---|---|---|")
    for experiment in chosen:
        confusions, context, name = per_image_confusions([f"experiment={experiment}",
                                                          *overrides])
        r = bootstrap(confusions, context, rng)
        print(f"| {name} | {r['images']} | {r['miou']:.2f} | {r['se']:.2f} | "
              f"{r['context_miou']:.2f} | {r['context_se']:.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
