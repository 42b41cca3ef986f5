"""Real worker processes for the worker tests: `bitmatch worker ...` on loopback, stopped at teardown."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.token_files import token_file

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"
START_TIMEOUT_S = 900.0  # emulated targets import numpy and onnxruntime at 100-250x slowdown
REQUEST_TIMEOUT_S = 900.0


def bitmatch_command() -> list[str]:
    """The `bitmatch` console script of this interpreter's environment, or its entry point run directly."""
    script = Path(sys.executable).with_name("bitmatch")
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from bitmatch.cli import main; sys.argv[0] = 'bitmatch'; main()",
    ]


def worker_command() -> list[str]:
    """`bitmatch worker`; until bitmatch/cli.py registers it, the worker command's entry point itself.

    test_docker.py asserts the registration, so the fallback cannot hide a missing command.
    """
    from bitmatch.cli import cli

    if "worker" in cli.commands:
        return [*bitmatch_command(), "worker"]
    return [
        sys.executable,
        "-c",
        "import sys; from worker.cli import worker_command; "
        "sys.argv[0] = 'bitmatch worker'; worker_command()",
    ]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_bitmatch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*bitmatch_command(), *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_bitmatch_worker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*worker_command(), *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """One `bitmatch worker` subprocess listening on 127.0.0.1, with its log in a file."""

    def __init__(self, target: str, workdir: Path, *extra: str, token: str = TOKEN) -> None:
        self.target, self.token, self.port = target, token, free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"worker-{target}-{self.port}.log"
        argv = [
            *worker_command(),
            "--target",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--token-file",
            token_file(token),
            "--cache-dir",
            str(workdir / "cache"),
            *extra,
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=subprocess_env(), stdout=self._log, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(
            base_url=self.url, timeout=REQUEST_TIMEOUT_S, headers={"Authorization": f"Bearer {token}"}
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> "WorkerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"worker {self.target} exited with {code}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.target} did not come up within {timeout} s:\n{self.log()}")

    def alive(self) -> bool:
        return self.process.poll() is None and httpx.get(f"{self.url}/healthz", timeout=30).json() == {
            "status": "ok"
        }

    def upload(self, archive: bytes, digest: str) -> httpx.Response:
        return self.client.put(f"/v1/codecs/{digest}", content=archive)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_workers(specs: list[tuple[str, Path, tuple[str, ...]]]) -> list[WorkerProcess]:
    """Start several workers at once (their slow start-ups overlap), then wait for each."""
    workers = [WorkerProcess(target, workdir, *extra) for target, workdir, extra in specs]
    try:
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def build_package(
    out_dir: Path, precision: str, seed: int = 7, channels: str = "8,8", lowering: str = "float64"
) -> tuple[str, bytes]:
    """A seeded random package made by `bitmatch codec build-random`; returns (digest, archive bytes)."""
    from codec.package import CodecPackage, archive_bytes

    result = run_bitmatch(
        "codec",
        "build-random",
        "--precision",
        precision,
        "--channels",
        channels,
        "--seed",
        str(seed),
        "--lowering",
        lowering,
        "--out",
        str(out_dir),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    digest = json.loads(result.stdout)["digest"]
    package = CodecPackage.load(out_dir)
    assert package.digest == digest
    return digest, archive_bytes(package)


def tiny_png(height: int = 32, width: int = 48, seed: int = 3) -> bytes:
    """A small deterministic RGB test picture: smooth gradients plus a little noise."""
    import numpy as np

    from codec.images import encode_png

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            xx * 255 / max(width - 1, 1),
            yy * 255 / max(height - 1, 1),
            (xx + yy) * 127 / max(height + width - 2, 1),
        ],
        axis=-1,
    )
    image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return encode_png(image)


@pytest.fixture(scope="session")
def harness() -> SimpleNamespace:
    """This module's helpers, for test modules (which cannot import a conftest reliably)."""
    return SimpleNamespace(
        ROOT=ROOT,
        TOKEN=TOKEN,
        WorkerProcess=WorkerProcess,
        start_workers=start_workers,
        subprocess_env=subprocess_env,
        run_bitmatch=run_bitmatch,
        run_bitmatch_worker=run_bitmatch_worker,
        tiny_png=tiny_png,
        bitmatch_command=bitmatch_command,
        worker_command=worker_command,
    )


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes]]:
    """The int16 package and its float twin (same seed, same weights): {precision: (digest, archive)}."""
    root = tmp_path_factory.mktemp("packages")
    return {precision: build_package(root / precision, precision) for precision in ("int16", "float")}


@pytest.fixture(scope="session")
def lowered_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes]]:
    """The int16 package of `packages` with its h_s in each digit lowering: {lowering: (digest, archive)}."""
    root = tmp_path_factory.mktemp("lowered")
    return {name: build_package(root / name, "int16", lowering=name) for name in DIGIT_LOWERINGS}


@pytest.fixture(scope="session")
def png() -> bytes:
    return tiny_png()


SHIPPED_RATE_POINT = "q2"
DIGIT_LOWERINGS = ("int8-digits", "uint8-digits")


@pytest.fixture(scope="session")
def shipped() -> dict[str, tuple[str, bytes]]:
    """The repository's trained packages of one rate point: {precision: (digest, archive)}."""
    from codec.package import CodecPackage, archive_bytes

    loaded = {
        precision: CodecPackage.load(ROOT / "packages" / precision / SHIPPED_RATE_POINT)
        for precision in ("int16", "int8", "float")
    }
    return {precision: (package.digest, archive_bytes(package)) for precision, package in loaded.items()}


@pytest.fixture(scope="session")
def full_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes]]:
    """int16-full packages (integer g_s too): the random one of `packages`' seed and the shipped one of
    SHIPPED_RATE_POINT: {"random" | "shipped": (digest, archive)}."""
    from codec.package import CodecPackage, archive_bytes

    root = tmp_path_factory.mktemp("full")
    package = CodecPackage.load(ROOT / "packages" / "int16-full" / SHIPPED_RATE_POINT)
    return {
        "random": build_package(root / "random", "int16-full"),
        "shipped": (package.digest, archive_bytes(package)),
    }


@pytest.fixture(scope="session")
def photo_png() -> bytes:
    """A 96x64 photograph of the bundled test set (what the demo codes)."""
    return (ROOT / "data" / "testset" / "demo" / "garden.png").read_bytes()
