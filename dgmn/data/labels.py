"""The Cityscapes label table, from ``cityscapesscripts.helpers.labels`` (imported lazily; never
a hand-typed copy): labelId → trainId lookup, class names, checks. numpy only (no torch), so the
pipeline's data stages can use it cheaply."""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from dgmn.data.errors import DatasetError

IGNORE_INDEX = 255
NUM_CLASSES = 19


def _labels() -> list[Any]:
    try:
        from cityscapesscripts.helpers import labels
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Cityscapes label table needs cityscapesscripts (pip install cityscapesscripts)"
        ) from exc
    return list(labels.labels)


@functools.cache
def label_id_to_train_id() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables over 0..255 from cityscapesscripts' label table.

    Returns:
        ``lut`` ``(256,) uint8``: labelId → trainId (``255`` for classes ignored in evaluation),
        ``known`` ``(256,) bool``: whether a labelId is in the table at all.
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    known = np.zeros(256, dtype=bool)
    for label in _labels():
        if 0 <= label.id < 256:  # 'license plate' has id -1: never stored in a PNG
            known[label.id] = True
            train_id = label.trainId
            lut[label.id] = train_id if 0 <= train_id < NUM_CLASSES else IGNORE_INDEX
    lut.flags.writeable = False
    known.flags.writeable = False
    return lut, known


@functools.cache
def train_id_names() -> tuple[str, ...]:
    """Names of the 19 evaluated classes in trainId order (``road``, ``sidewalk``, …)."""
    names: dict[int, str] = {}
    for label in _labels():
        if 0 <= label.trainId < NUM_CLASSES and not label.ignoreInEval:
            names.setdefault(label.trainId, label.name)
    if sorted(names) != list(range(NUM_CLASSES)):
        raise DatasetError(f"cityscapesscripts label table: trainIds {sorted(names)} are not 0..18")
    return tuple(names[i] for i in range(NUM_CLASSES))


@functools.cache
def train_id_to_label_id() -> np.ndarray:
    """``(256,) uint8`` lookup trainId → labelId (the official result files hold labelIds);
    entries past trainId 18 stay 0 (``unlabeled``)."""
    lut = np.zeros(256, dtype=np.uint8)
    for label in _labels():
        if 0 <= label.trainId < NUM_CLASSES and not label.ignoreInEval:
            lut[label.trainId] = label.id
    lut.flags.writeable = False
    return lut


@functools.cache
def train_id_colors() -> np.ndarray:
    """``(19, 3) uint8`` RGB colours of trainIds 0..18 (the Cityscapes palette)."""
    colors: dict[int, tuple[int, int, int]] = {}
    for label in _labels():
        if 0 <= label.trainId < NUM_CLASSES and not label.ignoreInEval:
            colors.setdefault(label.trainId, tuple(label.color))
    palette = np.array([colors[i] for i in range(NUM_CLASSES)], dtype=np.uint8)
    palette.flags.writeable = False
    return palette


def train_id_of(name: str) -> int:
    """trainId of a class name (``255`` for ignored classes such as ``static``)."""
    for label in _labels():
        if label.name == name:
            return label.trainId if 0 <= label.trainId < NUM_CLASSES else IGNORE_INDEX
    raise KeyError(f"{name!r} is not a Cityscapes class name")


def label_id_of(name: str) -> int:
    """labelId of a class name, from cityscapesscripts' table."""
    for label in _labels():
        if label.name == name:
            return int(label.id)
    raise KeyError(f"{name!r} is not a Cityscapes class name")


def label_ids_to_train_ids(label_ids: np.ndarray, source: str | os.PathLike = "<array>"
                           ) -> np.ndarray:
    """Map an ``(H, W) uint8`` labelId image to trainIds; raise on ids outside the table."""
    lut, known = label_id_to_train_id()
    if not known[label_ids].all():
        bad = sorted(set(np.unique(label_ids).tolist()) - set(np.flatnonzero(known).tolist()))
        raise DatasetError(f"{source}: label ids {bad} are not in cityscapesscripts' label table")
    return lut[label_ids]


def check_train_ids(train_ids: np.ndarray, source: str | os.PathLike = "<array>") -> None:
    """Raise unless every value is a trainId (0..18) or the ignore index 255."""
    valid = (train_ids < NUM_CLASSES) | (train_ids == IGNORE_INDEX)
    if not valid.all():
        bad = sorted(np.unique(train_ids[~valid]).tolist())
        raise DatasetError(f"{source}: values {bad} are neither trainIds 0..18 nor 255 (ignore)")
