"""Read-only views of the database as plain dicts: what the JSON API returns, the exports serialise and the
dashboard renders, each built by its response model (server/schemas). Nothing here writes."""

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codec.vocabulary import JobStatus, TaskStatus
from server import verdicts
from server.models import (
    BdRate,
    Cell,
    Codec,
    Decode,
    Device,
    Drift,
    Encode,
    Fingerprint,
    Image,
    Job,
    Mismatch,
    RdPoint,
)
from server.schemas.base import iso
from server.schemas.cells import CellDetail, CellRow, DecodeRecord, EncodeRecord, stage_comparison
from server.schemas.jobs import BdRateRecord, CodecMatrix, JobSummary, MatrixPosition, Progress, RdPointRecord
from server.schemas.workers import DeviceRecord

PENDING_POSITION = "pending"  # a matrix position no cell has reached yet (not a verdict)
FINISHED_TASK = tuple(s for s in TaskStatus if s not in (TaskStatus.PENDING, TaskStatus.RUNNING))
# Worst first: the verdict a matrix position shows when its images disagree.
VERDICT_SEVERITY = (
    verdicts.DESYNC,
    verdicts.ERROR,
    verdicts.TIMEOUT,
    verdicts.WORKER_LOST,
    verdicts.NOT_RUN,
    verdicts.SYMBOL_EXACT,
    verdicts.LATENT_EXACT,
    verdicts.BIT_EXACT,
)


@dataclass
class JobCounts:
    """What a job summary needs besides the job row: finished tasks by status and cells by verdict."""

    encodes: Counter[str] = field(default_factory=Counter)
    decodes: Counter[str] = field(default_factory=Counter)
    verdicts: dict[str, int] = field(default_factory=dict)


def job_counts(session: Session, job_ids: list[int]) -> dict[int, JobCounts]:
    """Counts of many jobs in three grouped queries, however many jobs there are."""
    counts = {job_id: JobCounts() for job_id in job_ids}
    if not job_ids:
        return counts
    for model, attribute in ((Encode, "encodes"), (Decode, "decodes")):
        query = (
            select(model.job_id, model.status, func.count())
            .where(model.job_id.in_(job_ids), model.status.in_(FINISHED_TASK))
            .group_by(model.job_id, model.status)
        )
        for job_id, status, count in session.execute(query):
            getattr(counts[job_id], attribute)[status] = count
    query = (
        select(Cell.job_id, Cell.verdict, func.count())
        .where(Cell.job_id.in_(job_ids))
        .group_by(Cell.job_id, Cell.verdict)
    )
    for job_id, verdict, count in session.execute(query):
        counts[job_id].verdicts[verdict] = count
    return counts


def job_summary(session: Session, job: Job, counts: JobCounts | None = None) -> dict[str, Any]:
    counts = counts or job_counts(session, [job.id])[job.id]
    codecs, images = len(job.codec_digests), len(job.image_digests)
    encoders, decoders = len(job.encoder_targets), len(job.decoder_targets)
    planned_encodes = codecs * images * encoders * job.repeat
    planned_decodes = planned_encodes * decoders
    planned_cells = codecs * images * encoders * decoders
    cells, status = counts.verdicts, JobStatus(job.status)
    cell_progress = stage_progress(cells, planned_cells, status)
    progress = Progress(
        encodes=stage_progress(counts.encodes, planned_encodes, status),
        decodes=stage_progress(counts.decodes, planned_decodes, status),
        cells=cell_progress,
        fraction=cell_progress["done"] / planned_cells if planned_cells else 1.0,
    )
    request = job.request if isinstance(job.request, dict) else {}
    summary = JobSummary(
        id=job.id,
        status=job.status,
        detail=job.detail,
        repeat=job.repeat,
        codecs=list(job.codec_digests),
        images=list(job.image_digests),
        encoders=list(job.encoder_targets),
        decoders=list(job.decoder_targets),
        decode_with=dict(job.decode_with or {}),
        series=request.get("series"),
        label=request.get("label"),
        created_at=iso(job.created_at),
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        progress=progress,
        verdicts=cells,
    )
    return summary.model_dump()


