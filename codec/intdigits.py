"""The digit splits of an int16 network: its lowerings onto 8-bit integer ops, and their certificate.

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

from dataclasses import dataclass
from typing import Any

import numpy as np

from codec.intlayer import ACC_LIMIT, INT16_PAIR_LIMIT, IntLayer, OverflowRisk
from codec.layers import channel_l1
from codec.vocabulary import Lowering

ACTIVATION_RADIX = 256
ACTIVATION_DIGITS = (ACTIVATION_RADIX, 1)  # a_r: the high digit plane first
U8_MAX = 255
WEIGHT_RADIX = 128
WEIGHT_DIGIT_MAX = 64
INT64_LIMIT = 2**63 - 1
DIGIT_CLAMP_LIMIT = 2**15 - 1  # the activation digits cover [-32896 + 128, 32639 + 128] around 0


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
