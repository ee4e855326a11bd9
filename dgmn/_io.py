"""Atomic file writes: the one implementation the library and the pipeline share.

A file is written under a temporary name beside its final path and renamed into place with
``os.replace``, so a reader sees either the previous file or the whole new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

#: ``(prefix, suffix, directory) -> (path, open descriptor)`` of a new temporary file.
TempFactory = Callable[[str, str, Path], tuple[Path, int]]


def _mkstemp(prefix: str, suffix: str, directory: Path) -> tuple[Path, int]:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    return Path(name), fd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *,
                       make_temp: TempFactory = _mkstemp) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary ``.<name>.XXXXXXXX.tmp`` beside it,
    flushed to disk, then renamed over ``path``; on any failure the temporary is removed.

    ``make_temp`` creates the temporary (the pipeline's keeps it locked until the rename, so a
    killed writer's leftover can be told from a live one's). The file gets the permissions of
    a plain ``open`` (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = make_temp(f".{path.name}.", ".tmp", path.parent)
    try:
        with os.fdopen(fd, "wb") as f:  # closing it (after the rename) drops any lock on it
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
