"""Rate-distortion evidence: the shipped packages and the JPEG / WebP anchors on the bundled test set.

No torch here: this is what `bitmatch codec eval --json` (no arguments) runs: the hyperprior family in
every precision, the lowcomplexity family's base (no contexts) and context variants, the context variant
again with RDOQ (3 passes) at the packages' lambda and at a quarter of it (curves `lowcomplexity-rdoq` and
`lowcomplexity-rdoq-quarter-lambda`, `RDOQ_CURVES`: about 12 minutes each on two cores; `--no-rdoq` leaves
them out) and the anchors. Every point is the mean over the
test images of bpp (the whole `.bmc` / JPEG / WebP file), PSNR (RGB) and MS-SSIM. Anchors: Pillow JPEG with
4:2:0 subsampling and optimised Huffman tables, Pillow WebP (lossy, method 6).

Output (`evaluate_shipped`):
    {"packages": {"bitmatch-int16": {"rd_points": [{"bpp", "psnr", "ms_ssim", "package", "digest"}, ...]},
                  "bitmatch-int8": ..., "bitmatch-float": ..., "jpeg": ..., "webp": ...},
     "bd_rate": {"int16_vs_float": {...}, "int8_vs_float": {...}, "int16_vs_jpeg": {...}, ...},
     "test_set": {"images": N, "pixels": P}}
with each bd_rate entry the `codec.metrics.bd_summary` of test against anchor (BD-rate in percent, negative
= fewer bits; PCHIP headline, Akima second). The `*_vs_lowcomplexity-nocontext` entries are Table 2 of
Galpin, Balcilar, Lefebvre, Racapé and Hellier, "Entropy coding improvement for low-complexity compressive
auto-encoders" (`table2_lines`). An RDOQ point also records its `rdoq_passes` and `rdoq_lambda`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from codec.anchors import QUALITIES, roundtrip
from codec.errors import ImageError
from codec.images import load_png
from codec.metrics import bd_summary, bpp, ms_ssim, psnr
from codec.progress import SILENT, Progress
from codec.rdoq import DEFAULT_PASSES as DEFAULT_RDOQ_PASSES
from codec.resources import image_set, shipped_relative
from codec.resources import packages_dir as shipped_packages_dir
from codec.vocabulary import Anchor, Precision

PRECISIONS = (Precision.INT16, Precision.INT8, Precision.FLOAT, Precision.INT16_FULL)
# The lowcomplexity family (codec/lowcx.py), each variant in a directory of its own: Galpin et al.'s base
# (one CDF per channel) and the context-switching model.
BASE, CONTEXTS = "lowcomplexity-nocontext", "lowcomplexity"
LOWCX_FAMILIES = (BASE, CONTEXTS)
CONTEXTS_RDOQ, CONTEXTS_RDOQ_QUARTER = CONTEXTS + "-rdoq", CONTEXTS + "-rdoq-quarter-lambda"
# (curve, family, RDOQ lambda as a multiple of each package's own): the contexts packages with RDOQ
# (codec/rdoq_lowcx.py), each its own curve. At the packages' lambda RDOQ gains more PSNR (+0.8 dB) than
# the base curve spans (0.7 dB from q1 to q4), so no PSNR range overlaps the base's and BD-rate is not
# defined; at a quarter of it the curve trades that gain for rate and overlaps (probe on lowcomplexity/q2,
# 3 images, 1 pass: lambda x0.3 +0.29 dB at -17 % bpp, x0.1 -1.0 dB at -32 %).
RDOQ_CURVES = ((CONTEXTS_RDOQ, CONTEXTS, 1.0), (CONTEXTS_RDOQ_QUARTER, CONTEXTS, 0.25))
JPEG_QUALITIES = WEBP_QUALITIES = QUALITIES
COMPARISONS = (
    ("int16", "float"),
    ("int8", "float"),
    ("int16", "jpeg"),
    ("int8", "jpeg"),
    ("float", "jpeg"),
    ("int16", "webp"),
    ("float", "webp"),
    ("int16-full", "int16"),
    # Galpin et al.'s Table 2: every addition, and the other codecs, against the base
    (CONTEXTS, BASE),
    (CONTEXTS_RDOQ, BASE),
    (CONTEXTS_RDOQ, CONTEXTS),
    (CONTEXTS_RDOQ_QUARTER, BASE),
    (CONTEXTS_RDOQ_QUARTER, CONTEXTS),
    ("int16", BASE),
    ("int16-full", BASE),
    ("jpeg", BASE),
    ("webp", BASE),
)
TABLE2 = (
    (CONTEXTS, "+ contexts (3.1)"),
    (CONTEXTS_RDOQ, "+ contexts + RDOQ (3.2), the packages' lambda"),
    (CONTEXTS_RDOQ_QUARTER, "+ contexts + RDOQ (3.2), lambda / 4"),
    ("int16", "hyperprior, int16"),
    ("int16-full", "hyperprior, int16-full"),
    ("jpeg", "JPEG"),
    ("webp", "WebP"),
)


def family_name(precision: str, prefix: str = "bitmatch") -> str:
    return f"{prefix}-{precision}"


def load_testset(testset_dir: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """The images of a manifest.json (the bundled set by default), or every PNG of a directory without one."""
    testset_dir = Path(testset_dir) if testset_dir is not None else image_set("testset")
    manifest_path = testset_dir / "manifest.json"
    if manifest_path.exists():
        files = [entry["file"] for entry in json.loads(manifest_path.read_text())["images"]]
    else:
        files = sorted(path.name for path in testset_dir.glob("*.png"))
    if not files:
        raise ImageError(f"no PNG images in {testset_dir}")
    return [(file, load_png(testset_dir / file)) for file in files]


def _mean_point(rows: list[dict]) -> dict:
    return {key: float(np.mean([row[key] for row in rows])) for key in ("bpp", "psnr", "ms_ssim")}


def pillow_point(
    images: list[tuple[str, np.ndarray]], fmt: str, quality: int, progress: Progress = SILENT
) -> dict:
    """One anchor point: every image through Pillow JPEG (4:2:0, optimize) or WebP at one quality."""
    rows = []
    for _, image in images:
        size, recon = roundtrip(image, Anchor(fmt), quality)
        rows.append(
            {"bpp": bpp(size, *image.shape[:2]), "psnr": psnr(image, recon), "ms_ssim": ms_ssim(image, recon)}
        )
        progress.advance()
    return {**_mean_point(rows), "quality": quality}


def codec_point(
    package_dir: Path,
    images: list[tuple[str, np.ndarray]],
    runtime: str = "ort-cpu",
    progress: Progress = SILENT,
    rdoq_passes: int | None = None,
    rdoq_lambda_scale: float = 1.0,
) -> dict:
    """One package: every image encoded (with `rdoq_passes` RDOQ passes, codec/rdoq.py, at
    `rdoq_lambda_scale` times the package's lambda); the reconstruction is the decoder's."""
    from codec.codec import Codec

    codec = Codec.load(package_dir, runtime)
    rdoq = None if rdoq_passes is None else _rdoq_options(codec, rdoq_passes, rdoq_lambda_scale)
    rows = []
    for _, image in images:
        result = codec.encode(image, reconstruct=True, rdoq=rdoq)
        rows.append({"bpp": result.bpp, "psnr": result.psnr, "ms_ssim": ms_ssim(image, result.recon)})
        progress.advance()
    point = {**_mean_point(rows), "package": shipped_relative(package_dir), "digest": codec.digest}
    if rdoq is None:
        return point
    return {**point, "rdoq_passes": rdoq_passes, "rdoq_lambda": rdoq.lmbda}


def _rdoq_options(codec, passes: int, lambda_scale: float):  # type: ignore[no-untyped-def]
    from codec.rdoq import RdoqOptions
    from codec.rdoq_lowcx import manifest_lambda

    lmbda = manifest_lambda(codec.package.manifest).get("lambda")
    return RdoqOptions(passes=passes, lmbda=None if lmbda is None else float(lmbda) * lambda_scale)


def shipped_families(packages_dir: Path | None = None) -> dict[str, list[Path]]:
    """precision -> its rate-point package directories, lowest rate first.

    Two layouts: DIR/PRECISION/qI (the shipped families) and DIR/qI/PRECISION (one `bitmatch import` per
    rate point, `--out DIR/qI`). Default: the shipped packages.
    """
    packages_dir = Path(packages_dir) if packages_dir is not None else shipped_packages_dir()
    families = {}
    for precision in PRECISIONS:
        points = sorted((packages_dir / precision).glob("q*/manifest.json"))
        points = points or sorted(packages_dir.glob(f"q*/{precision}/manifest.json"))
        if points:
            families[precision] = [path.parent for path in points]
    for family in LOWCX_FAMILIES:
        points = sorted((packages_dir / family).glob("q*/manifest.json"))
        if points:
            families[family] = [path.parent for path in points]
    return families


CurveSpec = tuple[str, list[Path], int | None, float]


def curve_specs(families: dict[str, list[Path]], rdoq_passes: int | None) -> list[CurveSpec]:
    """(curve, its packages, RDOQ passes or None, RDOQ lambda scale): every family, then the RDOQ curves
    (unless `rdoq_passes` is None)."""
    specs: list[CurveSpec] = [(key, dirs, None, 1.0) for key, dirs in families.items()]
    if rdoq_passes is not None:
        specs += [
            (name, families[key], rdoq_passes, scale) for name, key, scale in RDOQ_CURVES if key in families
        ]
    return specs


def family_prefix(families: dict[str, list[Path]]) -> str:
    """`bitmatch` for our own codec, the architecture's name for an imported one."""
    first = next(iter(families.values()))[0]
    manifest = json.loads((first / "manifest.json").read_text())
    return manifest.get("source", {}).get("architecture", "bitmatch")


def evaluate_shipped(
    packages_dir: Path | None = None,
    testset_dir: Path | None = None,
    runtime: str = "ort-cpu",
    progress: Progress = SILENT,
    rdoq_passes: int | None = DEFAULT_RDOQ_PASSES,
) -> dict:
    """Every family's RD points and the anchors' on the test set; one progress step per image coded.
    `rdoq_passes`: also the RDOQ curves with that many passes (None: without them, 20 minutes faster)."""
    images = load_testset(testset_dir)
    families = shipped_families(packages_dir)
    specs = curve_specs(families, rdoq_passes)
    points = sum(len(spec[1]) for spec in specs) + len(JPEG_QUALITIES) + len(WEBP_QUALITIES)
    progress.add_total(points * len(images))
    curves: dict[str, list[dict]] = {}
    for key, dirs, passes, scale in specs:
        curves[key] = [codec_point(path, images, runtime, progress, passes, scale) for path in dirs]
    curves["jpeg"] = [pillow_point(images, "jpeg", q, progress) for q in JPEG_QUALITIES]
    curves["webp"] = [pillow_point(images, "webp", q, progress) for q in WEBP_QUALITIES]
    return assemble_report(curves, family_prefix(families), images)


def assemble_report(curves: dict[str, list[dict]], prefix: str, images: list[tuple[str, np.ndarray]]) -> dict:
    """The report of measured curves (keyed by precision, family or anchor): names, BD-rates, test set."""
    bd = {}
    for test, anchor in COMPARISONS:
        if test in curves and anchor in curves:
            bd[f"{test}_vs_{anchor}"] = _bd(curves[anchor], curves[test])
    names = {key: family_name(key, prefix) if key in PRECISIONS else key for key in curves}
    pixels = int(sum(image.shape[0] * image.shape[1] for _, image in images))
    return {
        "packages": {names[key]: {"rd_points": points} for key, points in curves.items()},
        "bd_rate": bd,
        "test_set": {"images": len(images), "pixels": pixels},
    }


def _bd(anchor: list[dict], test: list[dict]) -> dict:
    """bd_summary of PSNR (and MS-SSIM BD-rate), or {"error": why} when the curves do not allow one."""
    import warnings

    if min(len(anchor), len(test)) < 2:
        return {"error": "BD-rate needs at least two rate points per curve"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _bd_values(anchor, test)
    except ValueError as exc:
        return {"error": f"BD-rate not computable: {exc}"}
    if not all(np.isfinite(value) for value in result.values()):
        return _no_overlap(result)
    return result


def _no_overlap(result: dict) -> dict:
    """The error of curves whose PSNR ranges do not overlap, with the BD-PSNR when their rates do."""
    error = {"error": "BD-rate not computable: the curves do not overlap"}
    if np.isfinite(result["bd_psnr_db"]):
        error["error"] += f" in PSNR (BD-PSNR {result['bd_psnr_db']:+.2f} dB over the common rates)"
        error["bd_psnr_db"] = result["bd_psnr_db"]
    return error


def _bd_values(anchor: list[dict], test: list[dict]) -> dict:
    summary = bd_summary([(p["bpp"], p["psnr"]) for p in anchor], [(p["bpp"], p["psnr"]) for p in test])
    ssim = bd_summary([(p["bpp"], p["ms_ssim"]) for p in anchor], [(p["bpp"], p["ms_ssim"]) for p in test])
    return {**summary, "bd_rate_ms_ssim_pct": ssim["bd_rate_pct"]}


def plot_rd(report: dict, out_path: Path) -> None:
    """PSNR and MS-SSIM against bpp for every family (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "int16": "o-",
        "int8": "s--",
        "float": "^:",
        "full": "o--",
        "nocontext": "v-",
        "lowcomplexity": "P-",
        "rdoq": "*-",
        "lambda": "*--",
        "jpeg": "x-",
        "webp": "d-",
    }
    for name, family in report["packages"].items():
        points = sorted(family["rd_points"], key=lambda p: p["bpp"])
        rates = [p["bpp"] for p in points]
        style = styles.get(name.rsplit("-", 1)[-1], ".-")
        axes[0].plot(rates, [p["psnr"] for p in points], style, label=name)
        axes[1].plot(rates, [p["ms_ssim"] for p in points], style, label=name)
    for axis, label in zip(axes, ("PSNR (dB, RGB)", "MS-SSIM"), strict=True):
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.set_xlim(0, 2.0)
    axes[0].legend(fontsize="small")
    count = report["test_set"]["images"]
    figure.suptitle(f"bitmatch trained codecs vs JPEG (4:2:0, optimised) and WebP, {count} test images")
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)


def format_text(report: dict) -> str:
    """The report as a Markdown table (one row per rate point) followed by the BD-rates."""
    lines = ["| codec | point | bpp | PSNR (dB) | MS-SSIM |", "|---|---|---|---|---|"]
    for name, family in report["packages"].items():
        for index, point in enumerate(sorted(family["rd_points"], key=lambda p: p["bpp"]), start=1):
            label = f"q={point['quality']}" if "quality" in point else f"q{index}"
            lines.append(
                f"| {name} | {label} | {point['bpp']:.3f} | {point['psnr']:.2f} | {point['ms_ssim']:.4f} |"
            )
    lines += ["", "| BD-rate (test vs anchor) | PCHIP | Akima | MS-SSIM BD-rate |", "|---|---|---|---|"]
    for key, value in report["bd_rate"].items():
        if "error" in value:
            lines.append(f"| {key} | {value['error']} | | |")
        else:
            lines.append(
                f"| {key} | {value['bd_rate_pct']:+.2f}% | {value['bd_rate_pct_akima']:+.2f}% | "
                f"{value['bd_rate_ms_ssim_pct']:+.2f}% |"
            )
    return "\n".join(lines + table2_lines(report))


def table2_lines(report: dict) -> list[str]:
    """The layout of Galpin et al.'s Table 2 ("Entropy coding improvement for low-complexity compressive
    auto-encoders"): the BD-rate (PSNR, PCHIP) of each configuration against the base."""
    rows = [(label, report["bd_rate"].get(f"{key}_vs_{BASE}")) for key, label in TABLE2]
    rows = [(label, value) for label, value in rows if value is not None]
    if not rows:
        return []
    lines = ["", f"| Table 2: BD-rate vs base ({BASE}) | PSNR | MS-SSIM |", "|---|---|---|"]
    lines.append("| base: factorized, one CDF per channel | 0 | 0 |")
    for label, value in rows:
        if "error" in value:
            lines.append(f"| {label} | {value['error']} | |")
        else:
            lines.append(f"| {label} | {value['bd_rate_pct']:+.2f}% | {value['bd_rate_ms_ssim_pct']:+.2f}% |")
    return lines
