"""The device fingerprint: what the compute process runs on, as that process itself sees it.

It is collected inside the compute process (so under qemu-user `arch` is the guest's, e.g. aarch64) and uses
only the standard library, numpy and onnxruntime, which every target provides.

Under emulation /proc/cpuinfo is the host's file or a fake one placed in the sysroot; the CPU features the
code actually detects (CPUID / HWCAP, as numpy's dispatcher saw them) are reported separately in
`cpu_features_detected`. The emulator itself cannot be seen from inside, so the worker passes its description
in the environment variable `BITMATCH_EMULATOR` (JSON: binary, version, cpu).

The `replay` entry says how `bitmatch replay` reproduces this process (its shape, and the reader the
coordinator uses, are the contract's: worker/contract/replay_setting.py; this module does not import the
contract, whose models need pydantic, which a target's compute process may not have). Its digest is
worker/contract/fingerprint.py's.
"""

import ctypes
import json
import os
import platform
import shutil
import subprocess
from typing import Any

EMULATOR_ENV = "BITMATCH_EMULATOR"
_CPU_MODEL_KEYS = ("model name", "cpu model", "Model", "Hardware", "Processor")
_CPU_FLAG_KEYS = ("flags", "Features", "features")
_NVIDIA_SMI_TIMEOUT_S = 10
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # recorded as threads_env


def device_class(target: str, machine: str) -> str:
    """The name the coordinator groups devices by: the target, qualified by the machine for native targets
    off x86-64, so `cpu` in an arm64 container never shares a matrix row (or a retry pool) with x86 `cpu`.
    Emulated targets (`qemu-*`) already name their guest."""
    if machine in ("x86_64", "AMD64") or target.startswith("qemu-"):
        return target
    return f"{target}-{machine}"


def collect(target: str, runtime: str, uses_gpu: bool = False) -> dict[str, Any]:
    """The fingerprint of this process's device; see the module docstring for the fields' provenance."""
    import numpy

    cpuinfo = _read_cpuinfo()
    emulator = emulator_from_env() or _foreign_cpuinfo(cpuinfo)
    threads_env = {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ}
    return {
        "target": device_class(target, platform.machine()),
        "runtime": runtime,
        "arch": platform.machine(),
        "cpu_model": _cpu_model(cpuinfo),
        "cpu_flags": _cpu_flags(cpuinfo),
        "cpu_features_detected": _numpy_cpu_features(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "libc": " ".join(platform.libc_ver()).strip() or None,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        **_onnxruntime_info(),
        "gpu": gpu_info() if uses_gpu else None,
        "emulator": emulator,
        "threads_env": threads_env,
        "replay": replay_setting(target, runtime, emulator, threads_env),
    }


def replay_setting(
    spec: str, runtime: str, emulator: dict[str, Any] | None, threads_env: dict[str, str]
) -> dict[str, Any]:
    """The target spec this process was launched as, its runtime, the emulator's -cpu model and its thread
    variables: what `bitmatch replay` launches to reproduce it."""
    return {
        "target": spec,
        "runtime": runtime,
        "cpu": (emulator or {}).get("cpu"),
        "threads_env": dict(threads_env),
    }


def emulator_from_env() -> dict[str, Any] | None:
    raw = os.environ.get(EMULATOR_ENV)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {"unparsed": raw}
    return value if isinstance(value, dict) else {"unparsed": raw}


def _foreign_cpuinfo(cpuinfo: list[tuple[str, str]]) -> dict[str, Any] | None:
    """An aarch64 process reading an x86 /proc/cpuinfo runs under an emulator nobody told us about
    (typically binfmt_misc qemu in an arm64 container on an x86 host)."""
    keys = {key for key, _ in cpuinfo}
    if platform.machine() in ("aarch64", "arm64") and "vendor_id" in keys:
        return {
            "binary": None,
            "version": None,
            "cpu": None,
            "detected": "aarch64 process sees an x86 /proc/cpuinfo (binfmt_misc emulation?)",
        }
    return None


def _read_cpuinfo() -> list[tuple[str, str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return []
    pairs = []
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def _cpu_model(cpuinfo: list[tuple[str, str]]) -> str:
    for wanted in _CPU_MODEL_KEYS:
        for key, value in cpuinfo:
            if key == wanted and value:
                return value
    # aarch64 kernels list no model name, only the implementer and part numbers (MIDR fields).
    implementer = next((v for k, v in cpuinfo if k == "CPU implementer"), None)
    part = next((v for k, v in cpuinfo if k == "CPU part"), None)
    if implementer and part:
        return f"implementer {implementer} part {part}"
    return platform.processor() or "unknown"


def _cpu_flags(cpuinfo: list[tuple[str, str]]) -> list[str]:
    for wanted in _CPU_FLAG_KEYS:
        for key, value in cpuinfo:
            if key == wanted:
                return sorted(set(value.split()))
    return []


def _numpy_cpu_features() -> list[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return []
    return sorted(name for name, enabled in features.items() if enabled)


def _onnxruntime_info() -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError as exc:
        return {"onnxruntime": None, "providers": [], "onnxruntime_error": str(exc)}
    return {
        "onnxruntime": onnxruntime.__version__,
        "providers": list(onnxruntime.get_available_providers()),
        "onnxruntime_device": onnxruntime.get_device(),
    }


def gpu_info() -> dict[str, Any] | None:
    """Name and driver (nvidia-smi), CUDA runtime and cuDNN versions (their libraries); None if no GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[0] if out.strip() else ""
    name, _, driver = (part.strip() for part in first.partition(","))
    if not name:
        return None
    return {
        "name": name,
        "driver": driver or None,
        "cuda": _cuda_runtime_version(),
        "cudnn": _cudnn_version(),
    }


def _load_first(names: tuple[str, ...]) -> ctypes.CDLL | None:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _cuda_runtime_version() -> str | None:
    lib = _load_first(("libcudart.so", "libcudart.so.12", "libcudart.so.11.0"))
    if lib is None:
        return None
    version = ctypes.c_int()
    if lib.cudaRuntimeGetVersion(ctypes.byref(version)) != 0:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def _cudnn_version() -> str | None:
    lib = _load_first(("libcudnn.so", "libcudnn.so.9", "libcudnn.so.8"))
    if lib is None:
        return None
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    value = int(lib.cudnnGetVersion())
    # cuDNN 9 encodes major*10000 + minor*100 + patch; cuDNN 8 major*1000 + minor*100 + patch.
    major, rest = (value // 10000, value % 10000) if value >= 90000 else (value // 1000, value % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"
