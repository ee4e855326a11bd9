"""Fused Triton kernels of the DGMN aggregation (forward and backward).

Importing this package needs Triton (not a GPU): without Triton it raises ``ImportError``, and
:func:`dgmn.ops.dynamic_message_passing` falls back to the PyTorch reference.
"""

from __future__ import annotations

try:
    import triton  # noqa: F401
except ImportError as error:  # pragma: no cover - triton ships with CUDA builds of torch
    raise ImportError("dgmn.ops.triton needs the 'triton' package") from error

from dgmn.ops.triton.fused import (
    FusedAggregation,
    KernelConfig,
    aggregate_fused,
    default_config,
    kernel_config,
)

__all__ = ["FusedAggregation", "KernelConfig", "aggregate_fused", "default_config",
           "kernel_config"]
