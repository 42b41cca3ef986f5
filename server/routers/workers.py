"""Workers (devices): registration with token and fingerprint, heartbeats, health checks, listing."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server import queries
from server.api import AppDep, DeviceId, WriteAccess
from server.devices import WorkerSpec
from server.models import Device

router = APIRouter(prefix="/api/workers", tags=["workers"])

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


@router.post("", status_code=201, dependencies=[WriteAccess])
async def register_worker(body: Registration, app: AppDep) -> dict[str, Any]:
    spec = WorkerSpec(
        name=body.name or body.url,
        url=body.url,
        token=body.token,
        target=body.target,
        fingerprint=body.fingerprint,
    )
    device_id = await asyncio.to_thread(app.pool.upsert, spec, "registered")
    await app.pool.check(device_id)
    return await asyncio.to_thread(_device, app, device_id)


@router.get("")
def list_workers(app: AppDep) -> list[dict[str, Any]]:
    with app.db.session() as session:
        return queries.list_devices(session)


@router.get("/{device_id}")
def get_worker(device_id: DeviceId, app: AppDep) -> dict[str, Any]:
    return _device(app, device_id)


@router.post("/{device_id}/heartbeat", dependencies=[WriteAccess])
def heartbeat(device_id: DeviceId, app: AppDep) -> dict[str, Any]:
    if not app.pool.heartbeat(device_id):
        raise HTTPException(404, f"no worker {device_id}")
    return _device(app, device_id)


@router.post("/{device_id}/check", dependencies=[WriteAccess])
async def check_worker(device_id: DeviceId, app: AppDep) -> dict[str, Any]:
    await asyncio.to_thread(_device, app, device_id)  # 404 for an unknown device
    await app.pool.check(device_id)
    return await asyncio.to_thread(_device, app, device_id)


def _device(app, device_id: int) -> dict[str, Any]:
    with app.db.session() as session:
        device = session.get(Device, device_id)
        if device is None:
            raise HTTPException(404, f"no worker {device_id}")
        return queries.device_dict(session, device)
