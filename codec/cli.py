"""`bitmatch codec ...` commands."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING

import click

from codec.cli_errors import ReportingGroup
from codec.progress import progress
from codec.vocabulary import Lowering, Precision

if TYPE_CHECKING:
    from codec.codec import Codec
    from codec.rdoq import RdoqOptions
    from codec.results import DecodeResult


@click.group(name="codec", cls=ReportingGroup)
def codec_group() -> None:
    """Codec library: tables, encode, decode, eval."""


@codec_group.command(name="tables")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--sigma-min", type=click.FloatRange(min=0.0, min_open=True), default=0.11, show_default=True)
@click.option("--sigma-max", type=click.FloatRange(min=0.0, min_open=True), default=256.0, show_default=True)
def tables_command(as_json: bool, sigma_min: float, sigma_max: float) -> None:
    """Redundancy of the scale-level code tables (paper 000, Table 1) for N = 16..256."""
    import json

    from codec import tables

    if sigma_min >= sigma_max:
        raise click.BadParameter("--sigma-min must be below --sigma-max", param_hint="--sigma-min")
    rows = tables.redundancy_report(sigma_min, sigma_max)
    click.echo(json.dumps(rows, indent=2) if as_json else tables.format_report(rows, sigma_min, sigma_max))


# --- networks, packages, encode / decode / eval (codec networks issue) ---


def output_file(path: str | Path) -> Path:
    """An output file's path, its folder created when missing (as `--out DIR` options create DIR)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # the folder's name is taken by a file
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path.parent)) from None
    return path


def _emit(payload: dict, as_json: bool, text: str) -> None:
    import json

    click.echo(json.dumps(payload, indent=1, sort_keys=True) if as_json else text)


