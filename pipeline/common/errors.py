"""The one error type of the pipeline stages and the ``main()`` wrapper that reports it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from dgmn.data.errors import DatasetError

#: Exit status of a stage that was given bad input (missing root, corrupt file, bad checksum …).
EXIT_BAD_INPUT = 2


class StageError(Exception):
    """A stage cannot go on: bad input, a failed download, a checksum mismatch.

    The message names the file, key or URL at fault and the problem, e.g.
    ``"data/raw/x/a.png: cannot decode PNG (truncated)"``; it is printed as one line.
    """

    exit_code = EXIT_BAD_INPUT


def hydra_overrides(argv: Sequence[str] | None, doc: str | None) -> list[str] | None:
    """The ``key=value`` overrides of a Hydra-configured stage; ``None`` after printing
    ``doc`` for ``-h``/``--help``."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(o in ("-h", "--help") for o in overrides):
        print(doc)
        return None
    return overrides


def run_stage(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None) -> int:
    """Call a stage's ``main(argv)``; turn a :class:`StageError` or
    :class:`~dgmn.data.errors.DatasetError` into one ``error: …`` line on stderr and exit code 2."""
    try:
        main(argv)
    except (StageError, DatasetError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
