"""Planning: which encodes and decodes a job needs, as queue rows inserted if absent.

Every encoder target encodes each (codec, image), `repeat` times; once the first of those encodes is done,
every decoder target decodes its bitstream `repeat` times. Rows are keyed by unique constraints and inserted
with ON CONFLICT DO NOTHING, so a restarted coordinator, or a second one on the same PostgreSQL database,
plans the same job again without creating a second row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from codec.vocabulary import JobStatus, TaskStatus
from server.models import Codec, Decode, Encode, Image, Job, utcnow

PENDING = TaskStatus.PENDING


@dataclass(frozen=True)
class Unit:
    """One encoder target's work on one (codec, image): its encodes and everything decoded from them."""

    codec_id: int
    image_id: int
    target: str


def insert_absent(session: Session, model: type, rows: list[dict]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING (the unique key decides), on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(model).values(rows).on_conflict_do_nothing())


def ids_by_digest(session: Session, model: type, digests: list[str]) -> list[int]:
    found = dict(session.execute(select(model.digest, model.id).where(model.digest.in_(digests))).all())
    return [found[d] for d in digests]


def units(session: Session, job: Job) -> list[Unit]:
    codecs = ids_by_digest(session, Codec, job.codec_digests)
    images = ids_by_digest(session, Image, job.image_digests)
    return [Unit(c, i, t) for c in codecs for i in images for t in job.encoder_targets]


def plan_encodes(session: Session, job: Job) -> None:
    """The job's encodes (idempotent); a queued job becomes running."""
    if job.status == JobStatus.QUEUED:
        job.status, job.started_at = JobStatus.RUNNING, utcnow()
    pins = job.encoder_pins or {}
    rows = [
        {
            "job_id": job.id,
            "codec_id": u.codec_id,
            "image_id": u.image_id,
            "target": u.target,
            "repeat": r,
            "status": PENDING,
            "attempts": 0,
            "pinned_device_id": pins.get(u.target),
        }
        for u in units(session, job)
        for r in range(job.repeat)
    ]
    insert_absent(session, Encode, rows)


def plan_missing_decodes(session: Session, job: Job) -> bool:
    """Decodes of every finished first encode that has none yet; True when any were planned."""
    planned = set(session.scalars(select(Decode.encode_id).where(Decode.job_id == job.id).distinct()))
    missing = [
        encode
        for encode in session.scalars(
            select(Encode).where(
                Encode.job_id == job.id, Encode.repeat == 0, Encode.status == TaskStatus.DONE
            )
        )
        if encode.id not in planned
    ]
    for encode in missing:
        plan_decodes(session, job, encode)
    return bool(missing)


def decoder_codec_id(session: Session, job: Job, encode: Encode) -> int | None:
    """The package that decodes an encode's bitstreams when the job maps its codec to another one
    (codec-version compatibility), else None: the encode's own."""
    digest = session.scalar(select(Codec.digest).where(Codec.id == encode.codec_id))
    other = (job.decode_with or {}).get(digest)
    return None if other is None else session.scalar(select(Codec.id).where(Codec.digest == other))


def plan_decodes(session: Session, job: Job, encode: Encode) -> None:
    """The decodes of one finished encode (idempotent)."""
    pins = job.decoder_pins or {}
    codec_id = decoder_codec_id(session, job, encode)
    rows = [
        {
            "job_id": job.id,
            "encode_id": encode.id,
            "target": target,
            "repeat": r,
            "status": PENDING,
            "attempts": 0,
            "pinned_device_id": pins.get(target),
            "codec_id": codec_id,
        }
        for target in job.decoder_targets
        for r in range(job.repeat)
    ]
    insert_absent(session, Decode, rows)
