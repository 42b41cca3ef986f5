"""The qemu-aarch64 target: aarch64 Debian Python with aarch64 wheels under qemu-user, one fake
/proc/cpuinfo per -cpu model (`qemu-aarch64:cortex-a72`); its check, its provisioning and its emulator."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker.emulation import (
    AARCH64_CPU_IDS,
    DEB_ARCH,
    SYSROOT_EXTRA_PACKAGES,
    aarch64_layout,
    cpu_root,
    download_debs,
    emulator_description,
    ensure_cpu_root,
    ensure_foreign_arch,
    ensure_qemu,
    extract_debs,
    install_wheels,
    precompile,
    qemu_binary,
    resolve_debs,
)
from worker.provision import (
    STAMP_SCHEMA,
    ProvisionError,
    SetupResult,
    debian_tools_blocker,
    host_pins,
    is_root,
    locked,
    python_tag,
    run,
    stamp_matches,
    tree_size,
    write_stamp,
)
from worker.targets.base import Target, project_root, register

DEFAULT_AARCH64_CPU = "neoverse-n1"


@register
class QemuAarch64Target(Target):
    name = "qemu-aarch64"
    description = "aarch64 Debian Python with aarch64 wheels under qemu-user (arm64 sysroot)"
    runtime = "ort-cpu"
    readme_label = "`qemu-aarch64[:cpu]`"
    readme_row = (
        "real aarch64 Python, numpy, numba and ONNX Runtime under `qemu-aarch64 -cpu neoverse-n1` "
        "(or `cortex-a72`, ...)"
    )

    def __init__(self, cpu: str = DEFAULT_AARCH64_CPU) -> None:
        self.cpu = cpu

    def cache_key(self) -> str:
        return f"{self.name}-{self.cpu}"

    def check(self) -> str | None:
        if self.cpu not in AARCH64_CPU_IDS:
            return f"-cpu {self.cpu} is not supported; choose one of {sorted(AARCH64_CPU_IDS)}"
        if qemu_binary("aarch64") is None:
            return "qemu-aarch64 is not installed; run `bitmatch targets setup qemu-aarch64`"
        if not aarch64_ready():
            return "the arm64 sysroot is not provisioned; run `bitmatch targets setup qemu-aarch64`"
        if not (cpu_root(self.cpu) / "proc" / "cpuinfo").exists():
            return f"no fake /proc/cpuinfo for -cpu {self.cpu}; run `bitmatch targets setup qemu-aarch64`"
        return None

    def provision_blocker(self) -> str | None:
        return aarch64_blocker()

    def setup(self) -> SetupResult:
        return setup_aarch64(self.cpu)

    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        layout = aarch64_layout()
        qemu = qemu_binary("aarch64") or "qemu-aarch64"
        root = cpu_root(self.cpu)
        return [qemu, "-cpu", self.cpu, "-L", str(root), str(layout["python"]), *python_args]

    def environment(self) -> dict[str, str]:
        site_packages = aarch64_layout()["site_packages"]
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


# ---------------------------------------------------------------- provisioning


def aarch64_blocker() -> str | None:
    if qemu_binary("aarch64") and aarch64_ready():
        return None
    blocker = debian_tools_blocker()
    if blocker or is_root():
        return blocker
    if qemu_binary("aarch64") is None:
        return "qemu-user is missing and installing it needs root"
    if DEB_ARCH not in run(["dpkg", "--print-foreign-architectures"]).stdout.split():
        return f"the {DEB_ARCH} dpkg architecture is not enabled and enabling it needs root"
    return None


def aarch64_spec() -> dict:
    return {
        "schema": STAMP_SCHEMA,
        "python_package": f"python{python_tag()}",
        "extra_packages": list(SYSROOT_EXTRA_PACKAGES),
        "pins": host_pins(),
    }


def aarch64_ready(directory: Path | None = None) -> bool:
    layout = aarch64_layout(directory)
    return stamp_matches(layout["base"], aarch64_spec()) and layout["python"].exists()


def setup_aarch64(cpu: str = DEFAULT_AARCH64_CPU, directory: Path | None = None) -> SetupResult:
    start = time.monotonic()
    layout = aarch64_layout(directory)
    with locked(layout["base"]):
        if aarch64_ready(directory):
            ensure_cpu_root(cpu, directory)
            return SetupResult(
                "qemu-aarch64",
                "already provisioned",
                time.monotonic() - start,
                {"directory": str(layout["base"])},
            )
        details = build_aarch64(layout)
        ensure_cpu_root(cpu, directory)
        details["size_bytes"] = tree_size(layout["base"])
        details["seconds"] = time.monotonic() - start
        write_stamp(layout["base"], {"spec": aarch64_spec(), **details})
    pins = host_pins()
    # Pins without an aarch64 wheel fell back to the newest one: shown, never silent.
    mismatches = {
        n: f"host {v}, aarch64 {details['wheels'].get(n)}"
        for n, v in pins.items()
        if details["wheels"].get(n) != v
    }
    return SetupResult(
        "qemu-aarch64",
        "installed",
        time.monotonic() - start,
        {
            "directory": str(layout["base"]),
            "size_bytes": details["size_bytes"],
            "version_mismatches": mismatches,
        },
    )


def build_aarch64(layout: dict[str, Path]) -> dict:
    blocker = debian_tools_blocker()
    if blocker:
        raise ProvisionError(f"cannot build the arm64 sysroot: {blocker}")
    qemu = ensure_qemu()
    python_package = f"python{python_tag()}"
    ensure_foreign_arch(DEB_ARCH, f"{python_package}:{DEB_ARCH}")
    for stale in ("sysroot", "site_packages", "roots"):
        shutil.rmtree(layout[stale], ignore_errors=True)
    debs_dir = layout["base"] / "debs"
    shutil.rmtree(debs_dir, ignore_errors=True)
    packages = resolve_debs([python_package, *SYSROOT_EXTRA_PACKAGES], DEB_ARCH)
    debs = extract_debs(download_debs(packages, debs_dir), layout["sysroot"])
    shutil.rmtree(debs_dir, ignore_errors=True)
    scratch = layout["base"] / "wheel-check"
    wheels = install_wheels(host_pins(), layout["site_packages"], scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    precompile(layout["sysroot"] / "usr" / "lib" / f"python{python_tag()}", layout["site_packages"])
    return {**qemu, "debs": debs, "wheels": wheels}
