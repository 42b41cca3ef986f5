"""Push dispatch: the coordinator hands each healthy push device a task only when one of its slots is free.

Every healthy push device gets `worker_concurrency` slot coroutines. A slot claims a task from the queue
(server/taskqueue.py) only when it is idle, so a device that died or froze stops receiving work the moment it
stops answering, and equal devices share the queue by how fast they empty it. While a call is in flight a
watchdog renews the lease every third of the lease time and asks the worker's /healthz: a worker that does not
answer for a whole lease (a SIGSTOPped process, a dead host) loses the task, which goes back to the queue for
another device, and is marked offline until a health check brings it back.

What the dispatcher needs per task it keeps in memory, the database staying the record: which push devices
are healthy (`DevicePool.statuses`, as this process marked them, refreshed from the database once a
`DEVICE_REFRESH_S`, which brings what other coordinators marked), each task's inputs by digest
(server/taskfacts.py) and package archives by digest (server/blobcache.py). Claims, slots and leases stay in
the database. Idle slots wait on `Signal`: a finished encode wakes as many slots of each decoder target as it
planned decodes for it, not every slot of every device.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from server import verdicts
from server.db import Database
from server.devices import HEALTHY, OFFLINE, DevicePool, LiveDevice
from server.models import Device
from server.recording import Recorder, TaskFailure
from server.settings import Settings
from server.storage import BlobStore
from server.taskfacts import TaskFacts, read_facts
from server.taskqueue import PENDING, Lease, TaskQueue
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
IDLE_POLL_S = 2.0  # an idle slot looks at the queue this often without a wake-up (work of other coordinators)
DEVICE_REFRESH_S = 1.0  # the healthy push devices are read from the database at most this often


@dataclass(frozen=True)
class TaskInputs:
    codec_digest: str
    archive_sha256: str
    payload_sha256: str  # the image PNG of an encode, the bitstream of a decode
    allow_foreign: bool = False  # a decode by another package than the encode's (compatibility)


Claimed = tuple[Lease, tuple[TaskInputs, bytes] | None]  # a claimed task, and its inputs when read with it


def task_inputs(db: Database, lease: Lease) -> TaskInputs:
    """What a claimed task needs, by digest: its codec package and its input."""
    with db.session() as session:
        return inputs_of(read_facts(session, lease.kind, lease.task_id))


def inputs_of(facts: TaskFacts) -> TaskInputs:
    return TaskInputs(facts.codec_digest, facts.archive_sha256, facts.payload_sha256, facts.allow_foreign)


class Signal:
    """Wakes waiters: new work in the queue, or a device that may take some. `notify()` wakes every waiter;
    `notify(target, count)` wakes the `count` longest waiting for that target, and every waiter for any."""

    def __init__(self) -> None:
        self._waiters: dict[str | None, list[asyncio.Future]] = {}

    def notify(self, target: str | None = None, count: int = 0) -> None:
        if target is None:
            for waiters in self._waiters.values():
                self._wake(waiters, len(waiters))
            return
        self._wake(self._waiters.get(target, []), count)
        self._wake(self._waiters.get(None, []), len(self._waiters.get(None, [])))

    @staticmethod
    def _wake(waiters: list[asyncio.Future], count: int) -> None:
        woken = 0
        while waiters and woken < count:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                woken += 1

    async def wait(self, timeout: float, target: str | None = None) -> None:
        """Until a notify that concerns `target` (None: any), or `timeout` seconds."""
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(target, [])
        waiters.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            if waiter in waiters:
                waiters.remove(waiter)


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
        drained: Callable[[], None] = lambda: None,
    ) -> None:
        self.db, self.store, self.queue, self.recorder = db, store, queue, recorder
        self.pool, self.settings, self.work = pool, settings, work
        self.drained = drained
        self._slots: dict[int, list[asyncio.Task]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        recorder.planned = self._planned

    def _planned(self, target: str, count: int) -> None:
        """Thread-safe: `count` tasks of `target` were queued (a finished encode's decodes)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.work.notify, target, count)

    async def run(self) -> None:
        """Keep `worker_concurrency` slots running for every healthy push device."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                started = time.monotonic()
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
                await asyncio.sleep(max(0.0, DEVICE_REFRESH_S - (time.monotonic() - started)))
        finally:
            every = [task for tasks in self._slots.values() for task in tasks]
            for task in every:
                task.cancel()
            await asyncio.gather(*every, return_exceptions=True)

    def _healthy_push_devices(self) -> list[tuple[int, str]]:
        """The healthy push devices, as the database has them; every push device's status into memory."""
        with self.db.session() as session:
            query = select(Device.id, Device.target, Device.status).where(Device.mode == "push")
            rows = session.execute(query).all()
        self.pool.statuses.update({device_id: status for device_id, _, status in rows})
        return [(device_id, target) for device_id, target, status in rows if status == HEALTHY]

    def _healthy(self, device_id: int) -> bool:
        return self.pool.statuses.get(device_id) == HEALTHY

    async def _slot(self, device_id: int, target: str) -> None:
        """Claim, run, record, claim again: recording a result and claiming the next task share one thread
        hop (and the next task's inputs are read in it)."""
        slots = self.settings.worker_concurrency
        busy = False
        claimed = await asyncio.to_thread(self._claim, device_id, target, slots)
        while claimed is not None or self._healthy(device_id):  # a claimed task is run, come what may
            if claimed is None:
                if busy:  # this slot just ran out of work: the job of its last task may be complete
                    self.drained()
                busy = False
                await self.work.wait(IDLE_POLL_S * random.uniform(0.75, 1.25), target)
                claimed = await asyncio.to_thread(self._claim, device_id, target, slots)
                continue
            busy = True
            lease, prepared = claimed
            finish: Callable[[], None] | None = None
            try:
                finish = await self._run(lease, prepared)
            except Exception:  # the lease expires and another device takes the task
                log.exception("%s %s on device %s failed unexpectedly", lease.kind, lease.task_id, device_id)
            claimed = await asyncio.to_thread(
                self._finish_then_claim, lease, finish, device_id, target, slots
            )

    def _claim(self, device_id: int, target: str, slots: int) -> Claimed | None:
        """The next task of a healthy device and, when they can be read, its inputs (None: read them again
        in `_run`)."""
        lease = self.queue.claim(device_id, target, slots) if self._healthy(device_id) else None
        if lease is None:
            return None
        try:
            return lease, self._inputs(lease)
        except Exception:
            return lease, None

    def _finish_then_claim(
        self, lease: Lease, finish: Callable[[], None] | None, device_id: int, target: str, slots: int
    ) -> Claimed | None:
        if finish is not None:
            try:
                finish()
            except Exception:  # the lease expires and another device takes the task
                log.exception("%s %s on device %s failed unexpectedly", lease.kind, lease.task_id, device_id)
        return self._claim(device_id, target, slots)

    async def _run(
        self, lease: Lease, prepared: tuple[TaskInputs, bytes] | None
    ) -> Callable[[], None] | None:
        """The task's call; what records its outcome (run in a thread by the caller), or None."""
        inputs, payload = prepared or await asyncio.to_thread(self._inputs, lease)
        live = await self.pool.live(lease.device_id)
        call = asyncio.create_task(self._call(live, lease, inputs, payload))
        lost = await self._watch(live, lease, call)
        if lost is not None:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call
            if lost:
                return functools.partial(self._lose_device, lease, lost)
            return None
        return await self._outcome(lease, call)

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
        if self.queue.release(lease, f"device {lease.device_id} lost: {reason}") == PENDING:
            self._planned(lease.target, 1)
        log.warning(
            "device %s lost (%s); %s %s goes back to the queue",
            lease.device_id,
            reason,
            lease.kind,
            lease.task_id,
        )

    async def _call(self, live: LiveDevice, lease: Lease, inputs: TaskInputs, payload: bytes) -> CodecResult:
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
        archive = await asyncio.to_thread(self.recorder.cache.blob, inputs.archive_sha256)
        await self.pool.ensure_codec(live, inputs.codec_digest, archive)

    def _inputs(self, lease: Lease) -> tuple[TaskInputs, bytes]:
        """The task's inputs and its payload. An encode's image is read by every encoder target: kept in
        the cache. A decode's bitstream is read once per decoder target: read from the store."""
        inputs = inputs_of(self.recorder.facts.get(lease.kind, lease.task_id))
        digest = inputs.payload_sha256
        payload = self.recorder.cache.blob(digest) if lease.kind == "encode" else self.store.get(digest)
        return inputs, payload

    async def _outcome(self, lease: Lease, call: asyncio.Task) -> Callable[[], None] | None:
        """What records the call's outcome; a busy device's task goes back to the queue here."""
        try:
            result = call.result()
        except TransportError as exc:
            return functools.partial(self._lose_device, lease, exc.detail)
        except WorkerBusy as exc:  # not the task's fault: back to the queue, the attempt not counted
            await asyncio.to_thread(self.queue.release, lease, f"device busy: {exc.detail}", False)
            self.work.notify(lease.target, 1)
            await asyncio.sleep(self.settings.retry_backoff)
            return None
        except WorkerTimeout as exc:
            return functools.partial(
                self.recorder.failure, lease, TaskFailure(verdicts.TIMEOUT, exc.code, exc.detail)
            )
        except WorkerRejected as exc:
            return functools.partial(
                self.recorder.failure, lease, TaskFailure("rejected", exc.code, exc.detail)
            )
        except WorkerCallError as exc:
            return functools.partial(
                self.recorder.failure, lease, TaskFailure(verdicts.ERROR, exc.code, exc.detail)
            )
        return functools.partial(self.recorder.result, lease, result)  # wakes the slots its decodes need
