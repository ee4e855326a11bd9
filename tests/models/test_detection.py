"""Mask R-CNN with inserted modules: losses and gradients in training, detections in eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.ops import FrozenBatchNorm2d

from dgmn.models import MASK_RCNN_PRESETS, build_mask_rcnn, build_resnet
from dgmn.models.detection import mask_rcnn_totals, trainable_parameters
from dgmn.models.insertion import parse_insert
from dgmn.nn import DGMN, context_module_class
from dgmn.nn.deform_conv import ModulatedDeformConv2d
from dgmn.nn.deform_mp import DeformableMessagePassing
from dgmn.nn.reduced import ReducedResidual

H, W = 128, 160
#: Few proposals and RoIs: the box/mask heads, not the backbone, dominate CPU time otherwise.
SMALL = {"min_size": H, "max_size": W, "rpn_pre_nms_top_n_train": 200,
         "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 100,
         "rpn_post_nms_top_n_test": 20, "rpn_batch_size_per_image": 64,
         "box_batch_size_per_image": 32, "box_detections_per_img": 10}


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = [], []
    for shift in (0, 8):
        boxes = torch.tensor([[20.0, 10, 80, 60], [60, 50, 150, 120]]) + shift
        masks = torch.zeros(2, H, W, dtype=torch.uint8)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist(), strict=True):
            mask[y0:y1, x0:x1] = 1
        images.append(torch.rand(3, H, W))
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks})
    return images, targets


def _check_train_and_eval(model: MaskRCNN) -> None:
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                           "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name in model.inserted_modules:
        grads = [p.grad for p in model.get_submodule(name).parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        assert set(det) == {"boxes", "labels", "scores", "masks"}
        n = len(det["boxes"])
        assert det["boxes"].shape == (n, 4) and det["scores"].shape == det["labels"].shape == (n,)
        assert det["masks"].shape == (n, 1, H, W)


#: (insert preset, class of the inserted/replacing modules, how many on ResNet-50).
R50_CASES = [
    ("maskrcnn", None, 0),
    ("dgmn_res4", ReducedResidual, 1),
    ("dgmn_c5", DGMN, 3),
    ("dgmn_c4_c5", DGMN, 6 + 3),
    ("nonlocal", context_module_class("nonlocal"), 1),
    ("gcnet_c5", context_module_class("gcnet"), 3),
    ("deformable_c5", ModulatedDeformConv2d, 3),
    ("deformable_message_passing", DeformableMessagePassing, 1),
]


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "cls", "count"), R50_CASES,
                         ids=[case[0] for case in R50_CASES])
def test_mask_rcnn_r50_insertions(preset: str, cls: type | None, count: int) -> None:
    model = build_mask_rcnn("resnet50", num_classes=5, insert=preset, frozen_bn=True,
                            trainable_layers=3, **SMALL)
    assert isinstance(model, MaskRCNN)
    assert len(model.inserted_modules) == count
    if cls is not None:
        assert all(isinstance(model.get_submodule(n), cls) for n in model.inserted_modules)
        assert sum(isinstance(m, cls) for m in model.modules()) == count
    # the backbone's own BNs are frozen; only inserted modules may carry trainable norms
    body = model.backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert isinstance(body.layer4[0].downsample[1], FrozenBatchNorm2d)
    inserted = tuple(name.removeprefix("backbone.body.") for name in model.inserted_modules)
    for name, m in body.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert name.startswith(inserted), name
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad
    _check_train_and_eval(model)


def test_mask_rcnn_tiny_c5_dgmn_with_paper_rates() -> None:
    model = build_mask_rcnn("resnet_tiny", num_classes=4, insert="dgmn_c5", **SMALL)
    (name,) = model.inserted_modules
    assert name == "backbone.body.layer4.0.conv3.dgmn"
    module = model.get_submodule(name)
    assert module.rates == (1, 4, 8, 12) and module.form == "residual"
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    _check_train_and_eval(model)


def test_frozen_bn_and_trainable_layers_follow_weights(tmp_path) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(build_resnet("resnet_tiny").state_dict(), path)
    insert = {"module": "gcnet", "at": "c2"}
    pretrained = build_mask_rcnn("resnet_tiny", weights=path, insert=insert, **SMALL)
    body = pretrained.backbone.body
    assert isinstance(body.layer3[0].bn2, FrozenBatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert not body.layer1[0].conv2.weight.requires_grad  # res2 frozen (trainable_layers=3)
    assert all(p.requires_grad for p in body.layer1[0].conv3.gcnet.parameters())
    scratch = build_mask_rcnn("resnet_tiny", **SMALL)
    assert type(scratch.backbone.body.layer3[0].bn2) is nn.BatchNorm2d
    assert all(p.requires_grad for p in scratch.parameters())


def test_presets_are_valid_specs() -> None:
    for specs in MASK_RCNN_PRESETS.values():
        assert len(parse_insert(list(specs))) == len(specs)
    coco = {"rates": [1, 4, 8, 12], "groups": 4, "form": "residual"}
    for preset in ("dgmn_c5", "dgmn_c4_c5", "dgmn_res4"):
        assert MASK_RCNN_PRESETS[preset][0]["kwargs"] == coco
    assert MASK_RCNN_PRESETS["dgmn_res4"][0]["module"] == "dgmn_reduced"


@pytest.mark.parametrize(("backbone", "insert", "paper_m"), [
    ("resnet50", "dgmn_c4_c5", 51.1),  # §4.3: "only 51.1M parameters and 297.1 GFLOPs"
    ("resnet101", "maskrcnn", 63.1),  # §4.3: "the Mask-RCNN baseline with ResNet-101 has 63.1M"
])
def test_whole_model_parameters_match_the_paper(backbone: str, insert: str,
                                                paper_m: float) -> None:
    """Trainable parameters of the paper's setting (frozen BN, stem and res2), no forward."""
    totals = mask_rcnn_totals(insert, backbone, image_size=None)
    assert totals.complexity is None
    assert totals.params_m == pytest.approx(paper_m, abs=0.05)


