"""Building lowcomplexity packages (codec/lowcx.py): the latents of training images, the fitted context
model, the graphs and the manifest. `build_random` makes one from deterministic random weights (tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec import contexts_fit, networks
from codec.build import tables_npz, weights_npz
from codec.codec import ANALYSIS, SYNTHESIS, WEIGHTS
from codec.contexts import ContextModel
from codec.entropy import _rint_symbols
from codec.lowcx import ACTIVATION_TABLES, Y_TABLES
from codec.package import write_package
from codec.vocabulary import Precision

RANDOM_IMAGES, RANDOM_SIZE = 8, 128


def integer_latents(
    arch: networks.Architecture, weights: dict[str, np.ndarray], images: list[np.ndarray]
) -> np.ndarray:
    """round(g_a(x)) [B, M, h, w] int64 of images of one size, through the package's own analysis graph
    (ONNX Runtime, one thread, no graph optimisations)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = networks.analysis_model(arch, weights)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    y = [session.run(["y"], {"x": networks.pad_image(image)})[0] for image in images]
    return _rint_symbols(np.concatenate(y)).astype(np.int64)


def build_package(
    out_dir: str | Path,
    arch: networks.Architecture,
    weights: dict[str, np.ndarray],
    model: ContextModel,
    metadata: dict | None = None,
    store_weights: bool = True,
) -> str:
    """Write a lowcomplexity package (float g_a and g_s) coding y with `model`; returns its digest."""
    networks.check_weights(arch, weights)
    files = {
        ANALYSIS: networks.analysis_model(arch, weights),
        SYNTHESIS: networks.synthesis_model(arch, weights),
        Y_TABLES: tables_npz(model.tables),
    }
    if model.activation_tables is not None:
        files[ACTIVATION_TABLES] = tables_npz(model.activation_tables)
    if store_weights:
        files[WEIGHTS] = weights_npz(weights)
    manifest = {
        "precision": Precision.FLOAT,
        "architecture": arch.to_dict(),
        "contexts": model.to_json(),
        "y_tables_sha256": model.tables.sha256,
        **(metadata or {}),
    }
    return write_package(out_dir, manifest, files)


def build_random(
    out_dir: str | Path, n: int, m: int, seed: int, contexts: int = 4, activation: bool = True
) -> str:
    """A package from deterministic random weights, its context model fitted on synthetic images of `seed`."""
    arch = networks.Architecture(n=n, m=m, family=networks.LOWCOMPLEXITY)
    weights = networks.random_weights(arch, seed)
    images = networks.synthetic_images(seed, RANDOM_IMAGES, RANDOM_SIZE)
    model = contexts_fit.fit(integer_latents(arch, weights, images), contexts, activation)
    return build_package(out_dir, arch, weights, model, {"weights": "random", "seed": seed})
