"""The one error type of the pipeline stages and the ``main()`` wrapper that reports it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

from dgmn.errors import DgmnError
from pipeline.common.logs import setup_logging

#: Exit status of a stage that was given bad input (missing root, corrupt file, bad checksum …).
EXIT_BAD_INPUT = 2
#: Exit status after SIGINT / SIGTERM: 128 + the signal number, as a shell reports a signal death.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class StageError(Exception):
    """A stage cannot go on: bad input, a failed download, a checksum mismatch.

    The message names the file, key or URL at fault and the problem, e.g.
    ``"data/raw/x/a.png: cannot decode PNG (truncated)"``; it is printed as one line.
    """

    exit_code = EXIT_BAD_INPUT


class Terminated(BaseException):
    """SIGTERM arrived (a CI cancel, ``timeout``, ``kill``). A ``BaseException`` like
    ``KeyboardInterrupt``, so ``except Exception`` does not swallow it and every ``finally`` and
    context manager on the way out runs (temporary outputs are deleted)."""


def _sigterm_handler(owner: int) -> Callable[[int, FrameType | None], None]:
    """A handler raising :class:`Terminated` in process ``owner``. A child forked from it
    (a DataLoader worker) inherits the handler; there SIGTERM keeps its default meaning."""
    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        if os.getpid() != owner:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated

    return handler


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` (main thread only: Python delivers
    signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _sigterm_handler(os.getpid()))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run_stage(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None) -> int:
    """Call a stage's ``main(argv)`` and turn how it ended into an exit status and at most one
    ``error: …`` line on stderr.

    - :class:`StageError` or any library error (:class:`~dgmn.errors.DgmnError`: bad dataset
      files, a model config that cannot be built, backbone weights that cannot be loaded): its
      message, status ``StageError.exit_code`` (2 unless a subclass says otherwise), 2 for a
      library error;
    - Ctrl-C (SIGINT): status 130; SIGTERM: status 143. Both unwind the stack first, so the
      temporary outputs of an interrupted stage are deleted either way. ``ray.init`` replaces the
      SIGTERM handler with ``sys.exit(15)``; that exit is reported as SIGTERM too.

    Logging is set up first (:func:`~pipeline.common.logs.setup_logging`): every stage logs the
    same way, one line per event on stderr.
    """
    setup_logging()
    try:
        with _sigterm_raises():
            main(argv)
    except (StageError, DgmnError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        print(f"error: {message}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, StageError) else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted (SIGINT)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except SystemExit as exc:
        if exc.code != signal.SIGTERM:
            raise
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    return 0
