"""Insertion points inside a torchvision ResNet: where, how many, channels, function, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from dgmn.models.backbones import build_resnet
from dgmn.models.insertion import INSERTION_POINTS, insert_modules, parse_insert
from dgmn.nn.deform_conv import ModulatedDeformConv2d
from dgmn.nn.gcnet import ContextBlock


@pytest.fixture(scope="module")
def resnet50() -> ResNet:
    return build_resnet("resnet50")


def _features(model: ResNet, x: torch.Tensor) -> torch.Tensor:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.mark.parametrize(("at", "count", "channels"), [
    ("res4", 1, {1024}),
    ("c5", 3, {512}),
    ("c4_c5", 6 + 3, {256, 512}),
    (["c4", "c5"], 9, {256, 512}),
    ("c5_residual", 3, {2048}),
    ("c3", 4, {128}),
])
def test_counts_and_channels_on_resnet50(resnet50: ResNet, at, count: int, channels: set) -> None:
    model = copy.deepcopy(resnet50)
    names = insert_modules(model, {"module": "gcnet", "at": at})
    assert len(names) == count
    modules = [model.get_submodule(name) for name in names]
    assert all(isinstance(m, ContextBlock) for m in modules)
    assert {m.in_channels for m in modules} == channels
    assert sum(isinstance(m, ContextBlock) for m in model.modules()) == count


def test_res4_goes_right_before_the_last_block(resnet50: ResNet) -> None:
    model = copy.deepcopy(resnet50)
    keys = set(model.state_dict())
    assert insert_modules(model, {"module": "nonlocal", "at": "res4"}) == ["layer3.nonlocal"]
    names = [name for name, _ in model.layer3.named_children()]
    assert names == ["0", "1", "2", "3", "4", "nonlocal", "5"]
    assert all(type(model.layer3[i]) is Bottleneck for i in (0, 4, -1))
    assert keys <= set(model.state_dict())  # the blocks keep their state-dict keys


def test_c5_goes_after_each_3x3_conv_its_bn_and_relu(resnet50: ResNet) -> None:
    """The authors' order: conv2 → bn2 → ReLU → module → conv3; nothing rectifies the module's
    output (the residual DGMN's f + m reaches conv3 with its negative values)."""
    model = copy.deepcopy(resnet50)
    names = insert_modules(model, {"module": "dgmn", "at": "c5",
                                   "kwargs": {"rates": [1, 4], "form": "residual"}})
    assert names == [f"layer4.{i}.conv3.dgmn" for i in range(3)]
    for block, original in zip(model.layer4, resnet50.layer4, strict=True):
        module, conv = block.conv3
        assert module.rates == (1, 4) and conv is block.conv3.conv
        assert torch.equal(conv.weight, original.conv3.weight)
        assert type(block.bn2) is nn.BatchNorm2d and type(block.conv2) is nn.Conv2d
    block = model.layer4[1].eval()
    seen: dict[str, torch.Tensor] = {}
    block.conv3.dgmn.register_forward_hook(
        lambda m, args, out: seen.update(module_in=args[0], module_out=out))
    block.conv3.conv.register_forward_hook(lambda m, args, out: seen.update(conv3_in=args[0]))
    x = torch.randn(1, 2048, 6, 7)
    with torch.no_grad():
        out = block(x)
        h = torch.relu(block.bn1(block.conv1(x)))
        h = torch.relu(block.bn2(block.conv2(h)))
        torch.testing.assert_close(seen["module_in"], h)
        assert seen["conv3_in"] is seen["module_out"] and (seen["module_out"] < 0).any()
        want = torch.relu(block.bn3(block.conv3.conv(block.conv3.dgmn(h))) + x)
    torch.testing.assert_close(out, want)
    keys = {k.replace("conv3.conv.", "conv3.") for k in model.state_dict() if ".dgmn." not in k}
    assert keys == set(resnet50.state_dict())  # only the conv3 keys move, nothing else


def test_basic_blocks_get_a_module_after_each_3x3_conv() -> None:
    """A BasicBlock's first 3×3 conv is followed by BN and ReLU (module before conv2); its
    second one by BN and the addition (module after bn2)."""
    model = ResNet(BasicBlock, [1, 1, 1, 1])
    names = insert_modules(model, {"module": "gcnet", "at": "c5"})
    assert names == ["layer4.0.conv2.gcnet", "layer4.0.bn2.gcnet"]
    assert _features(model, torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)


def test_c5_residual_goes_before_the_addition(resnet50: ResNet) -> None:
    model = copy.deepcopy(resnet50)
    insert_modules(model, {"module": "gcnet", "at": "c5_residual"})
    for block in model.layer4:
        assert [type(m) for m in block.bn3] == [nn.BatchNorm2d, ContextBlock]
        assert type(block.bn2) is nn.BatchNorm2d


@pytest.mark.parametrize("at", ["res4", "c4", "c5_residual", "res2", "c2"])
def test_identity_at_init_modules_leave_the_function_unchanged(at: str) -> None:
    """GCNet's last conv starts at zero, so the modified network computes the same thing."""
    model = build_resnet("resnet_tiny").eval()
    reference = copy.deepcopy(model)
    insert_modules(model, [{"module": "gcnet", "at": at}, {"module": "ccnet", "at": at}])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(_features(model, x), _features(reference, x))


def test_deformable_c5_replaces_the_3x3_convs(resnet50: ResNet) -> None:
    model = copy.deepcopy(resnet50)
    names = insert_modules(model, {"module": "deformable", "at": "c5"})
    assert names == [f"layer4.{i}.conv2" for i in range(3)]
    for block, original in zip(model.layer4, resnet50.layer4, strict=True):
        dcn = block.conv2
        assert isinstance(dcn, ModulatedDeformConv2d)
        assert (dcn.stride, dcn.padding, dcn.dilation) == (
            original.conv2.stride, original.conv2.padding, original.conv2.dilation)
        assert torch.equal(dcn.weight, original.conv2.weight)
    # zero offsets and a 0.5 mask at initialisation: half the original conv
    x = torch.randn(1, 512, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(model.layer4[0].conv2(x), 0.5 * resnet50.layer4[0].conv2(x),
                                   rtol=1e-4, atol=1e-4)


def test_deformable_on_resnext_and_dilated_convs() -> None:
    model = build_resnet("resnet_tiny", output_stride=8)
    insert_modules(model, {"module": "deformable", "at": ["c4", "c5"]})
    assert model.layer4[0].conv2.dilation == (2, 2)
    x = torch.randn(1, 3, 33, 33)
    out = _features(model, x)
    out.mean().backward()
    assert model.layer4[0].conv2.offset_mask.weight.grad is not None
    assert out.shape == (1, 2048, 5, 5)


def test_several_modules_at_one_point() -> None:
    model = build_resnet("resnet_tiny")
    names = insert_modules(model, [{"module": "gcnet", "at": "res4"},
                                   {"module": "gcnet", "at": "res4"},
                                   {"module": "gcnet", "at": "c5"},
                                   {"module": "nonlocal", "at": "c5"},
                                   {"module": "gcnet", "at": "c5_residual"},
                                   {"module": "deformable", "at": "c5"}])
    assert names == ["layer3.gcnet", "layer3.gcnet_1", "layer4.0.conv3.gcnet",
                     "layer4.0.conv3.nonlocal", "layer4.0.bn3.gcnet", "layer4.0.conv2"]
    assert list(model.layer3._modules) == ["gcnet", "gcnet_1", "0"]  # in order, before block 0
    assert list(model.layer4[0].conv3._modules) == ["gcnet", "nonlocal", "conv"]
    assert _features(model, torch.randn(2, 3, 64, 64)).shape == (2, 2048, 2, 2)


def test_all_points_are_accepted() -> None:
    assert {"res4", "c5", "c5_residual", "c2"} <= set(INSERTION_POINTS)
    for point in INSERTION_POINTS:
        model = build_resnet("resnet_tiny")
        assert len(insert_modules(model, {"module": "gcnet", "at": point})) == 1


@pytest.mark.parametrize(("insert", "match"), [
    ({"module": "dgmn", "at": "c6"}, "at='c6'"),
    ({"module": "dgmn", "at": ["c5", "res9"]}, "at='res9'"),
    ({"module": "dgmn", "at": []}, "non-empty"),
    ({"module": "dgmn", "at": ["c5", "c5"]}, "twice"),
    ({"module": "dgmm", "at": "c5"}, "dgmm"),
    ({"module": "dgmn"}, "'at'"),
    ({"module": "dgmn", "at": "c5", "where": 1}, "where"),
    ({"module": "dgmn", "at": "c5", "kwargs": [1]}, "kwargs"),
    ({"module": "deformable", "at": "res4"}, "replaces the 3×3 convs"),
    ({"module": "deformable", "at": "c5", "kwargs": {"dilation": 2}}, "without kwargs"),
    ("dgmn_c5", "mapping"),
    ([1], "mapping"),
])
def test_bad_specs(insert, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_insert(insert)


def test_bad_spec_changes_nothing_and_channel_changes_are_refused() -> None:
    model = build_resnet("resnet_tiny")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="c7"):
        insert_modules(model, [{"module": "gcnet", "at": "c5"}, {"module": "gcnet", "at": "c7"}])
    assert model.state_dict().keys() == before.keys()
    # res4 of resnet_tiny has one block: the module sees res3's 512 output channels
    with pytest.raises(ValueError, match=r"danet.*keep its 512 channels"):
        insert_modules(model, {"module": "danet", "at": "res4", "kwargs": {"out_channels": 8}})
