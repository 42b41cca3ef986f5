"""The int64 test oracle of the integer h_s: textbook convolutions and the heads' integer rules, in numpy.

The ONNX graphs lower transposed convolutions to polyphase correlations and convolutions to im2col + MatMul;
this module does neither. It scatters every kernel tap by the definition, so a test that compares the two
checks the lowering as well as the arithmetic. With int64 inputs every operation here is exact integer
arithmetic (numpy integer dot products never touch BLAS). It shares no code with codec/intnet.py or
codec/heads.py beyond reading their data.
"""

from __future__ import annotations

import math

import numpy as np

from codec.heads import LevelHead
from codec.intlayer import IntLayer
from codec.intnet import IntHyperSynthesis

MEAN_LIMIT = 2**30


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation of x [B, C, H, W] with weight [O, C, K, K] (torch Conv2d semantics, no bias)."""
    k_h, k_w = weight.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k_h, k_w), axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3]))  # [B, Ho, Wo, O]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def conv_transpose2d(
    x: np.ndarray, weight: np.ndarray, stride: int, padding: int, output_padding: int
) -> np.ndarray:
    """Transposed convolution of x [B, C, H, W] with weight [C, O, K, K] (torch ConvTranspose2d, no bias).

    Every input element scatters weight[c, :, ty, tx] * x to output row stride*i + ty - padding, column
    stride*j + tx - padding.
    """
    batch, _, height, width = x.shape
    k_h, k_w = weight.shape[2:]
    full_h, full_w = (height - 1) * stride + k_h, (width - 1) * stride + k_w
    out_h = full_h - 2 * padding + output_padding
    out_w = full_w - 2 * padding + output_padding
    extra = max(output_padding - padding, 0)
    per_tap = np.tensordot(x, weight, axes=([1], [0]))  # [B, H, W, O, K, K]
    full = np.zeros((batch, weight.shape[1], full_h + extra, full_w + extra), dtype=per_tap.dtype)
    for ty in range(k_h):
        for tx in range(k_w):
            rows = slice(ty, ty + stride * (height - 1) + 1, stride)
            cols = slice(tx, tx + stride * (width - 1) + 1, stride)
            full[:, :, rows, cols] += per_tap[:, :, :, :, ty, tx].transpose(0, 3, 1, 2)
    return full[:, :, padding : padding + out_h, padding : padding + out_w]


def shift_floor(values: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """floor(values * 2^-shift) per channel (axis 1) for int64 values; negative shifts multiply."""
    right = np.maximum(shifts, 0).reshape(1, -1, 1, 1)
    left = np.maximum(-shifts, 0).reshape(1, -1, 1, 1)
    return (values >> right) << left


def activation(values: np.ndarray, layer: IntLayer) -> np.ndarray:
    if layer.spec.act == "relu":
        return np.maximum(values, 0)
    if layer.spec.act == "leaky":
        multiplier, shift = layer.leaky
        return np.maximum(values, (values * multiplier) >> shift)
    return values


def accumulator(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    """bias + W x for an already clamped int64 input: the value a 32-bit accumulator would hold."""
    spec, weight = layer.spec, layer.weight.astype(np.int64)
    if spec.kind == "conv":
        acc = conv2d(x, weight, spec.stride, spec.padding)
    else:
        acc = conv_transpose2d(x, weight, spec.stride, spec.padding, spec.output_padding)
    return acc + layer.bias.astype(np.int64).reshape(1, -1, 1, 1)


def _scale_table_index(head, acc: np.ndarray, e: np.ndarray) -> np.ndarray:
    """(L - 1) - #{t : acc <= t 2^e}, the threshold t 2^e_j computed exactly with rationals."""
    from fractions import Fraction

    index = np.full(acc.shape, len(head.scale_table) - 1, np.int64)
    for t in head.scale_table[:-1]:
        if np.float32(t) < np.float32(head.scale_bound):  # max(sigma, bound) <= t can never hold
            continue
        limits = np.array([math.floor(Fraction(float(t)) * Fraction(2) ** int(ej)) for ej in e], object)
        limits = np.minimum(limits, 2**40).astype(np.int64)
        index -= acc <= limits.reshape(1, -1, 1, 1)
    return index


