"""Jinja2 rendering shared by the live dashboard and the static report: environment, filters, view models."""

import functools
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session

from codec.vocabulary import JobStatus, Trend
from server import history, queries, verdicts
from server.anchors import AnchorCache
from server.dashboard import rdview
from server.drift import AT_RISK_PROBABILITY
from server.models import Job

HERE = Path(__file__).parent
CSS_PATH = HERE / "static" / "dashboard.css"
RUNNING_STATUSES = tuple(status for status in JobStatus if status.is_active)

LEGEND = (
    ("bit-exact", "reconstruction identical to the encoder's"),
    ("latent-exact", "y_hat identical, reconstruction differs"),
    ("symbol-exact", "parse identical, y_hat drifts with a float mean"),
    ("desync", "scale indexes, symbols or fixed-point means differ, or the entropy decode failed"),
    ("error", "a side failed"),
    ("timeout", "a side ran out of time"),
    ("worker-lost", "the worker died, no other could take it"),
    ("not-run", "never ran; never a pass"),
    ("pending", "not decided yet"),
)


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        short=short,
        when=when,
        number=number,
        percent=percent,
        decibels=decibels,
        by_severity=by_severity,
        probability=probability,
        ulp_label=ulp_label,
        drift_class=drift_class,
    )
    env.globals.update(legend=LEGEND, stylesheet=stylesheet, at_risk_probability=AT_RISK_PROBABILITY)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def stylesheet() -> Markup:
    return Markup(CSS_PATH.read_text())


def by_severity(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Verdict counts in legend order (passes first, then the failures), unknown verdicts last."""
    order = {verdict: index for index, (verdict, _) in enumerate(LEGEND)}
    return sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def short(digest: str | None, length: int = 12) -> str:
    return (digest or "")[:length]


def when(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    """Two decimals; a difference too small for them in two significant digits, never a false +0.00."""
    if value is None:
        return "n/a"
    if value == 0 or abs(value) >= 0.005:
        return f"{value:+.2f} %"
    return f"{value:+.1e} %"


def decibels(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} dB"


def probability(value: float | None) -> str:
    """A failure probability: '0' when exactly none, else two significant digits (percent above 1 %)."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{100 * value:.2g} %" if value >= 0.01 else f"{value:.1e}"


def ulp_label(max_ulp: int | None) -> str:
    if max_ulp is None:
        return "—"
    if max_ulp == 0:
        return "exact"
    return f"{max_ulp} ulp" if max_ulp < 1000 else f"10^{math.log10(max_ulp):.1f} ulp"


def drift_class(max_ulp: int | None) -> str:
    """d-none, d-exact, then d1 (< 10 ulp), d2 (< 100), d3 (< 1000), d4 (more)."""
    if max_ulp is None:
        return "d-none"
    if max_ulp == 0:
        return "d-exact"
    return f"d{min(4, 1 + int(math.log10(max_ulp)))}"


def target_emulation(session: Session) -> dict[str, bool]:
    """Whether each target runs under an emulator, from its devices' fingerprints."""
    emulated: dict[str, bool] = {}
    for device in queries.list_devices(session):
        if device["emulated"] is not None:
            emulated[device["target"]] = emulated.get(device["target"], False) or bool(device["emulated"])
    return emulated


def job_view(
    session: Session, job: Job, anchors: AnchorCache | None = None, per_image: bool = False
) -> dict[str, Any]:
    """Everything the job page and the static report show; JPEG and WebP are drawn when `anchors` is given,
    each image's RD points when `per_image`."""
    matrices = queries.job_matrix(session, job)
    emulated = target_emulation(session)
    for matrix in matrices:
        for row in matrix["rows"]:
            for position in row:
                position["emulated"] = any(c["emulated"] for c in position["cells"])
                position["image_count"] = len(job.image_digests)
    cells = queries.cell_rows(session, job.id)
    running = job.status in RUNNING_STATUSES
    return {
        "job": queries.job_summary(session, job),
        "running": running,
        "matrices": matrices,
        "emulated": emulated,
        "cell_count": len(cells),
        "cells": cells,
        "rd": rdview.job_rd(session, job, not running, anchors, per_image),
        "verdict_counts": queries.verdict_counts(session, job.id),
        "broken_line": verdicts.broken_line(cells),
        "trends": _trends(session, job),
    }


def _trends(session: Session, job: Job) -> list[dict[str, Any]]:
    """A finished job's cells that changed or need a look, against the earlier runs of its series."""
    if job.status in RUNNING_STATUSES:
        return []
    return [t.as_dict() for t in history.job_trends(session, job) if t.trend not in (Trend.PASS, Trend.NEW)]
