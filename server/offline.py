"""`bitmatch aggregate`: cells from offline result sets (worker/contract/offline_set.py), by the coordinator.

The sets are replayed into a coordinator data directory, the history: their codecs and images are
catalogued, each set's target becomes a device carrying the set's fingerprint, a job is planned over them,
and every task of the job is leased by the device of its set and answered with the recorded result, through
the same queue and recorder a live job uses (server/taskqueue.py, server/recording.py). So the verdicts,
forensics, drift, BD-rates and the history are exactly what a coordinator job on the same inputs computes;
a task no set answered ends not-run. The job is one run of its series (default: "aggregate"), so the history
classifies every cell against the earlier runs (server/history.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from codec.errors import CodecError
from codec.package import CodecPackage, archive_bytes
from codec.vocabulary import DeviceStatus, JobStatus, TaskStatus
from server import history, queries
from server.anchors import AnchorCache
from server.catalog import add_codec, add_image
from server.db import Database
from server.devices import DevicePool, WorkerSpec
from server.models import Codec, Decode, Encode, Image, Job
from server.outcome import Judgement, Policy, judge, write_outputs
from server.planning import plan_encodes
from server.recording import Recorder, TaskFailure, failure_of
from server.settings import Settings
from server.storage import BlobStore
from server.taskqueue import TaskQueue
from server.workerclient import CodecResult, WorkerFailed
from worker.contract import TaskReport
from worker.contract.fingerprint import fingerprint_sha256
from worker.contract.offline_set import SetError, iter_reports, load_set

DEFAULT_SERIES = "aggregate"


@dataclass
class LoadedSet:
    path: Path
    manifest: dict[str, Any]
    reports: dict[tuple, TaskReport]  # keyed like the job's tasks (see _encode_key, _decode_key)

    @property
    def target(self) -> str:
        return self.manifest["target"]


@dataclass
class Aggregate:
    job_id: int
    outputs: dict[str, Path]
    trends: list[history.CellTrend]
    judgement: Judgement


def _load(paths: list[Path]) -> tuple[list[LoadedSet], list[LoadedSet]]:
    encodes, decodes = [], []
    for path in paths:
        manifest = load_set(path)
        if manifest["kind"] == "encode":
            keyed = {
                ("encode", e["codec"], e["image"], e["repeat"]): r for e, r in iter_reports(path, manifest)
            }
            encodes.append(LoadedSet(path, manifest, keyed))
        else:
            keyed = {
                ("decode", e["encoder_target"], e["codec"], e["image"], e["repeat"]): r
                for e, r in iter_reports(path, manifest)
            }
            decodes.append(LoadedSet(path, manifest, keyed))
    for kind, sets in (("encode", encodes), ("decode", decodes)):
        targets = [s.target for s in sets]
        doubled = sorted({t for t in targets if targets.count(t) > 1})
        if doubled:
            raise SetError(f"more than one {kind} set for target(s) {doubled}: give one per target")
    if not encodes:
        raise SetError("no encode set among the directories given")
    return encodes, decodes


class Replay:
    """The history's coordinator state, and the devices that answer from the sets."""

    def __init__(self, history_dir: Path) -> None:
        self.settings = Settings(data_dir=history_dir, run_scheduler=False)
        self.db = Database(self.settings.database_url)
        self.db.open()
        self.store = BlobStore(self.settings.blob_dir)
        self.pool = DevicePool(self.db, self.settings)
        self.queue = TaskQueue(self.db, lease_seconds=3600.0, max_attempts=1)
        anchors = AnchorCache(self.settings.anchor_dir, self.store)
        self.recorder = Recorder(self.db, self.store, self.queue, self.pool.fingerprint_of, anchors)

    def close(self) -> None:
        self.db.dispose()

    def device(self, loaded: LoadedSet) -> int:
        fingerprint = loaded.manifest["fingerprint"]
        name = f"{loaded.target}@{fingerprint_sha256(fingerprint)[:12]}"
        # the device is of the target it ran (its fingerprint says which); the set's label, its name in
        # the matrix, is the encoder or decoder target of the job's tasks
        spec = WorkerSpec(name=name, url=f"offline://{loaded.manifest['id']}", target=None)
        device_id = self.pool.upsert(spec, source="offline", mode="pull")
        problem = self.pool.record_fingerprint(device_id, fingerprint)
        if problem:
            raise SetError(f"{loaded.path}: {problem}")
        self.pool.mark(
            device_id, DeviceStatus.HEALTHY, f"replays the {loaded.manifest['kind']} set {loaded.path}"
        )
        return device_id

    def catalogue(self, encodes: list[LoadedSet], decodes: list[LoadedSet]) -> tuple[list[str], list[str]]:
        codecs, images = [], []
        for loaded in encodes:
            for digest, codec in loaded.manifest["codecs"].items():
                self._add_codec(loaded.path / codec["archive"], digest)
                codecs.append(digest)
            for digest, image in loaded.manifest["images"].items():
                add_image(self.db, self.store, (loaded.path / image["file"]).read_bytes(), image["name"])
                images.append(digest)
        for loaded in decodes:
            for digest, codec in (loaded.manifest.get("codecs") or {}).items():
                self._add_codec(loaded.path / codec["archive"], digest)
        return list(dict.fromkeys(codecs)), list(dict.fromkeys(images))

    def _add_codec(self, archive: Path, digest: str) -> None:
        try:
            package = CodecPackage.load(archive)
        except CodecError as exc:
            raise SetError(f"{archive}: {exc}") from None
        if package.digest != digest:
            raise SetError(f"{archive} holds codec {package.digest}, not {digest}")
        add_codec(self.db, self.store, self.settings.data_dir / "packages", archive_bytes(package), digest)


