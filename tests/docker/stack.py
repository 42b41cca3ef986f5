"""`make docker-test`: the compose stack end to end on a private dockerd. It builds the bases and the
coordinator, worker-cpu and worker-arm64 images offline (a wheelhouse the host downloads per platform), brings
compose.yaml up, submits the int16 package over REST, checks that x86-64 and aarch64 agree entropy-exactly
and that each worker's fingerprint names its architecture, and tears it all down, also on failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.docker.engine import (
    STATE,
    DockerStackError,
    docker,
    engine_env,
    ensure_base,
    ensure_binfmt,
    ensure_tools,
    private_dockerd,
    run,
)

ROOT = Path(__file__).resolve().parents[2]
CONTEXT_PATHS = ("pyproject.toml", "README.md", "codec", "worker", "server", "bitmatch", "docker")
PROJECT = "bitmatch-test"
COORDINATOR_PORT = os.environ.get("BITMATCH_COMPOSE_PORT", "8765")
TOKEN, WORKER_TOKEN = "bitmatch-stack-test-token", "bitmatch-stack-test-worker-token"
ENTROPY_EXACT = {"bit-exact", "latent-exact"}
VERSION = "0.1.0"


@dataclass(frozen=True)
class Image:
    service: str
    dockerfile: str
    machine: str  # the wheelhouse's platform

    @property
    def arch(self) -> str:
        return {"x86_64": "amd64", "aarch64": "arm64"}[self.machine]

    @property
    def tag(self) -> str:
        return f"bitmatch/{self.service}:{VERSION}"


IMAGES = (
    Image("coordinator", "docker/coordinator.Dockerfile", "x86_64"),
    Image("worker-cpu", "docker/worker-cpu.Dockerfile", "x86_64"),
    Image("worker-arm64", "docker/worker-arm64.Dockerfile", "aarch64"),
)


def log(message: str) -> None:
    print(f"[docker-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- build contexts and images -------------------------------------------------------------------


def download_wheels(machine: str) -> Path:
    """The pinned wheels (docker/constraints.txt) for CPython 3.11 on manylinux machine, kept for re-runs."""
    wheels = STATE / f"wheels-{machine}"
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(17, 37)] + [f"manylinux2014_{machine}"]
    argv = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels)]
    argv += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    argv += [arg for platform in platforms for arg in ("--platform", platform)]
    argv += ["-r", str(ROOT / "docker" / "constraints.txt"), "setuptools>=77"]
    run(argv)
    return wheels


def stage_context(machine: str) -> Path:
    """The build context: the project's files git knows (tracked or not ignored) and the wheelhouse."""
    context = STATE / f"context-{machine}"
    shutil.rmtree(context, ignore_errors=True)
    listed = run(["git", "ls-files", "-co", "--exclude-standard", *CONTEXT_PATHS], cwd=ROOT).stdout.split()
    for relative in listed:
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / relative).is_file():
            shutil.copy2(ROOT / relative, target)
    for wheel in download_wheels(machine).glob("*.whl"):
        os.link(wheel, context / "docker" / "wheels" / wheel.name)
    return context


def build(image: Image, context: Path) -> float:
    start = time.monotonic()
    docker(
        "build", "--network", "none", "--platform", f"linux/{image.arch}",
        "--build-arg", f"BASE={ensure_base(image.arch)}",
        "--build-arg", "PIP_INSTALL_OPTIONS=--no-index --find-links /wheels",
        "-f", str(context / image.dockerfile), "-t", image.tag, str(context),
    )  # fmt: skip
    return time.monotonic() - start


def build_images() -> dict[str, float]:
    contexts = {machine: stage_context(machine) for machine in {image.machine for image in IMAGES}}
    seconds = {}
    for image in IMAGES:
        seconds[image.service] = build(image, contexts[image.machine])
        log(f"built {image.tag} in {seconds[image.service]:.0f} s")
    return seconds


