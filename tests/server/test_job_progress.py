"""A job's progress as `bitmatch demo` and `bitmatch matrix` show it when stderr is not a terminal: a bounded
number of plain lines, whatever the number of polls, and a last line that says what was cancelled."""

from server.progress import STEPS, PlainProgress, progress_line

ENCODES, DECODERS = 40, 4


def summary(encodes: int, decodes: int, status: str = "running", cancelled: bool = False) -> dict:
    """A job summary as GET /api/jobs/{id} gives it (cells follow the decodes one to one)."""

    def stage(done: int, total: int) -> dict:
        stopped = total - done if cancelled else 0
        return {"done": done, "cancelled": stopped, "not_run": 0, "total": total}

    total_decodes = ENCODES * DECODERS
    return {
        "id": 7,
        "status": status,
        "progress": {
            "encodes": stage(encodes, ENCODES),
            "decodes": stage(decodes, total_decodes),
            "cells": stage(decodes, total_decodes),
        },
    }


def polls() -> list[dict]:
    """Every poll of a job run to the end: one task more each time, 200 polls."""
    seen = [summary(0, 0, "queued")]
    seen += [summary(done, 0) for done in range(1, ENCODES + 1)]
    seen += [summary(ENCODES, done) for done in range(1, ENCODES * DECODERS + 1)]
    return [*seen, summary(ENCODES, ENCODES * DECODERS, "done")]


def test_a_long_job_prints_a_bounded_number_of_plain_lines_and_its_last_state():
    lines: list[str] = []
    shown = PlainProgress(lines.append)
    for poll in polls():
        shown.update(poll)
        shown.update(poll)  # the same state polled twice prints nothing new
    assert len(polls()) > 200
    # the first, each status change (running, done), each finished stage and each tenth of the tasks
    assert len(lines) <= 1 + 2 + 3 + STEPS, lines
    assert lines[0] == "  job 7 queued: encodes 0/40, decodes 0/160, cells 0/160"
    assert "  job 7 running: encodes 40/40, decodes 0/160, cells 0/160" in lines  # the encode stage is over
    assert lines[-1] == "  job 7 done: encodes 40/40, decodes 160/160, cells 160/160"
    done = [int(line.split("decodes ")[1].split("/")[0]) for line in lines]
    assert done == sorted(done)


def test_a_cancelled_job_ends_on_a_line_with_what_was_done_and_what_was_cancelled():
    lines: list[str] = []
    shown = PlainProgress(lines.append)
    for poll in polls()[:60]:
        shown.update(poll)
    shown.update(summary(ENCODES, 19, "cancelling"))
    shown.update(summary(ENCODES, 19, "cancelled", cancelled=True))
    assert (
        lines[-1]
        == "  job 7 cancelled: encodes 40/40, decodes 19/160 (141 cancelled), cells 19/160 (141 cancelled)"
    )
    assert lines[-2].startswith("  job 7 cancelling: ")


def test_a_line_names_work_that_did_not_run():
    line = progress_line(
        {
            "id": 3,
            "status": "done",
            "progress": {
                "encodes": {"done": 3, "cancelled": 0, "not_run": 0, "total": 3},
                "decodes": {"done": 5, "cancelled": 0, "not_run": 1, "total": 6},
                "cells": {"done": 5, "cancelled": 0, "not_run": 1, "total": 6},
            },
        }
    )
    assert line == "  job 3 done: encodes 3/3, decodes 5/6 (1 not run), cells 5/6 (1 not run)"
