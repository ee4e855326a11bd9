"""Whole models: FCN inference at 1×3×1024×2048 (plain, + DGMN, + Non-local, + DGMN on the
reference op) and training-step throughput at 769×769 crops.

Every variant keeps fp32 parameters and runs under bf16 autocast (DGMN's deform_conv2d has no
bf16 kernel); one extra row times the plain FCN with bf16 parameters.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from benchmarks.gpu.common import Row, Settings, autocast, flash_context, guarded
from benchmarks.gpu.timing import peak_extra_mib, time_calls


def build_fcn(s: Settings, context: str | None, backend: str = "auto") -> nn.Module:
    from dgmn.models import build_model

    cfg: dict[str, Any] = {"name": "dilated_fcn", "backbone": s.backbone, "num_classes": 19,
                           "context": context, "channels": s.fcn_channels}
    if context == "dgmn":
        cfg["context_kwargs"] = {"rates": list(s.rates), "groups": s.groups,
                                 "backend": backend}
    return build_model(cfg).to(s.device)


def fcn_label(s: Settings) -> str:
    return "fcn_r101_d8" if s.backbone == "resnet101" else f"fcn_{s.backbone}_d8"


def _variants(s: Settings) -> list[tuple[str, str | None, str]]:
    """(row name, context module, DGMN backend) of the model rows."""
    base = fcn_label(s)
    return [(base, None, "auto"), (f"{base}+dgmn", "dgmn", "auto"),
            (f"{base}+nonlocal", "nonlocal", "auto"),
            (f"{base}+dgmn_reference", "dgmn", "reference")]


def _memory_format(s: Settings) -> torch.memory_format:
    return torch.channels_last if s.channels_last else torch.contiguous_format


def model_rows(s: Settings) -> list[Row]:
    """Inference rows (with their ratio to the plain FCN), then training-step rows."""
    rows = _inference_rows(s)
    for label, context, backend in _variants(s)[:3]:
        row = Row("train_step", label, f"{s.train_batch}x3x{s.crop}x{s.crop}",
                  "bf16 autocast" if s.cuda else "float32")
        rows.append(row)
        print(f"    {label} training step")
        with guarded(row, s):
            _train_row(row, s, context, backend)
    return rows


def _inference_rows(s: Settings) -> list[Row]:
    memory_format = _memory_format(s)
    height, width = s.image
    size = f"1x3x{height}x{width}"
    rows = []
    for label, context, backend in _variants(s):
        row = Row("inference", label, size, "bf16 autocast" if s.cuda else "float32")
        rows.append(row)
        print(f"    {label} inference")
        with guarded(row, s):
            model = build_fcn(s, context, backend).to(memory_format=memory_format).eval()
            images = [torch.randn(1, 3, height, width, device=s.device)
                      .contiguous(memory_format=memory_format) for _ in range(2)]
            flash = flash_context(s) if context == "nonlocal" else contextlib.nullcontext()
            with torch.inference_mode(), autocast(s), flash:
                row.fwd_ms = time_calls(lambda i, m=model, x=images: m(x[i]), 2, s).median_ms
                row.fwd_mib = peak_extra_mib(lambda m=model, x=images: m(x[0]), s.device)
            row.extra["memory_format"] = str(memory_format).removeprefix("torch.")
            del model, images
    base = rows[0].fwd_ms
    for row in rows:
        if base and row.fwd_ms:
            row.extra["vs_plain"] = round(row.fwd_ms / base, 3)
    if s.cuda:  # the plain FCN with bf16 parameters, as in the 19.4 ms
        row = Row("inference", f"{fcn_label(s)} (bf16 params)", size, "bfloat16")
        rows.append(row)
        with guarded(row, s):
            model = build_fcn(s, None).to(dtype=torch.bfloat16,
                                          memory_format=memory_format).eval()
            images = [torch.randn(1, 3, height, width, device=s.device, dtype=torch.bfloat16)
                      .contiguous(memory_format=memory_format) for _ in range(2)]
            with torch.inference_mode():
                row.fwd_ms = time_calls(lambda i, m=model, x=images: m(x[i]), 2, s).median_ms
            del model, images
    return rows


def _train_row(row: Row, s: Settings, context: str | None, backend: str) -> None:
    memory_format = _memory_format(s)
    model = build_fcn(s, context, backend).to(memory_format=memory_format).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    crops = [torch.randn(s.train_batch, 3, s.crop, s.crop, device=s.device)
             .contiguous(memory_format=memory_format) for _ in range(2)]
    labels = [torch.randint(0, 19, (s.train_batch, s.crop, s.crop), device=s.device)
              for _ in range(2)]
    for target in labels:
        target[:, :8] = 255  # some ignored pixels, as in Cityscapes

    def step(i: int) -> None:
        # fresh context managers per step: sdpa_kernel's is generator-based (one use only)
        flash = flash_context(s) if context == "nonlocal" else contextlib.nullcontext()
        optimizer.zero_grad(set_to_none=True)
        with autocast(s), flash:
            logits = model(crops[i])
            loss = nn.functional.cross_entropy(logits.float(), labels[i], ignore_index=255)
        loss.backward()
        optimizer.step()

    timing = time_calls(step, 2, s)
    row.fwd_bwd_ms = timing.median_ms
    row.extra["images_per_s"] = round(1e3 * s.train_batch / timing.median_ms, 2)
    row.fwd_bwd_mib = peak_extra_mib(lambda: step(0), s.device)
