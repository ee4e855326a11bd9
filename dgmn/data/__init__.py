"""Datasets and transforms (loading only: no downloads, no network).

- :class:`CityscapesSegmentation` — Cityscapes layout, trainIds (255 = ignore);
- :class:`CocoInstances` — COCO layout, torchvision detection targets with masks;
- :mod:`dgmn.data.transforms` — torchvision.transforms.v2 train/eval transforms;
- :mod:`dgmn.data.labels` — the Cityscapes label table (from cityscapesscripts);
- :mod:`dgmn.data.synthetic` — the rule of the embedded synthetic datasets.

The files themselves come from the pipeline's ``fetch`` and ``preprocess`` stages. Names are
imported on first use, so ``dgmn.data.labels``/``synthetic`` do not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CityscapesSegmentation": "dgmn.data.cityscapes",
    "CocoInstances": "dgmn.data.coco",
    "collate_detection": "dgmn.data.coco",
    "DatasetError": "dgmn.data.errors",
    "detection_eval_transform": "dgmn.data.transforms",
    "detection_train_transform": "dgmn.data.transforms",
    "segmentation_eval_transform": "dgmn.data.transforms",
    "segmentation_train_transform": "dgmn.data.transforms",
    "sliding_windows": "dgmn.data.transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dgmn.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
