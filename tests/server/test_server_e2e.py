"""End to end over real HTTP between real processes: `bitmatch serve` with five `bitmatch worker`s (two cpu,
one
cpu-1t-noopt, onnx-ref and qemu-aarch64), the seeded int16 package and its float twin.

- the int16 package gives no desync cell on any encoder x decoder pair;
- a coordinator killed with SIGKILL mid-job resumes from its SQLite file and records every cell exactly once;
- a worker killed mid-job loses no cell (its work moves to the other cpu worker), and a target whose every
  worker is gone ends its cells `worker-lost`.
"""

import json
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from server_harness import WORKER_TOKEN, auth, ensure_target, start_coordinator, start_worker

from codec.images import encode_png
from codec.imagesets import IMAGE_SETS

pytestmark = [pytest.mark.slow, pytest.mark.qemu]

EMULATED, EMULATED_ARCH = "qemu-aarch64", "aarch64"
FLEET = [
    ("cpu-a", "cpu"),
    ("cpu-b", "cpu"),
    ("cpu-1t", "cpu-1t-noopt"),
    ("ref", "onnx-ref"),
    ("arm", EMULATED),
]
TARGETS = sorted({target for _, target in FLEET})
JOB_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    ensure_target(EMULATED)
    workdir = tmp_path_factory.mktemp("fleet")
    workers = {name: start_worker(target, workdir) for name, target in FLEET}
    try:
        for worker in workers.values():
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, fleet, packages):
    """The coordinator's working directory, its workers file and a handle on the running coordinator."""
    workdir = tmp_path_factory.mktemp("coordinator")
    config = workdir / "workers.json"
    config.write_text(
        json.dumps(
            {
                "workers": [
                    {"name": name, "url": fleet[name].url, "token": WORKER_TOKEN, "target": target}
                    for name, target in FLEET
                ]
            }
        )
    )
    state = SimpleNamespace(workdir=workdir, config=config, coordinator=None, packages=packages)
    yield state
    if state.coordinator is not None:
        state.coordinator.stop()


def launch(site) -> httpx.Client:
    site.coordinator = start_coordinator(
        site.workdir,
        "--workers-config",
        str(site.config),
        "--health-package",
        str(site.packages["int16"].path),
    )
    client = httpx.Client(base_url=site.coordinator.url, headers=auth(), timeout=120)
    wait_for(
        lambda: healthy_count(client) == len(FLEET),
        "every worker healthy",
        300,
        lambda: client.get("/api/workers").text,
    )
    return client


def healthy_count(client: httpx.Client) -> int:
    devices = client.get("/api/workers").json()
    quarantined = [d for d in devices if d["status"] == "quarantined"]
    assert not quarantined, f"workers failed their known-answer test: {quarantined}"
    return sum(d["status"] == "healthy" for d in devices)


