"""`bitmatch demo --once --json` for real: a subprocess that starts the coordinator and every local worker,
runs the int16 and float packages and exits with one JSON object on stdout."""

import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import httpx
import pytest

from bitmatch.cli import cli
from bitmatch.demo.table import VERDICT_ORDER, matrix_text, verdict_counts
from server.progress import STEPS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.qemu]


def demo_argv(data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from bitmatch.cli import main; main()",
        "demo",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def run_demo(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        demo_argv(data_dir, "--once", "--json"), cwd=ROOT, capture_output=True, text=True, timeout=1800
    )


def processes_writing_under(directory: Path) -> list[int]:
    """Processes with a file open below `directory` (every child of the demo logs to data-dir/logs)."""
    pids = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd).startswith(str(directory)) for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
    return pids


def coordinator_url(stderr: str) -> str:
    return re.search(r"\((http://127\.0\.0\.1:\d+)/jobs/\d+\)", stderr).group(1)


def test_demo_once_json_runs_every_local_target(tmp_path):
    done = run_demo(tmp_path / "demo")
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)  # exactly one JSON object: anything else on stdout fails here

    assert set(result) == {"job", "report", "summary", "codecs", "jobs"}
    assert isinstance(result["job"], int) and result["job"] == result["jobs"][0]["id"]
    for job in result["jobs"]:
        assert Path(job["report"]).is_file() and "<table" in Path(job["report"]).read_text()
    assert len(result["codecs"]) == 2
    int16 = [name for name in result["codecs"] if name.startswith("int16")]
    floats = [name for name in result["codecs"] if name.startswith("float")]
    assert len(int16) == 1 and len(floats) == 1, result
    for counts in result["codecs"].values():
        assert set(counts) <= set(VERDICT_ORDER) and all(n > 0 for n in counts.values())
    assert set(result["codecs"][int16[0]]) <= {"bit-exact", "latent-exact"}, result

    # the Kodak-size photographs on the native targets: the float twin breaks between devices, int16 never
    kodak, small = result["jobs"]
    assert "qemu-aarch64" not in kodak["targets"] and "qemu-aarch64" in small["targets"]
    assert kodak["codecs"][floats[0]].get("desync", 0) >= 1, kodak
    assert "desync" not in kodak["codecs"][int16[0]], kodak
    assert result["summary"].startswith("float: ") and "int16: 0" in result["summary"], result["summary"]
    assert result["summary"] in done.stderr
    # stderr is a pipe: a bounded handful of progress lines per job, not one per poll
    for job in result["jobs"]:
        lines = [line for line in done.stderr.splitlines() if line.startswith(f"  job {job['id']} ")]
        assert 1 <= len(lines) <= 1 + 2 + 3 + STEPS, lines
        assert lines[-1].startswith(f"  job {job['id']} done: "), lines

    # qemu-aarch64 took part (provisioned by `make provision`; the demo would say why it was missing)
    assert "qemu-aarch64: healthy" in done.stderr, done.stderr[-4000:]
    healthy = done.stderr.count(": healthy (")
    assert healthy >= 4 and len(small["targets"]) == healthy
    assert sum(small["codecs"][int16[0]].values()) % (healthy * healthy) == 0
    # everything the demo started is stopped
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{coordinator_url(done.stderr)}/healthz", timeout=5)
    assert processes_writing_under(tmp_path / "demo" / "logs") == []


