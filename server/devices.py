"""Workers as the coordinator sees them: registration, config files, fingerprints, health and quarantine.

A device's status decides whether the scheduler may use it: only `healthy` devices, which passed the
known-answer test, give verdicts. `unchecked` devices have not passed it yet (it has not run, or cannot run);
`quarantined` devices failed it or misreported themselves; `offline` devices did not answer. A periodic check
of a healthy device that is running tasks asks only whether it answers with the same fingerprint: the
known-answer test would queue behind those tasks, and runs again when the device is idle.
"""

import asyncio
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from codec.vocabulary import DeviceStatus
from server.db import Database
from server.knownanswer import KNOWN_ANSWER_UNAVAILABLE, KnownAnswer, entropy_mismatches
from server.models import Device, Fingerprint, utcnow
from server.settings import Settings
from server.taskqueue import TaskQueue
from server.workerclient import WorkerCallError, WorkerClient
from worker.contract.fingerprint import fingerprint_sha256

log = logging.getLogger("bitmatch.server.devices")

HEALTHY, QUARANTINED = DeviceStatus.HEALTHY, DeviceStatus.QUARANTINED
OFFLINE, UNCHECKED = DeviceStatus.OFFLINE, DeviceStatus.UNCHECKED
BUSY_RECHECK = "known-answer test passed; checked again while busy: answers, same fingerprint"


@dataclass
class WorkerSpec:
    name: str
    url: str
    token: str | None = None
    target: str | None = None
    fingerprint: dict[str, Any] | None = None


def load_workers_config(path: Path, environ: Mapping[str, str] | None = None) -> list[WorkerSpec]:
    """Workers from a JSON or TOML file: `{"workers": [{"name", "url", "token", "target"}, ...]}`.

    Instead of a literal "token" an entry may name an environment variable, `"token_env": "NAME"`, so the
    config file can be committed without its secret; an unset variable is an error, not a missing token.
    """
    environ = os.environ if environ is None else environ
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    entries = data.get("workers", []) if isinstance(data, dict) else data
    specs = []
    for entry in entries:
        url = str(entry["url"])
        name = str(entry.get("name") or url)
        specs.append(
            WorkerSpec(
                name=name, url=url, token=_entry_token(entry, name, environ), target=entry.get("target")
            )
        )
    return specs


def _entry_token(entry: dict[str, Any], name: str, environ: Mapping[str, str]) -> str | None:
    if "token_env" not in entry:
        return entry.get("token")
    if "token" in entry:
        raise ValueError(f"worker {name}: give either token or token_env, not both")
    variable = str(entry["token_env"])
    if variable not in environ:
        raise ValueError(f"worker {name}: environment variable {variable} (its token_env) is not set")
    return environ[variable]


@dataclass
class LiveDevice:
    """Per-process state of one device: its HTTP client, its concurrency slots, the codecs it holds."""

    client: WorkerClient
    slots: asyncio.Semaphore
    codecs: set[str] = field(default_factory=set)
    in_flight: int = 0


