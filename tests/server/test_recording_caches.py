"""What the coordinator keeps in memory, on a real database and a real blob store: blobs read once by digest,
the PSNR of a decode that reproduced the encoder's image taken from the encode, device state read back from
the database by a coordinator that starts without any, and idle slots woken only by their target's work."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import numpy as np
import pytest

from codec.images import decode_png, encode_png
from codec.stages import STAGES
from server import verdicts
from server.blobcache import BlobCache
from server.catalog import add_image
from server.db import Database
from server.devices import HEALTHY, DevicePool, LiveDevice, WorkerSpec
from server.dispatch import PushDispatcher, Signal, TaskInputs
from server.models import Cell, Codec, Decode, Device, Encode, Job
from server.planning import plan_encodes
from server.recording import Recorder
from server.settings import Settings
from server.storage import BlobStore
from server.taskqueue import TaskQueue
from server.workerclient import CodecResult
from worker.contract import DecodeResult, EncodeResult

TARGETS = ("arm", "x86")


class CountingStore(BlobStore):
    """A real blob store that counts the reads of each blob."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: dict[str, int] = {}

    def get(self, digest: str) -> bytes:
        self.reads[digest] = self.reads.get(digest, 0) + 1
        return super().get(digest)


class Coordinator:
    """The recording half of a coordinator (no HTTP), on a shared database and blob directory."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.settings = Settings(data_dir=tmp_path / "data", db_url=db_url, run_scheduler=False)
        self.db = Database(self.settings.database_url)
        self.db.open()
        self.store = CountingStore(self.settings.blob_dir)
        self.pool = DevicePool(self.db, self.settings)
        self.queue = TaskQueue(self.db, 60.0, 3)
        self.recorder = Recorder(self.db, self.store, self.queue, self.pool.fingerprint_of)


@pytest.fixture
def site(tmp_path, db_url):
    coordinator = Coordinator(tmp_path, db_url)
    yield coordinator
    coordinator.db.dispose()


def make_devices(site: Coordinator) -> dict[str, int]:
    devices = {}
    for target in TARGETS:
        spec = WorkerSpec(name=f"dev-{target}", url=f"pull://{target}", target=target)
        device_id = site.pool.upsert(spec, source="registered", mode="pull")
        site.pool.record_fingerprint(device_id, {"target": target, "arch": target, "emulator": None})
        site.pool.mark(device_id, HEALTHY, "known-answer test passed")
        devices[target] = device_id
    return devices


def source_image() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (16, 24, 3), dtype=np.uint8)


def noisy(image: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-3, 4, image.shape)
    return np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def make_job(site: Coordinator, png: bytes) -> int:
    codec = Codec(
        digest="c" * 64,
        name="c",
        precision="int16",
        architecture="x",
        manifest={},
        archive_sha256=site.store.put(b"an archive"),
        size=10,
    )
    image, _ = add_image(site.db, site.store, png, "source")
    with site.db.session() as session:
        session.add(codec)
        session.flush()
        job = Job(
            status="running",
            request={},
            codec_digests=[codec.digest],
            image_digests=[image.digest],
            encoder_targets=list(TARGETS),
            decoder_targets=list(TARGETS),
        )
        session.add(job)
        session.flush()
        plan_encodes(session, job)
        return job.id


def hashes(recon: str) -> dict[str, str]:
    return {stage: (recon if stage == "recon" else stage) * 8 for stage in STAGES}


def answer(kind: str, recon: bytes, recon_hash: str, target: str) -> EncodeResult | DecodeResult:
    fields = {
        "codec": "c" * 64,
        "target": target,
        "height": 16,
        "width": 24,
        "stage_hashes": hashes(recon_hash),
        "recon_png": base64.b64encode(recon).decode(),
    }
    if kind == "encode":
        stream = b"a bitstream"
        return EncodeResult(
            **fields,
            bitstream=base64.b64encode(stream).decode(),
            bitstream_sha256="0" * 64,
            bitstream_bytes=len(stream),
        )
    return DecodeResult(**fields)


def run_all(site: Coordinator, devices: dict[str, int], recon_of) -> int:  # type: ignore[no-untyped-def]
    """Claim and answer every task; `recon_of(kind, target)` is the (PNG, stage hash) a device returns."""
    done = 0
    while True:
        leases = [site.queue.claim(device_id, target, 4) for target, device_id in devices.items()]
        leases = [lease for lease in leases if lease is not None]
        if not leases:
            return done
        for lease in leases:
            png, recon_hash = recon_of(lease.kind, lease.target)
            model = answer(lease.kind, png, recon_hash, lease.target)
            assert site.recorder.result(lease, CodecResult.from_model(model))
            done += 1


def test_a_decode_that_reproduced_the_encoders_image_gets_the_psnr_computed_directly(site):
    source = source_image()
    png = encode_png(source)
    devices = make_devices(site)
    job_id = make_job(site, png)
    encoder_recon, other_recon = encode_png(noisy(source, 1)), encode_png(noisy(source, 2))

    def recon_of(kind: str, target: str) -> tuple[bytes, str]:
        # the x86 decoder reconstructs another image than every encoder; the arm decoder the encoder's
        if kind == "decode" and target == "x86":
            return other_recon, "f"
        return encoder_recon, "e"

    assert run_all(site, devices, recon_of) == 2 + 4
    with site.db.session() as session:
        decodes = {d.target: d for d in session.query(Decode).filter_by(job_id=job_id)}
        encodes = list(session.query(Encode).filter_by(job_id=job_id))
        cells = {(c.encoder_target, c.decoder_target): c.verdict for c in session.query(Cell)}
    assert decodes["arm"].psnr == verdicts.psnr(source, decode_png(encoder_recon))
    assert decodes["x86"].psnr == verdicts.psnr(source, decode_png(other_recon))
    assert decodes["arm"].psnr != decodes["x86"].psnr
    assert {e.psnr for e in encodes} == {decodes["arm"].psnr}
    assert cells[("arm", "arm")] == verdicts.BIT_EXACT and cells[("arm", "x86")] == verdicts.LATENT_EXACT
    assert len(cells) == 4
    # the source and the encoders' reconstruction were read from disk once, for 2 encodes and 4 decodes
    image_digest = site.store.put(png)
    assert site.store.reads.get(image_digest) == 1
    assert site.store.reads.get(site.store.put(encoder_recon)) == 1


def test_a_restarted_coordinator_records_the_rest_of_the_job_with_empty_caches(site, tmp_path, db_url):
    source = source_image()
    devices = make_devices(site)
    job_id = make_job(site, encode_png(source))
    recon = encode_png(noisy(source, 1))
    leases = [site.queue.claim(device_id, target, 4) for target, device_id in devices.items()]
    for lease in leases:  # the encodes, on the first coordinator
        assert lease.kind == "encode"
        assert site.recorder.result(lease, CodecResult.from_model(answer("encode", recon, "e", lease.target)))
    site.db.dispose()  # the first coordinator stops (on SQLite it holds the one-writer lock)
    restarted = Coordinator(tmp_path, db_url)  # nothing in memory: no facts, blobs, statuses or fingerprints
    try:
        assert run_all(restarted, devices, lambda kind, target: (recon, "e")) == 4
        with restarted.db.session() as session:
            cells = list(session.query(Cell).filter_by(job_id=job_id))
            fingerprints = {d.fingerprint_id for d in session.query(Decode).filter_by(job_id=job_id)}
        assert sorted(c.verdict for c in cells) == [verdicts.BIT_EXACT] * 4
        assert None not in fingerprints and len(fingerprints) == 2
    finally:
        restarted.db.dispose()


def test_a_dispatcher_takes_device_health_from_the_database_that_others_mark(site):
    devices = make_devices(site)
    with site.db.session() as session:  # push devices, the ones a dispatcher calls
        for device in session.query(Device):
            device.mode = "push"
    pool = DevicePool(site.db, site.settings)  # a coordinator that has marked nothing itself
    dispatcher = PushDispatcher(site.db, site.store, site.queue, site.recorder, pool, site.settings, Signal())
    assert not dispatcher._healthy(devices["arm"])  # nothing in memory yet
    assert sorted(device for device, _ in dispatcher._healthy_push_devices()) == sorted(devices.values())
    assert dispatcher._healthy(devices["arm"])
    site.pool.mark(devices["arm"], "offline", "lost by another coordinator")
    dispatcher._healthy_push_devices()
    assert not dispatcher._healthy(devices["arm"]) and dispatcher._healthy(devices["x86"])
    pool.mark(devices["x86"], "quarantined", "its own mark")  # seen at once, before any refresh
    assert not dispatcher._healthy(devices["x86"])


class FakeClient:
    def __init__(self) -> None:
        self.puts = 0

    async def put_codec(self, digest: str, archive: bytes) -> dict:
        self.puts += 1
        return {"stored": True}


def test_a_package_archive_is_read_from_storage_once_for_many_devices_and_tasks(site):
    archive = b"a package archive" * 100
    digest = site.store.put(archive)
    dispatcher = PushDispatcher(
        site.db, site.store, site.queue, site.recorder, site.pool, site.settings, Signal()
    )
    inputs = TaskInputs("d" * 64, digest, "e" * 64)
    lives = [LiveDevice(client=FakeClient(), slots=asyncio.Semaphore(2)) for _ in range(5)]

    async def tasks() -> None:
        for _ in range(3):
            for live in lives:
                live.codecs.clear()  # as after a worker restart: the archive goes out again
                await dispatcher._ensure_codec(live, inputs)

    asyncio.run(tasks())
    assert [live.client.puts for live in lives] == [3] * 5
    assert site.store.reads[digest] == 1


def test_the_blob_cache_stays_within_its_bound_and_reads_again_what_it_dropped(tmp_path):
    store = CountingStore(tmp_path / "blobs")
    cache = BlobCache(store, max_bytes=4000)
    digests = [store.put(bytes([i]) * 900) for i in range(6)]
    for digest in digests:
        assert cache.blob(digest) == store.path(digest).read_bytes()
    assert cache.blob(digests[-1]) and store.reads[digests[-1]] == 1  # kept
    assert cache.blob(digests[0]) and store.reads[digests[0]] == 2  # dropped, read again
    array = cache.image(store.put(encode_png(source_image())))
    with pytest.raises(ValueError):
        array[0, 0, 0] = 1  # shared between callers: read-only


def test_a_targeted_notify_wakes_only_as_many_slots_of_that_target():
    async def scenario() -> tuple[int, int, int]:
        signal = Signal()
        arm = [asyncio.create_task(signal.wait(5.0, "arm")) for _ in range(3)]
        x86 = [asyncio.create_task(signal.wait(5.0, "x86")) for _ in range(2)]
        anyone = asyncio.create_task(signal.wait(5.0))
        await asyncio.sleep(0.05)
        signal.notify("arm", 2)
        await asyncio.sleep(0.05)
        woken = (sum(t.done() for t in arm), sum(t.done() for t in x86), int(anyone.done()))
        signal.notify()
        await asyncio.wait_for(asyncio.gather(*arm, *x86), 1.0)
        return woken

    assert asyncio.run(scenario()) == (2, 0, 1)


def test_a_first_encode_is_seen_done_only_together_with_its_decodes(site, db_url, monkeypatch):
    """Another connection (the scheduler deciding whether the job is complete) looking while the result is
    recorded sees the encode still running: done and its decodes planned commit as one."""
    from sqlalchemy import create_engine, text

    import server.recording

    devices = make_devices(site)
    make_job(site, encode_png(source_image()))
    lease = site.queue.claim(devices["arm"], "arm", 4)
    assert lease is not None and lease.kind == "encode"
    observer = create_engine(db_url)
    seen: list[tuple] = []
    real_plan = server.recording.plan_decodes

    def plan_while_watched(session, job, encode):  # type: ignore[no-untyped-def]
        with observer.connect() as other:
            status = other.execute(text("SELECT status FROM encodes WHERE id = :i"), {"i": lease.task_id})
            count = other.execute(
                text("SELECT count(*) FROM decodes WHERE encode_id = :i"), {"i": lease.task_id}
            )
            seen.append((status.scalar_one(), count.scalar_one()))
        real_plan(session, job, encode)

    monkeypatch.setattr(server.recording, "plan_decodes", plan_while_watched)
    model = answer("encode", encode_png(source_image()), "e", "arm")
    assert site.recorder.result(lease, CodecResult.from_model(model))
    observer.dispose()
    assert seen == [("running", 0)]
    with site.db.session() as session:
        assert session.get(Encode, lease.task_id).status == verdicts.DONE
        assert session.query(Decode).filter_by(encode_id=lease.task_id).count() == len(TARGETS)
