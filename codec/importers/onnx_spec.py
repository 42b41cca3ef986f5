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

g_a, h_a and g_s run as they are (g_a and h_a joined into one analysis graph). h_s is read into bitmatch's
layers so that it can be integerised: it must be a chain of Conv / ConvTranspose (bias as an input or a
following Add of a constant), each optionally followed by Relu / LeakyRelu, and may end in a Concat of
parallel convolutions of one tensor (separate scale and mean heads, merged into one convolution). Any other
op, or a residual Add of two computed tensors, is refused with the op and the node named; `--precision float`
still imports such a codec, with its h_s graph as it is.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import compose, numpy_helper, version_converter

from codec.build import analysis_latents, build_hyper_synthesis, canonical_json, tables_npz, y_rate
from codec.entropy import FIXED, FLOAT, FactorizedZ, LatentFormat
from codec.errors import PackageError
from codec.heads import Head, LevelHead, ScaleTableHead
from codec.importers.tables import compressai_tables
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
from codec.tables import CodeTables, gaussian_level_tables
from codec.vocabulary import Precision

PRECISIONS = (Precision.FLOAT, Precision.INT16, Precision.INT8)
Z_BITS = MEAN_BITS = 8
GRAPHS = ("g_a", "h_a", "h_s", "g_s")
INTEGERIZABLE_OPS = ("Conv", "ConvTranspose", "Relu", "LeakyRelu", "Add", "Concat")


class SpecError(PackageError):
    code = "bad-import-spec"


class UnsupportedOp(PackageError):
    code = "unsupported-op"


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


# --- h_s as layers ---


def hs_layers(model: onnx.ModelProto) -> list[Layer]:
    """The chain of layers an h_s graph computes, or UnsupportedOp naming the op and node that breaks it."""
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = [n for n in graph.node if n.op_type not in ("Constant", "Identity")]
    for node in nodes:
        if node.op_type not in INTEGERIZABLE_OPS:
            raise UnsupportedOp(
                f"h_s node {node.name or node.output[0]!r} is a {node.op_type}; the integeriser "
                f"knows {', '.join(INTEGERIZABLE_OPS)}"
            )
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    return _Chain(nodes, constants, alias).walk(
        _graph_input(graph, constants), _resolve(alias, graph.output[0].name)
    )


def _graph_input(graph: onnx.GraphProto, constants: dict) -> str:
    return next(i.name for i in graph.input if i.name not in constants)


def _resolve(alias: dict[str, str], name: str) -> str:
    while name in alias:
        name = alias[name]
    return name


