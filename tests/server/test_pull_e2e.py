"""A pull-mode worker (`bitmatch worker --coordinator URL`) with no inbound port completes a job, its
known-answer test included; a second pull worker of the same target shares the queue with it."""

import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from server_harness import TOKEN, Process, auth, bitmatch_command, start_coordinator

from codec.images import encode_png
from codec.networks import synthetic_images
from tests.token_files import token_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "int16" / "q1"


def wait_for(predicate, what: str, timeout: float, context=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; {context()}")


def start_pull_worker(workdir: Path, coordinator: str, name: str) -> Process:
    argv = [
        *bitmatch_command("worker"),
        "--target",
        "cpu",
        "--coordinator",
        coordinator,
        "--token-file",
        token_file(TOKEN),
        "--name",
        name,
        "--cache-dir",
        str(workdir / name),
    ]
    return Process(argv, workdir / f"{name}.log", coordinator)


def listening_pids() -> set[int]:
    """Every process with a listening TCP socket (ss -ltnp)."""
    listing = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", listing)}


def test_a_pull_worker_without_an_inbound_port_completes_a_job(tmp_path):
    coordinator = start_coordinator(tmp_path, "--health-package", str(PACKAGE), "--lease-seconds", "10")
    workers = [start_pull_worker(tmp_path, coordinator.url, f"pull-{i}") for i in (1, 2)]
    client = httpx.Client(base_url=coordinator.url, headers=auth(), timeout=120)
    try:

        def devices() -> dict[str, dict]:
            return {d["name"]: d for d in client.get("/api/workers").json()}

        wait_for(
            lambda: all(devices().get(f"pull-{i}", {}).get("status") == "healthy" for i in (1, 2)),
            "both pull workers past their known-answer test",
            300,
            lambda: f"{client.get('/api/workers').text}\n{workers[0].log()}",
        )
        for device in devices().values():
            assert device["mode"] == "pull" and device["health_detail"] == "known-answer test passed"
        assert not {w.process.pid for w in workers} & listening_pids(), "a pull worker listens on a port"

        from codec.package import CodecPackage, archive_bytes

        package = CodecPackage.load(PACKAGE)
        assert client.put(f"/api/codecs/{package.digest}", content=archive_bytes(package)).status_code < 300
        images = [
            client.post("/api/images", content=encode_png(image)).json()["digest"]
            for image in synthetic_images(8, 6, 128)
        ]
        response = client.post(
            "/api/jobs",
            json={"codecs": [package.digest], "images": images, "encoders": ["cpu"], "decoders": ["pull-2"]},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        wait_for(
            lambda: client.get(f"/api/jobs/{job_id}").json()["status"] in ("done", "failed"),
            "the job",
            600,
            lambda: workers[0].log(),
        )
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "done"
        cells = client.get(f"/api/jobs/{job_id}/cells").json()
        assert len(cells) == len(images) and all(c["verdict"] == "bit-exact" for c in cells), cells
        detail = client.get(f"/api/cells/{cells[0]['id']}").json()
        assert detail["decode"]["device"] == "pull-2"  # the decoder was pinned by name
        assert detail["decode"]["fingerprint"]["target"] == "cpu"
    finally:
        client.close()
        for worker in workers:
            worker.stop()
        coordinator.stop()
