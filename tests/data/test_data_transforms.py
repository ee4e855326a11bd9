"""dgmn.data.transforms: paired segmentation/detection transforms and sliding windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from dgmn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandomScale,
    detection_eval_transform,
    detection_train_transform,
    segmentation_eval_transform,
    segmentation_train_transform,
    sliding_windows,
)


def _blocks(h: int = 64, w: int = 96) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Label blocks of 16x16; the image's red channel encodes the label (label * 20)."""
    labels = (np.arange(h)[:, None] // 16 * 3 + np.arange(w)[None, :] // 16) % 7
    image = np.zeros((3, h, w), dtype=np.uint8)
    image[0] = labels * 20
    image[1] = 100
    return (tv_tensors.Image(torch.from_numpy(image)),
            tv_tensors.Mask(torch.from_numpy(labels.astype(np.uint8))))


def test_train_transform_shapes_and_types():
    torch.manual_seed(0)
    image, mask = _blocks()
    out_img, out_mask = segmentation_train_transform(crop_size=(48, 40))(image, mask)
    assert out_img.shape == (3, 48, 40) and out_img.dtype == torch.float32
    assert out_mask.shape == (48, 40) and out_mask.dtype == torch.int64
    assert isinstance(out_mask, tv_tensors.Mask)


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_mask_aligned(seed):
    """Where the mask is a label (not padding) and its 5x5 neighbourhood is uniform, the image
    still encodes that label: scale, flip and crop moved both the same way."""
    torch.manual_seed(seed)
    image, mask = _blocks()
    t = segmentation_train_transform(crop_size=(64, 64), mean=(0, 0, 0), std=(1, 1, 1))
    out_img, out_mask = t(image, mask)
    m = out_mask.numpy()
    red = out_img[0].numpy() * 255
    pad = np.pad(m, 2, constant_values=-1)  # crop borders: neighbours unknown
    windows = np.lib.stride_tricks.sliding_window_view(pad, (5, 5))
    uniform = (windows == m[:, :, None, None]).all(axis=(2, 3)) & (m != 255)
    assert uniform.sum() > 200
    np.testing.assert_allclose(red[uniform], m[uniform] * 20, atol=2)


def test_padding_uses_ignore_index_and_mean_colour():
    image, mask = _blocks(32, 32)
    t = segmentation_train_transform(crop_size=(40, 40), scale_range=(0.5, 0.5), hflip_prob=0)
    out_img, out_mask = t(image, mask)
    assert (out_mask == 255).sum() == 40 * 40 - 16 * 16
    assert (out_img[:, out_mask == 255] == 0).all()  # 0 after normalisation = the mean colour
    valid = out_mask != 255
    assert valid.sum() == 16 * 16 and set(out_mask[valid].unique().tolist()) <= set(range(7))


def test_flip_moves_image_and_mask_together():
    image, mask = _blocks()
    t = segmentation_train_transform(crop_size=(64, 96), scale_range=(1, 1), hflip_prob=1.0,
                                     mean=(0, 0, 0), std=(1, 1, 1))
    out_img, out_mask = t(image, mask)
    assert torch.equal(out_mask, mask.flip(-1).long())
    assert torch.allclose(out_img, image.flip(-1).float() / 255)


def test_random_scale_range():
    image, mask = _blocks(20, 30)
    out_img, out_mask = RandomScale((2.0, 2.0))(image, mask)
    assert out_img.shape == (3, 40, 60) and out_mask.shape == (40, 60)
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())  # nearest for masks
    with pytest.raises(ValueError):
        RandomScale((2.0, 1.0))


def test_eval_transform_normalises_full_image():
    image, mask = _blocks()
    out_img, out_mask = segmentation_eval_transform()(image, mask)
    assert out_img.shape == image.shape and torch.equal(out_mask, mask.long())
    expected = (image[1, 0, 0] / 255 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert out_img[1, 0, 0].item() == pytest.approx(expected.item(), abs=1e-6)


def _det_sample(h: int = 100, w: int = 400):
    image = tv_tensors.Image(torch.randint(0, 255, (3, h, w), dtype=torch.uint8))
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 10:30, 20:60] = 1
    masks[1, 50:51, 100:100] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes([[20, 10, 60, 30], [100, 50, 100.5, 51]], format="XYXY",
                                          canvas_size=(h, w)),
        "labels": torch.tensor([3, 1]),
        "masks": tv_tensors.Mask(masks),
        "area": torch.tensor([800.0, 0.5]),
        "iscrowd": torch.tensor([0, 0]),
        "image_id": 5,
    }
    return image, target


def test_detection_train_resize_cap_flip_and_sanitize():
    image, target = _det_sample()
    out_img, out = detection_train_transform(min_size=80, max_size=200, hflip_prob=1.0)(image,
                                                                                        target)
    assert out_img.shape == (3, 50, 200) and out_img.dtype == torch.float32  # longest side capped
    assert out_img.max() <= 1.0
    # the degenerate second box is dropped with its label, mask, area and iscrowd
    assert out["labels"].tolist() == [3] and out["masks"].shape == (1, 50, 200)
    assert out["area"].shape == (1,) and out["iscrowd"].shape == (1,)
    assert out["boxes"][0].tolist() == pytest.approx([200 - 30, 5, 200 - 10, 15])
    assert out["image_id"] == 5


def test_detection_shortest_side_and_eval():
    image, target = _det_sample(120, 160)
    out_img, _ = detection_train_transform(min_size=(60,), max_size=1000)(image, target)
    assert out_img.shape[-2:] == (60, 80)
    out_img, out = detection_eval_transform(min_size=60, max_size=1000)(image, target)
    assert out_img.shape[-2:] == (60, 80)
    assert out["boxes"][0].tolist() == pytest.approx([10, 5, 30, 15])


@pytest.mark.parametrize(("h", "w", "crop", "stride", "n"), [
    (1024, 2048, 769, 513, 2 * 4), (100, 100, 64, 32, 9), (50, 60, 64, 32, 1), (64, 64, 64, 10, 1),
])
def test_sliding_windows_cover_the_image(h, w, crop, stride, n):
    windows = sliding_windows(h, w, crop, stride)
    assert len(windows) == n
    covered = np.zeros((h, w), dtype=bool)
    for top, left, bottom, right in windows:
        assert 0 <= top < bottom <= h and 0 <= left < right <= w
        assert bottom - top == min(crop, h) and right - left == min(crop, w)
        covered[top:bottom, left:right] = True
    assert covered.all()
