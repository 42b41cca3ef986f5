"""The hyper-synthesis h_s as ONNX, in three precisions, with its head (codec/heads.py) inside the graph.

Graph contract: input "z_hat" [1, C_z, h, w], int32 (integer z_hat, or fixed point in units of
2^-input_bits) or float32 (the float packages of imported codecs, whose z_hat = symbols + medians);
outputs "scale_index" int32 [1, M, 4h, 4w] and, when the head has a mean, "mean" [1, M, 4h, 4w]: int32 in
units of 2^-mean_bits for every package with a fixed-point latent, float32 for the float package of a
scale-table (CompressAI) codec.

- `float`: Conv / ConvTranspose / activations in float32, then the head's float rule.
- `int16`, lowering `float64` (codec/vocabulary.py `Lowering`): integers carried in float64 (NHWC) through
  Pad/Slice/Concat im2col + MatMul; a transposed conv is lowered to its s*s polyphase correlations (one
  MatMul) followed by a depth-to-space interleave.
- `int16`, lowering `int8-digits`: the same im2col on the s8 digit planes of the activations (stacked on the
  batch axis), one MatMulInteger (s8 x s8, int32 accumulators) against the weights' digit planes
  (concatenated along N), the planes recombined in int64; every post-op in int64. No float tensor at all.
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
from codec.intdigits import (
    ACTIVATION_DIGITS,
    ACTIVATION_RADIX,
    ACTIVATION_SPLITS,
    WEIGHT_RADIX,
    ActivationSplit,
    folded_bias,
    weight_digits,
)
from codec.intlayer import IntLayer
from codec.intnet import IntHyperSynthesis, certify, validate_hs_layers
from codec.layers import Layer, LayerSpec
from codec.onnxgraph import INT64_MAX, GraphBuilder, tensor_info
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


def lowered_kernel(layer: IntLayer) -> tuple[np.ndarray, dict]:
    """The correlation kernel [C_total, C_in, D, D] computing the layer, and its geometry.

    A conv is itself. A transposed conv with stride s, padding p and output padding op becomes s*s
    stride-1 correlations of the input with D x D sub-kernels (D = ceil(K / s)), output channels ordered
    (phase_y, phase_x, c); interleaving the phases and cropping [c0, c0 + H_out) gives the convT output.
    """
    weight = layer.weight.astype(np.int64)
    spec = layer.spec
    if spec.kind == "conv":
        return weight, {"D": spec.kernel, "pads": (spec.padding, spec.padding), "stride": spec.stride}
    s, pad, out_pad = spec.stride, spec.padding, spec.output_padding
    c_in, c_out, k = weight.shape[0], weight.shape[1], weight.shape[2]
    d = -(-k // s)
    q0 = pad // s
    extra = -(-(k + out_pad - pad - s) // s)
    left, right = d - 1 - q0, extra
    if left < 0 or right < 0:
        raise ValueError(f"unsupported convT geometry: k={k} s={s} padding={pad} output_padding={out_pad}")
    kernel = np.zeros((s, s, c_out, c_in, d, d), np.int64)
    for ry in range(s):
        for rx in range(s):
            for ey in range(d):
                for ex in range(d):
                    ty, tx = s * (d - 1 - ey) + ry, s * (d - 1 - ex) + rx
                    if ty < k and tx < k:
                        kernel[ry, rx, :, :, ey, ex] = weight[:, :, ty, tx].T
    crop_start = pad - s * q0
    tail = s * extra - k - out_pad + pad + s
    geometry = {
        "D": d,
        "pads": (left, right),
        "stride": 1,
        "phases": s,
        "c_out": c_out,
        "crop": (crop_start, tail),
    }
    return kernel.reshape(s * s * c_out, c_in, d, d), geometry


def _im2col_nhwc(g: GraphBuilder, x: str, d: int, pads: tuple[int, int], stride: int) -> str:
    """[1, H, W, C] -> [1, Ho, Wo, D*D*C] with column order (ky, kx, c)."""
    before, after = pads
    if before or after:
        pad_spec = np.array([0, before, before, 0, 0, after, after, 0], np.int64)
        x = g.op("Pad", [x, g.const(pad_spec)], mode="constant")
    if d == 1 and stride == 1:
        return x
    axes, steps = g.const(np.array([1, 2], np.int64)), g.const(np.array([stride, stride], np.int64))
    columns = []
    for ky in range(d):
        for kx in range(d):
            ends = [-(d - 1 - ky) if ky < d - 1 else INT64_MAX, -(d - 1 - kx) if kx < d - 1 else INT64_MAX]
            columns.append(
                g.op(
                    "Slice",
                    [
                        x,
                        g.const(np.array([ky, kx], np.int64)),
                        g.const(np.array(ends, np.int64)),
                        axes,
                        steps,
                    ],
                )
            )
    return g.op("Concat", columns, axis=3)


def _interleave_phases(g: GraphBuilder, acc: str, geometry: dict) -> str:
    """Depth-to-space for NHWC [1, h, w, s*s*C] with channels (ry, rx, c), then crop.

    Only static shapes and copy-dims (0 / -1) are used, no Shape arithmetic, so no node of the graph is a
    CPU-preferred shape computation when it runs on another provider.
    """
    s, c_out = geometry["phases"], geometry["c_out"]
    split = g.op("Reshape", [acc, g.const(np.array([0, 0, 0, s, s, c_out], np.int64))])
    moved = g.op("Transpose", [split], perm=[0, 1, 3, 2, 4, 5])  # [1, h, s, w, s, C]
    rows = g.op("Flatten", [moved], axis=3)  # [h*s, w*s*C]
    merged = g.op("Reshape", [rows, g.const(np.array([0, -1, c_out], np.int64))])  # [h*s, w*s, C]
    merged = g.op("Unsqueeze", [merged, g.const(np.array([0], np.int64))])
    start, tail = geometry["crop"]
    if start == 0 and tail == 0:
        return merged
    end = -tail if tail else INT64_MAX
    return g.op(
        "Slice",
        [
            merged,
            g.const(np.array([start, start], np.int64)),
            g.const(np.array([end, end], np.int64)),
            g.const(np.array([1, 2], np.int64)),
        ],
    )


def _integer_layer(g: GraphBuilder, x: str, layer: IntLayer, precision: str) -> str:
    """Clamped input (float64 NHWC) -> accumulator (float64 NHWC holding exact integers)."""
    kernel, geometry = lowered_kernel(layer)
    phases = geometry.get("phases", 1)
    matrix = kernel.transpose(2, 3, 1, 0).reshape(-1, kernel.shape[0])
    bias = np.tile(layer.bias.astype(np.float64), phases**2)
    if precision == Precision.INT8:
        x = g.op("Cast", [x], to=TensorProto.INT8)
        columns = _im2col_nhwc(g, x, geometry["D"], geometry["pads"], geometry["stride"])
        product = g.op("MatMulInteger", [columns, g.const(matrix.astype(np.int8), "w")])
        acc = g.op("Cast", [product], to=TensorProto.DOUBLE)
    else:
        columns = _im2col_nhwc(g, x, geometry["D"], geometry["pads"], geometry["stride"])
        acc = g.op("MatMul", [columns, g.const(matrix.astype(np.float64), "w")])
    acc = g.op("Add", [acc, g.const(bias, "b")])
    return _interleave_phases(g, acc, geometry) if phases > 1 else acc


class _Float64:
    """Exact integers in float64 (the `float64` lowering; the int8 h_s with its MatMulInteger product)."""

    elem = TensorProto.DOUBLE

    def __init__(self, precision: str) -> None:
        self.precision = precision

    def scalar(self, g: GraphBuilder, value: int) -> str:
        return g.const(np.float64(value))

    def array(self, g: GraphBuilder, values: np.ndarray) -> str:
        return g.const(values.astype(np.float64))

    def floor_scale(self, g: GraphBuilder, x: str, shifts: np.ndarray, factor: int = 1) -> str:
        """floor(x * factor * 2^-shift_j) on the channel (last) axis; exact for the certified ranges."""
        scale = factor * np.exp2(-shifts.astype(np.float64))
        return g.op("Floor", [g.op("Mul", [x, g.const(scale)])])

    def leaky_floor(self, g: GraphBuilder, x: str, multiplier: int, shift: int) -> str:
        return g.op("Floor", [g.op("Mul", [x, g.const(np.float64(multiplier * 2.0**-shift))])])

    def layer(self, g: GraphBuilder, x: str, layer: IntLayer) -> str:
        return _integer_layer(g, x, layer, self.precision)


class _Int64Digits:
    """int64 post-ops around s8 digit-plane products (the `int8-digits` lowering)."""

    elem = TensorProto.INT64
    max_shift = 62  # floor(v 2^-r) for |v| < 2^53 is the same for every r >= 53

    def __init__(self, split: ActivationSplit) -> None:
        self.split = split

    def scalar(self, g: GraphBuilder, value: int) -> str:
        return g.const(np.int64(value))

    def array(self, g: GraphBuilder, values: np.ndarray) -> str:
        return g.const(values.astype(np.int64))

    def floor_scale(self, g: GraphBuilder, x: str, shifts: np.ndarray, factor: int = 1) -> str:
        """floor(x * factor * 2^-shift_j): a multiplication, then (v - Mod(v, 2^r)) / 2^r."""
        shifts = np.asarray(shifts, np.int64)
        multiplier = factor * 2 ** np.maximum(-shifts, 0)
        if np.any(multiplier != 1):
            x = g.op("Mul", [x, g.const(multiplier.astype(np.int64))])
        divisor = 2 ** np.minimum(np.maximum(shifts, 0), self.max_shift)
        if np.all(divisor == 1):
            return x
        return _floor_divide(g, x, g.const(divisor.astype(np.int64)))

    def leaky_floor(self, g: GraphBuilder, x: str, multiplier: int, shift: int) -> str:
        return self.floor_scale(g, x, np.array([shift]), multiplier)

    def layer(self, g: GraphBuilder, x: str, layer: IntLayer) -> str:
        return _digit_layer(g, x, layer, self.split)


Arithmetic = _Float64 | _Int64Digits


def integer_arithmetic(precision: str, lowering: str) -> Arithmetic:
    """How a lowering carries the integers: float64 (the int8 precision: MatMulInteger products), or int64
    post-ops around 8-bit digit-plane products."""
    split = ACTIVATION_SPLITS.get(Lowering(lowering))
    return _Float64(precision) if split is None else _Int64Digits(split)


def _floor_divide(g: GraphBuilder, x: str, divisor: str) -> str:
    """floor(x / d) for int64 x and positive d: Mod (fmod=0) has d's sign, so x - Mod(x, d) is a multiple."""
    multiple = g.op("Sub", [x, g.op("Mod", [x, divisor], fmod=0)])
    return g.op("Div", [multiple, divisor])


