"""Jobs: submit (202 and an id), list, status with progress, cancel; cells, matrix, RD points, BD-rates,
history."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from codec.imagesets import set_names
from codec.vocabulary import JobStatus
from server import history, queries
from server.catalog import ensure_image_set
from server.dependencies import AppDep, JobDep, SchedulerDep, SessionDep, WriteAccess
from server.models import Codec, Image, Job
from server.schemas.base import errors
from server.schemas.cells import CellRow, CellTrendRecord
from server.schemas.jobs import BdRateRecord, CodecMatrix, JobCreated, JobSummary, RdPointRecord
from server.state import AppState

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Selector = Annotated[str, StringConstraints(min_length=1, max_length=128)]

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=errors(422))


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    codecs: list[Digest] = Field(min_length=1, max_length=32, description="codec package digests")
    images: (
        Annotated[str, StringConstraints(min_length=1, max_length=64)]
        | Annotated[list[Digest], Field(min_length=1, max_length=256)]
    ) = Field(description="a bundled image set's name, or uploaded image digests")
    encoders: list[Selector] = Field(
        default=["*"],
        min_length=1,
        max_length=64,
        description="targets or device names; '*' is every healthy target",
    )
    decoders: list[Selector] = Field(default=["*"], min_length=1, max_length=64)
    repeat: int = Field(
        default=1, ge=1, le=10, description="runs per (device, input), compared for determinism"
    )
    series: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="the history this job is one run of (a CI matrix's name); see /history"
    )
    label: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="this run's name in its history, e.g. the night's date"
    )
    decode_with: dict[Digest, Digest] = Field(
        default_factory=dict,
        max_length=32,
        description="codec-version compatibility: the bitstreams of each codec named here are decoded "
        "by the package it maps to (e.g. an older release of the same family) instead of by itself",
    )


@router.post(
    "", status_code=202, response_model=JobCreated, dependencies=[WriteAccess], responses=errors(401)
)
def submit_job(body: JobRequest, app: AppDep) -> JobCreated:
    codecs = _unique(body.codecs)
    strangers = sorted(set(body.decode_with) - set(codecs))
    if strangers:
        raise HTTPException(422, f"decode_with names codecs the job does not encode with: {strangers}")
    images = _resolve_images(app, body.images)
    encoders, encoder_pins = _resolve_targets(app, body.encoders, "encoder")
    decoders, decoder_pins = _resolve_targets(app, body.decoders, "decoder")
    with app.db.session() as session:
        wanted = _unique([*codecs, *body.decode_with.values()])
        known = set(session.scalars(select(Codec.digest).where(Codec.digest.in_(wanted))))
        missing = [d for d in wanted if d not in known]
        if missing:
            raise HTTPException(
                422, f"unknown codec digest(s) {missing}: upload with PUT /api/codecs/{{digest}}"
            )
        job = Job(
            status=JobStatus.QUEUED,
            request=body.model_dump(),
            codec_digests=codecs,
            image_digests=images,
            encoder_targets=encoders,
            decoder_targets=decoders,
            encoder_pins=encoder_pins,
            decoder_pins=decoder_pins,
            decode_with=dict(body.decode_with),
            repeat=body.repeat,
        )
        session.add(job)
        session.flush()
        job_id = job.id
    app.scheduler.wake()
    return JobCreated(id=job_id, status=JobStatus.QUEUED, url=f"/api/jobs/{job_id}")


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _resolve_images(app: AppState, images: str | list[str]) -> list[str]:
    if isinstance(images, str):
        if images not in set_names():
            raise HTTPException(422, f"unknown image set {images!r}; bundled sets: {set_names()}")
        return ensure_image_set(app.db, app.store, images)
    digests = _unique(images)
    with app.db.session() as session:
        known = set(session.scalars(select(Image.digest).where(Image.digest.in_(digests))))
    missing = [d for d in digests if d not in known]
    if missing:
        raise HTTPException(422, f"unknown image digest(s) {missing}: upload with POST /api/images")
    return digests


def _resolve_targets(app: AppState, selectors: list[str], role: str) -> tuple[list[str], dict[str, int]]:
    """Targets named by the selectors: a target, a device's name, or '*' for all; and the pins.

    Naming a device pins its target's work to that device. Only healthy devices count: a quarantined or
    offline device is never selected, even by name."""
    healthy = app.pool.healthy_targets()
    devices = app.pool.healthy_devices_by_name()
    targets: list[str] = []
    pins: dict[str, int] = {}
    for selector in selectors:
        if selector in ("*", "all"):
            targets.extend(sorted(healthy))
        elif selector in healthy:
            targets.append(selector)
        elif selector in devices:
            device_id, target = devices[selector]
            if pins.get(target, device_id) != device_id:
                raise HTTPException(
                    422, f"{role}s name two devices of target {target!r}; name one, or the target itself"
                )
            targets.append(target)
            pins[target] = device_id
        else:
            raise HTTPException(
                422,
                f"{role} selector {selector!r} matches no healthy device "
                f"(healthy targets: {sorted(healthy)})",
            )
    if not targets:
        raise HTTPException(422, f"no healthy {role} device; register workers first")
    return _unique(targets), pins


@router.get("", response_model=list[JobSummary])
def list_jobs(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> list[dict[str, Any]]:
    return queries.list_jobs(session, limit, offset)


@router.get("/{job_id}", response_model=JobSummary, responses=errors(404))
def get_job(job: JobDep, session: SessionDep) -> dict[str, Any]:
    return queries.job_summary(session, job)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobSummary,
    dependencies=[WriteAccess],
    responses=errors(401, 404, 409),
)
def cancel_job(job: JobDep, session: SessionDep, scheduler: SchedulerDep) -> dict[str, Any]:
    if not JobStatus(job.status).is_active:
        raise HTTPException(409, f"job {job.id} is already {job.status}")
    job.status = JobStatus.CANCELLING
    summary = queries.job_summary(session, job)
    session.commit()  # the scheduler, woken now, must see the job cancelling
    scheduler.wake()
    return summary


@router.get("/{job_id}/cells", response_model=list[CellRow], responses=errors(404))
def job_cells(job: JobDep, session: SessionDep) -> list[dict[str, Any]]:
    return queries.cell_rows(session, job.id)


@router.get("/{job_id}/matrix", response_model=list[CodecMatrix], responses=errors(404))
def job_matrix(job: JobDep, session: SessionDep) -> list[dict[str, Any]]:
    return queries.job_matrix(session, job)


@router.get("/{job_id}/rd-points", response_model=list[RdPointRecord], responses=errors(404))
def job_rd_points(job: JobDep, session: SessionDep) -> list[dict[str, Any]]:
    return queries.rd_points(session, job.id)


@router.get("/{job_id}/bd-rates", response_model=list[BdRateRecord], responses=errors(404))
def job_bd_rates(job: JobDep, session: SessionDep) -> list[dict[str, Any]]:
    return queries.bd_rates(session, job.id)


@router.get("/{job_id}/history", response_model=list[CellTrendRecord], responses=errors(404))
def job_history(job: JobDep, session: SessionDep) -> list[dict[str, Any]]:
    """Every cell of the job, and every cell the previous run of its series had and this one lacks, with its
    trend against the earlier runs (new, pass, fixed, regression, unstable, persistent-failure, missing),
    the most urgent first."""
    return [t.as_dict() for t in history.job_trends(session, job)]
