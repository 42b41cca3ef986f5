"""What the routers depend on: the app's parts, a database session per request, the rows a path names (or a
404), the write token, size-capped bodies, and the path parameters' types."""

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db import Database
from server.devices import DevicePool
from server.models import Cell, Codec, Device, Image, Job
from server.scheduler import Scheduler
from server.settings import Settings
from server.state import AppState
from server.storage import BlobStore

MAX_ID = 2**63 - 1
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
DeviceId = Annotated[int, Path(ge=1, le=MAX_ID)]
CellId = Annotated[int, Path(ge=1, le=MAX_ID)]
DigestPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256")]


# Each part is reached through its own function, so a test can replace it with `app.dependency_overrides`.
def app_state(request: Request) -> AppState:
    return request.app.state.bitmatch


AppDep = Annotated[AppState, Depends(app_state)]


def get_settings(app: AppDep) -> Settings:
    return app.settings


def get_database(app: AppDep) -> Database:
    return app.db


def get_store(app: AppDep) -> BlobStore:
    return app.store


def get_pool(app: AppDep) -> DevicePool:
    return app.pool


def get_scheduler(app: AppDep) -> Scheduler:
    return app.scheduler


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
StorageDep = Annotated[BlobStore, Depends(get_store)]
PoolDep = Annotated[DevicePool, Depends(get_pool)]
SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]


def get_session(db: DatabaseDep) -> Iterator[Session]:
    with db.session() as session:
        yield session


# Committed when the handler returns (rolled back if it raises), before the response is sent; a handler that
# must act after its writes are visible (wake the scheduler) commits first.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def job_or_404(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


def cell_or_404(session: Session, cell_id: int) -> Cell:
    cell = session.get(Cell, cell_id)
    if cell is None:
        raise HTTPException(404, f"no cell {cell_id}")
    return cell


def device_or_404(session: Session, device_id: int) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise HTTPException(404, f"no worker {device_id}")
    return device


def codec_or_404(session: Session, digest: str) -> Codec:
    codec = session.scalar(select(Codec).where(Codec.digest == digest))
    if codec is None:
        raise HTTPException(404, f"no codec {digest}")
    return codec


def image_or_404(session: Session, digest: str) -> Image:
    image = session.scalar(select(Image).where(Image.digest == digest))
    if image is None:
        raise HTTPException(404, f"no image {digest}")
    return image


def get_job(job_id: JobId, session: SessionDep) -> Job:
    return job_or_404(session, job_id)


def get_cell(cell_id: CellId, session: SessionDep) -> Cell:
    return cell_or_404(session, cell_id)


def get_device(device_id: DeviceId, session: SessionDep) -> Device:
    return device_or_404(session, device_id)


def get_codec(digest: DigestPath, session: SessionDep) -> Codec:
    return codec_or_404(session, digest)


def get_image(digest: DigestPath, session: SessionDep) -> Image:
    return image_or_404(session, digest)


JobDep = Annotated[Job, Depends(get_job)]
CellDep = Annotated[Cell, Depends(get_cell)]
DeviceDep = Annotated[Device, Depends(get_device)]
CodecDep = Annotated[Codec, Depends(get_codec)]
ImageDep = Annotated[Image, Depends(get_image)]


def require_token(request: Request) -> None:
    """Writes need `Authorization: Bearer TOKEN`; a coordinator started without a token refuses them all."""
    expected = app_state(request).settings.token
    given = request.headers.get("authorization", "")
    if not expected or not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


WriteAccess = Depends(require_token)


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it exceeds the upload cap (declared or actual size)."""
    limit = app_state(request).settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes exceeds the {limit}-byte upload cap")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body exceeds the {limit}-byte upload cap")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise HTTPException(400, "empty body")
    return body
