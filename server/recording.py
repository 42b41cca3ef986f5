"""Recording: task results into their rows, cells with their forensics once their inputs are in, job ends.

A task's result is written under its lease only (server/taskqueue.py), then the work it unblocks follows:
the first encode of a unit, once done, plans its decodes; a cell is recorded as soon as the encodes of its
unit and the decodes of its decoder target have all finished, with its verdict (server/verdicts.py) and, for
a desync or a symbol-exact cell, the forensics read from the per-element maps both sides returned with their
results (no further call to any worker). Every cell exists once: a unique key, insert-if-absent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codec import errors as codec_errors
from codec.codec import latent_format
from codec.entropy import FLOAT
from codec.errors import CodecError
from codec.stages import package_stages
from codec.vocabulary import JobStatus, Precision, TaskStatus
from server import bdrate, drift, verdicts
from server.anchors import AnchorCache
from server.blobcache import BlobCache, MapSet
from server.db import Database
from server.forensics import (
    LOCATION_FIELDS,
    IndexMapError,
    first_mismatch,
    max_abs_difference,
)
from server.models import Cell, Decode, Drift, Encode, Job, Mismatch, utcnow
from server.models import Codec as CodecRow
from server.planning import Unit, plan_decodes, units
from server.storage import BlobNotFound, BlobStore
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


@dataclass(frozen=True)
class CodecFacts:
    precision: str
    float_mean: bool  # the package's mean is float: latent drift is symbol-exact, not a desync
    archive_sha256: str
    stages: tuple[str, ...]  # the stages its codec reports (codec.stages.package_stages)


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
        self._codecs: dict[int, CodecFacts] = {}
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
            if lease.kind == "encode" and values["status"] == verdicts.DONE:
                first = _plan_first_decodes(session, lease.task_id)
                planned.extend([first] if first else [])

        if not self.queue.complete(lease, values, plan):
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

    def _codec(self, codec_id: int) -> CodecFacts:
        """A package's precision, latent format and archive (a row that never changes), read once."""
        found = self._codecs.get(codec_id)
        if found is None:
            with self.db.session() as session:
                row = session.get(CodecRow, codec_id)
                found = CodecFacts(
                    row.precision, _float_mean(row.manifest), row.archive_sha256, _stages(row.manifest)
                )
            self._codecs[codec_id] = found
        return found

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
        with self.db.session() as session:
            encodes, peer = _unit_encodes(session, job_id, unit, decoder_target)
            first = encodes[0] if encodes else None
            decodes = _decodes(session, first.id, decoder_target) if first else []
        if not final and not _ready(encodes, decodes):
            return
        cell = self._evaluate(job_id, unit, decoder_target, encodes, decodes)
        first_decode = decodes[0] if decodes else None
        mismatch = None
        if cell.verdict == verdicts.DESYNC:
            mismatch = self._locate(first, first_decode, cell.first_stage)
        elif cell.verdict == verdicts.SYMBOL_EXACT:
            self._measure_latent_drift(cell, first, first_decode)
        drifts = self._measure_drift(cell, unit, first, first_decode, peer)
        self._insert(cell, mismatch, drifts)

    def _evaluate(
        self, job_id: int, unit: Unit, decoder_target: str, encodes: list[Encode], decodes: list[Decode]
    ) -> Cell:
        first_encode = encodes[0] if encodes else None
        first_decode = decodes[0] if decodes else None
        encode_outcome = _outcome(first_encode) if first_encode else verdicts.Outcome(verdicts.NOT_RUN)
        codec = self._codec(unit.codec_id)
        decode_outcome = _outcome(first_decode) if first_decode else None
        verdict = verdicts.decide(encode_outcome, decode_outcome, codec.float_mean, codec.stages)
        notes = [
            note
            for note in (
                _prefixed(
                    "encoder",
                    verdicts.nondeterminism(
                        [_outcome(e) for e in encodes], [e.bitstream_sha256 for e in encodes]
                    ),
                ),
                _prefixed("decoder", verdicts.nondeterminism([_outcome(d) for d in decodes])),
            )
            if note
        ]
        cell = Cell(
            job_id=job_id,
            codec_id=unit.codec_id,
            image_id=unit.image_id,
            encoder_target=unit.target,
            decoder_target=decoder_target,
            verdict=verdict.verdict,
            first_stage=verdict.first_stage,
            detail=verdict.detail,
            nondeterministic=bool(notes),
            nondeterminism_detail="; ".join(notes),
            encode_id=first_encode.id if first_encode else None,
            decode_id=first_decode.id if first_decode else None,
            decoder_codec_id=first_decode.codec_id if first_decode else None,
            encoder_fingerprint_id=first_encode.fingerprint_id if first_encode else None,
            decoder_fingerprint_id=first_decode.fingerprint_id if first_decode else None,
            emulated=bool(
                (first_encode and first_encode.emulated) or (first_decode and first_decode.emulated)
            ),
        )
        if verdict.verdict in (verdicts.LATENT_EXACT, verdicts.SYMBOL_EXACT):
            self._measure_recon_difference(cell, first_encode, first_decode)
        return cell

    def _measure_recon_difference(self, cell: Cell, encode: Encode, decode: Decode) -> None:
        if not (encode.recon_sha256 and decode.recon_sha256):
            cell.detail += "; reconstructions not returned, difference not measured"
            return
        encoder_recon = self.cache.image(encode.recon_sha256)
        decoder_recon = self.cache.image(decode.recon_sha256)
        cell.max_abs_diff, cell.recon_psnr = verdicts.recon_difference(encoder_recon, decoder_recon)

    def _maps(self, row: Encode | Decode | None) -> MapSet:
        if row is None or row.maps_sha256 is None:
            raise IndexMapError("the maps were not returned (too large, or an older worker)")
        try:
            return self.cache.maps(row.maps_sha256)
        except BlobNotFound:
            raise IndexMapError("the maps were not returned (too large, or an older worker)") from None

    def _locate(self, encode: Encode, decode: Decode | None, stage: str | None) -> Mismatch:
        """The first latent element (coding order) whose scale index or symbol differs between the sides."""
        mismatch = Mismatch(stage=stage or "", detail="")
        notes = []
        if decode is not None and decode.status == verdicts.FAILED:
            notes.append(f"the decoder refused the stream: {decode.error_code}: {decode.error_detail}")
        what = "first element whose scale index or symbol differs (C order, the coding order)"
        try:
            encoder, decoder = self._maps(encode), self._maps(decode)
            symbols = [
                side.array("symbol_map") if "symbol_map" in side else None for side in (encoder, decoder)
            ]
            if symbols[1] is None:
                symbols = [None, None]
            found = first_mismatch(encoder.array("index_map"), decoder.array("index_map"), *symbols)
            if found is None and "mean_map" in encoder and "mean_map" in decoder:
                found = first_mismatch(
                    encoder.array("index_map"),
                    decoder.array("index_map"),
                    encoder.array("mean_map"),
                    decoder.array("mean_map"),
                )
                what = "first element whose fixed-point mean differs (C order; values are the means)"
        except (IndexMapError, KeyError) as exc:
            notes.append(f"not located: {exc}")
            mismatch.detail = "; ".join(notes)
            return mismatch
        if found is None:
            notes.append("scale indexes and symbols agree everywhere the decoder got to")
        else:
            for name in LOCATION_FIELDS:
                setattr(mismatch, name, getattr(found, name))
            notes.append(what)
        mismatch.detail = "; ".join(notes)
        return mismatch

    def _measure_latent_drift(self, cell: Cell, encode: Encode, decode: Decode) -> None:
        """A symbol-exact cell's largest |y_hat encoder - y_hat decoder|, in latent units."""
        try:
            encoder, decoder = self._maps(encode), self._maps(decode)
            cell.y_hat_max_abs_diff = max_abs_difference(
                encoder.array("y_hat_map"), decoder.array("y_hat_map")
            )
        except (IndexMapError, KeyError) as exc:
            cell.detail += f"; y_hat drift not measured: {exc}"

    def _measure_drift(
        self, cell: Cell, unit: Unit, encode: Encode | None, decode: Decode | None, peer: Encode | None
    ) -> list[Drift]:
        """Drift per stage and the near-miss risk (server/drift.py), for a cell whose decode got an answer."""
        if encode is None or decode is None or encode.status != verdicts.DONE:
            return []
        if decode.status not in (verdicts.DONE, verdicts.FAILED):
            return []
        cell.silent_corruption = (
            cell.verdict == verdicts.DESYNC
            and decode.status == verdicts.DONE
            and (encode.stage_hashes or {}).get("y_hat") != (decode.stage_hashes or {}).get("y_hat")
        )
        codec = self._codec(unit.codec_id)
        notes: list[str] = []
        head = None
        if codec.precision == Precision.FLOAT:
            try:
                head = drift.codec_head(str(self.store.root), codec.archive_sha256)
            except (CodecError, ValueError, OSError) as exc:
                notes.append(f"h_s head unreadable: {exc}")
        try:
            sides = drift.Sides(
                self._maps_or_none(encode),
                self._maps_or_none(decode),
                self._maps_or_none(peer),
                self._recon(encode),
                self._recon(decode),
            )
            measured = drift.measure(codec.precision, head, sides)
        except (IndexMapError, ValueError, KeyError) as exc:
            measured = drift.CellDrift([], drift.CellRisk(drift.RISK_NOT_MEASURED, notes=[str(exc)]))
        risk = measured.risk
        cell.risk, cell.min_margin_ulp = risk.basis, risk.min_margin_ulp
        cell.predicted_flips, cell.observed_flips = risk.predicted_flips, risk.observed_flips
        cell.failure_probability = risk.failure_probability
        notes += [note for note in risk.notes if note != drift.CERTIFICATE_NOTE]
        if notes:
            cell.detail = "; ".join(filter(None, [cell.detail, *notes]))
        return [
            Drift(
                stage=stage.stage,
                elements=stage.figures.elements,
                differing=stage.figures.differing,
                max_abs_diff=stage.figures.max_abs_diff,
                max_ulp=stage.figures.max_ulp,
            )
            for stage in measured.stages
        ]

    def _maps_or_none(self, row: Encode | Decode | None) -> dict[str, Any] | None:
        try:
            return self._maps(row)
        except IndexMapError:
            return None

    def _recon(self, row: Encode | Decode) -> Any:
        if not row.recon_sha256:
            return None
        try:
            return self.cache.image(row.recon_sha256)
        except BlobNotFound:
            return None

    def _insert(self, cell: Cell, mismatch: Mismatch | None, drifts: list[Drift]) -> None:
        """The cell and its evidence: one INSERT per table (Core: no unit of work to run)."""
        try:
            with self.db.session() as session:
                connection = session.connection()
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
    session: Session, job_id: int, unit: Unit, decoder_target: str
) -> tuple[list[Encode], Encode | None]:
    """The unit's encodes, and the decoder target's own first encode of the image when it is done (its y
    against the encoder's; None on the diagonal), in one query. Read-only Core `Row`s with the attribute
    names of `Encode`."""
    targets = sorted({unit.target, decoder_target})
    params = {"job_id": job_id, "codec_id": unit.codec_id, "image_id": unit.image_id, "targets": targets}
    rows = list(session.connection().execute(UNIT_ENCODES, params))
    peers = [row for row in rows if row.target == decoder_target] if decoder_target != unit.target else []
    peer = peers[0] if peers and peers[0].status == verdicts.DONE else None
    return [row for row in rows if row.target == unit.target], peer


def _decodes(session: Session, encode_id: int, target: str) -> list[Decode]:
    """One target's decodes of an encode as read-only rows (the attribute names of `Decode`)."""
    params = {"encode_id": encode_id, "decoder": target}
    return list(session.connection().execute(TARGET_DECODES, params))


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


def _float_mean(manifest: dict[str, Any]) -> bool:
    try:
        return latent_format(manifest).mean == FLOAT
    except (CodecError, KeyError, TypeError, ValueError):
        return True  # a manifest this coordinator cannot read: the more lenient verdict, with no claim


def _stages(manifest: dict[str, Any]) -> tuple[str, ...]:
    return package_stages(manifest if isinstance(manifest, dict) else {})


def _outcome(row: Encode | Decode) -> verdicts.Outcome:
    return verdicts.Outcome(row.status, row.stage_hashes, row.error_code, row.error_detail)


def _prefixed(side: str, note: str) -> str:
    return f"{side}: {note}" if note else ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
