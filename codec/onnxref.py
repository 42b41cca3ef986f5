"""Conv and ConvTranspose for onnx.reference's evaluator, vectorised, with the same results bit for bit.

The reference evaluator's ConvTranspose (onnx/reference/ops/op_conv_transpose.py) computes one GEMM of the
input with the kernel, then scatters the columns into the image with `col2im_naive_implementation`: a Python
loop over every kernel tap and every input position, which is about a thousand times slower than ONNX Runtime
on a codec's synthesis. This class does the same GEMM (the same `np.matmul` call on the same arrays) and the
same scatter, but one kernel tap at a time over all positions at once. Every output element still receives
its contributions in the same order (tap by tap, in C order of the kernel), each added in the input's dtype,
so the result is identical to the literal loop.

Its Conv (onnx/reference/ops/op_conv.py) gathers the im2col matrix through int64 index arrays, which was 60 %
of onnx-ref's time on the analysis of a Kodak-size image. This Conv builds the same matrix (same values, same
shape, C-contiguous) from a strided window view and then runs the reference's own GEMM, reshapes and bias
add, in its order.

tests/codec/test_runtime.py checks both against the naive evaluator (`onnx-ref-naive`). They are part of
what the `onnx-ref` runtime means: the ONNX specification's reference semantics, evaluated in numpy.

Only 2-d, ungrouped, undilated convolutions with explicit pads take these paths (everything bitmatch builds
or imports); anything else falls back to the reference implementation itself.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from onnx.reference.ops.op_conv import Conv as _ReferenceConv
from onnx.reference.ops.op_conv_transpose import ConvTranspose as _ReferenceConvTranspose


class Conv(_ReferenceConv):
    def _run(
        self,
        X,
        W,
        B=None,
        auto_pad=None,
        dilations=None,
        group=None,
        kernel_shape=None,
        pads=None,
        strides=None,
    ):
        if not _fast_path(X, W, auto_pad, dilations, group, None, pads):
            return super()._run(X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
        return (_conv(X, W, B, pads, list(strides or [1, 1])).astype(X.dtype),)


def _conv(x: np.ndarray, w: np.ndarray, bias, pads, strides) -> np.ndarray:
    """onnx's `_conv_implementation` for group 1, its im2col gathered from a window view."""
    batch = x.shape[0]
    outputs, _, k_h, k_w = w.shape
    columns, (out_h, out_w) = _im2col(x, (k_h, k_w), pads, strides)
    flat_kernel = w.shape[1] * k_h * k_w
    columns = columns.reshape((1, flat_kernel, batch * out_h * out_w))
    mul = w.reshape((1, outputs, flat_kernel)) @ columns
    mul = mul.reshape((1, outputs, batch, out_h, out_w)).transpose((2, 0, 1, 3, 4))
    mul = mul.reshape((batch, outputs, out_h, out_w))
    if bias is not None:
        if bias.size == 1:
            return mul + bias
        mul += bias.reshape((1, -1, 1, 1))
    return mul


def _im2col(x: np.ndarray, kernel: tuple[int, int], pads, strides) -> tuple[np.ndarray, tuple[int, int]]:
    """onnx's im2col matrix: row c*K + ky*k_w + kx, column n*H'*W' + oy*W' + ox holds
    x_padded[n, c, oy*s_h + ky, ox*s_w + kx]."""
    batch, channels = x.shape[:2]
    top, left, bottom, right = pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="constant")
    windows = sliding_window_view(padded, kernel, axis=(2, 3))[:, :, :: strides[0], :: strides[1]]
    out_h, out_w = windows.shape[2:4]
    rows = channels * kernel[0] * kernel[1]
    columns = np.ascontiguousarray(windows.transpose((1, 4, 5, 0, 2, 3))).reshape(
        (rows, batch * out_h * out_w)
    )
    return columns, (out_h, out_w)


class ConvTranspose(_ReferenceConvTranspose):
    def _run(
        self,
        X,
        W,
        B=None,
        auto_pad=None,
        dilations=None,
        group=None,
        kernel_shape=None,
        output_padding=None,
        output_shape=None,
        pads=None,
        strides=None,
    ):
        if not _fast_path(X, W, auto_pad, dilations, group, output_shape, pads):
            return super()._run(
                X, W, B, auto_pad, dilations, group, kernel_shape, output_padding, output_shape, pads, strides
            )
        strides = list(strides or [1, 1])
        output_padding = list(output_padding or [0, 0])
        return (_conv_transpose(X, W, B, pads, strides, output_padding),)


def _fast_path(x, w, auto_pad, dilations, group, output_shape, pads) -> bool:
    return (
        x.ndim == 4
        and (group in (None, 1))
        and output_shape is None
        and pads is not None
        and auto_pad in (None, "NOTSET", b"NOTSET")
        and all(d == 1 for d in (dilations or [1, 1]))
    )


def _conv_transpose(x: np.ndarray, w: np.ndarray, bias, pads, strides, output_padding) -> np.ndarray:
    batch, channels, height, width = x.shape
    k_h, k_w = w.shape[2:]
    outputs = w.shape[1]
    s_h, s_w = strides
    top, left, bottom, right = pads
    out_h = s_h * (height - 1) + output_padding[0] + k_h - top - bottom
    out_w = s_w * (width - 1) + output_padding[1] + k_w - left - right
    final = np.empty((batch, outputs, out_h, out_w), dtype=x.dtype)
    for image in range(batch):
        gemm = np.matmul(w.reshape((channels, outputs * k_h * k_w)).T, x[image].reshape((channels, -1)))
        columns = gemm.reshape((outputs, k_h, k_w, height, width))
        image_out = np.zeros((outputs, out_h, out_w), dtype=gemm.dtype)
        for ty in range(k_h):
            rows = _span(ty - top, s_h, height, out_h)
            for tx in range(k_w):
                cols = _span(tx - left, s_w, width, out_w)
                if rows is not None and cols is not None:
                    (r_in, r_out), (c_in, c_out) = rows, cols
                    image_out[:, r_out, c_out] += columns[:, ty, tx, r_in, c_in]
        if bias is not None:
            image_out += bias.reshape(-1, 1, 1)
        final[image] = image_out
    return final


def _span(start: int, stride: int, count: int, size: int) -> tuple[slice, slice] | None:
    """Input positions i with 0 <= start + i * stride < size, as (input slice, output slice)."""
    first = -(start // stride) if start < 0 else 0  # ceil(-start / stride)
    last = min(count - 1, (size - 1 - start) // stride)
    if last < first:
        return None
    return slice(first, last + 1), slice(start + first * stride, start + last * stride + 1, stride)
