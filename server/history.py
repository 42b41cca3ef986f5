"""History and regressions: one cell across runs (the nights of a CI matrix, or any earlier jobs).

A cell's key is (codec name, image name, encoder target, decoder target): it follows a device pair and a
codec across runs even when the machines change underneath. Runs are the jobs of one series (a matrix or an
aggregate names its series; REST jobs without one form the unnamed series). Each run is a pass (a passing
verdict without nondeterminism) or a fail (anything else: a desync, and also a cell that did not run, which
never passes). The trend of a cell in a run, after kci-dev's classes (`Trend`):

- `new`: no earlier run of the series had it;
- `missing`: the previous run had it, this one does not;
- `unstable`: its outcome changed at least `UNSTABLE_CHANGES` times within the last `WINDOW` runs;
- otherwise by the last two outcomes: pass -> pass `pass`, fail -> pass `fixed`, pass -> fail `regression`,
  fail -> fail `persistent-failure`.

With the trend come the run in which the current verdict began (`since`), and, for a failing cell that once
passed, the fingerprint fields that differ between the last good run and the first bad one.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from codec.vocabulary import Trend
from server import verdicts
from server.models import Cell, Codec, Fingerprint, Image, Job

WINDOW = 5
UNSTABLE_CHANGES = 3
TREND_ORDER = (
    Trend.REGRESSION,
    Trend.UNSTABLE,
    Trend.PERSISTENT_FAILURE,
    Trend.MISSING,
    Trend.FIXED,
    Trend.NEW,
    Trend.PASS,
)
CellKey = tuple[str, str, str, str]  # codec name, image name, encoder target, decoder target


@dataclass(frozen=True)
class Run:
    job_id: int
    label: str
    created_at: str | None
    cell_id: int
    verdict: str
    passed: bool
    encoder_fingerprint: dict[str, Any] | None
    decoder_fingerprint: dict[str, Any] | None


@dataclass
class CellTrend:
    key: CellKey
    trend: Trend
    runs: list[Run]  # oldest first, up to and including the job's own run (if it has one)
    since: Run | None = None
    fingerprint_diff: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        codec, image, encoder, decoder = self.key
        return {
            "codec": codec,
            "image": image,
            "encoder": encoder,
            "decoder": decoder,
            "trend": self.trend,
            "verdict": self.runs[-1].verdict if self.runs else None,
            "since": _run_dict(self.since),
            "runs": [_run_dict(run) for run in self.runs],
            "fingerprint_diff": self.fingerprint_diff,
        }


def _run_dict(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "job": run.job_id,
        "label": run.label,
        "created_at": run.created_at,
        "cell": run.cell_id,
        "verdict": run.verdict,
        "passed": run.passed,
    }


def series_of(job: Job) -> str | None:
    request = job.request if isinstance(job.request, dict) else {}
    series = request.get("series")
    return str(series) if series else None


def run_label(job: Job) -> str:
    request = job.request if isinstance(job.request, dict) else {}
    return str(request.get("label") or f"job {job.id}")


def series_jobs(session: Session, job: Job) -> list[Job]:
    """The runs of the job's series up to and including it, oldest first."""
    series = series_of(job)
    jobs = session.scalars(select(Job).where(Job.id <= job.id).order_by(Job.id))
    return [j for j in jobs if series_of(j) == series]


def _runs_by_key(session: Session, jobs: list[Job]) -> dict[CellKey, dict[int, Run]]:
    ids = [j.id for j in jobs]
    labels = {j.id: (run_label(j), j.created_at.isoformat() if j.created_at else None) for j in jobs}
    fingerprints = {f.id: f.info for f in session.scalars(select(Fingerprint))}
    rows = session.execute(
        select(Cell, Codec.name, Image.name)
        .join(Codec, Cell.codec_id == Codec.id)
        .join(Image, Cell.image_id == Image.id)
        .where(Cell.job_id.in_(ids))
    )
    runs: dict[CellKey, dict[int, Run]] = defaultdict(dict)
    for cell, codec_name, image_name in rows:
        key = (codec_name, image_name, cell.encoder_target, cell.decoder_target)
        label, created = labels[cell.job_id]
        runs[key][cell.job_id] = Run(
            job_id=cell.job_id,
            label=label,
            created_at=created,
            cell_id=cell.id,
            verdict=cell.verdict,
            passed=cell.verdict in verdicts.PASSING and not cell.nondeterministic,
            encoder_fingerprint=fingerprints.get(cell.encoder_fingerprint_id),
            decoder_fingerprint=fingerprints.get(cell.decoder_fingerprint_id),
        )
    return runs


