"""Integerisation of the hyper-synthesis h_s after training, with its no-overflow certificate.

The method is that of Koyuncu, Solovyev, Alshina and Kaup, "Device interoperability for learned image
compression with weights and activations quantization" (16-bit weights and activations, 32-bit
accumulators, eq. 2-17); the 8-bit variant follows Sun, Yu and Katto, "End-to-end learned image compression
with quantized weights and activations" (channel-wise power-of-two scales, 8-bit weights and activations).

Integer semantics of layer l (input shift p_l, input bit depth N_I, clamp L = 2^(N_I-1) - 1):

    x'   = clip(a, -L, L)                        a: the layer input in units of 2^-p_l
    acc  = b_q + W_q * x'                        W_q = round(W 2^k_j), b_q = round(b 2^(k_j + p_l))
    a'   = floor(acc 2^-(k_j + p_l - p_l+1))     power-of-two requantisation to the next layer's units
    a''  = act(a')                               relu: max(a', 0); leaky: max(a', floor(a' c 2^-s))

with the leaky slope carried as c 2^-s (1/8 = 1 2^-3 exactly; CompressAI's 0.01 as 655 2^-16). The input of
the first layer is z_hat in units of 2^-input_bits (0 for integer z_hat; CompressAI's medians make z_hat a
fixed-point number). The last accumulator, in units of 2^-(k_j + p) per channel, goes through the last
layer's activation and then the head (codec/heads.py) that turns it into scale indexes and means.

The per-output-channel shift k_j follows eq. 16-17, with the sum of |W| taken over the taps that meet in one
output (per phase for a transposed conv), capped by the weight width, then lowered until the certificate
holds after rounding. Clamps are symmetric, +-(2^(N_I-1) - 1) as in eq. 3 (eq. 5/12 print -2^(N_I-1) - 1,
read as a typo).

`integerize_hs` chooses (p, N_I) per layer greedily on calibration z_hat, scoring by rate as the paper does:
the integer layers chosen so far plus the candidate run, the rest of h_s runs in float, and the calibration
latents y are coded (in expectation, with the package's own code tables) under the resulting scale indexes and
means. The candidates keep headroom over the calibration range (one to two bits for 16-bit activations), so
images brighter or busier than the calibration set are not clipped; among equal rates the one with more
headroom wins.

Exactness argument (enforced by `certify`, run when a graph is built; `build_hs_onnx` refuses a network
that fails it). For every output channel j the certificate checks

    sum_i |W_q,ij| * L + |b_q,j| <= 2^31 - 1

where the sum runs over one phase's taps. Any partial sum of the accumulation, in any order and for ANY
input inside the clamps, is a sum of a subset of those terms, so it lies in the 32-bit accumulator range.
The graphs carry these integers either in int8 tensors with MatMulInteger (int32 accumulators: exact by the
bound) or in float64 through im2col + MatMul: every product |w x| <= 2^15 * 2^15 and every partial sum
<= 2^31 are integers below 2^53, so each float64 operation is exact whatever order or fusion (FMA) a
kernel uses, on the CPU and on CUDA. The post-ops are exact too: multiplying by a power of two is exact,
Floor/Max/Clip of exact values are exact, and the certificate checks that the few products that grow (the
input scaling, acc N, acc 2^-r for a negative shift r, a' c) stay below 2^53. For int8 the weights are
limited to |w| <= 63, so that two u8 x s8 products summed in a 16-bit lane (x86 kernels without VNNI) never
saturate: 2 * 255 * 63 = 32130 <= 32767.

The digit lowerings of an int16 h_s (codec/vocabulary.py `Lowering`) run the same integer network on 8-bit
integer ops only. Each clamped activation |x| <= L <= 32767 is written as two 8-bit digits,

    x = 256 x_h + x_l - o,    x_h = floor(x / 256) + h0,  x_l = (x mod 256) + l0,  o = 256 h0 + l0

`int8-digits`: h0 = 0, l0 = -128 (o = -128), both digits in [-128, 127]: two s8 digits span exactly 65536
consecutive values, [-32896, 32639], and the offset moves the symmetric clamp inside them. `uint8-digits`:
h0 = 128, l0 = 0 (o = 32768), both digits in [0, 255]. Each weight is written in balanced base 128,
w = sum_q 128^q d_q with every digit |d_q| <= 64 (as few digits as the layer's largest |w| needs: three for
16-bit weights). The digit limit 64 is the int8 rule again: MatMulInteger's weights are its s8 operand, the
activations may reach the kernels as u8 (s8 + 128), and 2 * 255 * 64 = 32640 <= 32767 in a saturating
16-bit lane; on kernels that sum s8 x s8 products in 16 bits, 2 * 128 * 64 fits too. Then

    acc_j = sum_{r, q} a_r 128^q P_rq,j + b'_j,    P_rq,j = sum_i x_r,i d_q,ij,    b'_j = b_j - o sum_i w_ij

with a_h = 256, a_l = 1, the sums over one phase's taps (a padded input is x = 0, whose digits contribute
nothing once -o sum_i w_ij is folded into the bias). `certify_digits` checks, per layer, plane and output
channel, that every partial sum of every P_rq (any order, any input inside the clamps) is at most
A sum_i |d_q,ij| <= 2^31 - 1, A the largest |activation digit| (128, or 255 for u8 digits), so the int32
accumulator of MatMulInteger is exact; and that the recombination, done in int64, is at most
sum_{r,q} a_r 128^q A sum_i |d_q,ij| + |b_j| + |o| sum_i |w_ij| < 2^63. The recombined value is the
accumulator of the integer semantics above, bounded by the main certificate. The post-ops run in int64 on
values the main certificate keeps below 2^53: floor(v 2^-r) is (v - Mod(v, 2^r)) / 2^r (Mod with fmod=0
takes the divisor's sign, and the division is of an exact multiple, so truncating and flooring division
agree), with r capped at 62: for |v| < 2^53 and r >= 53 the floor is 0 or -1 whatever r is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec import layers as nn
from codec.errors import PackageError
from codec.heads import Head, LevelHead, float_outputs, head_from_json, integer_mean
from codec.layers import Layer, LayerSpec, channel_l1
from codec.vocabulary import Lowering, Precision

ACC_BITS = 32
ACC_LIMIT = 2**31 - 1
INPUT_LIMIT = 2**31
F64_EXACT_LIMIT = 2**53
MAX_SHIFT = 30
P_RANGE = (-16, 24)
INT16_PAIR_LIMIT = 2**15 - 1
LEAKY_SHIFT = 16
HS_ACTIVATIONS = ("relu", "leaky")
ACTIVATION_RADIX = 256
ACTIVATION_DIGITS = (ACTIVATION_RADIX, 1)  # a_r: the high digit plane first
U8_MAX = 255
WEIGHT_RADIX = 128
WEIGHT_DIGIT_MAX = 64
INT64_LIMIT = 2**63 - 1
DIGIT_CLAMP_LIMIT = 2**15 - 1  # the activation digits cover [-32896 + 128, 32639 + 128] around 0

# rate(scale_index, mean in latent units or None) -> bits of the calibration latents under those parameters
RateFn = Callable[[np.ndarray, np.ndarray | None], float]


class OverflowRisk(PackageError):
    """An integer layer could overflow its 32-bit accumulator (or leave the exact float64 range)."""

    code = "overflow-risk"


@dataclass(frozen=True)
class PrecisionSpec:
    name: str
    weight_max: int
    act_bits_choices: tuple[int, ...]
    headroom_bits: tuple[
        int, ...
    ]  # candidate shifts p = natural - h: h bits of room over the calibration max


PRECISIONS = {
    Precision.INT16: PrecisionSpec(Precision.INT16, 2**15 - 1, (12, 14, 16), (1, 2)),
    Precision.INT8: PrecisionSpec(Precision.INT8, 63, (8,), (-2, -1, 0, 1)),
}


def leaky_multiplier(slope: float) -> tuple[int, int]:
    """(c, s) with c 2^-s the integer leaky slope: exact for a dyadic slope, else c = round(slope 2^16)."""
    for shift in range(LEAKY_SHIFT + 1):
        scaled = slope * 2**shift
        if scaled == int(scaled):
            return int(scaled), shift
    return round(slope * 2**LEAKY_SHIFT), LEAKY_SHIFT


@dataclass
class IntLayer:
    spec: LayerSpec
    weight: np.ndarray  # int64, torch layout (conv [out, in, k, k]; convT [in, out, k, k])
    bias: np.ndarray  # int64 [out], in units of 2^-(shift + p_in)
    shift: np.ndarray  # int64 [out]: k_j, weight scale 2^-k_j
    p_in: int
    in_bits: int

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def act(self) -> str | None:
        return self.spec.act

    @property
    def clamp(self) -> int:
        return 2 ** (self.in_bits - 1) - 1

    @property
    def out_channels(self) -> int:
        return int(self.bias.shape[0])

    @property
    def leaky(self) -> tuple[int, int]:
        return leaky_multiplier(self.spec.slope)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "p_in": self.p_in,
            "in_bits": self.in_bits,
            "weight": self.weight.astype(np.int64).ravel().tolist(),
            "bias": self.bias.astype(np.int64).tolist(),
            "shift": self.shift.astype(np.int64).tolist(),
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> IntLayer:
        spec = LayerSpec.from_json(item["spec"])
        weight = np.asarray(item["weight"], dtype=np.int64).reshape(spec.weight_shape())
        return cls(
            spec,
            weight,
            np.asarray(item["bias"], np.int64),
            np.asarray(item["shift"], np.int64),
            int(item["p_in"]),
            int(item["in_bits"]),
        )


@dataclass
class IntHyperSynthesis:
    precision: str
    head: Head
    layers: list[IntLayer]
    input_bits: int = 0  # z_hat arrives in units of 2^-input_bits
    certificate: dict[str, Any] = field(default_factory=dict)
    search: list[dict[str, Any]] = field(default_factory=list)

    @property
    def m_channels(self) -> int:
        return self.head.latent_channels(self.layers[-1].out_channels)

    def input_shift(self) -> int:
        """z_hat is multiplied by 2^input_shift (then floored) to enter the first layer's units."""
        return self.layers[0].p_in - self.input_bits

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
            "head": self.head.to_json(),
            "input_bits": self.input_bits,
            "certificate": self.certificate,
            "search": self.search,
            "layers": [layer.to_json() for layer in self.layers],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntHyperSynthesis:
        return cls(
            data["precision"],
            head_from_json(data["head"]),
            [IntLayer.from_json(item) for item in data["layers"]],
            int(data.get("input_bits", 0)),
            data.get("certificate", {}),
            data.get("search", []),
        )


