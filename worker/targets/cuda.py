"""The cuda target: an NVIDIA GPU through ONNX Runtime's CUDA execution provider (onnxruntime-gpu)."""

from __future__ import annotations

import shutil
from pathlib import Path

from worker.targets.base import NativeTarget, ort_providers, register


@register
class CudaTarget(NativeTarget):
    name = "cuda"
    description = "NVIDIA GPU through ONNX Runtime's CUDA execution provider"
    runtime = "ort-cuda"
    required_provider = "CUDAExecutionProvider"
    uses_gpu = True
    readme_row_of = "openvino"

    def check(self) -> str | None:
        gpus = sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
        has_smi = shutil.which("nvidia-smi") is not None
        missing = []
        if not gpus and not has_smi:
            missing.append("no NVIDIA GPU (no /dev/nvidia* device, no nvidia-smi)")
        if "CUDAExecutionProvider" not in ort_providers():
            missing.append("CUDAExecutionProvider missing (install onnxruntime-gpu: `pip install .[cuda]`)")
        return "; ".join(missing) or None

    def provision_blocker(self) -> str | None:
        return self.check()
