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
from server_harness import WORKER_TOKEN, auth, start_coordinator, start_worker

from codec.package import CodecPackage
from server.db import Database
from server.devices import HEALTHY, UNCHECKED, DevicePool, WorkerSpec
from server.knownanswer import SHIPPED_HEALTH_PACKAGE, _random_health_package, health_package
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
    shipped = CodecPackage.load(SHIPPED_HEALTH_PACKAGE)
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
    assert health_package(None, tmp_path) == SHIPPED_HEALTH_PACKAGE  # shipped in this checkout
    assert health_package(path, tmp_path) == path


def test_the_demo_waits_for_a_loading_known_answer_test_but_not_for_one_that_cannot_run(pool):
    from server.demo import waiting_for_known_answer

    assert waiting_for_known_answer({"status": UNCHECKED, "health_detail": pool.known_answer_pending()})
    pool.known_answer_loading, pool.known_answer_problem = False, "health package unusable: BadMagic"
    detail = pool.known_answer_pending()
    assert "BadMagic" in detail
    assert not waiting_for_known_answer({"status": UNCHECKED, "health_detail": detail})
    assert not waiting_for_known_answer({"status": HEALTHY, "health_detail": "known-answer test passed"})
