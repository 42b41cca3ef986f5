"""The integer synthesis transform g_s: its integer semantics, their simulation, its no-overflow certificate.

Its calibration search is codec/intsynth_search.py's, its ONNX graph codec/intsynth_graph.py's.

The arithmetic is that of h_s (codec/intlayer.py, after Koyuncu, Solovyev, Alshina and Kaup, "Device
interoperability for learned image compression with weights and activations quantization": 16-bit weights
with per-output-channel power-of-two scales, 16-bit activations, 32-bit accumulators, no zero points),
carried to the pixels as in the fully 16-bit integer decoder of Galpin, Balcilar, Lefebvre, Racape and
Hellier, "Entropy coding improvement for low-complexity compressive auto-encoders" (power-of-two quantizers,
no zero points). Integer semantics of layer l (input shift p_l, clamp L = 2^15 - 1):

    x   = clip(a, -L, L)                       a: the layer input in units of 2^-p_l
    acc = b_q + W_q * x                        units 2^-e_j, e_j = k_j + p_l (as in h_s)
    o   = max(acc, 0)                          relu (or o = acc without activation), units 2^-e_j
    a'  = floor(o 2^-(e_j - p_l+1))            power-of-two requantisation to the next layer's units

IGDN1 (x (beta + gamma |x|), the simplified inverse GDN of Johnston et al.) replaces `o` by

    t   = clip(floor(acc 2^-(e_j - q)), -L, L)        16 bits, units 2^-q
    n   = B + G |t|                                   a 1x1 integer layer: G = round(gamma 2^g_i), 32-bit acc
    n'  = clip(floor(n 2^-(g_i + q - s)), -L, L)      16 bits, units 2^-s
    o   = t n'                                        |o| <= L^2 < 2^30, units 2^-(q + s)

and the last layer's output becomes pixels with one integer rounding: pixel = clip(floor((255 o + h_j)
2^-e_j), 0, 255), h_j = 2^(e_j - 1) (round half up of 255 x_hat). The graph takes y_hat as the decoder
holds it (int32, units of 2^-mean_bits) and returns uint8 pixels: only additions, comparisons, integer MACs
and shifts decide anything.

`certify_gs` extends the certificate of h_s to every integer layer of g_s, the 1x1 norm layers of IGDN1
included: per output channel sum_i |W_q,ij| L + |b_q,j| <= 2^31 - 1 (one phase's taps for a transposed
conv), so every partial sum of every accumulator, in any order and for ANY input inside the clamps, fits a
32-bit accumulator; |t n'| <= L^2 < 2^31; and every value a post-op multiplies (the input scaling, a
requantisation with a negative shift, 255 o + h) stays below 2^53, so the float64 lowering computes each
of these integers exactly (every product |w x| <= 2^30 and partial sum < 2^31 is a float64 integer). The
digit lowerings get `certify_digit_layers` over the same layers. `build_gs_onnx` refuses a network that
fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec.intdigits import certify_digit_layers
from codec.intlayer import (
    ACC_LIMIT,
    F64_EXACT_LIMIT,
    INPUT_LIMIT,
    PRECISIONS,
    IntLayer,
    OverflowRisk,
    accumulator_bounds,
    integer_accumulator,
)
from codec.layers import Layer
from codec.vocabulary import Lowering, Precision

ACT_BITS = 16
PIXEL_MAX = 255
GS_ACTIVATIONS = ("relu", "igdn1")
SPEC = PRECISIONS[Precision.INT16]


@dataclass
class IntNorm:
    """The integer IGDN1 after a layer: n = B + G |t| (the 1x1 `layer`, input t in units 2^-q), n' in 2^-s."""

    layer: IntLayer  # p_in = q; its accumulator is in units 2^-(g_i + q)
    norm_shift: int  # s

    @property
    def t_shift(self) -> int:
        return self.layer.p_in

    @property
    def clamp(self) -> int:
        return self.layer.clamp  # the clamp of t and of n' (both 16 bits)

    @property
    def out_units(self) -> int:
        return self.layer.p_in + self.norm_shift

    def norm_requant(self) -> np.ndarray:
        return self.layer.shift + self.layer.p_in - self.norm_shift

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer.to_json(), "norm_shift": self.norm_shift}

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> IntNorm:
        return cls(IntLayer.from_json(item["layer"]), int(item["norm_shift"]))


