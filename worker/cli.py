"""`bitmatch worker`: serve one device target over HTTP (worker/app.py)."""

import json
import logging
import os
import platform
import shlex
import shutil
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import click
import platformdirs

from worker.contract.tokens import COORDINATOR_TOKEN_ENV, WORKER_TOKEN_ENV, read_token, token_file_option
from worker.fingerprint import EMULATOR_ENV
from worker.supervisor import ComputeLaunch

if TYPE_CHECKING:
    from worker.targets import Target

DEFAULT_PORT = 8200
ENV_PREFIX = "BITMATCH_WORKER_"


def default_cache_dir() -> Path:
    """`worker/` under the per-user cache directory the targets share (env BITMATCH_CACHE overrides it)."""
    override = os.environ.get("BITMATCH_CACHE")
    return (Path(override) if override else Path(platformdirs.user_cache_dir("bitmatch"))) / "worker"


def compute_launch(spec: str) -> ComputeLaunch:
    """The command and environment that start the compute process of target `spec` (worker/targets/)."""
    from worker.targets import get_target

    try:
        target = get_target(spec)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--target") from None
    reason = target.check()
    if reason is not None:
        raise click.ClickException(f"target {spec} cannot run here: {reason}")
    return target_launch(target, spec)


def target_launch(target: "Target", spec: str, runtime: str | None = None) -> ComputeLaunch:
    """The compute process of a target that can run here, with its own runtime or `runtime` instead."""
    from worker.targets import launch_environment

    args = ["-m", "worker.compute", "--target", spec, "--runtime", runtime or target.runtime]
    if target.uses_gpu:
        args.append("--gpu")
    env = launch_environment(target)
    emulator = target.emulator()
    if emulator:
        env[EMULATOR_ENV] = json.dumps(emulator, sort_keys=True)
    else:
        env.pop(EMULATOR_ENV, None)  # a native target must not inherit a stale emulator description
    return ComputeLaunch(argv=target.compute_command(args), env=env)


def with_memory_limit(launch: ComputeLaunch, megabytes: float) -> ComputeLaunch:
    limit = int(megabytes * 2**20) if megabytes > 0 else None
    return ComputeLaunch(launch.argv, launch.env, launch.cwd, limit)


def _pull(
    coordinator: str,
    token: str,
    name: str,
    target: str,
    launch: ComputeLaunch,
    cache_dir: Path,
    timeout: float,
    startup_timeout: float,
) -> None:
    import asyncio

    from worker.execute import CodecStore
    from worker.pull import CoordinatorGone, PullWorker
    from worker.supervisor import ComputeSupervisor

    supervisor = ComputeSupervisor(launch, timeout, 1, startup_timeout)
    worker = PullWorker(coordinator, token, name, target, supervisor, CodecStore(cache_dir / "codecs"))
    try:
        asyncio.run(worker.run())
    except CoordinatorGone as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


def _own_command_launch(command: str) -> ComputeLaunch:
    argv = shlex.split(command)
    if not argv or shutil.which(argv[0]) is None:
        raise click.BadParameter(
            f"{argv[0] if argv else command!r} is not an executable file or a command on PATH",
            param_hint="--compute-command",
        )
    env = dict(os.environ)
    root = str(Path(str(files("worker"))).resolve().parent)  # where codec/, worker/, server/ are installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return ComputeLaunch(argv=argv, env=env)


