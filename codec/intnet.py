"""Integerisation of the hyper-synthesis h_s (paper 003, eq. 2-17; int8 variant after paper 002).

Integer semantics of one layer l (input shift p_l, input bit depth N_I, clamp L = 2^(N_I-1) - 1):

    x'   = clip(a, -L, L)                      a: the layer input in units of 2^-p_l
    acc  = b_q + W_q * x'                      W_q = round(W * 2^k_j), b_q = round(b * 2^(k_j + p_l))
    a'   = floor(acc * 2^-(k_j + p_l - p_l+1))   power-of-two requantisation to the next layer's units
    a''  = max(a', floor(a' / 8))              LeakyReLU(1/8)

The last layer's accumulator is in units of 2^-(k_j + p): the scale level is clip(floor(acc * levels *
2^-(k_j+p)), 0, levels - 1) and the mean floor(acc * 2^-(k_j+p-m)) in units of 2^-m, with the rounding
half 2^(k_j+p-m-1) folded into b_q so the mean rounds to nearest. The per-output-channel shift k_j follows
eq. 16-17, with the sum of |W| taken over the taps that meet in one output (per phase for a transposed
conv), capped by the weight width, then lowered until the certificate below holds after rounding.

Clamps are symmetric, +-(2^(N_I-1) - 1) as in eq. 3 (eq. 5/12 print -2^(N_I-1) - 1, read as a typo).
`integerize_hs` picks (p, N_I) per layer greedily on calibration z: for each candidate the integer layers
so far plus the candidate run, the rest of h_s runs in float, and the smallest output error wins (scale in
level units plus mean in latent units; the paper minimises bitrate, which needs the whole codec).

Exactness argument (enforced by `certify`, run when a graph is built; `build_hs_onnx` refuses a network
that fails it). For every output channel j the certificate checks

    sum_i |W_q,ij| * L + |b_q,j| <= 2^31 - 1

where the sum runs over one phase's taps. Any partial sum of the accumulation, in any order and for ANY
input inside the clamps, is a sum of a subset of those terms, so it lies in the 32-bit accumulator range.
The graphs carry these integers either in int8 tensors with MatMulInteger (int32 accumulators: exact by the
bound) or in float64 through im2col + MatMul: every product |w x| <= 2^15 * 2^15 and every partial sum
<= 2^31 are integers below 2^53, so each float64 operation is exact whatever order or fusion (FMA) a
kernel uses, on the CPU and on CUDA. The post-ops are exact too: multiplying by a power of two is exact,
Floor/Max/Clip of exact values are exact, and the certificate checks that the few products that grow
(acc * levels, acc * 2^-r for a negative shift r) stay below 2^53. For int8 the weights are limited to
|w| <= 63, so that two u8 x s8 products summed in a 16-bit lane (x86 kernels without VNNI) never
saturate: 2 * 255 * 63 = 32130 <= 32767.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec import reference
from codec.errors import PackageError

ACC_BITS = 32
ACC_LIMIT = 2**31 - 1
F64_EXACT_LIMIT = 2**53
MEAN_LIMIT = 2**30
MAX_SHIFT = 30
P_RANGE = (-16, 24)
INT16_PAIR_LIMIT = 2**15 - 1


class OverflowRisk(PackageError):
    """An integer layer could overflow its 32-bit accumulator (or leave the exact float64 range)."""

    code = "overflow-risk"


@dataclass(frozen=True)
class PrecisionSpec:
    name: str
    weight_max: int
    act_bits_choices: tuple[int, ...]


PRECISIONS = {
    "int16": PrecisionSpec("int16", 2**15 - 1, (12, 14, 16)),
    "int8": PrecisionSpec("int8", 63, (8,)),
}


@dataclass
class IntLayer:
    kind: str
    stride: int
    padding: int
    output_padding: int
    act: str | None
    weight: np.ndarray  # int64, torch layout (conv [out, in, k, k]; convT [in, out, k, k])
    bias: np.ndarray  # int64 [out], in units of 2^-(shift + p_in)
    shift: np.ndarray  # int64 [out]: k_j, weight scale 2^-k_j
    p_in: int
    in_bits: int

    @property
    def clamp(self) -> int:
        return 2 ** (self.in_bits - 1) - 1

    @property
    def out_channels(self) -> int:
        return int(self.bias.shape[0])


@dataclass
class IntHyperSynthesis:
    precision: str
    levels: int
    mean_bits: int
    layers: list[IntLayer]
    mean_limit: int = MEAN_LIMIT
    certificate: dict[str, Any] = field(default_factory=dict)
    search: list[dict[str, Any]] = field(default_factory=list)

    @property
    def m_channels(self) -> int:
        return self.layers[-1].out_channels // 2

    def requant_shifts(self, index: int) -> np.ndarray:
        """Right shift from layer `index`'s accumulator to layer index+1's input units."""
        layer = self.layers[index]
        return layer.shift + layer.p_in - self.layers[index + 1].p_in

    def output_shifts(self) -> np.ndarray:
        """The last accumulator is in units of 2^-(k_j + p)."""
        return self.layers[-1].shift + self.layers[-1].p_in

    def to_json(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "levels": self.levels,
            "mean_bits": self.mean_bits,
            "mean_limit": self.mean_limit,
            "certificate": self.certificate,
            "search": self.search,
            "layers": [_layer_to_json(layer) for layer in self.layers],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntHyperSynthesis:
        layers = [_layer_from_json(item) for item in data["layers"]]
        return cls(data["precision"], int(data["levels"]), int(data["mean_bits"]), layers,
                   int(data["mean_limit"]), data.get("certificate", {}), data.get("search", []))


def _layer_to_json(layer: IntLayer) -> dict[str, Any]:
    return {
        "kind": layer.kind, "stride": layer.stride, "padding": layer.padding,
        "output_padding": layer.output_padding, "act": layer.act, "p_in": layer.p_in,
        "in_bits": layer.in_bits, "weight_shape": list(layer.weight.shape),
        "weight": layer.weight.astype(np.int64).ravel().tolist(),
        "bias": layer.bias.astype(np.int64).tolist(), "shift": layer.shift.astype(np.int64).tolist(),
    }


def _layer_from_json(item: dict[str, Any]) -> IntLayer:
    weight = np.asarray(item["weight"], dtype=np.int64).reshape(item["weight_shape"])
    return IntLayer(item["kind"], int(item["stride"]), int(item["padding"]), int(item["output_padding"]),
                    item["act"], weight, np.asarray(item["bias"], np.int64),
                    np.asarray(item["shift"], np.int64), int(item["p_in"]), int(item["in_bits"]))


def channel_l1(weight: np.ndarray, kind: str, stride: int) -> np.ndarray:
    """Per output channel, the largest sum of |w| over the taps that meet in one output element.

    For a conv that is every tap; for a transposed conv with stride s only the taps of one phase
    (ty mod s, tx mod s) ever land on the same output, so the bound is the maximum over phases.
    """
    magnitude = np.abs(weight)
    if kind == "conv":
        return magnitude.sum(axis=(1, 2, 3))
    per_out = magnitude.transpose(1, 0, 2, 3)
    phases = [per_out[:, :, a::stride, b::stride].sum(axis=(1, 2, 3))
              for a in range(stride) for b in range(stride)]
    return np.max(np.stack(phases), axis=0)


def _ceil_log2(value: float) -> int:
    return math.ceil(math.log2(value)) if value > 0 else 0


def _initial_shift(l1: float, bias: float, max_abs: float, p_in: int, in_bits: int, weight_max: int) -> int:
    """Eq. 16 (accumulator room for the weights), eq. 17 (bias), capped by the weight width."""
    shift = ACC_BITS - in_bits - _ceil_log2(l1) if l1 > 0 else MAX_SHIFT
    if bias != 0:
        shift = min(ACC_BITS - 1 - p_in - max(_ceil_log2(abs(bias)), 0), shift) - 1
    if max_abs > 0:
        shift = min(shift, math.floor(math.log2(weight_max / max_abs)))
    return min(shift, MAX_SHIFT)


def _quantize_channel(weight_j: np.ndarray, bias_j: float, shift: int, p_in: int,
                      round_half: int) -> tuple[np.ndarray, int]:
    w_q = np.round(weight_j.astype(np.float64) * 2.0**shift).astype(np.int64)
    b_q = int(np.round(float(bias_j) * 2.0 ** (shift + p_in))) + round_half
    return w_q, b_q


def quantize_layer(layer: dict, p_in: int, in_bits: int, spec: PrecisionSpec,
                   mean_rounding: tuple[int, int] | None = None) -> IntLayer:
    """Integer weights, bias and per-channel shifts k_j for one layer at input shift p_in, bit depth in_bits.

    `mean_rounding` = (first mean channel, mean_bits) for the last layer: those channels get the rounding
    half folded into their bias.
    """
    weight = np.asarray(layer["weight"], np.float64)
    bias = np.asarray(layer["bias"], np.float64)
    kind, stride = layer["kind"], int(layer["stride"])
    out_axis = 0 if kind == "conv" else 1
    l1 = channel_l1(weight, kind, stride)
    clamp = 2 ** (in_bits - 1) - 1
    w_q = np.zeros(weight.shape, np.int64)
    b_q = np.zeros(bias.shape, np.int64)
    shifts = np.zeros(bias.shape, np.int64)
    for j in range(bias.shape[0]):
        weight_j = np.take(weight, j, axis=out_axis)
        shift = _initial_shift(float(l1[j]), float(bias[j]), float(np.abs(weight_j).max(initial=0.0)),
                               p_in, in_bits, spec.weight_max)
        while True:
            half = 0
            if mean_rounding is not None and j >= mean_rounding[0]:
                r = shift + p_in - mean_rounding[1]
                half = 2 ** (r - 1) if r >= 1 else 0
            wq_j, bq_j = _quantize_channel(weight_j, bias[j], shift, p_in, half)
            bound = _channel_bound(wq_j, kind, stride) * clamp + abs(bq_j)
            if bound <= ACC_LIMIT and np.abs(wq_j).max(initial=0) <= spec.weight_max:
                break
            shift -= 1
        index = (j,) if out_axis == 0 else (slice(None), j)
        w_q[index] = wq_j
        b_q[j], shifts[j] = bq_j, shift
    return IntLayer(kind, stride, int(layer["padding"]), int(layer["output_padding"]), layer["act"],
                    w_q, b_q, shifts, p_in, in_bits)


def _channel_bound(weight_j: np.ndarray, kind: str, stride: int) -> int:
    """channel_l1 for one output channel's slice ([in, k, k] in both layouts)."""
    expanded = weight_j[None] if kind == "conv" else weight_j[:, None]
    return int(channel_l1(np.abs(expanded.astype(np.int64)), kind, stride)[0])


