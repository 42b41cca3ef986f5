"""View models of rate-distortion: a job's RD section (its families' curves, the decoders that changed them,
per-image points on request, the BD-rate table) and the shipped RD evidence page."""

import logging
from collections import defaultdict
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from codec.errors import ImageError
from codec.vocabulary import Anchor, BdKind
from server import queries, rdcurves
from server.anchors import AnchorCache
from server.bdrate import anchor_label
from server.dashboard.charts import Line, Point, rd_chart
from server.evidence import Evidence, comparison_sides, family_label
from server.models import Job
from server.rdcurves import MIN_CURVE_POINTS, JobCurves
from server.storage import BlobNotFound

log = logging.getLogger("bitmatch.server.dashboard")

ANCHOR_REACH = 1.5  # anchors are drawn up to 1.5 x the highest codec rate: past it they flatten the curves
NOT_COMPUTABLE = "not computable: "
KIND_ORDER = {kind: index for index, kind in enumerate(BdKind)}
KIND_TITLES = {
    BdKind.CODEC_VS_CODEC: "codec vs codec",
    BdKind.CODEC_VS_ANCHOR: "codec vs anchor",
    BdKind.DECODER_VS_ENCODER: "decoder vs encoder",
}


def job_rd(
    session: Session, job: Job, finished: bool, anchors: AnchorCache | None, per_image: bool
) -> dict[str, Any]:
    """Everything the RD section of a job page shows."""
    curves = rdcurves.job_curves(session, job.id)
    measured, anchors_problem = _anchor_curves(curves, anchors)
    charts = [Markup(_family_chart(curves, measured))] if curves.own else []
    charts += [Markup(chart) for chart in _decoded_charts(curves)]
    if per_image:
        charts += [Markup(chart) for chart in _per_image_charts(curves)]
    rows = _bd_rows(session, job.id)
    return {
        "charts": charts,
        "bd_rows": [row for row in rows if row["bd_rate"] is not None],
        "bd_failed": [row for row in rows if row["bd_rate"] is None],
        "bd_absent": _bd_absent(curves, rows, finished),
        "not_compared": [f.label for f in curves.families if f.size < MIN_CURVE_POINTS] if rows else [],
        "decoders_line": _decoders_line(curves),
        "anchors_problem": anchors_problem,
        "per_image": per_image,
        "min_points": MIN_CURVE_POINTS,
    }


def _bd_rows(session: Session, job_id: int) -> list[dict[str, Any]]:
    """The job's BD-rates, codec vs codec first, each with its kind in words and a failure's bare reason."""
    rows = [
        {
            **row,
            "kind_title": KIND_TITLES.get(row["kind"], row["kind"]),
            "note": row["note"].removeprefix(NOT_COMPUTABLE) if row["bd_rate"] is None else row["note"],
        }
        for row in queries.bd_rates(session, job_id)
    ]
    return sorted(rows, key=lambda r: (KIND_ORDER.get(r["kind"], len(KIND_ORDER)), r["test"], r["anchor"]))


def _anchor_curves(
    curves: JobCurves, anchors: AnchorCache | None
) -> tuple[dict[Anchor, list[Point]], str | None]:
    """JPEG and WebP on the images of the job's curves: only for a job that has curves to compare."""
    images = sorted({image for curve in curves.bd_ready for image in curve.images})
    if anchors is None or not images:
        return {}, None
    try:
        return anchors.curves(images), None
    except (BlobNotFound, ImageError, OSError, ValueError) as exc:
        log.warning("JPEG/WebP anchors unavailable: %s", exc)
        return {}, f"JPEG and WebP could not be measured on this job's images: {type(exc).__name__}: {exc}"


def _family_chart(curves: JobCurves, measured: dict[Anchor, list[Point]]) -> str:
    lines = [Line(curve.label, curve.points) for curve in curves.own]
    reach = ANCHOR_REACH * max(bpp for curve in curves.own for bpp, _ in curve.points)
    lines += [
        Line(anchor_label(a), within_reach(points, reach), anchor=True) for a, points in measured.items()
    ]
    return rd_chart(lines, "Rate families on the encoders' own reconstructions")


