"""Device targets as plugins: each knows whether it can run here, how to start its compute process and what
it is. Register a new one with `@register`. An `opt_in` target (onnx-ref-naive) is listed and can be served
like any other, but the demo and `bitmatch matrix` start it only when `--targets` names it.

A target's compute process is `compute_command(["-m", "worker.compute", ...])` run with `environment()`
laid over os.environ (`launch_environment()` merges them). The environment makes the project importable
(PYTHONPATH = the directory holding the `codec` package, plus the target's own site-packages when emulated)
and gives each target its own numba cache.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from worker import provision
from worker.provision import SetupResult

TARGETS: dict[str, type[Target]] = {}


def register(cls: type[Target]) -> type[Target]:
    if cls.name in TARGETS:
        raise ValueError(f"target {cls.name!r} is registered twice")
    TARGETS[cls.name] = cls
    return cls


def get_target(spec: str) -> Target:
    """A target by name; `qemu-aarch64:cortex-a72` passes an option (the -cpu model) after the colon."""
    name, _, option = spec.partition(":")
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name](option) if option else TARGETS[name]()


def all_targets() -> list[Target]:
    return [cls() for cls in TARGETS.values()]


def project_root() -> Path:
    """The directory that holds the `codec` package, wherever the project was cloned or installed."""
    spec = importlib.util.find_spec("codec")
    if spec is None or spec.origin is None:
        raise RuntimeError("the codec package is not importable")
    return Path(spec.origin).resolve().parent.parent


@functools.cache
def ort_providers() -> tuple[str, ...]:
    try:
        import onnxruntime
    except ImportError:
        return ()
    return tuple(onnxruntime.get_available_providers())


def launch_environment(target: Target) -> dict[str, str]:
    """The complete environment of the target's compute process."""
    return {**os.environ, **target.environment()}


class Target:
    name: ClassVar[str]
    description: ClassVar[str]
    runtime: ClassVar[str]  # the codec runtime the compute process uses
    uses_gpu: ClassVar[bool] = False
    opt_in: ClassVar[bool] = (
        False  # `bitmatch demo` and `bitmatch matrix` start it only when named (--targets)
    )

    def check(self) -> str | None:
        """None when the target can run here, else the reason it cannot."""
        raise NotImplementedError

    def provision_blocker(self) -> str | None:
        """None when setup() can make this target runnable here, else why not."""
        return None

    def setup(self) -> SetupResult:
        """Install what the target needs; idempotent."""
        return SetupResult(self.name, "nothing to install", 0.0)

    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        """argv that runs the target's Python with python_args (e.g. ["-m", "worker.compute", ...])."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """Variables laid over os.environ for the compute process."""
        return {
            "PYTHONPATH": str(project_root()),
            "NUMBA_CACHE_DIR": str(provision.numba_cache_dir(self.cache_key())),
        }

    def emulator(self) -> dict[str, Any] | None:
        """The emulator under the compute process (binary, version, cpu), or None when native."""
        return None

    def emulated_cpu(self) -> str | None:
        """The CPU model the emulator presents (its -cpu), or None when native."""
        return None

    def cache_key(self) -> str:
        return self.name

    def describe(self) -> dict[str, Any]:
        reason = self.check()
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "available": reason is None,
            "reason": reason,
            "emulator": self.emulator() if reason is None else None,
        }


class NativeTarget(Target):
    """Runs in this interpreter's environment on the host CPU."""

    required_provider: ClassVar[str] = "CPUExecutionProvider"

    def check(self) -> str | None:
        providers = ort_providers()
        if not providers:
            return "onnxruntime is not importable in this environment"
        if self.required_provider not in providers:
            return f"{self.required_provider} is not among onnxruntime's providers {list(providers)}"
        return None

    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        return [sys.executable, *python_args]


@register
class CpuTarget(NativeTarget):
    name = "cpu"
    description = "host CPU, ONNX Runtime CPU provider with default threads and graph optimisations"
    runtime = "ort-cpu"


@register
class CpuSingleThreadTarget(NativeTarget):
    name = "cpu-1t-noopt"
    description = "host CPU, ONNX Runtime on one thread with graph optimisations disabled"
    runtime = "ort-cpu-1t"

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@register
class OnnxReferenceTarget(NativeTarget):
    name = "onnx-ref"
    description = "host CPU, the onnx package's pure-numpy reference evaluator (no ONNX Runtime kernels)"
    runtime = "onnx-ref"

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


