"""A text progress bar on stderr for commands that take a while (the Threads views backfill,
the feed and Reels backfill).

On a terminal the bar is redrawn in place with a carriage return. On a pipe or a log file
every redraw would be a line of noise, so there it writes one line per tenth of the work.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

WIDTH = 24


class ProgressBar:
    """`update(done, total, values)` after each step; `close()` ends the line on a terminal."""

    def __init__(
        self,
        label: str,
        *,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "chunks",
        counted: str = "values",
    ) -> None:
        self.label = label
        self.unit = unit  # what `done` and `total` count
        self.counted = counted  # what `values` counts
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.total = 0
        self._tenths = 0  # the last tenth written as a line (not on a terminal)
        self._width = 0  # the longest line drawn, so a shorter one blanks what is left
        self._open = False  # a terminal line waits for its newline

    def render(self, done: int, total: int, values: int) -> str:
        """One line: label, bar, percent, chunks, values stored, seconds elapsed."""
        fraction = min(done / total, 1.0) if total > 0 else 1.0
        filled = round(WIDTH * fraction)
        bar = "#" * filled + "." * (WIDTH - filled)
        elapsed = self.clock() - self.started
        return (
            f"{self.label} [{bar}] {fraction:4.0%} {done}/{total} {self.unit}, "
            f"{values} {self.counted}, {elapsed:.1f}s"
        )

    def update(self, done: int, total: int, values: int) -> None:
        self.done, self.total = done, total
        line = self.render(done, total, values)
        if self.tty:
            self._width = max(self._width, len(line))
            self.stream.write("\r" + line.ljust(self._width))
            self._open = True
        else:
            tenths = 10 * done // total if total > 0 else 10
            if tenths <= self._tenths and done < total:
                return
            self._tenths = max(tenths, self._tenths)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the terminal line, so whatever is printed next starts on its own line."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
