"""Hostile inputs against a real coordinator and worker: each gets a 4xx, the worker's memory stays under
2 GB and the coordinator's /healthz answers within 200 ms while they arrive; 50 concurrent first
submissions of one image set give no 5xx."""

import concurrent.futures
import io
import json
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from server_harness import WORKER_TOKEN, auth, start_coordinator, start_worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "packages" / "int16" / "q1"
RSS_LIMIT = 2 * 2**30
HEALTHZ_LIMIT_S = 0.2


def png_of(height: int, width: int) -> bytes:
    """A black PNG of any size, written with Pillow directly (the project's own writer refuses these)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def sparse_tar(real_size: int = 2**31) -> bytes:
    """A GNU sparse member claiming `real_size` bytes with 512 stored: about 2 KB on the wire."""
    header = bytearray(512)

    def field(offset: int, length: int, value: bytes) -> None:
        header[offset : offset + len(value)] = value

    field(0, 100, b"manifest.json")
    field(100, 8, b"0000644\0")
    field(108, 8, b"0000000\0")
    field(116, 8, b"0000000\0")
    field(124, 12, b"%011o\0" % 512)
    field(136, 12, b"%011o\0" % 0)
    field(156, 1, b"S")
    field(257, 8, b"ustar  \0")
    field(386, 24, b"%011o\0%011o\0" % (real_size - 512, 512))  # one region at the end
    field(483, 12, b"%011o\0" % real_size)
    field(148, 8, b" " * 8)
    field(148, 8, b"%06o\0 " % sum(header))
    return bytes(header) + b"\0" * 512 + b"\0" * 1024


def deep_manifest_tar(depth: int = 200_000) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"[" * depth + b"]" * depth
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def rss_of_tree(pid: int) -> int:
    """Resident bytes of a process and its children (the worker's front and its compute process)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if int(entry.name) == pid or int(stat[1]) == pid:
            rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
            total += int(rss) * 1024
    return total


class Watch:
    """Polls the coordinator's /healthz and the worker's memory in the background."""

    def __init__(self, coordinator: str, worker_pid: int) -> None:
        self.coordinator, self.worker_pid = coordinator, worker_pid
        self.latencies: list[float] = []
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.coordinator, timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                self.latencies.append(time.perf_counter() - started)
                self.rss.append(rss_of_tree(self.worker_pid))
                time.sleep(0.05)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    worker = start_worker("cpu", workdir / "worker").wait_ready()
    config = workdir / "workers.json"
    config.write_text(
        json.dumps({"workers": [{"name": "cpu", "url": worker.url, "token": WORKER_TOKEN, "target": "cpu"}]})
    )
    coordinator = start_coordinator(
        workdir, "--workers-config", str(config), "--health-package", str(PACKAGE)
    )
    client = httpx.Client(base_url=coordinator.url, headers=auth(), timeout=120)
    deadline = time.monotonic() + 300
    while not any(d["status"] == "healthy" for d in client.get("/api/workers").json()):
        assert time.monotonic() < deadline, client.get("/api/workers").text
        time.sleep(0.5)
    try:
        yield worker, coordinator, client
    finally:
        client.close()
        coordinator.stop()
        worker.stop()


def test_hostile_inputs_get_4xx_while_memory_and_health_hold(site):
    worker, coordinator, client = site
    from codec.package import CodecPackage, archive_bytes

    package = CodecPackage.load(PACKAGE)
    worker_client = httpx.Client(
        base_url=worker.url, headers={"Authorization": f"Bearer {WORKER_TOKEN}"}, timeout=120
    )
    assert worker_client.put(f"/v1/codecs/{package.digest}", content=archive_bytes(package)).status_code < 300
    strip, square = png_of(1, 262_144), png_of(8192, 8192)
    assert len(strip) < 2000 and len(square) < 300_000
    anonymous = httpx.Client(base_url=coordinator.url, timeout=120)
    attempts = {
        "1xN PNG to the coordinator": lambda: client.post("/api/images", content=strip),
        "8192^2 PNG to the coordinator": lambda: client.post("/api/images", content=square),
        "1xN PNG to the worker": lambda: worker_client.post(
            "/v1/encode", params={"codec": package.digest}, content=strip
        ),
        "8192^2 PNG to the worker": lambda: worker_client.post(
            "/v1/encode", params={"codec": package.digest}, content=square
        ),
        "sparse tar to the coordinator": lambda: client.post("/api/codecs", content=sparse_tar()),
        "sparse tar to the worker": lambda: worker_client.put(f"/v1/codecs/{'0' * 64}", content=sparse_tar()),
        "deep manifest": lambda: client.post("/api/codecs", content=deep_manifest_tar()),
        "deep JSON": lambda: client.post(
            "/api/jobs", content=b"[" * 200_000, headers={"Content-Type": "application/json"}
        ),
        "30 MB without a token, jobs": lambda: anonymous.post("/api/jobs", content=b"{" + b" " * 30 * 2**20),
        "30 MB without a token, workers": lambda: anonymous.post("/api/workers", content=b"[" * 30 * 2**20),
    }
    statuses = {}
    with Watch(coordinator.url, worker.process.pid) as watch:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = {name: pool.submit(attempt) for name, attempt in attempts.items()}
            statuses = {name: future.result().status_code for name, future in futures.items()}
        time.sleep(1)
    print(
        {
            "statuses": statuses,
            "healthz_max_ms": round(max(watch.latencies) * 1e3, 1),
            "worker_rss_max_mb": max(watch.rss) // 2**20,
        }
    )
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    assert statuses["30 MB without a token, jobs"] == statuses["30 MB without a token, workers"] == 401
    assert max(watch.rss) < RSS_LIMIT
    assert max(watch.latencies) < HEALTHZ_LIMIT_S, sorted(watch.latencies)[-5:]


def test_fifty_concurrent_first_submissions_give_no_5xx(site):
    _, coordinator, client = site
    from codec.package import CodecPackage, archive_bytes

    package = CodecPackage.load(PACKAGE)
    client.put(f"/api/codecs/{package.digest}", content=archive_bytes(package))
    body = {"codecs": [package.digest], "images": "small", "encoders": ["cpu"], "decoders": ["cpu"]}

    def submit(_: int) -> int:
        with httpx.Client(base_url=coordinator.url, headers=auth(), timeout=120) as own:
            return own.post("/api/jobs", json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(submit, range(50)))
    assert statuses == [202] * 50, sorted(set(statuses))
    for job in client.get("/api/jobs").json():  # the 50 jobs are not the point: stop them
        if job["status"] in ("queued", "running"):
            client.post(f"/api/jobs/{job['id']}/cancel")
