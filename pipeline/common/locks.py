"""Exclusive locks between processes: one per training run, one per MLflow store creation.

A training run (a Ray run directory, its checkpoints and its MLflow run) has one writer. A
second training of the same run **fails fast**: it stops at once with one line naming the
holder (pid, host, start time) instead of waiting, since waiting would only train the same
thing again after the first finished (or reuse its result), and two at once interleave their
checkpoints and MLflow metrics. Creating a store is the opposite case: every process needs it,
so they wait for each other (:func:`exclusive` with ``wait``).

The lock is ``fcntl.flock`` on a lock file. The kernel releases it when its process ends, even on
SIGKILL, so a crashed holder never leaves a stale lock behind. On NFS, Linux implements flock
with POSIX byte-range locks, which the server arbitrates between hosts; on a filesystem without
lock support the lock only excludes processes of one host. The holder writes its pid, host and
start time into the file, which the error message of a second process quotes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pipeline.common.errors import StageError


class LockHeldError(StageError):
    """Another process holds the lock; the message names it."""


def holder_of(path: Path) -> str:
    """``pid P on HOST since TIME`` as the holder wrote it into ``path`` (or ``unknown``)."""
    try:
        holder = json.loads(path.read_text())
        return f"pid {holder['pid']} on {holder['host']} since {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, purpose: str, *, wait: float = 0.0,
              poll: float = 0.05) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``path`` (created if needed) inside the block.

    With ``wait=0`` (fail fast) a lock held by another process raises :class:`LockHeldError` at
    once: ``"<path>: locked by pid P on HOST since TIME (<purpose>)"``; with ``wait > 0`` it is
    retried for up to ``wait`` seconds first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise LockHeldError(f"{path}: locked by {holder_of(path)} ({purpose})")
            time.sleep(poll)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released: no holder to name
    finally:
        os.close(fd)  # closing the descriptor releases the lock
