"""The job scheduler: every encoder target encodes each (codec, image), every decoder target decodes every
resulting bitstream, and each (codec, image, encoder, decoder) gets exactly one cell.

All state lives in the database. Planned encodes and decodes are rows inserted if absent (unique keys), a task
is marked `running` while a worker holds it, and a restarted coordinator turns `running` rows back into
`pending` and carries on: finished work is never redone and no cell is ever written twice.

Failure handling per task: transport failures (connection refused or reset, the compute process died, 503) are
retried on the same worker with exponential backoff; when those retries run out the worker is marked offline
and the task moves to another healthy worker of the same target, or ends `worker-lost` when there is none. A
timeout
ends the task as `timeout`; a typed 4xx error from the codec is a result, never retried.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from codec import errors as codec_errors
from codec.images import decode_png
from server import bdrate, verdicts
from server.db import Database
from server.devices import OFFLINE, DevicePool, LiveDevice
from server.forensics import IndexMapError, decode_array, first_mismatch, max_abs_difference
from server.models import Cell, Codec, Decode, Encode, Image, Job, Mismatch, utcnow
from server.settings import Settings
from server.storage import BlobStore
from server.workerclient import (
    CodecResult,
    TransportError,
    WorkerBusy,
    WorkerCallError,
    WorkerRejected,
    WorkerTimeout,
)

log = logging.getLogger("bitmatch.server.scheduler")

PENDING, RUNNING = "pending", "running"
ACTIVE_JOB_STATES = ("queued", "running")
BITSTREAM_ERROR_CODES = frozenset(
    cls.code
    for cls in vars(codec_errors).values()
    if isinstance(cls, type) and issubclass(cls, codec_errors.BitstreamError)
)


@dataclass(frozen=True)
class Unit:
    """One encoder target's work on one (codec, image): its encodes and everything decoded from them."""

    codec_id: int
    image_id: int
    target: str


@dataclass
class TaskFailure:
    status: str  # error | timeout | worker-lost | rejected
    code: str
    detail: str
    device_id: int | None = None


WorkerCall = Callable[[LiveDevice], Awaitable[CodecResult]]


