"""Cells: one row per (codec, image, encoder, decoder) with its mismatch, drift and risk; the full record of
one cell with both sides' tasks; a cell's history across the runs of its series."""

from typing import Any, Self

from codec.stages import STAGES
from server import verdicts
from server.drift import DRIFT_STAGES, is_at_risk
from server.forensics import LOCATION_FIELDS
from server.models import Cell, Codec, Decode, Device, Drift, Encode, Fingerprint, Image, Mismatch
from server.schemas.base import Schema


class DriftStats(Schema):
    """How far one stage's tensors drift between the two sides."""

    elements: int
    differing: int
    fraction: float
    max_abs_diff: float
    max_ulp: int

    @classmethod
    def of(cls, row: Drift) -> Self:
        fraction = row.differing / row.elements if row.elements else 0.0
        return cls(
            elements=row.elements,
            differing=row.differing,
            fraction=fraction,
            max_abs_diff=row.max_abs_diff,
            max_ulp=row.max_ulp,
        )


def drift_by_stage(rows: list[Drift]) -> dict[str, DriftStats]:
    """{stage: drift} for the stages that were measured, in pipeline order."""
    by_stage = {row.stage: row for row in rows}
    return {stage: DriftStats.of(row) for stage in DRIFT_STAGES if (row := by_stage.get(stage)) is not None}


class Risk(Schema):
    """The near-miss risk of a cell (server/drift.py)."""

    basis: str | None
    min_margin_ulp: int | None
    predicted_flips: int | None
    observed_flips: int | None
    failure_probability: float | None
    at_risk: bool

    @classmethod
    def of(cls, cell: Cell) -> Self:
        return cls(
            basis=cell.risk,
            min_margin_ulp=cell.min_margin_ulp,
            predicted_flips=cell.predicted_flips,
            observed_flips=cell.observed_flips,
            failure_probability=cell.failure_probability,
            at_risk=is_at_risk(cell.verdict in verdicts.PASSING, cell.failure_probability),
        )


class MismatchRecord(Schema):
    """Where the two sides first differ."""

    stage: str
    flat_index: int | None
    channel: int | None
    y: int | None
    x: int | None
    encoder_level: int | None
    decoder_level: int | None
    encoder_value: int | None
    decoder_value: int | None
    detail: str

    @classmethod
    def of(cls, mismatch: Mismatch | None) -> Self | None:
        if mismatch is None:
            return None
        return cls(**{name: getattr(mismatch, name) for name in ("stage", *LOCATION_FIELDS, "detail")})


class CellRow(Schema):
    id: int
    job: int
    codec: str
    codec_name: str
    precision: str
    image: str
    image_name: str
    encoder: str
    decoder: str
    verdict: str
    passed: bool
    first_stage: str | None
    detail: str
    max_abs_diff: int | None
    recon_psnr: float | None
    y_hat_max_abs_diff: float | None
    nondeterministic: bool
    nondeterminism_detail: str
    emulated: bool
    encoder_fingerprint: int | None
    decoder_fingerprint: int | None
    mismatch: MismatchRecord | None
    silent_corruption: bool
    drift: dict[str, DriftStats]
    risk: Risk

    @staticmethod
    def fields_of(
        cell: Cell, codec: Codec, image: Image, mismatch: Mismatch | None, drifts: list[Drift]
    ) -> dict[str, Any]:
        return {
            "id": cell.id,
            "job": cell.job_id,
            "codec": codec.digest,
            "codec_name": codec.name,
            "precision": codec.precision,
            "image": image.digest,
            "image_name": image.name,
            "encoder": cell.encoder_target,
            "decoder": cell.decoder_target,
            "verdict": cell.verdict,
            "passed": cell.verdict in verdicts.PASSING and not cell.nondeterministic,
            "first_stage": cell.first_stage,
            "detail": cell.detail,
            "max_abs_diff": cell.max_abs_diff,
            "recon_psnr": cell.recon_psnr,
            "y_hat_max_abs_diff": cell.y_hat_max_abs_diff,
            "nondeterministic": cell.nondeterministic,
            "nondeterminism_detail": cell.nondeterminism_detail,
            "emulated": cell.emulated,
            "encoder_fingerprint": cell.encoder_fingerprint_id,
            "decoder_fingerprint": cell.decoder_fingerprint_id,
            "mismatch": MismatchRecord.of(mismatch),
            "silent_corruption": cell.silent_corruption,
            "drift": drift_by_stage(drifts),
            "risk": Risk.of(cell),
        }

    @classmethod
    def of(
        cls, cell: Cell, codec: Codec, image: Image, mismatch: Mismatch | None, drifts: list[Drift]
    ) -> Self:
        return cls(**cls.fields_of(cell, codec, image, mismatch, drifts))


