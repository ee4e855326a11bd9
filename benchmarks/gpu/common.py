"""Settings, result rows, random inputs, the environment record and the JSON report."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import platform
import subprocess
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

RATES = (1, 6, 12, 24, 36)
KS = 3
#: The inputs of the aggregation core (:func:`op_inputs`), in ``aggregate_*`` order.
CORE_INPUTS = ("features", "walks", "weights")


@dataclass
class Settings:
    """Everything that differs between a GPU run and the CPU dry run."""

    device: torch.device
    dtype: torch.dtype
    batch: int = 2
    channels: int = 512
    groups: int = 4
    rates: tuple[int, ...] = RATES
    sizes: tuple[tuple[int, int], ...] = ((97, 97), (129, 257))
    image: tuple[int, int] = (1024, 2048)
    crop: int = 769
    train_batch: int = 2
    backbone: str = "resnet101"
    fcn_channels: int = 512
    min_reps: int = 10
    max_reps: int = 200
    warmup: int = 3
    budget_s: float = 1.0
    graphs: bool = True
    channels_last: bool = True
    sweep: bool = True
    extended: bool = True  # backward breakdown rows, both feature-gradient variants checked
    tracebacks: bool = field(default=False, metadata={"record": False})

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def record(self) -> dict[str, Any]:
        """The settings as written to the JSON report (devices and dtypes as strings)."""
        return {name: (str(value) if isinstance(value, torch.device | torch.dtype) else value)
                for name, value in asdict(self).items()
                if self.__dataclass_fields__[name].metadata.get("record", True)}


def dry_run_settings() -> Settings:
    return Settings(device=torch.device("cpu"), dtype=torch.float32, batch=1, channels=8,
                    groups=2, rates=(1, 2), sizes=((5, 6),), image=(32, 64), crop=33,
                    train_batch=2, backbone="resnet_tiny", fcn_channels=32, min_reps=1,
                    max_reps=1, warmup=0, budget_s=0.0, graphs=False, sweep=False,
                    extended=False)


def size_label(height: int, width: int) -> str:
    return f"{height}x{width}"


# ----------------------------------------------------------------------------------------------
# Rows


@dataclass
class Row:
    section: str
    name: str
    size: str
    dtype: str
    fwd_ms: float | None = None
    fwd_bwd_ms: float | None = None
    fwd_graph_ms: float | None = None
    fwd_bwd_graph_ms: float | None = None
    fwd_mib: float | None = None
    fwd_bwd_mib: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def short_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]


@contextlib.contextmanager
def guarded(row: Row, s: Settings) -> Iterator[None]:
    """Record an exception of the block in ``row.error`` (the run goes on) and its wall time."""
    start = time.perf_counter()
    try:
        yield
    except Exception as error:
        row.error = short_error(error)
        print(f"    ! {row.name} {row.size}: {row.error}")
        if s.tracebacks:
            traceback.print_exc()
    finally:
        row.extra["wall_s"] = round(time.perf_counter() - start, 2)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# Inputs and execution contexts


def fractional_walks(shape: tuple[int, ...], scale: float, device: torch.device) -> Tensor:
    """Random walks (pixels) whose fractional parts avoid pixel borders (see the tests)."""
    whole = torch.round(scale * torch.randn(shape, device=device).abs())
    frac = 0.15 + 0.7 * torch.rand(shape, device=device)
    sign = torch.where(torch.rand(shape, device=device) < 0.5, -1.0, 1.0)
    return sign * (whole + frac)


def op_inputs(s: Settings, height: int, width: int, dtype: torch.dtype,
              requires_grad: bool = True) -> dict[str, Any]:
    """Random inputs of the aggregation core: features, walks, combined weights."""
    num_rates, k = len(s.rates), KS * KS
    dev = s.device
    features = torch.randn(s.batch, s.channels, height, width, device=dev).to(dtype)
    walks = fractional_walks((s.batch, num_rates, k, 2, height, width), 3.0, dev).to(dtype)
    logits = torch.randn(s.batch, num_rates, k, height, width, device=dev)
    filters = torch.randn(s.batch, num_rates, s.groups, k, height, width, device=dev)
    weights = (torch.softmax(logits, dim=2).unsqueeze(2) * filters).to(dtype)
    inputs = {"features": features, "walks": walks, "weights": weights}
    for tensor in inputs.values():
        tensor.requires_grad_(requires_grad)
    return inputs


def fused_call(inputs: dict[str, Any], s: Settings) -> Tensor:
    """The fused op on :func:`op_inputs`."""
    from dgmn.ops.triton import aggregate_fused

    return aggregate_fused(inputs["features"], inputs["walks"], inputs["weights"], s.rates, KS)


def autocast(s: Settings) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA, nothing on the CPU dry run."""
    if not s.cuda:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def flash_context(s: Settings) -> contextlib.AbstractContextManager[Any]:
    """SDPA restricted to the flash kernel on CUDA (a fresh one per use: it is single-use)."""
    if not s.cuda:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


# ----------------------------------------------------------------------------------------------
# Environment record and JSON report


def environment(s: Settings) -> dict[str, Any]:
    """Versions, commit, date and (on CUDA) the card, its clocks, power limit and driver."""
    import torchvision
    import triton

    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "triton": triton.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
        "host": platform.node(),
    }
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                           text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["git_commit"] = None
    if s.cuda:
        props = torch.cuda.get_device_properties(s.device)
        env.update(card=props.name, sm_count=props.multi_processor_count,
                   memory_GiB=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}",
                   l2_MiB=round(getattr(props, "L2_cache_size", 0) / 2**20, 1))
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,"
                 "power.limit,temperature.gpu", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["nvidia_smi"] = None
    else:
        env["card"] = "cpu (dry run)"
    return env


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the report as JSON under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    try:
        partial.write_text(json.dumps(report, indent=2, default=str))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
