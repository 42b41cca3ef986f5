"""Import a CompressAI checkpoint as three bitmatch packages: its float model, and int16 / int8 entropy paths.

Architectures (CompressAI's names; Balle, Minnen, Singh, Hwang and Johnston, "Variational image compression
with a scale hyperprior", and Minnen, Balle and Toderici, "Joint autoregressive and hierarchical priors for
learned image compression"):

    bmshj2018-hyperprior  g_a / g_s with GDN / IGDN, h_a on |y| with ReLU, h_s with ReLU -> M scales
    mbt2018-mean          the same g_a / g_s, h_a and h_s with LeakyReLU(0.01), h_s -> M scales and M means

N and M are read off the weights (g_a.0 and g_a.6). Every package has the same g_a / h_a / g_s, computed as
CompressAI computes them (full GDN with its beta / gamma reparameterisation, x * rsqrt(beta + gamma x^2)).
The entropy path:

- `float` keeps CompressAI's float path on purpose: the entropy bottleneck's medians and quantized CDFs for
  z (symbols round(z - median), z_hat = symbols + median), the Gaussian conditional's scale table and
  `build_indexes` for y (symbols round(y - mean), y_hat = symbols + mean), all in float32. Its cross-device
  failures are the ones users meet in the field.
- `int16` / `int8` integerise h_s (scales and, for mbt2018-mean, means) with codec/intnet.py on calibration
  images; the scale index comes out of integer comparisons against integer thresholds, the mean in units of
  2^-8, and z_hat in fixed point with the medians rounded to 2^-8. The scale table and the CDFs are the same,
  so only the rounding of h_s differs from the float package.

The CDF buffers of the checkpoint (`_quantized_cdf`, `_cdf_length`, `_offset`) are reused as they are,
converted to bitmatch's table layout (codec/importers/tables.py) and coded with bitmatch's rANS.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec import networks
from codec.build import analysis_latents, build_hyper_synthesis, canonical_json, tables_npz, y_rate
from codec.entropy import FIXED, FLOAT, FactorizedZ, LatentFormat
from codec.heads import ScaleTableHead
from codec.importers.tables import compressai_tables
from codec.importers.torchfile import CheckpointError, load_checkpoint, state_dict_of
from codec.layers import Layer, LayerSpec
from codec.package import (
    ANALYSIS,
    CERTIFICATE,
    HYPER_SYNTHESIS,
    LEVEL_TABLES,
    SYNTHESIS,
    Z_TABLES,
    write_package,
)
from codec.progress import SILENT, Progress
from codec.tables import CodeTables
from codec.vocabulary import Precision

COMPRESSAI_VERSION = "1.2.8"
ARCHITECTURES = ("bmshj2018-hyperprior", "mbt2018-mean")
PRECISIONS = (Precision.FLOAT, Precision.INT16, Precision.INT8)
Z_BITS = MEAN_BITS = 8
COMPRESSAI_LEAKY = 0.01  # torch.nn.LeakyReLU's default, as CompressAI uses it
GDN_SUFFIXES = (
    "beta",
    "gamma",
    "beta_reparam.pedestal",
    "beta_reparam.lower_bound.bound",
    "gamma_reparam.pedestal",
    "gamma_reparam.lower_bound.bound",
)
_EB, _GC = "entropy_bottleneck", "gaussian_conditional"
_UNUSED_PREFIXES = (f"{_EB}.matrices.", f"{_EB}.biases.", f"{_EB}.factors.")  # the density, not needed
_UNUSED_KEYS = (
    f"{_EB}.target",
    f"{_EB}.likelihood_lower_bound.bound",
    f"{_GC}.likelihood_lower_bound.bound",
    f"{_GC}.scale_bound",
)
_OLD_KEYS = {"_bias": "biases", "_matrix": "matrices", "_factor": "factors"}  # CompressAI < 1.1


def layer_specs(arch: str, n: int, m: int) -> dict[str, list[LayerSpec]]:
    """The four networks of a CompressAI architecture; layer i is module 2i of its nn.Sequential."""
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}; bitmatch imports {', '.join(ARCHITECTURES)}")
    act = {"act": "relu"} if arch == "bmshj2018-hyperprior" else {"act": "leaky", "slope": COMPRESSAI_LEAKY}
    g_a = [
        LayerSpec("conv", 3, n, 5, 2, "gdn"),
        LayerSpec("conv", n, n, 5, 2, "gdn"),
        LayerSpec("conv", n, n, 5, 2, "gdn"),
        LayerSpec("conv", n, m, 5, 2),
    ]
    g_s = [
        LayerSpec("convT", m, n, 5, 2, "igdn"),
        LayerSpec("convT", n, n, 5, 2, "igdn"),
        LayerSpec("convT", n, n, 5, 2, "igdn"),
        LayerSpec("convT", n, 3, 5, 2),
    ]
    h_a = [
        LayerSpec("conv", m, n, 3, 1, **act),
        LayerSpec("conv", n, n, 5, 2, **act),
        LayerSpec("conv", n, n, 5, 2),
    ]
    if arch == "bmshj2018-hyperprior":
        h_s = [
            LayerSpec("convT", n, n, 5, 2, **act),
            LayerSpec("convT", n, n, 5, 2, **act),
            LayerSpec("conv", n, m, 3, 1, **act),
        ]
    else:
        mid = m * 3 // 2
        h_s = [
            LayerSpec("convT", n, m, 5, 2, **act),
            LayerSpec("convT", m, mid, 5, 2, **act),
            LayerSpec("conv", mid, 2 * m, 3, 1),
        ]
    return {"g_a": g_a, "h_a": h_a, "h_s": h_s, "g_s": g_s}


@dataclass
class CompressAIModel:
    """A checkpoint read into bitmatch's terms."""

    arch: str
    n: int
    m: int
    networks: dict[str, list[Layer]]
    z_tables: CodeTables
    y_tables: CodeTables
    medians: np.ndarray  # float32 [N]
    scale_table: tuple[float, ...]
    scale_bound: float
    checkpoint_sha256: str

    @property
    def has_mean(self) -> bool:
        return self.arch == "mbt2018-mean"

    def head(self, precision: str) -> ScaleTableHead:
        return ScaleTableHead(self.scale_table, self.scale_bound, MEAN_BITS if self.has_mean else None)

    def latent_format(self, precision: str) -> LatentFormat:
        if precision == Precision.FLOAT:
            return LatentFormat(FLOAT, "float" if self.has_mean else "none", MEAN_BITS, 0)
        return LatentFormat(FIXED, "fixed" if self.has_mean else "none", MEAN_BITS, Z_BITS)


