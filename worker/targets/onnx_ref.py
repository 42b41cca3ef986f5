"""The reference-evaluator targets: onnx-ref (the onnx package's numpy evaluator, Conv and ConvTranspose
vectorised in codec/onnxref.py) and onnx-ref-naive (the evaluator exactly as onnx ships it)."""

from __future__ import annotations

import importlib.util

from worker.targets.base import NativeTarget, register


@register
class OnnxReferenceTarget(NativeTarget):
    name = "onnx-ref"
    description = "host CPU, the onnx package's pure-numpy reference evaluator (no ONNX Runtime kernels)"
    runtime = "onnx-ref"
    readme_row_of = "cpu"

    def check(self) -> str | None:
        if importlib.util.find_spec("onnx") is None:
            return "the onnx package is not importable in this environment"
        return None


@register
class OnnxReferenceNaiveTarget(OnnxReferenceTarget):
    """The reference evaluator as onnx ships it: ConvTranspose as the specification's literal loops, some
    1000x slower than `onnx-ref`'s vectorised one (the same arithmetic, bit for bit: codec/onnxref.py). For
    whoever wants the loops themselves; started by the demo and `bitmatch matrix` only when named."""

    name = "onnx-ref-naive"
    description = (
        "host CPU, the onnx reference evaluator exactly as onnx ships it (literal ConvTranspose loops, "
        "about 1000x slower than onnx-ref); only when named"
    )
    runtime = "onnx-ref-naive"
    opt_in = True
    readme_row_of = None
    readme_row = (
        "the `onnx.reference` evaluator exactly as onnx ships it (the specification's literal loops, about "
        "1000x slower on a codec's synthesis); started by the demo and `bitmatch matrix` only when "
        "`--targets` names it"
    )
