"""The Cityscapes label tables derived from cityscapesscripts: trainId → labelId (result
export) and trainId colours (figures)."""

from __future__ import annotations

import numpy as np
import pytest

from dgmn.data.labels import (
    NUM_CLASSES,
    label_id_of,
    label_id_to_train_id,
    train_id_colors,
    train_id_names,
    train_id_to_label_id,
)

pytest.importorskip("cityscapesscripts")


def test_train_id_to_label_id_inverts_the_label_lookup() -> None:
    to_label = train_id_to_label_id()
    to_train, _ = label_id_to_train_id()
    train_ids = np.arange(NUM_CLASSES)
    assert (to_train[to_label[train_ids]] == train_ids).all()
    assert [int(to_label[i]) for i in (0, 18)] == [label_id_of("road"), label_id_of("bicycle")]
    assert not to_label.flags.writeable


def test_train_id_colors_follow_the_class_order() -> None:
    from cityscapesscripts.helpers.labels import name2label

    colors = train_id_colors()
    assert colors.shape == (NUM_CLASSES, 3) and colors.dtype == np.uint8
    assert [tuple(c) for c in colors] == [name2label[n].color for n in train_id_names()]
