"""The packages of an imported ONNX codec: g_a and h_a joined into one analysis graph, g_s renamed, h_s
integerised (or kept as it is for the float package), one package per precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import compose, version_converter

from codec.build import analysis_latents, build_hyper_synthesis, canonical_json, tables_npz, y_rate
from codec.entropy import FLOAT, FactorizedZ, LatentFormat
from codec.heads import Head
from codec.hyper import float_head_graph
from codec.importers.onnx_hs import UnsupportedOp
from codec.importers.onnx_spec import OnnxCodec, SpecError
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
from codec.vocabulary import Precision

PRECISIONS = (Precision.FLOAT, Precision.INT16, Precision.INT8)


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
    channels = codec.graphs["h_s"].graph.output[0].type.tensor_type.shape.dim[1].dim_value
    if not channels:
        raise SpecError("h_s's output does not declare its channel count")
    return float_head_graph(codec.graphs["h_s"], head, fmt.kind == FLOAT, fmt.z_bits, channels), None
