"""Import a codec not written with CompressAI: its four ONNX graphs and its entropy model, from a spec.

The spec (JSON, or TOML) names, relative to itself:

    [graphs]            g_a: x [1, 3, H, W] -> y;  h_a: y -> z;  h_s: z_hat -> [1, C, 4h, 4w];
    g_a = "g_a.onnx"    g_s: y_hat -> x_hat (one float input and one float output each; images in
    h_a = "h_a.onnx"    [0, 1], padded to a multiple of 64)
    h_s = "h_s.onnx"
    g_s = "g_s.onnx"

    [entropy]
    model = "gaussian"          # CompressAI-style: h_s outputs sigma (and the mean), scale-table indexes
    scale_table = [...]         # optional: CompressAI's default 64 log-spaced scales from 0.11 to 256
    scale_bound = 0.11
    mean = true                 # h_s outputs [sigma; mean] (2M channels) rather than sigma alone
    y_tables = "y_tables.npz"   # optional: CompressAI-layout CDFs per scale; default: bitmatch's tables
    # or: model = "levels"      # paper 000: h_s outputs [u; mean], sigma = T(u), N levels
    #     levels = 64, sigma_min = 0.11, sigma_max = 256

    [z]
    tables = "z_tables.npz"     # quantized_cdf, cdf_length, offset (CompressAI layout) and medians

h_s is read into layers by codec/importers/onnx_hs.py; codec/importers/onnx_package.py builds the packages.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from codec.entropy import FIXED, FLOAT, LatentFormat
from codec.errors import PackageError
from codec.heads import Head, LevelHead, ScaleTableHead
from codec.importers.onnx_hs import UnsupportedOp, hs_layers
from codec.importers.tables import compressai_tables
from codec.layers import Layer
from codec.tables import CodeTables, gaussian_level_tables
from codec.vocabulary import Precision

Z_BITS = MEAN_BITS = 8
GRAPHS = ("g_a", "h_a", "h_s", "g_s")


class SpecError(PackageError):
    code = "bad-import-spec"


@dataclass
class OnnxCodec:
    graphs: dict[str, onnx.ModelProto]
    h_s: list[Layer] | None  # None: h_s is not a chain the integeriser knows
    h_s_problem: str  # why, when h_s is None
    head_float: Head
    head_fixed: Head
    y_tables: CodeTables
    z_tables: CodeTables
    medians: np.ndarray
    model: str  # gaussian | levels
    spec_sha256: dict[str, str]

    def latent_format(self, precision: str) -> LatentFormat:
        has_mean = self.head_fixed.has_mean
        if precision == Precision.FLOAT and self.model == "gaussian":
            return LatentFormat(FLOAT, "float" if has_mean else "none", MEAN_BITS, 0)
        return LatentFormat(FIXED, "fixed" if has_mean else "none", MEAN_BITS, Z_BITS)


def read_spec(path: str | Path) -> OnnxCodec:
    path = Path(path)
    spec = _load_spec(path)
    graphs = {name: _load_graph(path.parent, spec, name) for name in GRAPHS}
    entropy, z_spec = spec.get("entropy", {}), spec.get("z", {})
    model = entropy.get("model", "gaussian")
    head_float, head_fixed, y_tables = _entropy_model(path.parent, entropy, model)
    z_tables, medians = _z_tables(path.parent, z_spec)
    try:
        h_s, problem = hs_layers(graphs["h_s"]), ""
    except UnsupportedOp as exc:
        h_s, problem = None, str(exc)
    hashes = {name: _sha256(path.parent / spec["graphs"][name]) for name in GRAPHS}
    return OnnxCodec(graphs, h_s, problem, head_float, head_fixed, y_tables, z_tables, medians, model, hashes)


def _load_spec(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read the import spec {path}: {exc.strerror or exc}") from None
    try:
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("graphs"), dict):
        raise SpecError(f"{path}: the spec needs a [graphs] table naming {', '.join(GRAPHS)}")
    return spec


def _load_graph(root: Path, spec: dict, name: str) -> onnx.ModelProto:
    file = spec["graphs"].get(name)
    if not isinstance(file, str):
        raise SpecError(f"the spec names no ONNX file for {name}")
    try:
        model = onnx.load(root / file)
        onnx.checker.check_model(model)
    except (OSError, onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise SpecError(f"{name} ({file}): not a valid ONNX model: {exc}") from None
    if len(model.graph.input) - len(model.graph.initializer) > 1 or len(model.graph.output) != 1:
        inputs = [
            i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
        ]
        if len(inputs) != 1 or len(model.graph.output) != 1:
            raise SpecError(f"{name} ({file}) must have one input and one output")
    return model


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _compressai_default_scale_table() -> tuple[float, ...]:
    return tuple(float(v) for v in np.exp(np.linspace(math.log(0.11), math.log(256), 64)).astype(np.float32))


def _entropy_model(root: Path, entropy: dict, model: str) -> tuple[Head, Head, CodeTables]:
    mean_bits = MEAN_BITS if entropy.get("mean", True) else None
    if model == "levels":
        levels = int(entropy.get("levels", 64))
        tables, _ = gaussian_level_tables(
            levels, float(entropy.get("sigma_min", 0.11)), float(entropy.get("sigma_max", 256.0))
        )
        head = LevelHead(levels, MEAN_BITS)
        return head, head, tables
    if model != "gaussian":
        raise SpecError(f"unknown entropy model {model!r}; choose gaussian or levels")
    table = tuple(float(np.float32(t)) for t in entropy.get("scale_table", _compressai_default_scale_table()))
    try:
        head = ScaleTableHead(table, float(np.float32(entropy.get("scale_bound", 0.11))), mean_bits)
    except ValueError as exc:
        raise SpecError(f"entropy.scale_table: {exc}") from None
    if "y_tables" in entropy:
        arrays = _npz(root / entropy["y_tables"], ("quantized_cdf", "cdf_length", "offset"))
        tables = compressai_tables(
            arrays["quantized_cdf"], arrays["cdf_length"], arrays["offset"], "y_tables"
        )
        if tables.num_tables != len(table):
            raise SpecError(f"y_tables has {tables.num_tables} tables for {len(table)} scale-table entries")
    else:
        tables = _gaussian_tables(table)
    return head, head, tables


def _gaussian_tables(scale_table: tuple[float, ...]) -> CodeTables:
    """bitmatch's zero-mean discretised Gaussian tables for the given scales (escapes beyond R_k)."""
    from codec.tables import gaussian_code_vector, level_radius, tables_from_pmfs

    rho = np.asarray(scale_table, np.float64)
    radius = level_radius(rho)
    pmfs = [gaussian_code_vector(float(r), int(big)) for r, big in zip(rho, radius, strict=True)]
    return tables_from_pmfs(pmfs, -radius)


def _npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in keys if key not in data.files]
            if missing:
                raise SpecError(f"{path.name} lacks {', '.join(missing)}")
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None


def _z_tables(root: Path, z_spec: dict) -> tuple[CodeTables, np.ndarray]:
    if "tables" not in z_spec:
        raise SpecError("the spec needs [z] tables = an npz of quantized_cdf, cdf_length, offset and medians")
    arrays = _npz(root / z_spec["tables"], ("quantized_cdf", "cdf_length", "offset"))
    tables = compressai_tables(arrays["quantized_cdf"], arrays["cdf_length"], arrays["offset"], "z tables")
    medians = np.asarray(arrays.get("medians", np.zeros(tables.num_tables)), np.float32)
    if medians.shape != (tables.num_tables,):
        raise SpecError(f"z medians have shape {medians.shape}, expected ({tables.num_tables},)")
    return tables, medians
