"""Issue 12: the context pairs of the synthetic data are out of reach of the Dilated FCN baseline.

For the ``default`` profile, the receptive field of its baseline (the Dilated FCN without a
context module, built from the composed config with the profile's model overrides) is measured
on the model (:mod:`dgmn.models.receptive_field`), the val split is generated with the profile's
synthetic sizes, and then, for every context-pair object of every image:

- no pixel of the cue lies inside the field of any pixel of the object (the label images and
  annotations as written); a check that reports an object a field reaches is tested too;
- the field-sized window around each object pixel is bit-identical when every cue is flipped,
  while the label changes to the other class of the pair: any function of the window, so any
  model without longer-range context, gives both classes the same output; pooled over the split
  the window statistics of the two classes of a pair are the same.

The COCO layout is checked against the same Dilated FCN field: Mask R-CNN's top FPN level alone
sees more than a whole synthetic image (docs/data.md), so detection on the synthetic COCO is no
test of long-range context; the rule keeps the two layouts identical.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgmn.data import synthetic as rule
from dgmn.data.labels import label_id_of
from dgmn.data.masks import segmentation_to_mask
from dgmn.models.receptive_field import ReceptiveField, receptive_field
from pipeline.config import ConfigError, load_config
from pipeline.config.compose import PROJECT_ROOT
from pipeline.data.stage import fetch_config
from pipeline.data.synthetic import cityscapes as syn_cs
from pipeline.data.synthetic import coco as syn_coco
from pipeline.tasks.registry import build_task

#: the profile whose data must defeat its baseline, and the experiment of each layout
PROFILE = "default"
EXPERIMENTS = {"cityscapes": "table1/dilated_fcn", "coco": "table2/maskrcnn"}


# --------------------------------------------------------------------------- the check


def field_sees(mask: np.ndarray, field: ReceptiveField) -> np.ndarray:
    """``(H, W) bool``: the pixels whose field (rows ``y - up .. y + down``, columns
    ``x - left .. x + right``, clipped to the image) holds a True pixel of ``mask`` ``(H, W)``.
    A box sum of an integral image, so exact."""
    height, width = mask.shape
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    y, x = np.arange(height)[:, None], np.arange(width)[None, :]
    y0, y1 = np.clip(y - field.up, 0, height), np.clip(y + field.down + 1, 0, height)
    x0, x1 = np.clip(x - field.left, 0, width), np.clip(x + field.right + 1, 0, width)
    return (integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]) > 0


def objects_seeing(cue: np.ndarray, objects: list[tuple[str, np.ndarray]],
                   field: ReceptiveField) -> list[str]:
    """The names of the objects (``(name, (H, W) bool mask)``) of which some pixel's field
    holds a pixel of ``cue``."""
    seen = field_sees(cue, field)
    return [name for name, mask in objects if (seen & mask).any()]


def test_field_sees_equals_explicit_loops() -> None:
    rng = np.random.default_rng(0)
    for field in (ReceptiveField(2, 1, 0, 3), ReceptiveField(0, 4, 2, 1),
                  ReceptiveField(5, 5, 5, 5)):
        mask = rng.random((9, 13)) < 0.05
        expected = np.zeros_like(mask)
        for y in range(9):
            for x in range(13):
                for i in range(max(0, y - field.up), min(9, y + field.down + 1)):
                    for j in range(max(0, x - field.left), min(13, x + field.right + 1)):
                        expected[y, x] |= mask[i, j]
        np.testing.assert_array_equal(field_sees(mask, field), expected)


@pytest.mark.parametrize("up", [1, 6, 30])
def test_the_check_reports_an_object_the_field_reaches(up: int) -> None:
    """An object whose top row is ``band + up - 1`` is seen from the band by a field reaching
    ``up`` rows up; at ``band + up`` it is not (the cue band is rows ``0 .. band - 1``)."""
    band, field = 3, ReceptiveField(up=up, down=2, left=4, right=4)
    cue = np.zeros((band + up + 8, 20), dtype=bool)
    cue[:band] = True
    for top, reported in ((band + up - 1, ["object"]), (band + up, [])):
        mask = np.zeros_like(cue)
        mask[top:top + 3, 8:12] = True
        assert objects_seeing(cue, [("object", mask)], field) == reported, top


# --------------------------------------------------------------------------- the generators


@pytest.mark.parametrize("cue_distance", [40, 66])  # 66: the tallest objects are shortened
def test_cityscapes_pair_objects_stay_below_the_gap(cue_distance: int) -> None:
    """No car/truck/person/rider pixel above row ``cue_band + cue_distance``, also when the
    room below is tighter than the tallest objects."""
    height, band = 96, 12
    pair_ids = [label_id_of(c) for p in rule.CITYSCAPES_CONTEXT_PAIRS for c in p.classes]
    tops = []
    for seed in range(40):
        scene = syn_cs.sample_scene(np.random.default_rng([seed, 1, 0]), height, 128,
                                    cue_band=band, cue_distance=cue_distance)
        _, label, _ = syn_cs.render(scene, (0, 1))
        tops.append(int(np.flatnonzero(np.isin(label, pair_ids).any(1)).min()))
        assert (label[:band] == label_id_of("static")).all()
    assert min(tops) >= band + cue_distance
    assert min(tops) <= band + cue_distance + 8  # objects do come near the limit


def test_coco_boxes_stay_below_the_gap() -> None:
    """No box_a/box_b pixel above row ``cue_band + cue_distance``; the band has ``cue_band``
    rows; boxes too big for the room are left out, small ones still come."""
    cfg = syn_coco.SyntheticCocoConfig(min_side=96, max_side=128, objects_per_image=[5, 5],
                                       cue_band=12, cue_distance=60)
    boxes = 0
    for seed in range(20):
        scene = syn_coco.sample_scene(np.random.default_rng([seed, 1, 0]), cfg)
        image, instances = syn_coco.render(scene, (0,))
        flipped, _ = syn_coco.render(scene, (1,))
        changed_rows = np.flatnonzero((image != flipped).any(-1).any(1))
        assert changed_rows.tolist() == list(range(12))  # the band, cue_band rows
        for inst in instances:
            if inst.pair is not None:
                boxes += 1
                assert np.flatnonzero(inst.mask.any(1)).min() >= 12 + 60
    assert boxes > 0


@pytest.mark.parametrize(("layout", "sizes"), [
    ("cityscapes", {"height": 96, "cue_band": 12, "cue_distance": 70}),
    ("cityscapes", {"height": 96, "cue_band": 0}),
    ("coco2017", {"min_side": 96, "max_side": 128, "cue_band": 12, "cue_distance": 80}),
])
def test_a_gap_that_leaves_no_room_fails_at_start_up(layout: str, sizes: dict) -> None:
    """The fetch stage's config names the fields in one line (``error: …`` under run_stage)."""
    experiment = EXPERIMENTS["cityscapes" if layout == "cityscapes" else "coco"]
    cfg = load_config([f"profile={PROFILE}", f"experiment={experiment}"])
    cfg.synthetic[layout] = {**cfg.synthetic.get(layout, {}), **sizes}
    with pytest.raises(ConfigError, match=r"height=\d+, cue_band=\d+, cue_distance=") as info:
        fetch_config(cfg)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- the data


