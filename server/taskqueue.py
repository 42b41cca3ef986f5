"""The queue of leased tasks: encodes and decodes, claimed atomically by a free device of their target.

A claim turns a `pending` task of the device's target into `running` under a lease: a random token and an
expiry. Which one (server/claimorder.py): the encodes of a job in which a slower decoder target has more
work left than this one come first, as it waits for those bitstreams; elsewhere the oldest decode
first (it finishes a cell), then the oldest encode. Whoever runs the task (the coordinator's push
dispatcher, or a pull worker) renews the lease while it works; a result is recorded only under the token it
was claimed with, so a task whose lease expired and was claimed again can never be recorded twice. A lease
that expires puts its task back to `pending`, its attempt counted; after `max_attempts` the task ends
`worker-lost`. A device gets no more tasks than it has slots, counted in the database, so several
coordinators sharing one PostgreSQL database never overload a worker between them; there the claim also
locks the task row with FOR UPDATE SKIP LOCKED, so two coordinators never claim the same task.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from codec.vocabulary import JobStatus, TaskStatus
from server.claimorder import Urgencies, urgencies
from server.db import Database
from server.models import Decode, Device, Encode, Job, utcnow

PENDING, RUNNING, WORKER_LOST = TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.WORKER_LOST
KINDS = ("decode", "encode")  # claim order where no other decoder waits for an encode
MODELS: dict[str, type[Encode] | type[Decode]] = {"encode": Encode, "decode": Decode}


# Built once (Core, on the tables): the statements every task runs, parameters bound per call.
COMPLETE = {  # SET takes the columns the parameters name
    kind: update(model.__table__).where(
        model.__table__.c.id == bindparam("where_task"),
        model.__table__.c.status == bindparam("where_status"),
        model.__table__.c.lease_token == bindparam("where_token"),
    )
    for kind, model in MODELS.items()
}
HOLDS = {
    kind: select(model.__table__.c.id).where(
        model.__table__.c.id == bindparam("where_task"),
        model.__table__.c.status == bindparam("where_status"),
        model.__table__.c.lease_token == bindparam("where_token"),
    )
    for kind, model in MODELS.items()
}
_RUNNING_COUNTS = [
    select(func.count())
    .where(model.device_id == bindparam("device_id"), model.status == bindparam("running"))
    .scalar_subquery()
    for model in MODELS.values()
]
RUNNING_ON = select(sum(_RUNNING_COUNTS[1:], _RUNNING_COUNTS[0]))  # one statement for both tables
LOCK_DEVICE = (
    select(Device.__table__.c.id).where(Device.__table__.c.id == bindparam("device_id")).with_for_update()
)


def claim_next(model: type[Encode] | type[Decode], locking: bool, rank: dict[int, int] | None = None):
    """One statement that claims the device's next pending task of a kind, where the database has UPDATE
    ... RETURNING: the oldest (with `rank`, only the encodes of the ranked jobs, the lowest rank first), under
    the lease the parameters give; returns its id, job and attempt, or no row. On PostgreSQL the chosen row
    is locked with SKIP LOCKED, so two coordinators never pick the same one."""
    table, jobs = model.__table__, Job.__table__
    order = [case(rank, value=table.c.job_id), table.c.id] if rank else [table.c.id]
    choice = (
        select(table.c.id)
        .join(jobs, jobs.c.id == table.c.job_id)
        .where(
            table.c.status == PENDING,
            table.c.target == bindparam("claim_target"),
            jobs.c.status == JobStatus.RUNNING,
            or_(table.c.pinned_device_id.is_(None), table.c.pinned_device_id == bindparam("claim_device")),
            *([table.c.job_id.in_(list(rank))] if rank else []),
        )
        .order_by(*order)
        .limit(1)
    )
    if locking:
        choice = choice.with_for_update(skip_locked=True, of=table)
    return (
        update(table)
        .where(table.c.id == choice.scalar_subquery(), table.c.status == PENDING)
        .values(
            status=RUNNING,
            device_id=bindparam("claim_device"),
            lease_token=bindparam("claim_token"),
            lease_expires_at=bindparam("claim_expires"),
            attempts=table.c.attempts + 1,
        )
        .returning(table.c.id, table.c.job_id, table.c.attempts)
    )


CLAIM_NEXT = {  # [locking][kind]: (kind, statement), built once
    locking: {kind: (kind, claim_next(model, locking)) for kind, model in MODELS.items()}
    for locking in (False, True)
}


@dataclass(frozen=True)
class Lease:
    kind: str
    task_id: int
    token: str
    device_id: int
    job_id: int
    target: str
    attempt: int


class TaskQueue:
    def __init__(self, db: Database, lease_seconds: float, max_attempts: int) -> None:
        self.db, self.lease_seconds, self.max_attempts = db, lease_seconds, max_attempts
        self.locking = db.engine.dialect.name == "postgresql"
        self._claims = threading.Lock()  # one claim at a time per process (SQLite has one writer anyway)
        self.urgencies: Urgencies = {}  # the last reorder()'s: what waits on each job's encodes per target
        self._waited_on: dict[tuple[str, tuple], tuple[str, Any]] = {}  # claims built for the last urgencies

    def reorder(self) -> None:
        """Estimate again how much work waits on each running job's encodes (the scheduler's sweep)."""
        with self.db.session() as session:
            found = urgencies(session)
        if found != self.urgencies:
            self.urgencies, self._waited_on = found, {}

    def _expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease_seconds)

    def claim(self, device_id: int, target: str, slots: int) -> Lease | None:
        """The next task for this device, or None when it has no free slot or nothing is pending."""
        if not self.db.engine.dialect.update_returning:
            return self._claim_in_steps(device_id, target, slots)
        with self._claims, self.db.engine.begin() as connection:
            if self.locking:  # serialises the slot count of one device across coordinators
                connection.execute(LOCK_DEVICE, {"device_id": device_id})
            if connection.execute(RUNNING_ON, {"device_id": device_id, "running": RUNNING}).scalar() >= slots:
                return None
            params = {
                "claim_target": target,
                "claim_device": device_id,
                "claim_token": secrets.token_hex(16),
                "claim_expires": self._expiry(),
            }
            waiting = self._waiting_jobs(target)
            statements = [self._claim_waited_on(target, waiting)] if waiting else []
            statements += [CLAIM_NEXT[self.locking][kind] for kind in KINDS]
            for kind, statement in statements:  # one statement in the common case: the first kind has a task
                row = connection.execute(statement, params).first()
                if row is not None:
                    return Lease(
                        kind, row.id, params["claim_token"], device_id, row.job_id, target, row.attempts
                    )
        return None

    def _claim_waited_on(self, target: str, waiting: dict[int, float]) -> tuple[str, Any]:
        """The claim of the encode a slower decoder waits for most: the job most waited on first, then the
        oldest. Built once per target and reorder() (the ranks change only there)."""
        key = (target, tuple(sorted(waiting.items())))
        found = self._waited_on.get(key)
        if found is None:
            by_seconds = sorted(set(waiting.values()), reverse=True)
            rank = {job: by_seconds.index(seconds) for job, seconds in waiting.items()}
            found = "encode", claim_next(Encode, self.locking, rank)
            self._waited_on[key] = found
        return found

    def _claim_in_steps(self, device_id: int, target: str, slots: int) -> Lease | None:
        """`claim` where the database has no UPDATE ... RETURNING: find the task, then claim it."""
        with self._claims, self.db.session() as session:
            if self.running_on(session, device_id) >= slots:
                return None
            waiting = self._waiting_jobs(target)
            candidates: dict[str, Any] = {}
            if waiting:  # is the first encode one that a slower decoder waits for?
                encode = candidates["encode"] = self._next(session, "encode", device_id, target, waiting)
                waited_on = encode is not None and encode.job_id in waiting
            else:
                waited_on = False
            for kind in ("encode", "decode") if waited_on else KINDS:
                if kind not in candidates:  # one query in the common case: the first kind has a task
                    candidates[kind] = self._next(session, kind, device_id, target, waiting)
                row = candidates[kind]
                lease = None if row is None else self._lease(session, kind, row, device_id, target)
                if lease is not None:
                    return lease
        return None

    def _waiting_jobs(self, target: str) -> dict[int, float]:
        """Jobs whose encodes of this target a slower decoder target waits for, and its seconds of work left
        over this target's (the last reorder())."""
        return {job: seconds for (job, t), seconds in self.urgencies.items() if t == target and seconds > 0}

    @staticmethod
    def running_on(session: Session, device_id: int) -> int:
        return session.scalar(RUNNING_ON, {"device_id": device_id, "running": RUNNING})

    def _next(self, session: Session, kind: str, device_id: int, target: str, waiting: dict[int, float]):
        """The pending task of this kind the device would take next: an encode of the job most waited on
        (`waiting`), else the oldest; a decode, the oldest. None when there is none."""
        model = MODELS[kind]
        most_first = {job: -seconds for job, seconds in waiting.items()}
        order = [case(most_first, value=model.job_id, else_=0.0)] if kind == "encode" and waiting else []
        query = (
            select(model.id, model.job_id)
            .join(Job, Job.id == model.job_id)
            .where(
                model.status == PENDING,
                model.target == target,
                Job.status == JobStatus.RUNNING,
                or_(model.pinned_device_id.is_(None), model.pinned_device_id == device_id),
            )
            .order_by(*order, model.id)
            .limit(1)
        )
        return session.execute(query).first()

    def _lease(self, session: Session, kind: str, row, device_id: int, target: str) -> Lease | None:
        claimed = self._claim(session, MODELS[kind], row.id, device_id)
        if claimed is None:
            return None
        token, attempts = claimed
        return Lease(kind, row.id, token, device_id, row.job_id, target, attempts)

    def lease_task(self, kind: str, task_id: int, device_id: int) -> Lease | None:
        """Claim one given pending task for a device (a replay of recorded results, server/offline.py, where
        the result exists before the claim); None when it is not pending."""
        model = MODELS[kind]
        with self._claims, self.db.session() as session:
            claimed = self._claim(session, model, task_id, device_id)
            if claimed is None:
                return None
            row = session.get(model, task_id)
            return Lease(kind, task_id, claimed[0], device_id, row.job_id, row.target, row.attempts)

    def _claim(self, session, model, task_id: int, device_id: int) -> tuple[str, int] | None:
        """Move the task from pending to running under a new lease for the device: (its token, the attempt
        it now is), or None when another claim got there first (the conditional UPDATE is the only arbiter).
        Where the database has UPDATE ... RETURNING (PostgreSQL, SQLite 3.35+) the attempt comes back in the
        same statement; elsewhere it is read after it."""
        token = secrets.token_hex(16)
        claim = (
            update(model)
            .where(model.id == task_id, model.status == PENDING)
            .values(
                status=RUNNING,
                device_id=device_id,
                lease_token=token,
                lease_expires_at=self._expiry(),
                attempts=model.attempts + 1,
            )
        )
        if session.get_bind().dialect.update_returning:
            attempts = session.execute(claim.returning(model.attempts)).scalar()
            return None if attempts is None else (token, attempts)
        if session.execute(claim).rowcount != 1:
            return None
        return token, session.scalar(select(model.attempts).where(model.id == task_id))

    def holds(self, lease: Lease) -> bool:
        params = {"where_task": lease.task_id, "where_status": RUNNING, "where_token": lease.token}
        with self.db.engine.connect() as connection:
            return connection.execute(HOLDS[lease.kind], params).first() is not None

    def renew(self, lease: Lease) -> bool:
        """Extend the lease; False when it is no longer held (expired and claimed again, or cancelled)."""
        model = MODELS[lease.kind]
        with self.db.session() as session:
            result = session.execute(
                update(model)
                .where(model.id == lease.task_id, model.status == RUNNING, model.lease_token == lease.token)
                .values(lease_expires_at=self._expiry())
            )
            return result.rowcount == 1

    def release(self, lease: Lease, detail: str, counted: bool = True) -> str | None:
        """Give the task back: pending again, or worker-lost after the last attempt (a device that was lost
        counts; `counted=False`, a busy device, does not). Returns the new status, None when the lease was no
        longer held."""
        model = MODELS[lease.kind]
        with self.db.session() as session:
            row = session.get(model, lease.task_id)
            if row is None or row.status != RUNNING or row.lease_token != lease.token:
                return None
            if not counted:
                row.attempts -= 1
            return self._give_back(row, detail)

    def _give_back(self, row: Encode | Decode, detail: str) -> str:
        row.lease_token, row.lease_expires_at = None, None
        if row.attempts >= self.max_attempts:
            row.status, row.error_code, row.error_detail = WORKER_LOST, WORKER_LOST, detail
            row.finished_at = utcnow()
        else:
            row.status, row.error_detail = PENDING, detail
        return row.status

    def finish(self, lease: Lease, apply: Callable[[Session, Encode | Decode], None]) -> bool:
        """Record a result: `apply` fills the row, under the lease only. False when the lease was lost."""
        model = MODELS[lease.kind]
        with self.db.session() as session:
            row = session.get(model, lease.task_id, with_for_update=self.locking)
            if row is None or row.status != RUNNING or row.lease_token != lease.token:
                return False
            apply(session, row)
            row.lease_token, row.lease_expires_at = None, None
            return True

    def complete(
        self, lease: Lease, values: dict[str, Any], then: Callable[[Session], None] | None = None
    ) -> bool:
        """Record a result: the row takes `values` in one conditional UPDATE, under the lease only, and
        `then` runs in the same transaction (what the result implies is committed with it). False when the
        lease was lost (expired and claimed again, or the job closed)."""
        params = {**values, "lease_token": None, "lease_expires_at": None}
        params.update(where_task=lease.task_id, where_status=RUNNING, where_token=lease.token)
        if then is None:  # Core only: no ORM session to build
            with self.db.engine.begin() as connection:
                return connection.execute(COMPLETE[lease.kind], params).rowcount == 1
        with self.db.session() as session:
            if session.connection().execute(COMPLETE[lease.kind], params).rowcount != 1:
                return False
            then(session)
            return True

    def reap(self) -> list[int]:
        """Tasks whose lease expired go back to the queue; returns the devices that held them."""
        now = utcnow()
        devices: list[int] = []
        with self.db.session() as session:
            for model in MODELS.values():
                query = select(model).where(model.status == RUNNING, model.lease_expires_at < now)
                if self.locking:
                    query = query.with_for_update(skip_locked=True)
                for row in session.scalars(query):
                    devices.append(row.device_id)
                    self._give_back(row, f"lease expired on device {row.device_id}")
        return sorted({d for d in devices if d is not None})

    def release_all_running(self) -> int:
        """At start-up of the only writer (SQLite): every running task's holder went with the old process."""
        count = 0
        with self.db.session() as session:
            for model in MODELS.values():
                for row in session.scalars(select(model).where(model.status == RUNNING)):
                    row.attempts -= 1  # the coordinator stopped, not the device: the attempt does not count
                    self._give_back(row, "the coordinator holding its lease stopped")
                    count += 1
        return count

    def pending_targets(self) -> set[str]:
        with self.db.session() as session:
            return {
                target
                for model in MODELS.values()
                for target in session.scalars(select(model.target).where(model.status == PENDING).distinct())
            }
