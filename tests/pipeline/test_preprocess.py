"""preprocess: trainIds from cityscapesscripts' table, COCO filtering, the manifest, bad input."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgmn.data.cityscapes import CityscapesSegmentation
from dgmn.data.coco import CocoInstances
from dgmn.data.labels import label_id_to_train_id
from pipeline.common.errors import StageError, run_stage
from pipeline.data import preprocess
from pipeline.data.synthetic import (
    SyntheticCityscapesConfig,
    SyntheticCocoConfig,
    generate_cityscapes,
    generate_coco,
)


@pytest.fixture(scope="module")
def cs_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src") / "synthetic_cityscapes"
    generate_cityscapes(root, SyntheticCityscapesConfig(height=64, width=128, num_train=3,
                                                        num_val=2, extra_gt_files=False),
                        progress=False)
    return root


@pytest.fixture(scope="module")
def coco_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src") / "synthetic_coco"
    generate_coco(root, SyntheticCocoConfig(min_side=64, max_side=96, num_train=6, num_val=3,
                                            crowd_prob=0.5), progress=False)
    return root


@pytest.fixture
def cs_raw(cs_source, tmp_path) -> Path:
    return Path(shutil.copytree(cs_source, tmp_path / "raw" / "synthetic_cityscapes"))


@pytest.fixture
def coco_raw(coco_source, tmp_path) -> Path:
    return Path(shutil.copytree(coco_source, tmp_path / "raw" / "synthetic_coco"))


def _cfg(dataset: str, raw: Path, tmp_path: Path, **kw) -> preprocess.PreprocessConfig:
    return preprocess.PreprocessConfig(dataset=dataset, raw_root=raw,
                                       out_root=tmp_path / "processed" / dataset,
                                       progress=False, **kw)


def _check_manifest(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and p.name != "manifest.json")
    assert [f["path"] for f in manifest["files"]] == files
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
    lines = "".join(f"{f['sha256']}  {f['path']}\n" for f in manifest["files"])
    assert manifest["digest"] == hashlib.sha256(lines.encode()).hexdigest()
    assert manifest["schema"] == "dgmn.manifest/v1" and manifest["stage"] == "preprocess"
    return manifest


# --------------------------------------------------------------------------- Cityscapes


def test_cityscapes_train_ids_and_manifest(cs_raw, tmp_path):
    out = preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path))
    lut, _ = label_id_to_train_id()
    train_files = sorted(out.glob("gtFine/*/*/*_gtFine_labelTrainIds.png"))
    assert len(train_files) == 5
    for path in train_files:
        ids = np.asarray(Image.open(str(path).replace("labelTrainIds", "labelIds")))
        train = np.asarray(Image.open(path))
        np.testing.assert_array_equal(train, lut[ids])
        assert set(np.unique(train)) <= set(range(19)) | {255}
    # spot checks of the table: road 7 -> 0, car 26 -> 13, truck 27 -> 14, static 4 -> 255
    assert [int(lut[i]) for i in (7, 26, 27, 4)] == [0, 13, 14, 255]
    manifest = _check_manifest(out)
    assert manifest["kind"] == "cityscapes" and manifest["ignore_index"] == 255
    assert [c["name"] for c in manifest["classes"]][:3] == ["road", "sidewalk", "building"]
    assert {s: v["images"] for s, v in manifest["splits"].items()} == {"train": 3, "val": 2}
    pixels = manifest["splits"]["val"]["class_pixels"]
    assert sum(pixels.values()) == 2 * 64 * 128
    assert pixels["ignore"] == 2 * 4 * 128  # the cue band (label 'static')
    assert manifest["source"]["root"] == str(cs_raw)


def test_cityscapes_loader_raw_and_processed_agree(cs_raw, tmp_path):
    out = preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path))
    processed = CityscapesSegmentation(out, "val")
    raw = CityscapesSegmentation(cs_raw, "val", target_type="labelIds")
    assert len(processed) == len(raw) == 2
    for (img_a, mask_a), (img_b, mask_b) in zip(processed, raw, strict=True):
        assert img_a.shape == (3, 64, 128) and mask_a.dtype == mask_b.dtype
        assert (img_a == img_b).all() and (mask_a == mask_b).all()


def test_cityscapes_tiny_crop_subset(cs_raw, tmp_path):
    out = preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path, max_images=1,
                              crop=[32, 48]))
    images = sorted(out.glob("leftImg8bit/*/*/*.png"))
    assert len(images) == 2  # one per split
    for img in images:
        assert Image.open(img).size == (48, 32)
    train = sorted(out.glob("gtFine/*/*/*_labelTrainIds.png"))
    assert all(Image.open(p).size == (48, 32) for p in train)
    # the crop is centred: it equals the middle of the full-size trainIds
    full = preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path / "full", max_images=1))
    rel = train[0].relative_to(out)
    big = np.asarray(Image.open(full / rel))
    np.testing.assert_array_equal(np.asarray(Image.open(train[0])), big[16:48, 40:88])
    assert _check_manifest(out)["config"]["crop"] == [32, 48]


def test_cityscapes_crop_larger_than_image(cs_raw, tmp_path):
    with pytest.raises(StageError, match=r"_leftImg8bit\.png: crop 100x100 is larger"):
        preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path, crop=[100, 100]))


def test_rerun_is_byte_identical(cs_raw, tmp_path):
    a = preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path / "a"))
    b = preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path / "b"))
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["digest"] == mb["digest"] and ma["files"] == mb["files"]


# --------------------------------------------------------------------------- COCO


def test_coco_contiguous_classes_and_loader(coco_raw, tmp_path):
    out = preprocess.run(_cfg("synthetic_coco", coco_raw, tmp_path))
    manifest = _check_manifest(out)
    assert [(c["label"], c["category_id"], c["name"]) for c in manifest["classes"]] == [
        (1, 1, "disc"), (2, 3, "triangle"), (3, 5, "ring"), (4, 8, "box_a"), (5, 11, "box_b")]
    assert manifest["splits"]["train"]["images"] == 6
    assert manifest["splits"]["train"]["crowd_annotations"] >= 1
    ds = CocoInstances(out, "train", include_crowd=True)
    assert ds.classes == ("__background__", "disc", "triangle", "ring", "box_a", "box_b")
    n = sum(len(ds[i][1]["labels"]) for i in range(len(ds)))
    assert n == manifest["splits"]["train"]["annotations"]


def test_coco_crowd_drop_categories_subset_and_drop_empty(coco_raw, tmp_path):
    out = preprocess.run(_cfg("synthetic_coco", coco_raw, tmp_path, crowd="drop",
                              categories=["ring", "disc"], drop_empty=True, max_images=2))
    for split in ("train", "val"):
        data = json.loads((out / "annotations" / f"instances_{split}2017.json").read_text())
        assert [c["name"] for c in data["categories"]] == ["disc", "ring"]
        assert not any(a["iscrowd"] for a in data["annotations"])
        assert {a["category_id"] for a in data["annotations"]} <= {1, 5}
        ids = {i["id"] for i in data["images"]}
        assert len(ids) <= 2 and ids == {a["image_id"] for a in data["annotations"]}
        assert sorted(p.name for p in (out / f"{split}2017").iterdir()) == sorted(
            i["file_name"] for i in data["images"])
    manifest = _check_manifest(out)
    assert [c["label"] for c in manifest["classes"]] == [1, 2]


def test_coco_unknown_category(coco_raw, tmp_path):
    with pytest.raises(StageError, match=r"instances_train2017\.json: categories \['cat'\]"):
        preprocess.run(_cfg("synthetic_coco", coco_raw, tmp_path, categories=["cat"]))


# --------------------------------------------------------------------------- bad input


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _cs_corrupt_png(raw: Path) -> str:
    path = _first(raw, "leftImg8bit/train/*/*.png")
    _truncate(path)
    return rf"{path.name}: cannot decode image"


def _cs_corrupt_label(raw: Path) -> str:
    path = _first(raw, "gtFine/val/*/*_labelIds.png")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return rf"{path.name}: cannot decode image"


def _cs_size_mismatch(raw: Path) -> str:
    path = _first(raw, "gtFine/train/*/*_labelIds.png")
    Image.open(path).resize((64, 32), Image.NEAREST).save(path)
    return rf"{path.name}: label size 32x64 \(HxW\) differs from image .* size 64x128"


def _cs_id_outside_table(raw: Path) -> str:
    path = _first(raw, "gtFine/val/*/*_labelIds.png")
    label = np.asarray(Image.open(path)).copy()
    label[10, 10] = 99
    Image.fromarray(label).save(path)
    return rf"{path.name}: label ids \[99\] are not in cityscapesscripts' label table"


def _cs_rgb_label(raw: Path) -> str:
    path = _first(raw, "gtFine/val/*/*_labelIds.png")
    Image.open(path).convert("RGB").save(path)
    return rf"{path.name}: label image must be single-channel 8-bit"


def _cs_missing_label(raw: Path) -> str:
    path = _first(raw, "gtFine/train/*/*_labelIds.png")
    path.unlink()
    return rf"{path.name}: label file missing for image"


def _cs_empty_split(raw: Path) -> str:
    for p in (raw / "leftImg8bit" / "val").rglob("*.png"):
        p.unlink()
    return r"leftImg8bit/val: split 'val' is empty"


def _cs_missing_root(raw: Path) -> str:
    shutil.rmtree(raw)
    return r"synthetic_cityscapes: dataset root not found"


def _coco_corrupt_jpeg(raw: Path) -> str:
    path = _first(raw, "val2017/*.jpg")
    _truncate(path)
    return rf"{path.name}: cannot decode image"


def _coco_invalid_json(raw: Path) -> str:
    path = raw / "annotations" / "instances_train2017.json"
    _truncate(path)
    return r"instances_train2017\.json: invalid JSON"


def _coco_incomplete_json(raw: Path) -> str:
    path = raw / "annotations" / "instances_val2017.json"
    _edit_json(path, lambda d: d.pop("annotations"))
    return r"instances_val2017\.json: missing key 'annotations'"


def _coco_ann_missing_key(raw: Path) -> str:
    path = raw / "annotations" / "instances_train2017.json"
    _edit_json(path, lambda d: d["annotations"][2].pop("bbox"))
    return r"instances_train2017\.json: annotations\[2\]: missing key 'bbox'"


def _coco_ann_to_missing_image(raw: Path) -> str:
    path = raw / "annotations" / "instances_train2017.json"
    _edit_json(path, lambda d: d["annotations"][0].update(image_id=424242))
    return r"instances_train2017\.json: annotations\[0\] \(id \d+\): image_id 424242 is not in"


def _coco_image_file_missing(raw: Path) -> str:
    path = _first(raw, "train2017/*.jpg")
    path.unlink()
    return rf"{path.name}: file not found"


def _coco_size_mismatch(raw: Path) -> str:
    path = _first(raw, "val2017/*.jpg")
    img = Image.open(path)
    img.resize((img.width + 1, img.height)).save(path)
    return rf"{path.name}: image is \d+x{img.width + 1} \(HxW\) but .*instances_val2017\.json says"


def _coco_empty_split(raw: Path) -> str:
    path = raw / "annotations" / "instances_val2017.json"
    _edit_json(path, lambda d: d.update(images=[], annotations=[]))
    return r"instances_val2017\.json: split 'val' has no images"


def _coco_missing_root(raw: Path) -> str:
    shutil.rmtree(raw)
    return r"synthetic_coco: dataset root not found"


def _cs_decompression_bomb(raw: Path) -> str:
    """A PNG header claiming 20000x10000 px: refused before PIL allocates the pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    path = _first(raw, "leftImg8bit/train/*/*.png")
    ihdr = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return rf"{path.name}: refusing to decode .*decompression bomb"


