"""codec/progress.py: a bar in an interactive terminal, a bounded number of plain lines anywhere else."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codec import progress as progress_module
from codec.build import build_random
from codec.images import save_png
from codec.networks import synthetic_images
from codec.progress import PlainProgress, progress

ROOT = Path(__file__).resolve().parents[2]
ANSI_ESCAPE = "\x1b"


class Clock:
    """time.monotonic for PlainProgress: it moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_plain_mode_prints_one_line_per_tenth_at_most(clock: Clock) -> None:
    stream = io.StringIO()
    reporter = PlainProgress("work", 1000, "items", stream)
    for _ in range(1000):
        clock.now += 1.0  # slow steps: only the 10 % rule limits the lines
        reporter.advance()
    reporter.finish(completed=True)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "work: 1000 items"
    assert lines[1:-1] == [f"work: {n}/1000 ({n // 10} %)" for n in range(100, 1000, 100)]
    assert lines[-1] == "work: 1000/1000 done in 1000.0 s"


def test_plain_mode_prints_only_start_and_end_for_quick_work(clock: Clock) -> None:
    stream = io.StringIO()
    reporter = PlainProgress("work", 50, "items", stream)
    for _ in range(50):
        reporter.advance()  # all within one instant: no milestone line
    reporter.finish(completed=True)
    assert stream.getvalue().splitlines() == ["work: 50 items", "work: 50/50 done in 0.0 s"]


def test_plain_mode_total_known_late_notes_and_a_stop(clock: Clock) -> None:
    stream = io.StringIO()
    reporter = PlainProgress("sets", 0, "tasks", stream)
    assert stream.getvalue() == ""  # nothing to announce before the total is known
    reporter.add_total(4)
    reporter.advance()
    reporter.note("encode x: bad-image (422)")
    reporter.finish(completed=False)
    assert stream.getvalue().splitlines() == [
        "sets: 4 tasks",
        "encode x: bad-image (422)",
        "sets: stopped at 1/4 after 0.0 s",
    ]


def test_no_work_prints_nothing() -> None:
    stream = io.StringIO()
    with progress("nothing", 0, stream=stream):
        pass
    assert stream.getvalue() == ""


def test_a_stream_that_is_not_a_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    stream = io.StringIO()
    with progress("plain", 3, "items", stream=stream) as steps:
        steps.advance(3)
    assert ANSI_ESCAPE not in stream.getvalue()
    assert stream.getvalue().splitlines()[-1].startswith("plain: 3/3 done in")


def test_an_interactive_terminal_gets_a_rich_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's own switches: a terminal, and an interactive one
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    stream = io.StringIO()
    with progress("bar", 12, "items", stream=stream) as steps:
        for _ in range(12):
            steps.advance()
    text = stream.getvalue()
    assert ANSI_ESCAPE in text and "bar" in text and "12/12" in text


@pytest.fixture(scope="module")
def thirty_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("progress")
    build_random(root / "int16", "int16", 4, 6, 5, 32)
    images = root / "images"
    images.mkdir()
    for index in range(30):
        save_png(np.ascontiguousarray(synthetic_images(index, 1, 64)[0]), images / f"{index:02d}.png")
    return root / "int16", images


def test_eval_through_a_pipe_prints_a_few_plain_lines_and_clean_json(
    thirty_images: tuple[Path, Path],
) -> None:
    """`bitmatch codec eval --json` with stderr a pipe: bounded plain progress there, only JSON on stdout."""
    package, images = thirty_images
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORCE_COLOR", "TTY_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bitmatch", "codec", "eval", str(images), "--codec", str(package), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["images"]) == 30
    lines = done.stderr.splitlines()
    assert ANSI_ESCAPE not in done.stderr
    assert lines[0] == "codec eval: 30 images"
    assert lines[-1].startswith("codec eval: 30/30 done in")
    assert len(lines) <= 11  # a start line, at most nine milestones, a final line: never one per image
