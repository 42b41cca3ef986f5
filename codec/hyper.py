"""The hyper-synthesis h_s as ONNX, in three precisions, with its head (codec/heads.py) inside the graph.

Graph contract: input "z_hat" [1, C_z, h, w], int32 (integer z_hat, or fixed point in units of
2^-input_bits) or float32 (the float packages of imported codecs, whose z_hat = symbols + medians);
outputs "scale_index" int32 [1, M, 4h, 4w] and, when the head has a mean, "mean" [1, M, 4h, 4w]: int32 in
units of 2^-mean_bits for every package with a fixed-point latent, float32 for the float package of a
scale-table (CompressAI) codec.

- `float`: Conv / ConvTranspose / activations in float32, then the head's float rule.
- `int16`, lowering `float64` (codec/vocabulary.py `Lowering`): integers carried in float64 (NHWC) through
  im2col + MatMul (codec/intlowering.py, as for every lowering below).
- `int16`, lowering `int8-digits`: im2col on the s8 digit planes of the activations, MatMulInteger against
  the weights' digit planes, the planes recombined in int64; every post-op in int64. No float tensor at all.
- `int8`: the float64 lowering with int8 tensors and MatMulInteger (int32 accumulators).
Why the integer graphs are exact is argued in codec/intnet.py; `build_hs_onnx` re-runs `certify` and
refuses a network that fails it.
"""

from __future__ import annotations

import json
import math

import numpy as np
from onnx import TensorProto

from codec.heads import MEAN_LIMIT, Head, LevelHead, ScaleTableHead
from codec.intlayer import IntLayer
from codec.intlowering import Arithmetic, integer_arithmetic
from codec.intnet import IntHyperSynthesis, certify, validate_hs_layers
from codec.layers import Layer, LayerSpec
from codec.onnxgraph import GraphBuilder, tensor_info
from codec.vocabulary import Lowering, Precision

INPUT_NAME = "z_hat"
INDEX_NAME, MEAN_NAME = "scale_index", "mean"
OUTPUT_NAMES = (INDEX_NAME, MEAN_NAME)
LEAKY_SLOPE = 0.125


def hs_layer_specs(n_channels: int, m_channels: int, mid_channels: int | None = None) -> list[LayerSpec]:
    """Shapes and geometry of our h_s (no weights)."""
    mid = mid_channels if mid_channels is not None else n_channels * 3 // 2
    return [
        LayerSpec("convT", n_channels, n_channels, 5, 2, "leaky", LEAKY_SLOPE),
        LayerSpec("convT", n_channels, mid, 5, 2, "leaky", LEAKY_SLOPE),
        LayerSpec("conv", mid, 2 * m_channels, 3, 1),
    ]


def random_hs_layers(
    n_channels: int, m_channels: int, seed: int, mid_channels: int | None = None
) -> list[Layer]:
    """Deterministic random float32 weights (He-uniform), u biased towards the middle of [0, 1]."""
    rng = np.random.default_rng(seed)
    layers = []
    for spec in hs_layer_specs(n_channels, m_channels, mid_channels):
        shape = spec.weight_shape()
        fan_in = (
            shape[0] * shape[2] * shape[3] / spec.stride**2
            if spec.kind == "convT"
            else (shape[1] * shape[2] * shape[3])
        )
        limit = math.sqrt(3.0 / fan_in)
        weight = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        bias = rng.uniform(-0.1, 0.1, size=spec.c_out).astype(np.float32)
        layers.append(Layer(spec, weight, bias))
    last = layers[-1]
    last.weight[:m_channels] *= np.float32(0.05)  # keep u mostly inside [0, 1]
    last.bias[:m_channels] += np.float32(0.5)
    return layers


def hs_output_size(height: int, width: int) -> tuple[int, int]:
    return 4 * height, 4 * width