def reference_hs(
    int_hs: IntHyperSynthesis, z_hat: np.ndarray, accumulators: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the integer h_s on z_hat [B, C_z, h, w] in int64; returns (scale_index, mean or None).

    If `accumulators` is a list, the accumulator tensor of every layer is appended to it.
    """
    layers = int_hs.layers
    activation_in = shift_floor(np.asarray(z_hat).astype(np.int64), np.array([-int_hs.input_shift()]))
    acc = activation_in
    for index, layer in enumerate(layers):
        acc = accumulator(layer, np.clip(activation_in, -layer.clamp, layer.clamp))
        if accumulators is not None:
            accumulators.append(acc)
        if index + 1 < len(layers):
            activation_in = activation(shift_floor(acc, int_hs.requant_shifts(index)), layer)
    acc = activation(acc, layers[-1])
    head, m, e = int_hs.head, int_hs.m_channels, int_hs.output_shifts()
    if isinstance(head, LevelHead):
        scale_index = np.clip(shift_floor(acc[:, :m] * head.levels, e[:m]), 0, head.levels - 1)
    else:
        scale_index = _scale_table_index(head, acc[:, :m], e[:m])
    if not head.has_mean:
        return scale_index, None
    mean = np.clip(shift_floor(acc[:, m:], e[m:] - head.mean_bits), -MEAN_LIMIT, MEAN_LIMIT)
    return scale_index, mean


def float_hs(layers, z: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Float64 forward of h_s by the textbook definitions; returns (input of every layer, raw output)."""
    inputs = []
    x = np.asarray(z, dtype=np.float64)
    for layer in layers:
        inputs.append(x)
        spec, weight = layer.spec, np.asarray(layer.weight, np.float64)
        if spec.kind == "conv":
            x = conv2d(x, weight, spec.stride, spec.padding)
        else:
            x = conv_transpose2d(x, weight, spec.stride, spec.padding, spec.output_padding)
        x = x + np.asarray(layer.bias, np.float64).reshape(1, -1, 1, 1)
        if spec.act == "relu":
            x = np.maximum(x, 0)
        elif spec.act == "leaky":
            x = np.maximum(x, x * spec.slope)
    return inputs, x


# --- the integer g_s (codec/intsynth.py) ---


def gs_output_units(int_gs, index: int) -> np.ndarray:
    """Per channel, the exponent e of layer `index`'s output (units 2^-e), read from the layer data."""
    layer, norm = int_gs.layers[index], int_gs.norms[index]
    if norm is None:
        return layer.shift.astype(np.int64) + layer.p_in
    return np.full(layer.out_channels, norm.layer.p_in + norm.norm_shift, np.int64)


def igdn1(layer, norm, acc: np.ndarray, accumulators: list[np.ndarray] | None) -> np.ndarray:
    """t = clip(acc >> (e - q)), n = B + G |t| (a 1x1 conv), n' = clip(n >> (g + q - s)), out = t n'."""
    q, s = norm.layer.p_in, norm.norm_shift
    limit = norm.layer.clamp
    t = np.clip(shift_floor(acc, layer.shift.astype(np.int64) + layer.p_in - q), -limit, limit)
    n = accumulator(norm.layer, np.abs(t))
    if accumulators is not None:
        accumulators.append(n)
    n = np.clip(shift_floor(n, norm.layer.shift.astype(np.int64) + q - s), -limit, limit)
    return t * n


def reference_gs(int_gs, y_hat: np.ndarray, accumulators: list[np.ndarray] | None = None) -> np.ndarray:
    """Run the integer g_s on y_hat [B, M, h, w] (units 2^-input_bits) in int64; returns pixels in [0, 255].

    If `accumulators` is a list, every accumulator (each layer's, then its IGDN1 norm's) is appended to it.
    """
    layers = int_gs.layers
    a = shift_floor(np.asarray(y_hat).astype(np.int64), np.array([int_gs.input_bits - layers[0].p_in]))
    out = a
    for index, layer in enumerate(layers):
        acc = accumulator(layer, np.clip(a, -layer.clamp, layer.clamp))
        if accumulators is not None:
            accumulators.append(acc)
        norm = int_gs.norms[index]
        if norm is not None:
            out = igdn1(layer, norm, acc, accumulators)
        else:
            out = np.maximum(acc, 0) if layer.spec.act == "relu" else acc
        if index + 1 < len(layers):
            a = shift_floor(out, gs_output_units(int_gs, index) - layers[index + 1].p_in)
    e = gs_output_units(int_gs, len(layers) - 1)
    half = np.where(e >= 1, np.left_shift(1, np.maximum(e - 1, 0)), 0).reshape(1, -1, 1, 1)
    return np.clip(shift_floor(out * 255 + half, e), 0, 255)
