"""The one command-line prologue of the pipeline stages.

Every stage is ``python -m pipeline.<stage> [positionals] [key=value ...] [--flags]``:

- ``key=value``: Hydra overrides of the config in ``conf/`` (``profile=smoke``,
  ``schedule.lr=0.01``, ``evaluate=paper``); an unknown key is one ``error:`` line, exit 2;
- ``-h``/``--help``: the stage's description, its flags, and the config groups with their
  options, read from ``conf/`` (so the list is never out of date);
- ``--cfg job``: print the composed, validated config as YAML (credentials redacted) and exit 0
  without doing any work.

A stage calls :func:`parse_stage_args` first thing in its ``main(argv)``; ``None`` means the
prologue already answered (help or ``--cfg``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from pipeline.common.errors import StageError
from pipeline.common.redact import redact
from pipeline.config.compose import CONF_DIR, as_dict, load_config


@dataclass(frozen=True)
class Flag:
    """A stage-specific flag: ``argparse.add_argument(*names, **options)``."""

    names: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Positional:
    """A stage-specific positional argument and its allowed values."""

    name: str
    choices: tuple[str, ...]
    help: str = ""


@dataclass(frozen=True)
class StageArgs:
    """What the prologue parsed: the Hydra overrides and the stage's own arguments."""

    overrides: list[str]
    args: argparse.Namespace


def config_groups(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """``{group: [option, ...]}`` for every directory of ``conf/`` (nested options as
    ``table1/dgmn_da``)."""
    groups = {}
    for group in sorted(p for p in conf_dir.iterdir() if p.is_dir()):
        options = sorted(path.relative_to(group).with_suffix("").as_posix()
                         for path in group.rglob("*.yaml"))
        groups[group.name] = options
    return groups


def _default_choices(conf_dir: Path) -> dict[str, str]:
    """The group choices of ``conf/config.yaml``'s defaults list."""
    root = yaml.safe_load((conf_dir / "config.yaml").read_text()) or {}
    choices = {}
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            choices.update({str(k): str(v) for k, v in entry.items()})
    return choices


def groups_help(conf_dir: Path = CONF_DIR) -> str:
    """The ``--help`` section listing the config groups, their options and defaults."""
    defaults = _default_choices(conf_dir)
    lines = ["config groups (choose with group=option; conf/<group>/<option>.yaml):"]
    for group, options in config_groups(conf_dir).items():
        default = defaults.get(group)
        suffix = f"  (default: {default})" if default else ""
        lines.append(f"  {group}: {', '.join(options)}{suffix}")
    lines.append("any key: key=value (e.g. schedule.lr=0.01); --cfg job prints the composed "
                 "config and exits")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are the pipeline's one ``error:`` line and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise StageError(f"{self.prog}: {message}")


def job_config_yaml(overrides: Sequence[str]) -> str:
    """The composed, validated config of ``overrides`` as YAML, credentials redacted."""
    return yaml.safe_dump(redact(as_dict(load_config(overrides))), sort_keys=False)


def parse_stage_args(argv: Sequence[str] | None, *, prog: str, doc: str | None,
                     positionals: Sequence[Positional] = (), flags: Sequence[Flag] = (),
                     implied: Callable[[argparse.Namespace], list[str]] | None = None,
                     ) -> StageArgs | None:
    """Parse a stage's command line; ``None`` after answering ``--help`` or ``--cfg job``.

    ``implied(args)`` gives overrides the positionals imply (they go before the user's, so
    the user's win); ``--cfg job`` composes with them.
    """
    parser = _Parser(prog=prog, description=doc, epilog=groups_help(), add_help=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    for positional in positionals:
        parser.add_argument(positional.name, choices=positional.choices, help=positional.help)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="Hydra overrides of conf/ (e.g. profile=smoke)")
    parser.add_argument("--cfg", choices=["job"],
                        help="print the composed config (YAML, credentials redacted) and exit")
    for flag in flags:
        parser.add_argument(*flag.names, **flag.options)
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):  # before parsing: help needs no valid args
        print(parser.format_help(), end="")
        return None
    args = parser.parse_intermixed_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise StageError(f"{prog}: expected key=value overrides, got {bad}")
    overrides = [*(implied(args) if implied else []), *args.overrides]
    if args.cfg == "job":
        print(job_config_yaml(overrides), end="")
        return None
    return StageArgs(overrides=overrides, args=args)
