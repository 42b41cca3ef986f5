"""SQLAlchemy 2 typed models: the coordinator's whole persistent state.

Unique constraints carry the "every cell exactly once" guarantee: a restarted coordinator re-inserts planned
rows with insert-if-absent semantics and can never record a second encode, decode or cell for the same key.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from codec.vocabulary import DeviceStatus, JobStatus, TaskStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Fingerprint(Base):
    """A device fingerprint as a worker reported it (`GET /v1/info`), stored once per distinct content."""

    __tablename__ = "fingerprints"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    target: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(64))
    emulated: Mapped[bool] = mapped_column(Boolean)
    info: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Device(Base):
    """One worker process serving one target. Jobs address targets; a device is an instance of one."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    url: Mapped[str] = mapped_column(String(512))
    target: Mapped[str] = mapped_column(String(64))
    token: Mapped[str | None] = mapped_column(String(512))
    source: Mapped[str] = mapped_column(String(16))  # "config" | "registered"
    # healthy | quarantined | offline | unchecked
    status: Mapped[str] = mapped_column(String(16), default=DeviceStatus.UNCHECKED)
    mode: Mapped[str] = mapped_column(String(8), default="push")  # push: we call it; pull: it polls us
    health_detail: Mapped[str] = mapped_column(Text, default="")
    fingerprint_id: Mapped[int | None] = mapped_column(ForeignKey("fingerprints.id"))
    claimed_fingerprint: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # sent at registration
    last_heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_check: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Codec(Base):
    __tablename__ = "codecs"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    precision: Mapped[str] = mapped_column(String(16))
    architecture: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]]
    archive_sha256: Mapped[str] = mapped_column(String(64))  # blob holding the package archive
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the PNG bytes (also its blob)
    name: Mapped[str] = mapped_column(String(256))
    image_set: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)  # codec.vocabulary.JobStatus
    request: Mapped[dict[str, Any]]  # the request as submitted
    codec_digests: Mapped[list[Any]]
    image_digests: Mapped[list[Any]]
    encoder_targets: Mapped[list[Any]]
    decoder_targets: Mapped[list[Any]]
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    # target -> device id, for targets selected by naming a device: that target's work runs there only
    encoder_pins: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decoder_pins: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # codec-version compatibility: encoder package digest -> the digest of the package that decodes its
    # bitstreams (absent: the same package)
    decode_with: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class _TaskColumns:
    """Columns shared by encodes and decodes: the lease, where it ran, what came back, how it ended.

    A task is `pending` in the queue until a free device of its target claims it: it is then `running` under a
    lease (a random token and an expiry the device's dispatcher renews). An expired lease puts it back to
    `pending`, with the attempt counted; a result is accepted only under the lease it was claimed with.
    """

    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING, index=True)  # TaskStatus
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    pinned_device_id: Mapped[int | None] = mapped_column(Integer)  # a device id (no FK: devices come and go)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    maps_sha256: Mapped[str | None] = mapped_column(String(64))  # the per-element forensic maps (JSON blob)
    fingerprint_id: Mapped[int | None] = mapped_column(ForeignKey("fingerprints.id"))
    emulated: Mapped[bool | None] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    stage_hashes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    recon_sha256: Mapped[str | None] = mapped_column(String(64))
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Encode(_TaskColumns, Base):
    __tablename__ = "encodes"
    __table_args__ = (UniqueConstraint("job_id", "codec_id", "image_id", "target", "repeat"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    codec_id: Mapped[int] = mapped_column(ForeignKey("codecs.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    target: Mapped[str] = mapped_column(String(64))
    repeat: Mapped[int] = mapped_column(Integer)
    bitstream_sha256: Mapped[str | None] = mapped_column(String(64))
    bpp: Mapped[float | None] = mapped_column(Float)
    psnr: Mapped[float | None] = mapped_column(Float)


class Decode(_TaskColumns, Base):
    __tablename__ = "decodes"
    __table_args__ = (UniqueConstraint("encode_id", "target", "repeat"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    encode_id: Mapped[int] = mapped_column(ForeignKey("encodes.id"))
    target: Mapped[str] = mapped_column(String(64))
    repeat: Mapped[int] = mapped_column(Integer)
    codec_id: Mapped[int | None] = mapped_column(ForeignKey("codecs.id"))  # None: the encode's own
    psnr: Mapped[float | None] = mapped_column(Float)  # reconstruction against the source image


class Cell(Base):
    """One (codec, image, encoder target, decoder target) verdict with the evidence behind it."""

    __tablename__ = "cells"
    __table_args__ = (UniqueConstraint("job_id", "codec_id", "image_id", "encoder_target", "decoder_target"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    codec_id: Mapped[int] = mapped_column(ForeignKey("codecs.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    encoder_target: Mapped[str] = mapped_column(String(64))
    decoder_target: Mapped[str] = mapped_column(String(64))
    decoder_codec_id: Mapped[int | None] = mapped_column(ForeignKey("codecs.id"))  # None: the same codec
    verdict: Mapped[str] = mapped_column(String(16))
    encode_id: Mapped[int | None] = mapped_column(ForeignKey("encodes.id"))
    decode_id: Mapped[int | None] = mapped_column(ForeignKey("decodes.id"))
    encoder_fingerprint_id: Mapped[int | None] = mapped_column(ForeignKey("fingerprints.id"))
    decoder_fingerprint_id: Mapped[int | None] = mapped_column(ForeignKey("fingerprints.id"))
    emulated: Mapped[bool] = mapped_column(Boolean, default=False)  # either side ran under an emulator
    nondeterministic: Mapped[bool] = mapped_column(Boolean, default=False)
    nondeterminism_detail: Mapped[str] = mapped_column(Text, default="")
    first_stage: Mapped[str | None] = mapped_column(String(32))  # first differing stage
    max_abs_diff: Mapped[int | None] = mapped_column(Integer)
    recon_psnr: Mapped[float | None] = mapped_column(Float)  # between the two reconstructions
    y_hat_max_abs_diff: Mapped[float | None] = mapped_column(Float)  # symbol-exact: the drift of y_hat
    # near-miss risk (server/drift.py): measured | certificate | not-measured
    risk: Mapped[str | None] = mapped_column(String(16))
    min_margin_ulp: Mapped[int | None] = mapped_column(BigInteger)
    predicted_flips: Mapped[int | None] = mapped_column(Integer)
    observed_flips: Mapped[int | None] = mapped_column(Integer)
    failure_probability: Mapped[float | None] = mapped_column(Float)  # of a 768x512 image, this device pair
    silent_corruption: Mapped[bool] = mapped_column(Boolean, default=False)  # desync the decoder did not see
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Drift(Base):
    """How far apart a cell's two sides computed one stage (server/drift.py `DRIFT_STAGES`)."""

    __tablename__ = "drifts"
    __table_args__ = (UniqueConstraint("cell_id", "stage"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    elements: Mapped[int] = mapped_column(BigInteger)
    differing: Mapped[int] = mapped_column(BigInteger)
    max_abs_diff: Mapped[float] = mapped_column(Float)
    max_ulp: Mapped[int] = mapped_column(BigInteger)


class Mismatch(Base):
    """The first bad latent symbol of a desync cell, located by comparing both sides' index maps."""

    __tablename__ = "mismatches"
    id: Mapped[int] = mapped_column(primary_key=True)
    cell_id: Mapped[int] = mapped_column(ForeignKey("cells.id"), unique=True)
    stage: Mapped[str] = mapped_column(String(32))
    flat_index: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[int | None] = mapped_column(Integer)
    y: Mapped[int | None] = mapped_column(Integer)
    x: Mapped[int | None] = mapped_column(Integer)
    encoder_level: Mapped[int | None] = mapped_column(Integer)
    decoder_level: Mapped[int | None] = mapped_column(Integer)
    encoder_value: Mapped[int | None] = mapped_column(Integer)
    decoder_value: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")


class RdPoint(Base):
    """Rate and distortion of one reconstruction: the encoder's own (decoder_target None) or a decoder's."""

    __tablename__ = "rd_points"
    __table_args__ = (UniqueConstraint("job_id", "codec_id", "image_id", "encoder_target", "decoder_target"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    codec_id: Mapped[int] = mapped_column(ForeignKey("codecs.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    encoder_target: Mapped[str] = mapped_column(String(64))
    decoder_target: Mapped[str] = mapped_column(String(64))  # == encoder_target for the encoder's own recon
    bpp: Mapped[float] = mapped_column(Float)
    psnr: Mapped[float] = mapped_column(Float)


class BdRate(Base):
    __tablename__ = "bd_rates"
    __table_args__ = (UniqueConstraint("job_id", "kind", "device", "anchor", "test"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # "codec-vs-codec" | "decoder-vs-encoder"
    device: Mapped[str] = mapped_column(String(160))  # target, or "encoder->decoder" for the second kind
    anchor: Mapped[str] = mapped_column(String(160))
    test: Mapped[str] = mapped_column(String(160))
    bd_rate: Mapped[float | None] = mapped_column(Float)  # percent; None when it cannot be computed
    points: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
