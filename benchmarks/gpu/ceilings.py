"""The device's ceilings: copy bandwidth (DRAM and L2-resident) and matmul rates."""

from __future__ import annotations

import torch

from benchmarks.gpu.common import Settings
from benchmarks.gpu.timing import nbytes, time_calls, time_graphs


def measure_ceilings(s: Settings) -> dict[str, float]:
    """Device-to-device copy GB/s (bytes read + written) and bf16 / fp32 matmul TFLOP/s."""
    if not s.cuda:
        return {}
    result = {}
    src = torch.randn(2**28 // 2, device=s.device, dtype=torch.bfloat16)  # 256 MiB
    dst = torch.empty_like(src)
    timing = time_calls(lambda i: dst.copy_(src), 1, s)
    result["copy_GBps"] = 2 * nbytes(src) / (timing.median_ms * 1e-3) / 1e9
    small = torch.randn(2**22, device=s.device, dtype=torch.bfloat16)  # 8 MiB: L2-resident
    small_dst = torch.empty_like(small)

    def copies(i: int) -> None:  # 50 back-to-back copies, replayed as one graph
        for _ in range(50):
            small_dst.copy_(small)

    timing = time_graphs(copies, 1, s) or time_calls(copies, 1, s)
    result["l2_copy_GBps"] = 50 * 2 * nbytes(small) / (timing.median_ms * 1e-3) / 1e9
    a = torch.randn(8192, 8192, device=s.device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=s.device, dtype=torch.bfloat16)
    timing = time_calls(lambda i: a @ b, 1, s)
    result["bf16_matmul_TFLOPs"] = 2 * 8192**3 / (timing.median_ms * 1e-3) / 1e12
    a32 = torch.randn(4096, 4096, device=s.device)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        timing = time_calls(lambda i: a32 @ a32, 1, s)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    result["fp32_matmul_TFLOPs"] = 2 * 4096**3 / (timing.median_ms * 1e-3) / 1e12
    return {k: round(v, 1) for k, v in result.items()}
