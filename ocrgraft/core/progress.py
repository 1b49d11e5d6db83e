"""What a long conversion is doing, on stderr. On a terminal, work made of many parts (stage checks,
simulator inputs, images) and long single calls (an export, a TPU-MLIR step) get a live bar (tqdm);
in a log file they get plain lines, one when they start and one every LINE_EVERY_S while they last, so
CI logs stay short. `-q` (QUIET) silences both; errors are printed by the CLI regardless.

OCRGRAFT_PROGRESS=bar|lines forces one form (tests, or a terminal that misreports itself).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

QUIET = False
LINE_EVERY_S = 10.0  # in a log: a line per long piece of work at most this often
REFRESH_S = 0.5  # on a terminal: how often a running call's clock is redrawn


def say(message: str) -> None:
    """One progress line (above any live bar)."""
    if QUIET:
        return
    if _bars():
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def _bars() -> bool:
    forced = os.environ.get("OCRGRAFT_PROGRESS", "")
    if QUIET or forced == "lines":
        return False
    if forced != "bar" and not sys.stderr.isatty():
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class Steps:
    """`advance()` once per finished part; `note` names the part just finished."""

    def __init__(self, desc: str, total: int, unit: str, announce: bool, show: bool = True):
        self.desc, self.total, self.unit, self.done = desc, total, unit, 0
        self._bar = None
        self._last_line = time.monotonic()
        self._silent = QUIET or not show
        if self._silent:
            return
        if _bars():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True
            )
        elif announce:
            say(f"{desc}: {total} {unit}{'s' if total != 1 else ''}")

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
        elif (
            not self._silent and time.monotonic() - self._last_line > LINE_EVERY_S and self.done < self.total
        ):
            self._last_line = time.monotonic()
            say(f"{self.desc}: {self.done}/{self.total}" + (f" (last: {note})" if note else ""))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def steps(
    desc: str, total: int, unit: str = "item", announce: bool = False, show: bool = True
) -> Iterator[Steps]:
    """Progress over `total` parts; `announce` prints the starting line in a log too; `show` False
    counts silently (a library caller that asked for no progress)."""
    tracker = Steps(desc, total, unit, announce, show)
    try:
        yield tracker
    finally:
        tracker.close()


@contextmanager
def busy(desc: str, line: bool = True) -> Iterator[None]:
    """One long call: on a terminal a running clock, in a log the line `desc` when it starts (unless
    `line` is False: a step whose caller already said what it is doing)."""
    if not _bars():
        if line:
            say(desc)
        yield
        return
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, bar_format="{desc} {elapsed}", file=sys.stderr, leave=True)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(REFRESH_S):
            bar.refresh()

    clock = threading.Thread(target=tick, daemon=True)
    clock.start()
    try:
        yield
    finally:
        stop.set()
        clock.join()
        bar.close()