def within_reach(points: list[Point], reach: float) -> list[Point]:
    """The points up to `reach` bpp and the first one past it, so the line still crosses the edge."""
    ordered = sorted(points)
    inside = [p for p in ordered if p[0] <= reach]
    beyond = [p for p in ordered if p[0] > reach][:1]
    return inside + beyond


def _decoded_charts(curves: JobCurves) -> list[str]:
    """Per family with a decoder that changed its curve: every changed curve and its encoder's curve over the
    same images."""
    by_family = defaultdict(list)
    for curve in curves.decoded:
        by_family[curve.family].append(curve)
    charts = []
    for family, decoded in by_family.items():
        references = {(c.reference_label, c.reference): None for c in decoded}  # each once, in order
        lines = [Line(label, points) for label, points in references] + [
            Line(c.label, c.points) for c in decoded
        ]
        charts.append(rd_chart(lines, f"{family.label}: decoders that changed the curve"))
    return charts


def _per_image_charts(curves: JobCurves) -> list[str]:
    charts = []
    for family in curves.families:
        series = rdcurves.per_image_series(family, curves.table)
        if series:
            lines = [Line(label, points, joined=False) for label, points in series]
            charts.append(rd_chart(lines, f"{family.label}: each image on the encoders' own reconstructions"))
    return charts


def _bd_absent(curves: JobCurves, rows: list[dict[str, Any]], finished: bool) -> str | None:
    """Why the table is empty, in one line."""
    if rows:
        return None
    if not finished:
        return "BD-rates are computed when the job finishes."
    if not curves.families:
        return "No BD-rates: the job has no RD points."
    if not curves.bd_ready:
        sizes = ", ".join(f"{f.label} ({_points(f.size)})" for f in curves.families)
        return (
            f"No BD-rates: a BD-rate compares curves of at least {MIN_CURVE_POINTS} rate points, and this "
            f"job's families have fewer: {sizes}."
        )
    return "No BD-rates: no two curves to compare (an integer family and its float twin, or JPEG and WebP)."


def _points(count: int) -> str:
    return "1 rate point" if count == 1 else f"{count} rate points"


def _decoders_line(curves: JobCurves) -> str | None:
    if not curves.decodes_compared:
        return None
    changed = sum(len(curve.pairs) for curve in curves.decoded)
    if not changed:
        return (
            f"Every decoder reproduced its encoder's curve ({curves.decodes_compared} family × encoder → "
            "decoder comparisons)."
        )
    return (
        f"{changed} of {curves.decodes_compared} decoded curves (family × encoder → decoder) differ from the "
        "encoder's own: drawn below."
    )


# --- the shipped evidence ---------------------------------------------------------------------------------


def evidence_view(evidence: Evidence) -> dict[str, Any]:
    labels = {name: family_label(name, family) for name, family in evidence.packages.items()}
    codec_rates = [
        p.bpp
        for name, family in evidence.packages.items()
        if name not in tuple(Anchor)
        for p in family.rd_points
    ]
    reach = ANCHOR_REACH * max(codec_rates) if codec_rates else float("inf")
    charts = [
        Markup(_evidence_chart(evidence, labels, reach, metric, title))
        for metric, title in (("psnr", "PSNR (dB, RGB)"), ("ms_ssim", "MS-SSIM"))
    ]
    return {
        "charts": charts,
        "families": [(labels[name], family.rd_points) for name, family in evidence.packages.items()],
        "comparisons": _evidence_comparisons(evidence, labels),
        "test_set": evidence.test_set,
    }


def _evidence_chart(evidence: Evidence, labels: dict[str, str], reach: float, metric: str, title: str) -> str:
    lines = []
    for name, family in evidence.packages.items():
        points = [(p.bpp, getattr(p, metric)) for p in family.rd_points]
        anchor = name in tuple(Anchor)
        lines.append(Line(labels[name], within_reach(points, reach) if anchor else points, anchor=anchor))
    return rd_chart(lines, f"{title} against rate, mean over the test images", y_label=title)


def _evidence_comparisons(evidence: Evidence, labels: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for key, value in evidence.bd_rate.items():
        sides = comparison_sides(key, list(evidence.packages))
        title = f"{labels[sides[0]]} vs {labels[sides[1]]}" if sides else key
        rows.append({"key": key, "title": title, **value.model_dump()})
    return rows