@dataclass
class IntSynthesis:
    """An integer g_s: one IntLayer per layer, and the IGDN1 after it (or None)."""

    layers: list[IntLayer]
    norms: list[IntNorm | None]
    input_bits: int  # y_hat arrives in units of 2^-input_bits
    certificate: dict[str, Any] = field(default_factory=dict)
    search: list[dict[str, Any]] = field(default_factory=list)

    def input_shift(self) -> int:
        """y_hat is multiplied by 2^input_shift (then floored) to enter the first layer's units."""
        return self.layers[0].p_in - self.input_bits

    def out_units(self, index: int) -> np.ndarray:
        """Per channel, the exponent of layer `index`'s output o (units 2^-e)."""
        layer, norm = self.layers[index], self.norms[index]
        if norm is not None:
            return np.full(layer.out_channels, norm.out_units, np.int64)
        return layer.shift + layer.p_in

    def t_shifts(self, index: int) -> np.ndarray:
        """Right shift from layer `index`'s accumulator to its IGDN1 input t."""
        layer, norm = self.layers[index], self.norms[index]
        assert norm is not None
        return layer.shift + layer.p_in - norm.t_shift

    def requant_shifts(self, index: int) -> np.ndarray:
        """Right shift from layer `index`'s output to layer index+1's input units."""
        return self.out_units(index) - self.layers[index + 1].p_in

    def pixel_half(self) -> np.ndarray:
        """h_j = 2^(e_j - 1) (0 for e_j <= 0), the rounding half of the pixel rule."""
        e = self.out_units(len(self.layers) - 1)
        return np.where(e >= 1, 2 ** np.maximum(e - 1, 0), 0).astype(np.int64)

    def integer_layers(self) -> list[IntLayer]:
        """Every integer MAC layer: the convolutions and the IGDN1 norm layers, in data order."""
        out: list[IntLayer] = []
        for layer, norm in zip(self.layers, self.norms, strict=True):
            out += [layer] if norm is None else [layer, norm.layer]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "input_bits": self.input_bits,
            "certificate": self.certificate,
            "search": self.search,
            "layers": [layer.to_json() for layer in self.layers],
            "norms": [None if norm is None else norm.to_json() for norm in self.norms],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntSynthesis:
        return cls(
            [IntLayer.from_json(item) for item in data["layers"]],
            [None if item is None else IntNorm.from_json(item) for item in data["norms"]],
            int(data["input_bits"]),
            data.get("certificate", {}),
            data.get("search", []),
        )


