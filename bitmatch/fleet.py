"""The local fleet: a coordinator and one worker per target as child processes on 127.0.0.1, each in its own
process group, started together and stopped together on the way out (errors, Ctrl-C and SIGTERM included),
and the ports they listen on."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bitmatch.console import LaunchError
from bitmatch.paths import INSTALL_ROOT
from worker.contract.tokens import COORDINATOR_TOKEN_ENV, WORKER_TOKEN_ENV

COORDINATOR_START_S = 120.0
STOP_GRACE_S = 20.0


# --- ports ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_near(port: int, tries: int = 100) -> int:
    """The first free port above `port` (so the suggestion is easy to remember), else any free one."""
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        if port_is_free(candidate):
            return candidate
    return free_port()


def port_taken_message(port: int) -> str:
    return (
        f"port {port} on 127.0.0.1 is in use; try --port {free_port_near(port)} (free now), "
        "or --port 0 for any free port"
    )


# --- processes ------------------------------------------------------------------------------------------


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(INSTALL_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Service:
    """A child process serving HTTP on 127.0.0.1, in its own process group (its compute children too)."""

    name: str
    argv: list[str]
    url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)  # secrets travel here, never in argv (visible in ps)
    process: subprocess.Popen | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=INSTALL_ROOT,
                env={**child_environment(), **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the demo, which stops children in order
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the whole group, then SIGKILL after a grace period."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader (a compute process): make sure nothing is left behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Fleet:
    coordinator: Service
    workers: dict[str, Service] = field(default_factory=dict)

    def all(self) -> list[Service]:
        """The coordinator first: stopped before its workers, it never sees them vanish mid-job."""
        return [self.coordinator, *self.workers.values()]


@contextlib.contextmanager
def running(fleet: Fleet) -> Iterator[Fleet]:
    """Start every service; stop all of them on the way out, whatever happened: the coordinator first, then
    the workers side by side (each may take a few seconds to stop its compute process)."""
    try:
        for service in fleet.all():
            service.start()
        yield fleet
    finally:
        coordinator, *workers = fleet.all()
        coordinator.stop()
        with ThreadPoolExecutor(max_workers=max(1, len(workers)), thread_name_prefix="stop") as threads:
            list(threads.map(lambda service: service.stop(), workers))


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the cleanup runs; SIGINT is handled even when the shell that
    started the demo in the background set it to be ignored."""

    def handler(_signum, _frame) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


# --- the fleet ------------------------------------------------------------------------------------------


def local_fleet(
    coordinator_dir: Path,
    logs: Path,
    port: int,
    targets: list[str],
    token: str,
    worker_token: str,
    health_package: Path,
) -> Fleet:
    """A coordinator on 127.0.0.1:`port` over `coordinator_dir` and one worker per target (the embedded
    default the demo and `bitmatch matrix` run on); each logs to `logs`."""
    fleet = Fleet(coordinator_service(coordinator_dir, logs, port, token, health_package))
    for target in targets:
        fleet.workers[target] = worker_service(target, logs, free_port(), worker_token)
    return fleet


def coordinator_service(
    coordinator_dir: Path, logs: Path, port: int, token: str, health_package: Path
) -> Service:
    """`bitmatch serve` on 127.0.0.1:`port` over `coordinator_dir`."""
    return Service(
        "coordinator",
        [
            *python_command("from bitmatch.cli import main; main()"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(coordinator_dir),
            "--health-package",
            str(health_package),
            "--log-level",
            "warning",
        ],
        f"http://127.0.0.1:{port}",
        logs / "coordinator.log",
        env={COORDINATOR_TOKEN_ENV: token},
    )


def worker_service(target: str, logs: Path, port: int, worker_token: str) -> Service:
    """`bitmatch worker --target TARGET` on 127.0.0.1:`port`."""
    return Service(
        f"worker {target}",
        [
            *python_command("from worker.cli import worker_command; worker_command()"),
            "--target",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        f"http://127.0.0.1:{port}",
        logs / f"worker-{target}.log",
        env={WORKER_TOKEN_ENV: worker_token},
    )


def wait_for_coordinator(fleet: Fleet) -> None:
    service = fleet.coordinator
    up = wait_until(lambda: service.ready() or not service.alive(), COORDINATOR_START_S)
    if up and service.alive():
        return
    if "address already in use" in service.log_tail().lower():  # taken after the demo looked
        raise LaunchError(port_taken_message(int(service.url.rsplit(":", 1)[1])))
    raise LaunchError(f"the coordinator did not start (log {service.log_path}):\n{service.log_tail()}")
