"""The native CPU targets: cpu (ONNX Runtime's CPU provider as configured by default) and cpu-1t-noopt
(one thread, graph optimisations off)."""

from __future__ import annotations

from worker.targets.base import NativeTarget, register


@register
class CpuTarget(NativeTarget):
    name = "cpu"
    description = "host CPU, ONNX Runtime CPU provider with default threads and graph optimisations"
    runtime = "ort-cpu"
    readme_row = (
        "native x86-64: ONNX Runtime (default threads / 1 thread without graph optimisations; idle threads "
        "never spin) and the `onnx.reference` evaluator, its Conv and ConvTranspose vectorised with "
        "bit-identical results (codec/onnxref.py)"
    )


@register
class CpuSingleThreadTarget(NativeTarget):
    name = "cpu-1t-noopt"
    description = "host CPU, ONNX Runtime on one thread with graph optimisations disabled"
    runtime = "ort-cpu-1t"
    readme_row_of = "cpu"

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