@click.command(name="worker")
@click.option(
    "--target",
    envvar=ENV_PREFIX + "TARGET",
    default="cpu",
    show_default=True,
    help="Device target whose compute process runs the codec (see `bitmatch targets list`).",
)
@click.option(
    "--host", envvar=ENV_PREFIX + "HOST", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    envvar=ENV_PREFIX + "PORT",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on.",
)
@token_file_option(
    WORKER_TOKEN_ENV,
    "Bearer token every /v1 request must carry (pull mode: the coordinator's token, env "
    f"{COORDINATOR_TOKEN_ENV}).",
)
@click.option(
    "--cache-dir",
    envvar=ENV_PREFIX + "CACHE_DIR",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where uploaded codec packages are kept "
    "[default: worker/ under $BITMATCH_CACHE or the user cache dir].",
)
@click.option(
    "--max-body-mb",
    envvar=ENV_PREFIX + "MAX_BODY_MB",
    default=256.0,
    type=click.FloatRange(min=0, min_open=True),
    show_default=True,
    help="Largest request body accepted (413 beyond).",
)
@click.option(
    "--queue",
    envvar=ENV_PREFIX + "QUEUE",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests that may wait or run at once (503 beyond).",
)
@click.option(
    "--timeout",
    envvar=ENV_PREFIX + "TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds one encode/decode may take; past it the compute process is restarted (504).",
)
@click.option(
    "--startup-timeout",
    envvar=ENV_PREFIX + "STARTUP_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=900.0,
    show_default=True,
    help="Seconds the compute process may take to start (emulated targets are slow).",
)
@click.option(
    "--compute-command",
    envvar=ENV_PREFIX + "COMPUTE_COMMAND",
    default=None,
    help="Start the compute process with this command line instead of the target's own "
    "(e.g. inside a container or a debugger); it must speak worker/protocol.py.",
)
@click.option(
    "--memory-limit-mb",
    envvar=ENV_PREFIX + "MEMORY_LIMIT_MB",
    default=6144.0,
    type=click.FloatRange(min=0),
    show_default=True,
    help="Address-space limit of the compute process (RLIMIT_AS); past it a request fails with "
    "resource-limit and the process restarts. 0: no limit.",
)
@click.option(
    "--coordinator",
    envvar=ENV_PREFIX + "COORDINATOR",
    default=None,
    metavar="URL",
    help="Pull mode: call out to this coordinator for work instead of listening for it (no inbound "
    f"port; the token is then the coordinator's: env {COORDINATOR_TOKEN_ENV} or --token-file).",
)
@click.option(
    "--name",
    envvar=ENV_PREFIX + "NAME",
    default=None,
    help="Device name a pull worker registers with [default: HOSTNAME-TARGET].",
)
@click.option(
    "--log-level",
    envvar=ENV_PREFIX + "LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def worker_command(
    target: str,
    host: str,
    port: int,
    token_file: Path | None,
    cache_dir: Path | None,
    max_body_mb: float,
    queue: int,
    timeout: float,
    startup_timeout: float,
    compute_command: str | None,
    memory_limit_mb: float,
    coordinator: str | None,
    name: str | None,
    log_level: str,
) -> None:
    """Serve one device target: encode and decode over HTTP (or, with --coordinator, by pulling work)."""
    import uvicorn

    from worker.app import WorkerSettings, create_app

    envvar = COORDINATOR_TOKEN_ENV if coordinator is not None else WORKER_TOKEN_ENV
    token = read_token(token_file, envvar)
    if token is None:
        raise click.UsageError(f"no token: set {envvar} or pass --token-file FILE")
    if coordinator is not None and not coordinator.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{coordinator!r} is not an http:// or https:// URL", param_hint="--coordinator"
        )
    launch = _own_command_launch(compute_command) if compute_command else compute_launch(target)
    launch = with_memory_limit(launch, memory_limit_mb)
    if coordinator is not None:
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
        _pull(
            coordinator,
            token,
            name or f"{platform.node()}-{target}",
            target,
            launch,
            (cache_dir or default_cache_dir()).resolve(),
            timeout,
            startup_timeout,
        )
        return
    settings = WorkerSettings(
        target=target,
        token=token,
        cache_dir=(cache_dir or default_cache_dir()).resolve(),
        launch=launch,
        max_body_bytes=int(max_body_mb * 2**20),
        queue_size=queue,
        timeout_s=timeout,
        startup_timeout_s=startup_timeout,
    )
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
