"""Progress of long command-line work, on stderr: a rich bar in a terminal, a few plain lines otherwise.

Library functions take a `Progress` (`SILENT` by default) and call `advance()` once per step; the commands
open one with `progress(description, total)`. stdout stays for results, so `--json` output is never mixed
with progress.

In an interactive terminal the bar shows the steps done, the elapsed and the remaining time. Anywhere else
(a pipe, a CI log) it prints plain lines: one with the first step, at most one per 10 % of the steps and
never two within `PLAIN_INTERVAL_S`, and a final line with the count and the time taken (or where it
stopped, when the work failed). `note(line)` prints a line the user must see (a failed task) in both modes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

PLAIN_STEPS = 10  # plain mode: at most one line per tenth of the work
PLAIN_INTERVAL_S = 2.0  # ... and at most one line every two seconds


class Progress:
    """Steps of one piece of work, reported nowhere: what a library function gets when nobody watches."""

    def advance(self, steps: int = 1) -> None:
        """`steps` more steps are done."""

    def add_total(self, steps: int) -> None:
        """The work turned out `steps` steps longer (known only once it started)."""

    def note(self, line: str) -> None:
        """A line the user must see, printed whatever the mode."""


SILENT = Progress()


class PlainProgress(Progress):
    """Plain lines for a stream that is not a terminal: a start line (with the first step), a few
    milestones and a final line."""

    def __init__(self, description: str, total: int, unit: str, stream: TextIO) -> None:
        self.description, self.total, self.unit, self.stream = description, total, unit, stream
        self.done = 0
        self.started = self.last_line = time.monotonic()
        self.next_mark = self._mark_after(0)
        self.announced = False

    def advance(self, steps: int = 1) -> None:
        if not self.announced:  # announced with the first step, so a mistake found before it is one line
            self._announce()
        self.done += steps
        if self.done < self.next_mark or self.done >= self.total:
            return
        self.next_mark = self._mark_after(self.done)
        now = time.monotonic()
        if now - self.last_line >= PLAIN_INTERVAL_S:
            self.last_line = now
            self._write(f"{self.description}: {self.done}/{self.total} ({100 * self.done // self.total} %)")

    def add_total(self, steps: int) -> None:
        self.total += steps
        self.next_mark = self._mark_after(self.done)

    def note(self, line: str) -> None:
        self._write(line)

    def finish(self, completed: bool) -> None:
        elapsed = time.monotonic() - self.started
        if not self.announced:
            return  # there was no work to report on
        if completed:
            self._write(f"{self.description}: {self.done}/{self.total} done in {elapsed:.1f} s")
        else:
            self._write(f"{self.description}: stopped at {self.done}/{self.total} after {elapsed:.1f} s")

    def _announce(self) -> None:
        self.announced = True
        self.last_line = time.monotonic()
        self._write(f"{self.description}: {self.total} {self.unit}")

    def _mark_after(self, done: int) -> int:
        """The first step count past `done` that completes another tenth of the work."""
        total = max(1, self.total)
        tenth = done * PLAIN_STEPS // total + 1
        return -(-tenth * total // PLAIN_STEPS)

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class BarProgress(Progress):
    """A rich progress bar on the terminal's stderr."""

    def __init__(self, description: str, total: int, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.total, self.done = total, 0
        self.task = self.bar.add_task(description, total=total)
        self.bar.start()

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        self.bar.advance(self.task, steps)

    def add_total(self, steps: int) -> None:
        self.total += steps
        self.bar.update(self.task, total=self.total)

    def note(self, line: str) -> None:
        self.bar.console.print(line, markup=False, highlight=False)

    def finish(self, completed: bool) -> None:
        if not completed and not self.done:
            self.bar.live.transient = True  # failed before the first step: the error line says it all
        self.bar.stop()


@contextmanager
def progress(
    description: str, total: int, unit: str = "steps", stream: TextIO | None = None
) -> Iterator[Progress]:
    """A `Progress` on stderr (or `stream`) for `total` steps: a bar in an interactive terminal (rich's
    test, so TTY_INTERACTIVE=0 turns it off), plain lines elsewhere."""
    from rich.console import Console

    stream = stream or sys.stderr
    console = Console(file=stream)
    reporter: PlainProgress | BarProgress
    if console.is_interactive:
        reporter = BarProgress(description, total, console)
    else:
        reporter = PlainProgress(description, total, unit, stream)
    try:
        yield reporter
    except BaseException:
        reporter.finish(completed=False)
        raise
    reporter.finish(completed=True)
