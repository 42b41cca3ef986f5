"""A job's RD curves, from its RD points: one curve per rate family on the encoders' own reconstructions
(one point per rate point, the mean over the images every member of the family encoded), merged over the
encoders that give the same curve, and the decoders' curves that differ from their encoder's.

A curve is named after its family (`int16 (q1..q4)`); `@cpu` is added only when the encoders disagree, and
a decoded curve is named by its device pair (`float q2 cpu→onnx-ref`).
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import fmean

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import rdfamilies
from server.models import Codec, Image, RdPoint
from server.rdfamilies import Family

ENCODER = "@encoder"  # RdPoint.decoder_target of the encoder's own reconstruction
MIN_CURVE_POINTS = 4  # a Bjontegaard delta interpolates between four rate points or more
DIGITS = 9  # curves equal to this many decimals are one curve

Point = tuple[float, float]
# (codec id, encoder, decoder or ENCODER) -> image digest -> (bpp, PSNR)
Table = dict[tuple[int, str, str], dict[str, Point]]


@dataclass(frozen=True)
class Curve:
    label: str
    family: Family
    encoders: tuple[str, ...]
    points: tuple[Point, ...]  # one per rate point of the family, in its order
    images: tuple[str, ...]  # digests of the images averaged
    pairs: tuple[tuple[str, str], ...] = ()  # (encoder, decoder) of a decoded curve
    reference: tuple[Point, ...] = ()  # a decoded curve's encoder curve over the same images
    reference_label: str = ""

    @property
    def is_curve(self) -> bool:
        return len(self.points) >= MIN_CURVE_POINTS


@dataclass(frozen=True)
class JobCurves:
    families: list[Family]
    own: list[Curve]
    decoded: list[Curve]  # only the decoded curves that differ from their encoder's
    decodes_compared: int  # (family, encoder, decoder) triples compared with the encoder's curve
    table: Table

    @property
    def bd_ready(self) -> list[Curve]:
        return [curve for curve in self.own if curve.is_curve]


def job_curves(session: Session, job_id: int) -> JobCurves:
    table, codecs = load_points(session, job_id)
    families = rdfamilies.group(codecs)
    own = [curve for family in families for curve in encoder_curves(family, table)]
    decoded, compared = decoded_curves(own, table)
    return JobCurves(families, own, decoded, compared, table)


def load_points(session: Session, job_id: int) -> tuple[Table, list[Codec]]:
    rows = session.execute(
        select(RdPoint, Image.digest)
        .join(Image, RdPoint.image_id == Image.id)
        .where(RdPoint.job_id == job_id)
    )
    table: Table = defaultdict(dict)
    for point, digest in rows:
        table[(point.codec_id, point.encoder_target, point.decoder_target)][digest] = (point.bpp, point.psnr)
    codec_ids = {codec_id for codec_id, _, _ in table}
    codecs = list(session.scalars(select(Codec).where(Codec.id.in_(codec_ids)))) if codec_ids else []
    return dict(table), codecs


def encoder_curves(family: Family, table: Table) -> list[Curve]:
    """The family's curve on each encoder, one Curve per group of encoders that agree."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for encoder in sorted({encoder for (_, encoder, decoder) in table if decoder == ENCODER}):
        images = _shared_images(table, family.codec_ids, encoder, ENCODER)
        if images:
            points = _mean_points(table, family.codec_ids, encoder, ENCODER, images)
            groups[(_rounded(points), images)].append(encoder)
    curves = []
    for (_, images), encoders in groups.items():
        points = _mean_points(table, family.codec_ids, encoders[0], ENCODER, images)
        label = family.label if len(groups) == 1 else f"{family.label} @{', '.join(encoders)}"
        curves.append(Curve(label, family, tuple(encoders), points, images))
    return curves


def decoded_curves(own: list[Curve], table: Table) -> tuple[list[Curve], int]:
    """Every decoder's curve that differs from its encoder's, merged over the pairs that give the same one;
    and how many (family, encoder, decoder) were compared."""
    groups: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
    found: dict[tuple, tuple[Curve, tuple[Point, ...], tuple[Point, ...], tuple[str, ...]]] = {}
    compared = 0
    for curve in own:
        ids = curve.family.codec_ids
        for encoder in curve.encoders:
            for decoder in _decoders(table, ids, encoder):
                images = tuple(sorted(set(curve.images) & set(_shared_images(table, ids, encoder, decoder))))
                if not images:
                    continue
                compared += 1
                decoded = _mean_points(table, ids, encoder, decoder, images)
                reference = _mean_points(table, ids, encoder, ENCODER, images)
                if _rounded(decoded) == _rounded(reference):
                    continue
                key = (curve.label, _rounded(decoded), _rounded(reference), images)
                groups[key].append((encoder, decoder))
                found.setdefault(key, (curve, decoded, reference, images))
    curves = []
    for key, pairs in groups.items():
        curve, decoded, reference, images = found[key]
        subset = f" ({len(images)} of {len(curve.images)} images)" if len(images) < len(curve.images) else ""
        label = f"{curve.family.label} {', '.join(f'{e}→{d}' for e, d in pairs)}{subset}"
        encoders = tuple(dict.fromkeys(e for e, _ in pairs))
        reference_label = f"{curve.label} (encoder{', same images' if subset else ''})"
        curves.append(
            Curve(label, curve.family, encoders, decoded, images, tuple(pairs), reference, reference_label)
        )
    return curves, compared


def per_image_series(family: Family, table: Table) -> list[tuple[str, list[Point]]]:
    """(label, per-image points) of each rate point of the family on the encoders' own reconstructions,
    merged over the encoders that agree image by image."""
    series = []
    for codec_id, point_label in zip(family.codec_ids, family.point_labels, strict=True):
        groups: dict[tuple, list[str]] = defaultdict(list)
        for (cid, encoder, decoder), by_image in sorted(table.items()):
            if cid == codec_id and decoder == ENCODER:
                groups[tuple(sorted(by_image.items()))].append(encoder)
        for points, encoders in groups.items():
            label = point_label if len(groups) == 1 else f"{point_label} @{', '.join(encoders)}"
            series.append((label, [xy for _, xy in points]))
    return series


def _decoders(table: Table, codec_ids: Iterable[int], encoder: str) -> list[str]:
    ids = set(codec_ids)
    return sorted({d for (cid, e, d) in table if cid in ids and e == encoder and d != ENCODER})


def _shared_images(table: Table, codec_ids: Iterable[int], encoder: str, decoder: str) -> tuple[str, ...]:
    sets = [set(table.get((codec_id, encoder, decoder), {})) for codec_id in codec_ids]
    return tuple(sorted(set.intersection(*sets))) if sets else ()


def _mean_points(
    table: Table, codec_ids: Iterable[int], encoder: str, decoder: str, images: tuple[str, ...]
) -> tuple[Point, ...]:
    """Mean bpp at the encoder's rate and mean PSNR of the decoder's (or the encoder's) reconstruction."""
    points = []
    for codec_id in codec_ids:
        rates = table[(codec_id, encoder, ENCODER)]
        qualities = table[(codec_id, encoder, decoder)]
        points.append((fmean(rates[i][0] for i in images), fmean(qualities[i][1] for i in images)))
    return tuple(points)


def _rounded(points: tuple[Point, ...]) -> tuple[tuple[float, float], ...]:
    return tuple((round(bpp, DIGITS), round(psnr, DIGITS)) for bpp, psnr in points)
