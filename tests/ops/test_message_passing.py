"""The message-passing op against an explicit float64 loop reference, gradcheck and DCNv2."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import deform_conv2d

from dgmn.ops import dynamic_message_passing, neighbour_offsets


def bilinear_at(feature: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """Explicit bilinear read of ``feature`` (C, H, W) at (y, x); corners outside read zero."""
    height, width = feature.shape[1:]
    y0, x0 = math.floor(y), math.floor(x)
    value = torch.zeros(feature.shape[0], dtype=feature.dtype)
    for cy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for cx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= cy < height and 0 <= cx < width:
                value += wy * wx * feature[:, cy, cx]
    return value


def loop_reference(features, rates, betas, filters, affinity_logits, walks, kernel_size):
    """Eq. 3-7 written out node by node, rate by rate, neighbour by neighbour (float64)."""
    batch, channels, height, width = features.shape
    k = kernel_size * kernel_size
    half = kernel_size // 2
    groups = 1 if filters is None else filters.shape[2]
    out = torch.zeros_like(features)
    for b in range(batch):
        for q, rate in enumerate(rates):
            for i in range(height):
                for j in range(width):
                    if affinity_logits is None:
                        affinity = [1.0 / k] * k
                    else:
                        logits = affinity_logits[b, q, :, i, j]
                        exps = [math.exp(v) for v in logits.tolist()]
                        affinity = [e / sum(exps) for e in exps]
                    for n in range(k):
                        dy, dx = (n // kernel_size - half) * rate, (n % kernel_size - half) * rate
                        if walks is not None:
                            dy += walks[b, q, n, 0, i, j].item()
                            dx += walks[b, q, n, 1, i, j].item()
                        value = bilinear_at(features[b], i + dy, j + dx)
                        for c in range(channels):
                            w = 1.0 if filters is None else filters[b, q, c * groups // channels,
                                                                   n, i, j].item()
                            out[b, c, i, j] += betas[q].item() * affinity[n] * w * value[c]
    return out


def random_inputs(batch=2, channels=4, height=5, width=6, rates=(1, 2), groups=2,
                  kernel_size=3, walk_scale=3.0, dtype=torch.float64, requires_grad=False):
    s, k = len(rates), kernel_size * kernel_size
    shape = (batch, s)
    tensors = {
        "features": torch.randn(batch, channels, height, width, dtype=dtype),
        "betas": torch.rand(s, dtype=dtype) + 0.5,
        "filters": torch.randn(*shape, groups, k, height, width, dtype=dtype),
        "affinity_logits": torch.randn(*shape, k, height, width, dtype=dtype),
        # Walks of a few pixels on a 5×6 map: many neighbours land (partly) outside.
        "walks": walk_scale * torch.randn(*shape, k, 2, height, width, dtype=dtype),
    }
    for tensor in tensors.values():
        tensor.requires_grad_(requires_grad)
    return tensors


@pytest.mark.parametrize(
    ("rates", "groups", "kernel_size", "channels"),
    [((1, 2), 2, 3, 4), ((1,), 1, 3, 3), ((3, 1, 2), 4, 3, 4), ((1,), 2, 1, 2), ((2,), 3, 5, 6)],
)
def test_matches_explicit_loop_reference(rates, groups, kernel_size, channels):
    t = random_inputs(channels=channels, rates=rates, groups=groups, kernel_size=kernel_size)
    got = dynamic_message_passing(t["features"], rates, t["betas"], filters=t["filters"],
                                  affinity_logits=t["affinity_logits"], walks=t["walks"],
                                  kernel_size=kernel_size)
    want = loop_reference(t["features"], rates, t["betas"], t["filters"], t["affinity_logits"],
                          t["walks"], kernel_size)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_walks_leave_the_map_and_read_zeros():
    t = random_inputs(rates=(1,), groups=1)
    walks = torch.full_like(t["walks"], 50.0)  # every neighbour far outside
    out = dynamic_message_passing(t["features"], (1,), t["betas"], filters=t["filters"],
                                  affinity_logits=t["affinity_logits"], walks=walks)
    assert torch.count_nonzero(out) == 0
    # Half a pixel beyond the last column still reads half of the border pixel.
    walks = torch.zeros_like(t["walks"])
    walks[:, :, :, 1] = 0.5
    one_hot = torch.zeros_like(t["affinity_logits"]).fill_(-1e9)
    one_hot[:, :, 4] = 0.0  # centre neighbour only
    out = dynamic_message_passing(t["features"], (1,), torch.ones(1, dtype=torch.float64),
                                  affinity_logits=one_hot, walks=walks)
    torch.testing.assert_close(out[..., -1], 0.5 * t["features"][..., -1])


@pytest.mark.parametrize("optional", ["none", "no_filters", "no_affinity", "no_walks"])
def test_optional_inputs_match_reference(optional):
    t = random_inputs(rates=(1, 2), groups=2)
    if optional == "none":
        t["filters"] = t["affinity_logits"] = t["walks"] = None
    else:
        t[optional.removeprefix("no_").replace("affinity", "affinity_logits")] = None
    got = dynamic_message_passing(t["features"], (1, 2), t["betas"], filters=t["filters"],
                                  affinity_logits=t["affinity_logits"], walks=t["walks"])
    want = loop_reference(t["features"], (1, 2), t["betas"], t["filters"],
                          t["affinity_logits"], t["walks"], 3)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_gradcheck_every_input(memory_efficient):
    t = random_inputs(batch=1, channels=4, height=4, width=5, rates=(1, 2), groups=2,
                      walk_scale=1.5, requires_grad=True)

    def op(features, betas, filters, affinity_logits, walks):
        return dynamic_message_passing(features, (1, 2), betas, filters=filters,
                                       affinity_logits=affinity_logits, walks=walks,
                                       memory_efficient=memory_efficient)

    names = ("features", "betas", "filters", "affinity_logits", "walks")
    assert torch.autograd.gradcheck(op, tuple(t[n] for n in names), eps=1e-6, atol=1e-6)


def test_memory_efficient_gives_same_gradients():
    t = random_inputs(rates=(1, 2, 3), requires_grad=True, dtype=torch.float32)
    grads = []
    for memory_efficient in (False, True):
        out = dynamic_message_passing(t["features"], (1, 2, 3), t["betas"], filters=t["filters"],
                                      affinity_logits=t["affinity_logits"], walks=t["walks"],
                                      memory_efficient=memory_efficient)
        grads.append(torch.autograd.grad(out.square().sum(), list(t.values())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("rate", [1, 2])
def test_fixed_group_filters_equal_deform_conv2d_with_mask(rate):
    """w fixed per (group, neighbour) and A' as the DCNv2 mask: the op is a deformable conv."""
    batch, channels, groups, height, width, k = 2, 6, 3, 7, 8, 9
    t = random_inputs(batch=batch, channels=channels, height=height, width=width,
                      rates=(rate,), groups=groups)
    group_weight = torch.randn(groups, k, dtype=torch.float64)
    filters = group_weight.view(1, 1, groups, k, 1, 1).expand(batch, 1, groups, k, height, width)
    beta = torch.tensor([1.0], dtype=torch.float64)
    ours = dynamic_message_passing(t["features"], (rate,), beta, filters=filters,
                                   affinity_logits=t["affinity_logits"], walks=t["walks"])
    depthwise = group_weight.repeat_interleave(channels // groups, dim=0).view(channels, 1, 3, 3)
    theirs = deform_conv2d(t["features"], t["walks"][:, 0].reshape(batch, 2 * k, height, width),
                           depthwise, padding=rate, dilation=rate,
                           mask=torch.softmax(t["affinity_logits"][:, 0], dim=1))
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_neighbour_offsets_are_the_dilated_grid():
    offsets = neighbour_offsets(3, 6)
    assert offsets.tolist()[0] == [-6.0, -6.0]
    assert offsets.tolist()[4] == [0.0, 0.0]
    assert offsets.tolist()[5] == [0.0, 6.0]
    assert offsets.shape == (9, 2)


def test_float32_and_bfloat16_close_to_float64():
    t = random_inputs(rates=(1, 2))
    want = dynamic_message_passing(t["features"], (1, 2), t["betas"], filters=t["filters"],
                                   affinity_logits=t["affinity_logits"], walks=t["walks"])
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 5e-2)):
        low = {n: v.to(dtype) for n, v in t.items()}
        got = dynamic_message_passing(low["features"], (1, 2), low["betas"],
                                      filters=low["filters"],
                                      affinity_logits=low["affinity_logits"], walks=low["walks"])
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol * want.abs().max())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rates": ()}, "rates"),
        ({"rates": (1, 0)}, "rate=0"),
        ({"rates": (1, -2)}, "rate=-2"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"groups": 3}, "G=3"),
        ({"betas_len": 3}, "betas"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    t = random_inputs(channels=4, rates=(1, 2), groups=kwargs.get("groups", 2))
    rates = kwargs.get("rates", (1, 2))
    betas = torch.ones(kwargs.get("betas_len", len(rates) or 1), dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        dynamic_message_passing(t["features"], rates, betas, filters=t["filters"],
                                kernel_size=kwargs.get("kernel_size", 3))


def test_wrong_walk_shape_is_named():
    t = random_inputs()
    with pytest.raises(ValueError, match="walks"):
        dynamic_message_passing(t["features"], (1, 2), t["betas"], walks=t["walks"][:, :, :4])