class _Chain:
    def __init__(self, nodes: list, constants: dict, alias: dict[str, str]) -> None:
        self.constants, self.alias = constants, alias
        self.consumers: dict[str, list] = {}
        for node in nodes:
            for name in dict.fromkeys(_resolve(alias, name) for name in node.input):
                self.consumers.setdefault(name, []).append(node)

    def walk(self, tensor: str, output: str) -> list[Layer]:
        layers: list[Layer] = []
        while tensor != output:
            users = self.consumers.get(tensor, [])
            if len(users) == 1 and users[0].op_type in ("Conv", "ConvTranspose"):
                layer, tensor = self._follow(*self._conv(users[0]))
                layers.append(layer)
            elif len(users) > 1 and all(u.op_type in ("Conv", "ConvTranspose") for u in users):
                layer, tensor = self._parallel_heads(users)
                layers.append(layer)
            elif len(users) == 1 and users[0].op_type == "Add" and layers:
                self._bias(layers[-1], users[0])  # a constant here follows an activation: refused below
                raise UnsupportedOp(f"h_s node {users[0].name!r} adds a bias after an activation")
            else:
                raise UnsupportedOp(_not_a_chain(users[0] if users else None, tensor))
        if not layers:
            raise UnsupportedOp("h_s computes no convolution")
        return layers

    def _follow(self, layer: Layer, tensor: str) -> tuple[Layer, str]:
        """Absorb what follows a convolution into its layer: bias Adds, then one Relu / LeakyRelu."""
        while len(users := self.consumers.get(tensor, [])) == 1:
            node = users[0]
            if node.op_type == "Add" and layer.act is None:
                layer, tensor = self._bias(layer, node)
            elif node.op_type in ("Relu", "LeakyRelu"):
                layer, tensor = _with_activation(layer, node), node.output[0]
            else:
                break
        return layer, tensor

    def _weight(self, node, index: int) -> np.ndarray | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        name = _resolve(self.alias, node.input[index])
        if name not in self.constants:
            raise UnsupportedOp(f"h_s node {node.name!r}: input {index} is computed, not a constant")
        return np.asarray(self.constants[name], np.float32)

    def _conv(self, node) -> tuple[Layer, str]:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = self._weight(node, 1)
        kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
        strides, pads = list(attrs.get("strides", [1, 1])), list(attrs.get("pads", [0, 0, 0, 0]))
        output_padding = list(attrs.get("output_padding", [0, 0]))
        if (
            len(set(kernel)) != 1
            or len(set(strides)) != 1
            or len(set(pads)) != 1
            or len(set(output_padding)) != 1
            or attrs.get("group", 1) != 1
            or set(attrs.get("dilations", [1, 1])) != {1}
            or "output_shape" in attrs
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        ):
            raise UnsupportedOp(
                f"h_s node {node.name!r} ({node.op_type}): only square, ungrouped, undilated "
                "kernels with equal strides and symmetric pads are integerised"
            )
        kind = "conv" if node.op_type == "Conv" else "convT"
        c_out, c_in = (
            (weight.shape[0], weight.shape[1]) if kind == "conv" else (weight.shape[1], weight.shape[0])
        )
        spec = LayerSpec(
            kind,
            int(c_in),
            int(c_out),
            int(kernel[0]),
            int(strides[0]),
            padding=int(pads[0]),
            output_padding=int(output_padding[0]),
        )
        bias = self._weight(node, 2)
        return Layer(spec, weight, np.zeros(c_out, np.float32) if bias is None else bias), node.output[0]

    def _bias(self, layer: Layer, node) -> tuple[Layer, str]:
        names = [_resolve(self.alias, name) for name in node.input]
        constant = next((self.constants[n] for n in names if n in self.constants), None)
        if constant is None:
            raise UnsupportedOp(
                f"h_s node {node.name!r} adds two computed tensors (a residual connection); "
                "the integeriser handles chains"
            )
        values = np.asarray(constant, np.float32)
        if values.size != layer.spec.c_out:
            raise UnsupportedOp(
                f"h_s node {node.name!r} adds a constant of shape {values.shape} to "
                f"{layer.spec.c_out} channels: only a per-channel bias is integerised"
            )
        return Layer(layer.spec, layer.weight, layer.bias + values.reshape(-1)), node.output[0]

    def _parallel_heads(self, users: list) -> tuple[Layer, str]:
        """Convolutions of one tensor whose outputs meet in one channel Concat: one convolution."""
        heads = [self._follow(*self._conv(node)) for node in users]
        concat_users = [self.consumers.get(out, []) for _, out in heads]
        concat = concat_users[0][0] if concat_users[0] else None
        ok = concat is not None and concat.op_type == "Concat" and all(u == [concat] for u in concat_users)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in concat.attribute} if concat else {}
        if not ok or attrs.get("axis") != 1:
            raise UnsupportedOp(
                f"h_s: parallel convolutions {[n.name for n in users]} must meet in one Concat "
                "on the channel axis"
            )
        order = [_resolve(self.alias, name) for name in concat.input]
        layers = [dict((out, layer) for layer, out in heads)[name] for name in order]
        first = layers[0].spec
        if any(
            la.act != first.act
            or la.spec.slope != first.slope
            or la.spec.kind != first.kind
            or la.spec.kernel != first.kernel
            or la.spec.stride != first.stride
            or la.spec.padding != first.padding
            or la.spec.output_padding != first.output_padding
            for la in layers
        ):
            raise UnsupportedOp(f"h_s node {concat.name!r} joins heads of different geometry")
        axis = 0 if first.kind == "conv" else 1
        weight = np.concatenate([la.weight for la in layers], axis=axis)
        bias = np.concatenate([la.bias for la in layers])
        spec = LayerSpec(
            first.kind,
            first.c_in,
            int(bias.size),
            first.kernel,
            first.stride,
            act=first.act,
            slope=first.slope,
            padding=first.padding,
            output_padding=first.output_padding,
        )
        return Layer(spec, weight, bias), concat.output[0]


def _not_a_chain(node, tensor: str) -> str:
    what = f"node {node.name or node.output[0]!r} ({node.op_type})" if node else f"tensor {tensor!r}"
    return (
        f"h_s is not a chain the integeriser knows at {what}: only convolutions, their bias Add, "
        "Relu / LeakyRelu and a final Concat of parallel heads"
    )


def _with_activation(layer: Layer, node) -> Layer:
    if layer.act is not None:
        raise UnsupportedOp(f"h_s node {node.name!r}: two activations in a row")
    if node.op_type == "Relu":
        spec = LayerSpec(**{**layer.spec.__dict__, "act": "relu"})
    else:
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 0.01)
        spec = LayerSpec(**{**layer.spec.__dict__, "act": "leaky", "slope": float(alpha)})
    return Layer(spec, layer.weight, layer.bias)


# --- graphs and packages ---


def _renamed(
    model: onnx.ModelProto, inputs: dict[str, str], outputs: dict[str, str], prefix: str
) -> onnx.ModelProto:
    """A copy with every name prefixed, then the graph input and output renamed as asked."""
    model = compose.add_prefix(model, prefix)
    mapping = {prefix + old: new for old, new in {**inputs, **outputs}.items()}
    for node in model.graph.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]
    for value in [*model.graph.input, *model.graph.output]:
        value.name = mapping.get(value.name, value.name)
    return model


