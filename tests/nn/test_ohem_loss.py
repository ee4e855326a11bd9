"""OHEM cross-entropy against explicit selection of hard pixels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dgmn.nn.ohem_loss import OhemCrossEntropy


def per_pixel(logits, target):
    probs = torch.softmax(logits, 1)
    out = []
    for b in range(target.shape[0]):
        for y in range(target.shape[1]):
            for x in range(target.shape[2]):
                t = target[b, y, x].item()
                if t != 255:
                    out.append((probs[b, t, y, x].item(), -torch.log(probs[b, t, y, x]).item()))
    return out


@pytest.mark.parametrize("min_kept", [0, 5, 40, 10_000])
def test_keeps_hard_pixels_or_the_min_kept_hardest(min_kept):
    logits = torch.randn(2, 4, 5, 6) * 3
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0] = 255
    got = OhemCrossEntropy(threshold=0.6, min_kept=min_kept)(logits, target)
    pixels = per_pixel(logits, target)
    hard = [loss for p, loss in pixels if p < 0.6]
    if len(hard) >= min_kept:
        want = sum(hard) / len(hard)
    else:
        hardest = sorted((loss for _, loss in pixels), reverse=True)[:min_kept]
        want = sum(hardest) / len(hardest)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_threshold_one_keeps_everything_like_plain_cross_entropy():
    logits, target = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    got = OhemCrossEntropy(threshold=1.0, min_kept=0)(logits, target)
    assert got.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-5)


def test_bad_threshold_is_named():
    with pytest.raises(ValueError, match="threshold"):
        OhemCrossEntropy(threshold=0.0)
