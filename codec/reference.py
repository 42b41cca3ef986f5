"""Plain numpy reference of h_s: direct conv / transposed-conv definitions and the int64 integer h_s.

The ONNX graphs lower transposed convolutions to polyphase correlations and convolutions to im2col + MatMul;
this module does neither. It scatters every kernel tap by the textbook definition, so a test that compares
the two checks the lowering as well as the arithmetic. With int64 inputs every operation here is exact
integer arithmetic (numpy integer dot products never touch BLAS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from codec.intnet import IntHyperSynthesis, IntLayer


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


def apply_layer(x: np.ndarray, layer_kind: str, weight: np.ndarray, stride: int, padding: int,
                output_padding: int) -> np.ndarray:
    if layer_kind == "conv":
        return conv2d(x, weight, stride, padding)
    return conv_transpose2d(x, weight, stride, padding, output_padding)


def floor_shift(values: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """floor(values * 2^-shift) per channel (axis 1) for int64 values; negative shifts multiply."""
    right = np.maximum(shifts, 0).reshape(1, -1, 1, 1)
    left = np.maximum(-shifts, 0).reshape(1, -1, 1, 1)
    return (values >> right) << left


def leaky_floor(values: np.ndarray) -> np.ndarray:
    """Integer LeakyReLU with slope 1/8: max(x, floor(x / 8))."""
    return np.maximum(values, values >> 3)


def int_layer_accumulator(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    """bias + W x for an already clamped int64 input: the value a 32-bit accumulator would hold."""
    acc = apply_layer(x, layer.kind, layer.weight.astype(np.int64), layer.stride, layer.padding,
                      layer.output_padding)
    return acc + layer.bias.astype(np.int64).reshape(1, -1, 1, 1)


def quantize_input(z_hat: np.ndarray, p_in: int) -> np.ndarray:
    """floor(z_hat * 2^p) in int64."""
    z = z_hat.astype(np.int64)
    return z << p_in if p_in >= 0 else z >> -p_in


def reference_hs(
    int_hs: IntHyperSynthesis, z_hat: np.ndarray, accumulators: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run the integer h_s on z_hat [B, C_z, h, w] in int64; returns (scale_index, mean), both int64.

    If `accumulators` is a list, the accumulator tensor of every layer is appended to it.
    """
    layers = int_hs.layers
    activation = quantize_input(np.asarray(z_hat), layers[0].p_in)
    for index, layer in enumerate(layers):
        x = np.clip(activation, -layer.clamp, layer.clamp)
        acc = int_layer_accumulator(layer, x)
        if accumulators is not None:
            accumulators.append(acc)
        if index + 1 < len(layers):
            activation = floor_shift(acc, int_hs.requant_shifts(index))
            if layer.act == "leaky":
                activation = leaky_floor(activation)
    m = int_hs.m_channels
    out_shift = int_hs.output_shifts()
    scale = floor_shift(acc[:, :m] * int_hs.levels, out_shift[:m])
    scale_index = np.clip(scale, 0, int_hs.levels - 1)
    mean = floor_shift(acc[:, m:], out_shift[m:] - int_hs.mean_bits)
    mean = np.clip(mean, -int_hs.mean_limit, int_hs.mean_limit)
    return scale_index, mean


def float_hs(layers: list[dict], z: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Float64 forward of h_s; returns (input of every layer, raw output of the last layer)."""
    inputs = []
    x = np.asarray(z, dtype=np.float64)
    for layer in layers:
        inputs.append(x)
        x = apply_layer(x, layer["kind"], np.asarray(layer["weight"], np.float64), layer["stride"],
                        layer["padding"], layer["output_padding"])
        x = x + np.asarray(layer["bias"], np.float64).reshape(1, -1, 1, 1)
        if layer["act"] == "leaky":
            x = np.maximum(x, x / 8)
    return inputs, x