def _decode_with(decodes: list[LoadedSet]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for loaded in decodes:
        for entry in loaded.manifest["tasks"]:
            other = entry["decoder_codec"]
            if other != entry["codec"] and mapping.setdefault(entry["codec"], other) != other:
                raise SetError(f"decode sets decode {entry['codec'][:12]} with two different packages")
    return mapping


def _answer(replay: Replay, kind: str, task_id: int, device_id: int, report: TaskReport | None) -> None:
    lease = replay.queue.lease_task(kind, task_id, device_id)
    if lease is None:
        return
    if report is None:
        failure = TaskFailure(TaskStatus.NOT_RUN, "not-in-set", "no result set answered this task")
        replay.recorder.failure(lease, failure)
    elif report.result is not None:
        try:
            replay.recorder.result(lease, CodecResult.from_model(report.result))
        except WorkerFailed as exc:
            replay.recorder.failure(lease, TaskFailure(TaskStatus.ERROR, "bad-result", exc.detail))
    else:
        error = report.error.model_dump()
        failure = failure_of(error) or TaskFailure(TaskStatus.ERROR, error["error"], error["detail"])
        replay.recorder.failure(lease, failure)


def aggregate(
    set_dirs: list[Path],
    out: Path,
    history_dir: Path | None = None,
    series: str = DEFAULT_SERIES,
    label: str | None = None,
    policy: Policy | None = None,
) -> Aggregate:
    encodes, decodes = _load(set_dirs)
    replay = Replay(history_dir or out / "history")
    try:
        codecs, images = replay.catalogue(encodes, decodes)
        encoders = {s.target: replay.device(s) for s in encodes}
        decoders = {s.target: replay.device(s) for s in decodes}
        repeat = max(int(s.manifest.get("repeat", 1)) for s in encodes)
        job_id = _plan(
            replay,
            codecs,
            images,
            list(encoders),
            list(decoders),
            repeat,
            _decode_with(decodes),
            series,
            label,
            set_dirs,
        )
        _replay_encodes(replay, job_id, encodes, encoders)
        _replay_decodes(replay, job_id, decodes, decoders)
        replay.recorder.finalize(job_id, JobStatus.DONE, "aggregated from offline result sets")
        outputs = write_outputs(replay.db, job_id, out)
        with replay.db.session() as session:
            job = session.get(Job, job_id)
            trends = history.job_trends(session, job)
            cells = queries.cell_rows(session, job_id)
        return Aggregate(job_id, outputs, trends, judge(cells, policy or Policy()))
    finally:
        replay.close()


def _plan(replay, codecs, images, encoders, decoders, repeat, decode_with, series, label, set_dirs) -> int:  # type: ignore[no-untyped-def]
    label = label or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with replay.db.session() as session:
        job = Job(
            status=JobStatus.QUEUED,
            request={"offline": True, "series": series, "label": label, "sets": [str(p) for p in set_dirs]},
            codec_digests=codecs,
            image_digests=images,
            encoder_targets=sorted(encoders),
            decoder_targets=sorted(decoders),
            repeat=repeat,
            decode_with=decode_with,
        )
        session.add(job)
        session.flush()
        plan_encodes(session, job)
        return job.id


def _replay_encodes(replay: Replay, job_id: int, encodes: list[LoadedSet], devices: dict[str, int]) -> None:
    by_target = {s.target: s for s in encodes}
    with replay.db.session() as session:
        rows = session.execute(
            select(Encode.id, Encode.target, Codec.digest, Image.digest, Encode.repeat)
            .join(Codec, Encode.codec_id == Codec.id)
            .join(Image, Encode.image_id == Image.id)
            .where(Encode.job_id == job_id)
            .order_by(Encode.id)
        ).all()
    for task_id, target, codec, image, repeat in rows:
        report = by_target[target].reports.get(("encode", codec, image, repeat))
        _answer(replay, "encode", task_id, devices[target], report)


def _replay_decodes(replay: Replay, job_id: int, decodes: list[LoadedSet], devices: dict[str, int]) -> None:
    by_target = {s.target: s for s in decodes}
    with replay.db.session() as session:
        rows = session.execute(
            select(Decode.id, Decode.target, Encode.target, Codec.digest, Image.digest, Decode.repeat)
            .join(Encode, Decode.encode_id == Encode.id)
            .join(Codec, Encode.codec_id == Codec.id)
            .join(Image, Encode.image_id == Image.id)
            .where(Decode.job_id == job_id)
            .order_by(Decode.id)
        ).all()
    for task_id, target, encoder_target, codec, image, repeat in rows:
        report = by_target[target].reports.get(("decode", encoder_target, codec, image, repeat))
        _answer(replay, "decode", task_id, devices[target], report)
