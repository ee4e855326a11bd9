"""Training progress on rank 0: speed and ETA for the periodic log line, and a bar on a terminal.

The stage's driver chooses the mode (:func:`pipeline.common.logs.progress_mode`) and hands it to
the workers: ``bar`` draws Ray's distributed tqdm (``ray.experimental.tqdm_ray``: the worker
sends its state, the driver draws one real tqdm bar with rate and ETA); ``lines`` draws nothing,
and the loop's log lines (every ``schedule.log_every`` iterations) carry speed and ETA.
"""

from __future__ import annotations

import time
from typing import Any


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class TrainingProgress:
    """Iterations ``start → total`` of one (possibly resumed) run; the speed counts only the
    iterations run by this process, so a resumed run's ETA is not skewed by the earlier ones."""

    def __init__(self, start: int, total: int, mode: str, desc: str,
                 clock: Any = time.perf_counter) -> None:
        self.start, self.total, self.clock = start, total, clock
        self.began = clock()
        self.bar: Any = None
        if mode == "bar":
            from ray.experimental import tqdm_ray

            self.bar = tqdm_ray.tqdm(desc=desc, total=total, unit="it")
            if start:
                self.bar.update(start)

    def speed(self, done: int) -> float:
        """Iterations per second since this process started."""
        elapsed = self.clock() - self.began
        return (done - self.start) / elapsed if elapsed > 0 else 0.0

    def eta(self, done: int) -> float | None:
        """Seconds until ``total`` at the current speed (None before the first iteration)."""
        speed = self.speed(done)
        return (self.total - done) / speed if speed > 0 else None

    def summary(self, done: int) -> str:
        """``1.25 it/s, ETA 3m05s`` for the log line of iteration ``done``."""
        eta = self.eta(done)
        return f"{self.speed(done):.2f} it/s, ETA {'?' if eta is None else format_duration(eta)}"

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
