"""dgmn.data.coco: annotation checks, contiguous labels, detection targets with masks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision import tv_tensors

from dgmn.data import CocoInstances, DatasetError, collate_detection, detection_train_transform
from dgmn.data.coco import contiguous_category_ids, validate_coco

H1, W1, H2, W2 = 40, 50, 30, 30


def _square(x: int, y: int, s: int) -> list[float]:
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def _doc() -> dict[str, Any]:
    ring = np.zeros((H1, W1), dtype=np.uint8)
    ring[20:36, 30:46] = 1
    ring[24:32, 34:42] = 0
    rle = mask_utils.encode(np.asfortranarray(ring))
    crowd = np.zeros((H1, W1), dtype=np.uint8)
    crowd[2:8, 40:48] = 1
    flat = crowd.reshape(-1, order="F")
    runs, value, count = [], 0, 0
    for v in flat:
        if v != value:
            runs.append(count)
            value, count = v, 0
        count += 1
    runs.append(count)
    return {
        "images": [{"id": 11, "file_name": "a.jpg", "height": H1, "width": W1},
                   {"id": 12, "file_name": "b.png", "height": H2, "width": W2}],
        "categories": [{"id": 7, "name": "ring"}, {"id": 2, "name": "square"}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 2, "segmentation": [_square(4, 10, 10)],
             "area": 100.0, "bbox": [4, 10, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 7,
             "segmentation": {"size": [H1, W1], "counts": rle["counts"].decode()},
             "area": float(ring.sum()), "bbox": [30, 20, 16, 16], "iscrowd": 0},
            {"id": 3, "image_id": 11, "category_id": 2,
             "segmentation": {"size": [H1, W1], "counts": runs},
             "area": float(crowd.sum()), "bbox": [40, 2, 8, 6], "iscrowd": 1},
        ],
    }


@pytest.fixture
def root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "train2017").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.fromarray(rng.integers(0, 255, (H1, W1, 3), dtype=np.uint8)).save(
        tmp_path / "train2017" / "a.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (H2, W2, 3), dtype=np.uint8)).save(
        tmp_path / "train2017" / "b.png")
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(_doc()))
    return tmp_path


def test_contiguous_ids():
    assert contiguous_category_ids([{"id": 90}, {"id": 1}, {"id": 13}]) == {1: 1, 13: 2, 90: 3}


def test_targets(root):
    ds = CocoInstances(root, "train")
    assert len(ds) == 2 and ds.num_classes == 2
    assert ds.classes == ("__background__", "square", "ring")
    assert ds.label_to_cat == {1: 2, 2: 7}
    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, H1, W1)
    assert target["image_id"] == 11
    assert target["labels"].tolist() == [1, 2]  # crowd excluded by default
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format.value == "XYXY"
    assert boxes.tolist() == [[4, 10, 14, 20], [30, 20, 46, 36]]
    masks = target["masks"]
    assert isinstance(masks, tv_tensors.Mask) and masks.shape == (2, H1, W1)
    assert masks.dtype == torch.uint8
    assert masks[1].sum() == 16 * 16 - 8 * 8 and masks[1, 28, 38] == 0  # the ring's hole
    assert masks[0, 10:20, 4:14].all()
    assert target["iscrowd"].tolist() == [0, 0] and target["orig_size"].tolist() == [H1, W1]
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, H2, W2)


def test_crowd_and_empty_images_options(root):
    ds = CocoInstances(root, "train", include_crowd=True, remove_images_without_annotations=True)
    assert len(ds) == 1
    _, target = ds[0]
    assert target["iscrowd"].tolist() == [0, 0, 1]
    assert target["masks"][2].sum() == 48 and target["masks"][2, 2:8, 40:48].all()


def test_with_transform_and_collate(root):
    ds = CocoInstances(root, "train", transforms=detection_train_transform(min_size=80,
                                                                            max_size=90,
                                                                            hflip_prob=1.0))
    images, targets = collate_detection([ds[0], ds[1]])
    assert images[0].shape == (3, 72, 90) and images[0].dtype == torch.float32  # 40x50, cap 90
    assert images[1].shape == (3, 80, 80)
    box = targets[0]["boxes"][0]
    # the square 4..14 x 10..20, scaled by 1.8 and mirrored in a width of 90
    assert box.tolist() == pytest.approx([90 - 14 * 1.8, 18, 90 - 4 * 1.8, 36], abs=0.01)
    ys, xs = torch.nonzero(targets[0]["masks"][0], as_tuple=True)
    assert abs(xs.min().item() - box[0].item()) <= 1 and abs(ys.max().item() + 1 - 36) <= 1


def test_image_size_mismatch_and_missing_file(root):
    doc = _doc()
    doc["images"][1]["height"] = 31
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(doc))
    ds = CocoInstances(root, "train")
    with pytest.raises(DatasetError, match=r"b\.png: image is 30x30 \(HxW\) but .* says 31x30"):
        ds[1]
    (root / "train2017" / "a.jpg").unlink()
    with pytest.raises(DatasetError, match=r"a\.jpg: file not found"):
        ds[0]


def test_missing_root_and_empty_split(root, tmp_path):
    with pytest.raises(DatasetError, match="nope: dataset root not found"):
        CocoInstances(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"instances_val2017\.json: annotation file not found"):
        CocoInstances(root, "val")
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match="split 'val' is empty"):
        CocoInstances(root, "val")


def test_invalid_json(root):
    path = root / "annotations" / "instances_train2017.json"
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances_train2017\.json: invalid JSON"):
        CocoInstances(root)


def _mutate(edit) -> dict[str, Any]:
    doc = copy.deepcopy(_doc())
    edit(doc)
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    ([], "top level must be a JSON object"),
    (_mutate(lambda d: d.pop("categories")), "missing key 'categories'"),
    (_mutate(lambda d: d.update(images={})), "'images' must be a list"),
    (_mutate(lambda d: d["images"][1].update(id=11)), r"images\[1\]: duplicate id 11"),
    (_mutate(lambda d: d["images"][0].pop("width")), r"images\[0\]: missing key 'width'"),
    (_mutate(lambda d: d["images"][0].update(height="40")),
     r"images\[0\]\.height: expected int, found '40'"),
    (_mutate(lambda d: d["annotations"][0].update(iscrowd=True)),
     r"annotations\[0\]\.iscrowd: expected int, found True"),
    (_mutate(lambda d: d["annotations"][1].update(id=1)), r"\(id 1\): duplicate annotation id"),
    (_mutate(lambda d: d["annotations"][0].update(image_id=99)), "image_id 99 is not in images"),
    (_mutate(lambda d: d["annotations"][0].update(category_id=3)),
     "category_id 3 is not in categories"),
    (_mutate(lambda d: d["annotations"][0].update(bbox=[0, 0, -1, 2])), r"\.bbox: expected"),
    (_mutate(lambda d: d["annotations"][0].update(iscrowd=2)), r"\.iscrowd: expected 0 or 1"),
    (_mutate(lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]])),
     r"\.segmentation\[0\]: a polygon is a flat list"),
    (_mutate(lambda d: d["annotations"][0].update(segmentation=[])), "empty polygon list"),
    (_mutate(lambda d: d["annotations"][1]["segmentation"].update(size=[1, 1])),
     r"\.segmentation\.size: \[1, 1\] differs from the image's \[40, 50\]"),
    (_mutate(lambda d: d["annotations"][1]["segmentation"].pop("counts")),
     "RLE needs 'counts' and 'size'"),
])
def test_validate_coco(doc, message):
    with pytest.raises(DatasetError, match=rf"^inst\.json: .*{message}"):
        validate_coco(doc, "inst.json")


def test_validate_accepts_good_document():
    validate_coco(_doc(), "inst.json")