# --- quantising one layer (eq. 9-17) ---


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


def _quantize_channel(
    weight_j: np.ndarray, bias_j: float, shift: int, p_in: int, round_half: int
) -> tuple[np.ndarray, int]:
    w_q = np.round(weight_j.astype(np.float64) * 2.0**shift).astype(np.int64)
    b_q = int(np.round(float(bias_j) * 2.0 ** (shift + p_in))) + round_half
    return w_q, b_q


def _channel_bound(weight_j: np.ndarray, spec: LayerSpec) -> int:
    """channel_l1 for one output channel's slice ([in, k, k] in both layouts)."""
    expanded = weight_j[None] if spec.kind == "conv" else weight_j[:, None]
    return int(channel_l1(np.abs(expanded.astype(np.int64)), spec)[0])


def quantize_layer(
    layer: Layer, p_in: int, in_bits: int, spec: PrecisionSpec, mean_rounding: tuple[int, int] | None = None
) -> IntLayer:
    """Integer weights, bias and per-channel shifts k_j for one layer at input shift p_in, bit depth in_bits.

    `mean_rounding` = (first mean channel, mean_bits) for the last layer: those channels get the rounding
    half folded into their bias.
    """
    weight = np.asarray(layer.weight, np.float64)
    bias = np.asarray(layer.bias, np.float64)
    out_axis = 0 if layer.kind == "conv" else 1
    l1 = channel_l1(weight, layer.spec)
    clamp = 2 ** (in_bits - 1) - 1
    w_q = np.zeros(weight.shape, np.int64)
    b_q = np.zeros(bias.shape, np.int64)
    shifts = np.zeros(bias.shape, np.int64)
    for j in range(bias.shape[0]):
        weight_j = np.take(weight, j, axis=out_axis)
        shift = _initial_shift(
            float(l1[j]),
            float(bias[j]),
            float(np.abs(weight_j).max(initial=0.0)),
            p_in,
            in_bits,
            spec.weight_max,
        )
        while True:
            half = 0
            if mean_rounding is not None and j >= mean_rounding[0]:
                r = shift + p_in - mean_rounding[1]
                half = 2 ** (r - 1) if r >= 1 else 0
            wq_j, bq_j = _quantize_channel(weight_j, bias[j], shift, p_in, half)
            bound = _channel_bound(wq_j, layer.spec) * clamp + abs(bq_j)
            if bound <= ACC_LIMIT and np.abs(wq_j).max(initial=0) <= spec.weight_max:
                break
            shift -= 1
        index = (j,) if out_axis == 0 else (slice(None), j)
        w_q[index] = wq_j
        b_q[j], shifts[j] = bq_j, shift
    return IntLayer(layer.spec, w_q, b_q, shifts, p_in, in_bits)