def test_ctrl_c_mid_job_stops_everything_the_demo_started(tmp_path):
    data_dir = tmp_path / "demo"
    demo = subprocess.Popen(
        demo_argv(data_dir, "--targets", "cpu,qemu-aarch64", "--json"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        for line in demo.stderr:
            seen.append(line)
            if re.match(r"job \d+: ", line):  # submitted: coordinator and workers are all running now
                break
        url = coordinator_url("".join(seen))
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert len(processes_writing_under(data_dir / "logs")) >= 3, "coordinator and two workers"
        demo.send_signal(signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, "".join(seen) + stderr
    assert stdout == ""  # no result: the job never finished
    assert "interrupted" in stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=5)
    assert processes_writing_under(data_dir / "logs") == []
    database = sqlite3.connect(data_dir / "coordinator" / "bitmatch.sqlite3")
    try:  # cancelled, so no later coordinator on this data directory resumes it
        assert {status for (status,) in database.execute("SELECT status FROM jobs")} == {"cancelled"}
    finally:
        database.close()


def test_demo_is_registered_with_its_options():
    command = cli.commands["demo"]
    options = {opt for param in command.params for opt in param.opts}
    assert {"--once", "--json", "--data-dir", "--port", "--targets", "--no-provision"} <= options


def test_the_terminal_matrix_shows_one_mark_per_image_and_the_counts_add_up():
    cell = {"verdict": "bit-exact", "nondeterministic": False}
    odd = {"verdict": "desync", "nondeterministic": True}
    position = {"counts": {"bit-exact": 1}, "cells": [cell]}
    mixed = {"counts": {"bit-exact": 1, "desync": 1}, "cells": [cell, odd]}
    matrix = {
        "codec_name": "int16-abc",
        "encoders": ["cpu", "qemu-aarch64"],
        "decoders": ["cpu", "qemu-aarch64"],
        "rows": [[position, position], [position, mixed]],
    }
    text = matrix_text(matrix).splitlines()
    assert text[0] == "int16-abc:"
    assert text[-1].split() == ["qemu-aarch64", "=", "=X!"]
    assert verdict_counts([matrix]) == {"int16-abc": {"bit-exact": 4, "desync": 1}}


def cpu_demo_argv(data_dir: Path) -> list[str]:
    """A short demo on the cpu target alone: 2 codecs x 3 images x 4 repeats = 24 encodes, 24 decodes."""
    return demo_argv(
        data_dir, "--once", "--targets", "cpu", "--images", "tiny", "--repeat", "4", "--no-provision"
    )


def job_matrices_text(data_dir: Path) -> list[str]:
    """The terminal matrices of the demo's job, from the database it leaves behind."""
    from server import queries
    from server.db import Database
    from server.models import Job
    from server.settings import Settings

    database = Database(Settings(data_dir=data_dir / "coordinator").database_url)
    try:
        with database.session() as session:
            return [matrix_text(m) for m in queries.job_matrix(session, session.get(Job, 1))]
    finally:
        database.dispose()


def test_with_stderr_a_pipe_progress_is_a_few_plain_lines_and_the_matrices_stay_on_stdout(tmp_path):
    done = subprocess.run(
        cpu_demo_argv(tmp_path / "demo"), cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-4000:]
    progress = [line for line in done.stderr.splitlines() if re.match(r"  job \d+ ", line)]
    assert 2 <= len(progress) <= 1 + 2 + 3 + STEPS, progress
    assert progress[-1] == "  job 1 done: encodes 24/24, decodes 24/24, cells 6/6"
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert not [line for line in done.stdout.splitlines() if re.match(r"  job \d+ ", line)]
    for text in job_matrices_text(tmp_path / "demo"):
        assert text in done.stdout
    assert "\x1b" not in done.stdout


def test_in_a_terminal_progress_is_one_live_line(tmp_path):
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    demo = subprocess.Popen(
        cpu_demo_argv(tmp_path / "demo"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"},
    )
    os.close(secondary)
    terminal = bytearray()
    reader = threading.Thread(target=read_until_closed, args=(primary, terminal))
    reader.start()
    try:
        stdout, _ = demo.communicate(timeout=1200)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        reader.join(timeout=60)
        os.close(primary)
    assert demo.returncode == 0, terminal.decode(errors="replace")[-4000:]
    text = terminal.decode(errors="replace")
    assert "cells 6/6" in text
    assert sum("job 1 " in line for line in text.split("\n")) == 1, text  # redrawn in place
    assert stdout.count(b"\x1b") == 0
    for matrix in job_matrices_text(tmp_path / "demo"):
        assert matrix in stdout.decode()


def read_until_closed(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer closed the terminal
            return
        if not chunk:
            return
        into += chunk


def test_a_taken_port_is_refused_in_one_line_that_suggests_a_free_one(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [*demo_argv(tmp_path / "demo")[:4], "--port", str(port), "--data-dir", str(tmp_path), "--once"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    found = re.fullmatch(
        rf"error: port {port} on 127\.0\.0\.1 is in use; try --port (\d+) \(free now\), "
        r"or --port 0 for any free port",
        line,
    )
    assert found, line
    suggested = int(found.group(1))
    assert suggested != port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))  # it was free
