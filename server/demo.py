"""`bitmatch demo`: the whole harness on this machine in one command.

Starts the coordinator and one worker per local target that can run here (provisioning what it can, saying
why the others are missing), uploads the int16 and float packages (the trained ones in packages/ when they
exist, else seeded random ones, cached) and the demo images, and runs the jobs (every encoder x every
decoder). By default that is two jobs: the Kodak-size photographs (data/kodak) on the native targets, where
the float twin's cross-device decodes break and int16's do not, and the small demo images (data/testset's
96x64 subset, else the synthetic 'tiny' set) on every target, emulated ones included (they are 100-250x
slower). It prints the verdict matrix per codec and one line on
what broke, writes a static HTML report per job and leaves the dashboard running until Ctrl-C. With `--once`
it exits when the jobs are done; `--json` prints one JSON object on stdout and everything else on stderr:
`{"job", "report", "summary", "codecs": {NAME: {VERDICT: COUNT}}, "jobs": [...]}`, the first three of the
first job, `codecs` summed over the jobs, and per job its `id`, `label`, `targets`, `report`, `summary` and
`codecs`.

Every process it starts runs in its own process group and is stopped on exit, including on errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx
import platformdirs

from codec.imagesets import set_names
from codec.vocabulary import DeviceStatus, JobStatus, Precision, Verdict
from server.client import CoordinatorClient, CoordinatorError
from server.knownanswer import KNOWN_ANSWER_UNAVAILABLE
from server.progress import job_progress
from server.verdicts import broken_line
from worker.contract.tokens import COORDINATOR_TOKEN_ENV, WORKER_TOKEN_ENV

if TYPE_CHECKING:
    from worker.targets import Target

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINED_PACKAGES = PROJECT_ROOT / "packages"
DEMO_IMAGES_MANIFEST = PROJECT_ROOT / "data" / "testset" / "manifest.json"
KODAK_DIR = PROJECT_ROOT / "data" / "kodak"
PRECISIONS = (Precision.INT16, Precision.FLOAT)
DEMO_RATE_POINT = "q2"
RANDOM_SEED = 7
COORDINATOR_START_S = 120.0
WORKER_START_S = 900.0  # emulated targets start Python, numpy and onnxruntime under qemu
HEALTH_CHECK_S = 600.0
STOP_GRACE_S = 20.0
CANCEL_WAIT_S = 15.0
VERDICT_ORDER = tuple(Verdict)
PENDING = "pending"  # a matrix position no cell has reached yet
VERDICT_MARKS = {
    Verdict.BIT_EXACT: "=",
    Verdict.LATENT_EXACT: "~",
    Verdict.SYMBOL_EXACT: "s",
    Verdict.DESYNC: "X",
    Verdict.ERROR: "E",
    Verdict.TIMEOUT: "T",
    Verdict.WORKER_LOST: "L",
    Verdict.NOT_RUN: "-",
    PENDING: "?",
}


class DemoError(click.ClickException):
    """Something the demo needs failed; the message says what, and everything started is stopped."""


def default_data_dir() -> Path:
    override = os.environ.get("BITMATCH_CACHE")
    return (Path(override) if override else Path(platformdirs.user_cache_dir("bitmatch"))) / "demo"


def package_cache_dir() -> Path:
    return default_data_dir() / "packages"


# --- output ---------------------------------------------------------------------------------------------


@dataclass
class Console:
    """Tables and messages go to stderr in --json mode (stdout holds only the JSON), else to stdout; a job's
    progress always goes to stderr (server/progress.py)."""

    json_mode: bool

    def say(self, text: str = "") -> None:
        click.echo(text, err=self.json_mode)


# --- processes ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
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
                cwd=PROJECT_ROOT,
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


# --- targets --------------------------------------------------------------------------------------------


def local_targets(
    console: Console, provision: bool, only: list[str] | None, catalog: list[Target] | None = None
) -> list[str]:
    """Targets of `catalog` (every registered one) that can run here after provisioning what can be
    provisioned, each provisioned in a thread of its own, side by side; prints why others cannot."""
    from worker.targets import all_targets

    catalog = all_targets() if catalog is None else catalog
    unknown = sorted(set(only or ()) - {t.name for t in catalog})
    if unknown:
        raise DemoError(f"unknown target(s) {unknown}; see `bitmatch targets list`")
    wanted = []
    for target in catalog:
        if only is not None and target.name not in only:
            continue
        if only is None and target.opt_in:
            console.say(f"  {target.name}: not started unless named (--targets {target.name})")
            continue
        wanted.append(target)
    with ThreadPoolExecutor(max_workers=max(1, len(wanted)), thread_name_prefix="provision") as threads:
        reasons = list(threads.map(lambda target: readiness(target, provision, console), wanted))
    for target, reason in zip(wanted, reasons, strict=True):
        console.say(
            f"  {target.name}: available" if reason is None else f"  {target.name}: missing: {reason}"
        )
    return [target.name for target, reason in zip(wanted, reasons, strict=True) if reason is None]


def readiness(target: Target, provision: bool, console: Console) -> str | None:
    """None when the target can run here (after provisioning it, when it can be), else why not."""
    from worker.provision import ProvisionError

    reason = target.check()
    if reason is not None and provision and target.provision_blocker() is None:
        console.say(f"  {target.name}: provisioning (cached after the first time) ...")
        try:
            target.setup()
            reason = target.check()
        except (ProvisionError, OSError, subprocess.SubprocessError) as exc:
            reason = f"provisioning failed: {exc}"
    return reason


# --- inputs ---------------------------------------------------------------------------------------------


def trained_packages() -> dict[str, Path] | None:
    """One rate point of the trained packages (packages/PRECISION/qN): q2 when every precision has it (the
    float twin's q2 is the one whose cross-device failures the demo shows), else the first common one."""
    found: dict[str, set[str]] = {
        precision: {p.parent.name for p in (TRAINED_PACKAGES / precision).glob("q*/manifest.json")}
        for precision in PRECISIONS
    }
    common = sorted(set.intersection(*found.values()))
    if not common:
        return None
    point = DEMO_RATE_POINT if DEMO_RATE_POINT in common else common[0]
    return {precision: TRAINED_PACKAGES / precision / point for precision in PRECISIONS}


def random_packages(channels: tuple[int, int], console: Console) -> dict[str, Path]:
    """Seeded random packages (`bitmatch codec build-random`), built once and cached."""
    from codec.build import build_random
    from codec.package import CodecPackage

    n, m = channels
    paths = {}
    for precision in PRECISIONS:
        path = package_cache_dir() / f"random-{precision}-n{n}-m{m}-seed{RANDOM_SEED}"
        try:
            CodecPackage.load(path)
        except Exception:  # absent or damaged: build it again
            console.say(f"  building the seeded random {precision} package ...")
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            build_random(scratch, precision, n, m, RANDOM_SEED)
            if path.exists():
                shutil.rmtree(path)
            scratch.rename(path)
        paths[precision] = path
    return paths


def demo_images() -> list[tuple[str, bytes]] | None:
    """The photo demo subset (data/testset, manifest "demo"), or None when it is not there."""
    try:
        manifest = json.loads(DEMO_IMAGES_MANIFEST.read_text())
    except (OSError, ValueError):
        return None
    entries = manifest.get("demo") or []
    images = []
    for entry in entries:
        path = DEMO_IMAGES_MANIFEST.parent / entry["file"]
        if not path.is_file():
            return None
        images.append((Path(entry["file"]).stem, path.read_bytes()))
    return images or None


# --- the run --------------------------------------------------------------------------------------------


@dataclass
class DemoConfig:
    data_dir: Path
    port: int
    once: bool
    json_mode: bool
    provision: bool
    targets: list[str] | None
    images: str
    channels: tuple[int, int]
    timeout: float
    repeat: int = 1
    codecs: tuple[Path, ...] = ()


def fresh_coordinator_dir(config: DemoConfig) -> Path:
    """The demo's coordinator directory, emptied: each run starts from a new database, so a database left
    by an older version or an interrupted run never stops it. Refused while another demo is using it."""
    from server.db import Database, DatabaseRefused
    from server.settings import Settings

    directory = config.data_dir / "coordinator"
    if directory.exists():
        database = Database(Settings(data_dir=directory).database_url)
        try:
            database.claim_writer()
        except DatabaseRefused as exc:
            raise DemoError(f"{exc}; stop it, or pass --data-dir for a demo of your own") from None
        finally:
            database.dispose()
        shutil.rmtree(directory)
    return directory


def plan_fleet(
    config: DemoConfig, targets: list[str], token: str, worker_token: str, health_package: Path
) -> Fleet:
    return local_fleet(
        fresh_coordinator_dir(config),
        config.data_dir / "logs",
        config.port,
        targets,
        token,
        worker_token,
        health_package,
    )


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
    coordinator_url = f"http://127.0.0.1:{port}"
    coordinator = Service(
        "coordinator",
        [
            *python_command("from server.cli import main; main()"),
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
        coordinator_url,
        logs / "coordinator.log",
        env={COORDINATOR_TOKEN_ENV: token},
    )
    fleet = Fleet(coordinator)
    for target in targets:
        worker_port = free_port()
        fleet.workers[target] = Service(
            f"worker {target}",
            [
                *python_command("from worker.cli import worker_command; worker_command()"),
                "--target",
                target,
                "--host",
                "127.0.0.1",
                "--port",
                str(worker_port),
                "--log-level",
                "warning",
            ],
            f"http://127.0.0.1:{worker_port}",
            logs / f"worker-{target}.log",
            env={WORKER_TOKEN_ENV: worker_token},
        )
    return fleet


def wait_for_coordinator(fleet: Fleet) -> None:
    service = fleet.coordinator
    up = wait_until(lambda: service.ready() or not service.alive(), COORDINATOR_START_S)
    if up and service.alive():
        return
    if "address already in use" in service.log_tail().lower():  # taken after the demo looked
        raise DemoError(port_taken_message(int(service.url.rsplit(":", 1)[1])))
    raise DemoError(f"the coordinator did not start (log {service.log_path}):\n{service.log_tail()}")


def enlist_workers(
    fleet: Fleet, client: CoordinatorClient, worker_token: str, console: Console
) -> dict[str, bool]:
    """Wait for every worker and register it, all at once: each worker has a thread that waits for it to
    answer and then registers it, and the coordinator runs their health checks (known-answer tests) side by
    side. Returns the healthy targets in the fleet's order, each mapped to whether it is emulated."""
    deadline = time.monotonic() + WORKER_START_S
    with ThreadPoolExecutor(max_workers=max(1, len(fleet.workers)), thread_name_prefix="enlist") as threads:
        futures = {
            target: threads.submit(enlist, service, target, client, worker_token, deadline, console)
            for target, service in fleet.workers.items()
        }
        devices = {target: future.result() for target, future in futures.items()}
    healthy = {
        target: bool(device.get("emulated"))
        for target, device in devices.items()
        if device is not None and device["status"] == DeviceStatus.HEALTHY
    }
    if len(healthy) < len(fleet.workers):
        console.say(
            f"  {len(healthy)} of {len(fleet.workers)} workers passed the known-answer test; "
            "only those are healthy and give verdicts"
        )
    return healthy


def enlist(
    service: Service,
    target: str,
    client: CoordinatorClient,
    worker_token: str,
    deadline: float,
    console: Console,
) -> dict[str, Any] | None:
    """Wait for one worker to answer, then register it; its device as the coordinator reports it, or None
    when the worker exited or did not come up in time."""
    up = wait_until(lambda: service.ready() or not service.alive(), max(0.0, deadline - time.monotonic()))
    if not service.alive():
        console.say(f"  {target}: worker exited (log {service.log_path}):\n{service.log_tail(6)}")
        return None
    if not up:
        console.say(f"  {target}: worker not up within {WORKER_START_S:.0f} s (log {service.log_path})")
        return None
    device = register(client, service, target, worker_token)
    console.say(f"  {target}: {device['status']} ({device.get('health_detail') or ''})")
    return device


def register(client: CoordinatorClient, service: Service, target: str, token: str) -> dict[str, Any]:
    """Register a worker; the coordinator health-checks it (known-answer test) before answering."""
    device = client.register_worker(service.url, token=token, name=f"demo-{target}", target=target)
    deadline = time.monotonic() + HEALTH_CHECK_S
    # the coordinator loads its known answer in the background at start-up; until then devices stay unchecked
    while waiting_for_known_answer(device) and time.monotonic() < deadline:
        time.sleep(1.0)
        response = client.http.post(f"/api/workers/{device['id']}/check")
        response.raise_for_status()
        device = response.json()
    return device


def waiting_for_known_answer(device: dict[str, Any]) -> bool:
    """Unchecked, and not because the known-answer test cannot run at all (then waiting is pointless)."""
    detail = device.get("health_detail") or ""
    return device["status"] == DeviceStatus.UNCHECKED and KNOWN_ANSWER_UNAVAILABLE not in detail


@dataclass
class PlannedJob:
    label: str
    images: str | list[str]
    targets: list[str]


def upload_codecs(client: CoordinatorClient, packages: dict[str, Path], console: Console) -> list[str]:
    codecs = []
    for path in packages.values():
        row = client.upload_codec(path)
        codecs.append(row["digest"])
        console.say(f"  codec {row['name']} ({row['precision']}, {path})")
    return codecs


def plan_jobs(
    client: CoordinatorClient, images: str, healthy: dict[str, bool], console: Console
) -> list[PlannedJob]:
    """The default: Kodak-size photographs on the native targets, then the small demo images on every target
    when some are emulated. An explicit --images: that set on every target."""
    native = [target for target, emulated in healthy.items() if not emulated]
    if images != "auto" or not native or not any(KODAK_DIR.glob("*.png")):
        return [PlannedJob(f"{len(healthy)} targets", upload_images(client, images, console), list(healthy))]
    kodak = upload_images(client, str(KODAK_DIR), console)
    jobs = [PlannedJob("Kodak-size photographs on the native targets", kodak, native)]
    if len(native) < len(healthy):
        small = upload_images(client, "auto", console)
        jobs.append(PlannedJob("the small demo images on every target", small, list(healthy)))
    return jobs


def upload_images(client: CoordinatorClient, images: str, console: Console) -> str | list[str]:
    if Path(images).is_dir():
        photos = [(path.stem, path.read_bytes()) for path in sorted(Path(images).glob("*.png"))]
        digests = [client.upload_image(png, name=name)["digest"] for name, png in photos]
        console.say(f"  images: {len(digests)} PNGs of {images}")
        return digests
    photos = demo_images() if images == "auto" else None
    if photos is None:
        image_set = "tiny" if images == "auto" else images
        console.say(f"  images: bundled synthetic set {image_set!r}")
        return image_set
    digests = [client.upload_image(png, name=name)["digest"] for name, png in photos]
    console.say(f"  images: {len(digests)} photos, the demo subset of {DEMO_IMAGES_MANIFEST.parent}")
    return digests


def follow(client: CoordinatorClient, job_id: int, timeout: float) -> dict[str, Any]:
    """Wait for the job, showing its progress; on Ctrl-C or timeout cancel it (so that a later coordinator on
    this data directory does not resume it) and show what was done and what was cancelled."""
    shown = job_progress(job_id)
    try:
        return client.wait(job_id, on_progress=shown.update, poll=0.5, timeout=timeout)
    except (KeyboardInterrupt, TimeoutError):
        with contextlib.suppress(CoordinatorError, httpx.HTTPError, TimeoutError):
            client.cancel(job_id)
            client.wait(job_id, on_progress=shown.update, poll=0.5, timeout=CANCEL_WAIT_S)
        raise
    finally:
        shown.close()


def verdict_counts(matrices: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for matrix in matrices:
        total: Counter[str] = Counter()
        for row in matrix["rows"]:
            for position in row:
                total.update(position["counts"])
        counts[matrix["codec_name"]] = dict(sorted(total.items(), key=lambda kv: verdict_rank(kv[0])))
    return counts


def verdict_rank(verdict: str) -> int:
    return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)


def matrix_text(matrix: dict[str, Any]) -> str:
    """Encoder rows x decoder columns; each position lists its per-image verdicts as one mark each."""
    decoders = matrix["decoders"]
    row_width = max(len("encoder \\ decoder"), *(len(e) for e in matrix["encoders"]))
    marks = [
        [
            "".join(
                VERDICT_MARKS.get(c["verdict"], "?") + ("!" if c["nondeterministic"] else "")
                for c in position["cells"]
            )
            or VERDICT_MARKS[PENDING]
            for position in row
        ]
        for row in matrix["rows"]
    ]
    widths = [max(len(d), *(len(r[i]) for r in marks)) for i, d in enumerate(decoders)]
    lines = [
        f"{matrix['codec_name']}:",
        "  "
        + "encoder \\ decoder".ljust(row_width)
        + "  "
        + "  ".join(d.ljust(w) for d, w in zip(decoders, widths, strict=True)),
    ]
    for encoder, row in zip(matrix["encoders"], marks, strict=True):
        lines.append(
            "  "
            + encoder.ljust(row_width)
            + "  "
            + "  ".join(m.ljust(w) for m, w in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def legend() -> str:
    shown = ", ".join(f"{mark} {verdict}" for verdict, mark in VERDICT_MARKS.items() if verdict != PENDING)
    return f"  one mark per image: {shown}; ! nondeterministic"


def run_demo(config: DemoConfig, console: Console) -> dict[str, Any]:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    console.say("targets:")
    targets = local_targets(console, config.provision, config.targets)
    if not targets:
        raise DemoError("no target can run here")
    console.say("codec packages:")
    packages = trained_packages()
    if packages is None:
        console.say(f"  no trained packages in {TRAINED_PACKAGES}; using seeded random ones")
        packages = random_packages(config.channels, console)
    health_package = packages[Precision.INT16]  # the known-answer test needs a package exact everywhere
    if config.codecs:
        packages = {str(path): path for path in config.codecs}
    token, worker_token = secrets.token_hex(16), secrets.token_hex(16)
    fleet = plan_fleet(config, targets, token, worker_token, health_package)
    console.say(f"starting the coordinator and {len(targets)} worker(s); logs in {config.data_dir / 'logs'}")
    with running(fleet), CoordinatorClient(fleet.coordinator.url, token, timeout=HEALTH_CHECK_S) as client:
        wait_for_coordinator(fleet)
        console.say("workers (health check: known-answer encode and decode):")
        healthy = enlist_workers(fleet, client, worker_token, console)
        if not healthy:
            raise DemoError("no worker passed its health check")
        console.say("inputs:")
        codecs = upload_codecs(client, packages, console)
        planned = plan_jobs(client, config.images, healthy, console)
        deadline = time.monotonic() + config.timeout
        runs = run_jobs(config, fleet, client, codecs, planned, deadline, console)
        result = {
            "job": runs[0]["id"],
            "report": runs[0]["report"],
            "summary": runs[0]["summary"],
            "codecs": summed_counts(run["codecs"] for run in runs),
            "jobs": runs,
        }
        if not config.once:
            console.say(f"dashboard: {fleet.coordinator.url}/  (Ctrl-C stops everything)")
            serve_until_interrupted(fleet, console)
        return result


def run_jobs(
    config: DemoConfig,
    fleet: Fleet,
    client: CoordinatorClient,
    codecs: list[str],
    planned: list[PlannedJob],
    deadline: float,
    console: Console,
) -> list[dict[str, Any]]:
    """Submit every job at once, so that no device waits for another job to end (the coordinator's queue
    gives each device the work of the job whose slowest target has the most left, server/taskqueue.py),
    then follow them in order, printing each one's matrices, line and report. A failure, Ctrl-C or the
    timeout cancels the jobs not yet finished."""
    submitted = [(job, submit_job(client, codecs, job, config.repeat)) for job in planned]
    for job, job_id in submitted:
        console.say(
            f"job {job_id}: {job.label}, {len(job.targets)} encoders x {len(job.targets)} decoders "
            f"({fleet.coordinator.url}/jobs/{job_id})"
        )
    runs: list[dict[str, Any]] = []
    try:
        for job, job_id in submitted:
            runs.append(finish_job(config, client, job, job_id, deadline, console))
    except BaseException:
        cancel_and_wait(client, [job_id for _job, job_id in submitted[len(runs) :]])
        raise
    return runs


def cancel_and_wait(client: CoordinatorClient, job_ids: list[int]) -> None:
    """Cancel the jobs and wait a little for each to end, so that a later coordinator on this data directory
    does not resume them; a job that already ended stays as it was."""
    for job_id in job_ids:
        with contextlib.suppress(CoordinatorError, httpx.HTTPError):
            client.cancel(job_id)  # 409 when it already ended
    for job_id in job_ids:
        with contextlib.suppress(CoordinatorError, httpx.HTTPError, TimeoutError):
            client.wait(job_id, poll=0.5, timeout=CANCEL_WAIT_S)


def submit_job(client: CoordinatorClient, codecs: list[str], job: PlannedJob, repeat: int) -> int:
    try:
        # the targets registered just now: a device an earlier run left in the database is never used
        return client.submit(codecs, job.images, encoders=job.targets, decoders=job.targets, repeat=repeat)
    except CoordinatorError as exc:
        raise DemoError(f"the coordinator refused the job: {exc}") from None


def finish_job(
    config: DemoConfig,
    client: CoordinatorClient,
    job: PlannedJob,
    job_id: int,
    deadline: float,
    console: Console,
) -> dict[str, Any]:
    """Follow one submitted job to its end, print its matrices and its one line, write its report."""
    summary = follow(client, job_id, max(1.0, deadline - time.monotonic()))
    if summary["status"] != JobStatus.DONE:
        raise DemoError(f"job {job_id} ended {summary['status']}: {summary.get('detail')}")
    matrices = client.matrix(job_id)
    console.say()
    console.say(f"job {job_id}: {job.label}")
    for matrix in matrices:
        console.say(matrix_text(matrix))
    console.say(legend())
    line = broken_line(client.cells(job_id))
    counts = verdict_counts(matrices)
    for name, by_verdict in counts.items():
        console.say(f"{name}: " + ", ".join(f"{v} {n}" for v, n in by_verdict.items()))
    console.say(line)
    report = write_job_report(config, job_id)  # self-contained: it outlives the dashboard
    console.say(f"report: {report}")
    console.say()
    return {
        "id": job_id,
        "label": job.label,
        "targets": job.targets,
        "report": str(report),
        "summary": line,
        "codecs": counts,
    }


def summed_counts(per_job: Iterator[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter[str]] = {}
    for counts in per_job:
        for name, by_verdict in counts.items():
            total.setdefault(name, Counter()).update(by_verdict)
    return {
        name: dict(sorted(counter.items(), key=lambda kv: verdict_rank(kv[0])))
        for name, counter in total.items()
    }


def write_job_report(config: DemoConfig, job_id: int) -> Path:
    from server.report import write_report
    from server.settings import Settings

    db_url = Settings(data_dir=config.data_dir / "coordinator").database_url
    out = config.data_dir / "reports" / f"job-{job_id}.html"
    return write_report(db_url, job_id, out).resolve()


def serve_until_interrupted(fleet: Fleet, console: Console) -> None:
    try:
        while fleet.coordinator.alive():
            time.sleep(0.5)
        console.say(f"the coordinator exited (log {fleet.coordinator.log_path})")
    except KeyboardInterrupt:
        console.say("\nstopping ...")


def parse_channels(_ctx, _param, value: str) -> tuple[int, int]:
    try:
        n, m = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("expected N,M (two integers)") from None
    if n < 1 or m < 1:
        raise click.BadParameter("channel counts must be positive")
    return n, m


def parse_images(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value == "auto" or value in set_names():
        return value
    if Path(value).is_dir() and any(Path(value).glob("*.png")):
        return value
    raise click.BadParameter(
        f"{value!r} is neither a bundled set ({', '.join(set_names())}) nor a directory of PNG images"
    )


@click.command(name="demo")
@click.option("--once", is_flag=True, help="Exit when the job is done instead of leaving the dashboard up.")
@click.option(
    "--json",
    "json_mode",
    is_flag=True,
    help='Print one JSON object {"job", "report", "summary", "codecs", "jobs"} on stdout; progress goes '
    "to stderr.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Coordinator data, logs and reports [default: {default_data_dir()}].",
)
@click.option(
    "--port",
    envvar="BITMATCH_PORT",
    type=click.IntRange(0, 65535),
    default=8100,
    show_default=True,
    help="Coordinator and dashboard port on 127.0.0.1 (0: any free port) [env BITMATCH_PORT]; a taken one "
    "is refused with a free one suggested.",
)
@click.option(
    "--targets",
    default=None,
    metavar="T1,T2",
    help="Only these targets [default: every target that can run here].",
)
@click.option("--no-provision", is_flag=True, help="Do not provision missing targets, only report them.")
@click.option(
    "--images",
    default="auto",
    show_default=True,
    callback=parse_images,
    metavar="SET|DIR",
    help=f"A bundled image set ({', '.join(set_names())}) or a directory of PNGs, run on every target; "
    "'auto': data/kodak on the native targets, then the 96x64 demo photographs on every target.",
)
@click.option(
    "--codec",
    "codecs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Run these packages (repeatable; e.g. an imported codec's int16 and float) instead of the "
    "shipped int16 and float ones.",
)
@click.option(
    "--random-channels",
    default="16,16",
    show_default=True,
    callback=parse_channels,
    metavar="N,M",
    help="Channels of the seeded random packages (used without trained packages).",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Runs per device and input, compared for nondeterminism.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    help="Seconds the jobs may take.",
)
def demo_command(
    once: bool,
    json_mode: bool,
    data_dir: Path | None,
    port: int,
    targets: str | None,
    no_provision: bool,
    images: str,
    codecs: tuple[Path, ...],
    random_channels: tuple[int, int],
    repeat: int,
    timeout: float,
) -> None:
    """Run the int16 and float packages on every local target and show the verdict matrix."""
    console = Console(json_mode)
    config = DemoConfig(
        data_dir=(data_dir or default_data_dir()).resolve(),
        port=port or free_port(),
        once=once,
        json_mode=json_mode,
        provision=not no_provision,
        targets=[t.strip() for t in targets.split(",") if t.strip()] if targets else None,
        images=images,
        channels=random_channels,
        timeout=timeout,
        repeat=repeat,
        codecs=codecs,
    )
    if port and not port_is_free(port):
        raise DemoError(port_taken_message(port))
    try:
        with terminate_as_interrupt():
            result = run_demo(config, console)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: everything the demo started is stopped", err=True)
        raise SystemExit(130) from None
    except (CoordinatorError, httpx.HTTPError) as exc:
        raise DemoError(f"talking to the coordinator failed: {exc}") from None
    except TimeoutError as exc:
        raise DemoError(str(exc)) from None
    if json_mode:
        click.echo(json.dumps(result))


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
