"""Dispatch under faults, on real processes: `bitmatch serve` and two `bitmatch worker --target cpu`, on
SQLite and on PostgreSQL.

- two equal workers split the work within 60:40;
- kill -9 of one of them mid-job: the job finishes within 1.5x of its time without the fault;
- SIGSTOP of one of them: its tasks move to the other within the lease time plus 10 s, and no cell passes
  without evidence;
- two coordinators on one PostgreSQL database finish three concurrent jobs with every cell exactly once.
"""

import json
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from server_harness import WORKER_TOKEN, auth, start_coordinator, start_worker

from codec.images import encode_png
from codec.networks import synthetic_images

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "int16" / "q2"
LEASE_S = 8
IMAGES, SIDE = 48, 256
JOB_TIMEOUT_S = 600


def wait_for(predicate, what: str, timeout: float, context=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; {context()}")


class Site:
    def __init__(self, workdir: Path, db_url: str | None = None) -> None:
        self.workdir = workdir
        self.db_url = db_url or f"sqlite:///{workdir / 'data' / 'bitmatch.sqlite3'}"
        self.workers = {name: start_worker("cpu", workdir / name) for name in ("cpu-a", "cpu-b")}
        for worker in self.workers.values():
            worker.wait_ready()
        self.config = workdir / "workers.json"
        entries = [
            {"name": name, "url": worker.url, "token": WORKER_TOKEN, "target": "cpu"}
            for name, worker in self.workers.items()
        ]
        self.config.write_text(json.dumps({"workers": entries}))
        self.coordinators = [self.start_coordinator()]
        self.coordinator = self.coordinators[0]
        self.client = httpx.Client(base_url=self.coordinator.url, headers=auth(), timeout=120)
        wait_for(
            lambda: self.healthy() == 2,
            "both workers healthy",
            300,
            lambda: self.client.get("/api/workers").text,
        )
        archive = (PACKAGE / "manifest.json").parent
        from codec.package import CodecPackage, archive_bytes

        package = CodecPackage.load(archive)
        assert (
            self.client.put(f"/api/codecs/{package.digest}", content=archive_bytes(package)).status_code < 300
        )
        self.codec = package.digest
        self.images = [
            self.client.post("/api/images", content=encode_png(image)).json()["digest"]
            for image in synthetic_images(3, IMAGES, SIDE)
        ]

    def start_coordinator(self):
        extra = ("--db", self.db_url) if self.db_url.startswith("postgresql") else ()
        return start_coordinator(
            self.workdir,
            "--workers-config",
            str(self.config),
            "--health-package",
            str(PACKAGE),
            "--lease-seconds",
            str(LEASE_S),
            *extra,
        )

    def healthy(self) -> int:
        return sum(d["status"] == "healthy" for d in self.client.get("/api/workers").json())

    def submit(self) -> int:
        response = self.client.post(
            "/api/jobs",
            json={"codecs": [self.codec], "images": self.images, "encoders": ["cpu"], "decoders": ["cpu"]},
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: int) -> dict:
        return self.client.get(f"/api/jobs/{job_id}").json()

    def run(self, job_id: int, during=None) -> float:
        """Seconds from submission until the job is done (`during(job_id)` is called while it runs)."""
        started = time.monotonic()
        if during is not None:
            during(job_id)
        wait_for(
            lambda: self.job(job_id)["status"] in ("done", "failed", "cancelled"),
            f"job {job_id}",
            JOB_TIMEOUT_S,
        )
        assert self.job(job_id)["status"] == "done", self.job(job_id)
        return time.monotonic() - started

    def sql(self, query: str, *args) -> list[tuple]:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.db_url)
        names = [f"p{i}" for i in range(len(args))]
        for name in names:
            query = query.replace("?", f":{name}", 1)
        try:
            with engine.connect() as connection:
                return [
                    tuple(row) for row in connection.execute(text(query), dict(zip(names, args, strict=True)))
                ]
        finally:
            engine.dispose()

    def tasks_by_device(self, job_id: int) -> dict[str, int]:
        rows = self.sql(
            "SELECT d.name, count(*) FROM (SELECT device_id FROM encodes WHERE job_id = ? AND "
            "status = 'done' UNION ALL SELECT device_id FROM decodes WHERE job_id = ? AND "
            "status = 'done') t JOIN devices d ON d.id = t.device_id GROUP BY d.name",
            job_id,
            job_id,
        )
        return dict(rows)

    def running_on(self, job_id: int, name: str) -> int:
        query = (
            "SELECT count(*) FROM {table} t JOIN devices d ON t.device_id = d.id "
            "WHERE t.job_id = ? AND t.status = 'running' AND d.name = ?"
        )
        return sum(
            self.sql(query.format(table=table), job_id, name)[0][0] for table in ("encodes", "decodes")
        )

    def decodes_done(self, job_id: int) -> int:
        return self.job(job_id)["progress"]["decodes"]["done"]

    def cells(self, job_id: int) -> list[dict]:
        return self.client.get(f"/api/jobs/{job_id}/cells").json()

    def close(self) -> None:
        self.client.close()
        for coordinator in self.coordinators:
            coordinator.stop()
        for worker in self.workers.values():
            worker.process.send_signal(signal.SIGCONT)
            worker.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request, tmp_path):
    db_url = request.getfixturevalue("postgres").new_database() if request.param == "postgresql" else None
    site = Site(tmp_path, db_url)
    yield site
    site.close()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> SimpleNamespace:
    """The workload's time and split on two equal, healthy workers."""
    site = Site(tmp_path_factory.mktemp("baseline"))
    try:
        site.run(site.submit())  # warms both workers up (numba, sessions)
        job_id = site.submit()
        elapsed = site.run(job_id)
        return SimpleNamespace(elapsed=elapsed, split=site.tasks_by_device(job_id), cells=site.cells(job_id))
    finally:
        site.close()