def floor_shift(values: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    return np.floor(values * 2.0 ** -np.asarray(shifts, np.float64).reshape(1, -1, 1, 1))


def integer_norm(norm: IntNorm, acc: np.ndarray, t_shifts: np.ndarray) -> np.ndarray:
    """o = t n' of IGDN1 from the layer's accumulator."""
    t = np.clip(floor_shift(acc, t_shifts), -norm.clamp, norm.clamp)
    n = integer_accumulator(norm.layer, np.abs(t))
    return t * np.clip(floor_shift(n, norm.norm_requant()), -norm.clamp, norm.clamp)


def integer_output(int_gs: IntSynthesis, index: int, acc: np.ndarray) -> np.ndarray:
    """Layer `index`'s output o (units 2^-out_units) from its accumulator."""
    layer, norm = int_gs.layers[index], int_gs.norms[index]
    if norm is not None:
        return integer_norm(norm, acc, int_gs.t_shifts(index))
    return np.maximum(acc, 0) if layer.act == "relu" else acc


def integer_pixels(int_gs: IntSynthesis, out: np.ndarray) -> np.ndarray:
    """clip(floor((255 o + h) 2^-e), 0, 255) of the last layer's output."""
    e = int_gs.out_units(len(int_gs.layers) - 1)
    half = int_gs.pixel_half().astype(np.float64).reshape(1, -1, 1, 1)
    return np.clip(floor_shift(out * PIXEL_MAX + half, e), 0, PIXEL_MAX)


def run_integer_gs(int_gs: IntSynthesis, y_hat: np.ndarray) -> np.ndarray:
    """Pixels [B, 3, H, W] (float64 integers) of int32 y_hat in units of 2^-input_bits."""
    a = floor_shift(np.asarray(y_hat, np.float64), np.array([-int_gs.input_shift()]))
    out = a
    for index, layer in enumerate(int_gs.layers):
        acc = integer_accumulator(layer, np.clip(a, -layer.clamp, layer.clamp))
        out = integer_output(int_gs, index, acc)
        if index + 1 < len(int_gs.layers):
            a = floor_shift(out, int_gs.requant_shifts(index))
    return integer_pixels(int_gs, out)


def certify_gs(int_gs: IntSynthesis, lowering: str = Lowering.FLOAT64) -> dict[str, Any]:
    """The overflow certificate of every integer layer of g_s; raises OverflowRisk unless all of it holds."""
    problems: list[str] = []
    if INPUT_LIMIT * 2 ** max(int_gs.input_shift(), 0) >= F64_EXACT_LIMIT:
        problems.append(f"input scaling 2^{int_gs.input_shift()} leaves the exact range")
    reports = [_layer_report(int_gs, index, problems) for index in range(len(int_gs.layers))]
    digits = None
    if lowering != Lowering.FLOAT64:
        try:
            digits = certify_digit_layers(int_gs.integer_layers(), lowering)
        except OverflowRisk as error:
            problems.append(str(error))
    if problems:
        raise OverflowRisk("; ".join(problems))
    certificate = {
        "ok": True,
        "network": "g_s",
        "precision": Precision.INT16.value,
        "accumulator_limit": ACC_LIMIT,
        "rule": "sum|W_q| * clamp + |b_q| <= limit per output channel (per phase for convT), "
        "for every conv and IGDN1 norm layer; |t n'| <= limit; post-op values < 2^53",
        "float64_exact_limit": F64_EXACT_LIMIT,
        "input_shift": int_gs.input_shift(),
        "min_headroom": min(_headroom(report) for report in reports),
        "layers": reports,
    }
    if digits is not None:
        certificate |= {"lowering": str(lowering), "digits": digits}
    return certificate


def _headroom(report: dict[str, Any]) -> int:
    return min(report["headroom"], report.get("norm", report)["headroom"])


def _check_mac(name: str, layer: IntLayer, problems: list[str]) -> dict[str, Any]:
    bounds = accumulator_bounds(layer)
    worst = int(np.argmax(bounds))
    weight_max = int(np.abs(layer.weight).max(initial=0))
    if bounds[worst] > ACC_LIMIT:
        problems.append(f"{name} channel {worst}: bound {int(bounds[worst])} > {ACC_LIMIT}")
    if weight_max > SPEC.weight_max:
        problems.append(f"{name}: |w| = {weight_max} > {SPEC.weight_max}")
    if layer.in_bits > ACT_BITS:
        problems.append(f"{name}: input bit depth {layer.in_bits} too wide")
    return {
        "p_in": layer.p_in,
        "input_clamp": layer.clamp,
        "weight_max_abs": weight_max,
        "max_bound": int(bounds[worst]),
        "worst_channel": worst,
        "headroom": ACC_LIMIT - int(bounds[worst]),
        "shift_min": int(layer.shift.min()),
        "shift_max": int(layer.shift.max()),
    }


def _check_growth(name: str, value_limit: int, shifts: np.ndarray, problems: list[str]) -> None:
    """A floor(v 2^-r) with |v| <= value_limit multiplies by 2^-r for r < 0: the product must stay exact."""
    left = max(int(-np.min(shifts)), 0)
    if value_limit * 2**left >= F64_EXACT_LIMIT:
        problems.append(f"{name}: post-op value {value_limit} * 2^{left} leaves the exact range")


def _layer_report(int_gs: IntSynthesis, index: int, problems: list[str]) -> dict[str, Any]:
    layer, norm = int_gs.layers[index], int_gs.norms[index]
    name = f"g_s layer {index}"
    if layer.act is not None and layer.act not in GS_ACTIVATIONS:
        problems.append(f"{name}: activation {layer.act!r} has no integer form")
    if (layer.act == "igdn1") != (norm is not None):
        problems.append(f"{name}: activation {layer.act!r} and its integer norm do not go together")
    report = {"layer": index, "kind": layer.kind, "act": layer.act, **_check_mac(name, layer, problems)}
    out_limit = ACC_LIMIT
    if norm is not None:
        report["norm"] = _check_mac(f"{name} IGDN1 norm", norm.layer, problems)
        report["norm"]["norm_shift"] = norm.norm_shift
        _check_growth(f"{name} IGDN1 input", ACC_LIMIT, int_gs.t_shifts(index), problems)
        _check_growth(f"{name} IGDN1 norm", ACC_LIMIT, norm.norm_requant(), problems)
        out_limit = norm.clamp * norm.clamp
        if out_limit > ACC_LIMIT:
            problems.append(f"{name}: IGDN1 product bound {out_limit} > {ACC_LIMIT}")
        report["norm"]["product_bound"] = out_limit
    if index + 1 < len(int_gs.layers):
        _check_growth(name, out_limit, int_gs.requant_shifts(index), problems)
    else:
        pixel_limit = PIXEL_MAX * out_limit + int(int_gs.pixel_half().max())
        _check_growth(f"{name} pixels", pixel_limit, int_gs.out_units(index), problems)
        report["pixel_shift"] = int_gs.out_units(index).tolist()
    return report


def validate_gs_layers(layers: list[Layer]) -> None:
    """g_s must be convolutions with ReLU or IGDN1 (or none) between them, ending in 3 channels without
    IGDN1."""
    if not layers:
        raise ValueError("g_s needs at least one layer")
    for index, layer in enumerate(layers):
        if layer.act is not None and layer.act not in GS_ACTIVATIONS:
            raise ValueError(f"g_s layer {index}: activation {layer.act!r} has no integer form")
    if layers[-1].act == "igdn1":
        raise ValueError("the last g_s layer cannot end in IGDN1")
    if layers[-1].spec.c_out != 3:
        raise ValueError(f"the last g_s layer must output 3 channels, not {layers[-1].spec.c_out}")
