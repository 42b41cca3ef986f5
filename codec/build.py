"""Building codec packages: calibration latents, z tables, the three precisions of h_s, the package files.

Our own codec's packages come from float weights (`build_package`, `build_random`); the importers
(codec/importers/) reuse the calibration, the rate function and `build_hyper_synthesis` for theirs.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np

from codec import networks
from codec.entropy import FLOAT, LatentFormat
from codec.errors import PackageError
from codec.heads import Head, LevelHead
from codec.intsearch import RateFn, integerize_hs
from codec.layers import Layer
from codec.package import (
    ANALYSIS,
    CERTIFICATE,
    HYPER_SYNTHESIS,
    LEVEL_TABLES,
    SYNTHESIS,
    WEIGHTS,
    Z_TABLES,
    CodecPackage,
)
from codec.progress import SILENT, Progress
from codec.tables import CodeTables, code_bits
from codec.vocabulary import Lowering, Precision

CALIBRATION_IMAGES = 6
CALIBRATION_SIZE = 256
_Z_TAIL = 8.0  # factorized tables cover the channel's Laplace fit to +-8 scales before escaping
_Z_MIN_SCALE = 0.25


def analysis_latents(
    analysis_model: bytes, images: list[np.ndarray], progress: Progress = SILENT
) -> tuple[np.ndarray, np.ndarray]:
    """(y, z) of images through an analysis graph (ORT, one thread, no graph optimisations), batched;
    one progress step per image.

    The images must share one size.
    """
    y, z = analysis_outputs(analysis_model, images, ("y", "z"), progress)
    return y, z


def analysis_outputs(
    analysis_model: bytes, images: list[np.ndarray], names: tuple[str, ...], progress: Progress = SILENT
) -> list[np.ndarray]:
    """The named outputs of an analysis graph for images of one size (ORT, one thread, no graph
    optimisations), each concatenated over the images; one progress step per image."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(analysis_model, options, providers=["CPUExecutionProvider"])
    outputs: list[list[np.ndarray]] = [[] for _ in names]
    for image in images:
        values = session.run(list(names), {"x": networks.pad_image(image)})
        for collected, value in zip(outputs, values, strict=True):
            collected.append(value)
        progress.advance()
    return [np.concatenate(collected) for collected in outputs]


