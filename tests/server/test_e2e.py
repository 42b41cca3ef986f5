"""Acceptance, end to end: real `bitmatch serve` and `bitmatch worker` processes on loopback, real HTTP, one
real SQLite file. Six workers on five targets: two `cpu`, `cpu-1t-noopt`, `onnx-ref`, `qemu-aarch64` and
`qemu-x86-sse` (the emulated ones provisioned with `bitmatch targets setup`, never skipped).

- the int16 package gives no desync cell on any encoder x decoder pair;
- a coordinator killed with SIGKILL mid-job is restarted on the same SQLite file, the job completes and every
  cell exists exactly once;
- a worker killed with SIGKILL mid-job loses no cell: its work goes to the other worker of its target, or the
  cell ends `worker-lost`.
"""

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bitmatch.fleet import Service, free_port, python_command
from codec.images import encode_png
from codec.imagesets import IMAGE_SETS
from server.client import CoordinatorClient
from tests.token_files import token_file

ROOT = Path(__file__).resolve().parents[2]
TOKEN, WORKER_TOKEN = "e2e-coordinator-token", "e2e-worker-token"
WORKERS = {
    "cpu-a": "cpu",
    "cpu-b": "cpu",
    "cpu-1t": "cpu-1t-noopt",
    "ref": "onnx-ref",
    "arm": "qemu-aarch64",
    "sse": "qemu-x86-sse",
}
TARGETS = sorted(set(WORKERS.values()))
EMULATED = {"qemu-aarch64", "qemu-x86-sse"}
START_S, JOB_S = 900.0, 900.0
PASSING = {"bit-exact", "latent-exact"}
BITMATCH = python_command("from bitmatch.cli import main; main()")
WORKER = python_command("from worker.cli import worker_command; worker_command()")

pytestmark = [pytest.mark.slow, pytest.mark.qemu]


def wait_for(predicate, what: str, timeout: float, context=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; {context()}")


def kill_hard(service: Service) -> None:
    """SIGKILL to the process alone (not its group): no shutdown handler runs, exactly like a crash."""
    service.process.send_signal(signal.SIGKILL)
    service.process.wait()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    for target in sorted(EMULATED):  # idempotent and cached; CI runs `make provision` first
        setup = subprocess.run(
            [*BITMATCH, "targets", "setup", target], cwd=ROOT, timeout=3600, capture_output=True, text=True
        )
        assert setup.returncode == 0, f"cannot provision {target}:\n{setup.stdout}\n{setup.stderr}"
    logs = tmp_path_factory.mktemp("workers")
    fleet = {}
    for name, target in WORKERS.items():
        port = free_port()
        argv = [
            *WORKER,
            "--target",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--token-file",
            token_file(WORKER_TOKEN),
            "--log-level",
            "warning",
        ]
        fleet[name] = Service(name, argv, f"http://127.0.0.1:{port}", logs / f"{name}.log")
    try:
        for service in fleet.values():
            service.start()
        for service in fleet.values():
            wait_for(lambda s=service: s.ready() or not s.alive(), f"worker {service.name}", START_S)
            assert service.alive(), service.log_tail()
        yield fleet
    finally:
        for service in fleet.values():
            service.stop()  # the whole process group, compute processes included


class Site:
    """One coordinator data directory (one SQLite file) and the coordinator currently serving it."""

    def __init__(self, workdir: Path, workers: dict[str, Service], health_package: Path) -> None:
        self.workdir, self.workers, self.health_package = workdir, workers, health_package
        self.config = workdir / "workers.json"
        self.config.write_text(
            json.dumps(
                {
                    "workers": [
                        {"name": name, "url": workers[name].url, "token": WORKER_TOKEN, "target": target}
                        for name, target in WORKERS.items()
                    ]
                }
            )
        )
        self.coordinator: Service | None = None
        self.client: CoordinatorClient | None = None

    def launch(self) -> CoordinatorClient:
        port = free_port()
        argv = [
            *BITMATCH,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(self.workdir / "data"),
            "--token-file",
            token_file(TOKEN),
            "--workers-config",
            str(self.config),
            "--health-package",
            str(self.health_package),
            "--health-interval",
            "3600",
            "--log-level",
            "warning",
        ]
        self.coordinator = Service(
            "coordinator", argv, f"http://127.0.0.1:{port}", self.workdir / "coordinator.log"
        ).start()
        wait_for(lambda: self.coordinator.ready() or not self.coordinator.alive(), "the coordinator", 120)
        assert self.coordinator.alive(), self.coordinator.log_tail()
        self.client = CoordinatorClient(self.coordinator.url, TOKEN)
        alive = {name for name, service in self.workers.items() if service.alive()}
        wait_for(
            lambda: self.healthy() >= alive,
            "every live worker healthy",
            600,
            lambda: json.dumps(self.client.workers()),
        )
        return self.client

    def healthy(self) -> set[str]:
        devices = self.client.workers()
        quarantined = [d for d in devices if d["status"] == "quarantined"]
        assert not quarantined, f"workers failed their known-answer test: {quarantined}"
        return {d["name"] for d in devices if d["status"] == "healthy"}

    def sql(self, query: str, *args) -> list[tuple]:
        connection = sqlite3.connect(self.workdir / "data" / "bitmatch.sqlite3")
        try:
            return connection.execute(query, args).fetchall()
        finally:
            connection.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.coordinator is not None:
            self.coordinator.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, workers, packages):
    site = Site(tmp_path_factory.mktemp("coordinator"), workers, packages["int16"].path)
    try:
        yield site
    finally:
        site.close()


def upload(client: CoordinatorClient, packages, images: int) -> tuple[list[str], list[str]]:
    codecs = [client.upload_codec_archive(packages[p].archive)["digest"] for p in ("int16", "float")]
    makers = list(IMAGE_SETS["tiny"].items())[:images]
    digests = [
        client.upload_image(encode_png(make()[:32, :40]), name=f"e2e-{name}")["digest"]
        for name, make in makers
    ]
    return codecs, digests


def test_coordinator_kill_9_mid_job_resumes_and_int16_never_desyncs(site, packages):
    client = site.launch()
    codecs, images = upload(client, packages, images=2)
    job_id = client.submit(codecs, images)
    assert sorted(client.job(job_id)["encoders"]) == TARGETS

    wait_for(lambda: client.job(job_id)["progress"]["decodes"]["done"] >= 3, "the job under way", JOB_S)
    before = client.job(job_id)
    assert before["status"] == "running", before
    kill_hard(site.coordinator)
    site.client.close()
    client = site.launch()  # same data directory, same SQLite file
    summary = client.wait(job_id, timeout=JOB_S)

    expected = len(codecs) * len(images) * len(TARGETS) ** 2
    assert summary["status"] == "done", summary
    assert summary["progress"]["cells"] == {"done": expected, "cancelled": 0, "not_run": 0, "total": expected}
    key = "codec_id, image_id, encoder_target, decoder_target"
    distinct = "codec_id || '/' || image_id || '/' || encoder_target || '/' || decoder_target"
    assert site.sql(f"SELECT count(*), count(DISTINCT {distinct}) FROM cells WHERE job_id = ?", job_id) == [
        (expected, expected)
    ]
    duplicates = f"SELECT count(*) FROM (SELECT 1 FROM cells GROUP BY job_id, {key} HAVING count(*) > 1)"
    assert site.sql(duplicates) == [(0,)]
    # finished work is never redone: one row per planned encode and decode
    encodes = len(codecs) * len(images) * len(TARGETS)
    assert site.sql("SELECT count(*) FROM encodes WHERE job_id = ?", job_id) == [(encodes,)]
    assert site.sql("SELECT count(*) FROM decodes WHERE job_id = ?", job_id) == [(expected,)]

    cells = client.cells(job_id)
    assert len(cells) == expected
    assert {(c["encoder"], c["decoder"]) for c in cells} == {(e, d) for e in TARGETS for d in TARGETS}
    int16 = [c for c in cells if c["codec"] == packages["int16"].digest]
    assert len(int16) == expected // 2
    assert all(c["verdict"] in PASSING for c in int16), [c for c in int16 if c["verdict"] not in PASSING]
    assert all(c["emulated"] == bool(EMULATED & {c["encoder"], c["decoder"]}) for c in cells)
    float_differences = sorted(
        {
            (c["encoder"], c["decoder"], c["verdict"])
            for c in cells
            if c["codec"] == packages["float"].digest and c["verdict"] != "bit-exact"
        }
    )
    print(f"float twin, pairs that are not bit-exact: {float_differences or 'none'}")

    arm = next(c for c in int16 if c["encoder"] == "qemu-aarch64" and c["decoder"] == "cpu")
    detail = client.http.get(f"/api/cells/{arm['id']}").json()
    assert detail["encode"]["fingerprint"]["arch"] == "aarch64"
    assert detail["encode"]["fingerprint"]["emulator"]["cpu"] == "neoverse-n1"


def big_image(side: int = 1536) -> bytes:
    """Large enough that a native encode stays in flight long enough to kill its worker under it."""
    y, x = np.mgrid[0:side, 0:side]
    noise = np.random.default_rng(5).integers(0, 48, size=(side, side, 3))
    pattern = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1) * 3 // 4
    return encode_png((pattern + noise).astype(np.uint8))


def running_on(site: Site, job_id: int, device: str) -> bool:
    query = (
        "SELECT count(*) FROM {table} t JOIN devices d ON t.device_id = d.id "
        "WHERE t.job_id = ? AND t.status = 'running' AND d.name = ?"
    )
    return any(site.sql(query.format(table=table), job_id, device)[0][0] for table in ("encodes", "decodes"))


def test_killing_a_worker_mid_job_loses_no_cell(site, workers, packages):
    client = site.client if site.coordinator and site.coordinator.alive() else site.launch()
    codec = client.upload_codec_archive(packages["int16"].archive)["digest"]
    image = client.upload_image(big_image(), name="e2e-big")["digest"]
    decoders = ["cpu", "cpu-1t-noopt"]
    job_id = client.submit([codec], [image], encoders=["cpu"], decoders=decoders, repeat=2)
    wait_for(
        lambda: running_on(site, job_id, "cpu-a"),
        "a task in flight on cpu-a",
        JOB_S,
        lambda: json.dumps(client.job(job_id)),
    )
    kill_hard(workers["cpu-a"])  # with a request in flight
    summary = client.wait(job_id, timeout=JOB_S)

    assert summary["status"] == "done", summary
    assert summary["progress"]["cells"] == {
        "done": len(decoders),
        "cancelled": 0,
        "not_run": 0,
        "total": len(decoders),
    }
    cells = client.cells(job_id)
    assert sorted(c["decoder"] for c in cells) == decoders
    devices = {d["name"]: d for d in client.workers()}
    assert devices["cpu-a"]["status"] == "offline", devices["cpu-a"]
    # cpu-b is alive, so the lost work moved there: every cell has its verdict, none ended worker-lost
    assert all(c["verdict"] in PASSING for c in cells), cells
    moved = site.sql(
        "SELECT count(*) FROM (SELECT t.attempts, d.name FROM encodes t JOIN devices d ON t.device_id = d.id "
        "WHERE t.job_id = ? UNION ALL SELECT t.attempts, d.name FROM decodes t JOIN devices d "
        "ON t.device_id = d.id WHERE t.job_id = ?) WHERE attempts > 1 AND name = 'cpu-b'",
        job_id,
        job_id,
    )
    assert moved[0][0] >= 1, "the task cpu-a held was not retried on cpu-b"


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, Path]:
    """mbt2018-mean (its float means are what symbol-exact is for) imported from its committed checkpoint."""
    from codec.importers import calibration
    from codec.importers.compressai import build_packages, read_checkpoint

    out = tmp_path_factory.mktemp("imported")
    images, name = calibration.images(None)
    checkpoint = ROOT / "tests" / "data" / "compressai" / "mbt2018-mean-q2.pth"
    build_packages(read_checkpoint(checkpoint, "mbt2018-mean"), out, images, name, ("float", "int16"))
    return {precision: out / precision for precision in ("float", "int16")}


