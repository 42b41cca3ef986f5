"""RD points and BD-rates of a finished job (Bjontegaard delta via codec.metrics: the bjontegaard package).

RD points: the raw material, one per (codec, image, encoder, decoder): the encoder's rate and the
PSNR of the encoder's own reconstruction and of every decoder's.

BD-rates are computed only between curves (server/rdcurves.py: a rate family's mean points, at least
MIN_CURVE_POINTS of them), of three kinds:
- codec vs codec: each integer family (int16, int8) against its float twin, on the encoders' own
  reconstructions;
- codec vs anchor: each family against JPEG and WebP measured on the same images (server/anchors.py);
- decoder vs encoder: a decoder's curve, where it differs from its encoder's, against the encoder's.
A family of fewer rate points gets no BD-rate row at all (the dashboard says why, once). A comparison between
curves that bjontegaard refuses is recorded with a null value and the reason, never dropped.
"""

import math
import re
import warnings
from itertools import pairwise
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from codec.anchors import QUALITIES
from codec.metrics import bd_rate
from codec.vocabulary import Anchor, BdKind, TaskStatus
from server import rdfamilies
from server.anchors import AnchorCache
from server.models import BdRate, Decode, Encode, RdPoint
from server.rdcurves import ENCODER, MIN_CURVE_POINTS, Curve, JobCurves, job_curves

__all__ = ["ENCODER", "MIN_CURVE_POINTS", "record", "record_bd_rates", "record_points"]

Points = list[tuple[float, float]]
LABEL_CHARS = 160  # the width of the bd_rates label columns
OVERLAP_WARNING = re.compile(r"Insufficient curve overlap: '([0-9.]+)'")


def record(session: Session, job_id: int, anchors: AnchorCache | None = None) -> None:
    """(Re)compute the job's RD points and BD-rates; idempotent."""
    record_points(session, job_id)
    session.flush()
    record_bd_rates(session, job_id, anchors)


def record_points(session: Session, job_id: int) -> None:
    session.execute(delete(RdPoint).where(RdPoint.job_id == job_id))
    points = _rd_points(session, job_id)
    if points:  # one Core INSERT of every point: no ORM object per point
        session.execute(insert(RdPoint.__table__), points)


def record_bd_rates(session: Session, job_id: int, anchors: AnchorCache | None = None) -> None:
    """BD-rates between the curves of the job's recorded RD points; against JPEG and WebP when `anchors` is
    given (it measures the images it has not measured yet: call `anchor_images` first, outside a
    transaction, to do that work there)."""
    session.execute(delete(BdRate).where(BdRate.job_id == job_id))
    curves = job_curves(session, job_id)
    rows = _codec_vs_codec(job_id, curves) + _decoder_vs_encoder(job_id, curves)
    if anchors is not None:
        rows += _codec_vs_anchor(job_id, curves, anchors)
    session.add_all(rows)


def anchor_images(session: Session, job_id: int) -> list[str]:
    """The images of the job's curves, the ones JPEG and WebP must be measured on."""
    return sorted({image for curve in job_curves(session, job_id).bd_ready for image in curve.images})


def _rd_points(session: Session, job_id: int) -> list[dict[str, Any]]:
    """The job's RD points as RdPoint columns: each first encode's own reconstruction, then every first
    decode's, all at the encoder's rate (two queries for the whole job)."""
    done = TaskStatus.DONE
    encodes = session.execute(
        select(Encode.id, Encode.codec_id, Encode.image_id, Encode.target, Encode.bpp, Encode.psnr)
        .where(Encode.job_id == job_id, Encode.repeat == 0, Encode.status == done)
        .order_by(Encode.id)
    ).all()
    decodes: dict[int, list[tuple[str, float | None]]] = {}
    for encode_id, target, psnr in session.execute(
        select(Decode.encode_id, Decode.target, Decode.psnr)
        .where(Decode.job_id == job_id, Decode.repeat == 0, Decode.status == done)
        .order_by(Decode.id)
    ):
        decodes.setdefault(encode_id, []).append((target, psnr))
    return [
        {
            "job_id": job_id,
            "codec_id": encode.codec_id,
            "image_id": encode.image_id,
            "encoder_target": encode.target,
            "decoder_target": decoder_target,
            "bpp": encode.bpp,
            "psnr": psnr,
        }
        for encode in encodes
        for decoder_target, psnr in [(ENCODER, encode.psnr), *decodes.get(encode.id, [])]
        if _finite(encode.bpp) and _finite(psnr)
    ]