def calibration_latents(
    arch: networks.Architecture,
    weights: dict[str, np.ndarray],
    seed: int,
    images: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(y, z) of the calibration images: given `images` (one size), or the synthetic ones of `seed`."""
    if images is None:
        images = networks.synthetic_images(seed, CALIBRATION_IMAGES, CALIBRATION_SIZE)
    return analysis_latents(networks.analysis_model(arch, weights), images)


def y_rate(tables: CodeTables, y: np.ndarray, fmt: LatentFormat) -> RateFn:
    """Bits of the calibration latents y coded under given scale indexes and means (in latent units)."""

    def rate(scale_index: np.ndarray, mean: np.ndarray | None) -> float:
        if fmt.kind == FLOAT:  # CompressAI's symbols: round(y - mean) in float32
            residual = y.astype(np.float32) - (np.float32(0) if mean is None else mean.astype(np.float32))
        else:
            residual = y.astype(np.float64) - (0.0 if mean is None else mean)
        return code_bits(tables, scale_index, np.rint(residual))

    return rate


def factorized_z_tables(z: np.ndarray) -> CodeTables:
    """Per-channel discretised Laplace tables for z_hat, fitted to calibration z_hat [B, N, h, w]."""
    from codec.tables import tables_from_pmfs

    pmfs, offsets = [], []
    for channel in np.moveaxis(np.asarray(z, np.float64), 1, 0).reshape(z.shape[1], -1):
        centre = float(np.median(channel))
        spread = max(float(np.mean(np.abs(channel - centre))), _Z_MIN_SCALE)
        radius = max(2, int(np.ceil(_Z_TAIL * spread)))
        offset = int(np.rint(centre)) - radius
        pmfs.append(_laplace_code_vector(centre, spread, offset, 2 * radius + 1))
        offsets.append(offset)
    return tables_from_pmfs(pmfs, offsets)


def _laplace_code_vector(centre: float, spread: float, offset: int, length: int) -> np.ndarray:
    """Masses of the escape / value / escape symbols of one table (layout of docs/architecture.md)."""
    edges = offset + 0.5 + np.arange(length - 1)  # boundaries between consecutive symbols
    t = (edges - centre) / spread
    cdf = np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0)), 1 - 0.5 * np.exp(-np.maximum(t, 0)))
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def tables_npz(tables: CodeTables) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tables.npz"
        tables.save_npz(path)
        return path.read_bytes()


def weights_npz(weights: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: weights[name] for name in sorted(weights)})
    return buffer.getvalue()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"


def load_weights(package: CodecPackage) -> dict[str, np.ndarray]:
    """The float weights stored in a package (for re-integerisation)."""
    if WEIGHTS not in package.manifest["files"]:
        raise PackageError(
            f"package {package.digest[:12]} was built without {WEIGHTS}; "
            "its float twin of the same rate point carries them"
        )
    with np.load(io.BytesIO(package.read(WEIGHTS)), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def build_hyper_synthesis(
    precision: str,
    h_s: list[Layer],
    head: Head,
    calibration_z_hat: np.ndarray,
    rate: RateFn | None = None,
    input_bits: int = 0,
    float_input: bool = False,
    lowering: str = Lowering.FLOAT64,
) -> tuple[bytes, dict | None]:
    """h_s as ONNX in the given precision (an int16 h_s in the given lowering), and its overflow certificate
    (None for the float package)."""
    from codec.hyper import build_hs_onnx
    from codec.intnet import certify

    if precision == Precision.FLOAT:
        return build_hs_onnx(
            "float", h_s=h_s, head=head, float_input=float_input, input_bits=input_bits
        ), None
    int_hs = integerize_hs(h_s, calibration_z_hat, head, precision, rate, input_bits)
    return build_hs_onnx(precision, int_hs=int_hs, lowering=lowering), certify(int_hs, lowering)


def build_synthesis(
    precision: str,
    arch: networks.Architecture,
    weights: dict[str, np.ndarray],
    calibration_y: np.ndarray,
    lowering: str = Lowering.FLOAT64,
    input_bits: int | None = None,
) -> tuple[bytes, dict | None]:
    """g_s as ONNX: the float graph, or for `int16-full` the integer g_s (codec/intsynth.py) calibrated on
    the latents y and lowered like h_s, with its certificate (None for a float g_s). Its input y_hat is in
    units of 2^-input_bits (default: the architecture's mean_bits; 0 for integer latents)."""
    if not Precision(precision).integer_synthesis:
        return networks.synthesis_model(arch, weights), None
    from codec.intsynth import certify_gs
    from codec.intsynth_graph import build_gs_onnx
    from codec.intsynth_search import integerize_gs

    g_s = networks.bind(arch, weights)["g_s"]
    bits = arch.mean_bits if input_bits is None else input_bits
    int_gs = integerize_gs(g_s, calibration_y, bits)
    return build_gs_onnx(int_gs, lowering), certify_gs(int_gs, lowering)


def build_package(
    out_dir: str | Path,
    precision: str,
    arch: networks.Architecture,
    weights: dict[str, np.ndarray],
    calibration_seed: int = 0,
    z_tables: CodeTables | None = None,
    metadata: dict | None = None,
    calibration_images: list[np.ndarray] | None = None,
    store_weights: bool = True,
    calibration_name: str | None = None,
    lowering: str = Lowering.FLOAT64,
) -> str:
    """Build a codec package directory from float weights; returns its digest.

    `z_tables` are the factorized tables of z (a trained package supplies its learned pmfs); by default they
    are fitted to the calibration latents. int16/int8 h_s are integerised on the same calibration latents
    (synthetic images of `calibration_seed` unless `calibration_images`, all of one size, are given, named
    `calibration_name` in the manifest), scored by the rate of the calibration y under the level tables.
    `store_weights=False` leaves out the float weights file (the graphs do not need it), so packages of
    several precisions built from one set of weights can keep a single copy. An int16 package's h_s takes
    `lowering` (codec/vocabulary.py), named in the manifest as `hs_lowering` unless it is `float64`.
    """
    from codec.package import PRECISIONS, write_package
    from codec.tables import gaussian_level_tables

    if precision not in PRECISIONS:
        raise PackageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if lowering != Lowering.FLOAT64 and Precision(precision).hs_precision != Precision.INT16:
        raise PackageError(f"the h_s lowering {lowering} is for int16 packages, not {precision}")
    networks.check_weights(arch, weights)
    y, z = calibration_latents(arch, weights, calibration_seed, calibration_images)
    z_hat = np.rint(z)  # tables and h_s integerisation see only the integers the codec will code
    if z_tables is None:
        z_tables = factorized_z_tables(z_hat)
    level_tables, _ = gaussian_level_tables(arch.levels, arch.sigma_min, arch.sigma_max)
    rate = y_rate(level_tables, y, LatentFormat(mean_bits=arch.mean_bits))
    head = LevelHead(arch.levels, arch.mean_bits)
    hyper_model, certificate = build_hyper_synthesis(
        Precision(precision).hs_precision,
        networks.hyper_synthesis(arch, weights),
        head,
        z_hat,
        rate,
        lowering=lowering,
    )
    synthesis_model, gs_certificate = build_synthesis(precision, arch, weights, y, lowering)
    if gs_certificate is not None:
        certificate = {**certificate, "g_s": gs_certificate}
    files = {
        ANALYSIS: networks.analysis_model(arch, weights),
        SYNTHESIS: synthesis_model,
        HYPER_SYNTHESIS: hyper_model,
        LEVEL_TABLES: tables_npz(level_tables),
        Z_TABLES: tables_npz(z_tables),
        CERTIFICATE: canonical_json(certificate),
    }
    if store_weights:
        files[WEIGHTS] = weights_npz(weights)
    calibration = (
        {"calibration": calibration_name} if calibration_name else {"calibration_seed": calibration_seed}
    )
    manifest = {
        "precision": precision,
        "N": arch.levels,
        "sigma_range": [arch.sigma_min, arch.sigma_max],
        "architecture": arch.to_dict(),
        **calibration,
        "level_tables_sha256": level_tables.sha256,
        "z_tables_sha256": z_tables.sha256,
        **({} if lowering == Lowering.FLOAT64 else {"hs_lowering": str(lowering)}),
        **(metadata or {}),
    }
    return write_package(out_dir, manifest, files)


def build_random(
    out_dir: str | Path,
    precision: str,
    n: int,
    m: int,
    seed: int,
    levels: int = 64,
    lowering: str = Lowering.FLOAT64,
) -> str:
    """A package with deterministic random weights; every precision built from one seed shares weights."""
    arch = networks.Architecture(n=n, m=m, levels=levels)
    weights = networks.random_weights(arch, seed)
    metadata = {"weights": "random", "seed": seed}
    return build_package(
        out_dir, precision, arch, weights, calibration_seed=seed, metadata=metadata, lowering=lowering
    )
