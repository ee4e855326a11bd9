"""Batched segmentation inference (pipeline.evaluation.inference) against one image at a time."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.evaluation.inference import image_batches, segment, segmentation_confusion

NUM_CLASSES = 5


class _Images(torch.utils.data.Dataset):
    """Random normalised images and masks; item 4 has another size (real data may)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        sizes = [(24, 20)] * 4 + [(16, 28)] + [(24, 20)] * 3
        self.items = [(torch.randn(3, h, w, generator=generator),
                       torch.randint(0, NUM_CLASSES, (h, w), generator=generator))
                      for h, w in sizes]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[index]


class _Model(nn.Module):
    """A strided net whose logits are upsampled to the input size, like the Dilated FCN."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, NUM_CLASSES, 3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)


def test_batches_end_at_the_batch_size_and_where_the_size_changes() -> None:
    batches = list(image_batches(_Images(), range(8), 3))
    assert [indices for indices, _, _ in batches] == [[0, 1, 2], [3], [4], [5, 6, 7]]
    assert [tuple(images.shape) for _, images, _ in batches] == [
        (3, 3, 24, 20), (1, 3, 24, 20), (1, 3, 16, 28), (3, 3, 24, 20)]


@pytest.mark.parametrize(("scales", "flip", "window"), [((1.0,), False, None),
                                                        ((0.75, 1.0), True, None),
                                                        ((1.0,), False, (16, 16))])
def test_batched_confusion_equals_one_image_at_a_time(scales, flip, window) -> None:
    dataset, model = _Images(), _Model().eval()
    expected = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.int64)
    with torch.no_grad():
        for image, mask in dataset:
            prediction = segment(model, image, scales, flip, window).argmax(0)
            for true, predicted in zip(mask.flatten(), prediction.flatten(), strict=True):
                expected[true, predicted] += 1  # rows: ground truth, by explicit counting
    for batch_size in (1, 3, 8):
        confusion = segmentation_confusion(model, dataset, range(len(dataset)), NUM_CLASSES,
                                           torch.device("cpu"), scales=scales, flip=flip,
                                           window=window, batch_size=batch_size)
        assert torch.equal(confusion, expected), batch_size
    assert not model.training
