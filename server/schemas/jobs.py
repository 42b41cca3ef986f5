"""Jobs: the summary with progress, the encoder x decoder matrix per codec, RD points and BD-rates."""

from typing import Self

from server.models import BdRate, RdPoint
from server.schemas.base import Schema
from server.schemas.cells import CellRow


class JobCreated(Schema):
    id: int
    status: str
    url: str


class StageProgress(Schema):
    """`done`: ran to an outcome, a failure included; what did not run is `cancelled` or `not_run`."""

    done: int
    cancelled: int
    not_run: int
    total: int


class Progress(Schema):
    encodes: StageProgress
    decodes: StageProgress
    cells: StageProgress
    fraction: float


class JobSummary(Schema):
    id: int
    status: str
    detail: str
    repeat: int
    codecs: list[str]
    images: list[str]
    encoders: list[str]
    decoders: list[str]
    decode_with: dict[str, str]
    series: str | None
    label: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    progress: Progress
    verdicts: dict[str, int]


class MatrixPosition(Schema):
    """One (encoder, decoder) position of a codec's matrix: the worst verdict over the images, the verdict
    counts, and the per-image cells."""

    encoder: str
    decoder: str
    verdict: str
    counts: dict[str, int]
    nondeterministic: bool
    hs_max_ulp: int | None
    failure_probability: float | None
    at_risk: bool
    silent_corruption: int
    cells: list[CellRow]


class CodecMatrix(Schema):
    codec: str
    codec_name: str
    decoded_by: str | None
    encoders: list[str]
    decoders: list[str]
    rows: list[list[MatrixPosition]]


class RdPointRecord(Schema):
    """Rate and distortion of one reconstruction (codec and image by name)."""

    codec: str
    image: str
    encoder: str
    decoder: str
    bpp: float
    psnr: float

    @classmethod
    def of(cls, point: RdPoint, codec: str, image: str) -> Self:
        return cls(
            codec=codec,
            image=image,
            encoder=point.encoder_target,
            decoder=point.decoder_target,
            bpp=point.bpp,
            psnr=point.psnr,
        )


class BdRateRecord(Schema):
    kind: str
    device: str
    anchor: str
    test: str
    bd_rate: float | None
    points: int
    note: str

    @classmethod
    def of(cls, row: BdRate) -> Self:
        return cls(
            kind=row.kind,
            device=row.device,
            anchor=row.anchor,
            test=row.test,
            bd_rate=row.bd_rate,
            points=row.points,
            note=row.note,
        )


class JobExport(Schema):
    """`GET /api/jobs/{id}/export/json` (server/exports.py): everything about the job in one document."""

    job: JobSummary
    cells: list[CellRow]
    rd_points: list[RdPointRecord]
    bd_rates: list[BdRateRecord]
    verdict_counts: dict[str, dict[str, int]]