@codec_group.command("build-random")
@click.option("--precision", type=click.Choice([p.value for p in Precision]), required=True)
@click.option("--channels", required=True, metavar="N,M", help="hidden/z channels N and latent channels M")
@click.option("--seed", type=int, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--levels", type=click.IntRange(16, 256), default=64, show_default=True)
@click.option(
    "--lowering",
    type=click.Choice([lowering.value for lowering in Lowering]),
    default=Lowering.FLOAT64.value,
    show_default=True,
    help="how an int16 h_s graph carries its integers",
)
@click.option(
    "--family",
    type=click.Choice(["hyperprior", "lowcomplexity"]),
    default="hyperprior",
    show_default=True,
    help="lowcomplexity: the factorized codec with context-switching entropy coding (float or int16-full)",
)
@click.option("--no-contexts", is_flag=True, help="lowcomplexity: one table per channel, no activation bits")
@click.option("--json", "as_json", is_flag=True)
def build_random_command(
    precision: str,
    channels: str,
    seed: int,
    out_dir: str,
    levels: int,
    lowering: str,
    family: str,
    no_contexts: bool,
    as_json: bool,
) -> None:
    """Build a codec package with deterministic random weights (shared by all precisions of one seed)."""
    from codec.build import build_random

    try:
        n, m = (int(part) for part in channels.split(","))
    except ValueError:
        raise click.BadParameter("expected two integers N,M", param_hint="--channels") from None
    if family == "lowcomplexity":
        digest = _build_random_lowcx(out_dir, precision, n, m, seed, no_contexts)
    else:
        digest = build_random(out_dir, precision, n, m, seed, levels, lowering)
    _emit({"digest": digest, "out": out_dir, "precision": precision}, as_json, f"{out_dir}: {digest}")


def _build_random_lowcx(out_dir: str, precision: str, n: int, m: int, seed: int, no_contexts: bool) -> str:
    from codec.lowcx_build import build_random

    if precision not in (Precision.FLOAT, Precision.INT16_FULL):
        raise click.BadParameter("lowcomplexity packages are float or int16-full", param_hint="--precision")
    return build_random(out_dir, n, m, seed, 1 if no_contexts else 4, not no_contexts, precision)


_RUNTIME = click.option("--runtime", default="ort-cpu", show_default=True, help="runtime name")
_CODEC = click.option(
    "--codec",
    "codec_path",
    type=click.Path(exists=True),
    required=True,
    help="codec package directory or archive",
)


@codec_group.command("encode")
@click.argument("image_path", type=click.Path(dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
@_CODEC
@_RUNTIME
@click.option(
    "--reconstruct",
    is_flag=True,
    help="Also reconstruct the image, for its PSNR and its recon stage hash (without: psnr null, no recon).",
)
@click.option(
    "--rdoq",
    is_flag=True,
    help="Optimise the latent for D + lambda R before coding it (codec/rdoq.py); packages with an exact "
    "decoder only (int16, int8, int16-full, lowcomplexity).",
)
@click.option(
    "--passes", type=click.IntRange(min=1), default=None, help="RDOQ passes (with --rdoq; default 3)"
)
@click.option(
    "--rdoq-lambda",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="RDOQ's lambda (lambda 255^2 MSE + bpp; default: the package manifest's)",
)
@click.option("--json", "as_json", is_flag=True)
def encode_command(
    image_path: str,
    out_path: str,
    codec_path: str,
    runtime: str,
    reconstruct: bool,
    rdoq: bool,
    passes: int | None,
    rdoq_lambda: float | None,
    as_json: bool,
) -> None:
    """Encode a PNG image into a .bmc bitstream (OUT_PATH's folder is created when missing)."""
    from codec.codec import Codec
    from codec.images import load_png

    options = _rdoq_options(rdoq, passes, rdoq_lambda)
    codec = Codec.load(codec_path, runtime)
    result = codec.encode(load_png(image_path), reconstruct=reconstruct, rdoq=options)
    output_file(out_path).write_bytes(result.bitstream)
    payload = {
        "bytes": len(result.bitstream),
        "bpp": result.bpp,
        "psnr": result.psnr,
        "stage_hashes": result.stage_hashes,
        "timings_ms": result.timings,
        "codec": codec.digest,
        "precision": codec.precision,
        "runtime": runtime,
    }
    if result.rdoq is not None:
        payload["rdoq"] = {"changes": result.rdoq.changes, "radius": result.rdoq.radius}
    quality = "" if result.psnr is None else f"{result.psnr:.2f} dB, "
    _emit(
        payload,
        as_json,
        f"{out_path}: {len(result.bitstream)} bytes, {result.bpp:.4f} bpp, "
        f"{quality}y_hat {result.stage_hashes['y_hat'][:16]}",
    )


def _rdoq_options(rdoq: bool, passes: int | None, rdoq_lambda: float | None) -> RdoqOptions | None:
    from codec.rdoq import DEFAULT_PASSES, RdoqOptions

    if not rdoq:
        if passes is not None or rdoq_lambda is not None:
            raise click.UsageError("--passes and --rdoq-lambda need --rdoq")
        return None
    return RdoqOptions(passes=DEFAULT_PASSES if passes is None else passes, lmbda=rdoq_lambda)


@codec_group.command("decode")
@click.argument("bitstream_path", type=click.Path(dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
@_CODEC
@_RUNTIME
@click.option(
    "--reference", "reference_path", type=click.Path(dir_okay=False), help="original PNG, to report PSNR"
)
@click.option("--json", "as_json", is_flag=True)
def decode_command(
    bitstream_path: str,
    out_path: str,
    codec_path: str,
    runtime: str,
    reference_path: str | None,
    as_json: bool,
) -> None:
    """Decode a .bmc bitstream into a PNG image (OUT_PATH's folder is created when missing)."""
    from codec.codec import Codec
    from codec.images import load_png, save_png
    from codec.metrics import bpp, psnr

    data = Path(bitstream_path).read_bytes()
    codec = Codec.load(codec_path, runtime)
    reference = load_png(reference_path) if reference_path else None
    result = _decode(codec, data, bitstream_path)
    save_png(result.recon, output_file(out_path))
    height, width = result.recon.shape[:2]
    quality = psnr(reference, result.recon) if reference is not None else None
    payload = {
        "bytes": len(data),
        "bpp": bpp(len(data), height, width),
        "psnr": quality,
        "stage_hashes": result.stage_hashes,
        "timings_ms": result.timings,
        "codec": codec.digest,
        "precision": codec.precision,
        "runtime": runtime,
        "height": height,
        "width": width,
    }
    _emit(payload, as_json, f"{out_path}: {width}x{height}, y_hat {result.stage_hashes['y_hat'][:16]}")


def _decode(codec: Codec, data: bytes, bitstream_path: str) -> DecodeResult:
    """codec.decode(data), a bitstream error naming the file it came from."""
    from codec.errors import BitstreamError

    try:
        return codec.decode(data)
    except BitstreamError as exc:
        raise click.ClickException(f"{exc.code}: {bitstream_path}: {exc}") from None


@codec_group.command("eval")
@click.argument("image_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--codec",
    "codec_path",
    type=click.Path(exists=True),
    default=None,
    help="evaluate this one package; without it: every shipped package plus JPEG and WebP",
)
@click.option(
    "--packages",
    "packages_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="a family of rate points: the shipped packages/ (default), or an imported codec's DIR "
    "(DIR/qI/PRECISION)",
)
@_RUNTIME
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also draw the RD curves into this PNG (needs matplotlib)",
)
@click.option(
    "--no-rdoq",
    is_flag=True,
    help="without the RDOQ curves (lowcomplexity-rdoq*: most of the run's time)",
)
@click.option("--json", "as_json", is_flag=True)
def eval_command(
    image_dir: Path | None,
    codec_path: str | None,
    packages_dir: Path | None,
    runtime: str,
    plot_path: Path | None,
    no_rdoq: bool,
    as_json: bool,
) -> None:
    """Rate-distortion evaluation.

    With no arguments: every shipped package (the hyperprior family in int16, int8, float and int16-full;
    the lowcomplexity family without and with contexts, and with contexts and RDOQ, 3 passes, at the
    packages' lambda and at a quarter of it: about 25 minutes on two cores, --no-rdoq saves 24 of them) and
    the JPEG and WebP anchors on the bundled test set, with BD-rates (Galpin et al.'s Table 2 against the
    lowcomplexity base). With --codec: bpp, PSNR and MS-SSIM of one package on every PNG of IMAGE_DIR
    (default: the bundled test set).
    """
    if codec_path is None:
        _eval_shipped(image_dir, packages_dir, runtime, plot_path, as_json, not no_rdoq)
    else:
        _eval_one(image_dir, codec_path, runtime, as_json)


def _eval_shipped(
    image_dir: Path | None,
    packages_dir: Path | None,
    runtime: str,
    plot_path: Path | None,
    as_json: bool,
    with_rdoq: bool = True,
) -> None:
    from codec.resources import image_set
    from codec.resources import packages_dir as shipped_packages_dir
    from codec.train import evaluate

    packages_dir = packages_dir or shipped_packages_dir()
    if not evaluate.shipped_families(packages_dir):
        raise click.ClickException(
            f"no packages in {packages_dir} (expected PRECISION/qI/manifest.json, or "
            "qI/PRECISION/manifest.json from `bitmatch import ... --out DIR/qI`)"
        )
    with progress("codec eval", 0, "encodes") as steps:
        passes = evaluate.DEFAULT_RDOQ_PASSES if with_rdoq else None
        testset = image_dir or image_set("testset")
        report = evaluate.evaluate_shipped(packages_dir, testset, runtime, steps, passes)
    if plot_path is not None:
        evaluate.plot_rd(report, output_file(plot_path))
    _emit(report, as_json, evaluate.format_text(report))


def _eval_one(image_dir: Path | None, codec_path: str, runtime: str, as_json: bool) -> None:
    from codec.codec import Codec, evaluate_directory
    from codec.resources import image_set

    codec = Codec.load(codec_path, runtime)
    with progress("codec eval", 0, "images") as steps:
        report = evaluate_directory(codec, image_dir or image_set("testset"), steps)
    lines = [
        f"{row['image']:<32} {row['bpp']:8.4f} bpp {row['psnr']:7.2f} dB  MS-SSIM {row['ms_ssim']:.4f}"
        for row in report["images"]
    ]
    mean = report["mean"]
    lines.append(f"{'mean':<32} {mean['bpp']:8.4f} bpp {mean['psnr']:7.2f} dB  MS-SSIM {mean['ms_ssim']:.4f}")
    _emit(report, as_json, "\n".join(lines))


@codec_group.command("pack")
@click.argument("package_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
def pack_command(package_dir: str, out_path: str) -> None:
    """Write a verified codec package directory as a single-file archive (same digest).

    Prints the bare digest on stdout (`DIGEST=$(bitmatch codec pack pkg pkg.tar)`), the archive's path and
    digest on stderr. OUT_PATH's folder is created when missing.
    """
    from codec.package import write_archive

    digest = write_archive(package_dir, output_file(out_path))
    click.echo(f"{out_path}: {digest}", err=True)
    click.echo(digest)
