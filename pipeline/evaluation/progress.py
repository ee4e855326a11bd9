"""Progress of the evaluate stage over the val images: a tqdm bar with rate and ETA on stderr,
drawn only when stderr is a terminal (a log file or CI output stays free of bar updates) and
switched off by ``DGMN_PROGRESS=0`` (:mod:`pipeline.common.progress`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from pipeline.common.progress import progress_bar


def over_images(count: int, desc: str) -> Iterator[int]:
    """``range(count)``, advancing a progress bar labelled ``desc`` after each image."""
    with progress_bar(count, desc, unit="image", enabled=sys.stderr.isatty()) as bar:
        for index in range(count):
            yield index
            bar.update()