# --- the certificate ---


def certify(int_hs: IntHyperSynthesis, lowering: str = Lowering.FLOAT64) -> dict[str, Any]:
    """The overflow certificate: raises OverflowRisk unless every partial sum is provably exact.

    For the `int8-digits` lowering it also covers every partial sum of the split form (`certify_digits`)
    and names the lowering; the float64 lowering's certificate is as it always was.
    """
    certificate = _certify_network(int_hs)
    if lowering == Lowering.FLOAT64:
        return certificate
    if lowering not in ACTIVATION_SPLITS or int_hs.precision != Precision.INT16:
        raise ValueError(f"no lowering {lowering!r} for a {int_hs.precision} h_s")
    return {**certificate, "lowering": str(lowering), "digits": certify_digits(int_hs, lowering)}


def accumulator_bounds(layer: IntLayer) -> np.ndarray:
    """Per output channel, sum_i |W_q,ij| * clamp + |b_q,j| (one phase's taps): every partial sum's bound."""
    bounds = channel_l1(np.abs(layer.weight.astype(np.int64)), layer.spec) * layer.clamp
    return bounds + np.abs(layer.bias.astype(np.int64))


def _certify_network(int_hs: IntHyperSynthesis) -> dict[str, Any]:
    spec = PRECISIONS[int_hs.precision]
    problems: list[str] = []
    if INPUT_LIMIT * 2 ** max(int_hs.input_shift(), 0) >= F64_EXACT_LIMIT:
        problems.append(f"input scaling 2^{int_hs.input_shift()} leaves the exact range")
    layer_reports = []
    for index, layer in enumerate(int_hs.layers):
        bounds = accumulator_bounds(layer)
        worst = int(np.argmax(bounds))
        weight_max_abs = int(np.abs(layer.weight).max(initial=0))
        if layer.act is not None and layer.act not in HS_ACTIVATIONS:
            problems.append(f"layer {index}: activation {layer.act!r} has no integer form")
        if bounds[worst] > ACC_LIMIT:
            problems.append(f"layer {index} channel {worst}: bound {int(bounds[worst])} > {ACC_LIMIT}")
        if weight_max_abs > spec.weight_max:
            problems.append(f"layer {index}: |w| = {weight_max_abs} > {spec.weight_max}")
        if layer.in_bits > max(spec.act_bits_choices):
            problems.append(f"layer {index}: input bit depth {layer.in_bits} too wide")
        growth = _post_op_growth(int_hs, index)
        if ACC_LIMIT * growth >= F64_EXACT_LIMIT:
            problems.append(f"layer {index}: post-op growth 2^{math.log2(growth):.0f} leaves the exact range")
        layer_reports.append(
            {
                "layer": index,
                "kind": layer.kind,
                "act": layer.act,
                "input_clamp": layer.clamp,
                "input_bits": layer.in_bits,
                "p_in": layer.p_in,
                "weight_max_abs": weight_max_abs,
                "max_bound": int(bounds[worst]),
                "worst_channel": worst,
                "headroom": ACC_LIMIT - int(bounds[worst]),
                "shift_min": int(layer.shift.min()),
                "shift_max": int(layer.shift.max()),
            }
        )
    if int_hs.precision == Precision.INT8:
        pair = 2 * 255 * spec.weight_max
        if pair > INT16_PAIR_LIMIT:
            problems.append(f"int8 pair sum {pair} saturates 16 bits")
    if problems:
        raise OverflowRisk("; ".join(problems))
    return {
        "ok": True,
        "precision": int_hs.precision,
        "accumulator_bits": ACC_BITS,
        "limit": ACC_LIMIT,
        "rule": "sum|W_q| * clamp + |b_q| <= limit per output channel (per phase for convT)",
        "float64_exact_limit": F64_EXACT_LIMIT,
        "weight_max": spec.weight_max,
        "head": int_hs.head.kind,
        "input_shift": int_hs.input_shift(),
        "layers": layer_reports,
    }