@pytest.mark.slow
def test_totals_count_a_forward_with_the_test_time_head_workload() -> None:
    """Random weights, yet the box head sees every proposal and the mask head 100 detections:
    the same whole-model MACs with and without DGMN's (random, unnormalised) modules, apart
    from the modules' own convolutions."""
    size = {"min_size": 96, "max_size": 128, "rpn_pre_nms_top_n_test": 100,
            "rpn_post_nms_top_n_test": 10, "box_detections_per_img": 2}
    base = mask_rcnn_totals("maskrcnn", "resnet_tiny", image_size=(96, 128), **size)
    dgmn = mask_rcnn_totals("dgmn_c4_c5", "resnet_tiny", image_size=(96, 128), **size)
    model = build_mask_rcnn("resnet_tiny", num_classes=81, insert="dgmn_c4_c5", frozen_bn=True,
                            trainable_layers=3)
    assert dgmn.trainable_params == trainable_parameters(model) > base.trainable_params
    box_head = 10 * (256 * 7 * 7 * 1024 + 1024 * 1024 + 1024 * 81 + 1024 * 4 * 81)
    for totals in (base, dgmn):
        assert totals.complexity.by_op["aten.addmm"] == box_head
    added = dgmn.complexity.by_op["aten.convolution"] - base.complexity.by_op["aten.convolution"]
    # the modules' predictors at res4 (6×8) and res5 (3×4), 4 rates each: walks (2K = 18
    # outputs, plain convs) and filters + affinities (G·K + K = 45 outputs, deformable convs,
    # whose weights on CPU are a 1×1 conv over the C·K read neighbours: the same MACs)
    predictor_convs = 4 * 9 * (18 + 45) * (64 * 6 * 8 + 128 * 3 * 4)
    assert added == predictor_convs


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "width"), [("resnet101", 512),
                                                 ("resnext101_32x8d", 2048)])
def test_larger_backbones_build(backbone: str, width: int) -> None:
    model = build_mask_rcnn(backbone, insert={"module": "gcnet", "at": "c5"}, frozen_bn=True)
    body = model.backbone.body
    assert len(body.layer3) == 23 and isinstance(body.layer3[5].bn1, FrozenBatchNorm2d)
    assert len(model.inserted_modules) == 3
    assert model.get_submodule(model.inserted_modules[0]).in_channels == width
    assert model.transform.min_size == (800,) and model.transform.max_size == 1333


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"insert": "dgmn_c6"}, "insert='dgmn_c6'"),
    ({"insert": {"module": "dgmn", "at": "c6"}}, "at='c6'"),
    ({"insert": {"module": "dgmnn", "at": "c5"}}, "dgmnn"),
    ({"backbone": "resnet152"}, "backbone='resnet152'"),
    ({"min_sise": 100}, "min_sise"),
    ({"num_classes": 1}, "num_classes=1"),
    ({"trainable_layers": 6}, "trainable_layers"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_mask_rcnn(**{"backbone": "resnet_tiny", **kwargs})