def stage_progress(outcomes: Mapping[str, int], total: int, status: JobStatus) -> dict[str, int]:
    """{done, cancelled, not_run, total} of one stage (encodes, decodes or cells) from its outcomes (task
    statuses or verdicts). `done`: ran to an outcome, a failure included. Once a job has ended, what did not
    run is `cancelled` when the job was cancelled and `not_run` otherwise; nothing of it counts as done."""
    not_run = outcomes.get(TaskStatus.NOT_RUN, 0)  # the task status and the verdict share this name
    done = sum(outcomes.values()) - not_run
    if not status.is_active:
        not_run = max(0, total - done)  # closed not-run, and what was never even planned
    cancelled = not_run if status == JobStatus.CANCELLED else 0
    return {"done": done, "cancelled": cancelled, "not_run": not_run - cancelled, "total": total}


def list_jobs(session: Session, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """A page of jobs, newest first: four queries in all."""
    jobs = list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)))
    counts = job_counts(session, [job.id for job in jobs])
    return [job_summary(session, job, counts[job.id]) for job in jobs]


def cell_rows(session: Session, job_id: int) -> list[dict[str, Any]]:
    """Every cell of a job, flat, with codec and image names, the mismatch when there is one and the drift
    per stage: two queries."""
    return [cell.model_dump() for cell in _cells(session, job_id)]


def _cells(session: Session, job_id: int) -> list[CellRow]:
    rows = session.execute(
        select(Cell, Codec, Image, Mismatch)
        .join(Codec, Cell.codec_id == Codec.id)
        .join(Image, Cell.image_id == Image.id)
        .outerjoin(Mismatch, Mismatch.cell_id == Cell.id)
        .where(Cell.job_id == job_id)
        .order_by(Codec.name, Image.name, Cell.encoder_target, Cell.decoder_target)
    )
    drifts: dict[int, list[Drift]] = defaultdict(list)
    for row in session.scalars(
        select(Drift).join(Cell, Drift.cell_id == Cell.id).where(Cell.job_id == job_id)
    ):
        drifts[row.cell_id].append(row)
    return [
        CellRow.of(cell, codec, image, mismatch, drifts.get(cell.id, []))
        for cell, codec, image, mismatch in rows
    ]


