"""The fused Triton kernels against the PyTorch reference: values and every gradient.

On CPU the kernels run in Triton's interpreter. ``dgmn.ops.triton`` loads a private copy of
its kernel module with the interpreter switched on only while that copy is decorated (Triton
3.8 reads ``TRITON_INTERPRET`` when ``@triton.jit`` runs), so these tests need no environment
variable, do not depend on import order and leave every other Triton kernel compiled.
Interpreter sizes are tiny (6×7 maps, C = 8); the GPU tests at the end use realistic sizes.

The reference runs in float64 on the upcast inputs, so the bounds measure the kernels' own
error: float32 ≈ 2e-7 relative; bf16 / fp16 outputs and gradients are rounded once from fp32
accumulators (≈ 3.5e-3 / 2e-4 relative on the interpreter, whose fp32 → bf16 conversion
truncates where the GPU rounds to nearest; bounds 1e-2 / 1e-3).
"""

from __future__ import annotations

import os

import pytest
import torch

from dgmn.ops import dynamic_message_passing
from dgmn.ops.reference import aggregate_reference
from dgmn.ops.triton import KernelConfig, aggregate_fused, kernel_config
from dgmn.ops.triton import fused as fused_module

RATES = (1, 3)
KS = 3


def fractional_walks(shape: tuple[int, ...], scale: float = 3.0) -> torch.Tensor:
    """Walks whose fractional parts stay in [0.15, 0.85] (also after bf16 rounding).

    The bilinear sampler's derivative jumps where a position crosses a pixel border, so the
    walk gradient is ill-defined at integer positions; low-precision walks land there often.
    Keeping away from the borders makes the comparison meaningful at every dtype. Magnitudes
    up to ~10 px on a 6×7 map: many samples leave the map entirely or in part.
    """
    whole = torch.round(scale * torch.randn(shape).abs())
    frac = 0.15 + 0.7 * torch.rand(shape)
    sign = torch.where(torch.rand(shape) < 0.5, -1.0, 1.0)
    return sign * (whole + frac)


def make_inputs(batch: int = 2, channels: int = 8, height: int = 6, width: int = 7,
                groups: int = 2, rates: tuple[int, ...] = RATES, walks: bool = True,
                dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor | None]:
    s, k = len(rates), KS * KS
    return {
        "features": torch.randn(batch, channels, height, width).to(dtype),
        "walks": fractional_walks((batch, s, k, 2, height, width)).to(dtype) if walks else None,
        "weights": torch.randn(batch, s, groups, k, height, width).to(dtype),
    }


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    assert not torch.isnan(got).any(), "NaN in the result"
    return ((got.double() - want).norm() / want.norm()).item()


def run_both(inputs: dict[str, torch.Tensor | None], rates: tuple[int, ...] = RATES,
             wrt: tuple[str, ...] = ("features", "walks", "weights")):
    """Fused output and gradients vs the float64 reference on the same (upcast) inputs."""
    names = [n for n in wrt if inputs[n] is not None]
    low = {n: (t.clone().requires_grad_(n in names) if t is not None else None)
           for n, t in inputs.items()}
    high = {n: (t.double().requires_grad_(n in names) if t is not None else None)
            for n, t in inputs.items()}
    out = aggregate_fused(low["features"], low["walks"], low["weights"], rates, KS)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, [low[n] for n in names], grad_out)
    ref = aggregate_reference(high["features"], high["walks"], high["weights"], rates, KS)
    ref_grads = torch.autograd.grad(ref, [high[n] for n in names], grad_out.double())
    return out, ref, dict(zip(names, grads, strict=True)), dict(zip(names, ref_grads,
                                                                    strict=True))


@pytest.mark.parametrize(("groups", "walks", "rates"),
                         [(2, True, RATES), (4, True, (1,)), (2, False, RATES)],
                         ids=["G2-walks", "G4-walks", "G2-uniform"])
def test_float32_values_and_gradients_match_reference(groups, walks, rates):
    inputs = make_inputs(groups=groups, walks=walks, rates=rates)
    out, ref, grads, ref_grads = run_both(inputs, rates=rates)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    scale = ref.abs().max().item()
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5 * scale)
    assert set(grads) == ({"features", "walks", "weights"} if walks else {"features", "weights"})
    for name, grad in grads.items():
        want = ref_grads[name]
        assert grad.shape == want.shape and grad.dtype == torch.float32, name
        torch.testing.assert_close(grad.double(), want, rtol=1e-5,
                                   atol=1e-5 * want.abs().max().item(), msg=name)


@pytest.mark.parametrize(("dtype", "bound"), [(torch.bfloat16, 1e-2), (torch.float16, 1e-3)])
def test_half_precision_within_dtype_bounds(dtype, bound):
    inputs = make_inputs(groups=2, dtype=dtype, rates=(2,))
    out, ref, grads, ref_grads = run_both(inputs, rates=(2,))
    assert out.dtype == dtype
    assert rel_error(out, ref) < bound
    for name, grad in grads.items():
        assert grad.dtype == dtype, name
        assert rel_error(grad, ref_grads[name]) < bound, name


