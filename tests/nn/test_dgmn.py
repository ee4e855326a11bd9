"""The DGMN module: switches, per-rate slicing of predictions, parameter counts, bad input."""

from __future__ import annotations

import pytest
import torch

from dgmn.nn import build_context_module
from dgmn.nn.dgmn import DGMN


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("switches", [(1, 1, 1), (1, 1, 0), (1, 0, 0), (0, 1, 1), (0, 0, 0)])
def test_forward_backward_every_parameter_gets_a_gradient(switches):
    da, dw, ds = map(bool, switches)
    module = DGMN(8, rates=(1, 2, 3), groups=2, dynamic_affinity=da, dynamic_filters=dw,
                  dynamic_sampling=ds)
    x = torch.randn(2, 8, 7, 9, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    assert (out >= 0).all()  # ReLU update, Eq. 2
    out.square().mean().backward()
    for name, param in module.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_predictions_are_sliced_per_rate():
    """Each rate reads its own affinity/filter logits: one-hot affinities make pure shifts."""
    rates, channels = (1, 2, 3), 4
    module = DGMN(channels, rates=rates, groups=2, dynamic_sampling=False).double().eval()
    chosen = [0, 5, 7]  # neighbour picked by rate q: (dy, dx) = ρ·(n//3 - 1, n%3 - 1)
    gains = [0.5, -1.0, 2.0]  # filter value of rate q, same for both groups
    with torch.no_grad():
        module.value_proj.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        module.betas.copy_(torch.tensor([1.0, 0.25, 3.0]))
        for q, conv in enumerate(module.node_predictors):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.bias[: module.num_filter_logits] = gains[q]
            conv.bias[module.num_filter_logits + chosen[q]] = 50.0  # softmax ≈ one-hot
    x = torch.randn(1, channels, 9, 11, dtype=torch.float64)
    got = module.message(x)
    want = torch.zeros_like(x)
    for q, rate in enumerate(rates):
        dy, dx = rate * (chosen[q] // 3 - 1), rate * (chosen[q] % 3 - 1)
        shifted = torch.zeros_like(x)
        ys, xs = slice(max(0, -dy), 9 - max(0, dy)), slice(max(0, -dx), 11 - max(0, dx))
        yt, xt = slice(max(0, dy), 9 - max(0, -dy)), slice(max(0, dx), 11 - max(0, -dx))
        shifted[..., ys, xs] = x[..., yt, xt]  # node i reads node i + (dy, dx)
        want += module.betas[q].item() * gains[q] * shifted
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_zero_walks_make_dynamic_sampling_equal_uniform_sampling():
    """At initialisation walks are zero, so the deformable predictor equals the plain conv."""
    torch.manual_seed(1)
    with_ds = DGMN(8, rates=(1, 4), groups=4, dynamic_sampling=True).eval()
    without = DGMN(8, rates=(1, 4), groups=4, dynamic_sampling=False).eval()
    without.load_state_dict(with_ds.state_dict(), strict=False)
    x = torch.randn(2, 8, 10, 12)
    torch.testing.assert_close(with_ds(x), without(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # non-zero walks must change the result
        with_ds.walk_predictors[0].bias.fill_(0.7)
    assert not torch.allclose(with_ds(x), without(x), atol=1e-4)


def test_walks_shape_and_registry():
    module = build_context_module("dgmn", 8, rates=[1, 6], groups=2)
    assert isinstance(module, DGMN) and module.out_channels == 8
    walks = module.predict_walks(torch.randn(3, 8, 5, 6))
    assert walks.shape == (3, 2, 9, 2, 5, 6)


def test_two_steps_differ_from_one():
    one = DGMN(8, rates=(1, 2), groups=2).eval()
    two = DGMN(8, rates=(1, 2), groups=2, num_steps=2).eval()
    two.load_state_dict(one.state_dict())
    with torch.no_grad():
        for conv in one.walk_predictors:
            conv.bias.normal_()
        two.load_state_dict(one.state_dict())
    x = torch.randn(1, 8, 6, 6)
    assert not torch.allclose(one(x), two(x))


@pytest.mark.parametrize(
    ("kwargs", "paper_m"),
    [
        ({"rates": (1,), "dynamic_filters": False, "dynamic_sampling": False}, 0.57),
        ({"rates": (1,), "groups": 4, "dynamic_sampling": False}, 0.73),
    ],
)
def test_parameter_counts_match_table_1(kwargs, paper_m):
    module = DGMN(512, **kwargs)
    assert round(count_params(module) / 1e6, 2) == paper_m


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": 3}, "groups=3"),
        ({"groups": 0}, "groups"),
        ({"rates": ()}, "rates"),
        ({"rates": (1, 0)}, "rate=0"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"num_steps": 0}, "num_steps"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DGMN(8, **kwargs)


def test_wrong_input_channels_are_named():
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        DGMN(8, groups=2)(torch.randn(1, 4, 5, 5))
