"""The README results section: assembling it, and swapping it into the README between markers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.common.errors import StageError
from pipeline.common.fs import atomic_write_text

START = "<!-- results:start -->"
END = "<!-- results:end -->"


@dataclass
class Block:
    """One part of the section: a heading, markdown (a table) and images (caption, link)."""

    title: str
    markdown: str = ""
    images: list[tuple[str, str]] = field(default_factory=list)


def results_section(profile: str, blocks: Sequence[Block], intro: str = "") -> str:
    """The markdown section: a heading, ``intro``, then every block in order."""
    parts = [f"## Results (profile `{profile}`)", ""]
    if intro:
        parts += [intro, ""]
    for block in blocks:
        parts += [f"### {block.title}", ""]
        if block.markdown:
            parts += [block.markdown.rstrip("\n"), ""]
        parts += [f"![{caption}]({link})\n" for caption, link in block.images]
    return "\n".join(parts).rstrip("\n") + "\n"


def split_readme(readme: Path) -> tuple[str, str]:
    """The README text before ``<!-- results:start -->`` and from ``<!-- results:end -->`` on
    (markers excluded). Missing, repeated or misordered markers are a :class:`StageError`."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as exc:
        raise StageError(f"{readme}: cannot read ({exc.strerror or exc})") from None
    counts = {marker: text.count(marker) for marker in (START, END)}
    if counts[START] != 1 or counts[END] != 1:
        raise StageError(f"{readme}: needs exactly one {START!r} and one {END!r} marker "
                         f"(found {counts[START]} and {counts[END]})")
    head, rest = text.split(START, 1)
    if END not in rest:
        raise StageError(f"{readme}: {END!r} comes before {START!r}")
    return head, rest.split(END, 1)[1]


def update_readme(readme: Path, section: str) -> Path:
    """Replace what lies between ``<!-- results:start -->`` and ``<!-- results:end -->`` in
    ``readme`` with ``section`` (markers kept), atomically; bad markers: :func:`split_readme`."""
    head, tail = split_readme(readme)
    body = section.strip("\n")
    return atomic_write_text(readme, f"{head}{START}\n{body}\n{END}{tail}")