def test_channel_blocks_smaller_than_a_group_use_atomic_partial_sums():
    """block_c < C/G: several programs share a group (atomic ∂weights, ∂walks)."""
    inputs = make_inputs(channels=4, groups=1, height=4, width=5, rates=(2,))
    with kernel_config(KernelConfig(4, 4, 2, num_warps=4), KernelConfig(4, 4, 2, num_warps=4)):
        out, ref, grads, ref_grads = run_both(inputs, rates=(2,))
    assert rel_error(out, ref) < 1e-6
    for name, grad in grads.items():
        assert rel_error(grad, ref_grads[name]) < 1e-6, name


@pytest.mark.parametrize("walks", [True, False], ids=["walks", "uniform"])
def test_scatter_feature_gradient_matches_reference(walks):
    """The atomic scatter variant of ∂L/∂features (the default is the gather)."""
    with kernel_config(feature_grad="scatter"):
        _, _, grads, ref_grads = run_both(make_inputs(rates=(1,), walks=walks), rates=(1,),
                                          wrt=("features",))
    assert rel_error(grads["features"], ref_grads["features"]) < 1e-6


def test_gather_index_handles_converging_walks():
    """Many samples in one bilinear cell (long cell lists, uneven tiles) and samples whose
    cell lies on the border row / column just outside the map."""
    height, width = 4, 5
    inputs = make_inputs(channels=4, groups=1, height=height, width=width, rates=(1,))
    ys = torch.arange(height).view(1, height, 1)
    xs = torch.arange(width).view(1, 1, width)
    k = torch.arange(2).view(2, 1, 1)
    walks = inputs["walks"]
    # neighbours 0-1 of every node of image 0 walk to (2.3, 3.6), of image 1 to (-0.5, 4.5)
    for b, (ty, tx) in enumerate(((2.3, 3.6), (-0.5, 4.5))):
        walks[b, 0, :2, 0] = ty - ys - (k // 3 - 1)
        walks[b, 0, :2, 1] = tx - xs - (k % 3 - 1)
    _, _, grads, ref_grads = run_both(inputs, rates=(1,))
    for name, grad in grads.items():
        assert rel_error(grad, ref_grads[name]) < 1e-6, name


@pytest.mark.parametrize("wrt", [("features",), ("walks", "weights")])
def test_partial_gradients(wrt):
    """Only the requested gradients are computed (the other kernel is skipped)."""
    _, _, grads, ref_grads = run_both(make_inputs(), wrt=wrt)
    assert set(grads) == set(wrt)
    for name, grad in grads.items():
        assert rel_error(grad, ref_grads[name]) < 1e-6, name


def test_channels_last_input_and_expanded_weights():
    inputs = make_inputs(rates=(1,))
    features = inputs["features"].contiguous(memory_format=torch.channels_last)
    features.requires_grad_()
    base = torch.randn(1, 1, 2, 9, 1, 1, requires_grad=True)
    weights = base.expand(2, 1, 2, 9, 6, 7)  # stride-0 view, read in place
    out = aggregate_fused(features, inputs["walks"], weights, (1,), KS)
    assert out.is_contiguous(memory_format=torch.channels_last)
    ref = aggregate_reference(features.double(), inputs["walks"].double(),
                              weights.double(), (1,), KS)
    assert rel_error(out, ref) < 1e-6
    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, (features, base), grad_out)
    fd = features.detach().double().requires_grad_()
    bd = base.detach().double().requires_grad_()
    ref = aggregate_reference(fd, inputs["walks"].double(), bd.expand(2, 1, 2, 9, 6, 7), (1,), KS)
    want = torch.autograd.grad(ref, (fd, bd), grad_out.double())
    for a, b in zip(got, want, strict=True):
        assert rel_error(a, b) < 1e-6


def test_walks_far_outside_read_zeros_and_get_zero_gradients():
    inputs = make_inputs(rates=(1,))
    walks = torch.full_like(inputs["walks"], 1e6).requires_grad_()  # also tests the clamp
    out = aggregate_fused(inputs["features"], walks, inputs["weights"], (1,), KS)
    assert torch.count_nonzero(out) == 0
    (grad,) = torch.autograd.grad(out.sum(), walks)
    assert torch.count_nonzero(grad) == 0


def test_every_output_element_is_written():
    """Poison the output buffer: no element may keep it (partial tiles, channel masks)."""
    inputs = make_inputs(channels=6, groups=2, height=5, width=9, rates=(1,))
    features = inputs["features"].contiguous(memory_format=torch.channels_last)
    out = torch.full((2, 6, 5, 9), float("nan"))
    problem = fused_module._Problem(2, 6, 5, 9, 1, 2, KS)
    fused_module._forward(features, inputs["walks"], inputs["weights"],
                          torch.tensor([1], dtype=torch.int32), out, problem, interpret=True)
    assert not torch.isnan(out).any()
    ref = aggregate_reference(features, inputs["walks"], inputs["weights"], (1,), KS)
    assert rel_error(out, ref.double()) < 1e-6


