"""The hyper-synthesis h_s: layer description, random weights and ONNX graphs in three precisions.

h_s mirrors h_a: convT 5x5 s2 (N -> N), LeakyReLU(1/8), convT 5x5 s2 (N -> mid, default 3N/2), LeakyReLU,
conv 3x3 s1 (mid -> 2M). Output channels 0..M-1 are u (sigma = T(u), paper 000), M..2M-1 the mean of y.

Every graph has input "z_hat" (int32 [1, C_z, h, w]) and int32 outputs "scale_index" (k = clip(floor(u N),
0, N-1)) and "mean" (units of 2^-m), both [1, M, 4h, 4w].

- `float`: Conv / ConvTranspose / LeakyRelu in float32; k and round(mean 2^m) from the float outputs.
- `int16`: integers carried in float64 (NHWC) through Pad/Slice/Concat im2col + MatMul; a transposed conv
  is lowered to its s*s polyphase correlations (one MatMul) followed by a depth-to-space interleave.
- `int8`: the same lowering with int8 tensors and MatMulInteger (int32 accumulators).
Why the integer graphs are exact is argued in codec/intnet.py; `build_hs_onnx` re-runs `certify` and
refuses a network that fails it.
"""

from __future__ import annotations

import json
import math

import numpy as np

from codec.intnet import IntHyperSynthesis, IntLayer, certify, validate_float_layers

INPUT_NAME = "z_hat"
OUTPUT_NAMES = ("scale_index", "mean")
OPSET = 17
IR_VERSION = 8
LEAKY_SLOPE = 0.125
INT64_MAX = 2**63 - 1


def hs_layer_specs(n_channels: int, m_channels: int, mid_channels: int | None = None) -> list[dict]:
    """Shapes and geometry of h_s (no weights)."""
    mid = mid_channels if mid_channels is not None else n_channels * 3 // 2
    up = {"kind": "convT", "stride": 2, "padding": 2, "output_padding": 1, "act": "leaky"}
    return [
        {**up, "weight_shape": (n_channels, n_channels, 5, 5), "out_channels": n_channels},
        {**up, "weight_shape": (n_channels, mid, 5, 5), "out_channels": mid},
        {"kind": "conv", "stride": 1, "padding": 1, "output_padding": 0, "act": None,
         "weight_shape": (2 * m_channels, mid, 3, 3), "out_channels": 2 * m_channels},
    ]


def random_hs_layers(n_channels: int, m_channels: int, seed: int,
                     mid_channels: int | None = None) -> list[dict]:
    """Deterministic random float32 weights (He-uniform), u biased towards the middle of [0, 1]."""
    rng = np.random.default_rng(seed)
    layers = []
    for spec in hs_layer_specs(n_channels, m_channels, mid_channels):
        shape = spec.pop("weight_shape")
        out_channels = spec.pop("out_channels")
        fan_in = shape[0] * shape[2] * shape[3] / (spec["stride"] ** 2) if spec["kind"] == "convT" else (
            shape[1] * shape[2] * shape[3])
        limit = math.sqrt(3.0 / fan_in)
        weight = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        bias = rng.uniform(-0.1, 0.1, size=out_channels).astype(np.float32)
        layers.append({**spec, "weight": weight, "bias": bias})
    last = layers[-1]
    last["weight"][:m_channels] *= np.float32(0.05)  # keep u mostly inside [0, 1]
    last["bias"][:m_channels] += np.float32(0.5)
    return layers


def hs_output_size(height: int, width: int) -> tuple[int, int]:
    return 4 * height, 4 * width


class _GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self._name(prefix)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        output = self._name(prefix or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=f"n_{output}", **attrs))
        return output

    def output(self, op_type: str, inputs: list[str], name: str, **attrs) -> None:
        self.nodes.append(self.helper.make_node(op_type, inputs, [name], name=f"n_{name}", **attrs))

    def model(self, c_in: int, m_channels: int, metadata: dict[str, str]) -> bytes:
        from onnx import TensorProto

        helper = self.helper
        inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT32, [1, c_in, "h", "w"])]
        outputs = [helper.make_tensor_value_info(name, TensorProto.INT32, [1, m_channels, "H", "W"])
                   for name in OUTPUT_NAMES]
        graph = helper.make_graph(self.nodes, "bitmatch_hs", inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="bitmatch")
        model.ir_version = IR_VERSION
        helper.set_model_props(model, metadata)
        return model.SerializeToString()


