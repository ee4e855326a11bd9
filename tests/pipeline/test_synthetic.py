"""The synthetic datasets: official layouts, loadable by cityscapesscripts and pycocotools, and the
long-range rule (context-pair classes differ only by a distant cue)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgmn.data import synthetic as rule
from dgmn.data.labels import label_id_of, label_id_to_train_id
from dgmn.data.masks import quiet_pycocotools
from pipeline.common.errors import StageError
from pipeline.config import load_config
from pipeline.data.stage import fetch_config
from pipeline.data.synthetic import (
    SyntheticCityscapesConfig,
    SyntheticCocoConfig,
    generate_cityscapes,
    generate_coco,
)
from pipeline.data.synthetic import cityscapes as syn_cs
from pipeline.data.synthetic import coco as syn_coco

CS_NAME = re.compile(r"^(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_(?P<kind>.+)$")


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "cityscapes"
    generate_cityscapes(root, SyntheticCityscapesConfig(num_train=3, num_val=2), progress=False)
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "coco"
    generate_coco(root, SyntheticCocoConfig(num_train=6, num_val=4), progress=False)
    return root


# --------------------------------------------------------------------------- Cityscapes layout


def test_cityscapes_layout_is_exactly_official(cs_root):
    files = sorted(p.relative_to(cs_root).as_posix() for p in cs_root.rglob("*") if p.is_file())
    images = [f for f in files if f.startswith("leftImg8bit/")]
    assert len(images) == 5
    for f in images:
        _, split, city, name = f.split("/")
        m = CS_NAME.match(name)
        assert m and m["city"] == city and m["kind"] == "leftImg8bit.png" and m["frame"] == "000019"
        assert split in syn_cs.CITIES and city in syn_cs.CITIES[split]
        stem = name.removesuffix("_leftImg8bit.png")
        for kind in ("labelIds.png", "instanceIds.png", "color.png", "polygons.json"):
            assert f"gtFine/{split}/{city}/{stem}_gtFine_{kind}" in files
    assert len(files) == 5 * 5  # nothing else
    img = Image.open(cs_root / images[0])
    assert img.mode == "RGB" and img.size == (256, 128)


def test_cityscapes_file_names_parse_with_cityscapesscripts(cs_root):
    from cityscapesscripts.helpers.csHelpers import getCoreImageFileName, getCsFileInfo

    for path in cs_root.glob("gtFine/*/*/*_gtFine_labelIds.png"):
        info = getCsFileInfo(str(path))
        assert (info.city, info.type, info.type2) == (path.parent.name, "gtFine", "labelIds")
        assert path.name.startswith(getCoreImageFileName(str(path)))


def test_cityscapes_label_ids_come_from_the_table(cs_root):
    _, known = label_id_to_train_id()
    expected = {label_id_of(n) for n in
                ("static", "sky", "building", "vegetation", "road", "sidewalk", "pole",
                 "traffic sign", "car", "truck", "person", "rider")}
    seen = set()
    for path in cs_root.glob("gtFine/*/*/*_gtFine_labelIds.png"):
        label = np.asarray(Image.open(path))
        assert label.dtype == np.uint8 and known[label].all()
        seen |= set(np.unique(label).tolist())
    assert seen == expected


def test_cityscapes_label_png_equals_json2labelImg(cs_root, tmp_path):
    """The label image is exactly what cityscapesscripts draws from the polygons JSON."""
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    for js in sorted(cs_root.glob("gtFine/*/*/*_gtFine_polygons.json")):
        out = tmp_path / "label.png"
        json2labelImg(str(js), str(out), "ids")
        ours = np.asarray(Image.open(str(js).replace("polygons.json", "labelIds.png")))
        np.testing.assert_array_equal(np.asarray(Image.open(out)), ours)
        json2labelImg(str(js), str(out), "trainIds")
        np.testing.assert_array_equal(np.asarray(Image.open(out)), label_id_to_train_id()[0][ours])
        # instanceIds (drawn by cityscapesscripts, stored 16-bit): id*1000+k for instances
        inst = np.asarray(Image.open(str(js).replace("polygons.json", "instanceIds.png")))
        np.testing.assert_array_equal(np.where(inst >= 1000, inst // 1000, inst), ours)


def test_cityscapes_evaluation_script_runs_on_synthetic_gt(cs_root, tmp_path):
    """cityscapesscripts' pixel-level evaluation (mIoU; no iIoU: np.in1d is gone in numpy 2)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev  # noqa: N813

    gts = sorted(str(p) for p in cs_root.glob("gtFine/val/*/*_gtFine_labelIds.png"))
    args = copy.copy(ev.args)
    args.evalInstLevelScore, args.evalPixelAccuracy = False, False
    args.quiet, args.JSONOutput = True, False
    with contextlib.redirect_stdout(io.StringIO()):
        result = ev.evaluateImgLists(gts, gts, args)
    scores = {k: v for k, v in result["classScores"].items() if not np.isnan(v)}
    assert set(scores) == {"road", "sidewalk", "building", "pole", "traffic sign", "vegetation",
                           "sky", "person", "rider", "car", "truck"}
    assert all(v == 1.0 for v in scores.values())
    # a prediction that calls every truck a car and every car a truck scores 0 on both
    car, truck = label_id_of("car"), label_id_of("truck")
    preds = []
    for i, gt in enumerate(gts):
        label = np.asarray(Image.open(gt))
        swapped = np.where(label == car, truck, np.where(label == truck, car, label))
        preds.append(str(tmp_path / f"pred{i}.png"))
        Image.fromarray(swapped.astype(np.uint8)).save(preds[-1])
    with contextlib.redirect_stdout(io.StringIO()):
        result = ev.evaluateImgLists(preds, gts, args)
    assert result["classScores"]["car"] == result["classScores"]["truck"] == 0.0
    assert result["classScores"]["road"] == 1.0


