"""Workers (devices): registration with token and fingerprint, heartbeats, health checks, listing."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server import queries
from server.db import Database
from server.dependencies import (
    DatabaseDep,
    DeviceDep,
    DeviceId,
    PoolDep,
    SessionDep,
    WriteAccess,
    device_or_404,
)
from server.devices import WorkerSpec
from server.schemas.base import errors
from server.schemas.workers import DeviceRecord

router = APIRouter(prefix="/api/workers", tags=["workers"], responses=errors(422))

Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=512)]


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url = Field(description="base URL of the worker, e.g. http://127.0.0.1:8101")
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    token: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="the worker's own bearer token, used by the coordinator to call it"
    )
    target: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    fingerprint: dict[str, Any] | None = Field(
        default=None, description="the worker's /v1/info as it reports itself; must match what it serves"
    )


@router.post("", status_code=201, dependencies=[WriteAccess], responses=errors(401))
async def register_worker(body: Registration, db: DatabaseDep, pool: PoolDep) -> DeviceRecord:
    spec = WorkerSpec(
        name=body.name or body.url,
        url=body.url,
        token=body.token,
        target=body.target,
        fingerprint=body.fingerprint,
    )
    device_id = await asyncio.to_thread(pool.upsert, spec, "registered")
    await pool.check(device_id)
    return await asyncio.to_thread(_device, db, device_id)


@router.get("", response_model=list[DeviceRecord])
def list_workers(session: SessionDep) -> list[dict[str, Any]]:
    return queries.list_devices(session)


@router.get("/{device_id}", responses=errors(404))
def get_worker(device: DeviceDep, session: SessionDep) -> DeviceRecord:
    return DeviceRecord.of(session, device)


@router.post("/{device_id}/heartbeat", dependencies=[WriteAccess], responses=errors(401, 404))
def heartbeat(device_id: DeviceId, db: DatabaseDep, pool: PoolDep) -> DeviceRecord:
    if not pool.heartbeat(device_id):
        raise HTTPException(404, f"no worker {device_id}")
    return _device(db, device_id)


@router.post("/{device_id}/check", dependencies=[WriteAccess], responses=errors(401, 404))
async def check_worker(device_id: DeviceId, db: DatabaseDep, pool: PoolDep) -> DeviceRecord:
    await asyncio.to_thread(_device, db, device_id)  # 404 for an unknown device
    await pool.check(device_id)
    return await asyncio.to_thread(_device, db, device_id)


def _device(db: Database, device_id: int) -> DeviceRecord:
    """The device as it is now (read after what the handler did to it)."""
    with db.session() as session:
        return DeviceRecord.of(session, device_or_404(session, device_id))
