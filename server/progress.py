"""How a job's progress is shown while `bitmatch demo` or `bitmatch matrix` follows it, on stderr.

A live line (rich) when stderr is a terminal, else a bounded number of plain lines (the first, a status
change, a stage finished, every tenth of the tasks, the last), so a log or a CI console gets a dozen lines
per job, not one per poll. The last line of a cancelled job says how much was done and how much was
cancelled."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

import click

from codec.vocabulary import JobStatus

STAGES = ("encodes", "decodes", "cells")
TASK_STAGES = ("encodes", "decodes")
STOPPED = (("cancelled", "cancelled"), ("not_run", "not run"))  # progress keys of what did not run
STEPS = 10  # plain lines: one each time another tenth of the tasks is done


class JobProgress(Protocol):
    def update(self, summary: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def stage_text(stage: str, counts: dict[str, int]) -> str:
    """`cells 57/200`, with what did not run: `cells 57/200 (143 cancelled)`."""
    stopped = [f"{counts[key]} {label}" for key, label in STOPPED if counts.get(key)]
    suffix = f" ({', '.join(stopped)})" if stopped else ""
    return f"{stage} {counts['done']}/{counts['total']}{suffix}"


def progress_line(summary: dict[str, Any]) -> str:
    parts = ", ".join(stage_text(stage, summary["progress"][stage]) for stage in STAGES)
    return f"  job {summary['id']} {summary['status']}: {parts}"


def tasks_done(summary: dict[str, Any]) -> tuple[int, int]:
    """Encodes and decodes done, and planned: the work the live bar and the plain steps measure."""
    progress = summary["progress"]
    return (
        sum(progress[stage]["done"] for stage in TASK_STAGES),
        sum(progress[stage]["total"] for stage in TASK_STAGES),
    )


class PlainProgress:
    """Plain lines through `echo`, only when something worth a line happened."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last_line = ""
        self.last_status: str | None = None
        self.finished_stages: set[str] = set()
        self.step = -1

    def update(self, summary: dict[str, Any]) -> None:
        if self._worth_a_line(summary):
            line = progress_line(summary)
            if line != self.last_line:
                self.echo(line)
                self.last_line = line

    def _worth_a_line(self, summary: dict[str, Any]) -> bool:
        status, progress = summary["status"], summary["progress"]
        done, total = tasks_done(summary)
        step = STEPS * done // total if total else STEPS
        finished = {s for s in STAGES if progress[s]["total"] and progress[s]["done"] >= progress[s]["total"]}
        worth = (
            status != self.last_status
            or not JobStatus(status).is_active
            or step > self.step
            or bool(finished - self.finished_stages)
        )
        self.last_status, self.step, self.finished_stages = status, max(step, self.step), finished
        return worth

    def close(self) -> None:
        pass


class LiveProgress:
    """One line redrawn in place on a terminal (rich), left showing the last state."""

    def __init__(self, job_id: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("  job {task.fields[job]} {task.fields[status]}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task("", total=None, job=job_id, status="", counts="")
        self.progress.start()

    def update(self, summary: dict[str, Any]) -> None:
        done, total = tasks_done(summary)
        counts = ", ".join(stage_text(stage, summary["progress"][stage]) for stage in STAGES)
        self.progress.update(
            self.task, completed=done, total=total or None, status=summary["status"], counts=counts
        )

    def close(self) -> None:
        self.progress.stop()


def job_progress(job_id: int, echo: Callable[[str], None] | None = None) -> JobProgress:
    """The live line when stderr is a terminal and rich is there, else plain lines on stderr."""
    if sys.stderr.isatty():
        try:
            return LiveProgress(job_id)
        except ImportError:
            pass
    return PlainProgress(echo or (lambda line: click.echo(line, err=True)))