def job_matrix(session: Session, job: Job) -> list[dict[str, Any]]:
    """Per codec: the encoder x decoder matrix. Each position holds the worst verdict over the images, the
    verdict counts and the per-image cells, so a renderer needs nothing else."""
    by_codec: dict[str, dict[tuple[str, str], list[CellRow]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for cell in _cells(session, job.id):
        by_codec[cell.codec][(cell.encoder, cell.decoder)].append(cell)
        names[cell.codec] = cell.codec_name
    matrices = []
    for digest in job.codec_digests:
        positions = by_codec.get(digest, {})
        rows = [
            [
                _position(encoder, decoder, positions.get((encoder, decoder), []))
                for decoder in job.decoder_targets
            ]
            for encoder in job.encoder_targets
        ]
        decoded_by = (job.decode_with or {}).get(digest)
        matrix = CodecMatrix(
            codec=digest,
            codec_name=names.get(digest, digest[:12]),
            decoded_by=_codec_name(session, decoded_by) if decoded_by else None,
            encoders=list(job.encoder_targets),
            decoders=list(job.decoder_targets),
            rows=rows,
        )
        matrices.append(matrix.model_dump())
    return matrices


def _position(encoder: str, decoder: str, cells: list[CellRow]) -> MatrixPosition:
    verdict = _worst(cells)
    return MatrixPosition(
        encoder=encoder,
        decoder=decoder,
        verdict=verdict,
        counts=dict(Counter(c.verdict for c in cells)),
        nondeterministic=any(c.nondeterministic for c in cells),
        hs_max_ulp=_largest(c.drift["h_s"].max_ulp if "h_s" in c.drift else None for c in cells),
        failure_probability=_largest(c.risk.failure_probability for c in cells),
        at_risk=verdict in verdicts.PASSING and any(c.risk.at_risk for c in cells),
        silent_corruption=sum(c.silent_corruption for c in cells),
        cells=cells,
    )


def _codec_name(session: Session, digest: str) -> str:
    return session.scalar(select(Codec.name).where(Codec.digest == digest)) or digest[:12]


def _largest(values: Any) -> Any:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _worst(cells: list[CellRow]) -> str:
    if not cells:
        return PENDING_POSITION
    present = {c.verdict for c in cells}
    return next(v for v in VERDICT_SEVERITY if v in present)


def verdict_counts(session: Session, job_id: int) -> dict[str, dict[str, int]]:
    """{codec name: {verdict: count}}, the shape `bitmatch demo --json` prints."""
    rows = session.execute(
        select(Codec.name, Cell.verdict, func.count())
        .join(Codec, Cell.codec_id == Codec.id)
        .where(Cell.job_id == job_id)
        .group_by(Codec.name, Cell.verdict)
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for name, verdict, count in rows:
        counts[name][verdict] = count
    return dict(counts)


def cell_detail(session: Session, cell_id: int) -> dict[str, Any] | None:
    """Everything the cell page and the repro bundle need: both sides' hashes, blobs and fingerprints."""
    row = session.execute(
        select(Cell, Codec, Image)
        .join(Codec, Cell.codec_id == Codec.id)
        .join(Image, Cell.image_id == Image.id)
        .where(Cell.id == cell_id)
    ).first()
    if row is None:
        return None
    cell, codec, image = row
    mismatch = session.scalar(select(Mismatch).where(Mismatch.cell_id == cell.id))
    drifts = list(session.scalars(select(Drift).where(Drift.cell_id == cell.id)))
    encode = session.get(Encode, cell.encode_id) if cell.encode_id else None
    decode = session.get(Decode, cell.decode_id) if cell.decode_id else None
    decoder_codec = session.get(Codec, cell.decoder_codec_id) if cell.decoder_codec_id else None
    detail = CellDetail(
        **CellRow.fields_of(cell, codec, image, mismatch, drifts),
        encode=_task(session, EncodeRecord, encode),
        decode=_task(session, DecodeRecord, decode),
        codec_archive=codec.archive_sha256,
        decoder_codec=decoder_codec.digest if decoder_codec else None,  # None: the same codec
        decoder_codec_archive=decoder_codec.archive_sha256 if decoder_codec else None,
        image_png=image.digest,
        bitstream=encode.bitstream_sha256 if encode else None,
        stage_comparison=stage_comparison(encode, decode),
    )
    return detail.model_dump()


def _task(session: Session, record: type[DecodeRecord], task: Encode | Decode | None) -> DecodeRecord | None:
    """One side's task record (an EncodeRecord for the encode), with its device and fingerprint."""
    if task is None:
        return None
    device = session.get(Device, task.device_id) if task.device_id else None
    fingerprint = session.get(Fingerprint, task.fingerprint_id) if task.fingerprint_id else None
    return record.of(device, fingerprint, task)


def rd_points(session: Session, job_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(RdPoint, Codec.name, Image.name)
        .join(Codec, RdPoint.codec_id == Codec.id)
        .join(Image, RdPoint.image_id == Image.id)
        .where(RdPoint.job_id == job_id)
        .order_by(Codec.name, RdPoint.encoder_target, RdPoint.decoder_target, Image.name)
    )
    return [RdPointRecord.of(point, codec, image).model_dump() for point, codec, image in rows]


def bd_rates(session: Session, job_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(BdRate)
        .where(BdRate.job_id == job_id)
        .order_by(BdRate.kind, BdRate.device, BdRate.anchor, BdRate.test)
    )
    return [BdRateRecord.of(row).model_dump() for row in rows]


def list_devices(session: Session) -> list[dict[str, Any]]:
    devices = session.scalars(select(Device).order_by(Device.target, Device.name))
    return [DeviceRecord.of(session, device).model_dump() for device in devices]