# --- the digit splits (the lowerings of an int16 h_s on 8-bit integer ops) ---


@dataclass(frozen=True)
class ActivationSplit:
    """x_h = floor(x / 256) + high_zero, x_l = (x mod 256) + low_zero, so x = 256 x_h + x_l - offset."""

    high_zero: int
    low_zero: int
    signed: bool

    @property
    def offset(self) -> int:
        return ACTIVATION_RADIX * self.high_zero + self.low_zero

    @property
    def digit_max(self) -> int:
        """The largest |digit| for |x| <= 32767: 128 for s8 digits, 255 for u8 digits."""
        return 128 if self.signed else U8_MAX


ACTIVATION_SPLITS = {
    Lowering.INT8_DIGITS: ActivationSplit(0, -128, signed=True),  # x = 256 x_h + x_l + 128
    Lowering.UINT8_DIGITS: ActivationSplit(128, 0, signed=False),  # x = 256 x_h + x_l - 32768
}


def activation_digits(x: np.ndarray, split: ActivationSplit) -> tuple[np.ndarray, np.ndarray]:
    """(x_h, x_l) of the split, in [-128, 127] (signed) or [0, 255] for |x| <= 32767 (int64 in and out)."""
    x = np.asarray(x, np.int64)
    low = np.mod(x, ACTIVATION_RADIX)
    return (x - low) // ACTIVATION_RADIX + split.high_zero, low + split.low_zero


