"""fetch -> preprocess -> loaders, on what the stages themselves write (small synthetic sizes)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dgmn.data import (
    CityscapesSegmentation,
    CocoInstances,
    collate_detection,
    detection_train_transform,
    segmentation_eval_transform,
    segmentation_train_transform,
)
from dgmn.data.masks import quiet_pycocotools
from pipeline.data import fetch, preprocess
from pipeline.data.synthetic import SyntheticCityscapesConfig, SyntheticCocoConfig


def test_cityscapes_stages_and_loader(tmp_path):
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    raw = fetch.run(fetch.FetchConfig(
        dataset="synthetic_cityscapes", root=tmp_path / "raw", progress=False,
        synthetic_cityscapes=SyntheticCityscapesConfig(height=64, width=128, num_train=4,
                                                       num_val=2)))
    js = sorted(raw.glob("gtFine/val/*/*_gtFine_polygons.json"))[0]
    json2labelImg(str(js), str(tmp_path / "l.png"), "ids")
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "l.png")),
        np.asarray(Image.open(str(js).replace("polygons.json", "labelIds.png"))))

    out = preprocess.run(preprocess.PreprocessConfig(
        dataset="synthetic_cityscapes", raw_root=raw, out_root=tmp_path / "processed",
        progress=False))
    train = CityscapesSegmentation(out, "train", transforms=segmentation_train_transform(
        crop_size=(48, 48), scale_range=(0.75, 1.25)))
    images, masks = next(iter(DataLoader(train, batch_size=2, shuffle=True)))
    assert images.shape == (2, 3, 48, 48) and masks.shape == (2, 48, 48)
    assert masks.dtype == torch.int64
    val = CityscapesSegmentation(out, "val", transforms=segmentation_eval_transform())
    image, mask = val[0]
    assert image.shape == (3, 64, 128) and set(mask.unique().tolist()) <= set(range(19)) | {255}


def test_coco_stages_and_loader(tmp_path):
    from pycocotools.coco import COCO

    raw = fetch.run(fetch.FetchConfig(
        dataset="synthetic_coco", root=tmp_path / "raw", progress=False,
        synthetic_coco=SyntheticCocoConfig(min_side=64, max_side=96, num_train=4, num_val=2)))
    with contextlib.redirect_stdout(io.StringIO()), quiet_pycocotools():
        api = COCO(str(raw / "annotations" / "instances_val2017.json"))
        assert api.annToMask(api.loadAnns(api.getAnnIds())[0]).any()

    out = preprocess.run(preprocess.PreprocessConfig(
        dataset="synthetic_coco", raw_root=raw, out_root=tmp_path / "processed", crowd="drop",
        progress=False))
    ds = CocoInstances(out, "train", remove_images_without_annotations=True,
                       transforms=detection_train_transform(min_size=96, max_size=128))
    images, targets = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_detection)))
    assert len(images) == len(targets) == 2
    for image, target in zip(images, targets, strict=True):
        assert min(image.shape[-2:]) == 96 or max(image.shape[-2:]) == 128
        n = len(target["labels"])
        assert target["boxes"].shape == (n, 4) and target["masks"].shape == (n, *image.shape[-2:])
        assert target["labels"].min() >= 1 and target["labels"].max() <= ds.num_classes