def build_hs_onnx(
    precision: str,
    *,
    int_hs: IntHyperSynthesis | None = None,
    h_s: list[Layer] | None = None,
    head: Head | None = None,
    float_input: bool = False,
    input_bits: int = 0,
    lowering: str = Lowering.FLOAT64,
) -> bytes:
    """Serialized ONNX ModelProto of h_s. `float` needs the float layers `h_s` and its `head` (default: 64
    levels, mean in 2^-8) and takes float32 z_hat when `float_input`, else int32 z_hat in units of
    2^-input_bits; `int16` / `int8` need `int_hs`; an `int16` h_s takes either `lowering`."""
    if precision == Precision.FLOAT:
        if h_s is None:
            raise ValueError("the float h_s needs the float layers")
        head = head or LevelHead(64, 8)
        validate_hs_layers(h_s, head)
        return _build_float(h_s, head, float_input, input_bits)
    if precision not in (Precision.INT16, Precision.INT8):
        raise ValueError(f"unknown h_s precision {precision!r}")
    if int_hs is None or int_hs.precision != precision:
        raise ValueError(f"the {precision} h_s needs an IntHyperSynthesis of that precision")
    if head is not None and head != int_hs.head:
        raise ValueError("the head differs from the integerised network's")
    if lowering != Lowering.FLOAT64 and precision != Precision.INT16:
        raise ValueError(f"the {precision} h_s has one lowering only")
    certificate = certify(int_hs, lowering)  # raises OverflowRisk
    return _build_integer(int_hs, certificate, integer_arithmetic(precision, lowering))


def _model(
    g: GraphBuilder, c_in: int, m: int, head: Head, input_type: int, mean_type: int, metadata: dict[str, str]
) -> bytes:
    inputs = [tensor_info(INPUT_NAME, input_type, [1, c_in, "h", "w"])]
    outputs = [tensor_info(INDEX_NAME, TensorProto.INT32, [1, m, "H", "W"])]
    if head.has_mean:
        outputs.append(tensor_info(MEAN_NAME, mean_type, [1, m, "H", "W"]))
    meta = {"bitmatch.hs.head": json.dumps(head.to_json(), sort_keys=True), **metadata}
    return g.model("bitmatch_hs", inputs, outputs, meta)


# --- float ---


RAW_NAME = "hs_raw"


def hs_head(model: bytes) -> Head:
    """The head an h_s graph carries in its metadata."""
    import onnx

    from codec.heads import head_from_json

    proto = onnx.load_from_string(model)
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    if "bitmatch.hs.head" in meta:
        return head_from_json(json.loads(meta["bitmatch.hs.head"]))
    if "bitmatch.hs.levels" in meta:  # graphs written before heads had a name: always the level head
        return LevelHead(int(meta["bitmatch.hs.levels"]), int(meta.get("bitmatch.hs.mean_bits", 8)))
    raise ValueError("the h_s graph names no head (metadata bitmatch.hs.head)")


def with_raw_output(model: bytes) -> bytes:
    """A float h_s graph with one more output, `hs_raw`: the float tensor its head rounds (u or sigma, then
    the mean), found as the input of the head's first Slice on the way back from `scale_index`. The other
    outputs and the nodes computing them are left as they are."""
    import onnx
    from onnx import helper

    proto = onnx.load_from_string(model)
    producers = {out: node for node in proto.graph.node for out in node.output}
    frontier, seen = [INDEX_NAME], set()
    while frontier:
        name = frontier.pop(0)
        node = producers.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type == "Slice":
            proto.graph.node.append(helper.make_node("Identity", [node.input[0]], [RAW_NAME]))
            proto.graph.output.append(helper.make_tensor_value_info(RAW_NAME, TensorProto.FLOAT, None))
            return proto.SerializeToString()
        frontier.extend(node.input)
    raise ValueError("no Slice of the raw h_s output on the way back from scale_index")


def _build_float(h_s: list[Layer], head: Head, float_input: bool, input_bits: int) -> bytes:
    g = GraphBuilder()
    x = INPUT_NAME if float_input else _float_z_hat(g, INPUT_NAME, input_bits)
    for index, layer in enumerate(h_s):
        x = g.layer(f"h_s.{index}", x, layer)
    m = head.latent_channels(h_s[-1].spec.c_out)
    mean_type = _float_head(g, x, head, m)
    input_type = TensorProto.FLOAT if float_input else TensorProto.INT32
    return _model(g, h_s[0].spec.c_in, m, head, input_type, mean_type, {"bitmatch.hs.precision": "float"})