def test_cityscapes_is_deterministic(tmp_path):
    cfg = SyntheticCityscapesConfig(height=64, width=128, num_train=2, num_val=0,
                                    extra_gt_files=False)
    generate_cityscapes(tmp_path / "a", cfg, progress=False)
    generate_cityscapes(tmp_path / "b", cfg, progress=False)
    cfg.seed = 1
    generate_cityscapes(tmp_path / "c", cfg, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    same = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files]
    other = [(tmp_path / "a" / f).read_bytes() == (tmp_path / "c" / f).read_bytes() for f in files]
    assert all(same) and not any(other)


# --------------------------------------------------------------------------- the long-range rule


def _scene(seed: int, height: int = 128, width: int = 256) -> syn_cs.Scene:
    return syn_cs.sample_scene(np.random.default_rng([seed, 0, 0]), height, width)


@pytest.mark.parametrize("seed", range(4))
def test_context_pairs_look_identical_locally(seed):
    """Flip the cue: every pixel below the cue band stays bit-identical, while car<->truck and
    person<->rider swap. So the class of these objects is decidable only from the band."""
    scene = _scene(seed)
    band = rule.cue_band_height(scene.height)
    img0, lab0, _ = syn_cs.render(scene, (0, 0))
    img1, lab1, _ = syn_cs.render(scene, (1, 1))
    np.testing.assert_array_equal(img0[band:], img1[band:])
    assert not np.array_equal(img0[:band], img1[:band])  # only the cue differs
    swap = {label_id_of("car"): label_id_of("truck"), label_id_of("person"): label_id_of("rider")}
    expected = lab0.copy()
    for a, b in swap.items():
        expected[lab0 == a] = b
    np.testing.assert_array_equal(lab1, expected)
    assert (lab0 == label_id_of("car")).any() and (lab0 == label_id_of("person")).any()
    # and the pairs' interiors share one appearance: the pixel values of car in state 0 and of
    # truck in state 1 are the same array
    np.testing.assert_array_equal(img0[lab0 == label_id_of("car")],
                                  img1[lab1 == label_id_of("truck")])


def test_context_pairs_are_independent():
    scene = _scene(5)
    _, lab01, _ = syn_cs.render(scene, (0, 1))
    assert (lab01 == label_id_of("car")).any() and (lab01 == label_id_of("rider")).any()
    assert not (lab01 == label_id_of("truck")).any() and not (lab01 == label_id_of("person")).any()


