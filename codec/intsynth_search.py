"""The calibration search that integerises g_s (`integerize_gs`), with the IGDN1 norms sized on it.

`integerize_gs` picks each layer's p greedily on calibration y_hat (one or two bits of headroom over the
calibration maximum, the candidate whose reconstruction, integer so far and float after, is closest to the
float g_s's, more headroom on ties); q and s keep one bit of headroom over their calibration maxima.

"""

from __future__ import annotations

import numpy as np

from codec import layers as nn
from codec.intlayer import P_RANGE, IntLayer, integer_accumulator, quantize_layer
from codec.intsearch import better_candidate, candidate_shifts
from codec.intsynth import (
    ACT_BITS,
    PIXEL_MAX,
    SPEC,
    IntNorm,
    IntSynthesis,
    certify_gs,
    floor_shift,
    integer_output,
    integer_pixels,
    validate_gs_layers,
)
from codec.layers import Layer, LayerSpec

NORM_HEADROOM_BITS = 1


def _natural_shift(amax: float, headroom: int) -> int:
    natural = ACT_BITS - 1 - int(np.ceil(np.log2(max(amax, 2.0**-16)))) - headroom
    return min(max(natural, P_RANGE[0]), P_RANGE[1])


def quantize_norm(layer: Layer, pre_activation: np.ndarray) -> IntNorm:
    """The integer IGDN1 of `layer` with t and n' sized on the calibration pre-activations."""
    assert layer.beta is not None and layer.gamma is not None
    c = layer.spec.c_out
    norm_layer = Layer(
        LayerSpec("conv", c, c, 1, 1),
        np.asarray(layer.gamma, np.float64)[:, :, None, None],
        np.asarray(layer.beta, np.float64),
    )
    q = _natural_shift(float(np.abs(pre_activation).max()), NORM_HEADROOM_BITS)
    norm = nn.forward_layer(norm_layer, np.abs(pre_activation))
    s = _natural_shift(float(np.abs(norm).max()), NORM_HEADROOM_BITS)
    return IntNorm(quantize_layer(norm_layer, q, ACT_BITS, SPEC), s)


def _float_pixels(x_hat: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x_hat * PIXEL_MAX), 0, PIXEL_MAX)


def _float_trace(layers: list[Layer], y: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(input, pre-activation) of every layer of the float g_s."""
    inputs, pre = [], []
    x = y
    for layer in layers:
        inputs.append(x)
        pre.append(nn.convolve(x, np.asarray(layer.weight, np.float64), layer.spec) + _bias(layer))
        x = nn.activate(pre[-1], layer)
    return inputs, pre


def _bias(layer: Layer) -> np.ndarray:
    return np.asarray(layer.bias, np.float64).reshape(1, -1, 1, 1)


def integerize_gs(layers: list[Layer], calibration_y_hat: np.ndarray, input_bits: int = 8) -> IntSynthesis:
    """Integerise g_s on calibration y_hat (real values, [B, M, h, w]; the graph's input is y_hat in units
    of 2^-input_bits): p per layer by the reconstruction error against the float g_s."""
    validate_gs_layers(layers)
    y = np.asarray(calibration_y_hat, np.float64)
    y = y[None] if y.ndim == 3 else y
    y_fixed = np.floor(y * 2.0**input_bits)
    y = y_fixed * 2.0**-input_bits
    inputs, pre = _float_trace(layers, y)
    target = _float_pixels(nn.forward(layers, y))
    chosen = IntSynthesis([], [], input_bits)
    out, units = y_fixed, np.array([input_bits])
    for index, layer in enumerate(layers):
        amax = float(np.abs(inputs[index]).max())
        norm = quantize_norm(layer, pre[index]) if layer.act == "igdn1" else None
        best: tuple[float, int, IntLayer, np.ndarray] | None = None
        for p_in in candidate_shifts(amax, ACT_BITS, SPEC):
            candidate = quantize_layer(layer, p_in, ACT_BITS, SPEC)
            trial = IntSynthesis([*chosen.layers, candidate], [*chosen.norms, norm], input_bits)
            x = floor_shift(out, units - p_in)
            acc = integer_accumulator(candidate, np.clip(x, -candidate.clamp, candidate.clamp))
            trial_out = integer_output(trial, index, acc)
            score = _score(trial, layers, index, trial_out, target)
            headroom = ACT_BITS - 1 - p_in
            if best is None or better_candidate(score, headroom, best[0], best[1]):
                best = (score, headroom, candidate, trial_out)
        assert best is not None
        score, _, picked, out = best
        chosen.layers.append(picked)
        chosen.norms.append(norm)
        units = chosen.out_units(index)
        chosen.search.append(
            {"layer": index, "p_in": picked.p_in, "input_absmax": amax, "mse": score, "scored_by": "mse"}
        )
    chosen.certificate = certify_gs(chosen)
    return chosen


def _score(
    trial: IntSynthesis, layers: list[Layer], index: int, out: np.ndarray, target: np.ndarray
) -> float:
    """MSE in pixel units of the reconstruction: integer layers up to `index`, float g_s after."""
    if index == len(layers) - 1:
        pixels = integer_pixels(trial, out)
    else:
        real = out * 2.0 ** -trial.out_units(index).astype(np.float64).reshape(1, -1, 1, 1)
        pixels = _float_pixels(nn.forward(layers[index + 1 :], real))
    return float(np.mean((pixels - target) ** 2))