def _float_z_hat(g: GraphBuilder, z_hat: str, input_bits: int) -> str:
    """int32 z_hat in units of 2^-input_bits as float32 latent values."""
    x = g.op("Cast", [z_hat], to=TensorProto.FLOAT)
    return g.op("Mul", [x, g.const(np.float32(2.0**-input_bits))]) if input_bits else x


def _float_head(g: GraphBuilder, x: str, head: Head, m: int) -> int:
    """The head's float rule on the raw h_s output `x`; returns the element type of the mean output."""
    scale = g.slice_axis(x, 0, m, axis=1)
    if isinstance(head, LevelHead):
        level = g.op("Floor", [g.op("Mul", [scale, g.const(np.float32(head.levels))])])
        level = g.op("Clip", [level, g.const(np.float32(0)), g.const(np.float32(head.levels - 1))])
        g.op("Cast", [level], out=INDEX_NAME, to=TensorProto.INT32)
        scaled = g.op(
            "Round",
            [g.op("Mul", [g.slice_axis(x, m, 2 * m, axis=1), g.const(np.float32(2.0**head.mean_bits))])],
        )
        scaled = g.op("Clip", [scaled, g.const(np.float32(-MEAN_LIMIT)), g.const(np.float32(MEAN_LIMIT))])
        g.op("Cast", [scaled], out=MEAN_NAME, to=TensorProto.INT32)
        return TensorProto.INT32
    bounded = g.op("Max", [scale, g.const(np.float32(head.scale_bound))])
    _count_thresholds(g, bounded, [g.const(np.float32(t)) for t in head.thresholds()], head)
    if not head.has_mean:
        return TensorProto.INT32
    g.op("Identity", [g.slice_axis(x, m, 2 * m, axis=1)], out=MEAN_NAME)
    return TensorProto.FLOAT


def float_head_graph(h_s_model, head: Head, float_input: bool, input_bits: int, channels: int) -> bytes:
    """An h_s graph as the user exported it, with bitmatch's z_hat input and the head's float rule appended.

    For imported codecs whose h_s cannot be integerised: the float package still runs their exact graph.
    """
    import onnx
    from onnx import compose, version_converter

    version = next(op.version for op in h_s_model.opset_import if op.domain in ("", "ai.onnx"))
    initializers = {t.name for t in h_s_model.graph.initializer}
    user_in = next(i.name for i in h_s_model.graph.input if i.name not in initializers)
    user_out = h_s_model.graph.output[0].name
    before = GraphBuilder()
    x = INPUT_NAME if float_input else _float_z_hat(before, INPUT_NAME, input_bits)
    before.op("Identity", [x], out="bitmatch_hs_in")
    input_type = TensorProto.FLOAT if float_input else TensorProto.INT32
    c_in = h_s_model.graph.input[0].type.tensor_type.shape.dim[1].dim_value or 1
    pre = onnx.load_from_string(
        before.model(
            "bitmatch_hs_input",
            [tensor_info(INPUT_NAME, input_type, [1, c_in, "h", "w"])],
            [tensor_info("bitmatch_hs_in", TensorProto.FLOAT, [1, c_in, "h", "w"])],
        )
    )
    after = GraphBuilder()
    m = head.latent_channels(channels)
    mean_type = _float_head(after, "bitmatch_hs_out", head, m)
    outputs = [tensor_info(INDEX_NAME, TensorProto.INT32, [1, m, "H", "W"])]
    if head.has_mean:
        outputs.append(tensor_info(MEAN_NAME, mean_type, [1, m, "H", "W"]))
    hs_info = tensor_info("bitmatch_hs_out", TensorProto.FLOAT, [1, channels, "H", "W"])
    meta = {"bitmatch.hs.head": json.dumps(head.to_json(), sort_keys=True), "bitmatch.hs.precision": "float"}
    post = onnx.load_from_string(after.model("bitmatch_hs_head", [hs_info], outputs, meta))
    parts = [version_converter.convert_version(p, version) if version != 17 else p for p in (pre, post)]
    user = compose.add_prefix(h_s_model, "h_s/")
    ir = max(user.ir_version, parts[0].ir_version)
    for model in (user, *parts):
        model.ir_version = ir
    joined = compose.merge_models(parts[0], user, io_map=[("bitmatch_hs_in", "h_s/" + user_in)])
    joined = compose.merge_models(joined, parts[1], io_map=[("h_s/" + user_out, "bitmatch_hs_out")])
    onnx.checker.check_model(joined)
    return joined.SerializeToString()


