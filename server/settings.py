"""Coordinator settings: one frozen dataclass, filled from the `bitmatch serve` options."""

from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

DEFAULT_MAX_UPLOAD_BYTES = 256 * 2**20


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("bitmatch")) / "coordinator"


def shipped_rd_evidence() -> Path:
    """`packages/rd.json`: what `bitmatch codec eval` measured on the shipped packages."""
    from codec.resources import ResourceMissing, packages_dir

    try:
        return packages_dir() / "rd.json"
    except ResourceMissing:  # an install without them: the RD evidence page says it is not there
        return Path("packages/rd.json")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    db_url: str | None = None  # None: a SQLite file inside data_dir
    token: str | None = None  # bearer token for every write; None disables writes entirely
    workers_config: Path | None = None
    # the known-answer test's codec package; None: the shipped int16 one (server/knownanswer.py). The test
    # always runs: a device is healthy only once it has passed it.
    health_package: Path | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    worker_concurrency: int = 2  # requests in flight per worker
    request_timeout: float = 300.0  # seconds per worker call
    transport_retries: int = 3  # per worker, on connection-level failures only
    retry_backoff: float = 0.5  # seconds, doubled each retry
    health_interval: float = 60.0  # seconds between health checks of every device
    offline_recheck_interval: float = 10.0  # seconds between checks of offline and unchecked devices
    lease_seconds: float = 30.0  # a task's lease; a device silent this long loses it
    max_attempts: int = 3  # claims of one task before it ends worker-lost
    orphan_seconds: float = 60.0  # pending work of a target with no usable device ends worker-lost after this
    pull_wait_seconds: float = 20.0  # longest long poll of a pull worker
    max_json_bytes: int = 2**20  # any JSON request body
    run_scheduler: bool = True
    rd_evidence: Path = field(default_factory=shipped_rd_evidence)  # the dashboard's RD evidence page

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'bitmatch.sqlite3'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def anchor_dir(self) -> Path:
        """JPEG and WebP points per image (server/anchors.py): a cache, safe to delete."""
        return self.data_dir / "anchors"
