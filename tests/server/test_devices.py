"""The device pool's health checks on a real database: identical devices checked at once, and a check that
fails inside the coordinator. Over real HTTP (`bitmatch serve`, `bitmatch worker`): the known-answer test
runs without any option, and a worker that answers but has not passed it is `unchecked` everywhere."""

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_harness import WORKER_TOKEN, auth, placeholder_codec, start_coordinator, start_worker

from codec.package import CodecPackage
from server.db import Database
from server.devices import HEALTHY, UNCHECKED, DevicePool, WorkerSpec
from server.knownanswer import _random_health_package, health_package, shipped_health_package
from server.models import Device, Fingerprint
from server.settings import Settings

INFO = {"target": "cpu", "arch": "x86_64", "emulator": None, "cpu_model": "same on every device"}


@pytest.fixture
def pool(db_url, tmp_path):
    database = Database(db_url)
    database.open()
    yield DevicePool(database, Settings(data_dir=tmp_path))
    database.dispose()


def test_identical_devices_recording_their_fingerprint_at_once_share_one_row(pool):
    ids = [pool.upsert(WorkerSpec(f"d{i}", f"http://d{i}", target="cpu"), "config") for i in range(8)]
    with ThreadPoolExecutor(8) as threads:
        problems = list(threads.map(lambda device_id: pool.record_fingerprint(device_id, INFO), ids))
    assert problems == [""] * 8
    with pool.db.session() as session:
        assert session.query(Fingerprint).count() == 1
        assert len({session.get(Device, i).fingerprint_id for i in ids}) == 1


def test_a_check_that_fails_in_the_coordinator_leaves_the_device_unchecked_with_the_reason(pool):
    device_id = pool.upsert(WorkerSpec("d", "http://127.0.0.1:9", target="cpu"), "config")

    async def broken(_device_id):
        raise RuntimeError("a bug")

    pool._check = broken
    assert asyncio.run(pool.check(device_id)) == UNCHECKED
    with pool.db.session() as session:
        assert (
            "failed in the coordinator (RuntimeError: a bug)" in session.get(Device, device_id).health_detail
        )


# --- only a worker that passed the known-answer test is healthy ------------------------------------------


@pytest.fixture(scope="module")
def cpu_worker(tmp_path_factory):
    worker = start_worker("cpu", tmp_path_factory.mktemp("cpu-worker")).wait_ready()
    yield worker
    worker.stop()


def coordinator_for(workdir: Path, worker, *extra: str):
    config = workdir / "workers.json"
    entry = {"name": "cpu-worker", "url": worker.url, "token": WORKER_TOKEN, "target": "cpu"}
    config.write_text(json.dumps({"workers": [entry]}))
    return start_coordinator(workdir, "--workers-config", str(config), *extra)


