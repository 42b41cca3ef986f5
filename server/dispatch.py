"""Push dispatch: the coordinator hands each healthy push device a task only when one of its slots is free.

Every healthy push device gets `worker_concurrency` slot coroutines. A slot claims a task from the queue
(server/taskqueue.py) only when it is idle, so a device that died or froze stops receiving work the moment it
stops answering, and equal devices share the queue by how fast they empty it. While a call is in flight a
watchdog renews the lease every third of the lease time and asks the worker's /healthz: a worker that does not
answer for a whole lease (a SIGSTOPped process, a dead host) loses the task, which goes back to the queue for
another device, and is marked offline until a health check brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select

from server import verdicts
from server.db import Database
from server.devices import HEALTHY, OFFLINE, DevicePool, LiveDevice
from server.models import Codec, Decode, Device, Encode, Image
from server.recording import Recorder, TaskFailure
from server.settings import Settings
from server.storage import BlobStore
from server.taskqueue import Lease, TaskQueue
from server.workerclient import (
    CodecResult,
    TransportError,
    WorkerBusy,
    WorkerCallError,
    WorkerRejected,
    WorkerTimeout,
)

log = logging.getLogger("bitmatch.server.dispatch")
PROBE_TIMEOUT_S = 3.0
ARCHIVE_CACHE = 8


@dataclass(frozen=True)
class TaskInputs:
    codec_digest: str
    archive_sha256: str
    payload_sha256: str  # the image PNG of an encode, the bitstream of a decode
    allow_foreign: bool = False  # a decode by another package than the encode's (compatibility)


def task_inputs(db: Database, lease: Lease) -> TaskInputs:
    """What a claimed task needs, by digest: its codec package and its input."""
    with db.session() as session:
        if lease.kind == "encode":
            row = session.get(Encode, lease.task_id)
            encode, payload = row, session.get(Image, row.image_id).digest
        else:
            row = session.get(Decode, lease.task_id)
            encode = session.get(Encode, row.encode_id)
            payload = encode.bitstream_sha256
        codec_id = row.codec_id if lease.kind == "decode" and row.codec_id else encode.codec_id
        codec = session.get(Codec, codec_id)
        return TaskInputs(codec.digest, codec.archive_sha256, payload, codec_id != encode.codec_id)


class Signal:
    """Wakes every waiter at once: new work in the queue, or a device that may take some."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event.clear()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class PushDispatcher:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        queue: TaskQueue,
        recorder: Recorder,
        pool: DevicePool,
        settings: Settings,
        work: Signal,
    ) -> None:
        self.db, self.store, self.queue, self.recorder = db, store, queue, recorder
        self.pool, self.settings, self.work = pool, settings, work
        self._slots: dict[int, list[asyncio.Task]] = {}
        self._archives: OrderedDict[str, bytes] = OrderedDict()

    async def run(self) -> None:
        """Keep `worker_concurrency` slots running for every healthy push device."""
        try:
            while True:
                for device_id, target in await asyncio.to_thread(self._healthy_push_devices):
                    tasks = [t for t in self._slots.get(device_id, []) if not t.done()]
                    while len(tasks) < self.settings.worker_concurrency:
                        tasks.append(
                            asyncio.create_task(
                                self._slot(device_id, target), name=f"bitmatch-slot-{device_id}-{len(tasks)}"
                            )
                        )
                    self._slots[device_id] = tasks
                await self.work.wait(1.0)
        finally:
            every = [task for tasks in self._slots.values() for task in tasks]
            for task in every:
                task.cancel()
            await asyncio.gather(*every, return_exceptions=True)

    def _healthy_push_devices(self) -> list[tuple[int, str]]:
        with self.db.session() as session:
            query = select(Device.id, Device.target).where(Device.status == HEALTHY, Device.mode == "push")
            return [(device_id, target) for device_id, target in session.execute(query)]

    def _healthy(self, device_id: int) -> bool:
        with self.db.session() as session:
            device = session.get(Device, device_id)
            return device is not None and device.status == HEALTHY

    async def _slot(self, device_id: int, target: str) -> None:
        slots = self.settings.worker_concurrency
        while await asyncio.to_thread(self._healthy, device_id):
            lease = await asyncio.to_thread(self.queue.claim, device_id, target, slots)
            if lease is None:
                await self.work.wait(0.5)
                continue
            try:
                await self._run(lease)
            except Exception:  # the lease expires and another device takes the task
                log.exception("%s %s on device %s failed unexpectedly", lease.kind, lease.task_id, device_id)

    async def _run(self, lease: Lease) -> None:
        inputs = await asyncio.to_thread(task_inputs, self.db, lease)
        live = await self.pool.live(lease.device_id)
        call = asyncio.create_task(self._call(live, lease, inputs))
        lost = await self._watch(live, lease, call)
        if lost is not None:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call
            if lost:
                await asyncio.to_thread(self._lose_device, lease, lost)
            return
        await self._record(lease, call)

    async def _watch(self, live: LiveDevice, lease: Lease, call: asyncio.Task) -> str | None:
        """Renew the lease while the call runs; why the device is lost, "" if the lease was, or None."""
        interval = self.settings.lease_seconds / 3
        loop = asyncio.get_running_loop()
        last_answer = loop.time()
        while True:
            done, _ = await asyncio.wait({call}, timeout=interval)
            if done:
                return None
            if not await asyncio.to_thread(self.queue.renew, lease):
                return ""  # cancelled, or claimed again after this coordinator stalled
            try:
                await asyncio.wait_for(live.client.healthz(), min(PROBE_TIMEOUT_S, interval))
                last_answer = loop.time()
            except (WorkerCallError, TimeoutError):
                if loop.time() - last_answer >= self.settings.lease_seconds:
                    return f"no answer to /healthz for {self.settings.lease_seconds:g} s during a task"

    def _lose_device(self, lease: Lease, reason: str) -> None:
        self.pool.mark(lease.device_id, OFFLINE, f"lost during a job: {reason}")
        self.queue.release(lease, f"device {lease.device_id} lost: {reason}")
        log.warning(
            "device %s lost (%s); %s %s goes back to the queue",
            lease.device_id,
            reason,
            lease.kind,
            lease.task_id,
        )

    async def _call(self, live: LiveDevice, lease: Lease, inputs: TaskInputs) -> CodecResult:
        payload = await asyncio.to_thread(self.store.get, inputs.payload_sha256)
        for attempt in (1, 2):
            await self._ensure_codec(live, inputs)
            try:
                if lease.kind == "encode":
                    return await live.client.encode(inputs.codec_digest, payload, recon=True, index_map=True)
                return await live.client.decode(
                    inputs.codec_digest,
                    payload,
                    recon=True,
                    index_map=True,
                    allow_foreign=inputs.allow_foreign,
                )
            except WorkerRejected as exc:
                if exc.code != "unknown-codec" or attempt == 2:
                    raise
                live.codecs.discard(inputs.codec_digest)  # the worker restarted or dropped its cache
        raise AssertionError("unreachable")

    async def _ensure_codec(self, live: LiveDevice, inputs: TaskInputs) -> None:
        if inputs.codec_digest in live.codecs:
            return
        archive = self._archives.get(inputs.archive_sha256)
        if archive is None:
            archive = await asyncio.to_thread(self.store.get, inputs.archive_sha256)
            self._archives[inputs.archive_sha256] = archive
            while len(self._archives) > ARCHIVE_CACHE:
                self._archives.popitem(last=False)
        await self.pool.ensure_codec(live, inputs.codec_digest, archive)

    async def _record(self, lease: Lease, call: asyncio.Task) -> None:
        try:
            result = call.result()
        except TransportError as exc:
            await asyncio.to_thread(self._lose_device, lease, exc.detail)
            return
        except WorkerBusy as exc:  # not the task's fault: back to the queue, the attempt not counted
            await asyncio.to_thread(self.queue.release, lease, f"device busy: {exc.detail}", False)
            await asyncio.sleep(self.settings.retry_backoff)
            return
        except WorkerTimeout as exc:
            await asyncio.to_thread(
                self.recorder.failure, lease, TaskFailure(verdicts.TIMEOUT, exc.code, exc.detail)
            )
            return
        except WorkerRejected as exc:
            await asyncio.to_thread(
                self.recorder.failure, lease, TaskFailure("rejected", exc.code, exc.detail)
            )
            return
        except WorkerCallError as exc:
            await asyncio.to_thread(
                self.recorder.failure, lease, TaskFailure(verdicts.ERROR, exc.code, exc.detail)
            )
            return
        await asyncio.to_thread(self.recorder.result, lease, result)
        self.work.notify()  # a finished encode may have planned decodes