def wait_for(predicate, what: str, timeout: float, context=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; {context()}")


def job(client: httpx.Client, job_id: int) -> dict:
    return client.get(f"/api/jobs/{job_id}").json()


def wait_done(client: httpx.Client, job_id: int) -> dict:
    wait_for(
        lambda: job(client, job_id)["status"] in ("done", "failed", "cancelled"),
        f"job {job_id}",
        JOB_TIMEOUT_S,
    )
    return job(client, job_id)


def upload_inputs(client: httpx.Client, packages) -> tuple[list[str], list[str]]:
    codecs = []
    for precision in ("int16", "float"):
        package = packages[precision]
        response = client.put(f"/api/codecs/{package.digest}", content=package.archive)
        assert response.status_code in (200, 201), response.text
        codecs.append(package.digest)
    images = []
    for maker in list(IMAGE_SETS["tiny"].values())[:2]:
        response = client.post("/api/images", content=encode_png(maker()[:32, :40]))
        assert response.status_code in (200, 201), response.text
        images.append(response.json()["digest"])
    return codecs, images


def db_rows(site, sql: str) -> list[tuple]:
    connection = sqlite3.connect(Path(site.workdir) / "data" / "bitmatch.sqlite3")
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_a_job_survives_a_coordinator_kill_9_and_int16_never_desyncs(site, packages):
    client = launch(site)
    codecs, images = upload_inputs(client, packages)
    response = client.post("/api/jobs", json={"codecs": codecs, "images": images, "repeat": 2})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert sorted(job(client, job_id)["encoders"]) == TARGETS

    wait_for(lambda: job(client, job_id)["progress"]["decodes"]["done"] >= 4, "the job under way", 600)
    assert job(client, job_id)["status"] == "running"
    site.coordinator.kill_hard()
    client = launch(site)
    summary = wait_done(client, job_id)

    assert summary["status"] == "done", summary
    expected = len(codecs) * len(images) * len(TARGETS) ** 2
    assert summary["progress"]["cells"] == {"done": expected, "cancelled": 0, "not_run": 0, "total": expected}
    duplicates = db_rows(
        site,
        "SELECT count(*) FROM (SELECT 1 FROM cells GROUP BY job_id, codec_id, image_id, "
        "encoder_target, decoder_target HAVING count(*) > 1)",
    )
    assert duplicates == [(0,)]
    assert db_rows(site, f"SELECT count(*) FROM cells WHERE job_id = {job_id}") == [(expected,)]

    cells = client.get(f"/api/jobs/{job_id}/cells").json()
    int16 = [c for c in cells if c["codec"] == packages["int16"].digest]
    assert {c["verdict"] for c in int16} <= {"bit-exact", "latent-exact"}, [
        c for c in int16 if not c["passed"]
    ]
    float_differences = sorted(
        {
            (c["encoder"], c["decoder"], c["verdict"])
            for c in cells
            if c["codec"] == packages["float"].digest and c["verdict"] != "bit-exact"
        }
    )
    print(f"float twin, pairs that are not bit-exact: {float_differences or 'none'}")
    assert all(c["emulated"] == (EMULATED in (c["encoder"], c["decoder"])) for c in cells)

    arm_cell = next(c for c in int16 if c["encoder"] == EMULATED and c["decoder"] == "cpu")
    detail = client.get(f"/api/cells/{arm_cell['id']}").json()
    assert detail["encode"]["fingerprint"]["arch"] == EMULATED_ARCH
    assert detail["decode"]["fingerprint"]["target"] == "cpu"
    assert [s["equal"] for s in detail["stage_comparison"]][:4] == [True] * 4

    junit = client.get(f"/api/jobs/{job_id}/export/junit").text
    assert junit.count("<testcase ") == expected
    assert len(client.get(f"/api/jobs/{job_id}/export/csv").text.strip().splitlines()) == expected + 1
    assert client.get(f"/api/jobs/{job_id}/rd-points").json(), "RD points of the encodes and decodes"
    # one rate point per family: no curve to compare, so no BD-rate row (the dashboard says why)
    assert client.get(f"/api/jobs/{job_id}/bd-rates").json() == []


def test_the_matrix_and_the_job_list_cover_every_pair(site):
    client = httpx.Client(base_url=site.coordinator.url, headers=auth(), timeout=120)
    job_id = client.get("/api/jobs").json()[0]["id"]
    matrices = client.get(f"/api/jobs/{job_id}/matrix").json()
    assert len(matrices) == 2
    for matrix in matrices:
        assert [[p["decoder"] for p in row] for row in matrix["rows"]] == [matrix["decoders"]] * len(TARGETS)
        assert all(sum(p["counts"].values()) == 2 for row in matrix["rows"] for p in row)  # two images


def test_index_maps_from_real_workers_locate_nothing_when_they_agree(fleet, packages):
    """The forensics path against the real worker API: both sides' scale-level maps, compared element-wise."""
    import asyncio

    from server.forensics import decode_array, first_mismatch
    from server.workerclient import WorkerClient

    package = packages["int16"]
    png = encode_png(next(iter(IMAGE_SETS["tiny"].values()))()[:32, :40])

    async def maps() -> tuple:
        encoder = WorkerClient(fleet["arm"].url, WORKER_TOKEN, 600)
        decoder = WorkerClient(fleet["ref"].url, WORKER_TOKEN, 600)
        try:
            for client in (encoder, decoder):
                await client.put_codec(package.digest, package.archive)
            encoded = await encoder.encode(package.digest, png, recon=False, index_map=True)
            decoded = await decoder.decode(package.digest, encoded.bitstream, recon=False, index_map=True)
            return decode_array(encoded.raw["index_map"]), decode_array(decoded.raw["index_map"])
        finally:
            await encoder.aclose()
            await decoder.aclose()

    encoder_levels, decoder_levels = asyncio.run(maps())
    assert encoder_levels.ndim >= 3 and encoder_levels.size > 0
    assert first_mismatch(encoder_levels, decoder_levels) is None


def test_a_worker_whose_fingerprint_differs_from_its_claim_is_quarantined(site, fleet):
    client = httpx.Client(base_url=site.coordinator.url, headers=auth(), timeout=120)
    claim = {"target": "cpu-1t-noopt", "arch": "sparc64"}
    response = client.post(
        "/api/workers",
        json={"url": fleet["cpu-1t"].url, "token": WORKER_TOKEN, "name": "liar", "fingerprint": claim},
    )
    assert response.status_code == 201
    assert response.json()["status"] == "quarantined"
    assert "differs" in response.json()["health_detail"]
    response = client.post(
        "/api/jobs",
        json={
            "codecs": [site.packages["int16"].digest],
            "images": "tiny",
            "encoders": ["liar"],
            "decoders": ["liar"],
        },
    )
    assert response.status_code == 422  # a quarantined device matches no selector


def test_a_worker_failing_the_known_answer_test_is_quarantined(tmp_path, fleet, packages):
    """A recorded answer no correct device reproduces: the bitstream is real, the recorded hashes are not."""
    from codec.codec import Codec
    from codec.imagesets import known_answer_image
    from server.knownanswer import write_cache

    package = packages["int16"]
    bitstream = Codec.load(package.path).encode(known_answer_image()).bitstream
    wrong = dict.fromkeys(("z_hat", "scale_index", "symbols", "mean", "y_hat"), "0" * 64)
    write_cache(tmp_path / "data" / "known-answers", package.digest, bitstream, wrong)
    config = tmp_path / "workers.json"
    config.write_text(
        json.dumps({"workers": [{"name": "cpu-1t", "url": fleet["cpu-1t"].url, "token": WORKER_TOKEN}]})
    )
    coordinator = start_coordinator(
        tmp_path, "--workers-config", str(config), "--health-package", str(packages["int16"].path)
    )
    try:
        client = httpx.Client(base_url=coordinator.url, timeout=60)
        wait_for(lambda: client.get("/api/workers").json()[0]["status"] != "unchecked", "the check", 300)
        device = client.get("/api/workers").json()[0]
        assert device["status"] == "quarantined"
        assert "known-answer decode differs" in device["health_detail"]
    finally:
        coordinator.stop()


def test_cancelling_a_job_records_every_cell(site, packages):
    client = httpx.Client(base_url=site.coordinator.url, headers=auth(), timeout=120)
    codecs, images = upload_inputs(client, packages)
    job_id = client.post("/api/jobs", json={"codecs": codecs, "images": images}).json()["id"]
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 202
    summary = wait_done(client, job_id)
    assert summary["status"] == "cancelled"
    cells = client.get(f"/api/jobs/{job_id}/cells").json()
    assert len(cells) == len(codecs) * len(images) * len(TARGETS) ** 2
    assert {c["verdict"] for c in cells} <= {"bit-exact", "latent-exact", "not-run"}
    ran = sum(c["verdict"] != "not-run" for c in cells)
    assert summary["progress"]["cells"] == {
        "done": ran,
        "cancelled": len(cells) - ran,
        "not_run": 0,
        "total": len(cells),
    }
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 409


def test_killing_a_worker_mid_job_loses_no_cell(site, fleet, packages):
    client = httpx.Client(base_url=site.coordinator.url, headers=auth(), timeout=120)
    codecs, images = upload_inputs(client, packages)
    request = {
        "codecs": codecs[:1],
        "images": images,
        "encoders": ["cpu"],
        "decoders": ["cpu", "onnx-ref"],
        "repeat": 2,
    }
    job_id = client.post("/api/jobs", json=request).json()["id"]
    wait_for(lambda: job(client, job_id)["progress"]["encodes"]["done"] >= 1, "the first encode", 600)
    fleet["cpu-a"].kill_hard()
    summary = wait_done(client, job_id)

    assert summary["status"] == "done"
    cells = client.get(f"/api/jobs/{job_id}/cells").json()
    assert len(cells) == len(images) * 2
    assert {c["verdict"] for c in cells} <= {"bit-exact", "latent-exact", "worker-lost"}, cells


def test_a_target_with_no_worker_left_ends_worker_lost(site, fleet, packages):
    client = httpx.Client(base_url=site.coordinator.url, headers=auth(), timeout=120)
    codecs, images = upload_inputs(client, packages)
    fleet["cpu-a"].kill_hard()
    fleet["cpu-b"].kill_hard()
    response = client.post(
        "/api/jobs",
        json={"codecs": codecs[:1], "images": images[:1], "encoders": ["cpu"], "decoders": ["cpu-1t-noopt"]},
    )
    if response.status_code == 422:  # both cpu workers already known to be gone: nothing to schedule on
        assert "matches no healthy device" in response.text
        return
    summary = wait_done(client, response.json()["id"])
    cells = client.get(f"/api/jobs/{summary['id']}/cells").json()
    assert [c["verdict"] for c in cells] == ["worker-lost"]
    devices = {d["name"]: d["status"] for d in client.get("/api/workers").json()}
    assert devices["cpu-a"] == devices["cpu-b"] == "offline"