def test_two_equal_workers_split_the_work_within_60_40(baseline):
    counts = sorted(baseline.split.values())
    print(f"baseline: {baseline.elapsed:.1f} s, tasks per worker {baseline.split}")
    assert len(counts) == 2 and counts[0] >= 0.4 * sum(counts), baseline.split
    assert len(baseline.cells) == IMAGES and all(c["verdict"] == "bit-exact" for c in baseline.cells)


def test_kill_9_of_one_worker_mid_job_costs_at_most_half_the_time_again(site):
    site.run(site.submit())  # warm-up, like the baseline's
    without_fault = site.run(site.submit())  # on this site's database and processes

    def kill_mid_job(job_id: int) -> None:
        wait_for(
            lambda: site.decodes_done(job_id) >= IMAGES * 0.6 and site.running_on(job_id, "cpu-a"),
            "cpu-a mid-task past 60 % of the job",
            JOB_TIMEOUT_S,
        )
        site.workers["cpu-a"].kill_hard()

    job_id = site.submit()
    elapsed = site.run(job_id, kill_mid_job)
    print(f"kill -9 of cpu-a mid-job: {elapsed:.1f} s against {without_fault:.1f} s without the fault")
    assert elapsed <= 1.5 * without_fault
    cells = site.cells(job_id)
    assert len(cells) == IMAGES
    not_exact = [c["id"] for c in cells if c["verdict"] != "bit-exact"]
    details = [site.client.get(f"/api/cells/{cell}").json() for cell in not_exact]
    assert not details, json.dumps(details, indent=1)


def test_sigstop_of_one_worker_moves_its_tasks_within_a_lease_plus_10_s(site):
    site.run(site.submit())
    moved_after: list[float] = []

    def freeze_mid_job(job_id: int) -> None:
        wait_for(lambda: site.running_on(job_id, "cpu-a") > 0, "a task on cpu-a", JOB_TIMEOUT_S)
        site.workers["cpu-a"].process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        wait_for(lambda: site.running_on(job_id, "cpu-a") == 0, "cpu-a's tasks to move", LEASE_S + 30)
        moved_after.append(time.monotonic() - stopped)

    job_id = site.submit()
    site.run(job_id, freeze_mid_job)
    print(f"SIGSTOP of cpu-a: its tasks moved after {moved_after[0]:.1f} s (lease {LEASE_S} s)")
    assert moved_after[0] <= LEASE_S + 10
    devices = {d["name"]: d for d in site.client.get("/api/workers").json()}
    assert devices["cpu-a"]["status"] == "offline"
    cells = site.cells(job_id)
    assert len(cells) == IMAGES
    for cell in cells:  # every passing cell rests on a finished encode and decode
        detail = site.client.get(f"/api/cells/{cell['id']}").json()
        assert cell["verdict"] == "bit-exact", cell
        assert detail["encode"]["status"] == detail["decode"]["status"] == "done"
    assert np.all([c["passed"] for c in cells])


def test_two_coordinators_on_one_postgresql_database_record_every_cell_once(tmp_path, postgres):
    """Both serve the same database and data directory (the blobs), each takes jobs; three run at once."""
    site = Site(tmp_path, postgres.new_database())
    try:
        second = site.start_coordinator()
        site.coordinators.append(second)
        other = httpx.Client(base_url=second.url, headers=auth(), timeout=120)
        wait_for(
            lambda: sum(d["status"] == "healthy" for d in other.get("/api/workers").json()) == 2,
            "the second coordinator's workers healthy",
            300,
        )
        jobs = [site.submit(), site.submit()]
        response = other.post(
            "/api/jobs",
            json={"codecs": [site.codec], "images": site.images, "encoders": ["cpu"], "decoders": ["cpu"]},
        )
        jobs.append(response.json()["id"])
        for job_id in jobs:
            wait_for(
                lambda j=job_id: site.job(j)["status"] in ("done", "failed", "cancelled"),
                f"job {job_id}",
                JOB_TIMEOUT_S,
            )
            assert site.job(job_id)["status"] == "done", site.job(job_id)
        rows = site.sql("SELECT job_id, count(*), count(DISTINCT image_id) FROM cells GROUP BY job_id")
        assert sorted(rows) == sorted((job_id, IMAGES, IMAGES) for job_id in jobs)
        assert site.sql("SELECT count(*) FROM cells WHERE verdict = 'not-run'") == [(0,)]
        for job_id in jobs:
            assert {c["verdict"] for c in site.cells(job_id)} == {"bit-exact"}
        other.close()
    finally:
        site.close()
