"""Atomic file and directory outputs, their leftovers, hashing, hard-link-or-copy.

Outputs are built under a temporary name beside the final one (``<name>.tmp-XXXX`` directories,
``.<name>.XXXX.tmp`` files) and renamed into place. A process killed with SIGKILL (or by a power
cut) cannot delete its temporaries, so the next writer of the same output removes them: every
temporary is held under an exclusive ``flock`` by the process that writes it, the kernel drops
that lock when the process dies, and only an unlocked temporary is removed. A concurrent writer's
tree is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dgmn._io import atomic_write_bytes as _atomic_write_bytes
from pipeline.common.errors import StageError

_CHUNK = 1 << 20
#: errno values that mean "the file system cannot take more data", said in plain words.
_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


# --------------------------------------------------------------------------- write errors


def write_error(path: str | os.PathLike, exc: OSError, doing: str = "") -> StageError:
    """One :class:`StageError` for an ``OSError`` met while writing ``path``: ``"<path>: no
    space left on device"`` for a full disk (the file name of ``exc`` wins when it has one)."""
    where = exc.filename if exc.filename else path
    what = _FULL.get(exc.errno) or f"cannot write ({exc.strerror or exc})"
    return StageError(f"{where}: {what}{f' ({doing})' if doing else ''}")


def is_disk_full(exc: BaseException) -> bool:
    """True for the ``OSError`` of a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in _FULL


@contextlib.contextmanager
def reporting_write_errors(path: str | os.PathLike, doing: str = "") -> Iterator[None]:
    """Turn an ``OSError`` in the block (disk full, read-only file system, permission) into
    :func:`write_error` naming ``path``. Use it around code that writes, not reads."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc, doing) from None


# --------------------------------------------------------------------------- locked temporaries


def _lock(fd: int) -> bool | None:
    """Take an exclusive lock on ``fd`` without waiting: ``True`` when taken, ``False`` when
    another process holds it, ``None`` when the file system cannot lock (then nobody can tell
    whether a temporary is in use, and none is removed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        st, here = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def _locked_mkdtemp(prefix: str, parent: Path) -> tuple[Path, int]:
    """``mkdtemp`` plus an open, locked descriptor on the new directory. A cleaner that removed
    the directory between its creation and the lock wins; then try again with a new name."""
    while True:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        if _lock(fd) is not False and _same_file(fd, path):
            return path, fd
        os.close(fd)


def _locked_mkstemp(prefix: str, suffix: str, parent: Path) -> tuple[Path, int]:
    """``mkstemp`` with the returned descriptor locked (see :func:`_locked_mkdtemp`)."""
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        if _lock(fd) is not False and _same_file(fd, Path(name)):
            return Path(name), fd
        os.close(fd)


def _remove_if_unlocked(path: Path) -> bool:
    """Remove ``path`` (a file or a tree) if no live process holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone already, or a symlink: not one of ours
        return False
    try:
        if _lock(fd) is not True or not _same_file(fd, path):
            return False
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def remove_leftovers(final: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``final`` that no running process owns: ``<final>.tmp-*`` and
    ``<final>.old-*`` trees of :func:`atomic_directory`, ``.<final>.*.tmp`` files of
    :func:`atomic_write_bytes`, left by a process that was killed. Returns what was removed."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    name = re.escape(final.name)
    random = "[a-z0-9_]{8}"  # what tempfile puts in its names
    pattern = re.compile(rf"{name}\.(tmp|old)-{random}|\.{name}\.{random}\.tmp")
    removed = []
    for entry in sorted(final.parent.iterdir()):
        if pattern.fullmatch(entry.name) and _remove_if_unlocked(entry):
            removed.append(entry)
    return removed


# --------------------------------------------------------------------------- atomic outputs


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`dgmn._io.atomic_write_bytes` with the temporary locked until the rename, after
    removing the leftovers of killed writers of ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    return _atomic_write_bytes(path, data, make_temp=_locked_mkstemp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (deterministic bytes), atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``final`` only on success.

    Removes the unowned leftovers of earlier runs first (:func:`remove_leftovers`), then yields
    ``<final>.tmp-XXXX`` (same parent, so the rename is atomic), locked for as long as this
    process builds it. On normal exit an existing ``final`` is moved aside and deleted after the
    new tree took its name; on an exception the temporary tree is deleted and ``final`` is left as
    it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final)
    tmp, tmp_fd = _locked_mkdtemp(f"{final.name}.tmp-", final.parent)
    old_fd = None
    try:
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        try:
            if final.exists() or final.is_symlink():
                old, old_fd = _locked_mkdtemp(f"{final.name}.old-", final.parent)
                os.replace(final, old / final.name)
            os.replace(tmp, final)
        except BaseException:
            if old is not None and (old / final.name).exists() and not final.exists():
                os.replace(old / final.name, final)  # put the previous tree back
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        for fd in (tmp_fd, old_fd):
            if fd is not None:
                os.close(fd)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``md5`` for archive checks, ``sha256`` for manifests)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Hard-link ``src`` to ``dst`` (no extra disk space), copying where links are impossible."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst
