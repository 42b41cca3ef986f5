"""The calibration search that integerises h_s: p and N_I per layer, scored by rate.

`integerize_hs` chooses (p, N_I) per layer greedily on calibration z_hat, scoring by rate as the paper does:
the integer layers chosen so far plus the candidate run, the rest of h_s runs in float, and the calibration
latents y are coded (in expectation, with the package's own code tables) under the resulting scale indexes and
means. The candidates keep headroom over the calibration range (one to two bits for 16-bit activations), so
images brighter or busier than the calibration set are not clipped; among equal rates the one with more
headroom wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from codec import layers as nn
from codec.heads import Head, LevelHead, float_outputs
from codec.intlayer import (
    P_RANGE,
    PRECISIONS,
    IntLayer,
    PrecisionSpec,
    ceil_log2,
    integer_accumulator,
    integer_activation,
    quantize_layer,
)
from codec.intnet import IntHyperSynthesis, certify, integer_outputs, validate_hs_layers
from codec.layers import Layer
from codec.vocabulary import Precision

# rate(scale_index, mean in latent units or None) -> bits of the calibration latents under those parameters
RateFn = Callable[[np.ndarray, np.ndarray | None], float]


def _layer_input(
    prev: IntLayer | None, prev_acc: np.ndarray | None, z: np.ndarray, p_in: int, input_bits: int
) -> np.ndarray:
    """The integer input of a layer at shift p_in, computed from z_hat or from the previous accumulator."""
    if prev is None:
        return np.floor(np.floor(z * 2.0**input_bits) * 2.0 ** (p_in - input_bits))
    shift = (prev.shift + prev.p_in - p_in).reshape(1, -1, 1, 1)
    return integer_activation(np.floor(prev_acc * 2.0 ** (-shift)), prev)


def candidate_shifts(amax: float, in_bits: int, spec: PrecisionSpec) -> list[int]:
    """Shifts that leave `headroom_bits` over the calibration maximum inside the clamp."""
    natural = in_bits - 1 - ceil_log2(max(amax, 2.0**-16))
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