CS_CASES = [_cs_corrupt_png, _cs_corrupt_label, _cs_size_mismatch, _cs_id_outside_table,
            _cs_rgb_label, _cs_missing_label, _cs_empty_split, _cs_missing_root,
            _cs_decompression_bomb]
COCO_CASES = [_coco_corrupt_jpeg, _coco_invalid_json, _coco_incomplete_json, _coco_ann_missing_key,
              _coco_ann_to_missing_image, _coco_image_file_missing, _coco_size_mismatch,
              _coco_empty_split, _coco_missing_root]


def _run_bad(dataset: str, raw: Path, tmp_path: Path, damage, capsys) -> None:
    pattern = damage(raw)
    out = tmp_path / "processed" / dataset
    rc = run_stage(preprocess.run, _cfg(dataset, raw, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len([line for line in err if line.startswith("error:")]) == 1
    assert re.search(pattern, err[-1]), err[-1]
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize("damage", CS_CASES, ids=lambda f: f.__name__[4:])
def test_cityscapes_bad_input(cs_raw, tmp_path, capsys, damage):
    _run_bad("synthetic_cityscapes", cs_raw, tmp_path, damage, capsys)


@pytest.mark.parametrize("damage", COCO_CASES, ids=lambda f: f.__name__[6:])
def test_coco_bad_input(coco_raw, tmp_path, capsys, damage):
    _run_bad("synthetic_coco", coco_raw, tmp_path, damage, capsys)


@pytest.mark.parametrize(("form", "why"), [
    ("parent", "contains '..'"),
    ("absolute", "has an absolute path"),
    ("backslash", "contains a backslash"),
])
def test_coco_file_name_outside_the_dataset_is_refused(coco_raw, tmp_path, capsys, form, why):
    """An annotation file must not make preprocess link (or copy) a file from outside its input
    root into the output: ``../``, absolute and ``..\\`` names of an image that really exists
    there, with the size the JSON claims."""
    ann = coco_raw / "annotations" / "instances_train2017.json"
    first = json.loads(ann.read_text())["images"][0]
    planted = coco_raw.parent / "elsewhere" / "planted.jpg"
    planted.parent.mkdir()
    shutil.copyfile(coco_raw / "train2017" / first["file_name"], planted)
    name = {"parent": "../elsewhere/planted.jpg", "absolute": str(planted),
            "backslash": "..\\elsewhere\\planted.jpg"}[form]
    _edit_json(ann, lambda d: d["images"][0].update(file_name=name))
    out = tmp_path / "processed" / "synthetic_coco"
    rc = run_stage(preprocess.run, _cfg("synthetic_coco", coco_raw, tmp_path))
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(err) == 1
    assert re.search(rf"instances_train2017\.json: images\[0\]\.file_name: .*{re.escape(why)}",
                     err[0]), err[0]
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert planted.stat().st_nlink == 1  # not hard-linked into any output


def test_failed_rerun_keeps_previous_output(cs_raw, tmp_path, capsys):
    out = preprocess.run(_cfg("synthetic_cityscapes", cs_raw, tmp_path))
    before = (out / "manifest.json").read_bytes()
    _cs_id_outside_table(cs_raw)
    rc = run_stage(preprocess.run, _cfg("synthetic_cityscapes", cs_raw, tmp_path))
    assert rc == 2
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["synthetic_cityscapes"]


def test_unknown_dataset_and_crowd_value(tmp_path):
    with pytest.raises(StageError, match="dataset 'kitti' is not one of"):
        preprocess.run(preprocess.PreprocessConfig(dataset="kitti"))
    (tmp_path / "raw").mkdir()
    with pytest.raises(StageError, match=r"config key preprocess\.crowd='maybe': must be 'keep'"):
        preprocess.run(_cfg("synthetic_coco", tmp_path / "raw", tmp_path, crowd="maybe"))


def test_preprocess_config_is_hydra_compatible():
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(OmegaConf.structured(preprocess.PreprocessConfig),
                          {"dataset": "synthetic_coco", "crop": [32, 64],
                           "categories": ["disc"], "max_images": 2})
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, preprocess.PreprocessConfig)
    assert obj.crop == [32, 64] and obj.categories == ["disc"] and obj.splits == ["train", "val"]
