"""How a stage process logs: one handler on the root logger, colour only on a terminal, and a
per-run log file that holds what the console showed.

- :func:`setup_logging` (called by :func:`pipeline.common.errors.run_stage`, once per process):
  one line per event, ``HH:MM:SS LEVEL logger: message``, on the *current* ``sys.stderr`` (so a
  :func:`tee_to_file` in force catches it too). When stdout or stderr is not a terminal, Ray's
  driver prints its worker-line prefixes without ANSI colours (``RAY_COLOR_PREFIX=0``).
- :func:`tee_to_file`: everything this process writes to ``sys.stdout``/``sys.stderr`` inside
  the block (its own log lines, and the lines of Ray workers, which Ray's driver prints there)
  is appended to a file as well, without ANSI escapes (a progress bar: its last state).
- :func:`progress_mode`: ``bar`` (tqdm) on a terminal, else ``lines`` (plain periodic lines
  with an ETA); ``DGMN_PROGRESS=0`` turns bars off anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from pipeline.common.progress import progress_enabled

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
PROJECT_LOGGERS = ("pipeline", "dgmn")
#: CSI sequences (colours, cursor moves) and the two-character escapes tqdm and colorama use.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def on_terminal() -> bool:
    """Both stdout and stderr are terminals (a redirected log must carry no escapes)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


class _CurrentStderrHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stderr`` is at emit time."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Give the root logger this module's one handler (replacing an earlier one of ours, so
    calling it twice never doubles a line): the project's loggers (``pipeline.*``, ``dgmn.*``)
    at ``level``, other libraries' at WARNING (their INFO chatter, e.g. database migrations,
    stays out). Ray's worker-line prefixes lose their colour off a terminal."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _CurrentStderrHandler)]:
        root.removeHandler(handler)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for project in PROJECT_LOGGERS:
        logging.getLogger(project).setLevel(level)
    if not on_terminal():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


def progress_mode() -> str:
    """``bar`` when progress bars are wanted and there is a terminal to draw them, else
    ``lines``."""
    return "bar" if progress_enabled() and on_terminal() else "lines"


class _Tee:
    """A text stream writing to ``console`` and, line by line, to ``file``: without ANSI
    escapes, and of a line redrawn with carriage returns (a progress bar) only what a terminal
    would show last."""

    def __init__(self, console: TextIO, file: TextIO, lock: threading.Lock) -> None:
        self.console, self.file, self.lock = console, file, lock
        self.pending = ""

    def _to_file(self, line: str) -> None:
        shown = ANSI.sub("", line).rsplit("\r", 1)[-1]
        if shown.strip() or "\r" not in line:  # a bar cleared with "\r" leaves nothing
            self.file.write(shown + "\n")

    def write(self, text: str) -> int:
        with self.lock:  # Ray's log thread and the main thread write at once
            *lines, self.pending = (self.pending + text).split("\n")
            for line in lines:
                self._to_file(line)
            self.file.flush()
        return self.console.write(text)

    def close_line(self) -> None:
        """Write the unfinished last line (if any) to the file."""
        with self.lock:
            if self.pending:
                self._to_file(self.pending)
                self.pending = ""

    def flush(self) -> None:
        self.console.flush()

    def isatty(self) -> bool:
        return self.console.isatty()

    def fileno(self) -> int:
        return self.console.fileno()

    def __getattr__(self, name: str) -> object:  # encoding, errors, buffer …
        return getattr(self.console, name)


@contextlib.contextmanager
def tee_to_file(path: Path) -> Iterator[Path]:
    """Inside the block, append what goes to ``sys.stdout`` and ``sys.stderr`` to ``path``
    too (created with its folder; a resumed run appends to its earlier log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    saved = sys.stdout, sys.stderr
    with path.open("a", encoding="utf-8") as file:
        tees = _Tee(saved[0], file, lock), _Tee(saved[1], file, lock)
        sys.stdout, sys.stderr = tees
        try:
            yield path
        finally:
            sys.stdout, sys.stderr = saved
            for tee in tees:
                tee.close_line()
