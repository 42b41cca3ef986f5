"""`bitmatch encode-set` and `bitmatch decode-set`: a runner's half of the offline matrix (worker/offline.py).

Both exit 0 once the set is written, whatever its tasks' outcomes (an encode that failed is a result, on
record for the aggregate); 2 when the target cannot run here or its compute process does not start.
"""

from __future__ import annotations

from pathlib import Path

import click

from codec.errors import CodecError
from codec.imagesets import set_names
from codec.package import CodecPackage
from codec.progress import progress
from worker.cli import compute_launch, default_cache_dir, with_memory_limit
from worker.offline import (
    Inputs,
    Runner,
    SetError,
    decode_set,
    encode_set,
    load_set,
    resolve_images,
    run,
)

INFRASTRUCTURE_EXIT = 2


def _runner(
    target: str, cache_dir: Path | None, timeout: float, memory_limit_mb: float, label: str | None = None
) -> Runner:
    try:
        launch = with_memory_limit(compute_launch(target), memory_limit_mb)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        raise SystemExit(INFRASTRUCTURE_EXIT) from None
    return Runner(target, launch, cache_dir or default_cache_dir(), timeout, label)


def _load(path: Path) -> CodecPackage:
    try:
        return CodecPackage.load(path)
    except CodecError as exc:
        raise click.BadParameter(str(exc), param_hint="--codec") from None


def _execute(coroutine_factory) -> dict:  # type: ignore[no-untyped-def]
    try:
        return run(coroutine_factory())
    except SetError as exc:
        if "did not start" in str(exc):
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(INFRASTRUCTURE_EXIT) from None
        raise click.ClickException(str(exc)) from None


common = [
    click.option("--target", default="cpu", show_default=True, help="The device target that runs the tasks."),
    click.option(
        "--label",
        default=None,
        help="This device's name in the matrix [default: the target]; runners of one target on different "
        "machines need different labels (e.g. cpu@macos-14).",
    ),
    click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="A new (or empty) directory for the set.",
    ),
    click.option(
        "--repeat",
        type=click.IntRange(1, 10),
        default=1,
        show_default=True,
        help="Runs per input, compared for nondeterminism.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=300.0,
        show_default=True,
        help="Seconds one encode or decode may take.",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where packages are unpacked [default: the worker's cache].",
    ),
    click.option(
        "--memory-limit-mb",
        type=click.FloatRange(min=0),
        default=6144.0,
        show_default=True,
        help="Address-space limit of the compute process (0: none).",
    ),
]


def with_common(command):  # type: ignore[no-untyped-def]
    for option in reversed(common):
        command = option(command)
    return command


@click.command(name="encode-set")
@click.option(
    "--codec",
    "codecs",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A codec package (directory or archive); repeatable.",
)
@click.option(
    "--images",
    default="tiny",
    show_default=True,
    metavar="SET|DIR",
    help=f"A bundled image set ({', '.join(set_names())}) or a directory of PNGs.",
)
@with_common
def encode_set_command(
    codecs, images, target, label, out, repeat, timeout, cache_dir, memory_limit_mb
) -> None:  # type: ignore[no-untyped-def]
    """Encode images with codec packages on this runner's target; write an encode set."""
    packages = [_load(path) for path in codecs]
    try:
        pictures, set_name = resolve_images(images)
    except SetError as exc:
        raise click.BadParameter(str(exc), param_hint="--images") from None
    runner = _runner(target, cache_dir, timeout, memory_limit_mb, label)

    async def go():  # type: ignore[no-untyped-def]
        click.echo(f"starting the {target} compute process", err=True)
        async with runner:
            with progress("encode-set", 0, "encodes") as steps:
                return await encode_set(Inputs(packages, pictures, set_name), runner, out, repeat, steps)

    manifest = _execute(go)
    click.echo(
        f"encode set {manifest['id']}: {len(manifest['tasks'])} encodes on {manifest['target']} in {out}"
    )


@click.command(name="decode-set")
@click.option(
    "--from",
    "sources",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="An encode set to decode; repeatable (one per encoding runner).",
)
@click.option(
    "--decode-with",
    "decode_with",
    multiple=True,
    metavar="DIGEST=PKG",
    help="Decode the bitstreams of package DIGEST with package PKG instead (codec-version "
    "compatibility); repeatable.",
)
@with_common
def decode_set_command(
    sources, decode_with, target, label, out, repeat, timeout, cache_dir, memory_limit_mb
) -> None:  # type: ignore[no-untyped-def]
    """Decode every encode set's bitstreams on this runner's target; write a decode set."""
    for source in sources:  # before the compute process starts
        try:
            load_set(source, expect="encode")
        except SetError as exc:
            raise click.BadParameter(str(exc), param_hint="--from") from None
    mapping = {}
    for item in decode_with:
        digest, _, path = item.partition("=")
        if len(digest) != 64 or not path:
            raise click.BadParameter(f"{item!r} is not DIGEST=PKG", param_hint="--decode-with")
        mapping[digest] = _load(Path(path))
    runner = _runner(target, cache_dir, timeout, memory_limit_mb, label)

    async def go():  # type: ignore[no-untyped-def]
        click.echo(f"starting the {target} compute process", err=True)
        async with runner:
            with progress("decode-set", 0, "decodes") as steps:
                return await decode_set(list(sources), runner, out, repeat, mapping, steps)

    manifest = _execute(go)
    click.echo(
        f"decode set {manifest['id']}: {len(manifest['tasks'])} decodes on {manifest['target']} in {out}"
    )
