"""`bitmatch import ...`: bring your own codec (a CompressAI checkpoint or ONNX exports) in as packages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from codec.cli_errors import ReportingGroup
from codec.importers.compressai import ARCHITECTURES, PRECISIONS
from codec.progress import progress

_OUT = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="one package per precision is written to OUT/PRECISION",
)
_CALIBRATION = click.option(
    "--calibration",
    "calibration_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="PNG images to calibrate the integer h_s on (default: the bundled data/calibration set)",
)
_PRECISION = click.option(
    "--precision",
    "precisions",
    type=click.Choice([str(p) for p in PRECISIONS]),
    multiple=True,
    help="build only these (repeatable; default: float, int16 and int8)",
)


@click.group(name="import", cls=ReportingGroup)
def import_group() -> None:
    """Bring your own codec: CompressAI checkpoints and ONNX exports become bitmatch packages."""


def _calibrate_and_build(
    build: Callable[..., list[dict]],
    model: object,
    out_dir: Path,
    calibration_dir: Path | None,
    precisions: tuple[str, ...],
) -> list[dict]:
    """`build(model, out_dir, images, name, precisions, progress)` under a progress bar: one step per
    calibration image, then one per package."""
    from codec.importers import calibration

    images, name = calibration.images(calibration_dir)
    precisions = precisions or PRECISIONS
    with progress("calibrate and build", len(images) + len(precisions), "steps") as steps:
        return build(model, out_dir, images, name, precisions, steps)


def _report(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"packages": rows}, indent=1, sort_keys=True))
        return
    for row in rows:
        click.echo(f"{row['path']}: {row['precision']} {row['digest']}")


@import_group.command("compressai")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--arch", type=click.Choice(ARCHITECTURES), required=True, help="the CompressAI model class")
@_OUT
@_CALIBRATION
@_PRECISION
@click.option("--json", "as_json", is_flag=True)
def compressai_command(
    checkpoint: Path,
    arch: str,
    out_dir: Path,
    calibration_dir: Path | None,
    precisions: tuple[str, ...],
    as_json: bool,
) -> None:
    """Import a CompressAI state dict (torch.save(model.state_dict()), or the zoo's .pth.tar)."""
    from codec.importers.compressai import build_packages, read_checkpoint

    model = read_checkpoint(checkpoint, arch)
    _report(_calibrate_and_build(build_packages, model, out_dir, calibration_dir, precisions), as_json)


@import_group.command("onnx")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="a JSON or TOML file naming the ONNX graphs and the entropy model",
)
@_OUT
@_CALIBRATION
@_PRECISION
@click.option("--json", "as_json", is_flag=True)
def onnx_command(
    spec_path: Path, out_dir: Path, calibration_dir: Path | None, precisions: tuple[str, ...], as_json: bool
) -> None:
    """Import a codec exported to ONNX (g_a, h_a, h_s, g_s) with its entropy model."""
    from codec.importers.onnx_package import build_packages
    from codec.importers.onnx_spec import read_spec

    spec = read_spec(spec_path)
    _report(_calibrate_and_build(build_packages, spec, out_dir, calibration_dir, precisions), as_json)
