"""Fixtures for the data-stage tests: a local HTTP server and tiny archives."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
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


# --------------------------------------------------------------------------- Ray on loopback


@dataclass
class LoopbackCluster:
    """Ray nodes started with ``ray start`` on loopback addresses, for one test."""

    address: str
    env: dict[str, str]
    temp: Path


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _started_by(pid: int, temp: str) -> bool:
    """A process of our nodes: its command line or environment names our temp dir."""
    try:
        proc = psutil.Process(pid)
        return temp in " ".join(proc.cmdline()) or proc.environ().get("RAY_TMPDIR") == temp
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_processes(pids: list[int]) -> None:
    """SIGTERM these processes, SIGKILL what is left after 10 s (zombies count as gone)."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for proc in filter(_alive, procs):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)
        deadline = time.monotonic() + wait
        while any(map(_alive, procs)) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def loopback_ray() -> Iterator[Callable[..., LoopbackCluster]]:
    """Factory: ``loopback_ray(nodes=("127.0.0.2", ...), cpus=1)`` starts a head on the first
    address and one node per further address (token auth, own temp dir); everything it
    started is stopped by PID afterwards."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths
    before = set(psutil.pids())
    ray_cli = str(Path(sys.executable).with_name("ray"))

    def start(nodes: tuple[str, ...] = ("127.0.0.2",), cpus: int = 1) -> LoopbackCluster:
        env = {**os.environ, "HOME": str(temp), "RAY_TMPDIR": str(temp),
               "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
               "RAY_USAGE_STATS_ENABLED": "0"}
        with socket.socket() as s:
            s.bind((nodes[0], 0))
            port = s.getsockname()[1]
        common = [f"--num-cpus={cpus}", "--memory=3000000000", "--object-store-memory=200000000",
                  "--disable-usage-stats"]
        subprocess.run([ray_cli, "start", "--head", f"--node-ip-address={nodes[0]}",
                        f"--port={port}", f"--temp-dir={temp}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        for ip in nodes[1:]:
            subprocess.run([ray_cli, "start", f"--address={nodes[0]}:{port}",
                            f"--node-ip-address={ip}", *common], env=env, check=True,
                           capture_output=True, timeout=120)
        return LoopbackCluster(f"{nodes[0]}:{port}", env, temp)

    yield start
    ours = [pid for pid in set(psutil.pids()) - before if _started_by(pid, str(temp))]
    stop_processes(ours)
    assert not any(_alive(psutil.Process(p)) for p in ours if psutil.pid_exists(p))
    shutil.rmtree(temp, ignore_errors=True)


# --------------------------------------------------------------------------- smoke run + MLflow


@contextlib.contextmanager
def mlflow_server_on_loopback(folder: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (a free port, its own SQLite store and artifact folder
    under ``folder``); yields its URL; stopped by PID (its process group) afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    with (folder / "server.log").open("w") as log:
        server = subprocess.Popen(
            [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@dataclass
class SmokeRun:
    """One smoke training and evaluation (``table1/dgmn_da``) tracked by a real MLflow
    server: where its files went and what it printed (stdout and stderr interleaved)."""

    root: Path
    tracking_uri: str
    overrides: list[str]
    train_output: str
    evaluate_output: str

    @property
    def train_dir(self) -> Path:
        return self.root / "runs" / "smoke" / "train" / "table1" / "dgmn_da" / "seed0"


def _stage(module: str, overrides: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", module, "experiment=table1/dgmn_da",
                             *overrides], cwd=Path(__file__).resolve().parents[2], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[dict]:
    """A test's own ``mlflow server`` on 127.0.0.1: ``{"url", "port", "folder"}`` (its store,
    and its artifacts under ``folder / "artifacts"``)."""
    folder = tmp_path / "server"
    with mlflow_server_on_loopback(folder) as url:
        yield {"url": url, "port": int(url.rsplit(":", 1)[1]), "folder": folder}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmokeRun]:
    """``python -m pipeline.train`` then ``python -m pipeline.evaluate`` of the smoke profile
    on synthetic data, as a user runs them (pipes, not a terminal), against an MLflow server
    on 127.0.0.1; shared by the tracking and the log tests (one training for both)."""
    from pipeline.data.fetch import FetchConfig
    from pipeline.data.fetch import run as fetch
    from pipeline.data.preprocess import PreprocessConfig
    from pipeline.data.preprocess import run as preprocess
    from pipeline.data.synthetic.cityscapes import SyntheticCityscapesConfig

    root = tmp_path_factory.mktemp("smoke_run")
    raw = root / "raw" / "cityscapes"
    fetch(FetchConfig(dataset="synthetic_cityscapes", root=raw, progress=False,
                      synthetic_cityscapes=SyntheticCityscapesConfig(num_train=8, num_val=4)))
    preprocess(PreprocessConfig(dataset="synthetic_cityscapes", raw_root=raw,
                                out_root=root / "processed" / "cityscapes", progress=False))
    drop = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "DGMN_PROGRESS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    with mlflow_server_on_loopback(root / "mlflow") as url:
        overrides = [f"paths.processed={root / 'processed'}", f"paths.runs={root / 'runs'}",
                     f"paths.ray_storage={root / 'ray'}", f"tracking.uri={url}",
                     "profile=smoke"]
        train_output = _stage("pipeline.train", overrides, env)
        evaluate_output = _stage("pipeline.evaluate", overrides, env)
        yield SmokeRun(root, url, overrides, train_output, evaluate_output)