def build_hs_onnx(precision: str, *, int_hs: IntHyperSynthesis | None = None,
                  layers: list[dict] | None = None, levels: int | None = None,
                  mean_bits: int | None = None) -> bytes:
    """Serialized ONNX ModelProto of h_s. `float` needs `layers` (levels default 64, mean_bits 8);
    `int16`/`int8` need `int_hs`, whose levels and mean_bits `levels`/`mean_bits` must match if given."""
    if precision == "float":
        if layers is None:
            raise ValueError("the float h_s needs the float layers")
        validate_float_layers(layers)
        return _build_float(layers, levels or 64, 8 if mean_bits is None else mean_bits)
    if precision not in ("int16", "int8"):
        raise ValueError(f"unknown h_s precision {precision!r}")
    if int_hs is None or int_hs.precision != precision:
        raise ValueError(f"the {precision} h_s needs an IntHyperSynthesis of that precision")
    requested = (levels or int_hs.levels, int_hs.mean_bits if mean_bits is None else mean_bits)
    if requested != (int_hs.levels, int_hs.mean_bits):
        raise ValueError("levels / mean_bits differ from the integerised network's")
    certificate = certify(int_hs)  # raises OverflowRisk
    return _build_integer(int_hs, certificate)


def _scale_and_mean_outputs(g: _GraphBuilder, u: str, mean: str, levels: int, mean_limit: float,
                            u_factor: str, mean_factor: str, mean_round: str) -> None:
    """k = clip(floor(u * factor), 0, N-1); mean = clip(round_op(mean * factor), +-limit); both int32."""
    from onnx import TensorProto

    dtype = np.float32 if mean_round == "Round" else np.float64
    level = g.op("Floor", [g.op("Mul", [u, u_factor])])
    level = g.op("Clip", [level, g.const(dtype(0)), g.const(dtype(levels - 1))])
    g.output("Cast", [level], OUTPUT_NAMES[0], to=TensorProto.INT32)
    scaled = g.op(mean_round, [g.op("Mul", [mean, mean_factor])])
    scaled = g.op("Clip", [scaled, g.const(dtype(-mean_limit)), g.const(dtype(mean_limit))])
    g.output("Cast", [scaled], OUTPUT_NAMES[1], to=TensorProto.INT32)


def _build_float(layers: list[dict], levels: int, mean_bits: int) -> bytes:
    from onnx import TensorProto

    from codec.intnet import MEAN_LIMIT

    g = _GraphBuilder()
    x = g.op("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    for layer in layers:
        weight = g.const(np.asarray(layer["weight"], np.float32), "w")
        bias = g.const(np.asarray(layer["bias"], np.float32), "b")
        pads = [layer["padding"]] * 4
        strides = [layer["stride"]] * 2
        if layer["kind"] == "conv":
            x = g.op("Conv", [x, weight, bias], pads=pads, strides=strides)
        else:
            x = g.op("ConvTranspose", [x, weight, bias], pads=pads, strides=strides,
                     output_padding=[layer["output_padding"]] * 2)
        if layer["act"] == "leaky":
            x = g.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)
    m = np.asarray(layers[-1]["bias"]).shape[0] // 2
    u = _slice_channels(g, x, 0, m, axis=1)
    mean = _slice_channels(g, x, m, 2 * m, axis=1)
    _scale_and_mean_outputs(g, u, mean, levels, MEAN_LIMIT, g.const(np.float32(levels)),
                            g.const(np.float32(2.0**mean_bits)), "Round")
    c_in = np.asarray(layers[0]["weight"]).shape[1 if layers[0]["kind"] == "conv" else 0]
    meta = {"bitmatch.hs.precision": "float", "bitmatch.hs.levels": str(levels),
            "bitmatch.hs.mean_bits": str(mean_bits)}
    return g.model(int(c_in), m, meta)


def _slice_channels(g: _GraphBuilder, x: str, start: int, end: int, axis: int) -> str:
    return g.op("Slice", [x, g.const(np.array([start], np.int64)), g.const(np.array([end], np.int64)),
                          g.const(np.array([axis], np.int64))])


def lowered_kernel(layer: IntLayer) -> tuple[np.ndarray, dict]:
    """The correlation kernel [C_total, C_in, D, D] computing the layer, and its geometry.

    A conv is itself. A transposed conv with stride s, padding p and output padding op becomes s*s
    stride-1 correlations of the input with D x D sub-kernels (D = ceil(K / s)), output channels ordered
    (phase_y, phase_x, c); interleaving the phases and cropping [c0, c0 + H_out) gives the convT output.
    """
    weight = layer.weight.astype(np.int64)
    if layer.kind == "conv":
        k = weight.shape[2]
        return weight, {"D": k, "pads": (layer.padding, layer.padding), "stride": layer.stride}
    s, pad, out_pad = layer.stride, layer.padding, layer.output_padding
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
    geometry = {"D": d, "pads": (left, right), "stride": 1, "phases": s, "c_out": c_out,
                "crop": (crop_start, tail)}
    return kernel.reshape(s * s * c_out, c_in, d, d), geometry


