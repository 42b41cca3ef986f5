"""Workers (devices) and what pull workers are answered: their registration, tasks, renewals, results."""

from typing import Annotated, Any, Literal, Self

from pydantic import Field
from sqlalchemy.orm import Session

from server.models import Device, Fingerprint
from server.schemas.base import Schema, Seconds, iso


class DeviceRecord(Schema):
    id: int
    name: str
    url: str
    target: str
    source: str
    mode: str
    status: str
    health_detail: str
    last_heartbeat: str | None
    last_check: str | None
    emulated: bool | None
    fingerprint: dict[str, Any] | None
    fingerprint_sha256: str | None

    @classmethod
    def of(cls, session: Session, device: Device) -> Self:
        fingerprint = session.get(Fingerprint, device.fingerprint_id) if device.fingerprint_id else None
        return cls(
            id=device.id,
            name=device.name,
            url=device.url,
            target=device.target,
            source=device.source,
            mode=device.mode,
            status=device.status,
            health_detail=device.health_detail,
            last_heartbeat=iso(device.last_heartbeat),
            last_check=iso(device.last_check),
            emulated=fingerprint.emulated if fingerprint else None,
            fingerprint=fingerprint.info if fingerprint else None,
            fingerprint_sha256=fingerprint.sha256 if fingerprint else None,
        )


class PullRegistered(DeviceRecord):
    """The registered pull worker, with how long its leases last and its long polls may wait."""

    lease_seconds: Seconds
    wait_seconds: Seconds


class CheckTask(Schema):
    """The known-answer test: decode the recorded bitstream, encode the image, decode its own bitstream."""

    kind: Literal["check"]
    codec: str
    archive: str
    bitstream: str
    image: str


class PullTask(Schema):
    """A task from the queue, under a lease; its inputs by digest (fetched from /api/blobs/{sha256})."""

    kind: Literal["encode", "decode"]
    id: int
    lease: str
    attempt: int
    lease_seconds: Seconds
    codec: str
    archive: str
    payload: str
    allow_foreign: bool


ClaimedTask = Annotated[CheckTask | PullTask, Field(discriminator="kind")]


class Renewed(Schema):
    renewed: bool
    lease_seconds: Seconds


class Recorded(Schema):
    recorded: bool