def _io(model: onnx.ModelProto) -> tuple[str, str]:
    initializers = {t.name for t in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in initializers), model.graph.output[0].name


def _opset(model: onnx.ModelProto) -> int:
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def analysis_graph(graphs: dict[str, onnx.ModelProto]) -> bytes:
    """g_a then h_a as one graph: input "x", outputs "y" and "z" (h_a brought to g_a's opset if need be)."""
    g_a_in, g_a_out = _io(graphs["g_a"])
    h_a_in, h_a_out = _io(graphs["h_a"])
    g_a = _renamed(graphs["g_a"], {g_a_in: "x"}, {g_a_out: "y"}, "g_a/")
    h_a = _renamed(graphs["h_a"], {h_a_in: "y_in"}, {h_a_out: "z"}, "h_a/")
    if _opset(h_a) != _opset(g_a):
        h_a = version_converter.convert_version(h_a, _opset(g_a))
    g_a.ir_version = h_a.ir_version = max(g_a.ir_version, h_a.ir_version)
    merged = compose.merge_models(g_a, h_a, io_map=[("y", "y_in")], outputs=["y", "z"])
    onnx.checker.check_model(merged)
    return merged.SerializeToString()


def synthesis_graph(graphs: dict[str, onnx.ModelProto]) -> bytes:
    name_in, name_out = _io(graphs["g_s"])
    model = _renamed(graphs["g_s"], {name_in: "y_hat"}, {name_out: "x_hat"}, "g_s/")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_packages(
    codec: OnnxCodec,
    out_dir: str | Path,
    calibration_images: list[np.ndarray],
    calibration_name: str,
    precisions: tuple[str, ...] = PRECISIONS,
    progress: Progress = SILENT,
) -> list[dict]:
    """One package per precision under OUT/PRECISION; one progress step per calibration image, then one per
    package."""
    integer = [p for p in precisions if p != Precision.FLOAT]
    if integer and codec.h_s is None:
        raise UnsupportedOp(f"{codec.h_s_problem}; import with --precision float for the float package alone")
    analysis, synthesis = analysis_graph(codec.graphs), synthesis_graph(codec.graphs)
    y, z = analysis_latents(analysis, calibration_images, progress)
    rows = []
    for precision in precisions:
        fmt = codec.latent_format(precision)
        z_model = FactorizedZ(codec.z_tables, fmt, codec.medians)
        z_hat = z_model.dequantize(z_model.symbols(z)).astype(np.float64) * 2.0**-fmt.z_bits
        head = codec.head_float if precision == Precision.FLOAT else codec.head_fixed
        hyper, certificate = _hyper(codec, precision, head, z_hat, y_rate(codec.y_tables, y, fmt), fmt)
        files = {
            ANALYSIS: analysis,
            SYNTHESIS: synthesis,
            HYPER_SYNTHESIS: hyper,
            LEVEL_TABLES: tables_npz(codec.y_tables),
            Z_TABLES: tables_npz(codec.z_tables),
            CERTIFICATE: canonical_json(certificate),
        }
        manifest = {
            "precision": precision,
            "N": codec.y_tables.num_tables,
            "architecture": {
                "family": "onnx",
                "name": codec.model,
                "n": codec.z_tables.num_tables,
                "m": _latent_channels(codec),
            },
            "entropy": {**fmt.to_json(), "z_medians": [float(v) for v in codec.medians]},
            "source": {"format": "onnx", "graphs_sha256": codec.spec_sha256},
            "calibration": calibration_name,
        }
        path = Path(out_dir) / precision
        rows.append(
            {"precision": precision, "digest": write_package(path, manifest, files), "path": str(path)}
        )
        progress.advance()
    return rows


def _latent_channels(codec: OnnxCodec) -> int:
    output = codec.graphs["g_a"].graph.output[0]
    dims = output.type.tensor_type.shape.dim
    if len(dims) == 4 and dims[1].dim_value:
        return int(dims[1].dim_value)
    if codec.h_s is not None:
        return codec.head_fixed.latent_channels(codec.h_s[-1].spec.c_out)
    raise SpecError("g_a's output does not declare its channel count")


def _hyper(codec: OnnxCodec, precision: str, head: Head, z_hat: np.ndarray, rate, fmt: LatentFormat):
    if codec.h_s is not None:
        return build_hyper_synthesis(
            precision, codec.h_s, head, z_hat, rate, input_bits=fmt.z_bits, float_input=fmt.kind == FLOAT
        )
    from codec.hyper import float_head_graph

    channels = codec.graphs["h_s"].graph.output[0].type.tensor_type.shape.dim[1].dim_value
    if not channels:
        raise SpecError("h_s's output does not declare its channel count")
    return float_head_graph(codec.graphs["h_s"], head, fmt.kind == FLOAT, fmt.z_bits, channels), None
