"""Trained weights -> codec packages, through the same builder as `bitmatch codec build-random`.

Training writes one `qI.npz` per rate point (numpy only, no torch needed here): the flat network weights of
codec/networks.py, the learned factorized z prior (per channel Laplace location and log scale) and a JSON
`meta` entry (architecture, lambda, seed). `build_rate_point` turns that into four packages that share the
weights: int16 (paper 003) and int8 (paper 002) hyper-synthesis, integerised by `codec.codec.build_package`
on its calibration latents, int16-full (the int16 h_s and the integer g_s of codec/intsynth.py), and the
float twin. The only differences from a random package are the weights
and the z tables, which come from the learned prior instead of a fit to calibration latents.

Layout: `OUT/PRECISION/qI/` (I = 1 lowest rate .. 4), so each precision is one family of rate points.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from codec import networks
from codec.build import build_package
from codec.progress import SILENT, Progress
from codec.tables import CodeTables, tables_from_pmfs
from codec.vocabulary import Precision

PRECISIONS = (Precision.INT16, Precision.INT8, Precision.FLOAT, Precision.INT16_FULL)
INTEGER_PRECISIONS = (Precision.INT16, Precision.INT8, Precision.INT16_FULL)
WEIGHTS_PRECISION = Precision.FLOAT  # the one package per rate point that keeps a copy of the float weights
Z_LOC, Z_LOG_SCALE, META = "z_prior.loc", "z_prior.log_scale", "meta"
Z_MIN_SCALE = 0.05  # the training density clamps the Laplace scale to this
Z_TAIL = 10.0  # the z tables cover +-10 scales around the location, escapes beyond


def save_weights(
    path: Path, weights: dict[str, np.ndarray], z_loc: np.ndarray, z_log_scale: np.ndarray, meta: dict
) -> None:
    arrays = {name: np.asarray(value, np.float32) for name, value in weights.items()}
    arrays[Z_LOC] = np.asarray(z_loc, np.float64)
    arrays[Z_LOG_SCALE] = np.asarray(z_log_scale, np.float64)
    arrays[META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def load_weights(
    path: Path,
) -> tuple[networks.Architecture, dict[str, np.ndarray], np.ndarray, np.ndarray, dict]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data[META]).decode())
        weights = {name: data[name] for name in data.files if name not in (Z_LOC, Z_LOG_SCALE, META)}
        z_loc, z_log_scale = data[Z_LOC], data[Z_LOG_SCALE]
    arch = networks.Architecture.from_dict(meta["architecture"])
    networks.check_weights(arch, weights)
    return arch, weights, z_loc, z_log_scale, meta


def laplace_code_vectors(
    loc: np.ndarray, log_scale: np.ndarray, tail: float = Z_TAIL
) -> tuple[list[np.ndarray], list[int]]:
    """Per channel: masses of (underflow escape, values offset+1 .. offset+L-2, overflow escape), offset.

    The masses are those of the training density, a discretised Laplace: value v has mass
    F(v + 1/2) - F(v - 1/2), the escapes the two tails.
    """
    pmfs, offsets = [], []
    scales = np.maximum(np.exp(np.asarray(log_scale, np.float64)), Z_MIN_SCALE)
    for centre, spread in zip(np.asarray(loc, np.float64), scales, strict=True):
        radius = max(2, math.ceil(tail * spread))
        offset = round(centre) - radius
        edges = offset + 0.5 + np.arange(2 * radius)  # boundaries between the 2R + 1 symbols
        t = (edges - centre) / spread
        cdf = np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0)), 1 - 0.5 * np.exp(-np.maximum(t, 0)))
        pmfs.append(np.diff(np.concatenate([[0.0], cdf, [1.0]])))
        offsets.append(offset)
    return pmfs, offsets


def z_tables(loc: np.ndarray, log_scale: np.ndarray) -> CodeTables:
    return tables_from_pmfs(*laplace_code_vectors(loc, log_scale))


def build_rate_point(
    weights_path: Path,
    out_root: Path,
    rate: int,
    precisions: tuple[str, ...] = PRECISIONS,
    progress: Progress = SILENT,
) -> list[dict]:
    """Build OUT/PRECISION/qRATE for every precision from one weights file; returns name and digest rows."""
    arch, weights, z_loc, z_log_scale, meta = load_weights(weights_path)
    metadata = {
        "weights": "trained",
        "rate_point": rate,
        "lambda": meta["lambda"],
        "seed": meta["seed"],
        "training": f"python -m codec.train all --seed {meta['seed']}",
    }
    return _build(out_root, rate, arch, weights, z_tables(z_loc, z_log_scale), metadata, precisions, progress)


def _build(
    out_root: Path,
    rate: int,
    arch: networks.Architecture,
    weights: dict[str, np.ndarray],
    tables: CodeTables,
    metadata: dict,
    precisions: tuple[str, ...],
    progress: Progress,
) -> list[dict]:
    """The packages of one rate point, their integer h_s calibrated on the bundled calibration set; one
    progress step per package."""
    from codec.importers import calibration

    images, calibration_name = calibration.images(None)
    rows = []
    for precision in precisions:
        digest = build_package(
            out_root / precision / f"q{rate}",
            precision,
            arch,
            weights,
            z_tables=tables,
            metadata=metadata,
            calibration_images=images,
            calibration_name=calibration_name,
            store_weights=precision == WEIGHTS_PRECISION,
        )
        rows.append({"name": f"{precision}/q{rate}", "digest": digest, "lambda": metadata["lambda"]})
        progress.advance()
    return rows


def rebuild_integer(
    packages_dir: Path,
    precisions: tuple[str, ...] = INTEGER_PRECISIONS,
    progress: Progress = SILENT,
) -> list[dict]:
    """Re-integerise the shipped families from the weights their float twins carry (no training needed)."""
    from codec.build import load_weights as package_weights
    from codec.package import Z_TABLES, CodecPackage

    rows = []
    twins = sorted((Path(packages_dir) / WEIGHTS_PRECISION).glob("q*/manifest.json"))
    progress.add_total(len(twins) * len(precisions))
    for twin in twins:
        package = CodecPackage.load(twin.parent)
        manifest = package.manifest
        arch = networks.Architecture.from_dict(manifest["architecture"])
        tables = CodeTables.load_npz(io.BytesIO(package.read(Z_TABLES)))
        metadata = {key: manifest[key] for key in ("weights", "rate_point", "lambda", "seed", "training")}
        weights = package_weights(package)
        rate = int(manifest["rate_point"])
        rows += _build(Path(packages_dir), rate, arch, weights, tables, metadata, precisions, progress)
    return rows


def export_all(work_dir: Path, out_root: Path, progress: Progress = SILENT) -> list[dict]:
    """Every rate point found in work_dir (q1.npz .. q4.npz), in every precision."""
    found = [(rate, Path(work_dir) / f"q{rate}.npz") for rate in range(1, 5)]
    found = [(rate, path) for rate, path in found if path.exists()]
    progress.add_total(len(found) * len(PRECISIONS))
    rows = []
    for rate, path in found:
        rows.extend(build_rate_point(path, Path(out_root), rate, progress=progress))
    return rows