def job_trends(session: Session, job: Job) -> list[CellTrend]:
    """Every cell of the job, and every cell the previous run had and this one lacks, with its trend;
    the most urgent first (`TREND_ORDER`), then by key."""
    jobs = series_jobs(session, job)
    runs = _runs_by_key(session, jobs)
    previous = jobs[-2].id if len(jobs) > 1 else None
    trends = []
    for key, by_job in runs.items():
        if job.id in by_job:
            ordered = [by_job[j.id] for j in jobs if j.id in by_job]
            trends.append(classify(key, ordered))
        elif previous is not None and previous in by_job:
            ordered = [by_job[j.id] for j in jobs if j.id in by_job]
            trends.append(CellTrend(key, Trend.MISSING, ordered, since=ordered[-1]))
    return sorted(trends, key=lambda t: (TREND_ORDER.index(t.trend), t.key))


def classify(key: CellKey, runs: list[Run]) -> CellTrend:
    """The trend of a cell from its runs, oldest first (the last is the current one)."""
    current = runs[-1]
    since = _streak_start(runs)
    if len(runs) == 1:
        return CellTrend(key, Trend.NEW, runs, since=current)
    recent = runs[-WINDOW:]
    changes = sum(a.passed != b.passed for a, b in itertools.pairwise(recent))
    before = runs[-2]
    if changes >= UNSTABLE_CHANGES:
        trend = Trend.UNSTABLE
    elif current.passed:
        trend = Trend.PASS if before.passed else Trend.FIXED
    else:
        trend = Trend.REGRESSION if before.passed else Trend.PERSISTENT_FAILURE
    result = CellTrend(key, trend, runs, since=since)
    if not current.passed:
        result.fingerprint_diff = _last_good_vs_first_bad(runs)
    return result


def _streak_start(runs: list[Run]) -> Run:
    """The first run of the current unbroken stretch of the same verdict."""
    start = len(runs) - 1
    while start > 0 and runs[start - 1].verdict == runs[-1].verdict:
        start -= 1
    return runs[start]


def _last_good_vs_first_bad(runs: list[Run]) -> dict[str, dict[str, list[Any]]]:
    """{side: {field: [last good value, first bad value]}} for the fields that differ; {} with no good run."""
    good = [i for i, run in enumerate(runs) if run.passed]
    if not good:
        return {}
    last_good = runs[good[-1]]
    first_bad = runs[good[-1] + 1] if good[-1] + 1 < len(runs) else runs[-1]
    diff = {}
    for side in ("encoder", "decoder"):
        a = getattr(last_good, f"{side}_fingerprint") or {}
        b = getattr(first_bad, f"{side}_fingerprint") or {}
        changed = {
            name: [a.get(name), b.get(name)] for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)
        }
        if changed:
            diff[side] = changed
    return diff


def cell_trend(session: Session, cell_id: int) -> CellTrend | None:
    """One cell's history (the cell page)."""
    cell = session.get(Cell, cell_id)
    if cell is None:
        return None
    job = session.get(Job, cell.job_id)
    codec, image = session.get(Codec, cell.codec_id), session.get(Image, cell.image_id)
    key = (codec.name, image.name, cell.encoder_target, cell.decoder_target)
    runs = _runs_by_key(session, series_jobs(session, job)).get(key, {})
    ordered = [runs[j] for j in sorted(runs)]
    return classify(key, ordered) if ordered else None


def regression_lines(trends: list[CellTrend]) -> list[str]:
    """What `aggregate` and `matrix` print first: the count per trend, then every cell that is neither a plain
    pass nor new, most urgent first."""
    counts = {kind: sum(t.trend == kind for t in trends) for kind in TREND_ORDER}
    lines = [", ".join(f"{counts[kind]} {kind}" for kind in TREND_ORDER if counts[kind])] if trends else []
    for trend in trends:
        if trend.trend in (Trend.PASS, Trend.NEW):
            continue
        codec, image, encoder, decoder = trend.key
        verdict = trend.runs[-1].verdict if trend.trend != Trend.MISSING else "absent"
        since = f" since {trend.since.label}" if trend.since and trend.trend != Trend.NEW else ""
        line = f"{trend.trend:<18} {codec} {image} {encoder} -> {decoder}: {verdict}{since}"
        changed = [f"{side} {name}" for side, fields in trend.fingerprint_diff.items() for name in fields]
        if changed:
            line += f" (changed: {', '.join(changed)})"
        lines.append(line)
    return lines
