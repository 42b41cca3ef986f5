"""The scheduler: plans jobs into the task queue, runs the push dispatcher, reaps leases, closes jobs.

Work is a queue of leased tasks in the database (server/taskqueue.py), fed two ways: push devices get it
from this coordinator's dispatcher (server/dispatch.py), pull workers claim it themselves over the API
(server/routers/pull.py). Results are recorded by server/recording.py, which plans decodes and records cells
as their inputs arrive. What is left here is the loop over active jobs: plan new ones, close cancelled ones,
put expired leases back, estimate which encodes other targets wait for (the claim order,
server/claimorder.py), give up on tasks whose target has had no usable device for `orphan_seconds`, and
close a job once nothing of it is pending or running. It runs in a thread, off the event loop.

With SQLite this coordinator is the only writer (server/db.py holds the lock), so at start-up every task
still marked running belonged to a process that is gone and goes straight back to the queue. With
PostgreSQL several coordinators may share the database; each runs this loop, and every step is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from sqlalchemy import select, update

from codec.vocabulary import JobStatus
from server import verdicts
from server.anchors import AnchorCache
from server.db import Database
from server.devices import HEALTHY, OFFLINE, UNCHECKED, DevicePool
from server.dispatch import PushDispatcher, Signal
from server.models import Device, Job, utcnow
from server.planning import plan_encodes, plan_missing_decodes
from server.recording import Recorder
from server.settings import Settings
from server.storage import BlobStore
from server.taskqueue import MODELS, PENDING, TaskQueue

log = logging.getLogger("bitmatch.server.scheduler")

ACTIVE_JOB_STATES = tuple(status for status in JobStatus if status.is_active)


class Scheduler:
    def __init__(self, db: Database, store: BlobStore, pool: DevicePool, settings: Settings) -> None:
        self.db, self.store, self.pool, self.settings = db, store, pool, settings
        self.queue = TaskQueue(db, settings.lease_seconds, settings.max_attempts)
        anchors = AnchorCache(settings.anchor_dir, store)
        self.recorder = Recorder(db, store, self.queue, pool.fingerprint_of, anchors)
        self.work = Signal()
        self.push = PushDispatcher(
            db, store, self.queue, self.recorder, pool, settings, self.work, drained=self.wake
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._orphaned_since: dict[str, float] = {}

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.db.single_writer:
            released = await asyncio.to_thread(self.queue.release_all_running)
            if released:
                log.info("%d interrupted tasks went back to the queue", released)
        self._tasks = [
            asyncio.create_task(self._run_forever(), name="bitmatch-scheduler"),
            asyncio.create_task(self.push.run(), name="bitmatch-dispatch"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def wake(self) -> None:
        """Thread-safe: look at the jobs now (a new job, a cancel request, a new device)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def notify_work(self) -> None:
        """Thread-safe: tasks were queued; idle slots and waiting pull workers look again."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.work.notify)

    async def _run_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()

    # --- one pass -----------------------------------------------------------------------------------------

    def sweep(self) -> None:
        with self.db.session() as session:
            jobs = session.execute(select(Job.id, Job.status).where(Job.status.in_(ACTIVE_JOB_STATES))).all()
        for job_id, status in jobs:
            if status == JobStatus.QUEUED:
                self._plan(job_id)
            elif status == JobStatus.CANCELLING:
                self.recorder.finalize(job_id, JobStatus.CANCELLED, "cancelled on request")
        if self.queue.reap():
            self.notify_work()
        self.queue.reorder()  # which encodes the other targets wait for most (server/claimorder.py)
        self._silence_quiet_pull_workers()
        self._give_up_on_orphans()
        for job_id, status in jobs:
            if (
                status != JobStatus.CANCELLING
                and self.recorder.unfinished(job_id) == 0
                and not self._replan(job_id)
            ):
                self.recorder.finalize(job_id, JobStatus.DONE, "")

    def _replan(self, job_id: int) -> bool:
        """Decodes a finished encode should have (a coordinator that died between the two); True if any."""
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job.status != JobStatus.RUNNING:
                return False
            planned = plan_missing_decodes(session, job)
        if planned:
            self.notify_work()
        return planned

    def _plan(self, job_id: int) -> None:
        with self.db.session() as session:
            job = session.get(Job, job_id, with_for_update=self.queue.locking)
            if job.status == JobStatus.QUEUED:
                plan_encodes(session, job)
        self.notify_work()

    def _silence_quiet_pull_workers(self) -> None:
        """A pull worker that has not polled for a long poll plus a lease is offline (its leases expire)."""
        quiet = self.settings.pull_wait_seconds + self.settings.lease_seconds
        cutoff = utcnow() - timedelta(seconds=quiet)
        with self.db.session() as session:
            session.execute(
                update(Device)
                .where(
                    Device.mode == "pull",
                    Device.status.in_((HEALTHY, UNCHECKED)),
                    Device.last_heartbeat < cutoff,
                )
                .values(status=OFFLINE, health_detail=f"no poll for {quiet:g} s")
            )

    def _give_up_on_orphans(self) -> None:
        """Pending tasks of a target no healthy (or unchecked) device has served for `orphan_seconds`."""
        with self.db.session() as session:
            usable = set(
                session.scalars(select(Device.target).where(Device.status.in_((HEALTHY, UNCHECKED))))
            )
            waiting = {
                t
                for model in MODELS.values()
                for t in session.scalars(select(model.target).where(model.status == PENDING).distinct())
            }
        now = time.monotonic()
        for target in list(self._orphaned_since):
            if target in usable or target not in waiting:
                del self._orphaned_since[target]
        for target in waiting - usable:
            since = self._orphaned_since.setdefault(target, now)
            if now - since >= self.settings.orphan_seconds:
                self._lose_target(target)
                del self._orphaned_since[target]

    def _lose_target(self, target: str) -> None:
        detail = f"no healthy device of target {target!r} for {self.settings.orphan_seconds:g} s"
        with self.db.session() as session:
            for model in MODELS.values():
                session.execute(
                    update(model)
                    .where(model.target == target, model.status == PENDING)
                    .values(status=verdicts.WORKER_LOST, error_code=verdicts.WORKER_LOST, error_detail=detail)
                )
        log.warning(detail)
