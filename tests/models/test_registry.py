"""build_model: plain mappings (as the pipeline composes them from Hydra), names, errors."""

from __future__ import annotations

from collections import UserDict

import pytest
import torch
from torchvision.models.detection import MaskRCNN

from dgmn.models import MODELS, DilatedFCN, build_model


def test_dilated_fcn_from_a_plain_dict() -> None:
    cfg = {"name": "dilated_fcn", "backbone": "resnet_tiny", "num_classes": 19,
           "context": "dgmn", "context_kwargs": {"rates": [1, 6], "groups": 4},
           "channels": 32, "multi_grid": None, "weights": None}
    model = build_model(cfg)
    assert isinstance(model, DilatedFCN)
    assert model.context.rates == (1, 6) and model.context.in_channels == 32
    assert cfg["name"] == "dilated_fcn"  # the caller's mapping is not consumed
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 33, 41)).shape == (1, 19, 33, 41)


def test_generic_mappings_and_overrides() -> None:
    cfg = UserDict({"name": "dilated_fcn", "backbone": "resnet_tiny",
                    "context_kwargs": UserDict({"rates": (1, 2)}), "context": "dgmn"})
    model = build_model(cfg, channels=16, num_classes=3)
    assert model.classifier.out_channels == 3 and model.context.rates == (1, 2)


def test_mask_rcnn_by_name_with_spec_and_preset() -> None:
    model = build_model("mask_rcnn", backbone="resnet_tiny", num_classes=81, min_size=96,
                        max_size=128, insert={"module": "dgmn", "at": "c5",
                                              "kwargs": {"rates": [1, 4, 8, 12]}})
    assert isinstance(model, MaskRCNN)
    assert model.inserted_modules == ["backbone.body.layer4.0.conv3.dgmn"]
    assert model.roi_heads.box_predictor.cls_score.out_features == 81
    preset = build_model({"name": "mask_rcnn", "backbone": "resnet_tiny", "insert": "dgmn_c4_c5"})
    assert len(preset.inserted_modules) == 2


@pytest.mark.parametrize(("cfg", "match"), [
    ({"name": "deeplab"}, r"name='deeplab'.*dilated_fcn.*mask_rcnn"),
    ({"backbone": "resnet_tiny"}, "name=None"),
    ({"name": "dilated_fcn", "backbone": "vgg16"}, r"backbone='vgg16'.*resnet50"),
    ({"name": "dilated_fcn", "backbone": "resnet_tiny", "contxt": "dgmn"}, "contxt"),
    ({"name": "dilated_fcn", "backbone": "resnet_tiny", "context": "psp"}, "name='psp'"),
    ({"name": "mask_rcnn", "backbone": "resnet_tiny", "insert": {"module": "dgmn",
                                                                 "at": "res6"}}, "at='res6'"),
    ({"name": "mask_rcnn", "backbone": "resnet_tiny", "box_nms_tresh": 0.5}, "box_nms_tresh"),
    (["dilated_fcn"], "mapping"),
])
def test_bad_configs(cfg, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


def test_registry_names() -> None:
    assert set(MODELS) == {"dilated_fcn", "mask_rcnn"}


def test_omegaconf_containers() -> None:
    """The pipeline may pass Hydra's DictConfig / ListConfig directly."""
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({
        "name": "mask_rcnn", "backbone": "resnet_tiny", "num_classes": 5, "min_size": 96,
        "insert": [{"module": "gcnet", "at": ["c4", "c5"]}],
    })
    model = build_model(cfg)
    assert len(model.inserted_modules) == 2
    fcn = build_model(omegaconf.OmegaConf.create({
        "name": "dilated_fcn", "backbone": "resnet_tiny", "multi_grid": [2], "channels": 16,
        "context": "dgmn", "context_kwargs": {"rates": [1, 6]}}))
    assert fcn.backbone.layer4[0].conv2.dilation == (8, 8) and fcn.context.rates == (1, 6)