def certify(int_hs: IntHyperSynthesis) -> dict[str, Any]:
    """The overflow certificate: raises OverflowRisk unless every partial sum is provably exact."""
    spec = PRECISIONS[int_hs.precision]
    problems: list[str] = []
    layer_reports = []
    for index, layer in enumerate(int_hs.layers):
        bounds = channel_l1(np.abs(layer.weight.astype(np.int64)), layer.kind, layer.stride) * layer.clamp
        bounds = bounds + np.abs(layer.bias.astype(np.int64))
        worst = int(np.argmax(bounds))
        weight_max_abs = int(np.abs(layer.weight).max(initial=0))
        if bounds[worst] > ACC_LIMIT:
            problems.append(f"layer {index} channel {worst}: bound {int(bounds[worst])} > {ACC_LIMIT}")
        if weight_max_abs > spec.weight_max:
            problems.append(f"layer {index}: |w| = {weight_max_abs} > {spec.weight_max}")
        if layer.in_bits > max(spec.act_bits_choices):
            problems.append(f"layer {index}: input bit depth {layer.in_bits} too wide")
        growth = _post_op_growth(int_hs, index)
        if ACC_LIMIT * growth >= F64_EXACT_LIMIT:
            problems.append(f"layer {index}: post-op growth 2^{math.log2(growth):.0f} leaves the exact range")
        layer_reports.append({
            "layer": index, "kind": layer.kind, "input_clamp": layer.clamp, "input_bits": layer.in_bits,
            "p_in": layer.p_in, "weight_max_abs": weight_max_abs, "max_bound": int(bounds[worst]),
            "worst_channel": worst, "headroom": ACC_LIMIT - int(bounds[worst]),
            "shift_min": int(layer.shift.min()), "shift_max": int(layer.shift.max()),
        })
    if int_hs.precision == "int8":
        pair = 2 * 255 * spec.weight_max
        if pair > INT16_PAIR_LIMIT:
            problems.append(f"int8 pair sum {pair} saturates 16 bits")
    if problems:
        raise OverflowRisk("; ".join(problems))
    return {
        "ok": True, "precision": int_hs.precision, "accumulator_bits": ACC_BITS, "limit": ACC_LIMIT,
        "rule": "sum|W_q| * clamp + |b_q| <= limit per output channel (per phase for convT)",
        "float64_exact_limit": F64_EXACT_LIMIT, "weight_max": spec.weight_max, "layers": layer_reports,
    }


