"""Logs: the smoke training's console output (``smoke_run``: a real ``python -m pipeline.train``
through pipes) has one line per event, no Ray Train cleaner warnings, no ANSI escapes, progress
with an ETA, and the same lines in its per-run log file; plus the logging helpers on their own."""

from __future__ import annotations

import io
import itertools
import logging
import os
import re
import sys

import pytest

from pipeline.common.logs import setup_logging, tee_to_file
from pipeline.training.progress import TrainingProgress, format_duration

# one worker runs every test of the shared smoke training (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("smoke_run")

ESCAPE = "\x1b"


@pytest.mark.slow
@pytest.mark.cluster
def test_the_training_prints_each_event_once_without_cleaner_warnings_or_colour(smoke_run):
    lines = smoke_run.train_output.splitlines()
    repeated = [(a, b) for a, b in itertools.pairwise(lines) if a.strip() and a == b]
    assert repeated == []
    iterations = [line for line in lines if re.search(r"\] it \d+/4 loss", line)]
    assert [re.search(r"it (\d)/4", line).group(1) for line in iterations] == ["1", "2", "3", "4"]
    assert all(re.search(r"it/s, ETA \d+s\)$", line) for line in iterations), iterations
    assert "Failed to query Ray Train Controller actor state" not in smoke_run.train_output
    assert "PlacementGroupCleaner" not in smoke_run.train_output
    assert ESCAPE not in smoke_run.train_output + smoke_run.evaluate_output


@pytest.mark.slow
@pytest.mark.cluster
def test_the_run_s_log_file_holds_what_the_console_showed(smoke_run):
    log = (smoke_run.train_dir / "train.log").read_text()
    assert ESCAPE not in log
    for line in smoke_run.train_output.splitlines():
        if re.search(r"\] it \d+(/4 loss| val miou)", line):
            assert line in log.splitlines(), line


def test_tee_appends_what_is_printed_without_escapes(tmp_path, capsys):
    path = tmp_path / "run" / "train.log"
    with tee_to_file(path):
        print("\x1b[36m(RayTrainWorker pid=1)\x1b[0m it 1/4")
        print("to stderr", file=sys.stderr)
    with tee_to_file(path):  # a resumed run appends; a bar redrawn with "\r": its last state
        print("resumed")
        sys.stderr.write("\rrun:  25%|##  | 1/4")
        sys.stderr.write("\rrun: 100%|####| 4/4\n")
        sys.stderr.write("\rrun:  50%|##  | 2/4")  # unfinished when the block ends
    print("after")  # outside the block: console only
    assert path.read_text().splitlines() == [
        "(RayTrainWorker pid=1) it 1/4", "to stderr", "resumed", "run: 100%|####| 4/4",
        "run:  50%|##  | 2/4"]
    shown = capsys.readouterr()
    assert shown.out.splitlines()[0] == "\x1b[36m(RayTrainWorker pid=1)\x1b[0m it 1/4"
    assert shown.err.startswith("to stderr\n\rrun:  25%")


def test_logging_set_up_twice_prints_each_record_once(monkeypatch):
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    setup_logging()
    setup_logging()
    logging.getLogger("pipeline.test").info("one event")
    logging.getLogger("alembic.runtime").info("a library's chatter")
    logging.getLogger("urllib3.connectionpool").warning("a library's warning")
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "INFO pipeline.test: one event", "WARNING urllib3.connectionpool: a library's warning"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", lines[0].split(" ", 1)[0])
    assert os.environ["RAY_COLOR_PREFIX"] == "0"  # Ray's prefixes without colour off a tty


def test_progress_eta_counts_only_this_process_s_iterations():
    now = [100.0]
    progress = TrainingProgress(start=10, total=50, mode="lines", desc="run",
                                clock=lambda: now[0])
    assert progress.eta(10) is None and progress.summary(10) == "0.00 it/s, ETA ?"
    now[0] = 120.0  # 20 s for iterations 10 → 20 (a resumed run: the first 10 ran before)
    assert progress.speed(20) == pytest.approx(0.5)
    assert progress.eta(20) == pytest.approx(60.0)
    assert progress.summary(20) == "0.50 it/s, ETA 1m00s"
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 7620)] == [
        "0s", "59s", "1m01s", "59m59s", "2h07m"]
