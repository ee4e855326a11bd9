"""Fixtures for the data-stage tests: a local HTTP server and tiny archives."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Served:
    """What the test server answers and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)  # path (with query) -> body
    status: dict[str, int] = field(default_factory=dict)  # path -> forced error status
    cut_once: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping
    handlers: dict[tuple[str, str], Callable] = field(default_factory=dict)  # (method, path)
    requests: list[dict] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    served: Served  # set on a subclass per server

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _record(self, body: bytes = b"") -> None:
        self.served.requests.append({"method": self.command, "path": self.path,
                                     "range": self.headers.get("Range"), "body": body})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._record(body)
        handler = self.served.handlers.get(("POST", self.path))
        if handler is None:
            self.send_error(404)
            return
        handler(self, body)

    def do_GET(self) -> None:
        self._record()
        served = self.served
        handler = served.handlers.get(("GET", self.path))
        if handler is not None:
            handler(self, b"")
            return
        if self.path in served.status:
            self.send_error(served.status[self.path])
            return
        data = served.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = served.cut_once.pop(self.path, None)
        if cut is not None:  # announce the full length, send part of it, drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@dataclass
class LocalServer:
    url: str
    served: Served


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) serving ``served.files``."""
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://127.0.0.1:{server.server_address[1]}", served)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _make_zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None
             ) -> Path:
    """Write a zip with the given members (names as given, even unsafe ones) and symlinks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # S_IFLNK | rwx
            zf.writestr(info, target)
    return path


def _zip_tree(path: Path, root: Path, top: str) -> Path:
    """Zip ``root/top`` with member names relative to ``root`` (as the official archives do)."""
    members = {p.relative_to(root).as_posix(): p.read_bytes()
               for p in sorted((root / top).rglob("*")) if p.is_file()}
    return _make_zip(path, members)


@pytest.fixture
def make_zip() -> Callable[..., Path]:
    """``make_zip(path, {name: bytes}, symlinks={name: target})``."""
    return _make_zip


@pytest.fixture
def zip_tree() -> Callable[[Path, Path, str], Path]:
    """``zip_tree(zip_path, root, top)``: zip ``root/top`` with names relative to ``root``."""
    return _zip_tree


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def md5() -> Callable[[bytes], str]:
    return md5_of
