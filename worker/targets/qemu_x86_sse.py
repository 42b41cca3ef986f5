"""The qemu-x86-sse target: this venv's x86_64 Python on an SSE4.2-only CPU (qemu-x86_64 -cpu Nehalem, no
AVX); its check, its provisioning (proof that the venv's wheels run there) and its emulator."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from worker.emulation import emulator_description, ensure_qemu, qemu_binary
from worker.provision import (
    STAMP_SCHEMA,
    ProvisionError,
    SetupResult,
    apt_blocker,
    host_pins,
    locked,
    numba_cache_dir,
    probe_script,
    run_probe,
    stamp_matches,
    target_dir,
    write_stamp,
)
from worker.targets.base import Target, register

X86_SSE_CPU = "Nehalem"
# OpenBLAS (inside numpy) mis-detects qemu's Nehalem and runs AVX kernels (SIGILL); name the core instead.
X86_SSE_ENV = {"OPENBLAS_CORETYPE": "Nehalem"}


@register
class QemuX86SseTarget(Target):
    name = "qemu-x86-sse"
    description = "this venv's x86_64 Python on an SSE4.2-only CPU (qemu-x86_64 -cpu Nehalem, no AVX)"
    runtime = "ort-cpu"
    readme_row = "the x86-64 stack on an SSE-only CPU (`qemu-x86_64 -cpu Nehalem`)"

    def check(self) -> str | None:
        if platform.machine() != "x86_64":
            return f"runs this venv's x86_64 wheels under emulation; host is {platform.machine()}"
        if qemu_binary("x86_64") is None:
            return "qemu-x86_64 is not installed; run `bitmatch targets setup qemu-x86-sse`"
        if not x86_sse_ready():
            return "not yet proven to run here; run `bitmatch targets setup qemu-x86-sse`"
        return None

    def provision_blocker(self) -> str | None:
        if platform.machine() != "x86_64":
            return self.check()
        return apt_blocker() if qemu_binary("x86_64") is None else None

    def setup(self) -> SetupResult:
        return setup_x86_sse()

    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        return x86_sse_command(python_args)

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            **X86_SSE_ENV,
            "BITMATCH_EMULATOR": json.dumps(self.emulator()),
        }

    def emulator(self) -> dict[str, Any] | None:
        return emulator_description("x86_64", X86_SSE_CPU)

    def emulated_cpu(self) -> str | None:
        return X86_SSE_CPU


# ---------------------------------------------------------------- provisioning


def x86_sse_spec() -> dict:
    # The resolved interpreter, so `python` and `python3` of one venv count as the same provisioning.
    python = os.path.realpath(sys.executable)
    return {"schema": STAMP_SCHEMA, "cpu": X86_SSE_CPU, "python": python, "pins": host_pins()}


def x86_sse_ready() -> bool:
    return stamp_matches(target_dir("qemu-x86-sse"), x86_sse_spec()) and qemu_binary("x86_64") is not None


def x86_sse_command(python_args: Sequence[str]) -> list[str]:
    qemu = qemu_binary("x86_64") or "qemu-x86_64"
    return [qemu, "-cpu", X86_SSE_CPU, sys.executable, *python_args]


def setup_x86_sse() -> SetupResult:
    """qemu-user plus proof that this venv's wheels run on an SSE-only x86_64 (no AVX) under emulation."""
    start = time.monotonic()
    directory = target_dir("qemu-x86-sse")
    with locked(directory):
        if x86_sse_ready():
            return SetupResult("qemu-x86-sse", "already provisioned", time.monotonic() - start)
        if platform.machine() != "x86_64":
            raise ProvisionError(f"qemu-x86-sse runs this venv's x86_64 wheels; host is {platform.machine()}")
        qemu = ensure_qemu()
        env = {**os.environ, **X86_SSE_ENV, "NUMBA_CACHE_DIR": str(numba_cache_dir("qemu-x86-sse"))}
        probe = run_probe(x86_sse_command(["-I", str(probe_script())]), env)
        if probe["machine"] != "x86_64":
            raise ProvisionError(f"emulated probe reported machine {probe['machine']!r}")
        write_stamp(directory, {"spec": x86_sse_spec(), **qemu, "probe": probe})
    return SetupResult("qemu-x86-sse", "installed", time.monotonic() - start, {"probe": probe})
