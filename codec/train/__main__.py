"""`python -m codec.train ...`: reproduce the data, the training and the shipped packages.

python -m codec.train all --seed 0 --out packages/      # everything, in order
python -m codec.train data                              # fetch sources, write data/testset and crops
python -m codec.train base --seed 0                     # base model at the middle lambda
python -m codec.train finetune --seed 0 --rate 1        # one rate point (1..4) from the base
python -m codec.train export --out packages/            # int16, int8, int16-full, float per rate point
python -m codec.train integerise --out packages/        # int16, int8, int16-full from the float twins
python -m codec.train report --out packages/            # RD evaluation: packages/rd.json, packages/rd.png
python -m codec.train lowcx-base --seed 0               # the lowcomplexity family (codec/lowcx.py): base,
python -m codec.train lowcx-finetune --rate 1           #   one rate point,
python -m codec.train lowcx-export --out packages/      #   packages/lowcomplexity{,-nocontext}/qI
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from codec.cli_errors import ReportingGroup
from codec.progress import progress

if TYPE_CHECKING:
    import numpy as np

_DEFAULT_WORK = Path.home() / ".cache" / "bitmatch" / "train"
_WORK = click.option(
    "--work",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_DEFAULT_WORK,
    show_default=True,
    help="downloads, crops and checkpoints",
)
_SEED = click.option("--seed", type=int, default=0, show_default=True)
_THREADS = click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads")
_OUT = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("packages"),
    show_default=True,
)


def _threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


@click.group(cls=ReportingGroup)
def main() -> None:
    """Train and export the default bitmatch codec (needs the [train] extra)."""


@main.command("data")
@_WORK
def data_command(work_dir: Path) -> None:
    """Fetch the photographs from the registries, write data/testset/ and the training crops."""
    from codec.train import data

    manifest, crops = data.prepare(work_dir / "sources", work_dir)
    click.echo(f"{len(manifest['images'])} test images, crops in {crops}")


@main.command("base")
@_WORK
@_SEED
@_THREADS
def base_command(work_dir: Path, seed: int, threads: int) -> None:
    """Train the base model at the middle lambda."""
    from codec.train import data

    _threads(threads)
    click.echo(_train_base(data.load_crops(work_dir), seed, work_dir))


@main.command("finetune")
@_WORK
@_SEED
@_THREADS
@click.option("--rate", type=click.IntRange(1, 4), required=True, help="rate point 1 (lowest) .. 4")
def finetune_command(work_dir: Path, seed: int, threads: int, rate: int) -> None:
    """Fine-tune one rate point from the base model."""
    from codec.train import data

    _threads(threads)
    click.echo(_finetune(data.load_crops(work_dir), seed, work_dir, rate, work_dir / "base.pt"))


@main.command("export")
@_WORK
@_OUT
def export_command(work_dir: Path, out_dir: Path) -> None:
    """Build the int16, int8, int16-full and float packages of every rate point from the checkpoints."""
    _export(work_dir, out_dir)


@main.command("integerise")
@_OUT
def integerise_command(out_dir: Path) -> None:
    """Re-integerise the int16, int8 and int16-full packages in OUT from their float twins' weights (no
    torch)."""
    from codec.train import export

    with progress("integerise", 0, "packages") as steps:
        rows = export.rebuild_integer(out_dir, progress=steps)
    if not rows:
        raise click.ClickException(f"no float packages with weights in {out_dir} (expected float/qI/)")
    for row in rows:
        click.echo(f"{row['name']}: {row['digest']}")


@main.command("report")
@_OUT
@click.option("--runtime", default="ort-cpu", show_default=True)
def report_command(out_dir: Path, runtime: str) -> None:
    """Evaluate the packages in OUT and the anchors on data/testset; write OUT/rd.json and OUT/rd.png."""
    import json

    from codec.train import evaluate

    with progress("report", 0, "encodes") as steps:
        report = evaluate.evaluate_shipped(out_dir, runtime=runtime, progress=steps)
    (out_dir / "rd.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    evaluate.plot_rd(report, out_dir / "rd.png")
    click.echo(evaluate.format_text(report))


@main.command("lowcx-base")
@_WORK
@_SEED
@_THREADS
def lowcx_base_command(work_dir: Path, seed: int, threads: int) -> None:
    """Train the lowcomplexity family's base model at the middle lambda."""
    from codec.train import data, lowcx

    _threads(threads)
    with progress("lowcx base", lowcx.BASE.steps, "Adam steps") as steps:
        click.echo(lowcx.train_base(data.load_crops(work_dir), seed, work_dir, progress=steps))