def the_device_once(client: httpx.Client, settled, timeout: float = 300) -> dict:
    """The one device, once `settled(device)` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (device,) = client.get("/api/workers").json()
        if settled(device):
            return device
        time.sleep(0.3)
    raise AssertionError(f"the device never settled: {device}")


def test_without_a_health_package_the_known_answer_test_runs_on_the_shipped_int16_package(
    tmp_path, cpu_worker
):
    shipped = CodecPackage.load(shipped_health_package())
    assert shipped.manifest["precision"] == "int16"
    coordinator = coordinator_for(tmp_path, cpu_worker)  # no --health-package
    try:
        with httpx.Client(base_url=coordinator.url, timeout=60) as client:
            device = the_device_once(client, lambda d: d["status"] != UNCHECKED)
        assert (device["status"], device["health_detail"]) == (HEALTHY, "known-answer test passed")
        assert (tmp_path / "data" / "known-answers" / f"known-answer-{shipped.digest}.json").is_file()
    finally:
        coordinator.stop()


def test_a_worker_that_answers_but_never_passed_the_known_answer_test_is_unchecked_everywhere(
    tmp_path, cpu_worker, packages
):
    # A package that loads (its manifest lists the files' real hashes) but whose graph does not parse: serve
    # accepts it, and the known-answer test cannot run.
    from codec.package import CodecPackage, write_package

    original = CodecPackage.load(packages["int16"].path)
    files = {name: original.read(name) for name in original.names()}
    onnx = next(name for name in files if name.endswith(".onnx"))
    files[onnx] = files[onnx] + b"\0"
    fields = {k: v for k, v in original.manifest.items() if k not in ("files", "digest")}
    damaged = tmp_path / "damaged-int16"
    write_package(damaged, fields, files)
    coordinator = coordinator_for(tmp_path, cpu_worker, "--health-package", str(damaged))
    try:
        with httpx.Client(base_url=coordinator.url, headers=auth(), timeout=60) as client:
            device = the_device_once(client, lambda d: "cannot run" in (d["health_detail"] or ""))
            assert device["status"] == UNCHECKED and device["fingerprint"]["target"] == "cpu"  # it answered
            assert "health package unusable" in device["health_detail"]
            page = client.get("/devices").text
            request = {"codecs": [packages["int16"].digest], "images": "tiny", "encoders": ["cpu"]}
            job = client.post("/api/jobs", json=request)
            css = client.get("/dashboard.css").text
    finally:
        coordinator.stop()
    assert 'data-status="unchecked"' in page and 'class="badge s-unchecked"' in page
    assert 'data-status="healthy"' not in page and 'data-count="1">1 unchecked' in page
    assert job.status_code == 422 and "'cpu' matches no healthy device" in job.text
    assert re.search(r"^\.s-unchecked \{[^}]*var\(--warn", css, re.M)  # a colour of its own


def test_the_fallback_health_package_is_a_seeded_random_int16_one_built_once(tmp_path):
    path = _random_health_package(tmp_path)
    package = CodecPackage.load(path)
    assert package.manifest["precision"] == "int16"
    assert _random_health_package(tmp_path) == path and CodecPackage.load(path).digest == package.digest
    assert health_package(None, tmp_path) == shipped_health_package()  # shipped in this checkout
    assert health_package(path, tmp_path) == path


def test_the_demo_waits_for_a_loading_known_answer_test_but_not_for_one_that_cannot_run(pool):
    from bitmatch.enlist import waiting_for_known_answer

    assert waiting_for_known_answer({"status": UNCHECKED, "health_detail": pool.known_answer_pending()})
    pool.known_answer_loading, pool.known_answer_problem = False, "health package unusable: BadMagic"
    detail = pool.known_answer_pending()
    assert "BadMagic" in detail
    assert not waiting_for_known_answer({"status": UNCHECKED, "health_detail": detail})
    assert not waiting_for_known_answer({"status": HEALTHY, "health_detail": "known-answer test passed"})


# --- a periodic check never waits behind the tasks of a busy device ---------------------------------------


class StubWorker:
    """A worker that answers /healthz and /v1/info at once; its compute process (encode, decode) is stuck
    behind a long task, so any call to it waits until the test releases it."""

    def __init__(self) -> None:
        self.compute_calls = 0
        self.released = asyncio.Event()

    async def healthz(self) -> dict:
        return {"status": "ok"}

    async def info(self) -> dict:
        return INFO

    async def put_codec(self, digest, archive) -> None:
        return None

    async def decode(self, *args, **kwargs):
        self.compute_calls += 1
        await self.released.wait()
        raise AssertionError("the known-answer decode reached a stuck compute process")


def busy_device(pool, stub: StubWorker, running: bool) -> int:
    from server.devices import LiveDevice
    from server.knownanswer import KnownAnswer
    from server.models import Encode, Image, Job

    device_id = pool.upsert(WorkerSpec("busy", "http://busy", target="cpu"), "config")
    pool.record_fingerprint(device_id, INFO)
    pool.mark(device_id, HEALTHY, "known-answer test passed")
    pool._live[device_id] = LiveDevice(client=stub, slots=asyncio.Semaphore(2))
    pool.known_answer = KnownAnswer("d" * 64, b"", b"", b"", {})
    with pool.db.session() as session:
        codec = placeholder_codec()
        image = Image(digest="0" * 64, name="i", width=1, height=1, size=1)
        job = Job(
            status="running",
            request={},
            codec_digests=[],
            image_digests=[],
            encoder_targets=[],
            decoder_targets=[],
        )
        session.add_all([codec, image, job])
        session.flush()
        status = "running" if running else "done"
        session.add(
            Encode(
                job_id=job.id,
                codec_id=codec.id,
                image_id=image.id,
                target="cpu",
                repeat=0,
                status=status,
                device_id=device_id,
            )
        )
    return device_id


def test_a_health_check_of_a_busy_device_answers_without_queueing_behind_its_tasks(pool):
    from server.devices import BUSY_RECHECK

    stub = StubWorker()
    device_id = busy_device(pool, stub, running=True)
    status = asyncio.run(asyncio.wait_for(pool.check(device_id), timeout=10))
    assert status == HEALTHY and stub.compute_calls == 0
    with pool.db.session() as session:
        assert session.get(Device, device_id).health_detail == BUSY_RECHECK


def test_an_idle_device_takes_the_known_answer_test_again(pool):
    stub = StubWorker()
    device_id = busy_device(pool, stub, running=False)

    async def check_then_release() -> None:
        check = asyncio.create_task(pool.check(device_id))
        while stub.compute_calls == 0:
            await asyncio.sleep(0.01)
        stub.released.set()
        await check

    asyncio.run(asyncio.wait_for(check_then_release(), timeout=10))
    assert stub.compute_calls == 1
