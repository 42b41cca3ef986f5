"""How the integer graphs (h_s, g_s) carry their integers in ONNX: lowered kernels, im2col, two arithmetics.

- `float64` lowering: integers carried in float64 (NHWC) through Pad/Slice/Concat im2col + MatMul; a
  transposed conv is lowered to its s*s polyphase correlations (one MatMul) followed by a depth-to-space
  interleave. The int8 precision runs the same with int8 tensors and MatMulInteger (int32 accumulators).
- `int8-digits` / `uint8-digits` lowerings: the same im2col on the 8-bit digit planes of the activations
  (stacked on the batch axis), one MatMulInteger (int32 accumulators) against the weights' digit planes
  (concatenated along N), the planes recombined in int64; every post-op in int64. No float tensor at all.

Why these are exact is argued in codec/intnet.py and codec/intdigits.py.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

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
from codec.onnxgraph import INT64_MAX, GraphBuilder
from codec.vocabulary import Lowering, Precision


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
