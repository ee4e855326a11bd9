"""dgmn.ops.deform_conv2d: the fast CPU path equals torchvision.ops.deform_conv2d, forward and
backward (float64), and every other call is torchvision's own."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

import dgmn.ops.deform as deform
from dgmn.ops.deform import deform_conv2d


def _inputs(dilation: int, *, masked: bool, biased: bool, kernel: int = 3, size: int = 9,
            seed: int = 0) -> dict[str, torch.Tensor | None]:
    """A "same"-size call: offsets of a few pixels (some taps read outside the map), a mask in
    (0, 1); float64, all requiring gradients."""
    g = torch.Generator().manual_seed(seed)
    taps = kernel * kernel
    tensors = {
        "x": torch.randn(2, 5, size, size + 2, generator=g, dtype=torch.float64),
        "offset": 2.5 * torch.randn(2, 2 * taps, size, size + 2, generator=g,
                                    dtype=torch.float64),
        "weight": torch.randn(4, 5, kernel, kernel, generator=g, dtype=torch.float64),
        "bias": torch.randn(4, generator=g, dtype=torch.float64) if biased else None,
        "mask": (torch.rand(2, taps, size, size + 2, generator=g, dtype=torch.float64)
                 if masked else None),
    }
    return {k: v.requires_grad_() if v is not None else None for k, v in tensors.items()}


def _call(fn, t: dict, dilation: int, kernel: int = 3) -> torch.Tensor:
    pad = dilation * (kernel // 2)
    return fn(t["x"], t["offset"], t["weight"], t["bias"], stride=1, padding=pad,
              dilation=dilation, mask=t["mask"])


CASES = [(d, masked, biased) for d in (1, 2, 6) for masked in (False, True)
         for biased in (False, True)]


@pytest.mark.parametrize(("dilation", "masked", "biased"), CASES)
def test_forward_and_gradients_equal_torchvision(dilation: int, masked: bool, biased: bool
                                                 ) -> None:
    ours_in = _inputs(dilation, masked=masked, biased=biased)
    ref_in = {k: v.detach().clone().requires_grad_() if v is not None else None
              for k, v in ours_in.items()}
    ours = _call(deform_conv2d, ours_in, dilation)
    ref = _call(torchvision_deform_conv2d, ref_in, dilation)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    upstream = torch.randn_like(ref)
    ours.backward(upstream)
    ref.backward(upstream)
    for name, tensor in ours_in.items():
        if tensor is not None:
            torch.testing.assert_close(tensor.grad, ref_in[name].grad, rtol=0, atol=1e-10,
                                       msg=lambda m, name=name: f"grad of {name}: {m}")


def test_5x5_kernel_equals_torchvision() -> None:
    t = _inputs(2, masked=True, biased=True, kernel=5, size=11)
    torch.testing.assert_close(_call(deform_conv2d, t, 2, kernel=5),
                               _call(torchvision_deform_conv2d, t, 2, kernel=5),
                               rtol=0, atol=1e-10)


def test_gradcheck_on_a_tiny_case() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    # fractional offsets well inside (0, 1) per step: the finite differences cross no pixel edge
    offset = (0.3 + 0.4 * torch.rand(1, 18, 3, 4, generator=g, dtype=torch.float64)
              ).requires_grad_()
    weight = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 9, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(x, offset, weight, mask, bias):
        return deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)

    # fast mode (random directions): the full Jacobians are compared with torchvision above
    assert torch.autograd.gradcheck(fn, (x, offset, weight, mask, bias), fast_mode=True)


@pytest.fixture()
def torchvision_calls(monkeypatch) -> list[dict]:
    """Records each call the module hands to torchvision."""
    calls: list[dict] = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return torchvision_deform_conv2d(*args, **kwargs)

    monkeypatch.setattr(deform, "_torchvision_deform_conv2d", spy)
    return calls


def test_same_size_calls_take_the_fast_path(torchvision_calls) -> None:
    t = _inputs(2, masked=True, biased=True)
    _call(deform_conv2d, t, 2)
    assert torchvision_calls == []


@pytest.mark.parametrize("case", ["stride", "groups", "padding"])
def test_other_calls_return_torchvision_s_result(case: str, torchvision_calls) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 9, 10, generator=g, dtype=torch.float64)
    weight = torch.randn(6, 2 if case == "groups" else 4, 3, 3, generator=g, dtype=torch.float64)
    stride, padding = (2, 1) if case == "stride" else (1, 0 if case == "padding" else 1)
    out_h, out_w = ((9 + 2 * padding - 3) // stride + 1, (10 + 2 * padding - 3) // stride + 1)
    offset = torch.randn(2, 18, out_h, out_w, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 9, out_h, out_w, generator=g, dtype=torch.float64)
    ours = deform_conv2d(x, offset, weight, stride=stride, padding=padding, mask=mask)
    expected = torchvision_deform_conv2d(x, offset, weight, stride=stride, padding=padding,
                                         mask=mask)
    assert len(torchvision_calls) == 1
    assert torch.equal(ours, expected)
