"""Safe extraction of zip archives.

Every member is checked before anything is written: absolute paths, drive letters, ``..``
components and symbolic links are refused, so an archive can never write outside the target
directory. Callers extract into a temporary directory (see
:func:`pipeline.common.fs.atomic_directory`) so a failed extraction leaves nothing under the final
name.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from dgmn.data.paths import path_problem
from pipeline.common.errors import StageError
from pipeline.common.fs import reporting_write_errors
from pipeline.common.progress import progress_bar

_CHUNK = 1 << 20


def check_member(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    """Return the member's relative path, or raise :class:`StageError` if it is unsafe."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise StageError(f"{archive}: member {name!r} is a symbolic link; refusing to extract")
    posix = name.replace("\\", "/")  # zips written on Windows may use it as the separator
    problem = path_problem(posix)
    parts = PurePosixPath(posix).parts
    if problem is None and not parts:
        problem = "has an empty path"
    if problem is not None:
        raise StageError(f"{archive}: member {name!r} {problem}; refusing to extract")
    return PurePosixPath(*parts)


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path, out: BinaryIO
                 ) -> None:
    """Copy one member into ``out``: a failed read means a corrupt archive, a failed write is
    left to the caller (a full disk is not the archive's fault)."""
    try:
        src = zf.open(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise StageError(f"{archive}: member {info.filename!r} is corrupt ({exc})") from None
    with src:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise StageError(
                    f"{archive}: member {info.filename!r} is corrupt ({exc})") from None
            if not chunk:
                return
            out.write(chunk)


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True
                ) -> int:
    """Extract ``archive`` into the existing directory ``dest``; return the number of files.

    All members are checked first (:func:`check_member`); a corrupt archive raises
    :class:`StageError` naming it and the member, a failed write (a full disk) one naming the
    file being written (``"<file>: no space left on device (extracting <archive>)"``).
    """
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StageError(f"{archive}: not a readable zip archive ({exc})") from None
    with zf:
        members = [(info, check_member(archive, info)) for info in zf.infolist()]
        total = sum(info.file_size for info, _ in members)
        n_files = 0
        with progress_bar(total, f"extract {archive.name}", enabled=progress) as bar:
            for info, rel in members:
                target = dest.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with reporting_write_errors(target, f"extracting {archive}"):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        _copy_member(zf, info, archive, out)
                bar.update(info.file_size)
                n_files += 1
    return n_files
