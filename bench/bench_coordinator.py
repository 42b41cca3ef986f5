"""The coordinator under load: cells per second and API latency with 10 and 100 stand-in devices.

    .venv/bin/python bench/bench_coordinator.py [--json] [--devices 10,100] [--images 16] [--jobs 2]

What is measured is the coordinator (`bitmatch serve`, a real process on a real SQLite file), not the codec:
its workers are stand-ins that answer from recorded real results.

1. Recording: a real `bitmatch worker --target cpu` encodes `--images` synthetic 96x96 images with the
   shipped int16 q2 package and decodes each bitstream, called exactly as the coordinator calls workers
   (recon and forensic maps returned). Each answer is stored by the SHA-256 of the request body.
2. Stand-ins: one process (uvicorn, a bare ASGI app) serves every device under its own URL prefix,
   `/d/<i>/...`: `/healthz`, `/v1/info` (a fingerprint naming one of five targets, assigned round-robin),
   `PUT /v1/codecs/<digest>`, and `POST /v1/encode` / `/v1/decode`, which answer the recorded JSON for the
   body they get (`--task-ms` adds a fixed delay per task; 0 by default, so the coordinator is the
   bottleneck). The recording holds the known-answer test's three calls too, so every stand-in passes it.
3. For each device count: a fresh coordinator (`--health-package` the same int16 q2 package),
   `--worker-concurrency 2`; the codec and images are uploaded, then `--jobs` jobs over all five targets as
   encoders and decoders are submitted at once (images x 5 x 5 cells each). While they run, `--readers`
   threads loop over GET `/api/jobs`, `/` (the dashboard), `/api/jobs/<id>` and `/api/jobs/<id>/matrix`.

Reported per device count: `cells_per_s` (all jobs' cells over the time from the first submission until the
last job is done), `api_p50_ms` / `api_p99_ms` / `api_requests_per_s` of the GET load,
`coordinator_cpu_ms_per_cell` (user + system CPU of the coordinator process over the run, per cell) and the
stand-ins' own CPU per cell, which shows whether they, not the coordinator, were the limit. The anchor is the
real work a cell stands for: `cell_compute_ms` is the recorded worker compute time of one encode plus one
decode (after one warm-up encode), and `overhead_ratio` = coordinator CPU per cell / `cell_compute_ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "packages" / "int16" / "q2"
TARGETS = ("cpu", "cpu-1t-noopt", "onnx-ref", "qemu-aarch64", "qemu-x86-sse")
TOKEN, WORKER_TOKEN = "bench-coordinator-token", "bench-worker-token"
IMAGE_SIDE = 96
START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bitmatch(*args: str) -> list[str]:
    return [sys.executable, "-c", "from bitmatch.cli import main; main()", *args]


def env() -> dict[str, str]:
    # Tokens travel in the environment, never in argv: the coordinator's and the recording worker's.
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BITMATCH_TOKEN": TOKEN,
        "BITMATCH_WORKER_TOKEN": WORKER_TOKEN,
    }


def wait_for_health(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {START_TIMEOUT_S} s")


def start(argv: list[str], log: Path, url: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT)
    wait_for_health(url, process, log)
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- recording ------------------------------------------------------------------------------------------


def test_images(count: int) -> list[bytes]:
    from codec.images import encode_png
    from codec.networks import synthetic_images

    return [encode_png(image) for image in synthetic_images(5, count, IMAGE_SIDE)]


def record(workdir: Path, images: list[bytes]) -> dict:
    """Real answers of a real cpu worker, keyed by the SHA-256 of the request body."""
    from codec.package import CodecPackage, archive_bytes

    package = CodecPackage.load(PACKAGE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = bitmatch("worker", "--target", "cpu", "--host", "127.0.0.1", "--port", str(port))
    worker = start(argv, workdir / "recording-worker.log", url)
    answers: dict[str, str] = {}
    compute_ms: list[float] = []
    params = {"codec": package.digest, "return_recon": "true", "return_index_map": "true"}
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {WORKER_TOKEN}"}, timeout=300
        ) as client:
            client.put(f"/v1/codecs/{package.digest}", content=archive_bytes(package)).raise_for_status()
            client.post("/v1/encode", params=params, content=images[0]).raise_for_status()  # warm-up
            for png in images:
                encoded = client.post("/v1/encode", params=params, content=png)
                encoded.raise_for_status()
                bitstream = base64.b64decode(encoded.json()["bitstream"])
                decoded = client.post("/v1/decode", params=params, content=bitstream)
                decoded.raise_for_status()
                answers[hashlib.sha256(png).hexdigest()] = encoded.text
                answers[hashlib.sha256(bitstream).hexdigest()] = decoded.text
                compute_ms.append(task_ms(encoded.json()) + task_ms(decoded.json()))
            record_known_answer(client, PACKAGE, params, answers)
    finally:
        stop(worker)
    return {"answers": answers, "cell_compute_ms": statistics.median(compute_ms)}


def record_known_answer(client: httpx.Client, package_path: Path, params: dict, answers: dict) -> None:
    """The known-answer test's calls (server/knownanswer.py): decode the coordinator's reference bitstream,
    encode the image, decode that bitstream."""
    from codec.images import encode_png
    from codec.imagesets import known_answer_image
    from server.knownanswer import reference_answer

    reference, _ = reference_answer(package_path)
    png = encode_png(known_answer_image())
    encoded = client.post("/v1/encode", params=params, content=png)
    encoded.raise_for_status()
    own = base64.b64decode(encoded.json()["bitstream"])
    answers[hashlib.sha256(png).hexdigest()] = encoded.text
    for bitstream in (reference, own):
        decoded = client.post("/v1/decode", params=params, content=bitstream)
        decoded.raise_for_status()
        answers[hashlib.sha256(bitstream).hexdigest()] = decoded.text


def task_ms(answer: dict) -> float:
    return float(answer["timings"]["compute_total"])


# --- stand-in devices -----------------------------------------------------------------------------------


class StandIns:
    """A bare ASGI app: every device lives under /d/<i>/ and answers from the recording."""

    def __init__(self, recording: Path, devices: int, task_ms: float) -> None:
        answers = json.loads(recording.read_text())["answers"]
        self.answers = {digest: text.encode() for digest, text in answers.items()}
        self.infos = [self.info(TARGETS[i % len(TARGETS)]) for i in range(devices)]
        self.delay = task_ms / 1000

    @staticmethod
    def info(target: str) -> bytes:
        fingerprint = {"target": target, "arch": "x86_64", "emulator": None, "stand_in": True}
        return json.dumps(fingerprint).encode()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, answer = await self.answer(scope["path"], bytes(body))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def answer(self, path: str, body: bytes) -> tuple[int, bytes]:
        parts = path.strip("/").split("/", 2)
        if len(parts) < 3 or parts[0] != "d" or not parts[1].isdigit() or int(parts[1]) >= len(self.infos):
            return 404, b'{"error": "not-found"}'
        route = parts[2]
        if route == "healthz":
            return 200, b'{"status": "ok"}'
        if route == "v1/info":
            return 200, self.infos[int(parts[1])]
        if route.startswith("v1/codecs/"):
            return 200, b'{"stored": true}'
        if route in ("v1/encode", "v1/decode"):
            recorded = self.answers.get(hashlib.sha256(body).hexdigest())
            if recorded is None:
                return 422, b'{"error": "not-recorded", "detail": "no recorded answer for this body"}'
            if self.delay:
                await asyncio.sleep(self.delay)
            return 200, recorded
        return 404, b'{"error": "not-found"}'


def serve_stand_ins(recording: Path, devices: int, port: int, task_ms: float) -> None:
    import uvicorn

    app = StandIns(recording, devices, task_ms)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=4096)


# --- one measured run -----------------------------------------------------------------------------------


class Readers:
    """Threads looping over the dashboard's GET requests, each latency recorded."""

    def __init__(self, url: str, job_ids: list[int], threads: int) -> None:
        self.url, self.job_ids = url, job_ids
        self.latencies: list[float] = []
        self.errors = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(threads)]

    def paths(self, i: int) -> list[str]:
        job = self.job_ids[i % len(self.job_ids)]
        return ["/api/jobs", "/", f"/api/jobs/{job}", f"/api/jobs/{job}/matrix"]

    def loop(self, i: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stopping.is_set():
                for path in self.paths(i):
                    started = time.perf_counter()
                    ok = client.get(path).status_code == 200
                    self.latencies.append(time.perf_counter() - started)
                    self.errors += not ok

    def __enter__(self) -> Readers:
        self.started = time.perf_counter()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        self.elapsed = time.perf_counter() - self.started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(
    workdir: Path, recording: Path, images: list[bytes], devices: int, args: argparse.Namespace
) -> dict:
    from codec.package import CodecPackage, archive_bytes

    run_dir = workdir / f"devices-{devices}"
    run_dir.mkdir()
    stand_in_port, port = free_port(), free_port()
    stand_in_url = f"http://127.0.0.1:{stand_in_port}"
    stand_in_argv = [sys.executable, str(Path(__file__).resolve()), "stand-ins", "--recording"]
    stand_in_argv += [str(recording), "--devices", str(devices), "--port", str(stand_in_port)]
    stand_ins = start(
        [*stand_in_argv, "--task-ms", str(args.task_ms)], run_dir / "stand-ins.log", f"{stand_in_url}/d/0"
    )
    config = run_dir / "workers.json"
    entries = [
        {"name": f"standin-{i:03d}", "url": f"{stand_in_url}/d/{i}", "token": WORKER_TOKEN}
        for i in range(devices)
    ]
    config.write_text(json.dumps({"workers": entries}))
    url = f"http://127.0.0.1:{port}"
    argv = bitmatch("serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(run_dir / "data"))
    argv += ["--workers-config", str(config), "--worker-concurrency", "2"]
    argv += ["--health-package", str(PACKAGE)]
    coordinator = start([*argv, "--log-level", "warning"], run_dir / "coordinator.log", url)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
            wait_healthy(client, devices)
            package = CodecPackage.load(PACKAGE)
            client.put(f"/api/codecs/{package.digest}", content=archive_bytes(package)).raise_for_status()
            digests = [client.post("/api/images", content=png).json()["digest"] for png in images]
            spec = {"codecs": [package.digest], "images": digests, "encoders": list(TARGETS)}
            spec["decoders"] = list(TARGETS)
            cpu_before, stand_in_cpu_before = cpu_seconds(coordinator.pid), cpu_seconds(stand_ins.pid)
            started = time.perf_counter()
            job_ids = [client.post("/api/jobs", json=spec).json()["id"] for _ in range(args.jobs)]
            with Readers(url, job_ids, args.readers) as readers:
                finished = wait_done(client, job_ids)
            elapsed = finished - started
            cpu = cpu_seconds(coordinator.pid) - cpu_before
            stand_in_cpu = cpu_seconds(stand_ins.pid) - stand_in_cpu_before
            cells = [client.get(f"/api/jobs/{job_id}/cells").json() for job_id in job_ids]
    finally:
        stop(coordinator)
        stop(stand_ins)
    count = sum(len(c) for c in cells)
    verdicts = sorted({cell["verdict"] for job in cells for cell in job})
    return {
        "devices": devices,
        "cells": count,
        "verdicts": verdicts,
        "seconds": round(elapsed, 2),
        "cells_per_s": round(count / elapsed, 1),
        "api_requests": len(readers.latencies),
        "api_errors": readers.errors,
        "api_requests_per_s": round(len(readers.latencies) / readers.elapsed, 1),
        "api_p50_ms": round(1000 * percentile(readers.latencies, 0.50), 1),
        "api_p99_ms": round(1000 * percentile(readers.latencies, 0.99), 1),
        "coordinator_cpu_ms_per_cell": round(1000 * cpu / count, 2),
        "stand_in_cpu_ms_per_cell": round(1000 * stand_in_cpu / count, 2),
    }


def wait_healthy(client: httpx.Client, devices: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if sum(d["status"] == "healthy" for d in client.get("/api/workers").json()) == devices:
            return
        time.sleep(0.5)
    raise SystemExit(f"not all {devices} stand-in devices became healthy: {client.get('/api/workers').text}")


def wait_done(client: httpx.Client, job_ids: list[int]) -> float:
    pending = set(job_ids)
    while pending:
        for job_id in sorted(pending):
            job = client.get(f"/api/jobs/{job_id}").json()
            if job["status"] in ("done", "failed", "cancelled"):
                if job["status"] != "done":
                    raise SystemExit(f"job {job_id} ended {job['status']}: {job}")
                pending.discard(job_id)
        time.sleep(0.1)
    return time.perf_counter()


# --- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--devices", default="10,100", help="comma-separated stand-in device counts")
    parser.add_argument("--images", type=int, default=16, help="images per job (cells = images x 25)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs submitted at once")
    parser.add_argument("--readers", type=int, default=4, help="threads of GET load")
    parser.add_argument("--task-ms", type=float, default=0.0, help="stand-in delay per encode or decode")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    parser.add_argument(
        "--recording",
        type=Path,
        help="reuse this recording of the real worker's answers (written there first if absent)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-coordinator-"))
    try:
        images = test_images(args.images)
        recording = args.recording or workdir / "recording.json"
        recorded = json.loads(recording.read_text()) if recording.exists() else {}
        if recorded.get("images") != args.images:
            recorded = {**record(workdir, images), "images": args.images}
            recording.write_text(json.dumps(recorded))
        runs = [measure(workdir, recording, images, int(n), args) for n in args.devices.split(",")]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    compute = recorded["cell_compute_ms"]
    for run in runs:
        run["overhead_ratio"] = round(run["coordinator_cpu_ms_per_cell"] / compute, 3)
    result = {"cell_compute_ms": round(compute, 1), "jobs": args.jobs, "images": args.images, "runs": runs}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"one cell's real compute (encode + decode on a cpu worker, recorded): {compute:.1f} ms")
    header = (
        "devices  cells  cells/s  API p50 ms  API p99 ms  API req/s  coord CPU ms/cell  stand-in CPU ms/cell"
    )
    print(header)
    for run in runs:
        print(
            f"{run['devices']:>7}  {run['cells']:>5}  {run['cells_per_s']:>7}  {run['api_p50_ms']:>10}  "
            f"{run['api_p99_ms']:>10}  {run['api_requests_per_s']:>9}  "
            f"{run['coordinator_cpu_ms_per_cell']:>17}  {run['stand_in_cpu_ms_per_cell']:>20}"
        )


def stand_ins_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recording", type=Path, required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--task-ms", type=float, default=0.0)
    args = parser.parse_args(sys.argv[2:])
    serve_stand_ins(args.recording, args.devices, args.port, args.task_ms)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stand-ins"]:
        stand_ins_main()
    else:
        main()
