"""The `bitmatch demo` command: its options, checked and turned into a DemoConfig, the run, and what it
prints at the end (the JSON object with --json); Ctrl-C stops everything it started and exits 130."""

from __future__ import annotations

import json
from pathlib import Path

import click
import httpx

from bitmatch.console import Console, LaunchError
from bitmatch.demo.run import DemoConfig, run_demo
from bitmatch.fleet import free_port, port_is_free, port_taken_message, terminate_as_interrupt
from bitmatch.paths import default_data_dir
from codec.imagesets import set_names
from server.client import CoordinatorError


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
        raise LaunchError(port_taken_message(port))
    try:
        with terminate_as_interrupt():
            result = run_demo(config, console)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: everything the demo started is stopped", err=True)
        raise SystemExit(130) from None
    except (CoordinatorError, httpx.HTTPError) as exc:
        raise LaunchError(f"talking to the coordinator failed: {exc}") from None
    except TimeoutError as exc:
        raise LaunchError(str(exc)) from None
    if json_mode:
        click.echo(json.dumps(result))
