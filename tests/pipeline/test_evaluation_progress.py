"""The evaluate stage's progress over the val images: a bar with ETA on a terminal only."""

from __future__ import annotations

import io
import re
import sys
import time

import pytest

from pipeline.evaluation.progress import over_images


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_a_bar_with_eta_is_drawn_on_a_terminal_only(monkeypatch, terminal: bool) -> None:
    monkeypatch.delenv("DGMN_PROGRESS", raising=False)
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    seen = []
    for index in over_images(3, "evaluate: single scale"):
        seen.append(index)
        time.sleep(0.15)  # past tqdm's redraw interval (0.1 s): every step is drawn
    assert seen == [0, 1, 2]
    shown = stderr.getvalue()
    if terminal:
        assert "evaluate: single scale" in shown
        # "2/3 [00:00<00:00, …]": images done of all, elapsed < remaining (the ETA)
        assert re.search(r"[12]/3 \[\d\d:\d\d<\d\d:\d\d", shown), shown
    else:
        assert shown == ""


def test_dgmn_progress_0_switches_the_bar_off(monkeypatch) -> None:
    monkeypatch.setenv("DGMN_PROGRESS", "0")
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert list(over_images(2, "evaluate")) == [0, 1]
    assert sys.stderr.getvalue() == ""
