"""The integer g_s as ONNX: int32 y_hat in, uint8 pixels out, in the float64 or a digit lowering
(codec/intlowering.py); only a network whose certificate holds (codec/intsynth.py `certify_gs`) is built."""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto

from codec.intlowering import Arithmetic, integer_arithmetic
from codec.intsynth import PIXEL_MAX, IntSynthesis, certify_gs
from codec.onnxgraph import GraphBuilder, image_info
from codec.vocabulary import Lowering, Precision

INPUT_NAME, OUTPUT_NAME = "y_hat", "x_hat"


def build_gs_onnx(int_gs: IntSynthesis, lowering: str = Lowering.FLOAT64) -> bytes:
    """g_s as ONNX: input "y_hat" int32 [1, M, h, w] in units of 2^-input_bits, output "x_hat" uint8
    [1, 3, 16h, 16w] pixels. Refuses (OverflowRisk) a network whose certificate fails."""
    certificate = certify_gs(int_gs, lowering)
    a = integer_arithmetic(Precision.INT16, lowering)
    g = GraphBuilder()
    y = g.op("Transpose", [g.op("Cast", [INPUT_NAME], to=a.elem)], perm=[0, 2, 3, 1])
    activation = a.floor_scale(g, y, np.array([-int_gs.input_shift()]))
    out = activation
    for index, layer in enumerate(int_gs.layers):
        x = g.op("Clip", [activation, a.scalar(g, -layer.clamp), a.scalar(g, layer.clamp)])
        out = _graph_output(g, a, int_gs, index, a.layer(g, x, layer))
        if index + 1 < len(int_gs.layers):
            activation = a.floor_scale(g, out, int_gs.requant_shifts(index))
    pixels = g.op("Mul", [out, a.scalar(g, PIXEL_MAX)])
    pixels = g.op("Add", [pixels, a.array(g, int_gs.pixel_half())])
    pixels = a.floor_scale(g, pixels, int_gs.out_units(len(int_gs.layers) - 1))
    pixels = g.op("Clip", [pixels, a.scalar(g, 0), a.scalar(g, PIXEL_MAX)])
    pixels = g.op("Transpose", [pixels], perm=[0, 3, 1, 2])
    g.op("Cast", [pixels], out=OUTPUT_NAME, to=TensorProto.UINT8)
    meta = {
        "bitmatch.gs.precision": Precision.INT16.value,
        "bitmatch.gs.input_bits": str(int_gs.input_bits),
        "bitmatch.gs.certificate": json.dumps(certificate, sort_keys=True),
    }
    inputs = [image_info(INPUT_NAME, int_gs.layers[0].spec.c_in, "", TensorProto.INT32)]
    outputs = [image_info(OUTPUT_NAME, 3, "*16", TensorProto.UINT8)]
    return g.model("bitmatch_gs", inputs, outputs, meta)


def _graph_output(g: GraphBuilder, a: Arithmetic, int_gs: IntSynthesis, index: int, acc: str) -> str:
    """The graph of `integer_output`."""
    layer, norm = int_gs.layers[index], int_gs.norms[index]
    if norm is None:
        return g.op("Max", [acc, a.scalar(g, 0)]) if layer.act == "relu" else acc
    lo, hi = a.scalar(g, -norm.clamp), a.scalar(g, norm.clamp)
    t = g.op("Clip", [a.floor_scale(g, acc, int_gs.t_shifts(index)), lo, hi])
    n = a.layer(g, g.op("Abs", [t]), norm.layer)
    n = g.op("Clip", [a.floor_scale(g, n, norm.norm_requant()), lo, hi])
    return g.op("Mul", [t, n])