class Scheduler:
    def __init__(self, db: Database, store: BlobStore, pool: DevicePool, settings: Settings) -> None:
        self.db, self.store, self.pool, self.settings = db, store, pool, settings
        self._jobs: dict[int, asyncio.Task] = {}
        self._cancel_requested: set[int] = set()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._requeue_interrupted()
        self._main = asyncio.create_task(self._run_forever(), name="bitmatch-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._main, *self._jobs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()

    def wake(self) -> None:
        """Thread-safe: look at the jobs table now (new job, cancel request)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _requeue_interrupted(self) -> None:
        with self.db.session() as session:
            for model in (Encode, Decode):
                for row in session.scalars(select(model).where(model.status == RUNNING)):
                    row.status = PENDING

    async def _run_forever(self) -> None:
        while True:
            try:
                self._sync_jobs()
            except Exception:
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()

    def _sync_jobs(self) -> None:
        with self.db.session() as session:
            rows = session.execute(
                select(Job.id, Job.status).where(Job.status.in_((*ACTIVE_JOB_STATES, "cancelling")))
            ).all()
        for job_id, status in rows:
            task = self._jobs.get(job_id)
            if status == "cancelling":
                self._cancel_requested.add(job_id)
                if task is not None:
                    task.cancel()
                else:
                    self._finalize(job_id, "cancelled", "cancelled before it ran")
            elif task is None:
                self._jobs[job_id] = asyncio.create_task(self._run_job(job_id), name=f"bitmatch-job-{job_id}")
        for job_id in [j for j, t in self._jobs.items() if t.done()]:
            del self._jobs[job_id]

    # --- one job ------------------------------------------------------------------------------------------

    async def _run_job(self, job_id: int) -> None:
        try:
            units = self._plan(job_id)
            await asyncio.gather(*(self._run_unit(job_id, unit) for unit in units))
            self._finalize(job_id, "done", "")
        except asyncio.CancelledError:
            if job_id in self._cancel_requested:
                self._finalize(job_id, "cancelled", "cancelled on request")
                return
            raise
        except Exception as exc:
            log.exception("job %s failed", job_id)
            try:
                self._finalize(job_id, "failed", f"{type(exc).__name__}: {exc}")
            except Exception:
                log.exception("closing failed job %s failed too", job_id)
                self._mark_job(job_id, "failed", f"{type(exc).__name__}: {exc}")

    def _mark_job(self, job_id: int, status: str, detail: str) -> None:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            job.status, job.detail, job.finished_at = status, detail, utcnow()

    def _plan(self, job_id: int) -> list[Unit]:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            if job.status == "queued":
                job.status, job.started_at = "running", utcnow()
            codec_ids = self._ids(session, Codec, job.codec_digests)
            image_ids = self._ids(session, Image, job.image_digests)
            existing = set(
                session.execute(
                    select(Encode.codec_id, Encode.image_id, Encode.target, Encode.repeat).where(
                        Encode.job_id == job_id
                    )
                )
            )
            units = []
            for codec_id in codec_ids:
                for image_id in image_ids:
                    for target in job.encoder_targets:
                        units.append(Unit(codec_id, image_id, target))
                        for repeat in range(job.repeat):
                            if (codec_id, image_id, target, repeat) not in existing:
                                session.add(
                                    Encode(
                                        job_id=job_id,
                                        codec_id=codec_id,
                                        image_id=image_id,
                                        target=target,
                                        repeat=repeat,
                                        status=PENDING,
                                    )
                                )
            return units

    @staticmethod
    def _ids(session, model, digests: list[str]) -> list[int]:
        by_digest = dict(
            session.execute(select(model.digest, model.id).where(model.digest.in_(digests))).all()
        )
        return [by_digest[d] for d in digests]

    async def _run_unit(self, job_id: int, unit: Unit) -> None:
        encodes = self._unit_encodes(job_id, unit)
        await asyncio.gather(*(self._run_encode(e.id) for e in encodes if e.status == PENDING))
        first = self._unit_encodes(job_id, unit)[0]
        with self.db.session() as session:
            job = session.get(Job, job_id)
            decoder_targets, repeat = list(job.decoder_targets), job.repeat
        if first.status == verdicts.DONE:
            self._plan_decodes(job_id, first.id, decoder_targets, repeat)
            with self.db.session() as session:
                pending = list(
                    session.scalars(
                        select(Decode.id).where(Decode.encode_id == first.id, Decode.status == PENDING)
                    )
                )
            await asyncio.gather(*(self._run_decode(decode_id) for decode_id in pending))
        for target in decoder_targets:
            await self._record_cell(job_id, unit, target)

    def _unit_encodes(self, job_id: int, unit: Unit) -> list[Encode]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(Encode)
                    .where(
                        Encode.job_id == job_id,
                        Encode.codec_id == unit.codec_id,
                        Encode.image_id == unit.image_id,
                        Encode.target == unit.target,
                    )
                    .order_by(Encode.repeat)
                )
            )

    def _plan_decodes(self, job_id: int, encode_id: int, targets: list[str], repeat: int) -> None:
        with self.db.session() as session:
            existing = set(
                session.execute(select(Decode.target, Decode.repeat).where(Decode.encode_id == encode_id))
            )
            for target in targets:
                for r in range(repeat):
                    if (target, r) not in existing:
                        session.add(
                            Decode(
                                job_id=job_id, encode_id=encode_id, target=target, repeat=r, status=PENDING
                            )
                        )

    # --- encodes and decodes ------------------------------------------------------------------------------

    async def _run_encode(self, encode_id: int) -> None:
        with self.db.session() as session:
            row = session.get(Encode, encode_id)
            codec, image = session.get(Codec, row.codec_id), session.get(Image, row.image_id)
            target, digest, archive_sha, image_sha = (
                row.target,
                codec.digest,
                codec.archive_sha256,
                image.digest,
            )
        png = self.store.get(image_sha)

        async def call(live: LiveDevice) -> CodecResult:
            return await live.client.encode(digest, png, recon=True)

        outcome = await self._execute(Encode, encode_id, target, digest, self.store.get(archive_sha), call)
        if isinstance(outcome, TaskFailure):
            self._record_failure(Encode, encode_id, outcome, rejected_status=verdicts.ERROR)
            return
        device_id, result = outcome
        if result.bitstream is None:
            failure = TaskFailure(verdicts.ERROR, "no-bitstream", "encode answer has no bitstream", device_id)
            self._record_failure(Encode, encode_id, failure, rejected_status=verdicts.ERROR)
            return
        # PSNR is computed here for encoder and decoder alike, so both sides of a comparison use one formula.
        psnr = await asyncio.to_thread(self._psnr_against_source, image_sha, result.recon_png)
        with self.db.session() as session:
            row = session.get(Encode, encode_id)
            self._fill_result(row, device_id, result)
            row.bitstream_sha256 = self.store.put(result.bitstream)
            row.bpp = _number(result.metrics.get("bpp"))
            row.psnr = psnr if psnr is not None else _number(result.metrics.get("psnr"))

    async def _run_decode(self, decode_id: int) -> None:
        with self.db.session() as session:
            row = session.get(Decode, decode_id)
            encode = session.get(Encode, row.encode_id)
            codec, image = session.get(Codec, encode.codec_id), session.get(Image, encode.image_id)
            target, digest, archive_sha = row.target, codec.digest, codec.archive_sha256
            bitstream_sha, image_sha = encode.bitstream_sha256, image.digest
        bitstream = self.store.get(bitstream_sha)

        async def call(live: LiveDevice) -> CodecResult:
            return await live.client.decode(digest, bitstream, recon=True)

        outcome = await self._execute(Decode, decode_id, target, digest, self.store.get(archive_sha), call)
        if isinstance(outcome, TaskFailure):
            rejected = verdicts.FAILED if outcome.code in BITSTREAM_ERROR_CODES else verdicts.ERROR
            self._record_failure(Decode, decode_id, outcome, rejected_status=rejected)
            return
        device_id, result = outcome
        psnr = await asyncio.to_thread(self._psnr_against_source, image_sha, result.recon_png)
        with self.db.session() as session:
            row = session.get(Decode, decode_id)
            self._fill_result(row, device_id, result)
            row.psnr = psnr

    def _psnr_against_source(self, image_sha: str, recon_png: bytes | None) -> float | None:
        if recon_png is None:
            return None
        return verdicts.psnr(decode_png(self.store.get(image_sha)), decode_png(recon_png))

    def _fill_result(self, row: Encode | Decode, device_id: int, result: CodecResult) -> None:
        row.status, row.device_id, row.finished_at = verdicts.DONE, device_id, utcnow()
        row.fingerprint_id, row.emulated = self.pool.fingerprint_of(device_id)
        row.stage_hashes, row.timings = result.stage_hashes, result.timings
        row.recon_sha256 = self.store.put(result.recon_png) if result.recon_png is not None else None
        row.error_code = row.error_detail = None

    def _record_failure(self, model, row_id: int, failure: TaskFailure, rejected_status: str) -> None:
        with self.db.session() as session:
            row = session.get(model, row_id)
            row.status = rejected_status if failure.status == "rejected" else failure.status
            row.error_code, row.error_detail, row.finished_at = failure.code, failure.detail, utcnow()
            if failure.device_id is not None:
                row.device_id = failure.device_id
                row.fingerprint_id, row.emulated = self.pool.fingerprint_of(failure.device_id)

    async def _execute(
        self, model, row_id: int, target: str, digest: str, archive: bytes, call: WorkerCall
    ) -> tuple[int, CodecResult] | TaskFailure:
        """Run `call` on a healthy device of `target`, moving to another one when a device is lost."""
        tried: set[int] = set()
        lost = ""
        while True:
            device_id = self.pool.pick(target, tried)
            if device_id is None:
                detail = lost or f"no healthy device of target {target!r}"
                return TaskFailure(verdicts.WORKER_LOST, "worker-lost", detail)
            live = self.pool.live(device_id)
            async with live.slots:
                live.in_flight += 1
                try:
                    self._mark_running(model, row_id, device_id)
                    return device_id, await self._with_retries(live, digest, archive, call)
                except (TransportError, WorkerBusy) as exc:
                    tried.add(device_id)
                    lost = f"device {device_id} lost: {exc.detail}"
                    if isinstance(exc, TransportError):
                        self.pool.mark(device_id, OFFLINE, f"lost during a job: {exc.detail}")
                except WorkerTimeout as exc:
                    return TaskFailure(verdicts.TIMEOUT, exc.code, exc.detail, device_id)
                except WorkerRejected as exc:
                    return TaskFailure("rejected", exc.code, exc.detail, device_id)
                except WorkerCallError as exc:
                    return TaskFailure(verdicts.ERROR, exc.code, exc.detail, device_id)
                finally:
                    live.in_flight -= 1

    async def _with_retries(
        self, live: LiveDevice, digest: str, archive: bytes, call: WorkerCall
    ) -> CodecResult:
        retries, reuploaded = self.settings.transport_retries, False
        attempt = 0
        while True:
            try:
                await self.pool.ensure_codec(live, digest, archive)
                return await call(live)
            except WorkerRejected as exc:
                if exc.code != "unknown-codec" or reuploaded:
                    raise
                live.codecs.discard(digest)  # the worker restarted or dropped its cache
                reuploaded = True
            except (TransportError, WorkerBusy):
                if attempt >= retries:
                    raise
                await asyncio.sleep(self.settings.retry_backoff * 2**attempt)
                attempt += 1

    def _mark_running(self, model, row_id: int, device_id: int) -> None:
        with self.db.session() as session:
            row = session.get(model, row_id)
            row.status, row.device_id = RUNNING, device_id
            row.attempts += 1

    # --- cells --------------------------------------------------------------------------------------------

    async def _record_cell(self, job_id: int, unit: Unit, decoder_target: str) -> None:
        built = self._build_cell(job_id, unit, decoder_target)
        if built is None:
            return
        cell, encode, decode = built
        mismatch = None
        if cell.verdict == verdicts.DESYNC:
            mismatch = await self._locate(unit, encode, decode, cell.first_stage)
        elif cell.verdict == verdicts.SYMBOL_EXACT:
            await self._measure_latent_drift(cell, unit, encode, decode)
        self._insert_cell(cell, mismatch)

    def _record_cell_without_forensics(self, job_id: int, unit: Unit, decoder_target: str) -> None:
        built = self._build_cell(job_id, unit, decoder_target)
        if built is None:
            return
        cell = built[0]
        mismatch = None
        if cell.verdict == verdicts.DESYNC:
            mismatch = Mismatch(stage=cell.first_stage or "", detail="not located: the job ended first")
        self._insert_cell(cell, mismatch)

    def _build_cell(self, job_id: int, unit: Unit, decoder_target: str) -> tuple[Cell, Encode, Decode] | None:
        """The cell's verdict and evidence, or None when the cell is already recorded."""
        with self.db.session() as session:
            if (
                session.scalar(
                    select(Cell.id).where(
                        Cell.job_id == job_id,
                        Cell.codec_id == unit.codec_id,
                        Cell.image_id == unit.image_id,
                        Cell.encoder_target == unit.target,
                        Cell.decoder_target == decoder_target,
                    )
                )
                is not None
            ):
                return None
        encodes = self._unit_encodes(job_id, unit)
        decodes = self._decodes(encodes[0].id, decoder_target) if encodes else []
        cell = self._evaluate(job_id, unit, decoder_target, encodes, decodes)
        return cell, (encodes[0] if encodes else None), (decodes[0] if decodes else None)

    def _decodes(self, encode_id: int, target: str) -> list[Decode]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    select(Decode)
                    .where(Decode.encode_id == encode_id, Decode.target == target)
                    .order_by(Decode.repeat)
                )
            )

    def _evaluate(
        self, job_id: int, unit: Unit, decoder_target: str, encodes: list[Encode], decodes: list[Decode]
    ) -> Cell:
        first_encode = encodes[0] if encodes else None
        first_decode = decodes[0] if decodes else None
        encode_outcome = _outcome(first_encode) if first_encode else verdicts.Outcome(verdicts.NOT_RUN)
        verdict = verdicts.decide(encode_outcome, _outcome(first_decode) if first_decode else None)
        notes = [
            n
            for n in (
                _prefixed(
                    "encoder",
                    verdicts.nondeterminism(
                        [_outcome(e) for e in encodes], [e.bitstream_sha256 for e in encodes]
                    ),
                ),
                _prefixed("decoder", verdicts.nondeterminism([_outcome(d) for d in decodes])),
            )
            if n
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
        encoder_recon = decode_png(self.store.get(encode.recon_sha256))
        decoder_recon = decode_png(self.store.get(decode.recon_sha256))
        cell.max_abs_diff, cell.recon_psnr = verdicts.recon_difference(encoder_recon, decoder_recon)

    def _insert_cell(self, cell: Cell, mismatch: Mismatch | None) -> None:
        try:
            with self.db.session() as session:
                session.add(cell)
                session.flush()
                if mismatch is not None:
                    mismatch.cell_id = cell.id
                    session.add(mismatch)
        except IntegrityError:
            log.info(
                "cell already recorded: job %s %s->%s", cell.job_id, cell.encoder_target, cell.decoder_target
            )

    async def _forensic_maps(
        self, unit: Unit, encode: Encode, decode: Decode
    ) -> tuple[CodecResult, CodecResult]:
        """Both sides again, asking for the per-element maps (scale index, symbols, y_hat)."""
        with self.db.session() as session:
            codec, image = session.get(Codec, unit.codec_id), session.get(Image, unit.image_id)
            digest, archive_sha, image_sha = codec.digest, codec.archive_sha256, image.digest
        archive = self.store.get(archive_sha)
        png, bitstream = self.store.get(image_sha), self.store.get(encode.bitstream_sha256)
        encoder_side = await self._forensic_call(
            unit.target,
            digest,
            archive,
            lambda live: live.client.encode(digest, png, recon=False, index_map=True),
        )
        decoder_side = await self._forensic_call(
            decode.target,
            digest,
            archive,
            lambda live: live.client.decode(digest, bitstream, recon=False, index_map=True),
        )
        return encoder_side, decoder_side

    async def _locate(self, unit: Unit, encode: Encode, decode: Decode, stage: str | None) -> Mismatch:
        """The first latent element (coding order) whose scale index or symbol differs between the sides."""
        mismatch = Mismatch(stage=stage or "", detail="")
        notes = []
        if decode.status == verdicts.FAILED:
            notes.append(f"the decoder refused the stream: {decode.error_code}: {decode.error_detail}")
        try:
            encoder_side, decoder_side = await self._forensic_maps(unit, encode, decode)
            found = first_mismatch(
                decode_array(encoder_side.index_map()),
                decode_array(decoder_side.index_map()),
                *_symbol_maps(encoder_side, decoder_side),
            )
        except (WorkerCallError, IndexMapError) as exc:
            notes.append(f"index maps unavailable: {getattr(exc, 'detail', exc)}")
            mismatch.detail = "; ".join(notes)
            return mismatch
        if encoder_side.raw.get("bitstream_sha256") not in (None, encode.bitstream_sha256):
            notes.append("re-encoding for the maps gave another bitstream (nondeterministic encoder)")
        if found is None:
            notes.append("scale indexes and symbols agree everywhere the decoder got to")
        else:
            for name in ("flat_index", "channel", "y", "x", "encoder_level", "decoder_level", "encoder_value",
                         "decoder_value"):
                setattr(mismatch, name, getattr(found, name))
            notes.append("first element whose scale index or symbol differs (C order, the coding order)")
        mismatch.detail = "; ".join(notes)
        return mismatch

    async def _measure_latent_drift(self, cell: Cell, unit: Unit, encode: Encode, decode: Decode) -> None:
        """A symbol-exact cell's largest |y_hat encoder - y_hat decoder|, in latent units."""
        try:
            encoder_side, decoder_side = await self._forensic_maps(unit, encode, decode)
            cell.y_hat_max_abs_diff = max_abs_difference(
                decode_array(encoder_side.y_hat_map()), decode_array(decoder_side.y_hat_map())
            )
        except (WorkerCallError, IndexMapError) as exc:
            cell.detail += f"; y_hat maps unavailable, drift not measured: {getattr(exc, 'detail', exc)}"

    async def _forensic_call(self, target: str, digest: str, archive: bytes, call: WorkerCall) -> CodecResult:
        device_id = self.pool.pick(target, set())
        if device_id is None:
            raise WorkerCallError(f"no healthy device of target {target!r}")
        live = self.pool.live(device_id)
        async with live.slots:
            return await self._with_retries(live, digest, archive, call)

    # --- the end of a job ---------------------------------------------------------------------------------

    def _finalize(self, job_id: int, status: str, detail: str) -> None:
        """Close unfinished tasks as not-run, give every missing cell its verdict, then RD and BD-rates."""
        with self.db.session() as session:
            for model in (Encode, Decode):
                for row in session.scalars(
                    select(model).where(model.job_id == job_id, model.status.in_((PENDING, RUNNING)))
                ):
                    row.status, row.error_detail = verdicts.NOT_RUN, f"job {status}"
            job = session.get(Job, job_id)
            encoder_targets, decoder_targets = list(job.encoder_targets), list(job.decoder_targets)
            codec_ids = self._ids(session, Codec, job.codec_digests)
            image_ids = self._ids(session, Image, job.image_digests)
        for codec_id in codec_ids:
            for image_id in image_ids:
                for encoder in encoder_targets:
                    for decoder in decoder_targets:
                        self._record_cell_without_forensics(
                            job_id, Unit(codec_id, image_id, encoder), decoder
                        )
        try:
            with self.db.session() as session:
                bdrate.record(session, job_id)
        except Exception as exc:  # the verdicts stand even when the RD summary cannot be computed
            log.exception("RD/BD-rate summary of job %s failed", job_id)
            problem = f"BD-rate summary failed: {type(exc).__name__}: {exc}"
            detail = f"{detail}; {problem}" if detail else problem
        self._mark_job(job_id, status, detail)
        self._cancel_requested.discard(job_id)


def _symbol_maps(encoder: CodecResult, decoder: CodecResult) -> tuple:
    """Both sides' symbol maps when both returned one (a decoder that failed mid-stream has none)."""
    if encoder.symbol_map() is None or decoder.symbol_map() is None:
        return None, None
    return decode_array(encoder.symbol_map()), decode_array(decoder.symbol_map())


def _outcome(row: Encode | Decode) -> verdicts.Outcome:
    return verdicts.Outcome(row.status, row.stage_hashes, row.error_code, row.error_detail)


def _prefixed(side: str, note: str) -> str:
    return f"{side}: {note}" if note else ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
