"""Building lowcomplexity packages (codec/lowcx.py): the latents of training images, the fitted context
model, the graphs and the manifest. `build_random` makes one from deterministic random weights (tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec import contexts_fit, networks
from codec.build import analysis_outputs, build_synthesis, canonical_json, tables_npz, weights_npz
from codec.contexts import ContextModel
from codec.entropy import _rint_symbols
from codec.errors import PackageError
from codec.lowcx import ACTIVATION_TABLES, Y_TABLES
from codec.package import ANALYSIS, CERTIFICATE, SYNTHESIS, WEIGHTS, write_package
from codec.vocabulary import Lowering, Precision

RANDOM_IMAGES, RANDOM_SIZE = 8, 128


def integer_latents(
    arch: networks.Architecture, weights: dict[str, np.ndarray], images: list[np.ndarray]
) -> np.ndarray:
    """round(g_a(x)) [B, M, h, w] int64 of images of one size, through the package's own analysis graph
    (ONNX Runtime, one thread, no graph optimisations)."""
    (y,) = analysis_outputs(networks.analysis_model(arch, weights), images, ("y",))
    return _rint_symbols(y).astype(np.int64)


def synthesis_graph(
    precision: str,
    arch: networks.Architecture,
    weights: dict[str, np.ndarray],
    calibration_y_hat: np.ndarray,
    lowering: str = Lowering.FLOAT64,
) -> tuple[bytes, dict | None]:
    """g_s as ONNX: float, or for `int16-full` the integer g_s of codec/intsynth.py (integer y_hat in,
    uint8 pixels out) calibrated on integer latents, with its certificate (None for a float g_s)."""
    if precision not in (Precision.FLOAT, Precision.INT16_FULL):
        raise PackageError(f"a lowcomplexity package is float or int16-full, not {precision}")
    return build_synthesis(precision, arch, weights, calibration_y_hat, lowering, input_bits=0)


def build_package(
    out_dir: str | Path,
    arch: networks.Architecture,
    weights: dict[str, np.ndarray],
    model: ContextModel,
    synthesis: tuple[bytes, dict | None],
    metadata: dict | None = None,
    store_weights: bool = True,
) -> str:
    """Write a lowcomplexity package coding y with `model`; returns its digest. `synthesis` is the g_s
    graph of `synthesis_graph` and its certificate: float (None) or integer (the package is int16-full)."""
    networks.check_weights(arch, weights)
    graph, certificate = synthesis
    files = {
        ANALYSIS: networks.analysis_model(arch, weights),
        SYNTHESIS: graph,
        Y_TABLES: tables_npz(model.tables),
    }
    if model.activation_tables is not None:
        files[ACTIVATION_TABLES] = tables_npz(model.activation_tables)
    if certificate is not None:
        files[CERTIFICATE] = canonical_json(certificate)
    if store_weights:
        files[WEIGHTS] = weights_npz(weights)
    manifest = {
        "precision": str(Precision.FLOAT if certificate is None else Precision.INT16_FULL),
        "architecture": arch.to_dict(),
        "contexts": model.to_json(),
        "y_tables_sha256": model.tables.sha256,
        **(metadata or {}),
    }
    return write_package(out_dir, manifest, files)


def build_random(
    out_dir: str | Path,
    n: int,
    m: int,
    seed: int,
    contexts: int = 4,
    activation: bool = True,
    precision: str = Precision.FLOAT,
) -> str:
    """A package from deterministic random weights; its context model (and an int16-full g_s) fitted on
    synthetic images of `seed`."""
    arch = networks.Architecture(n=n, m=m, family=networks.LOWCOMPLEXITY)
    weights = networks.random_weights(arch, seed)
    images = networks.synthetic_images(seed, RANDOM_IMAGES, RANDOM_SIZE)
    latents = integer_latents(arch, weights, images)
    model = contexts_fit.fit(latents, contexts, activation)
    synthesis = synthesis_graph(precision, arch, weights, latents)
    return build_package(out_dir, arch, weights, model, synthesis, {"weights": "random", "seed": seed})
