"""`bitmatch matrix --config FILE.toml`: a declared matrix on the embedded default (a local coordinator and
one local worker per target), with progress, the same outputs as `bitmatch aggregate`, and a CI exit code
(server/outcome.py: 0 pass, 1 a verdict failure, 2 an infrastructure failure).

    [matrix]
    name = "local"                       # the series: every run adds to its history
    targets = ["cpu", "qemu-aarch64"]    # the default of every image group
    repeat = 1
    timeout = 1800                       # seconds, all jobs together

    [thresholds]
    fail_on = "any"                      # or "integer-desync"
    max_failure_probability = 0.5        # optional: a passing cell estimated above it fails

    [[codecs]]
    path = "packages/int16/q2"
    [[codecs]]
    path = "packages/float/q2"
    expect = ["desync"]                  # verdicts known and reported, which do not fail the run

    [[images]]
    set = "tiny"                         # a bundled set, or dir = "data/kodak"
    targets = ["cpu", "cpu-1t-noopt"]    # optional, this group's own

    [[compatibility]]                    # optional: an older release's bitstreams, decoded by a newer one
    encoder = "old/pkg"
    decoder = "new/pkg"

Paths are relative to the config file. Each image group (and each compatibility pair) is one job of the
series `<name>/<group>`; its outputs go to `<out>/<group>/`, and the coordinator's data directory (the
history) is `--history`, kept from run to run.
"""

from __future__ import annotations

import secrets
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bitmatch.console import Console
from bitmatch.enlist import enlist_workers
from bitmatch.fleet import free_port, local_fleet, running, wait_for_coordinator
from bitmatch.follow import follow
from bitmatch.inputs import trained_packages, upload_images
from bitmatch.local_targets import local_targets
from codec.errors import CodecError
from codec.package import CodecPackage
from codec.vocabulary import JobStatus, Precision, Verdict
from server import history, queries
from server.client import CoordinatorClient
from server.db import Database
from server.models import Job
from server.outcome import INFRASTRUCTURE_FAILURE, Judgement, Policy, judge, write_outputs

EXPECTABLE = (*(v.value for v in Verdict if not v.passes), "nondeterministic", "at-risk")


class MatrixError(Exception):
    """A config that cannot run: the message says where and why."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    targets: list[str] = Field(min_length=1)
    repeat: int = Field(default=1, ge=1, le=10)
    timeout: float = Field(default=1800.0, gt=0)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_on: Literal["any", "integer-desync"] = "any"
    max_failure_probability: float | None = Field(default=None, ge=0, le=1)


class CodecEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    expect: list[Literal[EXPECTABLE]] = Field(default_factory=list)  # type: ignore[valid-type]


class ImageGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: str | None = None
    dir: Path | None = None
    targets: list[str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ImageGroup:
        if (self.set is None) == (self.dir is None):
            raise ValueError("an image group names either a bundled set or a dir")
        return self

    @property
    def name(self) -> str:
        return self.set or Path(self.dir).name


class Compatibility(BaseModel):
    model_config = ConfigDict(extra="forbid")
    encoder: Path
    decoder: Path
    images: str = "tiny"


class MatrixConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matrix: Settings
    thresholds: Thresholds = Field(default_factory=Thresholds)
    codecs: list[CodecEntry] = Field(min_length=1)
    images: list[ImageGroup] = Field(min_length=1)
    compatibility: list[Compatibility] = Field(default_factory=list)


def load_config(path: Path) -> MatrixConfig:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MatrixError(f"{path}: {exc}") from None
    try:
        config = MatrixConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise MatrixError(f"{path}: {where}: {first['msg']}") from None
    base = path.parent
    for entry in config.codecs:
        entry.path = (base / entry.path).resolve()
    for group in config.images:
        if group.dir is not None:
            group.dir = (base / group.dir).resolve()
    for pair in config.compatibility:
        pair.encoder, pair.decoder = (base / pair.encoder).resolve(), (base / pair.decoder).resolve()
    return config


def _package(path: Path) -> CodecPackage:
    try:
        return CodecPackage.load(path)
    except CodecError as exc:
        raise MatrixError(f"codec {path}: {exc}") from None


def _policy(config: MatrixConfig, packages: list[CodecPackage], missing: list[str]) -> Policy:
    expected = {pkg.digest: set(entry.expect) for pkg, entry in zip(packages, config.codecs, strict=True)}
    return Policy(
        fail_on=config.thresholds.fail_on,
        expected=expected,
        max_failure_probability=config.thresholds.max_failure_probability,
        missing_targets=missing,
    )


def _health_package(packages: list[CodecPackage]) -> Path:
    """The known-answer test needs a package exact everywhere: the config's first integer one, else ours."""
    for package in packages:
        if Precision(package.precision).is_integer:
            return package.path
    shipped = trained_packages()
    if shipped is None:
        raise MatrixError("the known-answer test needs an integer package: list one under [[codecs]]")
    return shipped[Precision.INT16]


