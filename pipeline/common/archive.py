"""Safe extraction of zip archives.

Every member is checked before anything is written: absolute paths, drive letters, ``..``
components and symbolic links are refused, so an archive can never write outside the target
directory. Callers extract into a temporary directory (see
:func:`pipeline.common.fs.atomic_directory`) so a failed extraction leaves nothing under the final
name.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from pipeline.common.errors import StageError
from pipeline.common.progress import progress_bar

_CHUNK = 1 << 20


def check_member(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    """Return the member's relative path, or raise :class:`StageError` if it is unsafe."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise StageError(f"{archive}: member {name!r} is a symbolic link; refusing to extract")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise StageError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise StageError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    if not parts:
        raise StageError(f"{archive}: member {name!r} has an empty path")
    return PurePosixPath(*parts)


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True
                ) -> int:
    """Extract ``archive`` into the existing directory ``dest``; return the number of files.

    All members are checked first (:func:`check_member`); a corrupt archive raises
    :class:`StageError` naming it.
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
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise StageError(
                        f"{archive}: member {info.filename!r} is corrupt ({exc})") from None
                bar.update(info.file_size)
                n_files += 1
    return n_files
