"""Paths read from data files (a COCO ``file_name``, an archive member) confined to their root.

Such a path is data, not a trusted location: ``../../elsewhere/x.jpg``, ``/etc/passwd``,
``C:\\x`` or ``..\\..\\x`` must not make a loader read, or a pipeline stage link or write, a file
outside the dataset. :func:`path_problem` is the lexical check (no file system access);
:func:`confined_path` adds the resolved check, which also catches a symbolic link inside the root
that points out of it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from dgmn.data.errors import DatasetError


def path_problem(relative: str) -> str | None:
    """Why ``relative`` cannot name a file below a root, or ``None`` if it can.

    Refused: empty names, NUL bytes, backslashes (a separator on Windows, so ``..\\..\\x``
    would climb there; callers that accept it as a separator, like zip extraction, turn it into
    ``/`` first), absolute paths (``/x``), drive letters (``C:x``) and ``..`` components.
    """
    if not relative:
        return "is empty"
    if "\0" in relative:
        return "contains a NUL byte"
    if "\\" in relative:
        return "contains a backslash"
    if relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
        return "has an absolute path"
    if ".." in PurePosixPath(relative).parts:
        return "contains '..'"
    return None


def confined_path(root: str | os.PathLike, relative: str, where: str) -> Path:
    """``root / relative``, or a :class:`DatasetError` naming ``where`` (the file and key the
    name was read from) if it would lead outside ``root`` lexically or once resolved."""
    root = Path(root)
    problem = path_problem(relative)
    if problem is not None:
        raise DatasetError(f"{where}: {relative!r} {problem}; paths in data files must stay "
                           f"inside {root}")
    base = root.resolve()
    resolved = (base / relative).resolve()
    if not resolved.is_relative_to(base):
        raise DatasetError(f"{where}: {relative!r} resolves to {resolved}, outside {root}")
    return root / relative
