"""dgmn.data.labels / cityscapes: the label table from cityscapesscripts and the dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from dgmn.data import CityscapesSegmentation, DatasetError, segmentation_train_transform
from dgmn.data.labels import (
    label_id_of,
    label_id_to_train_id,
    label_ids_to_train_ids,
    train_id_names,
    train_id_of,
)

H, W = 24, 32


def test_table_matches_the_published_mapping():
    lut, known = label_id_to_train_id()
    # published Cityscapes ids: road 7 -> 0, sidewalk 8 -> 1, car 26 -> 13, truck 27 -> 14,
    # bicycle 33 -> 18; unlabeled..ground (0..6), parking 9, rail track 10 ... -> ignore
    assert [int(lut[i]) for i in (7, 8, 26, 27, 33)] == [0, 1, 13, 14, 18]
    assert all(lut[i] == 255 for i in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30))
    assert known[:34].all() and not known[34:].any()
    names = train_id_names()
    assert len(names) == len(set(names)) == 19
    assert (names[0], names[13], names[18]) == ("road", "car", "bicycle")
    assert train_id_of("truck") == 14 and train_id_of("static") == 255 and label_id_of("car") == 26
    with pytest.raises(KeyError):
        label_id_of("spaceship")


def test_table_is_read_only():
    lut, _ = label_id_to_train_id()
    with pytest.raises(ValueError):
        lut[0] = 1


def test_unknown_label_ids_raise():
    ids = np.full((2, 2), 7, dtype=np.uint8)
    ids[0, 0], ids[1, 1] = 40, 200
    with pytest.raises(DatasetError, match=r"x\.png: label ids \[40, 200\] are not in"):
        label_ids_to_train_ids(ids, "x.png")


def _write(root: Path, split: str, city: str, index: int, label_ids: np.ndarray,
           rng: np.random.Generator) -> None:
    stem = f"{city}_{index:06d}_000019"
    img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(
        img_dir / f"{stem}_leftImg8bit.png")
    Image.fromarray(label_ids).save(gt_dir / f"{stem}_gtFine_labelIds.png")
    lut, _ = label_id_to_train_id()
    Image.fromarray(lut[label_ids]).save(gt_dir / f"{stem}_gtFine_labelTrainIds.png")


@pytest.fixture
def root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        ids = np.full((H, W), 7, dtype=np.uint8)  # road
        ids[: H // 2] = 23  # sky
        ids[H // 2:, : W // 4] = 26  # car
        ids[0, 0] = 0  # unlabeled
        _write(tmp_path, "train", "aachen" if i < 2 else "bochum", i, ids, rng)
    return tmp_path


@pytest.mark.parametrize("target_type", ["labelTrainIds", "labelIds"])
def test_dataset_items(root, target_type):
    ds = CityscapesSegmentation(root, "train", target_type=target_type)
    assert len(ds) == 3 and ds.num_classes == 19 and ds.ignore_index == 255
    assert [p[0].parent.name for p in ds.samples] == ["aachen", "aachen", "bochum"]
    image, mask = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, H, W)
    assert image.dtype == torch.uint8
    assert isinstance(mask, tv_tensors.Mask) and mask.shape == (H, W) and mask.dtype == torch.int64
    assert mask[0, 0] == 255 and mask[0, 5] == 10 and mask[-1, 0] == 13 and mask[-1, -1] == 0
    saved = np.asarray(Image.open(ds.samples[0][0]))
    assert (image.permute(1, 2, 0).numpy() == saved).all()
    assert ds.classes[10] == "sky"


def test_dataset_with_train_transform(root):
    ds = CityscapesSegmentation(root, "train",
                                transforms=segmentation_train_transform(crop_size=(16, 20)))
    image, mask = ds[1]
    assert image.shape == (3, 16, 20) and image.dtype == torch.float32
    assert mask.shape == (16, 20) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) <= {0, 10, 13, 255}


def test_cached_dataset_decodes_each_file_once_and_still_transforms_per_item(root):
    plain = CityscapesSegmentation(root, "train")
    expected = [(image.flip(-1), mask.flip(-1)) for image, mask in (plain[i] for i in range(3))]
    calls = []

    def flip(image, mask):
        calls.append(1)
        return image.flip(-1), mask.flip(-1)

    cached = CityscapesSegmentation(root, "train", cache=True, transforms=flip)
    for i in range(3):
        cached[i]
    for image_path, label_path in cached.samples:  # later reads never touch the files
        image_path.unlink()
        label_path.unlink()
    for i, (image, mask) in enumerate(expected):
        again_image, again_mask = cached[i]
        assert torch.equal(again_image, image) and torch.equal(again_mask, mask)
    assert len(calls) == 6  # the transform runs on every read, cached or not
    with pytest.raises(DatasetError):  # an uncached dataset reads the (now missing) files
        plain[0]


def test_missing_root_split_and_empty_split(root, tmp_path):
    with pytest.raises(DatasetError, match="nowhere: dataset root not found"):
        CityscapesSegmentation(tmp_path / "nowhere", "train")
    with pytest.raises(DatasetError, match=r"leftImg8bit/val: split directory not found"):
        CityscapesSegmentation(root, "val")
    (root / "leftImg8bit" / "test").mkdir()
    with pytest.raises(DatasetError, match=r"leftImg8bit/test: split 'test' is empty"):
        CityscapesSegmentation(root, "test")


def test_missing_label_file(root):
    victim = next(root.glob("gtFine/train/bochum/*_labelTrainIds.png"))
    victim.unlink()
    with pytest.raises(DatasetError, match=rf"{victim.name}: label file missing"):
        CityscapesSegmentation(root, "train")


def test_size_mismatch_and_bad_train_ids_on_load(root):
    ds = CityscapesSegmentation(root, "train")
    label = ds.samples[0][1]
    Image.fromarray(np.zeros((H, W - 1), dtype=np.uint8)).save(label)
    with pytest.raises(DatasetError, match=rf"{label.name}: label size 24x31 \(HxW\) differs"):
        ds[0]
    Image.fromarray(np.full((H, W), 19, dtype=np.uint8)).save(label)
    with pytest.raises(DatasetError, match=r"values \[19\] are neither trainIds"):
        ds[0]


def test_corrupt_image(root):
    ds = CityscapesSegmentation(root, "train")
    image = ds.samples[2][0]
    image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(DatasetError, match=rf"{image.name}: cannot decode image"):
        ds[2]


def test_bad_target_type(root):
    with pytest.raises(ValueError, match="target_type"):
        CityscapesSegmentation(root, "train", target_type="color")