def read_checkpoint(path: str | Path, arch: str) -> CompressAIModel:
    """Read and check a CompressAI state dict (plain, or the zoo's `{"state_dict": ...}`)."""
    path = Path(path)
    layer_specs(arch, 1, 1)  # refuses an unknown architecture before reading anything
    state = _remap_old_keys(state_dict_of(load_checkpoint(path), path))
    n, m = _channels(state, path)
    specs = layer_specs(arch, n, m)
    _check_keys(state, arch, specs, path)
    nets = {
        net: [_layer(state, net, index, spec) for index, spec in enumerate(layers)]
        for net, layers in specs.items()
    }
    scale_table = tuple(float(t) for t in _array(state, f"{_GC}.scale_table", np.float32))
    return CompressAIModel(
        arch,
        n,
        m,
        nets,
        z_tables=_tables(state, _EB, n, path),
        y_tables=_tables(state, _GC, len(scale_table), path),
        medians=np.ascontiguousarray(_array(state, f"{_EB}.quantiles", np.float32)[:, 0, 1]),
        scale_table=scale_table,
        scale_bound=float(_array(state, f"{_GC}.lower_bound_scale.bound", np.float32)[0]),
        checkpoint_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def _remap_old_keys(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """entropy_bottleneck._bias0 -> entropy_bottleneck.biases.0, as CompressAI's own loader does."""
    remapped = {}
    for key, value in state.items():
        head, _, tail = key.partition(".")
        for old, new in _OLD_KEYS.items():
            if head == _EB and tail.startswith(old):
                key = f"{_EB}.{new}.{tail[len(old) :]}"
        remapped[key] = value
    return remapped


def _channels(state: dict[str, np.ndarray], path: Path) -> tuple[int, int]:
    for key in ("g_a.0.weight", "g_a.6.weight"):
        if key not in state:
            raise CheckpointError(f"{path.name}: the checkpoint lacks {key}, so N and M cannot be read")
        if state[key].ndim != 4:
            raise CheckpointError(
                f"{path.name}: {key} has shape {tuple(state[key].shape)}, not a 4-d conv weight"
            )
    return int(state["g_a.0.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])


def expected_shapes(
    arch: str, specs: dict[str, list[LayerSpec]], n: int
) -> dict[str, tuple[int, ...] | None]:
    """Every key the importer reads, with its shape (None: any shape, checked when read)."""
    shapes: dict[str, tuple[int, ...] | None] = {}
    for net, layers in specs.items():
        for index, spec in enumerate(layers):
            shapes[f"{net}.{2 * index}.weight"] = spec.weight_shape()
            shapes[f"{net}.{2 * index}.bias"] = (spec.c_out,)
            if spec.act in ("gdn", "igdn"):
                c = spec.c_out
                for suffix in GDN_SUFFIXES:
                    shapes[f"{net}.{2 * index + 1}.{suffix}"] = {"beta": (c,), "gamma": (c, c)}.get(
                        suffix, (1,)
                    )
    for module in (_EB, _GC):
        for buffer in ("_quantized_cdf", "_cdf_length", "_offset"):
            shapes[f"{module}.{buffer}"] = None
    shapes[f"{_EB}.quantiles"] = (n, 1, 3)
    shapes[f"{_GC}.scale_table"] = None
    shapes[f"{_GC}.lower_bound_scale.bound"] = (1,)
    return shapes


def _check_keys(
    state: dict[str, np.ndarray], arch: str, specs: dict[str, list[LayerSpec]], path: Path
) -> None:
    expected = expected_shapes(arch, specs, specs["h_a"][-1].c_out)
    for key, shape in expected.items():
        if key not in state:
            raise CheckpointError(f"{path.name}: the checkpoint lacks {key}, which {arch} needs")
        if shape is not None and tuple(state[key].shape) != shape:
            raise CheckpointError(
                f"{path.name}: {key} has shape {tuple(state[key].shape)}, {arch} with "
                f"N={specs['h_a'][-1].c_out}, M={specs['g_a'][-1].c_out} needs {shape}"
            )
    for key in state:
        if key not in expected and key not in _UNUSED_KEYS and not key.startswith(_UNUSED_PREFIXES):
            raise CheckpointError(f"{path.name}: unexpected key {key}: the checkpoint is not a plain {arch}")


def _array(state: dict[str, np.ndarray], key: str, dtype: type) -> np.ndarray:
    value = np.asarray(state[key])
    if value.dtype.kind not in "fiu" or not np.all(np.isfinite(value)):
        raise CheckpointError(f"{key} holds {value.dtype} values that are not all finite numbers")
    return value.astype(dtype)


def _layer(state: dict[str, np.ndarray], net: str, index: int, spec: LayerSpec) -> Layer:
    prefix = f"{net}.{2 * index}"
    weight, bias = _array(state, f"{prefix}.weight", np.float32), _array(state, f"{prefix}.bias", np.float32)
    if spec.act not in ("gdn", "igdn"):
        return Layer(spec, weight, bias)
    gdn = f"{net}.{2 * index + 1}"
    return Layer(
        spec, weight, bias, _reparameterised(state, gdn, "beta"), _reparameterised(state, gdn, "gamma")
    )


def _reparameterised(state: dict[str, np.ndarray], gdn: str, name: str) -> np.ndarray:
    """CompressAI's NonNegativeParametrizer forward, in float32: max(raw, bound)^2 - pedestal."""
    raw = _array(state, f"{gdn}.{name}", np.float32)
    bound = _array(state, f"{gdn}.{name}_reparam.lower_bound.bound", np.float32)[0]
    pedestal = _array(state, f"{gdn}.{name}_reparam.pedestal", np.float32)[0]
    return np.maximum(raw, bound) * np.maximum(raw, bound) - pedestal


def _tables(state: dict[str, np.ndarray], module: str, count: int, path: Path) -> CodeTables:
    cdf, length, offset = (state[f"{module}.{b}"] for b in ("_quantized_cdf", "_cdf_length", "_offset"))
    if cdf.size == 0:
        raise CheckpointError(
            f"{path.name}: {module}._quantized_cdf is empty; call model.update(force=True) "
            "before saving the state dict"
        )
    if cdf.ndim != 2 or length.shape != (count,) or offset.shape != (count,) or cdf.shape[0] != count:
        raise CheckpointError(
            f"{path.name}: {module}._quantized_cdf {tuple(cdf.shape)}, _cdf_length "
            f"{tuple(length.shape)} and _offset {tuple(offset.shape)} do not describe "
            f"{count} tables"
        )
    return compressai_tables(cdf, length, offset, f"{path.name}: {module}")


# --- packages ---


def fixed_z_hat(model: CompressAIModel, z: np.ndarray, precision: str) -> np.ndarray:
    """z_hat in latent units as the package's h_s sees it (symbols + medians, fixed point or float)."""
    fmt = model.latent_format(precision)
    z_model = FactorizedZ(model.z_tables, fmt, model.medians)
    return z_model.dequantize(z_model.symbols(z)).astype(np.float64) * 2.0**-fmt.z_bits


def build_packages(
    model: CompressAIModel,
    out_dir: str | Path,
    calibration_images: list[np.ndarray],
    calibration_name: str,
    precisions: tuple[str, ...] = PRECISIONS,
    progress: Progress = SILENT,
) -> list[dict]:
    """One package per precision under OUT/PRECISION; returns {precision, digest, path} rows.

    Progress: one step per calibration image, then one per package."""
    nets = model.networks
    analysis = networks.analysis_graph(
        nets["g_a"], nets["h_a"], abs_before_h_a=model.arch == "bmshj2018-hyperprior"
    )
    synthesis = networks.synthesis_graph(nets["g_s"])
    y, z = analysis_latents(analysis, calibration_images, progress)
    rows = []
    for precision in precisions:
        fmt = model.latent_format(precision)
        hyper, certificate = build_hyper_synthesis(
            precision,
            nets["h_s"],
            model.head(precision),
            fixed_z_hat(model, z, precision),
            y_rate(model.y_tables, y, fmt),
            input_bits=fmt.z_bits,
            float_input=precision == Precision.FLOAT,
        )
        files = {
            ANALYSIS: analysis,
            SYNTHESIS: synthesis,
            HYPER_SYNTHESIS: hyper,
            LEVEL_TABLES: tables_npz(model.y_tables),
            Z_TABLES: tables_npz(model.z_tables),
            CERTIFICATE: canonical_json(certificate),
        }
        manifest = {
            "name": f"{model.arch}-{model.checkpoint_sha256[:8]}-{precision}",
            "precision": precision,
            "N": len(model.scale_table),
            "architecture": {"family": "compressai", "name": model.arch, "n": model.n, "m": model.m},
            "entropy": {**fmt.to_json(), "z_medians": [float(v) for v in model.medians]},
            "source": {
                "architecture": model.arch,
                "checkpoint_sha256": model.checkpoint_sha256,
                "compressai_version": COMPRESSAI_VERSION,
            },
            "calibration": calibration_name,
            "level_tables_sha256": model.y_tables.sha256,
            "z_tables_sha256": model.z_tables.sha256,
        }
        path = Path(out_dir) / precision
        rows.append(
            {"precision": precision, "digest": write_package(path, manifest, files), "path": str(path)}
        )
        progress.advance()
    return rows
