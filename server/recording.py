"""Recording: task results into their rows, cells with their forensics once their inputs are in, job ends.

A task's result is written under its lease only (server/taskqueue.py), then the work it unblocks follows:
the first encode of a unit, once done, plans its decodes; a cell is recorded as soon as the encodes of its
unit and the decodes of its decoder target have all finished, with its verdict and evidence
(server/cellevidence.py: no further call to any worker). Every cell exists once: a unique key,
insert-if-absent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codec import errors as codec_errors
from codec.vocabulary import JobStatus, TaskStatus
from server import bdrate, verdicts
from server.anchors import AnchorCache
from server.blobcache import BlobCache
from server.cellevidence import CellEvidence
from server.db import Database
from server.models import Cell, Decode, Drift, Encode, Job, Mismatch, utcnow
from server.planning import Unit, plan_decodes, units
from server.storage import BlobStore
from server.taskfacts import TaskFacts, TaskFactsCache, read_decode_facts
from server.taskqueue import MODELS, Lease, TaskQueue
from server.workerclient import CodecResult

log = logging.getLogger("bitmatch.server.recording")

UNFINISHED = (TaskStatus.PENDING, TaskStatus.RUNNING)
ACTIVE_JOB = tuple(status for status in JobStatus if status.is_active)
JOB_LOCK_BASE = 1 << 40  # advisory-lock keys of job finalisation (server/db.py `exclusive`)
MAP_NAMES = ("index_map", "symbol_map", "mean_map", "y_hat_map", "hs_raw_map", "y_map")
BITSTREAM_ERROR_CODES = frozenset(
    cls.code
    for cls in vars(codec_errors).values()
    if isinstance(cls, type) and issubclass(cls, codec_errors.BitstreamError)
)
FingerprintOf = Callable[[int], tuple[int | None, bool | None]]


@dataclass
class TaskFailure:
    status: str  # error | timeout | worker-lost | rejected
    code: str
    detail: str


def failure_of(error: dict[str, Any]) -> TaskFailure | None:
    """A worker's error answer as the task's outcome (None: not the task's fault, run it elsewhere)."""
    status, code, detail = (
        int(error.get("status", 500)),
        str(error.get("error", "error")),
        str(error.get("detail", "")),
    )
    if status in (502, 503):
        return None
    if status == 504:
        return TaskFailure(TaskStatus.TIMEOUT, code, detail)
    if 400 <= status < 500:
        return TaskFailure("rejected", code, detail)
    return TaskFailure(TaskStatus.ERROR, code, detail)


class Recorder:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        queue: TaskQueue,
        fingerprint_of: FingerprintOf,
        anchors: AnchorCache | None = None,
        cache: BlobCache | None = None,
    ) -> None:
        self.db, self.store, self.queue, self.fingerprint_of = db, store, queue, fingerprint_of
        self.anchors = anchors
        self.cache = cache or BlobCache(store)
        self.facts = TaskFactsCache(db)
        self.evidence = CellEvidence(db, store, self.cache)
        self.planned: Callable[[str, int], None] = _nobody  # (target, count): tasks were queued

    # --- task results ---------------------------------------------------------------------------------

    def result(self, lease: Lease, result: CodecResult) -> bool:
        """A worker's answer. A decode that stopped in the y section ("partial") is a `failed` decode."""
        if lease.kind == "encode" and result.bitstream is None:
            return self.failure(
                lease, TaskFailure(verdicts.ERROR, "no-bitstream", "encode answer has no bitstream")
            )
        if not self.queue.holds(lease):  # before any work: a stale or forged lease records nothing
            return False
        facts = self.facts.get(lease.kind, lease.task_id)
        recon_sha = self.store.put(result.recon_png) if result.recon_png is not None else None
        # a function of the two images' digests, so computed once per encode: a decoder whose
        # reconstruction is the encoder's (the same PNG) gets the encoder's PSNR without decoding anything
        psnr = self.cache.psnr(facts.image_digest, recon_sha) if recon_sha is not None else None
        maps_sha = self._store_maps(result)
        bitstream_sha = self.store.put(result.bitstream) if lease.kind == "encode" else None
        fingerprint_id, emulated = self.fingerprint_of(lease.device_id)
        values: dict[str, Any] = {
            "status": verdicts.DONE,
            "device_id": lease.device_id,
            "finished_at": utcnow(),
            "fingerprint_id": fingerprint_id,
            "emulated": emulated,
            "stage_hashes": result.stage_hashes,
            "timings": result.timings,
            "recon_sha256": recon_sha,
            "maps_sha256": maps_sha,
            "error_code": None,
            "error_detail": None,
            "psnr": psnr,
        }
        if lease.kind == "encode":
            values["bitstream_sha256"] = bitstream_sha
            values["bpp"] = _number(result.metrics.get("bpp"))
            values["psnr"] = psnr if psnr is not None else _number(result.metrics.get("psnr"))
        if result.raw.get("partial"):
            error = result.raw.get("decode_error") or {}
            values["status"], values["error_code"] = (
                verdicts.FAILED,
                str(error.get("error", "corrupt-stream")),
            )
            values["error_detail"] = str(error.get("detail", ""))
        return self._finish(lease, values)

    def failure(self, lease: Lease, failure: TaskFailure) -> bool:
        """A task without a result: its status says why (a typed bitstream error is a failed decode)."""
        status = failure.status
        if status == "rejected":
            bitstream_error = lease.kind == "decode" and failure.code in BITSTREAM_ERROR_CODES
            status = verdicts.FAILED if bitstream_error else verdicts.ERROR
        fingerprint_id, emulated = self.fingerprint_of(lease.device_id)
        values = {
            "status": status,
            "error_code": failure.code,
            "error_detail": failure.detail,
            "finished_at": utcnow(),
            "device_id": lease.device_id,
            "fingerprint_id": fingerprint_id,
            "emulated": emulated,
        }
        return self._finish(lease, values)

    def _finish(self, lease: Lease, values: dict[str, Any]) -> bool:
        planned: list[PlannedDecodes] = []  # filled in the result's transaction, used once it committed

        def plan(session: Session) -> None:
            first = _plan_first_decodes(session, lease.task_id)
            planned.extend([first] if first else [])

        plans = lease.kind == "encode" and values["status"] == verdicts.DONE
        if not self.queue.complete(lease, values, plan if plans else None):
            log.info("result of %s %s discarded: its lease was lost", lease.kind, lease.task_id)
            return False
        if not planned:
            self.advance(lease.kind, lease.task_id)
            return True
        self.facts.remember(planned[0].facts)
        for target in planned[0].targets:  # their results record the cells
            self.planned(target, planned[0].repeat)
        return True

    def _store_maps(self, result: CodecResult) -> str | None:
        maps = {name: result.raw[name] for name in MAP_NAMES if isinstance(result.raw.get(name), dict)}
        if not maps:
            return None
        return self.cache.put_maps(json.dumps(maps, sort_keys=True).encode(), maps)

    # --- what a finished task unblocks ------------------------------------------------------------------

    def advance(self, kind: str, task_id: int) -> None:
        """The cells a finished task completes (a first encode that is done plans decodes instead)."""
        facts = self.facts.get(kind, task_id)
        if kind == "decode":
            self.record_cell(facts.job_id, facts.unit, facts.target)
            return
        with self.db.session() as session:
            targets = list(session.get(Job, facts.job_id).decoder_targets)
        for target in targets:
            self.record_cell(facts.job_id, facts.unit, target)

    def record_cell(self, job_id: int, unit: Unit, decoder_target: str, final: bool = False) -> None:
        """The cell, once its encodes and decodes have all finished (or, with `final`, whatever they are).
        A cell recorded twice (two last results at once, another coordinator) is refused by the cells' unique
        key when it is inserted: the common case reads no more than it needs."""
        with self.db.engine.connect() as connection:
            encodes, peer = _unit_encodes(connection, job_id, unit, decoder_target)
            decodes = _decodes(connection, encodes[0].id, decoder_target) if encodes else []
        if not final and not _ready(encodes, decodes):
            return
        self._insert(*self.evidence.judge(job_id, unit, decoder_target, encodes, decodes, peer))

    def _insert(self, cell: Cell, mismatch: Mismatch | None, drifts: list[Drift]) -> None:
        """The cell and its evidence: one INSERT per table (Core: no unit of work to run)."""
        try:
            with self.db.engine.begin() as connection:
                cell_id = connection.execute(INSERT[Cell], _set_columns(cell)).inserted_primary_key[0]
                cell.id = cell_id
                if mismatch is not None:
                    connection.execute(INSERT[Mismatch], {**_set_columns(mismatch), "cell_id": cell_id})
                if drifts:
                    rows = [{**_set_columns(row), "cell_id": cell_id} for row in drifts]
                    connection.execute(INSERT[Drift], rows)
        except IntegrityError:
            log.info(
                "cell already recorded: job %s %s->%s", cell.job_id, cell.encoder_target, cell.decoder_target
            )

    # --- the end of a job -------------------------------------------------------------------------------

    def unfinished(self, job_id: int) -> int:
        # encodes before decodes: a first encode seen done had its decodes committed with it (`_finish`)
        with self.db.session() as session:
            return sum(
                session.scalar(
                    select(func.count()).where(model.job_id == job_id, model.status.in_(UNFINISHED))
                )
                for model in MODELS.values()
            )

    def finalize(self, job_id: int, status: str, detail: str) -> bool:
        """Close unfinished tasks as not-run, give every missing cell its verdict, then RD and BD-rates.
        Returns False when another coordinator is closing, or has closed, the job."""
        with self.db.exclusive(JOB_LOCK_BASE + job_id) as mine:
            return mine and self._finalize(job_id, status, detail)

    def _finalize(self, job_id: int, status: str, detail: str) -> bool:
        with self.db.session() as session:
            if session.get(Job, job_id).status not in ACTIVE_JOB:
                return False
            for model in MODELS.values():
                session.execute(
                    update(model)
                    .where(model.job_id == job_id, model.status.in_(UNFINISHED))
                    .values(status=verdicts.NOT_RUN, error_detail=f"job {status}", lease_token=None)
                )
            job = session.get(Job, job_id)
            all_units, decoder_targets = units(session, job), list(job.decoder_targets)
            recorded = {tuple(key) for key in session.execute(JOB_CELL_KEYS, {"job_id": job_id})}
        for unit in all_units:
            for decoder in decoder_targets:
                if (unit.codec_id, unit.image_id, unit.target, decoder) not in recorded:
                    self.record_cell(job_id, unit, decoder, final=True)
        try:
            problem = self._record_rd(job_id)
        except Exception as exc:  # the verdicts stand even when the RD summary cannot be computed
            log.exception("RD/BD-rate summary of job %s failed", job_id)
            problem = f"BD-rate summary failed: {type(exc).__name__}: {exc}"
        if problem:
            detail = f"{detail}; {problem}" if detail else problem
        with self.db.session() as session:
            closed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE_JOB))
                .values(status=status, detail=detail, finished_at=utcnow())
            )
            return closed.rowcount == 1

    def _record_rd(self, job_id: int) -> str | None:
        """RD points, then BD-rates; the reason when JPEG and WebP could not be measured (the BD-rates
        between the job's own curves are recorded regardless)."""
        with self.db.session() as session:
            bdrate.record_points(session, job_id)
        anchors, problem = self.anchors, None
        if anchors is not None:  # measured outside any transaction: seconds per photograph
            with self.db.session() as session:
                images = bdrate.anchor_images(session, job_id)
            try:
                anchors.curves(images)
            except Exception as exc:
                log.exception("JPEG/WebP anchors of job %s failed", job_id)
                anchors, problem = None, f"JPEG/WebP anchors not measured: {type(exc).__name__}: {exc}"
        with self.db.session() as session:
            bdrate.record_bd_rates(session, job_id, anchors)
        return problem