@dataclass
class Sample:
    """One val image as written, with the same scene rendered with every cue state flipped.

    ``classes``/``flipped_classes`` hold each pixel's index into :attr:`Split.classes` (-1:
    no context-pair class); ``cue`` marks the cue's pixels; ``objects`` are the context-pair
    objects ``(name, (H, W) bool mask)`` read from the written annotations.
    """

    name: str
    image: np.ndarray
    flipped: np.ndarray
    classes: np.ndarray
    flipped_classes: np.ndarray
    cue: np.ndarray
    objects: list[tuple[str, np.ndarray]]


@dataclass
class Split:
    """A val split of one layout; ``classes[2k]`` and ``classes[2k + 1]`` are pair ``k``."""

    classes: tuple[str, ...]
    samples: list[Sample]


def _generator(layout: str) -> syn_cs.SyntheticCityscapesConfig | syn_coco.SyntheticCocoConfig:
    """The generator settings of ``layout`` as the profile's fetch stage has them, val only
    (the val images depend on the seed and their index, not on the other splits)."""
    cfg = load_config([f"profile={PROFILE}", f"experiment={EXPERIMENTS[layout]}"])
    fetch = fetch_config(cfg)
    if layout == "cityscapes":
        # instanceIds tell the objects apart; the images and labels are the same either way
        return dataclasses.replace(fetch.synthetic_cityscapes, num_train=0, num_test=0,
                                   extra_gt_files=True)
    return dataclasses.replace(fetch.synthetic_coco, num_train=0)


def _class_map(shape: tuple[int, int], masks: list[tuple[str, np.ndarray]],
               classes: tuple[str, ...]) -> np.ndarray:
    out = np.full(shape, -1, dtype=np.int64)
    for name, mask in masks:
        if name in classes:
            out[mask] = classes.index(name)
    return out


