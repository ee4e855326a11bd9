"""The README results section and its replacement between markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.common.errors import StageError
from pipeline.reporting.readme import END, START, Block, results_section, update_readme


def test_section_has_heading_blocks_and_images() -> None:
    text = results_section("smoke", [Block("T1", "| a |\n", [("c", "reports/x.png")]),
                                     Block("Plots", images=[("d", "y.png")])], intro="hi")
    assert text.startswith("## Results (profile `smoke`)\n\nhi\n\n### T1\n\n| a |\n")
    assert "![c](reports/x.png)" in text and "### Plots\n\n![d](y.png)" in text


def test_update_replaces_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\nold results\n{END}\n\n## after\n")
    update_readme(readme, "## Results\n\nnew\n")
    assert readme.read_text() == f"# title\n\n{START}\n## Results\n\nnew\n{END}\n\n## after\n"
    update_readme(readme, "again")  # idempotent shape: markers stay
    assert readme.read_text() == f"# title\n\n{START}\nagain\n{END}\n\n## after\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temp files left


@pytest.mark.parametrize("text", ["# no markers\n", f"{START}\n{START}\n{END}\n",
                                  f"{START}\nonly start\n", f"{END}\nx\n{START}\n"])
def test_bad_markers_are_an_error_and_leave_the_file(tmp_path: Path, text: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(StageError, match="results:"):
        update_readme(readme, "new")
    assert readme.read_text() == text


def test_missing_readme_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="cannot read"):
        update_readme(tmp_path / "nope.md", "x")