def demo_photos(client: CoordinatorClient) -> list[str]:
    manifest = json.loads((ROOT / "data" / "testset" / "manifest.json").read_text())
    files = [ROOT / "data" / "testset" / entry["file"] for entry in manifest["demo"][:2]]
    return [client.upload_image(path.read_bytes(), name=f"e2e-{path.stem}")["digest"] for path in files]


def test_an_imported_compressai_codec_runs_over_every_target(site, imported):
    """Its int16 package never desyncs on any of the five targets; its float package's cells are printed."""
    client = site.client if site.coordinator and site.coordinator.alive() else site.launch()
    codecs = {p: client.upload_codec(path)["digest"] for p, path in imported.items()}
    job_id = client.submit(list(codecs.values()), demo_photos(client))
    summary = client.wait(job_id, timeout=JOB_S)
    assert summary["status"] == "done", summary
    cells = client.cells(job_id)
    assert len(cells) == 2 * 2 * len(TARGETS) ** 2
    int16 = [c for c in cells if c["codec"] == codecs["int16"]]
    assert all(c["verdict"] in PASSING for c in int16), [c for c in int16 if c["verdict"] not in PASSING]
    floats = sorted(
        {(c["encoder"], c["decoder"], c["verdict"]) for c in cells if c["codec"] == codecs["float"]}
    )
    print(f"imported mbt2018-mean float package, cells: {floats}")
    drift = [c for c in cells if c["verdict"] == "symbol-exact"]
    assert all(c["y_hat_max_abs_diff"] is not None and c["y_hat_max_abs_diff"] > 0 for c in drift), drift
    for cell in cells:  # the scale-table margins explain the float package's decisions on every pair
        risk = cell["risk"]
        if cell["codec"] == codecs["float"]:
            assert risk["basis"] == "measured" and risk["predicted_flips"] == risk["observed_flips"], cell
        else:
            assert risk["basis"] == "certificate" and risk["observed_flips"] == 0, cell


def desyncing_image(package: Path) -> tuple[str, int]:
    """A Kodak-size image whose float bitstream from ort-cpu really desyncs on ort-cpu-1t here, and the flat
    index of its first differing scale index (found without the coordinator, to check its forensics)."""
    from codec.codec import Codec
    from codec.errors import BitstreamError
    from codec.train.evaluate import load_testset

    encoder, decoder = Codec.load(package, "ort-cpu"), Codec.load(package, "ort-cpu-1t")
    for name, image in load_testset(ROOT / "data" / "kodak"):
        encoded = encoder.encode(image)
        try:
            decoded_index = decoder.decode(encoded.bitstream).scale_index
        except BitstreamError:
            decoded_index = decoder.decode_hyper(encoded.bitstream)[1]
        differs = np.flatnonzero(decoded_index.reshape(-1) != encoded.scale_index.reshape(-1))
        if differs.size:
            return name, int(differs[0])
    raise AssertionError("no Kodak-size image desyncs the float twin between ort-cpu and ort-cpu-1t here")


