"""One demo run: the local targets, the packages, the fleet started on a fresh coordinator directory, the
workers enlisted, the jobs planned, submitted at once and followed in order, and the dashboard left up
until Ctrl-C unless `--once`."""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitmatch.console import Console, LaunchError
from bitmatch.demo.report import demo_result, job_record, show_job, write_job_report
from bitmatch.enlist import HEALTH_CHECK_S, enlist_workers
from bitmatch.fleet import Fleet, local_fleet, running, wait_for_coordinator
from bitmatch.follow import cancel_and_wait, follow
from bitmatch.inputs import random_packages, trained_packages, upload_codecs, upload_images
from bitmatch.local_targets import local_targets
from bitmatch.paths import kodak_dir, trained_packages_dir
from codec.vocabulary import JobStatus, Precision
from server.client import CoordinatorClient, CoordinatorError


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


@dataclass
class PlannedJob:
    label: str
    images: str | list[str]
    targets: list[str]


def run_demo(config: DemoConfig, console: Console) -> dict[str, Any]:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    console.say("targets:")
    targets = local_targets(console, config.provision, config.targets)
    if not targets:
        raise LaunchError("no target can run here")
    console.say("codec packages:")
    packages = trained_packages()
    if packages is None:
        where = trained_packages_dir() or "this install"
        console.say(f"  no trained packages in {where}; using seeded random ones")
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
            raise LaunchError("no worker passed its health check")
        console.say("inputs:")
        codecs = upload_codecs(client, packages, console)
        planned = plan_jobs(client, config.images, healthy, console)
        deadline = time.monotonic() + config.timeout
        result = demo_result(run_jobs(config, fleet, client, codecs, planned, deadline, console))
        if not config.once:
            console.say(f"dashboard: {fleet.coordinator.url}/  (Ctrl-C stops everything)")
            serve_until_interrupted(fleet, console)
        return result


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
            raise LaunchError(f"{exc}; stop it, or pass --data-dir for a demo of your own") from None
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


def plan_jobs(
    client: CoordinatorClient, images: str, healthy: dict[str, bool], console: Console
) -> list[PlannedJob]:
    """The default: Kodak-size photographs on the native targets, then the small demo images on every target
    when some are emulated. An explicit --images: that set on every target."""
    native = [target for target, emulated in healthy.items() if not emulated]
    kodak_photos = kodak_dir()
    if images != "auto" or not native or kodak_photos is None or not any(kodak_photos.glob("*.png")):
        return [PlannedJob(f"{len(healthy)} targets", upload_images(client, images, console), list(healthy))]
    kodak = upload_images(client, str(kodak_photos), console)
    jobs = [PlannedJob("Kodak-size photographs on the native targets", kodak, native)]
    if len(native) < len(healthy):
        small = upload_images(client, "auto", console)
        jobs.append(PlannedJob("the small demo images on every target", small, list(healthy)))
    return jobs


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


def submit_job(client: CoordinatorClient, codecs: list[str], job: PlannedJob, repeat: int) -> int:
    try:
        # the targets registered just now: a device an earlier run left in the database is never used
        return client.submit(codecs, job.images, encoders=job.targets, decoders=job.targets, repeat=repeat)
    except CoordinatorError as exc:
        raise LaunchError(f"the coordinator refused the job: {exc}") from None


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
        raise LaunchError(f"job {job_id} ended {summary['status']}: {summary.get('detail')}")
    matrices = client.matrix(job_id)
    line, counts = show_job(console, job_id, job.label, matrices, client.cells(job_id))
    report = write_job_report(config.data_dir, job_id)
    console.say(f"report: {report}")
    console.say()
    return job_record(job_id, job.label, job.targets, report, line, counts)


def serve_until_interrupted(fleet: Fleet, console: Console) -> None:
    try:
        while fleet.coordinator.alive():
            time.sleep(0.5)
        console.say(f"the coordinator exited (log {fleet.coordinator.log_path})")
    except KeyboardInterrupt:
        console.say("\nstopping ...")