def _cityscapes_split(root: Path) -> Split:
    gen = _generator("cityscapes")
    syn_cs.generate_cityscapes(root, gen, progress=False)
    classes = tuple(c for pair in rule.CITYSCAPES_CONTEXT_PAIRS for c in pair.classes)
    pair_ids = {label_id_of(c): c for c in classes}
    split_index = syn_cs.SPLITS.index("val")
    states = syn_cs.cue_states(gen, split_index, gen.num_val)
    cities = syn_cs.CITIES["val"][: max(1, min(gen.cities_per_split, 3))]
    samples = []
    for path in sorted(root.glob("gtFine/val/*/*_gtFine_labelIds.png")):
        city, seq = path.name.split("_")[:2]
        i = int(seq) * len(cities) + cities.index(city)
        label = np.asarray(Image.open(path))
        instances = np.asarray(Image.open(str(path).replace("labelIds", "instanceIds")))
        objects = [(f"{path.name[:-20]} {pair_ids[int(v) // 1000]} #{int(v) % 1000}",
                    instances == v)
                   for v in np.unique(instances) if v >= 1000 and int(v) // 1000 in pair_ids]
        scene = syn_cs.sample_scene(np.random.default_rng([gen.seed, split_index, i]),
                                    gen.height, gen.width, cue_band=gen.cue_band,
                                    cue_distance=gen.cue_distance)
        image, label_again, _ = syn_cs.render(scene, states[i])
        flipped, flipped_label, _ = syn_cs.render(scene, tuple(1 - s for s in states[i]))
        written = str(path).replace("gtFine", "leftImg8bit").replace("_labelIds", "")
        np.testing.assert_array_equal(np.asarray(Image.open(written)), image)  # the same scene
        np.testing.assert_array_equal(label_again, label)
        samples.append(Sample(
            name=path.name, image=image, flipped=flipped,
            classes=_class_map(label.shape, [(n, label == v) for v, n in pair_ids.items()],
                               classes),
            flipped_classes=_class_map(label.shape, [(n, flipped_label == v)
                                                     for v, n in pair_ids.items()], classes),
            cue=label == label_id_of("static"), objects=objects))
    assert len(samples) == gen.num_val
    return Split(classes, samples)


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    """``pixels`` through the writer's JPEG settings, decoded (what a loader reads)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=quality, subsampling=0)
    return np.asarray(Image.open(buffer))


def _coco_split(root: Path) -> Split:
    gen = _generator("coco")
    syn_coco.generate_coco(root, gen, progress=False)
    classes = tuple(c for pair in rule.COCO_CONTEXT_PAIRS for c in pair.classes)
    doc = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    split_index = syn_coco.SPLITS.index("val")
    states = rule.balanced_cue_states(gen.seed, split_index, gen.num_val, len(classes) // 2)
    samples = []
    for info in doc["images"]:
        i = info["id"] - syn_coco.ID_OFFSET["val"] - 1
        height, width = info["height"], info["width"]
        masks = [(names[a["category_id"]],
                  segmentation_to_mask(a["segmentation"], height, width).astype(bool))
                 for a in doc["annotations"] if a["image_id"] == info["id"]]
        scene = syn_coco.sample_scene(np.random.default_rng([gen.seed, split_index, i]), gen)
        pixels, _ = syn_coco.render(scene, states[i])
        flipped_pixels, flipped_instances = syn_coco.render(scene, tuple(1 - s for s in states[i]))
        image = np.asarray(Image.open(root / "val2017" / info["file_name"]))
        np.testing.assert_array_equal(_jpeg(pixels, gen.jpeg_quality), image)  # the same scene
        assert len(masks) == len(flipped_instances)  # annotation k is instance k
        for (_, mask), inst in zip(masks, flipped_instances, strict=True):
            np.testing.assert_array_equal(mask, inst.mask.astype(bool))
        flipped = _jpeg(flipped_pixels, gen.jpeg_quality)
        samples.append(Sample(
            name=info["file_name"], image=image, flipped=flipped,
            classes=_class_map((height, width), masks, classes),
            flipped_classes=_class_map((height, width),
                                       [(inst.category, mask) for inst, (_, mask)
                                        in zip(flipped_instances, masks, strict=True)], classes),
            # the annotations do not mark the band: the cue is whatever the cue state changes
            # in the decoded image (JPEG spreads it over the 8×8 blocks the band touches)
            cue=(image != flipped).any(-1),
            objects=[(f"{info['file_name']} {name} #{k}", mask)
                     for k, (name, mask) in enumerate(masks) if name in classes]))
    assert len(samples) == gen.num_val
    return Split(classes, samples)


@pytest.fixture(scope="module")
def baseline_field() -> ReceptiveField:
    """The receptive field of the profile's Dilated FCN baseline, on its own input size."""
    cfg = load_config([f"profile={PROFILE}", f"experiment={EXPERIMENTS['cityscapes']}"])
    model = build_task(cfg, PROJECT_ROOT).baseline_model()
    gen = fetch_config(cfg).synthetic_cityscapes
    # the field repeats with the output stride, so that many phases cover every position
    return receptive_field(model, (gen.height, gen.width), phases=cfg.model["output_stride"])


@pytest.fixture(scope="module", params=["cityscapes", "coco"])
def split(request, tmp_path_factory) -> Split:
    root = tmp_path_factory.mktemp(request.param)
    split = _cityscapes_split(root) if request.param == "cityscapes" else _coco_split(root)
    objects = [name for s in split.samples for name, _ in s.objects]
    assert objects, "no context-pair object in the val split: the checks would be vacuous"
    return split


# --------------------------------------------------------------------------- the proofs


def test_no_context_object_sees_the_cue(split: Split, baseline_field: ReceptiveField) -> None:
    """Every pixel of every context-pair object has no cue pixel inside its field."""
    checked, seeing = 0, []
    for sample in split.samples:
        assert sample.cue.any(), sample.name
        seeing += objects_seeing(sample.cue, sample.objects, baseline_field)
        checked += len(sample.objects)
    assert seeing == [], (f"{len(seeing)} of {checked} objects see the cue with "
                          f"{baseline_field}, e.g. {seeing[:3]}")


def _nearest_object(split: Split) -> tuple[str, int]:
    """The object nearest to the band and its distance: rows from the last row the cue fills
    across the whole width to the object's top row."""
    nearest = ("", 10**9)
    for sample in split.samples:
        last_full_row = int(np.flatnonzero(sample.cue.all(1)).max())
        for name, mask in sample.objects:
            distance = int(np.flatnonzero(mask.any(1)).min()) - last_full_row
            nearest = min(nearest, (name, distance), key=lambda item: item[1])
    return nearest


def test_a_field_reaching_the_nearest_object_is_reported(split: Split,
                                                          baseline_field: ReceptiveField
                                                          ) -> None:
    """The check can fail on this data: grow the baseline's field up to the nearest object
    and that object is reported."""
    name, distance = _nearest_object(split)
    assert distance > baseline_field.up
    reaching = dataclasses.replace(baseline_field, up=distance)
    reported = [o for s in split.samples for o in objects_seeing(s.cue, s.objects, reaching)]
    assert name in reported


def test_no_local_window_separates_a_pair(split: Split, baseline_field: ReceptiveField) -> None:
    """Flip every cue: around every pixel of every context-pair object the field-sized window
    of the image is bit-identical (no pixel that changed lies inside it), while the pixel's
    label turns into the other class of its pair."""
    for sample in split.samples:
        changed = (sample.image != sample.flipped).any(-1)
        assert changed.any(), sample.name  # the flip did change the cue
        pair = sample.classes >= 0
        assert not (field_sees(changed, baseline_field) & pair).any(), sample.name
        partner = sample.classes ^ 1  # classes 2k and 2k + 1 form pair k
        np.testing.assert_array_equal(sample.flipped_classes[pair], partner[pair])
        np.testing.assert_array_equal(sample.flipped_classes >= 0, pair)


def _window_sums(image: np.ndarray, field: ReceptiveField) -> np.ndarray:
    """``(H, W, 3) int64``: per channel, the sum of the image over each pixel's field (zero
    outside the image, as the network's padding); the mean times the constant field area."""
    height, width = image.shape[:2]
    integral = np.pad(image.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))
    y, x = np.arange(height)[:, None], np.arange(width)[None, :]
    y0, y1 = np.clip(y - field.up, 0, height), np.clip(y + field.down + 1, 0, height)
    x0, x1 = np.clip(x - field.left, 0, width), np.clip(x + field.right + 1, 0, width)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def test_window_statistics_are_the_same_for_both_classes(split: Split,
                                                         baseline_field: ReceptiveField
                                                         ) -> None:
    """Pooled over the split in both cue states, the field-window means of the pixels of one
    class of a pair are the same sample as those of the other class (sorted, equal)."""
    pooled: dict[int, list[np.ndarray]] = {c: [] for c in range(len(split.classes))}
    for sample in split.samples:
        for image, classes in ((sample.image, sample.classes),
                               (sample.flipped, sample.flipped_classes)):
            sums = _window_sums(image, baseline_field)
            for c in pooled:
                pooled[c].append(sums[classes == c])
    for k in range(0, len(split.classes), 2):
        a, b = (np.concatenate(pooled[c]) for c in (k, k + 1))
        assert len(a) > 0, split.classes[k:k + 2]
        np.testing.assert_array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)],
                                      err_msg=f"{split.classes[k]} vs {split.classes[k + 1]}")
