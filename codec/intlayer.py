"""One integer layer of h_s (and of g_s): its integer semantics, its quantisation (eq. 9-17) and its bound.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from codec import layers as nn
from codec.errors import PackageError
from codec.layers import Layer, LayerSpec, channel_l1
from codec.vocabulary import Precision

ACC_BITS = 32
ACC_LIMIT = 2**31 - 1
INPUT_LIMIT = 2**31
F64_EXACT_LIMIT = 2**53
MAX_SHIFT = 30
P_RANGE = (-16, 24)
INT16_PAIR_LIMIT = 2**15 - 1
LEAKY_SHIFT = 16


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


def ceil_log2(value: float) -> int:
    return math.ceil(math.log2(value)) if value > 0 else 0


def _initial_shift(l1: float, bias: float, max_abs: float, p_in: int, in_bits: int, weight_max: int) -> int:
    """Eq. 16 (accumulator room for the weights), eq. 17 (bias), capped by the weight width."""
    shift = ACC_BITS - in_bits - ceil_log2(l1) if l1 > 0 else MAX_SHIFT
    if bias != 0:
        shift = min(ACC_BITS - 1 - p_in - max(ceil_log2(abs(bias)), 0), shift) - 1
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


def accumulator_bounds(layer: IntLayer) -> np.ndarray:
    """Per output channel, sum_i |W_q,ij| * clamp + |b_q,j| (one phase's taps): every partial sum's bound."""
    bounds = channel_l1(np.abs(layer.weight.astype(np.int64)), layer.spec) * layer.clamp
    return bounds + np.abs(layer.bias.astype(np.int64))


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