# Built once: the queries of every recorded cell, parameters bound per call. Core selects: a cell reads its
# rows and never changes them, so no ORM identity or unit of work is built for them.
UNIT_ENCODES = (
    select(Encode.__table__)
    .where(
        Encode.job_id == bindparam("job_id"),
        Encode.codec_id == bindparam("codec_id"),
        Encode.image_id == bindparam("image_id"),
        Encode.target.in_(bindparam("targets", expanding=True)),
    )
    .order_by(Encode.repeat)
)
TARGET_DECODES = (
    select(Decode.__table__)
    .where(Decode.encode_id == bindparam("encode_id"), Decode.target == bindparam("decoder"))
    .order_by(Decode.repeat)
)
INSERT = {model: insert(model.__table__) for model in (Cell, Mismatch, Drift)}  # columns: the parameters
JOB_CELL_KEYS = select(Cell.codec_id, Cell.image_id, Cell.encoder_target, Cell.decoder_target).where(
    Cell.job_id == bindparam("job_id")
)


def _unit_encodes(
    connection: Connection, job_id: int, unit: Unit, decoder_target: str
) -> tuple[list[Encode], Encode | None]:
    """The unit's encodes, and the decoder target's own first encode of the image when it is done (its y
    against the encoder's; None on the diagonal), in one query. Read-only Core `Row`s with the attribute
    names of `Encode`."""
    targets = sorted({unit.target, decoder_target})
    params = {"job_id": job_id, "codec_id": unit.codec_id, "image_id": unit.image_id, "targets": targets}
    rows = list(connection.execute(UNIT_ENCODES, params))
    peers = [row for row in rows if row.target == decoder_target] if decoder_target != unit.target else []
    peer = peers[0] if peers and peers[0].status == verdicts.DONE else None
    return [row for row in rows if row.target == unit.target], peer


