"""What a run of the matrix means for CI: its exit code, and the files it leaves behind.

Exit codes (`bitmatch matrix`, `bitmatch aggregate`):

- 0: every verdict passes (under the policy);
- 1: a verdict failure: a desync, a nondeterministic cell, or a passing cell over the failure-probability
  threshold, unless the policy expects that verdict of that codec (a float twin's known desyncs);
- 2: an infrastructure failure: a cell that produced no evidence (error, timeout, worker-lost, not-run) or a
  target that could not take part. It wins over 1: the run did not see everything.

Not-run never passes: it is an infrastructure failure, never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec.vocabulary import Precision, Verdict
from server import exports
from server.db import Database
from server.models import Job

OK, VERDICT_FAILURE, INFRASTRUCTURE_FAILURE = 0, 1, 2
FAIL_ON = ("any", "integer-desync")


@dataclass
class Policy:
    fail_on: str = "any"  # "integer-desync": only integer codecs' desyncs and nondeterminism fail the run
    expected: dict[str, set[str]] = field(default_factory=dict)  # codec name or digest -> verdicts allowed
    max_failure_probability: float | None = None
    missing_targets: list[str] = field(default_factory=list)  # asked for, but could not take part


@dataclass
class Judgement:
    exit_code: int
    failures: list[str]
    infrastructure: list[str]

    def lines(self) -> list[str]:
        head = {
            OK: "PASS",
            VERDICT_FAILURE: "FAIL (verdicts)",
            INFRASTRUCTURE_FAILURE: "FAIL (infrastructure)",
        }
        out = [
            f"{head[self.exit_code]}: {len(self.failures)} verdict failures, "
            f"{len(self.infrastructure)} infrastructure failures"
        ]
        out += [f"  infrastructure: {line}" for line in self.infrastructure[:50]]
        out += [f"  failure: {line}" for line in self.failures[:50]]
        return out


def _describe(cell: dict[str, Any]) -> str:
    text = (
        f"{cell['codec_name']} {cell['image_name']} {cell['encoder']} -> {cell['decoder']}: {cell['verdict']}"
    )
    return f"{text} ({cell['detail']})" if cell.get("detail") else text


def judge(cells: list[dict[str, Any]], policy: Policy) -> Judgement:
    failures, infrastructure = [], [f"target {t} could not take part" for t in policy.missing_targets]
    for cell in cells:
        verdict = Verdict(cell["verdict"])
        allowed = policy.expected.get(cell["codec_name"], set()) | policy.expected.get(cell["codec"], set())
        if verdict.is_infrastructure:
            infrastructure.append(_describe(cell))
            continue
        integer = Precision(cell["precision"]).is_integer if cell["precision"] in set(Precision) else False
        if policy.fail_on == "integer-desync" and not integer:
            continue
        if not verdict.passes and verdict not in allowed:
            failures.append(_describe(cell))
        elif cell["nondeterministic"] and "nondeterministic" not in allowed:
            failures.append(_describe(cell) + " (nondeterministic)")
        elif _over_threshold(cell, policy) and "at-risk" not in allowed:
            probability = cell["risk"]["failure_probability"]
            failures.append(_describe(cell) + f" (failure probability {probability:.3g})")
    code = INFRASTRUCTURE_FAILURE if infrastructure else VERDICT_FAILURE if failures else OK
    return Judgement(code, failures, infrastructure)


def _over_threshold(cell: dict[str, Any], policy: Policy) -> bool:
    probability = (cell.get("risk") or {}).get("failure_probability")
    limit = policy.max_failure_probability
    return limit is not None and probability is not None and probability > limit


def write_outputs(db: Database, job_id: int, out: Path) -> dict[str, Path]:
    """The run's files: results.json, cells.csv, junit.xml and report.html (self-contained)."""
    from server.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        name: out / file
        for name, file in (
            ("json", "results.json"),
            ("csv", "cells.csv"),
            ("junit", "junit.xml"),
            ("html", "report.html"),
        )
    }
    with db.session() as session:
        job = session.get(Job, job_id)
        paths["json"].write_text(exports.to_json(session, job))
        paths["csv"].write_text(exports.to_csv(session, job))
        paths["junit"].write_text(exports.to_junit(session, job))
    write_report(db, job_id, paths["html"])
    return paths


def summary_markdown(result: Any) -> str:
    """A run as Markdown (a CI job summary): the judgement, the trends that need a look, the outputs."""
    from collections import Counter

    from codec.vocabulary import Trend

    judgement = result.judgement
    lines = ["## bitmatch", "", f"**{judgement.lines()[0]}**", ""]
    counts = Counter(t.trend for t in result.trends)
    lines.append(" · ".join(f"{trend}: {counts[trend]}" for trend in Trend if counts[trend]))
    urgent = [t for t in result.trends if t.trend not in (Trend.PASS, Trend.NEW)]
    if urgent:
        lines += [
            "",
            "| trend | codec | image | encoder | decoder | verdict | since |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in urgent[:100]:
            codec, image, encoder, decoder = t.key
            verdict = t.runs[-1].verdict if t.runs else ""
            lines.append(
                f"| {t.trend} | {codec} | {image} | {encoder} | {decoder} | {verdict} | "
                f"{t.since.label if t.since else ''} |"
            )
    for line in judgement.infrastructure[:20] + judgement.failures[:20]:
        lines.append(f"- {line}")
    return "\n".join(lines) + "\n\n"