class DecodeRecord(Schema):
    """One side's task: where it ran, its stage hashes, timings, outputs and error."""

    id: int
    target: str
    repeat: int
    status: str
    device: str | None
    device_url: str | None
    attempts: int
    stage_hashes: dict[str, Any] | None
    timings: dict[str, Any] | None
    recon: str | None
    error_code: str | None
    error_detail: str | None
    emulated: bool | None
    fingerprint: dict[str, Any] | None
    psnr: float | None
    maps: str | None

    @staticmethod
    def fields_of(
        device: Device | None, fingerprint: Fingerprint | None, task: Encode | Decode
    ) -> dict[str, Any]:
        return {
            "id": task.id,
            "target": task.target,
            "repeat": task.repeat,
            "status": task.status,
            "device": device.name if device else None,
            "device_url": device.url if device else None,
            "attempts": task.attempts,
            "stage_hashes": task.stage_hashes,
            "timings": task.timings,
            "recon": task.recon_sha256,
            "error_code": task.error_code,
            "error_detail": task.error_detail,
            "emulated": task.emulated,
            "fingerprint": fingerprint.info if fingerprint else None,
            "psnr": task.psnr,
            "maps": task.maps_sha256,
        }

    @classmethod
    def of(cls, device: Device | None, fingerprint: Fingerprint | None, task: Decode) -> Self:
        return cls(**cls.fields_of(device, fingerprint, task))


class EncodeRecord(DecodeRecord):
    bitstream: str | None
    bpp: float | None

    @classmethod
    def of(cls, device: Device | None, fingerprint: Fingerprint | None, task: Encode) -> Self:
        fields = cls.fields_of(device, fingerprint, task)
        return cls(**fields, bitstream=task.bitstream_sha256, bpp=task.bpp)


class StageComparison(Schema):
    stage: str
    encoder: str | None
    decoder: str | None
    equal: bool


def stage_comparison(encode: Encode | None, decode: Decode | None) -> list[StageComparison]:
    """Both sides' hash of every pipeline stage, and whether they agree."""
    encoder = (encode.stage_hashes or {}) if encode else {}
    decoder = (decode.stage_hashes or {}) if decode else {}
    return [
        StageComparison(
            stage=stage,
            encoder=encoder.get(stage),
            decoder=decoder.get(stage),
            equal=encoder.get(stage) is not None and encoder.get(stage) == decoder.get(stage),
        )
        for stage in STAGES
    ]


class CellDetail(CellRow):
    """Everything the cell page and the repro bundle need: both sides' tasks, blobs and fingerprints."""

    encode: EncodeRecord | None
    decode: DecodeRecord | None
    codec_archive: str
    decoder_codec: str | None  # None: decoded by the cell's own codec
    decoder_codec_archive: str | None
    image_png: str
    bitstream: str | None
    stage_comparison: list[StageComparison]


class RunRecord(Schema):
    """One run of a cell in its series."""

    job: int
    label: str
    created_at: str | None
    cell: int
    verdict: str
    passed: bool


class CellTrendRecord(Schema):
    """A cell across the runs of its job's series (server/history.py)."""

    codec: str
    image: str
    encoder: str
    decoder: str
    trend: str
    verdict: str | None
    since: RunRecord | None
    runs: list[RunRecord]
    fingerprint_diff: dict[str, dict[str, list[Any]]]