def _count_thresholds(
    g: GraphBuilder, value: str, thresholds: list[str], head: ScaleTableHead, perm: list[int] | None = None
) -> None:
    """scale_index = (L - 1) - sum_t [value <= t], one comparison per entry as CompressAI's loop does."""
    count = None
    for threshold in thresholds:
        hit = g.op("Cast", [g.op("LessOrEqual", [value, threshold])], to=TensorProto.INT32)
        count = hit if count is None else g.op("Add", [count, hit])
    index = g.op("Sub", [g.const(np.int32(head.table_count - 1)), count])
    if perm is None:
        g.op("Identity", [index], out=INDEX_NAME)
    else:
        g.op("Transpose", [index], out=INDEX_NAME, perm=perm)


# --- integer ---


def _activation(g: GraphBuilder, x: str, layer: IntLayer, arithmetic: Arithmetic) -> str:
    if layer.act == "relu":
        return g.op("Max", [x, arithmetic.scalar(g, 0)])
    if layer.act == "leaky":
        multiplier, shift = layer.leaky
        return g.op("Max", [x, arithmetic.leaky_floor(g, x, multiplier, shift)])
    return x


def _build_integer(int_hs: IntHyperSynthesis, certificate: dict, arithmetic: Arithmetic) -> bytes:
    g = GraphBuilder()
    a = arithmetic
    layers = int_hs.layers
    z = g.op("Transpose", [g.op("Cast", [INPUT_NAME], to=a.elem)], perm=[0, 2, 3, 1])
    activation = a.floor_scale(g, z, np.array([-int_hs.input_shift()]))
    acc = activation
    for index, layer in enumerate(layers):
        x = g.op("Clip", [activation, a.scalar(g, -layer.clamp), a.scalar(g, layer.clamp)])
        acc = a.layer(g, x, layer)
        if index + 1 < len(layers):
            activation = _activation(g, a.floor_scale(g, acc, int_hs.requant_shifts(index)), layer, a)
    acc = _activation(g, acc, layers[-1], a)
    head, m, shifts = int_hs.head, int_hs.m_channels, int_hs.output_shifts()
    scale = g.slice_axis(acc, 0, m, axis=3)
    if isinstance(head, LevelHead):
        level = a.floor_scale(g, scale, shifts[:m], head.levels)
        level = g.op("Clip", [level, a.scalar(g, 0), a.scalar(g, head.levels - 1)])
        g.op("Transpose", [g.op("Cast", [level], to=TensorProto.INT32)], out=INDEX_NAME, perm=[0, 3, 1, 2])
    else:
        rows = head.integer_thresholds(shifts[:m])
        _count_thresholds(g, scale, [a.array(g, row) for row in rows], head, perm=[0, 3, 1, 2])
    if head.has_mean:
        mean = a.floor_scale(g, g.slice_axis(acc, m, 2 * m, axis=3), shifts[m:] - head.mean_bits)
        mean = g.op("Clip", [mean, a.scalar(g, -MEAN_LIMIT), a.scalar(g, MEAN_LIMIT)])
        g.op("Transpose", [g.op("Cast", [mean], to=TensorProto.INT32)], out=MEAN_NAME, perm=[0, 3, 1, 2])
    meta = {
        "bitmatch.hs.precision": int_hs.precision,
        "bitmatch.hs.input_bits": str(int_hs.input_bits),
        "bitmatch.hs.certificate": json.dumps(certificate, sort_keys=True),
    }
    return _model(g, layers[0].spec.c_in, m, head, TensorProto.INT32, TensorProto.INT32, meta)
