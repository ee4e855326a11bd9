"""The one definition of how this project starts a local Ray instance: every server on
127.0.0.1 and token authentication.

Two ways in, one set of settings:

- :func:`init_local`: a stage that finds no cluster starts an instance inside its own process
  (:func:`pipeline.training.trainer.ensure_ray`); it ends with the process.
- ``python -m pipeline.common.ray_local start DIR [--num-cpus N]`` / ``stop DIR``: one instance
  for every stage of ``scripts/run_pipeline.sh``. ``start`` prints the shell lines that point
  the stages at it (address, auth mode, path of the token file; never the token).

Why these settings (Ray 2.60; ``tests/pipeline/test_ray_security.py`` checks the result):

- Ray's C++ gRPC servers (GCS, raylet node manager and object manager, the core worker of every
  driver and worker process) listen on the wildcard address (``::``, dual stack) unless the
  node IP is exactly ``127.0.0.1``; then on ``127.0.0.1`` only. Another loopback address
  (``127.0.0.2``) still gives wildcard listeners.
- Ray replaces a node IP of ``127.0.0.1``/``localhost`` by the machine's outward address unless
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's single-machine mode, its default on macOS and
  Windows; it also refuses other nodes, which a local instance does not want anyway).
- No dashboard (``include_dashboard=False``), hence no dashboard agent and no metrics export
  port; the runtime-env agent binds the node IP.
- ``RAY_AUTH_MODE=token`` with a random 256-bit token per instance, unless the caller set
  ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH``: every gRPC and HTTP entry point then rejects a
  client without it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
#: Ray's single-machine switch; ``ray`` reads it once, at import.
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TOKEN_FILE = "auth_token"

__all__ = ["LOOPBACK", "init_local", "instance_pids", "start", "stop"]


def _base_env() -> dict[str, str]:
    return {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _has_token(env: Mapping[str, str]) -> bool:
    return bool(env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH"))


@contextlib.contextmanager
def _single_machine() -> Iterator[None]:
    """Ray's single-machine mode for the processes started inside the block (they inherit the
    variable) and for this one, which imported ``ray`` before: the constant Ray read the
    variable into is flipped too (private API, hence the Ray pin). Both are restored after:
    a running node answers for its own address, and a later ``ray start`` from this process
    (a multi-node test cluster) must not inherit the mode."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(SINGLE_MACHINE), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE, None)
        else:
            os.environ[SINGLE_MACHINE] = saved_env


def init_local(num_cpus: int | None = None) -> None:
    """Start a Ray instance inside this process, loopback only, token auth (see the module
    docstring); it stops at ``ray.shutdown()`` or when the process ends. The token stays in
    this process's environment (its Ray processes inherit it) and is never written out."""
    import ray
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ.update(_base_env())
    if not _has_token(os.environ):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # This process's Ray read the auth mode and token when it was imported: make it read them
    # again (private API; what ray.init itself does when it turns token auth on), or the
    # driver would talk to its token-checking GCS without the token.
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    with _single_machine():
        ray.init(_node_ip_address=LOOPBACK, num_cpus=num_cpus, include_dashboard=False,
                 log_to_driver=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _write_token(path: Path) -> None:
    """A fresh random token in a new file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def start(directory: Path, num_cpus: int) -> dict[str, str]:
    """Start a head node (``ray start --head``) keeping its files, sockets and token under
    ``directory`` (keep the path short: Ray's socket paths have a length limit). Returns the
    environment a driver needs to join it; it holds no secret (the token file's path)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    token = directory / TOKEN_FILE
    _write_token(token)
    env = {**_base_env(), "RAY_AUTH_TOKEN_PATH": str(token), SINGLE_MACHINE: "0",
           "RAY_TMPDIR": str(directory)}
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    child_env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}  # path wins
    result = subprocess.run(
        [str(ray_cli), "start", "--head", f"--node-ip-address={LOOPBACK}", f"--port={port}",
         f"--temp-dir={directory}", f"--num-cpus={num_cpus}", "--include-dashboard=false",
         "--disable-usage-stats"],
        env={**child_env, **env}, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        stop(directory)
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"ray start (temp dir {directory}) failed: {tail[0]}")
    return {**env, "RAY_ADDRESS": f"{LOOPBACK}:{port}"}


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    return ""


def _parent(pid: int) -> int:
    """The parent PID (field 4 of ``/proc/PID/stat``, after the parenthesised name)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return 0


def instance_pids(directory: Path) -> list[int]:
    """The processes of the instance whose files live under ``directory``: those whose command
    line names it (GCS, raylet, monitors; ``ray start`` exits and leaves them to init) and
    all their descendants (workers and agents rename themselves, so their command lines do
    not). This process and its ancestors are left out."""
    needle = str(directory.resolve())
    mine, pid = set(), os.getpid()
    while pid > 0:
        mine.add(pid)
        pid = _parent(pid)
    all_pids = _pids()
    parents = {p: _parent(p) for p in all_pids}
    found = {p for p in all_pids if p not in mine and needle in _cmdline(p)}
    grew = True
    while grew:
        children = {p for p, parent in parents.items() if parent in found} - found - mine
        found |= children
        grew = bool(children)
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _terminate(pids: Sequence[int], grace_s: float) -> None:
    """SIGTERM these processes, SIGKILL those still running after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in filter(_alive, pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(map(_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)


def stop(directory: Path, grace_s: float = 5.0) -> None:
    """Stop the instance's processes by PID, then remove ``directory``. The raylet goes first:
    it takes its workers and agents with it at once, while with the GCS already gone it waits
    ~10 s before exiting (measured)."""
    pids = instance_pids(directory)
    raylets = [pid for pid in pids if _cmdline(pid).split(" ", 1)[0].endswith("/raylet")]
    _terminate(raylets, grace_s)
    _terminate(pids, grace_s)
    shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.common.ray_local",
        description="Start or stop the project's local Ray instance (127.0.0.1, token auth). "
                    "`start` prints shell lines to eval; they hold no secret.")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory", type=Path, help="temp dir of the instance (short path)")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop(args.directory)
        return 0
    try:
        env = start(args.directory, args.num_cpus)
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("unset RAY_AUTH_TOKEN")
    print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