def run_matrix(config: MatrixConfig, out: Path, history_dir: Path, console: Console) -> int:
    """Run every job of the config; returns the exit code."""
    packages = [_package(entry.path) for entry in config.codecs]
    pairs = [(_package(p.encoder), _package(p.decoder), p.images) for p in config.compatibility]
    wanted = list(
        dict.fromkeys([*config.matrix.targets, *(t for g in config.images for t in g.targets or [])])
    )
    console.say("targets:")
    available = local_targets(console, provision=True, only=wanted)
    token, worker_token = secrets.token_hex(16), secrets.token_hex(16)
    fleet = local_fleet(
        history_dir, out / "logs", free_port(), available, token, worker_token, _health_package(packages)
    )
    label = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    deadline = time.monotonic() + config.matrix.timeout
    started = time.monotonic()
    runs: list[tuple[str, int]] = []
    with running(fleet), CoordinatorClient(fleet.coordinator.url, token, timeout=600) as client:
        wait_for_coordinator(fleet)
        console.say("workers (health check: known-answer encode and decode):")
        healthy = list(enlist_workers(fleet, client, worker_token, console))
        missing = [t for t in wanted if t not in healthy]
        codecs = [client.upload_codec(pkg.path)["digest"] for pkg in packages]
        for group in config.images:
            targets = [t for t in (group.targets or config.matrix.targets) if t in healthy]
            if not targets:
                continue
            images = upload_images(client, group.set or str(group.dir), console)
            job_id = client.submit(
                codecs,
                images,
                targets,
                targets,
                config.matrix.repeat,
                series=f"{config.matrix.name}/{group.name}",
                label=label,
            )
            runs.append((group.name, job_id))
        for old, new, images in pairs:
            digests = [client.upload_codec(pkg.path)["digest"] for pkg in (old, new)]
            targets = [t for t in config.matrix.targets if t in healthy]
            job_id = client.submit(
                [digests[0]],
                images,
                targets,
                targets,
                config.matrix.repeat,
                series=f"{config.matrix.name}/compat-{old.digest[:8]}-{new.digest[:8]}",
                label=label,
                decode_with={digests[0]: digests[1]},
            )
            runs.append((f"compat-{old.digest[:8]}-{new.digest[:8]}", job_id))
        for name, job_id in runs:
            console.say(f"job {job_id}: {name} ({fleet.coordinator.url}/jobs/{job_id})")
            summary = follow(client, job_id, max(1.0, deadline - time.monotonic()))
            if summary["status"] != JobStatus.DONE:
                missing.append(f"job {job_id} ended {summary['status']}")
    return _report(config, runs, packages, missing, out, history_dir, console, time.monotonic() - started)


def _report(config, runs, packages, missing, out, history_dir, console, elapsed) -> int:  # type: ignore[no-untyped-def]
    """Outputs, regressions first, then the verdict on the whole run."""
    from server.settings import Settings as ServerSettings

    db = Database(ServerSettings(data_dir=history_dir).database_url)
    cells: list[dict[str, Any]] = []
    try:
        for name, job_id in runs:
            outputs = write_outputs(db, job_id, out / name)
            with db.session() as session:
                job = session.get(Job, job_id)
                trends = history.job_trends(session, job)
                job_cells = queries.cell_rows(session, job_id)
            cells += job_cells
            console.say(f"{name}: {len(job_cells)} cells; report {outputs['html']}")
            for line in history.regression_lines(trends):
                console.say(f"  {line}")
    finally:
        db.dispose()
    judgement: Judgement = judge(cells, _policy(config, packages, missing))
    for line in judgement.lines():
        console.say(line)
    console.say(f"matrix {config.matrix.name}: {elapsed:.0f} s")
    return judgement.exit_code if runs else INFRASTRUCTURE_FAILURE