def test_context_objects_are_far_from_the_cue(cs_root):
    """Pair classes start >= min_cue_distance rows below the band in every generated image:
    42 px at 128x256, more than 5 cells at output stride 8."""
    band, gap = rule.cue_band_height(128), rule.min_cue_distance(128)
    assert (band, gap) == (8, 42)
    pair_ids = [label_id_of(n) for p in rule.CITYSCAPES_CONTEXT_PAIRS for n in p.classes]
    for path in cs_root.glob("gtFine/*/*/*_gtFine_labelIds.png"):
        label = np.asarray(Image.open(path))
        rows = np.flatnonzero(np.isin(label, pair_ids).any(axis=1))
        assert rows.size and rows.min() >= band + gap
        assert (label[:band] == label_id_of("static")).all()


def test_local_appearance_is_not_enough_in_the_dataset(cs_root):
    """Across the generated dataset, the colours inside car and truck regions come from the same
    distribution (same base colour and stripes)."""
    car, truck = label_id_of("car"), label_id_of("truck")
    pixels: dict[int, list[np.ndarray]] = {car: [], truck: []}
    for path in cs_root.glob("leftImg8bit/*/*/*_leftImg8bit.png"):
        image = np.asarray(Image.open(path)).astype(float)
        label = np.asarray(Image.open(str(path).replace("leftImg8bit", "gtFine").replace(
            "gtFine.png", "gtFine_labelIds.png")))
        for cls in pixels:
            pixels[cls].append(image[label == cls])
    mean_car = np.concatenate(pixels[car]).mean(0)
    mean_truck = np.concatenate(pixels[truck]).mean(0)
    assert np.abs(mean_car - mean_truck).max() < 8  # same texture, up to noise and stripes


def test_cue_states_are_balanced_per_split():
    for n in (2, 3, 8, 24):
        states = np.array(rule.balanced_cue_states(0, 0, n, 2))
        assert states.shape == (n, 2)
        assert (states.sum(0) == n // 2).all()
    assert rule.balanced_cue_states(0, 0, 8, 2) != rule.balanced_cue_states(0, 1, 8, 2)


def test_both_classes_of_each_pair_in_each_split(cs_root):
    for split in ("train", "val"):
        seen = set()
        for path in cs_root.glob(f"gtFine/{split}/*/*_gtFine_labelIds.png"):
            seen |= set(np.unique(np.asarray(Image.open(path))).tolist())
        for pair in rule.CITYSCAPES_CONTEXT_PAIRS:
            assert {label_id_of(n) for n in pair.classes} <= seen, (split, pair.classes)


# --------------------------------------------------------------------------- COCO layout


def test_coco_layout_and_pycocotools(coco_root):
    from pycocotools.coco import COCO

    assert sorted(p.name for p in coco_root.iterdir()) == ["annotations", "train2017", "val2017"]
    for split, n in (("train", 6), ("val", 4)):
        with contextlib.redirect_stdout(io.StringIO()):
            api = COCO(str(coco_root / "annotations" / f"instances_{split}2017.json"))
        assert len(api.getImgIds()) == n
        assert sorted(api.getCatIds()) == [1, 3, 5, 8, 11]
        kinds = set()
        for ann in api.loadAnns(api.getAnnIds()):
            info = api.loadImgs(ann["image_id"])[0]
            path = coco_root / f"{split}2017" / info["file_name"]
            with Image.open(path) as im:
                assert im.format == "JPEG" and im.size == (info["width"], info["height"])
            with quiet_pycocotools():
                mask = api.annToMask(ann)
            assert mask.shape == (info["height"], info["width"])
            assert ann["area"] == mask.sum() > 0
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1]
            seg = ann["segmentation"]
            kinds.add("crowd" if ann["iscrowd"] else ("rle" if isinstance(seg, dict) else "poly"))
            if ann["iscrowd"]:
                assert isinstance(seg["counts"], list)  # uncompressed RLE, as COCO's crowds
        assert {"poly", "rle"} <= kinds
    ids = [json.loads((coco_root / "annotations" / f"instances_{s}2017.json").read_text())["images"]
           for s in ("train", "val")]
    assert not {i["id"] for i in ids[0]} & {i["id"] for i in ids[1]}


