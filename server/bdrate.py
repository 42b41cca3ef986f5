"""RD points and BD-rates of a finished job (Bjontegaard delta via codec.metrics: the bjontegaard package).

Two comparisons:
- codec vs codec on one device: each integer precision (int16, int8) of an architecture against its float
  twin, on the encoder's own reconstructions;
- decoder vs encoder: per architecture and precision, the PSNR of each decoder device's reconstructions
  against the encoder's own, at the same rates (bit-exact decoding gives 0 %).
A curve has one point per codec package of the family (mean bpp and PSNR over the job's images); with a single
package the images themselves are the points, which is rarely a monotonic rate sweep.
A BD-rate that cannot be computed is recorded with a null value and the reason, never dropped.
"""

import math
import warnings
from collections import defaultdict
from statistics import fmean

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from codec.metrics import bd_rate
from codec.vocabulary import Precision, TaskStatus
from server.models import BdRate, Codec, Decode, Encode, RdPoint

ENCODER = "@encoder"  # decoder_target of the encoder's own reconstruction
CODEC_VS_CODEC, DECODER_VS_ENCODER = "codec-vs-codec", "decoder-vs-encoder"
ANCHOR_PRECISION = Precision.FLOAT
MIN_POINTS = 2

Points = list[tuple[float, float]]


def record(session: Session, job_id: int) -> None:
    """(Re)compute the job's RD points and BD-rates; idempotent."""
    session.execute(delete(BdRate).where(BdRate.job_id == job_id))
    session.execute(delete(RdPoint).where(RdPoint.job_id == job_id))
    points = _rd_points(session, job_id)
    session.add_all(points)
    codecs = {
        c.id: c for c in session.scalars(select(Codec).where(Codec.id.in_({p.codec_id for p in points})))
    }
    session.add_all(_codec_vs_codec(job_id, points, codecs))
    session.add_all(_decoder_vs_encoder(job_id, points, codecs))


def _rd_points(session: Session, job_id: int) -> list[RdPoint]:
    points = []
    encodes = session.scalars(
        select(Encode).where(Encode.job_id == job_id, Encode.repeat == 0, Encode.status == TaskStatus.DONE)
    )
    for encode in encodes:
        decodes = session.scalars(
            select(Decode).where(
                Decode.encode_id == encode.id, Decode.repeat == 0, Decode.status == TaskStatus.DONE
            )
        )
        # the encoder's own reconstruction, then every decoder's, all at the encoder's rate
        qualities = [(ENCODER, encode.psnr), *((decode.target, decode.psnr) for decode in decodes)]
        points.extend(
            RdPoint(
                job_id=job_id,
                codec_id=encode.codec_id,
                image_id=encode.image_id,
                encoder_target=encode.target,
                decoder_target=decoder_target,
                bpp=encode.bpp,
                psnr=psnr,
            )
            for decoder_target, psnr in qualities
            if _finite(encode.bpp) and _finite(psnr)
        )
    return points


def _codec_vs_codec(job_id: int, points: list[RdPoint], codecs: dict[int, Codec]) -> list[BdRate]:
    # device -> architecture -> precision -> codec id -> [(bpp, psnr) per image]
    curves: dict[str, dict[str, dict[str, dict[int, Points]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    )
    for p in points:
        if p.decoder_target == ENCODER:
            codec = codecs[p.codec_id]
            curves[p.encoder_target][codec.architecture][codec.precision][p.codec_id].append((p.bpp, p.psnr))
    rows = []
    for device, architectures in sorted(curves.items()):
        for architecture, precisions in sorted(architectures.items()):
            if ANCHOR_PRECISION not in precisions:
                continue
            anchor, anchor_note = _curve(precisions[ANCHOR_PRECISION])
            for precision, by_codec in sorted(precisions.items()):
                if precision == ANCHOR_PRECISION:
                    continue
                test, test_note = _curve(by_codec)
                rows.append(
                    _bd_row(
                        job_id,
                        CODEC_VS_CODEC,
                        device,
                        f"{architecture}/{ANCHOR_PRECISION}",
                        f"{architecture}/{precision}",
                        anchor,
                        test,
                        f"{anchor_note}; {test_note}",
                    )
                )
    return rows


def _curve(by_codec: dict[int, Points]) -> tuple[Points, str]:
    if not by_codec:
        return [], "no points"
    if len(by_codec) >= MIN_POINTS:
        curve = [(fmean(b for b, _ in pts), fmean(q for _, q in pts)) for pts in by_codec.values()]
        return curve, f"{len(curve)} packages, mean over images"
    only = next(iter(by_codec.values()))
    return list(only), "one package: one point per image"


def _decoder_vs_encoder(job_id: int, points: list[RdPoint], codecs: dict[int, Codec]) -> list[BdRate]:
    # (encoder, architecture, precision) -> decoder -> codec id -> image id -> (bpp, psnr)
    table: dict[tuple[str, str, str], dict[str, dict[int, dict[int, tuple[float, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    for p in points:
        codec = codecs[p.codec_id]
        key = (p.encoder_target, codec.architecture, codec.precision)
        table[key][p.decoder_target][p.codec_id][p.image_id] = (p.bpp, p.psnr)
    rows = []
    for (encoder, architecture, precision), by_decoder in sorted(table.items()):
        reference = by_decoder.get(ENCODER, {})
        family = f"{architecture}/{precision}"
        for decoder, by_codec in sorted(by_decoder.items()):
            if decoder == ENCODER:
                continue
            anchor_by_codec, test_by_codec = _shared_points(reference, by_codec)
            anchor, note = _curve(anchor_by_codec)
            test, _ = _curve(test_by_codec)
            rows.append(
                _bd_row(
                    job_id,
                    DECODER_VS_ENCODER,
                    f"{encoder}->{decoder}",
                    f"{family}@{encoder}",
                    f"{family}@{decoder}",
                    anchor,
                    test,
                    f"{note}; same rates on both sides",
                )
            )
    return rows


def _shared_points(
    reference: dict[int, dict[int, tuple[float, float]]], decoded: dict[int, dict[int, tuple[float, float]]]
) -> tuple[dict[int, Points], dict[int, Points]]:
    """Both sides restricted to the (codec, image) pairs present on both."""
    anchor: dict[int, Points] = {}
    test: dict[int, Points] = {}
    for codec_id, by_image in decoded.items():
        shared = sorted(set(reference.get(codec_id, {})) & set(by_image))
        if shared:
            anchor[codec_id] = [reference[codec_id][i] for i in shared]
            test[codec_id] = [by_image[i] for i in shared]
    return anchor, test


def _bd_row(
    job_id: int,
    kind: str,
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
        device=device,
        anchor=anchor_label,
        test=test_label,
        points=min(len(anchor), len(test)),
        note=note,
    )
    if min(len(anchor), len(test)) < MIN_POINTS:
        row.note = f"needs at least {MIN_POINTS} RD points per curve; {note}"
        return row
    if anchor == test:
        row.bd_rate = 0.0  # identical curves; interpolation would only add rounding noise
        return row
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = bd_rate(anchor, test)
    except AssertionError:  # bjontegaard asserts that quality rises with rate
        row.note = f"not computable: quality does not rise monotonically with rate; {note}"
        return row
    except (ValueError, ArithmeticError) as exc:
        row.note = f"not computable: {type(exc).__name__}: {exc}; {note}"
        return row
    warned = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    if _finite(value):
        row.bd_rate = value
        row.note = f"{note}; warning: {warned}" if warned else note
    else:
        row.note = f"not computable ({value}): {warned or 'no overlap'}; {note}"
    return row


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
