"""The device pool's health checks on a real database: identical devices checked at once, and a check that
fails inside the coordinator."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from server.db import Database
from server.devices import UNCHECKED, DevicePool, WorkerSpec
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
