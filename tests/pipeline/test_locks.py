"""Process locks (pipeline.common.locks): a held run lock makes a second holder fail at once,
naming the first; a dead holder leaves no stale lock; processes creating one fresh MLflow store
at the same moment all succeed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline.common.locks import LockHeldError, exclusive
from pipeline.config.compose import PROJECT_ROOT

HOLD = """
import sys, time
from pipeline.common.locks import exclusive
with exclusive(sys.argv[1], "held by the test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""

OPEN_RUN = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient  # imported before the start signal: all start together
from pipeline.tracking import open_run
uri, go, index = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
open_run(uri, "dgmn", f"run-{index}", f"key-{index}", params={"index": index}, tags={})
"""


def _python(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_held_lock_fails_a_second_holder_at_once_naming_the_first(tmp_path):
    path = tmp_path / "run" / "dgmn-run.lock"
    holder = _python(HOLD, str(path), "600")
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        began = time.monotonic()
        with pytest.raises(LockHeldError) as held, exclusive(path, "another training"):
            pass
        assert time.monotonic() - began < 1.0  # fail fast: no waiting
        message = str(held.value)
        assert message.startswith(f"{path}: locked by pid {holder.pid} on "
                                  f"{socket.gethostname()} since 20")
        assert message.endswith("(another training)") and "\n" not in message
    finally:
        holder.kill()  # SIGKILL: the kernel releases its lock
        holder.wait(timeout=30)
    with exclusive(path, "after the holder died"):  # no stale lock left behind
        pass


def test_a_waiting_lock_is_granted_when_the_holder_releases_it(tmp_path):
    path = tmp_path / "store.lock"
    holder = _python(HOLD, str(path), "1.5")
    try:
        assert holder.stdout.readline().strip() == "held"
        began = time.monotonic()
        with exclusive(path, "waiting", wait=60):
            waited = time.monotonic() - began
        assert 0.2 < waited < 30
    finally:
        holder.wait(timeout=30)


@pytest.mark.slow
def test_processes_creating_one_fresh_mlflow_store_at_once_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    workers = [_python(OPEN_RUN, uri, str(go), str(index)) for index in range(2)]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        go.touch()
        results = [(worker.wait(timeout=300), worker.stderr.read()) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [code for code, _ in results] == [0, 0], "\n".join(e[-2000:] for _, e in results)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("dgmn").experiment_id])
    assert sorted(run.data.params["index"] for run in runs) == ["0", "1"]
    assert Path(f"{tmp_path / 'mlflow.db'}.lock").exists()