def _post_op_growth(int_hs: IntHyperSynthesis, index: int) -> int:
    """The largest factor by which an accumulator is multiplied before its Floor."""
    if index + 1 < len(int_hs.layers):
        shifts = int_hs.requant_shifts(index)
        return 2 ** max(int(-shifts.min()), 0)
    shifts = int_hs.output_shifts()
    return max(int_hs.levels * 2 ** max(int(-shifts.min()), 0),
               2 ** max(int(-(shifts - int_hs.mean_bits).min()), 0))


def validate_float_layers(layers: list[dict]) -> None:
    if not layers:
        raise ValueError("h_s needs at least one layer")
    for index, layer in enumerate(layers):
        if layer["kind"] not in ("conv", "convT"):
            raise ValueError(f"layer {index}: unknown kind {layer['kind']!r}")
        if layer["act"] not in ("leaky", None):
            raise ValueError(f"layer {index}: unknown activation {layer['act']!r}")
    if layers[-1]["act"] is not None:
        raise ValueError("the last h_s layer must have no activation")
    out_axis = 0 if layers[-1]["kind"] == "conv" else 1
    if np.asarray(layers[-1]["weight"]).shape[out_axis] % 2:
        raise ValueError("the last h_s layer must output 2M channels")


def _candidate_shifts(amax: float, in_bits: int) -> list[int]:
    """Shifts around the largest one keeping the calibration maximum inside the clamp."""
    natural = in_bits - 1 - _ceil_log2(max(amax, 2.0**-16))
    return sorted({min(max(p, P_RANGE[0]), P_RANGE[1]) for p in range(natural - 1, natural + 3)})