def weight_digits(weight: np.ndarray) -> list[np.ndarray]:
    """Balanced base-128 digits d_q, |d_q| <= 64, with weight = sum_q 128^q d_q; as few as the largest |w|
    needs (at least one)."""
    rest = np.asarray(weight, np.int64)
    digits = []
    while np.abs(rest).max(initial=0) > WEIGHT_DIGIT_MAX:
        low = np.mod(rest + WEIGHT_DIGIT_MAX, WEIGHT_RADIX) - WEIGHT_DIGIT_MAX  # in [-64, 63]
        digits.append(low)
        rest = (rest - low) // WEIGHT_RADIX
    digits.append(rest)
    return digits


def folded_bias(bias: np.ndarray, column_sums: np.ndarray, split: ActivationSplit) -> np.ndarray:
    """b' = b - offset sum_i w_i per lowered column: the offset of the activation digits, folded."""
    return np.asarray(bias, np.int64) - split.offset * np.asarray(column_sums, np.int64)


def certify_digits(int_hs: IntHyperSynthesis, lowering: str) -> list[dict[str, Any]]:
    """The split form's terms per layer (see the module docstring); raises OverflowRisk if one fails.

    Invariants checked: every clamp inside the activation digits' range; every weight digit |d| <= 64 and
    2 * 255 * |d| inside a 16-bit lane; per plane q and channel j (one phase's taps), A sum_i |d_q,ij|
    <= 2^31 - 1 with A the largest |activation digit| (128 for s8, 255 for u8), which bounds every partial
    sum of every P_rq; the int64 recombination below 2^63.
    """
    return certify_digit_layers(int_hs.layers, lowering)


def certify_digit_layers(layers: list[IntLayer], lowering: str) -> list[dict[str, Any]]:
    """`certify_digits` for any list of integer layers (h_s, or g_s with its IGDN1 norms)."""
    split = ACTIVATION_SPLITS[Lowering(lowering)]
    problems: list[str] = []
    reports = []
    for index, layer in enumerate(layers):
        if layer.clamp > DIGIT_CLAMP_LIMIT:
            problems.append(f"layer {index}: clamp {layer.clamp} outside the activation digits")
        planes = weight_digits(layer.weight)
        digit_max = max(int(np.abs(plane).max(initial=0)) for plane in planes)
        if digit_max > WEIGHT_DIGIT_MAX or 2 * U8_MAX * digit_max > INT16_PAIR_LIMIT:
            problems.append(f"layer {index}: weight digit {digit_max} > {WEIGHT_DIGIT_MAX}")
        bounds = [channel_l1(np.abs(plane), layer.spec) * split.digit_max for plane in planes]
        plane_max = max(int(bound.max(initial=0)) for bound in bounds)
        if plane_max > ACC_LIMIT:
            problems.append(f"layer {index}: a digit-plane partial sum reaches {plane_max} > {ACC_LIMIT}")
        bias_bound = np.abs(layer.bias) + abs(split.offset) * channel_l1(np.abs(layer.weight), layer.spec)
        combine = sum(WEIGHT_RADIX**q * bound for q, bound in enumerate(bounds)) * sum(ACTIVATION_DIGITS)
        combine_max = int((combine + bias_bound).max(initial=0))
        if combine_max > INT64_LIMIT:
            problems.append(f"layer {index}: the int64 recombination reaches {combine_max}")
        reports.append(
            {
                "layer": index,
                "weight_planes": len(planes),
                "weight_digit_max": digit_max,
                "plane_partial_max": plane_max,
                "folded_bias_max": int(bias_bound.max(initial=0)),
                "combine_max": combine_max,
            }
        )
    if problems:
        raise OverflowRisk("; ".join(problems))
    return reports