def test_dispatch_backend_triton_on_cpu_matches_reference():
    t = make_inputs(groups=2)
    betas = torch.rand(2) + 0.5
    filters = torch.randn(2, 2, 2, 9, 6, 7)
    logits = torch.randn(2, 2, 9, 6, 7)
    features = t["features"].requires_grad_()
    outs = [dynamic_message_passing(features, RATES, betas, filters=filters,
                                    affinity_logits=logits, walks=t["walks"], backend=backend)
            for backend in ("triton", "reference")]
    assert "FusedAggregation" in type(outs[0].grad_fn).__name__
    assert rel_error(outs[0], outs[1].double()) < 1e-6
    grads = [torch.autograd.grad(out.square().sum(), features)[0] for out in outs]
    assert rel_error(grads[0], grads[1].double()) < 1e-6


def test_float64_goes_to_the_reference_and_shapes_are_checked():
    t = make_inputs(rates=(1,))
    d = {n: v.double() for n, v in t.items()}
    got = aggregate_fused(d["features"], d["walks"], d["weights"], (1,), KS)
    want = aggregate_reference(d["features"], d["walks"], d["weights"], (1,), KS)
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="walks"):
        aggregate_fused(t["features"], t["walks"][:, :, :4], t["weights"], (1,), KS)
    with pytest.raises(ValueError, match="G=3"):
        aggregate_fused(t["features"], None, torch.randn(2, 1, 3, 9, 6, 7), (1,), KS)
    with pytest.raises(ValueError, match="rate"):
        aggregate_fused(t["features"], None, t["weights"], (1.5,), KS)
    with pytest.raises(ValueError, match="kernel_size"):
        aggregate_fused(t["features"], None, t["weights"], (1,), 2)


def test_interpreter_does_not_leak_into_other_triton_code():
    """The compiled kernel objects stay compiled and the knob / environment stay untouched."""
    import triton

    from dgmn.ops.triton import _kernels

    fused_module.kernels(interpret=True)
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        assert type(_kernels.dgmn_fwd_kernel).__name__ == "JITFunction"
        assert not triton.knobs.runtime.interpret
        assert "TRITON_INTERPRET" not in os.environ
    interpreted = fused_module.kernels(interpret=True)
    assert type(interpreted.dgmn_fwd_kernel).__name__ == "InterpretedFunction"


# ---------------------------------------------------------------------------------------------
# GPU: realistic sizes, compiled kernels, dispatch.

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _gpu_inputs(dtype: torch.dtype, height: int = 33, width: int = 45, channels: int = 256,
                groups: int = 4, rates: tuple[int, ...] = (1, 6, 12, 24, 36)):
    inputs = make_inputs(channels=channels, height=height, width=width, groups=groups,
                         rates=rates, dtype=dtype)
    return {n: t.cuda() for n, t in inputs.items()}, rates


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize(("dtype", "bound"), [(torch.float32, 1e-5), (torch.bfloat16, 1e-2),
                                              (torch.float16, 1e-3)])
@pytest.mark.parametrize("feature_grad", ["gather", "scatter"])
def test_gpu_matches_reference(dtype, bound, feature_grad):
    inputs, rates = _gpu_inputs(dtype)
    with kernel_config(feature_grad=feature_grad):
        out, ref, grads, ref_grads = run_both(inputs, rates=rates)
    assert out.is_cuda
    assert rel_error(out, ref) < bound
    for name, grad in grads.items():
        assert rel_error(grad, ref_grads[name]) < bound, name


@pytest.mark.gpu
@gpu
def test_gpu_dispatch_auto_uses_fused_kernel():
    inputs, rates = _gpu_inputs(torch.bfloat16, channels=64)
    s, k = len(rates), 9
    betas = torch.rand(s, device="cuda") + 0.5
    filters = torch.randn(2, s, 4, k, 33, 45, device="cuda", dtype=torch.bfloat16)
    logits = torch.randn(2, s, k, 33, 45, device="cuda", dtype=torch.bfloat16)
    features = inputs["features"].requires_grad_()
    out = dynamic_message_passing(features, rates, betas, filters=filters,
                                  affinity_logits=logits, walks=inputs["walks"], backend="auto")
    assert "FusedAggregation" in type(out.grad_fn).__name__
    ref = dynamic_message_passing(features.float(), rates, betas, filters=filters.float(),
                                  affinity_logits=logits.float(), walks=inputs["walks"].float(),
                                  backend="reference")
    assert rel_error(out, ref.double()) < 2e-2
    out.float().square().sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