@register
class OpenVinoTarget(NativeTarget):
    name = "openvino"
    description = "host CPU through ONNX Runtime's OpenVINO execution provider"
    runtime = "ort-openvino"
    required_provider = "OpenVINOExecutionProvider"

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


@register
class CudaTarget(NativeTarget):
    name = "cuda"
    description = "NVIDIA GPU through ONNX Runtime's CUDA execution provider"
    runtime = "ort-cuda"
    required_provider = "CUDAExecutionProvider"
    uses_gpu = True

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


@register
class QemuAarch64Target(Target):
    name = "qemu-aarch64"
    description = "aarch64 Debian Python with aarch64 wheels under qemu-user (arm64 sysroot)"
    runtime = "ort-cpu"

    def __init__(self, cpu: str = provision.DEFAULT_AARCH64_CPU) -> None:
        self.cpu = cpu

    def cache_key(self) -> str:
        return f"{self.name}-{self.cpu}"

    def check(self) -> str | None:
        if self.cpu not in provision.AARCH64_CPU_IDS:
            return f"-cpu {self.cpu} is not supported; choose one of {sorted(provision.AARCH64_CPU_IDS)}"
        if provision.qemu_binary("aarch64") is None:
            return "qemu-aarch64 is not installed; run `bitmatch targets setup qemu-aarch64`"
        if not provision.aarch64_ready():
            return "the arm64 sysroot is not provisioned; run `bitmatch targets setup qemu-aarch64`"
        if not (provision.cpu_root(self.cpu) / "proc" / "cpuinfo").exists():
            return f"no fake /proc/cpuinfo for -cpu {self.cpu}; run `bitmatch targets setup qemu-aarch64`"
        return None

    def provision_blocker(self) -> str | None:
        return provision.aarch64_blocker()

    def setup(self) -> SetupResult:
        return provision.setup_aarch64(self.cpu)

    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        layout = provision.aarch64_layout()
        qemu = provision.qemu_binary("aarch64") or "qemu-aarch64"
        root = provision.cpu_root(self.cpu)
        return [qemu, "-cpu", self.cpu, "-L", str(root), str(layout["python"]), *python_args]

    def environment(self) -> dict[str, str]:
        site_packages = provision.aarch64_layout()["site_packages"]
        return {
            **super().environment(),
            "PYTHONPATH": os.pathsep.join([str(project_root()), str(site_packages)]),
            "PYTHONNOUSERSITE": "1",
            "BITMATCH_EMULATOR": json.dumps(self.emulator()),
        }

    def emulator(self) -> dict[str, Any] | None:
        return emulator_description("aarch64", self.cpu)

    def emulated_cpu(self) -> str | None:
        return self.cpu


@register
class QemuX86SseTarget(Target):
    name = "qemu-x86-sse"
    description = "this venv's x86_64 Python on an SSE4.2-only CPU (qemu-x86_64 -cpu Nehalem, no AVX)"
    runtime = "ort-cpu"

    def check(self) -> str | None:
        if platform.machine() != "x86_64":
            return f"runs this venv's x86_64 wheels under emulation; host is {platform.machine()}"
        if provision.qemu_binary("x86_64") is None:
            return "qemu-x86_64 is not installed; run `bitmatch targets setup qemu-x86-sse`"
        if not provision.x86_sse_ready():
            return "not yet proven to run here; run `bitmatch targets setup qemu-x86-sse`"
        return None

    def provision_blocker(self) -> str | None:
        if platform.machine() != "x86_64":
            return self.check()
        return provision.apt_blocker() if provision.qemu_binary("x86_64") is None else None

    def setup(self) -> SetupResult:
        return provision.setup_x86_sse()

    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        return provision.x86_sse_command(python_args)

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            **provision.X86_SSE_ENV,
            "BITMATCH_EMULATOR": json.dumps(self.emulator()),
        }

    def emulator(self) -> dict[str, Any] | None:
        return emulator_description("x86_64", provision.X86_SSE_CPU)

    def emulated_cpu(self) -> str | None:
        return provision.X86_SSE_CPU


def emulator_description(arch: str, cpu: str) -> dict[str, Any] | None:
    binary = provision.qemu_binary(arch)
    if binary is None:
        return None
    return {"binary": binary, "version": cached_qemu_version(binary), "cpu": cpu}


@functools.cache
def cached_qemu_version(binary: str) -> str:
    return provision.qemu_version(binary)