@main.command("lowcx-finetune")
@_WORK
@_SEED
@_THREADS
@click.option("--rate", type=click.IntRange(1, 4), required=True, help="rate point 1 (lowest) .. 4")
def lowcx_finetune_command(work_dir: Path, seed: int, threads: int, rate: int) -> None:
    """Fine-tune one lowcomplexity rate point from its base model."""
    from codec.train import data, lowcx

    _threads(threads)
    with progress(f"lowcx q{rate}", lowcx.FINETUNE.steps, "Adam steps") as steps:
        click.echo(lowcx.finetune(data.load_crops(work_dir), seed, work_dir, rate, progress=steps))


@main.command("lowcx-export")
@_WORK
@_OUT
def lowcx_export_command(work_dir: Path, out_dir: Path) -> None:
    """Build OUT/lowcomplexity/qI and OUT/lowcomplexity-nocontext/qI from the lowcx checkpoints."""
    from codec.train import data, lowcx

    crops = data.load_crops(work_dir)[0]
    for rate in range(1, len(lowcx.LAMBDAS) + 1):
        for row in lowcx.export_rate_point(crops, work_dir, out_dir, rate):
            click.echo(f"{row['name']}: {row['digest']}")


@main.command("lowcx-report")
@_WORK
@_OUT
@click.option("--ablation", is_flag=True, help="also contexts without activation bits and the reverse")
def lowcx_report_command(work_dir: Path, out_dir: Path, ablation: bool) -> None:
    """RD of the lowcomplexity packages in OUT on data/testset: OUT/lowcomplexity/rd.json."""
    import json
    import tempfile

    from codec.train import data, lowcx

    if ablation:
        with tempfile.TemporaryDirectory() as scratch, progress("lowcx ablation", 0, "encodes") as steps:
            crops = data.load_crops(work_dir)[0]
            click.echo(json.dumps(lowcx.ablation(crops, work_dir, out_dir, Path(scratch), steps), indent=1))
        return
    with progress("lowcx report", 0, "encodes") as steps:
        result = lowcx.report(out_dir, progress=steps)
    (out_dir / "lowcomplexity" / "rd.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    click.echo(json.dumps(result["bd_rate"], indent=1))


@main.command("all")
@_WORK
@_SEED
@_THREADS
@_OUT
def all_command(work_dir: Path, seed: int, threads: int, out_dir: Path) -> None:
    """data, base, the four fine-tunes and export, in order."""
    from codec.train import data, train

    _threads(threads)
    data.prepare(work_dir / "sources", work_dir)
    crops = data.load_crops(work_dir)
    base = _train_base(crops, seed, work_dir)
    for rate in range(1, len(train.LAMBDAS) + 1):
        _finetune(crops, seed, work_dir, rate, base)
    _export(work_dir, out_dir)
    click.echo("now: python -m codec.train report --out " + str(out_dir))


def _train_base(crops: tuple[np.ndarray, np.ndarray], seed: int, work_dir: Path) -> Path:
    from codec.train import train

    with progress("base model", train.BASE.steps, "Adam steps") as steps:
        return train.train_base(crops, seed, work_dir, progress=steps)


def _finetune(crops: tuple[np.ndarray, np.ndarray], seed: int, work_dir: Path, rate: int, base: Path) -> Path:
    from codec.train import train

    with progress(f"fine-tune q{rate}", train.FINETUNE.steps, "Adam steps") as steps:
        return train.finetune(crops, seed, work_dir, train.LAMBDAS[rate - 1], base, progress=steps)


def _export(work_dir: Path, out_dir: Path) -> None:
    from codec.train import export

    with progress("export", 0, "packages") as steps:
        rows = export.export_all(work_dir, out_dir, progress=steps)
    if not rows:
        raise click.ClickException(f"no trained rate points in {work_dir} (expected q1.npz .. q4.npz)")
    for row in rows:
        click.echo(f"{row['name']}: {row['digest']}")


if __name__ == "__main__":
    main()