def _decodes(connection: Connection, encode_id: int, target: str) -> list[Decode]:
    """One target's decodes of an encode as read-only rows (the attribute names of `Decode`)."""
    params = {"encode_id": encode_id, "decoder": target}
    return list(connection.execute(TARGET_DECODES, params))


@dataclass(frozen=True)
class PlannedDecodes:
    targets: list[str]
    repeat: int
    facts: list[TaskFacts]


def _plan_first_decodes(session: Session, encode_id: int) -> PlannedDecodes | None:
    """A first encode's decodes, planned in the transaction that records it done: nobody sees the encode
    done without its decodes, so the scheduler never closes a job whose decodes are still to be planned."""
    row = session.get(Encode, encode_id)
    if row.repeat != 0:
        return None
    job = session.get(Job, row.job_id)
    plan_decodes(session, job, row)
    return PlannedDecodes(list(job.decoder_targets), job.repeat, read_decode_facts(session, row.id))


def _ready(encodes: list[Encode], decodes: list[Decode]) -> bool:
    """Every encode of the unit finished, and (when the first one is done) every decode of the target."""
    if not encodes or any(e.status in UNFINISHED for e in encodes):
        return False
    if encodes[0].status != verdicts.DONE:
        return True
    return bool(decodes) and not any(d.status in UNFINISHED for d in decodes)


def _set_columns(row: Cell | Mismatch | Drift) -> dict[str, Any]:
    """The columns an ORM object was given (the others take their defaults in the INSERT)."""
    given = sa_inspect(row).dict
    return {column.key: given[column.key] for column in row.__table__.columns if column.key in given}


def _nobody(_target: str, _count: int) -> None:
    pass


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
