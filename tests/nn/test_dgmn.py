"""The DGMN module: switches, forms, per-rate slicing, parameter counts, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from dgmn.nn import build_context_module
from dgmn.nn.dgmn import DGMN
from dgmn.ops import dynamic_message_passing


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("form", ["projected", "residual"])
@pytest.mark.parametrize("switches", [(1, 1, 1), (1, 1, 0), (1, 0, 0), (0, 1, 1), (0, 0, 0)])
def test_forward_backward_every_parameter_gets_a_gradient(switches, form):
    da, dw, ds = map(bool, switches)
    module = DGMN(8, rates=(1, 2, 3), groups=2, dynamic_affinity=da, dynamic_filters=dw,
                  dynamic_sampling=ds, form=form)
    x = torch.randn(2, 8, 7, 9, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    # projected: ReLU update (Eq. 2); residual: f + m, nothing rectifies it
    assert (out >= 0).all() == (form == "projected")
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


def test_residual_form_adds_the_message_of_the_raw_features():
    """The authors' module: h = f + Σ_q β_q m_q(f), no projections, norm or non-linearity."""
    module = DGMN(8, rates=(1, 3), groups=2, form="residual").double()
    assert module.value_proj is None and module.out_proj is None and module.out_norm is None
    x = torch.randn(2, 8, 7, 9, dtype=torch.float64)
    walks = module.predict_walks(x)
    filters, affinity = module.predict_filters_and_affinities(x, walks)
    message = dynamic_message_passing(x, module.rates, module.betas, filters=filters,
                                      affinity_logits=affinity, walks=walks, kernel_size=3)
    torch.testing.assert_close(module(x), x + message)
    assert walks.abs().min() > 0  # the authors' walks start random, not at uniform sampling
    with torch.no_grad():
        module.betas.zero_()
    torch.testing.assert_close(module(x), x)  # β = 0: the identity


def test_initialisation_of_each_form():
    """projected (ours): zero walks, N(0, 0.01) predictors, filter bias 1; residual (the
    authors'): bias-free convs, U(±1/√(k²C)), β = 1."""
    channels, rates = 64, (1, 4, 8, 12)
    ours = DGMN(channels, rates=rates, groups=4)
    for conv in ours.walk_predictors:
        assert not conv.weight.any() and not conv.bias.any()
    for conv in ours.node_predictors:
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert (conv.bias[: ours.num_filter_logits] == 1).all()
        assert not conv.bias[ours.num_filter_logits:].any()
    authors = DGMN(channels, rates=rates, groups=4, form="residual")
    bound = 1 / math.sqrt(9 * channels)
    for conv in [*authors.walk_predictors, *authors.node_predictors]:
        assert conv.bias is None
        assert conv.weight.abs().max() <= bound
        assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert (authors.betas == 1).all()


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


@pytest.mark.parametrize(("channels", "rates", "groups"), [(512, (1, 4, 8, 12), 4),
                                                           (256, (1, 4, 8), 2)])
def test_residual_form_counts_only_its_predictors(channels, rates, groups):
    """Per rate a 3×3 walk conv C→2K and a 3×3 filter/affinity conv C→GK+K, no bias, + β's:
    1,161,220 for res5 of ResNet-50 with the paper's φ and G (the 51.1M total's module)."""
    module = DGMN(channels, rates=rates, groups=groups, form="residual")
    k = 9
    expected = len(rates) * (9 * channels * 2 * k + 9 * channels * (groups * k + k) + 1)
    assert count_params(module) == expected
    if (channels, rates, groups) == (512, (1, 4, 8, 12), 4):
        assert expected == 1_161_220


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": 3}, "groups=3"),
        ({"groups": 0}, "groups"),
        ({"rates": ()}, "rates"),
        ({"rates": (1, 0)}, "rate=0"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"num_steps": 0}, "num_steps"),
        ({"form": "projection"}, "form='projection'"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DGMN(8, **kwargs)


def test_wrong_input_channels_are_named():
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        DGMN(8, groups=2)(torch.randn(1, 4, 5, 5))
