"""Every Ray instance the project starts listens on loopback only and requires its token.

Two ways a local instance starts: inside a stage (``ensure_ray`` without a cluster, what
``python -m pipeline.train …`` does) and ``python -m pipeline.common.ray_local start`` (what
``scripts/run_pipeline.sh`` runs; its stages join with ``$RAY_ADDRESS``). For each, the LISTEN
sockets of the instance's processes (and of a stage driver with a worker, whose core workers
listen too) are read from the kernel and must all be on 127.0.0.0/8 or ::1; a GCS call without
the token or with a wrong one must be refused as unauthenticated while the same call with the
token succeeds; the token must appear in no output and no file of the instance.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.config.compose import PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

#: A stage's Ray start-up (``ensure_ray`` on the smoke profile), one task so that a worker
#: process exists, then the GCS address on stdout; it holds until stdin closes.
STAGE_DRIVER = """
import sys, ray
from pipeline.config import load_config
from pipeline.training.trainer import ensure_ray
ensure_ray(load_config(["profile=smoke", "scaling.ray_num_cpus=1"]))
ray.get(ray.remote(lambda: 0).remote())
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.readline()
"""


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _tree(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid, *(c.pid for c in proc.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _listeners(pids: set[int]) -> list[tuple[str, int, str]]:
    """(ip, port, process name) of every TCP LISTEN socket those processes own."""
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            with_name = psutil.Process(conn.pid).name() if psutil.pid_exists(conn.pid) else "?"
            found.append((conn.laddr.ip, conn.laddr.port, with_name))
    return found


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line:
                return line.strip()
        if proc.poll() is not None:
            break
    raise AssertionError(f"stage driver printed no GCS address (exit {proc.poll()}): "
                         f"{proc.stderr.read()[-3000:] if proc.poll() is not None else ''}")


#: One GCS call (``internal_kv_get``) with whatever token the environment gives; prints
#: whether the GCS accepted it. ``GcsClient`` is Ray's own (private, pinned) client: no
#: driver, no worker, an answer in ~2 s where ``ray.init`` retries for 20 s.
GCS_CALL = """
import sys
from ray._raylet import GcsClient
from ray.exceptions import AuthenticationError
try:
    GcsClient(address=sys.argv[1]).internal_kv_get(b"probe", None, timeout=20)
except AuthenticationError:
    print("refused")
else:
    print("accepted")
