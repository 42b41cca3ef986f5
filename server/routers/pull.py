"""Pull workers: devices behind NAT or a firewall that call out, claim tasks, renew leases and post results.

A pull worker (`bitmatch worker --coordinator URL --token T`) registers with its target and fingerprint, then
long-polls `claim`. Until it has passed the known-answer test its claims return a `check` task (decode the
recorded bitstream, encode the image, decode its own bitstream); after that, tasks from the queue, one per
claim, under a lease it renews while it works. Inputs travel by digest: the worker fetches the codec archive
and the image or bitstream from `/api/blobs/{sha256}`. Every route needs the coordinator's token.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from codec.vocabulary import TaskStatus
from server.dependencies import AppDep, DeviceId, WriteAccess, device_or_404
from server.devices import HEALTHY, OFFLINE, QUARANTINED, UNCHECKED, WorkerSpec
from server.dispatch import task_inputs
from server.knownanswer import entropy_mismatches
from server.models import Device, utcnow
from server.recording import TaskFailure, failure_of
from server.schemas.base import errors
from server.schemas.workers import ClaimedTask, DeviceRecord, PullRegistered, Recorded, Renewed
from server.state import AppState
from server.taskqueue import Lease
from server.workerclient import CodecResult, WorkerFailed

router = APIRouter(
    prefix="/api/workers",
    tags=["pull workers"],
    dependencies=[WriteAccess],
    responses=errors(401, 422),
)
Token = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Kind = Literal["encode", "decode"]
TaskId = DeviceId
PULL_SLOTS = 1


class PullRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    target: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    fingerprint: dict[str, Any] = Field(description="the worker's fingerprint (what /v1/info would report)")


class LeaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lease: Token


class ResultBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lease: Token
    result: dict[str, Any] | None = Field(default=None, description="the worker's result JSON")
    error: dict[str, Any] | None = Field(default=None, description='{"status", "error", "detail"}')


class CheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decode: dict[str, str] = Field(description="stage hashes of decoding the recorded bitstream")
    encode: dict[str, str] = Field(description="stage hashes of encoding the image")
    self_decode: dict[str, str] = Field(description="stage hashes of decoding its own bitstream")


@router.post("/pull", status_code=201, response_model=PullRegistered)
def register_pull_worker(body: PullRegistration, app: AppDep) -> dict[str, Any]:
    spec = WorkerSpec(
        name=body.name, url=f"pull://{body.name}", target=body.target, fingerprint=body.fingerprint
    )
    device_id = app.pool.upsert(spec, source="registered", mode="pull")
    problem = app.pool.record_fingerprint(device_id, body.fingerprint)
    if problem:
        app.pool.mark(device_id, QUARANTINED, problem)
    device = _device(app, device_id)
    return {
        **device,
        "lease_seconds": app.settings.lease_seconds,
        "wait_seconds": app.settings.pull_wait_seconds,
    }


@router.post(
    "/{device_id}/claim",
    response_model=ClaimedTask,
    responses={204: {"description": "nothing to do yet; poll again"}, **errors(404, 409)},
)
async def claim(device_id: DeviceId, app: AppDep, wait: Annotated[float, Query(ge=0, le=120)] = 20.0) -> Any:
    """The next task for this worker, waiting up to `wait` seconds for one (204 if none came)."""
    deadline = asyncio.get_running_loop().time() + min(wait, app.settings.pull_wait_seconds)
    first = True
    while True:
        device = await asyncio.to_thread(_heartbeat, app, device_id)
        if device.status == UNCHECKED:
            check = await asyncio.to_thread(_check_task, app, device_id)
            if check is not None:
                return check
        elif device.status == HEALTHY:
            lease = await asyncio.to_thread(app.scheduler.queue.claim, device_id, device.target, PULL_SLOTS)
            if lease is not None:
                return await asyncio.to_thread(_task, app, lease)
            if first:  # a worker back for more after a result and none left: its job may be complete
                app.scheduler.wake()
        else:
            raise HTTPException(409, f"worker {device_id} is {device.status}: {device.health_detail}")
        first = False
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return Response(status_code=204)
        await app.scheduler.work.wait(min(remaining, 1.0))


def _heartbeat(app: AppState, device_id: int) -> Device:
    with app.db.session() as session:
        device = session.get(Device, device_id)
        if device is None or device.mode != "pull":
            raise HTTPException(404, f"no pull worker {device_id}")
        device.last_heartbeat = utcnow()
        if device.status == OFFLINE:  # it was silent too long: check it again before it gets work
            device.status, device.health_detail = UNCHECKED, "polling again after being offline"
        session.expunge(device)
        return device


def _check_task(app: AppState, device_id: int) -> dict[str, Any] | None:
    """The known-answer test as a task; None while the coordinator still loads it."""
    pool = app.pool
    answer = pool.known_answer
    if answer is None:  # loading, or it cannot run: the worker stays unchecked and polls again
        pool.mark(device_id, UNCHECKED, pool.known_answer_pending("polling"))
        return None
    store = app.store
    return {
        "kind": "check",
        "codec": answer.codec_digest,
        "archive": store.put(answer.archive),
        "bitstream": store.put(answer.bitstream),
        "image": store.put(answer.png),
    }


def _task(app: AppState, lease: Lease) -> dict[str, Any]:
    inputs = task_inputs(app.db, lease)
    return {
        "kind": lease.kind,
        "id": lease.task_id,
        "lease": lease.token,
        "attempt": lease.attempt,
        "lease_seconds": app.settings.lease_seconds,
        "codec": inputs.codec_digest,
        "archive": inputs.archive_sha256,
        "payload": inputs.payload_sha256,
        "allow_foreign": inputs.allow_foreign,
    }


@router.post("/{device_id}/known-answer", response_model=DeviceRecord, responses=errors(404, 409))
def check_result(device_id: DeviceId, body: CheckBody, app: AppDep) -> dict[str, Any]:
    answer = app.pool.known_answer
    if answer is None:
        raise HTTPException(409, "no known-answer test is loaded")
    wrong = entropy_mismatches(answer.decode_hashes, body.decode)
    if wrong:
        app.pool.mark(device_id, QUARANTINED, f"known-answer decode differs at {', '.join(wrong)}")
    elif wrong := entropy_mismatches(body.encode, body.self_decode):
        app.pool.mark(
            device_id, QUARANTINED, f"decoding its own known-answer bitstream differs at {', '.join(wrong)}"
        )
    else:
        app.pool.mark(device_id, HEALTHY, "known-answer test passed")
        app.scheduler.notify_work()
    return _device(app, device_id)


def _lease(app: AppState, device_id: int, kind: str, task_id: int, token: str) -> Lease:
    with app.db.session() as session:
        device = session.get(Device, device_id)
        target = device.target if device else ""
    return Lease(kind, task_id, token, device_id, 0, target, 0)


@router.post(
    "/{device_id}/tasks/{kind}/{task_id}/renew",
    response_model=Renewed,
    responses={**errors(404), 409: {**errors(409)[409], "description": "lease lost"}},
)
def renew(device_id: DeviceId, kind: Kind, task_id: TaskId, body: LeaseBody, app: AppDep) -> dict[str, Any]:
    if not app.scheduler.queue.renew(_lease(app, device_id, kind, task_id, body.lease)):
        raise HTTPException(409, "the lease is no longer held: stop, the task went to another device")
    _heartbeat(app, device_id)
    return {"renewed": True, "lease_seconds": app.settings.lease_seconds}


@router.post(
    "/{device_id}/tasks/{kind}/{task_id}/result",
    response_model=Recorded,
    responses={409: {**errors(409)[409], "description": "lease lost"}},
)
def post_result(
    device_id: DeviceId, kind: Kind, task_id: TaskId, body: ResultBody, app: AppDep
) -> dict[str, Any]:
    lease = _lease(app, device_id, kind, task_id, body.lease)
    recorder = app.scheduler.recorder
    if body.result is not None:
        try:
            accepted = recorder.result(lease, CodecResult.from_json(body.result, kind))
        except WorkerFailed as exc:  # a result that breaks the contract is the task's error, on record
            accepted = recorder.failure(lease, TaskFailure(TaskStatus.ERROR, "bad-result", exc.detail))
    else:
        failure = failure_of(body.error or {})
        if failure is None:  # the worker itself cannot run it now: back to the queue
            accepted = (
                app.scheduler.queue.release(lease, f"pull worker: {body.error}", counted=False) is not None
            )
        else:
            accepted = recorder.failure(lease, failure)
    if not accepted:
        raise HTTPException(409, "the lease is no longer held; the result was not recorded")
    app.scheduler.notify_work()
    return {"recorded": True}


def _device(app: AppState, device_id: int) -> dict[str, Any]:
    with app.db.session() as session:
        return DeviceRecord.of(session, device_or_404(session, device_id)).model_dump()