# --- the compose stack ----------------------------------------------------------------------------


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **engine_env(),
        "BITMATCH_TOKEN": TOKEN,
        "BITMATCH_WORKER_TOKEN": WORKER_TOKEN,
        "BITMATCH_COMPOSE_PORT": COORDINATOR_PORT,
    }
    files = ["-f", str(ROOT / "compose.yaml"), "-f", str(ROOT / "docker" / "compose.emulated-arm64.yaml")]
    argv = ["docker-compose", "-p", PROJECT, *files, *args]
    return run(argv, check=check, env=env)


@contextmanager
def stack_up() -> Iterator[str]:
    """compose up (the images built above, never rebuilt); always compose down -v afterwards."""
    try:
        compose("up", "-d", "--no-build")
        yield f"http://127.0.0.1:{COORDINATOR_PORT}"
    finally:
        logs = compose("logs", "--no-color", "--tail", "200", check=False).stdout
        (STATE / "compose.log").write_text(logs)
        compose("down", "-v", "--remove-orphans", check=False)


def run_job(url: str, timeout: float) -> tuple[list[dict], list[dict], float]:
    """Wait for both workers, submit int16 q2 on the tiny set, return (workers, cells, job seconds)."""
    from server.client import CoordinatorClient

    with CoordinatorClient(url, token=TOKEN, timeout=300) as client:
        workers = wait_for_healthy_workers(client, count=2, timeout=timeout)
        digest = client.upload_codec(ROOT / "packages" / "int16" / "q2")["digest"]
        start = time.monotonic()
        job = client.submit([digest], "tiny")
        summary = client.wait(job, poll=5, timeout=timeout)
        log(f"job {job} ended {summary['status']} in {time.monotonic() - start:.0f} s")
        return workers, client.cells(job), time.monotonic() - start


def wait_for_healthy_workers(client, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            workers = client.workers()
        except Exception:  # the coordinator is still starting
            workers = []
        if sum(worker["status"] == "healthy" for worker in workers) >= count:
            return workers
        if time.monotonic() > deadline:
            states = {worker["name"]: (worker["status"], worker["health_detail"]) for worker in workers}
            raise DockerStackError(f"workers not healthy after {timeout:.0f} s: {states}")
        time.sleep(5)


def check_results(workers: list[dict], cells: list[dict]) -> None:
    arches = {worker["name"]: (worker["fingerprint"] or {}).get("arch") for worker in workers}
    if arches.get("worker-cpu") != "x86_64" or arches.get("worker-arm64") != "aarch64":
        raise DockerStackError(f"fingerprints name the wrong machines: {arches}")
    crossed = [cell for cell in cells if cell["encoder"] != cell["decoder"]]
    if not crossed:
        raise DockerStackError(f"no cell crosses x86-64 and aarch64: {[c['encoder'] for c in cells]}")
    bad = [(c["encoder"], c["decoder"], c["image_name"], c["verdict"]) for c in cells]
    bad = [row for row in bad if row[3] not in ENTROPY_EXACT]
    if bad:
        raise DockerStackError(f"int16 cells that are not entropy-exact: {bad}")


def main(timeout: float = 3600) -> dict[str, float]:
    """The whole test; returns its timings (seconds). Raises DockerStackError on any failure."""
    start = time.monotonic()
    ensure_tools()
    ensure_binfmt()
    with private_dockerd():
        seconds = build_images()
        with stack_up() as url:
            workers, cells, job_seconds = run_job(url, timeout)
            check_results(workers, cells)
        log(f"{len(cells)} cells entropy-exact: {sorted({c['verdict'] for c in cells})}")
        sizes = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
        log(f"images:\n{sizes}")
        docker("image", "prune", "-f", check=False)  # superseded builds; vfs keeps every layer in full
    seconds.update(job=job_seconds, total=time.monotonic() - start)
    log(f"timings (s): {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}")
    return seconds


if __name__ == "__main__":
    try:
        main()
    except DockerStackError as error:
        sys.exit(f"docker-test failed: {error}")