def _activation_digit_planes(g: GraphBuilder, x: str, pads: tuple[int, int], split: ActivationSplit) -> str:
    """Clamped int64 NHWC x -> 8-bit [2, H + pads, W + pads, C]: the split's (x_h, x_l) on the batch axis.

    The zero padding is applied to x itself, so a padded input has the digits of 0.
    """
    before, after = pads
    if before or after:
        pad_spec = np.array([0, before, before, 0, 0, after, after, 0], np.int64)
        x = g.op("Pad", [x, g.const(pad_spec)], mode="constant")
    radix = g.const(np.int64(ACTIVATION_RADIX))
    low = g.op("Mod", [x, radix], fmod=0)
    high = g.op("Div", [g.op("Sub", [x, low]), radix])
    if split.high_zero:
        high = g.op("Add", [high, g.const(np.int64(split.high_zero))])
    if split.low_zero:
        low = g.op("Add", [low, g.const(np.int64(split.low_zero))])
    digit_type = TensorProto.INT8 if split.signed else TensorProto.UINT8
    return g.op("Cast", [g.op("Concat", [high, low], axis=0)], to=digit_type)


def _digit_layer(g: GraphBuilder, x: str, layer: IntLayer, split: ActivationSplit) -> str:
    """Clamped input (int64 NHWC) -> accumulator (int64 NHWC): sum_{r,q} a_r 128^q P_rq + b'."""
    kernel, geometry = lowered_kernel(layer)
    phases = geometry.get("phases", 1)
    matrix = kernel.transpose(2, 3, 1, 0).reshape(-1, kernel.shape[0])
    planes = weight_digits(matrix)
    bias = folded_bias(np.tile(layer.bias.astype(np.int64), phases**2), matrix.sum(axis=0), split)
    digits = _activation_digit_planes(g, x, geometry["pads"], split)
    columns = _im2col_nhwc(g, digits, geometry["D"], (0, 0), geometry["stride"])
    weights = g.const(np.concatenate(planes, axis=1).astype(np.int8), "w")
    product = g.op("Cast", [g.op("MatMulInteger", [columns, weights])], to=TensorProto.INT64)
    n, q = matrix.shape[1], len(planes)
    parts = g.op("Reshape", [product, g.const(np.array([0, 0, 0, q, n], np.int64))])
    coefficients = np.outer(ACTIVATION_DIGITS, WEIGHT_RADIX ** np.arange(q)).reshape(2, 1, 1, q, 1)
    weighted = g.op("Mul", [parts, g.const(coefficients.astype(np.int64))])
    summed = g.op("ReduceSum", [weighted, g.const(np.array([0, 3], np.int64))], keepdims=1)
    acc = g.op("Reshape", [summed, g.const(np.array([0, 0, 0, n], np.int64))])
    acc = g.op("Add", [acc, g.const(bias, "b")])
    return _interleave_phases(g, acc, geometry) if phases > 1 else acc


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