def test_coco_has_crowd_regions_somewhere(coco_root):
    anns = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    assert any(a["iscrowd"] for a in anns["annotations"])


def test_coco_ground_truth_scores_ap_1_with_cocoeval(coco_root):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()), quiet_pycocotools():
        gt = COCO(str(coco_root / "annotations" / "instances_val2017.json"))
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                 "segmentation": a["segmentation"], "score": 1.0}
                for a in gt.loadAnns(gt.getAnnIds(iscrowd=False))]
        for iou_type in ("bbox", "segm"):
            e = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), iou_type)
            e.evaluate()
            e.accumulate()
            e.summarize()
            assert e.stats[0] == pytest.approx(1.0), iou_type


def test_coco_context_pair_differs_only_by_cue():
    cfg = SyntheticCocoConfig(objects_per_image=[5, 5])
    for seed in range(6):
        scene = syn_coco.sample_scene(np.random.default_rng([seed, 0, 0]), cfg)
        if any(i.pair is not None for i in scene.instances):
            break
    band = rule.cue_band_height(scene.height)
    img0, inst0 = syn_coco.render(scene, (0,))
    img1, inst1 = syn_coco.render(scene, (1,))
    np.testing.assert_array_equal(img0[band:], img1[band:])
    assert not np.array_equal(img0[:band], img1[:band])
    boxes = [(a.category, b.category) for a, b in zip(inst0, inst1, strict=True) if a.pair == 0]
    assert boxes and all(pair == ("box_a", "box_b") for pair in boxes)
    gap = rule.min_cue_distance(scene.height)
    for inst in inst0:
        if inst.pair is not None:
            assert np.flatnonzero(inst.mask.any(1)).min() >= band + gap


# --------------------------------------------------------------------------- default sizes


def test_default_generation_is_fast_and_small(tmp_path):
    """The defaults must let the whole default pipeline run in minutes on 2 CPU cores."""
    t0 = time.perf_counter()
    generate_cityscapes(tmp_path / "cs", SyntheticCityscapesConfig(), progress=False)
    t1 = time.perf_counter()
    generate_coco(tmp_path / "coco", SyntheticCocoConfig(), progress=False)
    t2 = time.perf_counter()
    size_cs = sum(p.stat().st_size for p in (tmp_path / "cs").rglob("*") if p.is_file())
    size_coco = sum(p.stat().st_size for p in (tmp_path / "coco").rglob("*") if p.is_file())
    print(f"synthetic_cityscapes: {t1 - t0:.2f} s, {size_cs / 1e6:.2f} MB; "
          f"synthetic_coco: {t2 - t1:.2f} s, {size_coco / 1e6:.2f} MB")
    assert t1 - t0 < 20 and t2 - t1 < 20
    assert size_cs < 10e6 and size_coco < 5e6
    assert len(list((tmp_path / "cs" / "leftImg8bit" / "train").rglob("*.png"))) == 24
    assert len(list((tmp_path / "coco" / "val2017").glob("*.jpg"))) == 8


# --------------------------------------------------------------------------- profile sizes


@pytest.mark.parametrize(("data", "experiment", "generator"),
                         [("cityscapes", "table1/dilated_fcn", "synthetic_cityscapes"),
                          ("coco2017", "table2/maskrcnn", "synthetic_coco")])
def test_the_profiles_synthetic_sizes_reach_the_datasets_generator(data, experiment, generator):
    cfg = load_config([f"experiment={experiment}", "profile=smoke"])
    fetch_cfg = fetch_config(cfg)
    assert fetch_cfg.dataset == generator
    assert getattr(fetch_cfg, generator).num_train == cfg.synthetic[data]["num_train"] == 8
    cfg.synthetic[data]["colour"] = "red"
    with pytest.raises(StageError, match=f"synthetic.{data}.*colour"):
        fetch_config(cfg)
