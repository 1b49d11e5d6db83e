"""Progress on stderr: live bars on a terminal, sparse lines in a log, nothing with -q."""

from __future__ import annotations

import time

import pytest

from ocrgraft.core import progress


@pytest.fixture(autouse=True)
def _loud(monkeypatch):
    monkeypatch.setattr(progress, "QUIET", False)


def test_a_terminal_gets_a_bar_that_counts_the_parts(monkeypatch, capsys):
    monkeypatch.setenv("OCRGRAFT_PROGRESS", "bar")
    with progress.steps("checking stage", 3, "case") as bar:
        for title in ("min", "opt", "max"):
            time.sleep(0.15)  # tqdm redraws at most every 0.1 s
            bar.advance(note=title)
    err = capsys.readouterr().err
    assert "checking stage" in err and "3/3" in err and "max" in err
    with progress.busy("exporting"):
        time.sleep(2 * progress.REFRESH_S)
    assert "exporting 00:0" in capsys.readouterr().err  # the running clock


def test_a_log_gets_a_line_per_slow_stretch_not_per_part(monkeypatch, capsys):
    monkeypatch.setenv("OCRGRAFT_PROGRESS", "lines")
    with progress.steps("simulating", 50, "input", announce=True) as bar:
        for _ in range(50):
            bar.advance()
    assert capsys.readouterr().err.splitlines() == ["simulating: 50 inputs"]  # fast: no count lines
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    with progress.steps("simulating", 3, "input") as bar:
        for name in "abc":
            bar.advance(note=name)
    assert capsys.readouterr().err.splitlines() == ["simulating: 1/3 (last: a)", "simulating: 2/3 (last: b)"]
    with progress.busy("exporting"), progress.busy("a step", line=False):
        pass
    assert capsys.readouterr().err.splitlines() == ["exporting"]


@pytest.mark.parametrize("form", ["bar", "lines"])
def test_quiet_and_unshown_progress_print_nothing(monkeypatch, capsys, form):
    monkeypatch.setenv("OCRGRAFT_PROGRESS", form)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    with progress.steps("library call", 3, show=False) as bar:
        bar.advance(3)
    monkeypatch.setattr(progress, "QUIET", True)
    progress.say("a line")
    with progress.steps("checking", 3, announce=True) as bar, progress.busy("exporting"):
        bar.advance()
    assert capsys.readouterr().err == ""