class DevicePool:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.known_answer: KnownAnswer | None = None
        self.known_answer_problem = ""  # why the known-answer test cannot run, once loading it failed
        self.known_answer_loading = True  # until the app has loaded it (server/app.py)
        self._live: dict[int, LiveDevice] = {}
        self.statuses: dict[int, str] = {}  # as this process last marked or read them (server/dispatch.py)
        self._fingerprints: dict[int, tuple[int | None, bool | None]] = {}
        self._check_locks: dict[int, asyncio.Lock] = {}
        self._closing: list[WorkerClient] = []  # clients of re-registered devices, closed at shutdown

    # --- registry -----------------------------------------------------------------------------------------

    def upsert(self, spec: WorkerSpec, source: str, mode: str = "push") -> int:
        with self.db.session() as session:
            device = session.scalar(select(Device).where(Device.name == spec.name))
            if device is None:
                device = Device(
                    name=spec.name, url=spec.url, target=spec.target or "", source=source, mode=mode
                )
                session.add(device)
            device.url, device.token, device.source, device.mode = spec.url, spec.token, source, mode
            device.target = spec.target or device.target
            device.status, device.health_detail = UNCHECKED, "waiting for the first health check"
            device.claimed_fingerprint = spec.fingerprint
            session.flush()
            device_id = device.id
        self._forget(device_id)
        self.statuses[device_id] = UNCHECKED
        self._fingerprints.pop(device_id, None)
        return device_id

    def heartbeat(self, device_id: int) -> bool:
        with self.db.session() as session:
            device = session.get(Device, device_id)
            if device is None:
                return False
            device.last_heartbeat = utcnow()
            return True

    async def live(self, device_id: int) -> LiveDevice:
        if device_id not in self._live:
            url, token = await asyncio.to_thread(self._address, device_id)
            if device_id not in self._live:  # another coroutine may have made it meanwhile
                self._live[device_id] = LiveDevice(
                    client=WorkerClient(url, token, self.settings.request_timeout),
                    slots=asyncio.Semaphore(self.settings.worker_concurrency),
                )
        return self._live[device_id]

    def _address(self, device_id: int) -> tuple[str, str | None]:
        with self.db.session() as session:
            device = session.get(Device, device_id)
            return device.url, device.token

    def _forget(self, device_id: int) -> None:
        live = self._live.pop(device_id, None)
        if live is not None:
            self._closing.append(live.client)

    async def aclose(self) -> None:
        for client in [*self._closing, *(live.client for live in self._live.values())]:
            await client.aclose()
        self._live.clear()
        self._closing.clear()

    def healthy_devices(self, target: str) -> list[int]:
        with self.db.session() as session:
            rows = session.scalars(select(Device.id).where(Device.target == target, Device.status == HEALTHY))
            return sorted(rows)

    def healthy_targets(self) -> dict[str, list[str]]:
        with self.db.session() as session:
            rows = session.execute(select(Device.target, Device.name).where(Device.status == HEALTHY)).all()
        targets: dict[str, list[str]] = {}
        for target, name in rows:
            targets.setdefault(target, []).append(name)
        return targets

    def healthy_devices_by_name(self) -> dict[str, tuple[int, str]]:
        with self.db.session() as session:
            query = select(Device.name, Device.id, Device.target).where(Device.status == HEALTHY)
            rows = session.execute(query)
            return {name: (device_id, target) for name, device_id, target in rows}

    def pick(self, target: str, exclude: set[int]) -> int | None:
        """The healthy device of `target` with the fewest requests in flight, skipping `exclude`."""
        candidates = [d for d in self.healthy_devices(target) if d not in exclude]
        if not candidates:
            return None
        return min(candidates, key=lambda d: self._live[d].in_flight if d in self._live else 0)

    def mark(self, device_id: int, status: str, detail: str) -> None:
        with self.db.session() as session:
            device = session.get(Device, device_id)
            if device is not None:
                device.status, device.health_detail, device.last_check = status, detail, utcnow()
                self.statuses[device_id] = status
        if status != HEALTHY and device_id in self._live:
            self._live[device_id].codecs.clear()

    def fingerprint_of(self, device_id: int) -> tuple[int | None, bool | None]:
        """The device's fingerprint row and whether it is emulated, as its last health check recorded."""
        found = self._fingerprints.get(device_id)
        if found is None:
            found = self._read_fingerprint(device_id)
            if found[0] is not None:
                self._fingerprints[device_id] = found
        return found

    def _read_fingerprint(self, device_id: int) -> tuple[int | None, bool | None]:
        with self.db.session() as session:
            device = session.get(Device, device_id)
            if device is None or device.fingerprint_id is None:
                return None, None
            fingerprint = session.get(Fingerprint, device.fingerprint_id)
            return fingerprint.id, fingerprint.emulated

    # --- health -------------------------------------------------------------------------------------------

    async def check(self, device_id: int) -> str:
        """Run the health check (healthz, info, known answer) and record the outcome; returns the status."""
        pull_status = await asyncio.to_thread(self._pull_status, device_id)
        if pull_status is not None:
            return pull_status  # nobody can call a pull device; its next claim brings the check
        lock = self._check_locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            try:
                status, detail = await self._check(device_id)
            except WorkerCallError as exc:
                status = OFFLINE if exc.kind in ("transport", "timeout", "busy") else QUARANTINED
                detail = f"health check failed: {exc.detail}"
            except Exception as exc:  # the coordinator's own fault: say so, and check again soon
                log.exception("health check of device %s failed in the coordinator", device_id)
                status = UNCHECKED
                detail = f"health check failed in the coordinator ({type(exc).__name__}: {exc}); retrying"
            await asyncio.to_thread(self.mark, device_id, status, detail)
            if status == HEALTHY:
                await asyncio.to_thread(self.heartbeat, device_id)
            return status

    def _pull_status(self, device_id: int) -> str | None:
        with self.db.session() as session:
            device = session.get(Device, device_id)
            return device.status if device is not None and device.mode == "pull" else None

    async def check_all(self, statuses: tuple[str, ...] | None = None) -> None:
        """Health-check every push device, or only those whose status is in `statuses` (a pull device is
        checked by the task it claims first, server/routers/pull.py)."""
        query = select(Device.id).where(Device.mode == "push")
        if statuses is not None:
            query = query.where(Device.status.in_(statuses))
        with self.db.session() as session:
            ids = list(session.scalars(query))
        await asyncio.gather(*(self.check(device_id) for device_id in ids))

    async def _check(self, device_id: int) -> tuple[str, str]:
        live = await self.live(device_id)
        await live.client.healthz()
        info = await live.client.info()
        before = await asyncio.to_thread(self._health_state, device_id)
        problem = await asyncio.to_thread(self.record_fingerprint, device_id, info)
        if problem:
            return QUARANTINED, problem
        if self.known_answer is None:
            # never healthy before the check it has to pass: the scheduler waits for the next check
            return UNCHECKED, self.known_answer_pending()
        after = await asyncio.to_thread(self._health_state, device_id)
        if before[0] == HEALTHY and after[1:] == before[1:] and after[2] > 0:
            # Busy: the test's encode and decode would wait behind its tasks in the worker's one compute
            # process. It passed, it answers and reports the same fingerprint; the test runs again once idle.
            return HEALTHY, BUSY_RECHECK
        problem = await self._run_known_answer(live)
        return (QUARANTINED, problem) if problem else (HEALTHY, "known-answer test passed")

    def _health_state(self, device_id: int) -> tuple[str, int | None, int]:
        """The device's status, fingerprint row and running tasks."""
        with self.db.session() as session:
            device = session.get(Device, device_id)
            return device.status, device.fingerprint_id, TaskQueue.running_on(session, device_id)

    def known_answer_pending(self, seen: str = "reachable") -> str:
        """Why a device that is `seen` (reachable, polling) is still unchecked: the known-answer test is
        loading, or cannot run."""
        if self.known_answer_loading:
            return f"{seen}; waiting for the coordinator to load its known-answer test"
        return f"{seen}; {KNOWN_ANSWER_UNAVAILABLE} ({self.known_answer_problem}), so not healthy"

    def record_fingerprint(self, device_id: int, info: dict[str, Any]) -> str:
        """Store the reported fingerprint; a non-empty return explains why the device must be quarantined."""
        try:
            return self._record_fingerprint(device_id, info)
        finally:
            self._fingerprints.pop(device_id, None)

    def _record_fingerprint(self, device_id: int, info: dict[str, Any]) -> str:
        if not isinstance(info, dict) or not info.get("target"):
            return "/v1/info did not report a target"
        sha = fingerprint_sha256(info)
        fingerprint_id = self._fingerprint_id(sha, info)
        with self.db.session() as session:
            device = session.get(Device, device_id)
            claimed = device.claimed_fingerprint
            device.fingerprint_id = fingerprint_id
            if device.target and device.target != info["target"]:
                return f"configured as target {device.target!r} but reports {info['target']!r}"
            device.target = str(info["target"])
            if claimed is not None and fingerprint_sha256(claimed) != sha:
                return "fingerprint sent at registration differs from what /v1/info reports"
        return ""

    def _fingerprint_id(self, sha: str, info: dict[str, Any]) -> int:
        """The row of a fingerprint, inserted if absent: two identical devices checked at once meet at the
        unique key, and the loser reads the winner's row."""
        with self.db.session() as session:
            found = session.scalar(select(Fingerprint.id).where(Fingerprint.sha256 == sha))
            if found is not None:
                return found
        row = Fingerprint(
            sha256=sha,
            target=str(info["target"]),
            arch=str(info.get("arch", "")),
            emulated=info.get("emulator") is not None,
            info=info,
        )
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError:
            with self.db.session() as session:
                return session.scalar(select(Fingerprint.id).where(Fingerprint.sha256 == sha))

    async def _run_known_answer(self, live: LiveDevice) -> str:
        answer = self.known_answer
        await self.ensure_codec(live, answer.codec_digest, answer.archive)
        reference = await live.client.decode(answer.codec_digest, answer.bitstream, recon=False)
        wrong = entropy_mismatches(answer.decode_hashes, reference.stage_hashes)
        if wrong:
            return f"known-answer decode differs from the recorded hashes at {', '.join(wrong)}"
        encoded = await live.client.encode(answer.codec_digest, answer.png, recon=False)
        if encoded.bitstream is None:
            return "known-answer encode returned no bitstream"
        own = await live.client.decode(answer.codec_digest, encoded.bitstream, recon=False)
        wrong = entropy_mismatches(encoded.stage_hashes, own.stage_hashes)
        if wrong:
            return f"decoding its own known-answer bitstream differs from its encoder at {', '.join(wrong)}"
        return ""

    async def ensure_codec(self, live: LiveDevice, digest: str, archive: bytes) -> None:
        if digest not in live.codecs:
            await live.client.put_codec(digest, archive)
            live.codecs.add(digest)
