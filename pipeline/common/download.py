"""HTTP downloads with resume (``Range``), size and MD5 checks, and an atomic final rename.

A download goes to ``<dest>.part``; an interrupted transfer (short read, dropped connection,
HTTP 5xx) is retried from where it stopped, and a ``.part`` left by an earlier run is resumed.
Only a file whose size and MD5 match the expected values is renamed to ``dest``.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.common.errors import StageError
from pipeline.common.fs import file_digest, reporting_write_errors
from pipeline.common.progress import progress_bar

_CHUNK = 1 << 20
_USER_AGENT = "dgmn-fetch/0.1 (+urllib)"


class _TransientError(Exception):
    """A failure worth retrying (connection trouble, short transfer, HTTP 5xx)."""


def verify_file(path: Path, *, size: int | None, md5: str) -> str | None:
    """Return ``None`` when ``path`` has the expected size and MD5, else what is wrong."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size is {actual_size} bytes, expected {size}"
    actual_md5 = file_digest(path, "md5")
    if actual_md5 != md5.lower():
        return f"MD5 is {actual_md5}, expected {md5.lower()}"
    return None


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str,
    size: int | None = None,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already holds the expected bytes.

    Args:
        url: source URL (``http``/``https``).
        dest: final path; the transfer goes to ``<dest>.part`` first.
        md5: expected MD5 (hex). A mismatch deletes the ``.part`` file and raises.
        size: expected size in bytes, or ``None`` to trust the server's ``Content-Length``.
        retries: further attempts after a transient failure, each resuming the ``.part`` file.
        retry_wait: seconds before a retry (doubled each time).
        timeout: socket timeout in seconds.
        progress: show a tqdm bar.

    Raises:
        StageError: HTTP 4xx, retries used up, the finished file fails the size/MD5 check, or the
            ``.part`` file cannot be written (``"<dest>.part: no space left on device (…)"``).
    """
    dest = Path(dest)
    if dest.is_file() and verify_file(dest, size=size, md5=md5) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _transfer(url, part, size=size, timeout=timeout, progress=progress)
            break
        except _TransientError as exc:
            if attempt >= retries:
                raise StageError(
                    f"{url}: download failed after {attempt + 1} attempts ({exc}); "
                    f"the partial file {part} is kept and will be resumed next time"
                ) from None
            time.sleep(retry_wait * (2**attempt))
            attempt += 1
    problem = verify_file(part, size=size, md5=md5)
    if problem is not None:
        part.unlink()
        raise StageError(f"{url}: downloaded file {problem}; deleted {part}")
    os.replace(part, dest)
    return dest


def _transfer(url: str, part: Path, *, size: int | None, timeout: float, progress: bool) -> None:
    """One HTTP request appending to ``part`` from its current length."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:  # larger than the archive can be: start over
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is complete
            return
        reason = f"HTTP {exc.code} {exc.reason}"
        if exc.code >= 500:
            raise _TransientError(reason) from None
        raise StageError(f"{url}: {reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _TransientError(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None

    with response:
        if offset and response.status != 206:  # the server ignored Range: start from zero
            offset = 0
        total = _announced_total(response, offset)
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise StageError(f"{url}: server reports {total} bytes, expected {size}")
        total = size if size is not None else total
        mode = "ab" if offset else "wb"
        received = offset
        kept = f"downloading {url}; the partial file is kept and resumed by the next run"
        with (
            reporting_write_errors(part, kept),
            open(part, mode) as f,
            progress_bar(total, part.name.removesuffix(".part"), initial=offset,
                         enabled=progress) as bar,
        ):
            while True:
                try:  # a failed read is the network's fault (retried), a failed write is not
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _TransientError(
                        f"transfer interrupted at byte {received} ({exc!r})") from None
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received < total:
        raise _TransientError(f"transfer cut short at byte {received} of {total}")


def _announced_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    """Full size of the resource from ``Content-Range`` (206) or ``Content-Length`` (200)."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("/*"):
        try:
            return int(content_range.rsplit("/", 1)[1])
        except ValueError:
            return None
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None