"""


def _gcs_call(address: str, token: str | None, home: Path) -> str:
    """``accepted`` or ``refused``: a client with ``token`` (``None``: auth off, no token sent)."""
    auth = ({"RAY_AUTH_MODE": "disabled"} if token is None
            else {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    result = subprocess.run([sys.executable, "-c", GCS_CALL, address],
                            env={**_clean_env(home), **auth}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def _assert_loopback_only(gcs_address: str, pids: set[int]) -> None:
    listeners = _listeners(pids)
    ports = {port for _, port, _ in listeners}
    assert int(gcs_address.rsplit(":", 1)[1]) in ports, listeners  # the scan sees the GCS
    # GCS, raylet (node manager + object manager), driver and worker core workers at least
    assert len(listeners) >= 4, listeners
    exposed = [entry for entry in listeners if not _is_loopback(entry[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def _assert_token_required(gcs_address: str, token: str, home: Path) -> None:
    home.mkdir(exist_ok=True)  # no ~/.ray/auth_token for the clients to find
    assert _gcs_call(gcs_address, None, home) == "refused"
    assert _gcs_call(gcs_address, "0" * 64, home) == "refused"
    assert _gcs_call(gcs_address, token, home) == "accepted"  # the refusals were for the token


def _assert_token_nowhere(token: str, outputs: list[str], directory: Path,
                          allowed: set[Path] = frozenset()) -> None:
    for text in outputs:
        assert token not in text
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink() and path not in allowed:
            with open(path, "rb") as f:
                assert token.encode() not in f.read(), f"token written to {path}"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir (Ray's socket paths have a length limit), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _clean_env(home: Path) -> dict[str, str]:
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}


def _run_driver(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STAGE_DRIVER], cwd=PROJECT_ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stop(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL after 10 s, whichever of these processes are still running."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    for proc in psutil.wait_procs(procs, timeout=10)[1]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _finish(proc: subprocess.Popen, pids: set[int]) -> tuple[str, str]:
    """Let the driver exit (its instance with it), then stop by PID whatever is left."""
    try:
        out, err = proc.communicate("\n", timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    _stop(pids)
    return out, err


def test_a_stage_starts_ray_on_loopback_only_with_a_token(short_tmp):
    """``python -m pipeline.train`` without a cluster: the instance ``ensure_ray`` starts."""
    env = {**_clean_env(short_tmp), "RAY_TMPDIR": str(short_tmp)}
    proc = _run_driver(env)
    pids: set[int] = set()
    try:
        gcs_address = _read_line(proc, timeout=240)
        pids = _tree(proc.pid)
        _assert_loopback_only(gcs_address, pids)
        # the token the stage generated reached its GCS through the environment (the stage's
        # own /proc/PID/environ shows only what it was started with, no token)
        (gcs,) = [p for p in pids if psutil.Process(p).name() == "gcs_server"]
        token = psutil.Process(gcs).environ().get("RAY_AUTH_TOKEN", "")
        assert len(token) >= 32, "the stage started Ray without a token of its own"
        _assert_token_required(gcs_address, token, short_tmp / "client")
    finally:
        pids |= _tree(proc.pid)
        out, err = _finish(proc, pids)
    assert proc.returncode == 0, err[-3000:]
    _assert_token_nowhere(token, [out, err], short_tmp)


def test_run_pipeline_instance_is_on_loopback_only_with_a_token(short_tmp):
    """``scripts/run_pipeline.sh``: ``ray_local start`` in a shell (its printed lines are
    eval'd, as the script does), a stage joining with ``$RAY_ADDRESS``, then ``stop``."""
    instance = short_tmp / "r"
    shell = subprocess.run(
        ["bash", "-c", 'eval "$("$0" -m pipeline.common.ray_local start "$1" --num-cpus 1)" '
                       '&& env', sys.executable, str(instance)],
        cwd=PROJECT_ROOT, env=_clean_env(short_tmp), capture_output=True, text=True,
        timeout=240)
    proc = None
    pids: set[int] = set()
    try:
        assert shell.returncode == 0, shell.stderr[-3000:]
        joined = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
        token_file = Path(joined["RAY_AUTH_TOKEN_PATH"])
        assert token_file.parent == instance.resolve()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text()
        assert joined["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" not in joined
        assert joined["RAY_ADDRESS"].startswith("127.0.0.1:")
        proc = _run_driver({**_clean_env(short_tmp), **{
            k: v for k, v in joined.items() if k.startswith("RAY_")}})
        gcs_address = _read_line(proc, timeout=240)
        assert gcs_address == joined["RAY_ADDRESS"]  # the stage joined, it did not start one
        from pipeline.common.ray_local import instance_pids

        pids = set(instance_pids(instance)) | _tree(proc.pid)
        _assert_loopback_only(gcs_address, pids)
        _assert_token_required(gcs_address, token, short_tmp / "client")
    finally:
        if proc is not None:
            out, err = _finish(proc, set())
        stopped = subprocess.run([sys.executable, "-m", "pipeline.common.ray_local", "stop",
                                  str(instance)], cwd=PROJECT_ROOT, capture_output=True,
                                 text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE], "stop left processes"
    assert not instance.exists()
    assert proc.returncode == 0, err[-3000:]
    _assert_token_nowhere(token, [shell.stdout, shell.stderr, out, err], short_tmp)


def test_run_pipeline_starts_ray_only_through_ray_local():
    """One definition of the local instance: the script has no ``ray start`` of its own."""
    script = (PROJECT_ROOT / "scripts" / "run_pipeline.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    assert "pipeline.common.ray_local start" in code
    assert "pipeline.common.ray_local stop" in code
    assert "ray start" not in code and "RAY_AUTH_TOKEN=" not in code
