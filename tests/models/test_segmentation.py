"""Dilated FCN: every context module, output size and stride, gradients, aux head, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dgmn.models import DilatedFCN
from dgmn.nn import CONTEXT_MODULES

CHANNELS = 64  # the reduction width: 512 in the paper, small here for CPU time


def _tiny(**kwargs) -> DilatedFCN:
    return DilatedFCN(**{"backbone": "resnet_tiny", "num_classes": 5, "channels": CHANNELS,
                         **kwargs})


def _all_finite_grads(module: nn.Module) -> bool:
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    return bool(grads) and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("context", [None, *CONTEXT_MODULES])
def test_forward_backward_every_context(context: str | None) -> None:
    model = _tiny(context=context).train()
    images = torch.randn(2, 3, 65, 97)
    logits = model(images)
    assert logits.shape == (2, 5, 65, 97)
    loss = nn.functional.cross_entropy(logits, torch.randint(0, 5, (2, 65, 97)))
    loss.backward()
    assert torch.isfinite(loss)
    assert _all_finite_grads(model.classifier)
    assert _all_finite_grads(model.reduce)
    if context is None:
        assert isinstance(model.context, nn.Identity)
    else:
        assert _all_finite_grads(model.context)
        assert model.classifier.in_channels == model.context.out_channels


def test_output_stride_8_and_eval_any_size() -> None:
    model = _tiny(context="gcnet").eval()
    shapes = {}
    model.backbone.layer4.register_forward_hook(
        lambda module, args, out: shapes.__setitem__("layer4", out.shape))
    model.reduce.register_forward_hook(
        lambda module, args, out: shapes.__setitem__("reduce", out.shape))
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 65, 97))
    assert logits.shape == (1, 5, 65, 97)
    assert shapes["layer4"] == (1, 2048, 9, 13)  # ⌈65/8⌉ × ⌈97/8⌉
    assert shapes["reduce"] == (1, CHANNELS, 9, 13)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 31, 40)).shape == (1, 5, 31, 40)


def test_output_stride_16_and_multi_grid() -> None:
    model = _tiny(output_stride=16, multi_grid=(2,)).eval()
    assert model.backbone.layer4[0].conv2.dilation == (4, 4)
    shapes = {}
    model.backbone.layer4.register_forward_hook(
        lambda module, args, out: shapes.__setitem__("layer4", out.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
    assert shapes["layer4"][-2:] == (4, 6)


def test_context_kwargs_reach_the_module() -> None:
    model = _tiny(context="dgmn", context_kwargs={"rates": [1, 6], "groups": 4})
    assert model.context.rates == (1, 6)
    assert model.context.in_channels == CHANNELS


def test_paper_head_layout() -> None:
    """3×3 conv (no bias) + BN + ReLU to 512 channels, then the module, dropout, 1×1 classifier."""
    model = DilatedFCN("resnet_tiny", num_classes=19, context="nonlocal")
    conv, bn, relu = model.reduce
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.bias) == (
        2048, 512, (3, 3), None)
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert model.context.in_channels == 512
    assert isinstance(model.dropout, nn.Dropout2d) and model.dropout.p == 0.1
    assert model.classifier.kernel_size == (1, 1) and model.classifier.out_channels == 19
    assert not hasattr(model.backbone, "fc") and not hasattr(model.backbone, "avgpool")


def test_aux_head_in_training_only() -> None:
    model = _tiny(aux_head=True).train()
    out = model(torch.randn(2, 3, 33, 47))
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (2, 5, 33, 47)
    (out["out"].mean() + 0.4 * out["aux"].mean()).backward()
    assert _all_finite_grads(model.aux_head)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 47)).shape == (1, 5, 33, 47)


def test_align_corners_changes_upsampling() -> None:
    images = torch.randn(1, 3, 65, 65)
    torch.manual_seed(1)
    a = _tiny(align_corners=False).eval()
    b = _tiny(align_corners=True).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert not torch.allclose(a(images), b(images))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"context": "gcnett"}, "gcnett"),
    ({"backbone": "resnet18"}, "backbone='resnet18'"),
    ({"output_stride": 4}, "output_stride=4"),
    ({"num_classes": 0}, "num_classes=0"),
    ({"channels": -1}, "channels=-1"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"context_kwargs": {"rates": [1]}}, "without a context"),
    ({"context_kwargs": [1]}, "context_kwargs"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _tiny(**kwargs)