def test_the_kodak_set_on_two_native_targets_breaks_the_float_twin_and_never_int16(site):
    """The shipped q2 packages on every Kodak-size photograph, cpu x cpu-1t-noopt: real float desyncs, each
    located; the flips the drift and margins predict are the flips observed; int16 is certified clean."""
    float_package, int16_package = (ROOT / "packages" / p / "q2" for p in ("float", "int16"))
    name, first_flat = desyncing_image(float_package)
    client = site.client if site.coordinator and site.coordinator.alive() else site.launch()
    codecs = {
        p: client.upload_codec(path)["digest"]
        for p, path in (("float", float_package), ("int16", int16_package))
    }
    photos = sorted((ROOT / "data" / "kodak").glob("*.png"))
    images = {
        path.name: client.upload_image(path.read_bytes(), name=f"e2e-kodak-{path.stem}")["digest"]
        for path in photos
    }
    targets = ["cpu", "cpu-1t-noopt"]
    job_id = client.submit(list(codecs.values()), list(images.values()), encoders=targets, decoders=targets)
    summary = client.wait(job_id, timeout=JOB_S)
    assert summary["status"] == "done", summary
    cells = client.cells(job_id)
    assert len(cells) == 2 * len(photos) * 4
    floats = [c for c in cells if c["codec"] == codecs["float"]]
    int16 = [c for c in cells if c["codec"] == codecs["int16"]]

    assert not [c for c in int16 if c["verdict"] not in PASSING]
    assert all(c["risk"]["basis"] == "certificate" and c["risk"]["failure_probability"] == 0 for c in int16)
    assert all(c["risk"]["observed_flips"] == 0 for c in int16)

    desyncs = [c for c in floats if c["verdict"] == "desync"]
    assert desyncs and all(c["encoder"] != c["decoder"] for c in desyncs), floats
    for cell in desyncs:  # every desync located, at its first differing element
        assert cell["mismatch"] is not None and cell["mismatch"]["channel"] is not None, cell
    known = next(
        c for c in floats if c["image"] == images[name] and (c["encoder"], c["decoder"]) == tuple(targets)
    )
    assert known["verdict"] == "desync" and known["mismatch"]["flat_index"] == first_flat, known
    for cell in floats:  # drift and margins explain every decision the decoder took
        risk = cell["risk"]
        assert risk["basis"] == "measured", cell
        assert risk["predicted_flips"] == risk["observed_flips"], cell
        assert risk["min_margin_ulp"] is not None and risk["min_margin_ulp"] >= 1
        assert (risk["observed_flips"] > 0) == (cell["verdict"] == "desync"), cell
    cross = [c for c in floats if c["encoder"] != c["decoder"]]
    assert all(c["drift"]["h_s"]["max_ulp"] > 0 for c in cross), [c["drift"] for c in cross]
    assert all(c["risk"]["failure_probability"] > 0 for c in cross)
    same = [c for c in floats if c["encoder"] == c["decoder"]]
    assert all(c["drift"]["h_s"]["max_ulp"] == 0 and c["risk"]["failure_probability"] == 0 for c in same)
    for pair in (("cpu", "cpu-1t-noopt"), ("cpu-1t-noopt", "cpu")):
        pair_cells = [c for c in floats if (c["encoder"], c["decoder"]) == pair]
        broke = sum(c["verdict"] == "desync" for c in pair_cells)
        estimate = np.mean([c["risk"]["failure_probability"] for c in pair_cells])
        print(
            f"float q2 {pair[0]} -> {pair[1]}: {broke} of {len(pair_cells)} Kodak images broke, "
            f"max h_s drift {max(c['drift']['h_s']['max_ulp'] for c in pair_cells)} ulp, "
            f"mean estimated failure probability {estimate:.3f}"
        )
    silent = [c for c in desyncs if c["silent_corruption"]]
    print(f"silent corruptions: {len(silent)} of {len(desyncs)} desyncs")
    page = client.http.get(f"/cells/{known['id']}").text
    assert "predicted flips" in page and "margins.png" in page
    histogram = client.http.get(f"/cells/{known['id']}/margins.png")
    assert histogram.status_code == 200 and histogram.headers["content-type"] == "image/png"
    junit = client.http.get(f"/api/jobs/{job_id}/export/junit").text
    assert "failure_probability: " in junit and "risk: certificate" in junit
