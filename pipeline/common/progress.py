"""Progress bars (tqdm on stderr) that stages can switch off (``progress=False``, or
``DGMN_PROGRESS=0`` in the environment, e.g. in CI logs)."""

from __future__ import annotations

import os

from tqdm import tqdm


def progress_enabled(requested: bool = True) -> bool:
    """``requested`` unless ``DGMN_PROGRESS`` is set to ``0``/``false``/``no``."""
    env = os.environ.get("DGMN_PROGRESS", "").strip().lower()
    return requested and env not in {"0", "false", "no", "off"}


def progress_bar(
    total: int | None,
    desc: str,
    *,
    unit: str = "B",
    initial: int = 0,
    enabled: bool = True,
) -> tqdm:
    """A tqdm bar; bytes are shown with binary prefixes (``unit="B"``), other units as counts."""
    is_bytes = unit == "B"
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=is_bytes,
        unit_divisor=1024 if is_bytes else 1000,
        initial=initial,
        disable=not progress_enabled(enabled),
        leave=False,
        dynamic_ncols=True,
    )
