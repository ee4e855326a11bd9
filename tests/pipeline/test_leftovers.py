"""Temporary outputs of a killed stage are removed by the next run, never those of a live one;
SIGTERM cleans up like Ctrl-C (issue 10, item 8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.common.errors import run_stage
from pipeline.common.fs import atomic_directory, atomic_write_json, remove_leftovers
from pipeline.data import stage

PROJECT = Path(__file__).resolve().parents[2]


def _fetch_argv(raw: Path, num_train: int) -> list[str]:
    """``pipeline.data`` arguments: the smoke profile's synthetic Cityscapes under ``raw``."""
    return ["fetch", "cityscapes", "profile=smoke", f"paths.raw={raw}",
            f"synthetic.cityscapes.num_train={num_train}", "synthetic.cityscapes.num_val=0"]


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=PROJECT,
                            text=True, **kwargs)


def _temporaries(final: Path) -> list[str]:
    return sorted(p.name for p in final.parent.iterdir()
                  if p.name.startswith((f"{final.name}.", f".{final.name}.")))


def _killed_inside_atomic_directory(final: Path) -> None:
    """A process that dies by SIGKILL while building ``final`` (nothing of Python runs after)."""
    proc = _python("""
        import os, signal, sys
        from pipeline.common.fs import atomic_directory
        with atomic_directory(sys.argv[1]) as tmp:
            (tmp / "half.bin").write_bytes(b"x" * 4096)
            os.kill(os.getpid(), signal.SIGKILL)
        """, str(final))
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_killed_stage_leftovers_removed_at_next_stage_start(tmp_path):
    root = tmp_path / "raw" / "cityscapes"
    argv = _fetch_argv(root.parent, 1)
    assert run_stage(stage.main, argv) == 0
    _killed_inside_atomic_directory(root)
    (left,) = [n for n in _temporaries(root) if ".tmp-" in n]
    assert (root.parent / left / "half.bin").is_file()
    # an up-to-date rerun does no work, but still clears what the killed run left
    assert run_stage(stage.main, argv) == 0
    assert _temporaries(root) == []
    assert json.loads((root / "fetch_info.json").read_text())["images_per_split"]["train"] == 1


def test_killed_file_write_leftover_removed_by_next_write(tmp_path):
    target = tmp_path / "metrics.json"
    proc = _python("""
        import os, signal, sys
        from pipeline.common import fs
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # die just before renaming
        fs.atomic_write_json(sys.argv[1], {"a": 1})
        """, str(target))
    assert proc.wait(timeout=60) == -signal.SIGKILL
    (left,) = _temporaries(target)
    assert left.startswith(".metrics.json.") and left.endswith(".tmp")
    atomic_write_json(target, {"a": 2})
    assert _temporaries(target) == []
    assert json.loads(target.read_text()) == {"a": 2}


def test_live_writer_temporary_is_never_removed(tmp_path):
    """A second process starting the same stage must not delete the tree another process is
    still building; that process then finishes normally."""
    final = tmp_path / "out"
    proc = _python("""
        import sys
        from pipeline.common.fs import atomic_directory
        with atomic_directory(sys.argv[1]) as tmp:
            print(tmp, flush=True)
            sys.stdin.readline()  # build until the test says go on
            (tmp / "done").write_text("writer")
        """, str(final), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        live = Path(proc.stdout.readline().strip())
        assert live.is_dir()
        assert remove_leftovers(final) == []
        with atomic_directory(final) as mine:  # a concurrent writer of the same output
            (mine / "done").write_text("test")
        assert live.is_dir()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (final / "done").read_text() == "writer"  # the last one to finish wins
    assert _temporaries(final) == []


@pytest.mark.parametrize(("sig", "status", "line"), [
    (signal.SIGTERM, 143, "error: terminated (SIGTERM)"),
    (signal.SIGINT, 130, "error: interrupted (SIGINT)"),
])
def test_signal_during_stage_cleans_up(tmp_path, sig, status, line):
    """SIGTERM (a CI cancel, ``timeout``) unwinds like Ctrl-C: the temporary tree is deleted,
    one line, exit status 128 + signal number."""
    root = tmp_path / "raw" / "cityscapes"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.data", *_fetch_argv(root.parent, 2000)], cwd=PROJECT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (root.parent.is_dir() and _temporaries(root)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.2)  # well inside the generation loop
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert errors == [line] and "Traceback" not in err, err
    assert not root.exists() and _temporaries(root) == []


def test_sigterm_handler_is_restored_after_the_stage():
    from pipeline.common.errors import run_stage

    before = signal.getsignal(signal.SIGTERM)
    seen = []
    assert run_stage(lambda argv: seen.append(signal.getsignal(signal.SIGTERM)), []) == 0
    assert seen[0] is not before and signal.getsignal(signal.SIGTERM) is before


def test_ray_style_sigterm_exit_is_reported_as_sigterm(capsys):
    """``ray.init`` swaps in a SIGTERM handler that calls ``sys.exit(15)``: same outcome."""
    from pipeline.common.errors import run_stage

    assert run_stage(lambda argv: sys.exit(signal.SIGTERM), []) == 143
    assert capsys.readouterr().err == "error: terminated (SIGTERM)\n"
    with pytest.raises(SystemExit):  # any other exit status passes through
        run_stage(lambda argv: sys.exit(3), [])


def test_forked_child_keeps_the_default_sigterm():
    """A process forked inside a stage (a DataLoader worker) inherits the handler; SIGTERM must
    still end it, not raise inside it."""
    from pipeline.common.errors import run_stage

    statuses = []

    def main(argv):
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)
            finally:
                os._exit(0)
        statuses.append(os.waitpid(pid, 0)[1])

    assert run_stage(main, []) == 0
    assert os.WIFSIGNALED(statuses[0]) and os.WTERMSIG(statuses[0]) == signal.SIGTERM
