"""Untrusted bytes stay data: image names read from annotation files are confined to the image
directory, and an image header claiming a huge size is refused before it is decoded."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgmn.data import CocoInstances, DatasetError
from dgmn.data.coco_format import load_coco_json
from dgmn.data.io import image_size, read_label, read_rgb
from dgmn.data.paths import confined_path, path_problem
from dgmn.errors import DgmnError

#: file_name values that must never leave ``<root>/train2017`` (forms seen in zip-slip attacks)
ESCAPES = [
    ("../../elsewhere/planted.jpg", "contains '..'"),
    ("sub/../../planted.jpg", "contains '..'"),
    ("/tmp/planted.jpg", "has an absolute path"),
    ("C:/planted.jpg", "has an absolute path"),
    ("..\\..\\elsewhere\\planted.jpg", "contains a backslash"),
    ("C:\\planted.jpg", "contains a backslash"),
    ("", "is empty"),
]


def _coco_root(tmp_path: Path, file_name: str) -> Path:
    """A one-image COCO root whose image entry names ``file_name``; ``a.jpg`` exists in
    ``train2017`` and a same-sized ``planted.jpg`` two levels up, in ``elsewhere/``."""
    root = tmp_path / "data" / "coco"
    for d in (root / "train2017", root / "annotations", tmp_path / "elsewhere"):
        d.mkdir(parents=True)
    pixels = np.full((8, 10, 3), 128, dtype=np.uint8)
    Image.fromarray(pixels).save(root / "train2017" / "a.jpg")
    Image.fromarray(pixels).save(tmp_path / "elsewhere" / "planted.jpg")
    doc = {"images": [{"id": 1, "file_name": file_name, "height": 8, "width": 10}],
           "categories": [{"id": 1, "name": "thing"}], "annotations": []}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize(("name", "why"), ESCAPES)
def test_path_problem_names_each_escape(name, why):
    assert path_problem(name) == why


@pytest.mark.parametrize("name", ["a.jpg", "sub/dir/a.jpg", "a..b.jpg", "./a.jpg"])
def test_path_problem_accepts_names_below_the_root(name):
    assert path_problem(name) is None


@pytest.mark.parametrize(("name", "why"), ESCAPES)
def test_coco_loader_refuses_file_name_outside_image_dir(tmp_path, name, why):
    root = _coco_root(tmp_path, name)
    with pytest.raises(DatasetError, match=r"instances_train2017\.json: images\[0\]\.file_name: "
                                           rf".*{why}"):
        CocoInstances(root, "train")


def test_coco_loader_refuses_symlink_leading_outside(tmp_path):
    """A name that is fine lexically but resolves outside (a symlink in the image directory)."""
    root = _coco_root(tmp_path, "link.jpg")
    os.symlink(tmp_path / "elsewhere" / "planted.jpg", root / "train2017" / "link.jpg")
    ds = CocoInstances(root, "train")
    with pytest.raises(DatasetError, match=r"image id 1 file_name: 'link\.jpg' resolves to .*"
                                           r"elsewhere/planted\.jpg, outside"):
        ds[0]


def test_coco_loader_follows_a_symlinked_image_directory(tmp_path):
    """The dataset root's own layout is trusted: ``train2017`` may live on another disk."""
    root = _coco_root(tmp_path, "a.jpg")
    (root / "train2017").rename(tmp_path / "big_disk")
    os.symlink(tmp_path / "big_disk", root / "train2017")
    image, _ = CocoInstances(root, "train")[0]
    assert image.shape == (3, 8, 10)


def test_confined_path_returns_the_unresolved_path(tmp_path):
    assert confined_path(tmp_path, "sub/a.jpg", "x.json") == tmp_path / "sub" / "a.jpg"


def test_annotation_loader_names_the_key(tmp_path):
    root = _coco_root(tmp_path, "../../elsewhere/planted.jpg")
    with pytest.raises(DatasetError, match=r"images\[0\]\.file_name: '\.\./\.\./elsewhere"):
        load_coco_json(root / "annotations" / "instances_train2017.json")


# --------------------------------------------------------------------------- decompression bomb


def _png_header_only(path: Path, width: int, height: int, mode_byte: int = 2) -> Path:
    """A PNG whose IHDR claims ``width``×``height`` (8-bit, colour type ``mode_byte``) with one
    tiny IDAT: a few hundred bytes that would need gigabytes to decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode_byte, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("reader", [read_rgb, read_label, image_size])
def test_decompression_bomb_header_is_refused(tmp_path, reader):
    path = _png_header_only(tmp_path / "bomb.png", 20000, 10000,
                            mode_byte=0 if reader is read_label else 2)
    with pytest.raises(DatasetError, match=r"bomb\.png: refusing to decode .*200000000 pixels"):
        reader(path)


def test_library_errors_share_one_base():
    from dgmn.models import BackboneWeightsError

    assert issubclass(DatasetError, DgmnError) and issubclass(DatasetError, ValueError)
    assert issubclass(BackboneWeightsError, DgmnError)
    assert issubclass(BackboneWeightsError, RuntimeError)
