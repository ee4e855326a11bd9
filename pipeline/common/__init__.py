"""Small helpers shared by the pipeline stages: the stage error, atomic outputs, hashing,
progress bars, downloads with resume and safe archive extraction."""

from pipeline.common.errors import StageError, run_stage
from pipeline.common.fs import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_digest,
    link_or_copy,
)
from pipeline.common.progress import progress_bar

__all__ = [
    "StageError",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_digest",
    "link_or_copy",
    "progress_bar",
    "run_stage",
]
