"""`bitmatch serve`: the coordinator (REST API, scheduler, health checks) under uvicorn."""

import logging
from pathlib import Path

import click

from server.settings import DEFAULT_MAX_UPLOAD_BYTES, Settings, default_data_dir, shipped_rd_evidence
from worker.contract.tokens import COORDINATOR_TOKEN_ENV, read_token, token_file_option


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", envvar="BITMATCH_PORT", type=click.IntRange(0, 65535), default=8100, show_default=True
)
@click.option(
    "--db",
    "db_url",
    envvar="BITMATCH_DB",
    default=None,
    help="SQLAlchemy database URL (default: a SQLite file in the data directory; "
    "postgresql+psycopg://... works unchanged).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BITMATCH_DATA_DIR",
    default=None,
    help=f"Blobs, packages and the default database [default: {default_data_dir()}].",
)
@click.option(
    "--workers-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='JSON or TOML file: {"workers": [{"name", "url", "token" or "token_env", "target"}, ...]}; '
    "token_env names the environment variable holding the worker's token.",
)
@token_file_option(
    COORDINATOR_TOKEN_ENV, "Bearer token required for every write; without one writes are refused."
)
@click.option(
    "--health-package",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Integer codec package (dir or archive) for the workers' known-answer test [default: the shipped "
    "packages/int16/q2, else a seeded random int16 package]. The test always runs: a worker is healthy, and "
    "gets work, only once it has passed it.",
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
    show_default=True,
)
@click.option(
    "--worker-concurrency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Requests in flight per worker.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds per worker call before the task ends as timeout.",
)
@click.option("--health-interval", type=click.FloatRange(min=1), default=60.0, show_default=True)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="A task's lease: a device silent this long loses its task to another one.",
)
@click.option(
    "--orphan-seconds",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Pending work of a target with no usable device ends worker-lost after this long.",
)
@click.option(
    "--rd-evidence",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The RD evidence the dashboard's /rd page draws: a `bitmatch codec eval --json` report "
    "[default: packages/rd.json].",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def serve_command(
    host: str,
    port: int,
    db_url: str | None,
    data_dir: Path | None,
    workers_config: Path | None,
    token_file: Path | None,
    health_package: Path | None,
    max_upload_mb: float,
    worker_concurrency: int,
    request_timeout: float,
    health_interval: float,
    lease_seconds: float,
    orphan_seconds: float,
    rd_evidence: Path | None,
    log_level: str,
) -> None:
    """Run the coordinator: REST API at /api, OpenAPI at /openapi.json (browsable offline at /docs and
    /redoc), dashboard at /."""
    import uvicorn

    from server.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = read_token(token_file, COORDINATOR_TOKEN_ENV)
    if not token:
        click.echo(
            f"warning: no token ({COORDINATOR_TOKEN_ENV} or --token-file); every write (jobs, uploads, "
            "registration) will be refused",
            err=True,
        )
    if workers_config is not None:
        _check_workers_config(workers_config)
    if health_package is not None:
        _check_health_package(health_package)
    settings = Settings(
        data_dir=data_dir or default_data_dir(),
        db_url=db_url,
        token=token,
        workers_config=workers_config,
        health_package=health_package,
        max_upload_bytes=int(max_upload_mb * 2**20),
        worker_concurrency=worker_concurrency,
        request_timeout=request_timeout,
        health_interval=health_interval,
        lease_seconds=lease_seconds,
        orphan_seconds=orphan_seconds,
        rd_evidence=rd_evidence or shipped_rd_evidence(),
    )
    from sqlalchemy.exc import ArgumentError

    from server.db import DatabaseRefused

    try:
        app = create_app(settings)
    except ArgumentError as exc:  # a URL SQLAlchemy cannot parse, or a dialect it does not have
        raise click.BadParameter(str(exc), param_hint="--db") from None
    except DatabaseRefused as exc:
        raise click.ClickException(str(exc)) from None
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _check_workers_config(path: Path) -> None:
    """Refuse a workers config that cannot be read before the server starts, with the reason."""
    from server.devices import load_workers_config

    try:
        load_workers_config(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--workers-config") from None


def _check_health_package(path: Path) -> None:
    """Refuse a known-answer package that does not load, before the server starts."""
    from codec.errors import CodecError
    from codec.package import CodecPackage

    try:
        CodecPackage.load(path)
    except CodecError as exc:
        raise click.BadParameter(str(exc), param_hint="--health-package") from None