def _layer_input(prev: IntLayer | None, prev_acc: np.ndarray | None, z: np.ndarray, p_in: int) -> np.ndarray:
    """The integer input of a layer at shift p_in, computed from z or from the previous accumulator."""
    if prev is None:
        return np.floor(z * 2.0**p_in)
    shift = (prev.shift + prev.p_in - p_in).reshape(1, -1, 1, 1)
    values = np.floor(prev_acc * 2.0 ** (-shift))
    return np.maximum(values, np.floor(values / 8)) if prev.act == "leaky" else values


def _output_error(out: np.ndarray, target: np.ndarray, m: int, levels: int) -> float:
    u_err = np.abs(np.clip(out[:, :m], 0, 1) - np.clip(target[:, :m], 0, 1)).mean() * levels
    return float(u_err + np.abs(out[:, m:] - target[:, m:]).mean())


def _float_tail(layers: list[dict], start: int, x: np.ndarray) -> np.ndarray:
    _, out = reference.float_hs(layers[start:], x) if start < len(layers) else ([], x)
    return out


def integerize_hs(layers: list[dict], calib_z: np.ndarray, precision: str = "int16", levels: int = 64,
                  mean_bits: int = 8) -> IntHyperSynthesis:
    """Search p and N_I per layer on calibration data (greedy, layer by layer) and integerise h_s.

    Each candidate runs the integer layers chosen so far plus the candidate layer, then the float tail;
    the candidate with the smallest output error (scale in level units + mean in latent units) wins.
    Integer simulation uses float64 holding integers, exact by the same bound the certificate proves.
    """
    validate_float_layers(layers)
    spec = PRECISIONS[precision]
    z = np.asarray(calib_z, np.float64)
    z = z[None] if z.ndim == 3 else z
    inputs, target = reference.float_hs(layers, z)
    m = target.shape[1] // 2
    chosen: list[IntLayer] = []
    search_log: list[dict[str, Any]] = []
    prev_acc = None
    for index, layer in enumerate(layers):
        rounding = (m, mean_bits) if index == len(layers) - 1 else None
        amax = float(np.abs(inputs[index]).max())
        best: tuple[float, IntLayer, np.ndarray] | None = None
        for in_bits in spec.act_bits_choices:
            for p_in in _candidate_shifts(amax, in_bits):
                candidate = quantize_layer(layer, p_in, in_bits, spec, rounding)
                x = _layer_input(chosen[-1] if chosen else None, prev_acc, z, p_in)
                x = np.clip(x, -candidate.clamp, candidate.clamp)
                acc = _float_accumulator(candidate, x)
                real = acc * 2.0 ** -(candidate.shift + p_in).reshape(1, -1, 1, 1)
                if layer["act"] == "leaky":
                    real = np.maximum(real, real / 8)
                error = _output_error(_float_tail(layers, index + 1, real), target, m, levels)
                if best is None or error < best[0]:
                    best = (error, candidate, acc)
        assert best is not None
        error, picked, prev_acc = best
        chosen.append(picked)
        search_log.append({"layer": index, "p_in": picked.p_in, "in_bits": picked.in_bits,
                           "input_absmax": amax, "output_error": error})
    int_hs = IntHyperSynthesis(precision, levels, mean_bits, chosen, search=search_log)
    int_hs.certificate = certify(int_hs)
    return int_hs


def _float_accumulator(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    acc = reference.apply_layer(x, layer.kind, layer.weight.astype(np.float64), layer.stride, layer.padding,
                                layer.output_padding)
    return acc + layer.bias.astype(np.float64).reshape(1, -1, 1, 1)