def _codec_vs_codec(job_id: int, curves: JobCurves) -> list[BdRate]:
    rows = []
    for test in curves.bd_ready:
        for anchor in curves.bd_ready:
            shared = [e for e in test.encoders if e in anchor.encoders]
            if anchor.family in rdfamilies.twins(curves.families, test.family) and shared:
                note = _images_note(anchor, test)
                rows.append(
                    _bd_row(
                        job_id,
                        BdKind.CODEC_VS_CODEC,
                        ", ".join(shared),
                        anchor.label,
                        test.label,
                        list(anchor.points),
                        list(test.points),
                        note,
                    )
                )
    return rows


def _codec_vs_anchor(job_id: int, curves: JobCurves, anchors: AnchorCache) -> list[BdRate]:
    rows = []
    for test in curves.bd_ready:
        measured = anchors.curves(list(test.images))
        for anchor in Anchor:
            rows.append(
                _bd_row(
                    job_id,
                    BdKind.CODEC_VS_ANCHOR,
                    ", ".join(test.encoders),
                    anchor_label(anchor),
                    test.label,
                    measured[anchor],
                    list(test.points),
                    f"mean over {len(test.images)} images, {anchor.title} on the same images",
                )
            )
    return rows


def anchor_label(anchor: Anchor) -> str:
    return f"{anchor.title} (q={QUALITIES[0]}..{QUALITIES[-1]})"


def _decoder_vs_encoder(job_id: int, curves: JobCurves) -> list[BdRate]:
    rows = []
    for test in curves.decoded:
        if not test.is_curve:
            continue
        pairs = ", ".join(f"{e}→{d}" for e, d in test.pairs)
        rows.append(
            _bd_row(
                job_id,
                BdKind.DECODER_VS_ENCODER,
                pairs,
                test.reference_label,
                test.label,
                list(test.reference),
                list(test.points),
                f"mean over {len(test.images)} images, at the encoder's rates",
            )
        )
    return rows


def _images_note(anchor: Curve, test: Curve) -> str:
    if anchor.images == test.images:
        return f"mean over {len(test.images)} images"
    return f"{anchor.label} over {len(anchor.images)} images, {test.label} over {len(test.images)}"


def _bd_row(
    job_id: int,
    kind: BdKind,
    device: str,
    anchor_label: str,
    test_label: str,
    anchor: Points,
    test: Points,
    note: str,
) -> BdRate:
    row = BdRate(
        job_id=job_id,
        kind=kind,
        device=_fit(device),
        anchor=_fit(anchor_label),
        test=_fit(test_label),
        points=min(len(anchor), len(test)),
        note=note,
    )
    if anchor == test:
        row.bd_rate = 0.0  # identical curves; interpolation would only add rounding noise
        return row
    falling = [label for label, points in ((test_label, test), (anchor_label, anchor)) if not _rises(points)]
    if falling:
        row.note = f"not computable: the quality of {' and '.join(falling)} does not rise with rate; {note}"
        return row
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = bd_rate(anchor, test)
    except AssertionError:  # bjontegaard asserts that quality rises with rate
        row.note = f"not computable: quality does not rise with rate; {note}"
        return row
    except (ValueError, ArithmeticError) as exc:
        reason = (
            "quality does not rise with rate" if "increasing" in str(exc) else f"{type(exc).__name__}: {exc}"
        )
        row.note = f"not computable: {reason}; {note}"
        return row
    warned = "; ".join(dict.fromkeys(_plain(str(w.message)) for w in caught))
    if _finite(value):
        row.bd_rate = value
        row.note = f"{note}; {warned}" if warned else note
    else:
        row.note = f"not computable: {warned or 'the curves do not overlap'}; {note}"
    return row


def _plain(warning: str) -> str:
    """bjontegaard's warnings in the table's words."""
    overlap = OVERLAP_WARNING.search(warning)
    if overlap:
        return f"the curves share only {float(overlap.group(1)):.0f} % of their PSNR range"
    if "do not overlap" in warning:
        return "the curves do not overlap in PSNR"
    return warning


def _rises(points: Points) -> bool:
    """bjontegaard interpolates rate as a function of quality, which must rise strictly with rate."""
    ordered = sorted(points)
    return all(b[1] > a[1] for a, b in pairwise(ordered))


def _fit(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
