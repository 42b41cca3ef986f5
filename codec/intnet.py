"""The integer hyper-synthesis h_s and its no-overflow certificate.

Its layers' arithmetic and quantisation are codec/intlayer.py's, the calibration search that makes it
codec/intsearch.py's, and the certificate of its digit lowerings codec/intdigits.py's.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec.heads import Head, head_from_json, integer_mean
from codec.intdigits import ACTIVATION_SPLITS, certify_digit_layers
from codec.intlayer import (
    ACC_BITS,
    ACC_LIMIT,
    F64_EXACT_LIMIT,
    INPUT_LIMIT,
    INT16_PAIR_LIMIT,
    PRECISIONS,
    IntLayer,
    OverflowRisk,
    accumulator_bounds,
    integer_activation,
)
from codec.layers import Layer
from codec.vocabulary import Lowering, Precision

HS_ACTIVATIONS = ("relu", "leaky")


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


def certify_digits(int_hs: IntHyperSynthesis, lowering: str) -> list[dict[str, Any]]:
    """The split form's terms per layer (codec/intdigits.py); raises OverflowRisk if one fails.

    Invariants checked: every clamp inside the activation digits' range; every weight digit |d| <= 64 and
    2 * 255 * |d| inside a 16-bit lane; per plane q and channel j (one phase's taps), A sum_i |d_q,ij|
    <= 2^31 - 1 with A the largest |activation digit| (128 for s8, 255 for u8), which bounds every partial
    sum of every P_rq; the int64 recombination below 2^63.
    """
    return certify_digit_layers(int_hs.layers, lowering)


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


def integer_outputs(int_hs: IntHyperSynthesis, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(scale index, mean in units of 2^-mean_bits) from the last accumulator."""
    acc = integer_activation(acc, int_hs.layers[-1])
    m, e = int_hs.m_channels, int_hs.output_shifts()
    index = int_hs.head.integer_index(acc[:, :m], e[:m])
    if not int_hs.head.has_mean:
        return index, None
    return index, integer_mean(acc[:, m:], e[m:], int_hs.head.mean_bits)
