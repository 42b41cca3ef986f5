"""ConvTranspose for onnx.reference's evaluator, vectorised over positions, with the same results bit for bit.

The reference evaluator's ConvTranspose (onnx/reference/ops/op_conv_transpose.py) computes one GEMM of the
input with the kernel, then scatters the columns into the image with `col2im_naive_implementation`: a Python
loop over every kernel tap and every input position, which is about a thousand times slower than ONNX Runtime
on a codec's synthesis. This class does the same GEMM (the same `np.matmul` call on the same arrays) and the
same scatter, but one kernel tap at a time over all positions at once. Every output element still receives
its contributions in the same order (tap by tap, in C order of the kernel), each added in the input's dtype,
so the result is identical to the literal loop; tests/codec/test_runtime.py checks that against the naive
evaluator (`onnx-ref-naive`). It is part of what the `onnx-ref` runtime means: the ONNX specification's
reference semantics, evaluated in numpy.

Only 2-d, ungrouped, undilated transposed convolutions with explicit pads take this path (everything bitmatch
builds or imports); anything else falls back to the reference implementation itself.
"""

from __future__ import annotations

import numpy as np
from onnx.reference.ops.op_conv_transpose import ConvTranspose as _ReferenceConvTranspose


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
