"""What the demo reports of its jobs: each job's matrices, counts and one line on the console, its static
HTML report, and the JSON object `--json` prints (`{"job", "report", "summary", "codecs", "jobs"}`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitmatch.console import Console
from bitmatch.demo.table import legend, matrix_text, summed_counts, verdict_counts
from server.verdicts import broken_line


def show_job(
    console: Console, job_id: int, label: str, matrices: list[dict[str, Any]], cells: list[dict[str, Any]]
) -> tuple[str, dict[str, dict[str, int]]]:
    """Print a finished job's matrices, the legend, its counts per codec and its one line on what broke;
    returns that line and the counts."""
    console.say()
    console.say(f"job {job_id}: {label}")
    for matrix in matrices:
        console.say(matrix_text(matrix))
    console.say(legend())
    line = broken_line(cells)
    counts = verdict_counts(matrices)
    for name, by_verdict in counts.items():
        console.say(f"{name}: " + ", ".join(f"{v} {n}" for v, n in by_verdict.items()))
    console.say(line)
    return line, counts


def write_job_report(data_dir: Path, job_id: int) -> Path:
    """The job's self-contained HTML report (it outlives the dashboard), in `data_dir`/reports."""
    from server.report import write_report
    from server.settings import Settings

    db_url = Settings(data_dir=data_dir / "coordinator").database_url
    out = data_dir / "reports" / f"job-{job_id}.html"
    return write_report(db_url, job_id, out).resolve()


def job_record(
    job_id: int,
    label: str,
    targets: list[str],
    report: Path,
    line: str,
    counts: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """One job of the JSON object's "jobs"."""
    return {
        "id": job_id,
        "label": label,
        "targets": targets,
        "report": str(report),
        "summary": line,
        "codecs": counts,
    }


def demo_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON object: the first job's id, report and line, the counts summed over the jobs, every job."""
    return {
        "job": runs[0]["id"],
        "report": runs[0]["report"],
        "summary": runs[0]["summary"],
        "codecs": summed_counts(run["codecs"] for run in runs),
        "jobs": runs,
    }
