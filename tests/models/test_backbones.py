"""Backbones: torchvision classes, output stride, dilation, multi-grid, weights and errors."""

from __future__ import annotations

import dataclasses
import urllib.error

import pytest
import torch
import torchvision.models._api
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops import FrozenBatchNorm2d

from dgmn.models.backbones import (
    BACKBONES,
    BackboneWeightsError,
    build_resnet,
    stage_out_channels,
)


def _dilations(layer: torch.nn.Sequential) -> list[int]:
    return [block.conv2.dilation[0] for block in layer]


def _strides(layer: torch.nn.Sequential) -> list[int]:
    return [block.conv2.stride[0] for block in layer]


def test_resnet_tiny_is_a_torchvision_bottleneck_resnet() -> None:
    model = build_resnet("resnet_tiny")
    assert type(model) is ResNet
    assert all(type(block) is Bottleneck for stage in ("layer1", "layer2", "layer3", "layer4")
               for block in getattr(model, stage))
    assert [stage_out_channels(model, f"layer{i}") for i in range(1, 5)] == [256, 512, 1024, 2048]
    assert model.layer4[0].conv2.in_channels == 128  # 1/4 of ResNet-50's bottleneck width
    params = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("fc."))
    assert params < 4_000_000


@pytest.mark.parametrize(("name", "widths", "bottlenecks"), [
    ("resnet_micro", [64, 128, 256, 512], [16, 32, 64, 128]),
    ("resnet_nano", [64, 128, 128, 256], [16, 32, 32, 64]),
])
def test_narrow_resnets_have_tiny_s_layout_with_narrower_stages(
        name: str, widths: list[int], bottlenecks: list[int]) -> None:
    tiny, micro = build_resnet("resnet_tiny", output_stride=8), build_resnet(name,
                                                                              output_stride=8)
    assert type(micro) is ResNet and micro.conv1.out_channels == 16
    assert [stage_out_channels(micro, f"layer{i}") for i in range(1, 5)] == widths
    assert [getattr(micro, f"layer{i}")[0].conv2.in_channels for i in range(1, 5)] == bottlenecks
    for stage in ("layer1", "layer2", "layer3", "layer4"):  # same convs, strides, dilations
        for a, b in zip(getattr(tiny, stage), getattr(micro, stage), strict=True):
            assert (a.conv2.kernel_size, a.conv2.stride, a.conv2.dilation, a.conv2.padding) == (
                b.conv2.kernel_size, b.conv2.stride, b.conv2.dilation, b.conv2.padding)
    for name, module in micro.named_modules():  # torchvision's initialisation
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
    out = micro(torch.randn(2, 3, 64, 64))  # through fc: the classifier fits the narrower C5
    assert out.shape == (2, 1000)


@pytest.mark.parametrize(("output_stride", "size"), [(32, 3), (16, 5), (8, 9)])
def test_output_stride(output_stride: int, size: int) -> None:
    model = build_resnet("resnet_tiny", output_stride=output_stride).eval()
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(model, stage)(x)
    assert x.shape == (1, 2048, size, size)


def test_resnet50_dilation_for_output_stride_8() -> None:
    model = build_resnet("resnet50", output_stride=8)
    # torchvision's replace_stride_with_dilation: the first block keeps the previous dilation.
    assert _dilations(model.layer2) == [1, 1, 1, 1]
    assert _dilations(model.layer3) == [1, 2, 2, 2, 2, 2]
    assert _dilations(model.layer4) == [2, 4, 4]
    assert _strides(model.layer2)[0] == 2
    assert _strides(model.layer3) == [1] * 6 and _strides(model.layer4) == [1] * 3
    assert model.layer3[0].downsample[0].stride == (1, 1)
    assert all(block.conv2.padding == block.conv2.dilation for block in model.layer4)