def _post_op_growth(int_hs: IntHyperSynthesis, index: int) -> int:
    """The largest factor by which an accumulator is multiplied before its Floor."""
    layer = int_hs.layers[index]
    leaky = layer.leaky[0] if layer.act == "leaky" else 1
    if index + 1 < len(int_hs.layers):
        return 2 ** max(int(-int_hs.requant_shifts(index).min()), 0) * max(leaky, 1)
    shifts = int_hs.output_shifts()
    growth = max(leaky, int_hs.head.index_growth(shifts))
    if int_hs.head.has_mean:
        growth = max(growth, 2 ** max(int(-(shifts - int_hs.head.mean_bits).min()), 0))
    return growth


# --- integer simulation (float64 holding exact integers, within the certified bounds) ---


def integer_activation(values: np.ndarray, layer: IntLayer) -> np.ndarray:
    if layer.act == "relu":
        return np.maximum(values, 0)
    if layer.act == "leaky":
        multiplier, shift = layer.leaky
        return np.maximum(values, np.floor(values * (multiplier * 2.0**-shift)))
    return values


def integer_accumulator(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    """bias + W x' for a clamped input (float64)."""
    acc = nn.convolve(x, layer.weight.astype(np.float64), layer.spec)
    return acc + layer.bias.astype(np.float64).reshape(1, -1, 1, 1)


def integer_outputs(int_hs: IntHyperSynthesis, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(scale index, mean in units of 2^-mean_bits) from the last accumulator."""
    acc = integer_activation(acc, int_hs.layers[-1])
    m, e = int_hs.m_channels, int_hs.output_shifts()
    index = int_hs.head.integer_index(acc[:, :m], e[:m])
    if not int_hs.head.has_mean:
        return index, None
    return index, integer_mean(acc[:, m:], e[m:], int_hs.head.mean_bits)


def _layer_input(
    prev: IntLayer | None, prev_acc: np.ndarray | None, z: np.ndarray, p_in: int, input_bits: int
) -> np.ndarray:
    """The integer input of a layer at shift p_in, computed from z_hat or from the previous accumulator."""
    if prev is None:
        return np.floor(np.floor(z * 2.0**input_bits) * 2.0 ** (p_in - input_bits))
    shift = (prev.shift + prev.p_in - p_in).reshape(1, -1, 1, 1)
    return integer_activation(np.floor(prev_acc * 2.0 ** (-shift)), prev)


# --- the calibration search ---


def validate_hs_layers(h_s: list[Layer], head: Head) -> None:
    """h_s must be convolutions with ReLU / LeakyReLU (or none) whose last layer feeds the head."""
    if not h_s:
        raise ValueError("h_s needs at least one layer")
    for index, layer in enumerate(h_s):
        if layer.act is not None and layer.act not in HS_ACTIVATIONS:
            raise ValueError(f"h_s layer {index}: activation {layer.act!r} has no integer form")
    c_out = h_s[-1].spec.c_out
    if head.has_mean and c_out % 2:
        raise ValueError(f"the last h_s layer must output 2M channels (scale and mean), not {c_out}")


def candidate_shifts(amax: float, in_bits: int, spec: PrecisionSpec) -> list[int]:
    """Shifts that leave `headroom_bits` over the calibration maximum inside the clamp."""
    natural = in_bits - 1 - _ceil_log2(max(amax, 2.0**-16))
    return sorted({min(max(natural - room, P_RANGE[0]), P_RANGE[1]) for room in spec.headroom_bits})


def _output_error(
    head: Head, out: tuple[np.ndarray, np.ndarray | None], target: tuple[np.ndarray, np.ndarray | None]
) -> float:
    """Scale in index units plus mean in latent units (the score when no rate function is given)."""
    error = float(np.abs(out[0] - target[0]).mean())
    if out[1] is not None and target[1] is not None:
        error += float(np.abs(out[1] - target[1]).mean())
    return error


def integerize_hs(
    h_s: list[Layer],
    calib_z: np.ndarray,
    head: Head | None = None,
    precision: str = Precision.INT16,
    rate: RateFn | None = None,
    input_bits: int = 0,
) -> IntHyperSynthesis:
    """Search p and N_I per layer on calibration z_hat (real values, [B, C, h, w]) and integerise h_s.

    With `rate`, each candidate is scored by the bits of the calibration latents under its scale indexes and
    means (the paper's criterion); without, by its output error against the float h_s.
    """
    head = head or LevelHead(64, 8)
    validate_hs_layers(h_s, head)
    spec = PRECISIONS[precision]
    z = np.asarray(calib_z, np.float64)
    z = z[None] if z.ndim == 3 else z
    inputs = _float_inputs(h_s, z)
    target = float_outputs(head, nn.forward(h_s, z))
    m = head.latent_channels(h_s[-1].spec.c_out)
    chosen: list[IntLayer] = []
    search_log: list[dict[str, Any]] = []
    prev_acc = None
    for index, layer in enumerate(h_s):
        last = index == len(h_s) - 1
        rounding = (m, head.mean_bits) if last and head.has_mean else None
        amax = float(np.abs(inputs[index]).max())
        best: tuple[float, int, IntLayer, np.ndarray] | None = None
        for in_bits in spec.act_bits_choices:
            for p_in in candidate_shifts(amax, in_bits, spec):
                candidate = quantize_layer(layer, p_in, in_bits, spec, rounding)
                x = _layer_input(chosen[-1] if chosen else None, prev_acc, z, p_in, input_bits)
                acc = integer_accumulator(candidate, np.clip(x, -candidate.clamp, candidate.clamp))
                out = _candidate_outputs(h_s, index, candidate, acc, head, precision, chosen, input_bits)
                score = rate(*out) if rate is not None else _output_error(head, out, target)
                headroom = in_bits - 1 - p_in
                if best is None or better_candidate(score, headroom, best[0], best[1]):
                    best = (score, headroom, candidate, acc)
        assert best is not None
        score, _, picked, prev_acc = best
        chosen.append(picked)
        search_log.append(
            {
                "layer": index,
                "p_in": picked.p_in,
                "in_bits": picked.in_bits,
                "input_absmax": amax,
                "score": score,
                "scored_by": "rate" if rate else "error",
            }
        )
    int_hs = IntHyperSynthesis(precision, head, chosen, input_bits, search=search_log)
    int_hs.certificate = certify(int_hs)
    return int_hs


def better_candidate(score: float, headroom: int, best_score: float, best_headroom: int) -> bool:
    """Lower score wins; scores within 0.01 % of each other are equal, and then more headroom wins."""
    tolerance = 1e-4 * abs(best_score)
    if abs(score - best_score) <= tolerance:
        return headroom > best_headroom
    return score < best_score


def _float_inputs(h_s: list[Layer], z: np.ndarray) -> list[np.ndarray]:
    inputs, x = [], z
    for layer in h_s:
        inputs.append(x)
        x = nn.forward_layer(layer, x)
    return inputs


def _candidate_outputs(
    h_s: list[Layer],
    index: int,
    candidate: IntLayer,
    acc: np.ndarray,
    head: Head,
    precision: str,
    chosen: list[IntLayer],
    input_bits: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(index, mean in latent units) with the integer layers so far, the candidate, and the float tail."""
    if index == len(h_s) - 1:
        trial = IntHyperSynthesis(precision, head, [*chosen, candidate], input_bits)
        scale_index, mean = integer_outputs(trial, acc)
        return scale_index, None if mean is None else mean * 2.0**-head.mean_bits
    real = acc * 2.0 ** -(candidate.shift + candidate.p_in).reshape(1, -1, 1, 1)
    real = nn.activate(real, h_s[index])
    return float_outputs(head, nn.forward(h_s[index + 1 :], real))