def _im2col_nhwc(g: _GraphBuilder, x: str, d: int, pads: tuple[int, int], stride: int) -> str:
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
            columns.append(g.op("Slice", [x, g.const(np.array([ky, kx], np.int64)),
                                          g.const(np.array(ends, np.int64)), axes, steps]))
    return g.op("Concat", columns, axis=3)


def _interleave_phases(g: _GraphBuilder, acc: str, geometry: dict) -> str:
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
    return g.op("Slice", [merged, g.const(np.array([start, start], np.int64)),
                          g.const(np.array([end, end], np.int64)), g.const(np.array([1, 2], np.int64))])


def _integer_layer(g: _GraphBuilder, x: str, layer: IntLayer, precision: str) -> str:
    """Clamped input (float64 NHWC) -> accumulator (float64 NHWC holding exact integers)."""
    from onnx import TensorProto

    kernel, geometry = lowered_kernel(layer)
    phases = geometry.get("phases", 1)
    matrix = kernel.transpose(2, 3, 1, 0).reshape(-1, kernel.shape[0])
    bias = np.tile(layer.bias.astype(np.float64), phases ** 2)
    if precision == "int8":
        x = g.op("Cast", [x], to=TensorProto.INT8)
        columns = _im2col_nhwc(g, x, geometry["D"], geometry["pads"], geometry["stride"])
        product = g.op("MatMulInteger", [columns, g.const(matrix.astype(np.int8), "w")])
        acc = g.op("Cast", [product], to=TensorProto.DOUBLE)
    else:
        columns = _im2col_nhwc(g, x, geometry["D"], geometry["pads"], geometry["stride"])
        acc = g.op("MatMul", [columns, g.const(matrix.astype(np.float64), "w")])
    acc = g.op("Add", [acc, g.const(bias, "b")])
    return _interleave_phases(g, acc, geometry) if phases > 1 else acc


def _floor_scale(g: _GraphBuilder, x: str, shifts: np.ndarray, factor: float = 1.0) -> str:
    """floor(x * factor * 2^-shift_j) on the channel (last) axis; exact for the certified ranges."""
    scale = factor * np.exp2(-shifts.astype(np.float64))
    return g.op("Floor", [g.op("Mul", [x, g.const(scale)])])


def _build_integer(int_hs: IntHyperSynthesis, certificate: dict) -> bytes:
    from onnx import TensorProto

    g = _GraphBuilder()
    layers = int_hs.layers
    z = g.op("Transpose", [g.op("Cast", [INPUT_NAME], to=TensorProto.DOUBLE)], perm=[0, 2, 3, 1])
    activation = _floor_scale(g, z, np.array([-layers[0].p_in]))
    acc = activation
    for index, layer in enumerate(layers):
        clamp = float(layer.clamp)
        x = g.op("Clip", [activation, g.const(np.float64(-clamp)), g.const(np.float64(clamp))])
        acc = _integer_layer(g, x, layer, int_hs.precision)
        if index + 1 < len(layers):
            activation = _floor_scale(g, acc, int_hs.requant_shifts(index))
            if layer.act == "leaky":
                eighth = g.op("Floor", [g.op("Mul", [activation, g.const(np.float64(LEAKY_SLOPE))])])
                activation = g.op("Max", [activation, eighth])
    m = int_hs.m_channels
    shifts = int_hs.output_shifts()
    u = _slice_channels(g, acc, 0, m, axis=3)
    mean = _slice_channels(g, acc, m, 2 * m, axis=3)
    level = _floor_scale(g, u, shifts[:m], float(int_hs.levels))
    level = g.op("Clip", [level, g.const(np.float64(0)), g.const(np.float64(int_hs.levels - 1))])
    level = g.op("Cast", [level], to=TensorProto.INT32)
    g.output("Transpose", [level], OUTPUT_NAMES[0], perm=[0, 3, 1, 2])
    mean_value = _floor_scale(g, mean, shifts[m:] - int_hs.mean_bits)
    limit = float(int_hs.mean_limit)
    mean_value = g.op("Clip", [mean_value, g.const(np.float64(-limit)), g.const(np.float64(limit))])
    mean_value = g.op("Cast", [mean_value], to=TensorProto.INT32)
    g.output("Transpose", [mean_value], OUTPUT_NAMES[1], perm=[0, 3, 1, 2])
    first = layers[0]
    c_in = first.weight.shape[1 if first.kind == "conv" else 0]
    meta = {"bitmatch.hs.precision": int_hs.precision, "bitmatch.hs.levels": str(int_hs.levels),
            "bitmatch.hs.mean_bits": str(int_hs.mean_bits),
            "bitmatch.hs.certificate": json.dumps(certificate, sort_keys=True)}
    return g.model(int(c_in), m, meta)