def test_resnet101_multi_grid_multiplies_layer4_dilation() -> None:
    model = build_resnet("resnet101", output_stride=8, multi_grid=(1, 2, 4))
    assert len(model.layer3) == 23
    assert _dilations(model.layer3)[-1] == 2
    assert _dilations(model.layer4) == [4, 8, 16]
    assert [block.conv2.padding[0] for block in model.layer4] == [4, 8, 16]
    assert _dilations(build_resnet("resnet_tiny", output_stride=16, multi_grid=[3]).layer4) == [6]


def test_resnext_uses_grouped_convs() -> None:
    model = build_resnet("resnext101_32x8d")
    assert model.layer4[0].conv2.groups == 32
    assert model.layer4[0].conv2.in_channels == 2048


@pytest.mark.parametrize("multi_grid", [(1, 2), (1, 2, 0), (1.0, 2, 4)])
def test_bad_multi_grid(multi_grid: tuple) -> None:
    with pytest.raises(ValueError, match="multi_grid"):
        build_resnet("resnet50", output_stride=8, multi_grid=multi_grid)


def test_unknown_backbone_and_output_stride() -> None:
    with pytest.raises(ValueError, match=r"backbone='resnet5'.*resnet50"):
        build_resnet("resnet5")
    with pytest.raises(ValueError, match="output_stride=4"):
        build_resnet("resnet_tiny", output_stride=4)


def test_norm_layer() -> None:
    model = build_resnet("resnet_tiny", norm_layer=FrozenBatchNorm2d)
    assert isinstance(model.bn1, FrozenBatchNorm2d)
    assert isinstance(model.layer4[0].bn2, FrozenBatchNorm2d)


def test_local_weights_round_trip(tmp_path) -> None:
    source = build_resnet("resnet_tiny")
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    loaded = build_resnet("resnet_tiny", weights=str(path), output_stride=8,
                          norm_layer=FrozenBatchNorm2d)
    assert torch.equal(loaded.layer4[0].conv2.weight, source.layer4[0].conv2.weight)
    assert torch.equal(loaded.layer2[0].bn2.running_var, source.layer2[0].bn2.running_var)
    # without the classifier, and wrapped like a training checkpoint
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    torch.save({"state_dict": state}, path)
    build_resnet("resnet_tiny", weights=path)


def test_missing_weights_file(tmp_path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(BackboneWeightsError, match=r"backbone='resnet50'.*nope\.pth.*local"):
        build_resnet("resnet50", weights=str(missing))
    assert issubclass(BackboneWeightsError, RuntimeError)


def test_bad_weights_file(tmp_path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneWeightsError, match="could not read"):
        build_resnet("resnet_tiny", weights=garbage)
    other = tmp_path / "r50.pth"
    torch.save(build_resnet("resnet_tiny").layer1.state_dict(), other)
    with pytest.raises(BackboneWeightsError, match="do not fit"):
        build_resnet("resnet_tiny", weights=other)


def test_imagenet_download_failure_is_one_clear_error(monkeypatch) -> None:
    calls = []

    def offline(url: str, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(BackboneWeightsError,
                       match=r"backbone='resnet101'.*weights='imagenet'.*local") as info:
        build_resnet("resnet101", weights="imagenet")
    assert calls and "resnet101" in calls[0]
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_imagenet_weights_are_passed_through(monkeypatch) -> None:
    source = build_resnet("resnet_tiny")
    monkeypatch.setitem(BACKBONES, "resnet_tiny", dataclasses.replace(
        BACKBONES["resnet_tiny"], imagenet_weights="ResNet50_Weights.IMAGENET1K_V1"))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url",
                        lambda url, *args, **kwargs: source.state_dict())
    loaded = build_resnet("resnet_tiny", weights="imagenet")
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)


def test_tiny_has_no_imagenet_weights() -> None:
    with pytest.raises(BackboneWeightsError, match=r"resnet_tiny.*no ImageNet weights"):
        build_resnet("resnet_tiny", weights="imagenet")
