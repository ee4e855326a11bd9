"""The manifest a data stage writes next to its outputs (``manifest.json``).

Deterministic (no timestamps, sorted keys and files) so the same input gives the same bytes,
and ``digest`` is one value a later stage or an MLflow run can cite for the whole tree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline.common.fs import atomic_write_json, file_digest
from pipeline.common.progress import progress_bar

MANIFEST = "manifest.json"
#: What fetch records beside a raw dataset (source, archives, generator settings); preprocess
#: reads it to know which dataset the raw tree holds.
FETCH_INFO = "fetch_info.json"
SCHEMA = "dgmn.manifest/v1"


def file_entries(root: Path, *, progress: bool = True) -> list[dict[str, Any]]:
    """``[{"path", "bytes", "sha256"}]`` for every file below ``root`` except the manifest."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = []
    with progress_bar(len(paths), "hash", unit="file", enabled=progress) as bar:
        for p in paths:
            entries.append({"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size,
                            "sha256": file_digest(p, "sha256")})
            bar.update(1)
    return entries


def tree_digest(entries: list[dict[str, Any]]) -> str:
    """sha256 over ``"<sha256>  <path>\\n"`` lines (the ``sha256sum`` format), in path order."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e['sha256']}  {e['path']}\n".encode())
    return h.hexdigest()


def write_manifest(root: Path, body: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Hash the tree under ``root`` and write ``root/manifest.json``; return the manifest."""
    entries = file_entries(root, progress=progress)
    manifest = {"schema": SCHEMA, **body, "files": entries, "num_files": len(entries),
                "total_bytes": sum(e["bytes"] for e in entries), "digest": tree_digest(entries)}
    atomic_write_json(root / MANIFEST, manifest)
    return manifest
