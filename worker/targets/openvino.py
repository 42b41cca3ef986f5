"""The openvino target: the host CPU through ONNX Runtime's OpenVINO execution provider, when
onnxruntime-openvino replaces the onnxruntime wheel (setup does not install it)."""

from __future__ import annotations

from worker.targets.base import NativeTarget, register


@register
class OpenVinoTarget(NativeTarget):
    name = "openvino"
    description = "host CPU through ONNX Runtime's OpenVINO execution provider"
    runtime = "ort-openvino"
    required_provider = "OpenVINOExecutionProvider"
    readme_row = (
        "when `onnxruntime-openvino` / a GPU with `onnxruntime-gpu` is present (`pip install .[openvino]`, "
        "`.[cuda]`)"
    )

    def check(self) -> str | None:
        reason = super().check()
        if reason and "OpenVINOExecutionProvider" in reason:
            return "onnxruntime-openvino is not installed (OpenVINOExecutionProvider missing)"
        return reason

    def provision_blocker(self) -> str | None:
        return self.check() and (
            "install onnxruntime-openvino (`pip install .[openvino]`); it replaces the onnxruntime wheel, "
            "so setup does not do it"
        )
