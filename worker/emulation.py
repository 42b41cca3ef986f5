"""Emulation under qemu-user, shared by the emulated targets: the qemu binaries, an arm64 sysroot built
from Debian packages, aarch64 wheels pinned to the host venv and the fake /proc/cpuinfo that onnxruntime
reads under emulation. Trees land in the cache of worker/provision.py.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker.provision import (
    APT_LOCK_WAIT,
    ProvisionError,
    apt_env,
    apt_update,
    has_apt_candidate,
    python_tag,
    require_root,
    run,
    target_dir,
)

QEMU_PACKAGE = "qemu-user"
DEB_ARCH = "arm64"
# manylinux wheels expect libstdc++ and libgcc_s from the system; python3.X pulls the rest.
SYSROOT_EXTRA_PACKAGES = ("libstdc++6",)
AARCH64_WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")

# MIDR fields of qemu's models (target/arm/cpu64.c): implementer, variant, part, revision.
# Models with SVE (a64fx, max) are left out: SVE emulation is thousands of times slower.
AARCH64_CPU_IDS: dict[str, tuple[int, int, int, int]] = {
    "cortex-a53": (0x41, 0x0, 0xD03, 4),
    "cortex-a57": (0x41, 0x1, 0xD07, 0),
    "cortex-a72": (0x41, 0x0, 0xD08, 3),
    "cortex-a76": (0x41, 0x4, 0xD0B, 1),
    "neoverse-n1": (0x41, 0x4, 0xD0C, 1),
}
# Linux arm64 hwcap names in bit order (arch/arm64/include/uapi/asm/hwcap.h), for the Features line.
_HWCAP_TEXT = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
    "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg"
)
_HWCAP2_TEXT = (
    "dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
    "i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme sme_i16i64 sme_f64f64 sme_i8i32 sme_f16f32 sme_b16f32 "
    "sme_f32f32 sme_fa64 wfxt ebf16 sve_ebf16 cssc rprfm sve2p1"
)
HWCAP_NAMES = _HWCAP_TEXT.split()
HWCAP2_NAMES = _HWCAP2_TEXT.split()

# Run under the emulated interpreter: prints the auxv hwcaps (qemu fakes /proc/self/auxv).
HWCAP_PROBE = """
import struct
data = open('/proc/self/auxv', 'rb').read()
pairs = dict(struct.iter_unpack('<QQ', data))
print(pairs.get(16, 0), pairs.get(26, 0))
"""

# ---------------------------------------------------------------- qemu-user


def qemu_binary(arch: str) -> str | None:
    return shutil.which(f"qemu-{arch}")


def qemu_version(binary: str) -> str:
    first = run([binary, "--version"]).stdout.splitlines()[0]
    match = re.search(r"version (\S+)", first)
    return match.group(1) if match else first


def ensure_qemu() -> dict:
    """Install Debian's qemu-user when qemu-aarch64 or qemu-x86_64 is missing."""
    if qemu_binary("aarch64") and qemu_binary("x86_64"):
        return {"qemu": "present"}
    if not shutil.which("apt-get"):
        raise ProvisionError("qemu-user is missing and apt-get is not available to install it")
    require_root("installing qemu-user")
    if not has_apt_candidate(QEMU_PACKAGE):
        apt_update()
    run(["apt-get", *APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", QEMU_PACKAGE], env=apt_env())
    if not (qemu_binary("aarch64") and qemu_binary("x86_64")):
        raise ProvisionError("qemu-user was installed but qemu-aarch64/qemu-x86_64 are not on PATH")
    return {"qemu": "installed"}


# ---------------------------------------------------------------- arm64 sysroot from Debian packages


def ensure_foreign_arch(arch: str, probe_package: str) -> None:
    foreign = run(["dpkg", "--print-foreign-architectures"]).stdout.split()
    if arch not in foreign:
        require_root(f"adding the {arch} dpkg architecture")
        run(["dpkg", "--add-architecture", arch])
        apt_update()
    elif not has_apt_candidate(probe_package):
        require_root("refreshing the apt package lists")
        apt_update()
    if not has_apt_candidate(probe_package):
        raise ProvisionError(
            f"{probe_package} has no installable candidate after `apt-get update`: this Debian release "
            f"does not ship Python {python_tag()} for {arch}"
        )


def resolve_debs(root_packages: Sequence[str], arch: str) -> list[str]:
    """The recursive Depends/Pre-Depends closure of root_packages, restricted to real arch packages."""
    cmd = [
        "apt-cache",
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        *(f"{p}:{arch}" for p in root_packages),
    ]
    lines = run(cmd).stdout.splitlines()
    # Unindented lines are packages; <name> marks a virtual package, which has no .deb of its own.
    return sorted({line for line in lines if line.endswith(f":{arch}") and not line.startswith((" ", "<"))})


def download_debs(packages: Sequence[str], dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    run(["apt-get", "download", *packages], cwd=dest)
    found = {}
    for deb in dest.glob("*.deb"):
        name = run(["dpkg-deb", "-f", str(deb), "Package"]).stdout.strip()
        found[f"{name}:{DEB_ARCH}"] = deb
    missing = sorted(set(packages) - set(found))
    if missing:
        raise ProvisionError(f"apt-get download did not fetch {missing}")
    return found


def deb_version(deb: Path) -> str:
    return run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()


def extract_debs(debs: dict[str, Path], sysroot: Path) -> dict[str, str]:
    sysroot.mkdir(parents=True, exist_ok=True)
    versions = {}
    for name, deb in sorted(debs.items()):
        run(["dpkg", "-x", str(deb), str(sysroot)])
        versions[name] = deb_version(deb)
    return versions


# ---------------------------------------------------------------- aarch64 wheels pinned to the host venv


def pip_platform_args() -> list[str]:
    args = ["--only-binary=:all:"]
    for plat in AARCH64_WHEEL_PLATFORMS:
        args += ["--platform", plat]
    version = f"{sys.version_info.major}{sys.version_info.minor}"
    return [*args, "--python-version", version, "--implementation", "cp", "--abi", f"cp{version}"]


def has_aarch64_wheel(name: str, version: str, scratch: Path) -> bool:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "-d",
        str(scratch),
        *pip_platform_args(),
        f"{name}=={version}",
    ]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def install_wheels(pins: dict[str, str], site_packages: Path, scratch: Path) -> dict[str, str]:
    """pip install --target the aarch64 wheels; a pin without an aarch64 wheel falls back to the newest."""
    requirements = [f"{name}=={version}" for name, version in pins.items()]
    base = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-compile",
        "--target",
        str(site_packages),
        *pip_platform_args(),
    ]
    first = subprocess.run([*base, *requirements], capture_output=True, text=True)
    if first.returncode != 0:
        requirements = [f"{n}=={v}" if has_aarch64_wheel(n, v, scratch) else n for n, v in pins.items()]
        shutil.rmtree(site_packages, ignore_errors=True)
        run([*base, *requirements])
    return installed_versions(site_packages)


def installed_versions(site_packages: Path) -> dict[str, str]:
    dists = importlib.metadata.distributions(path=[str(site_packages)])
    return dict(sorted((d.metadata["Name"].lower().replace("_", "-"), d.version) for d in dists))


def precompile(*trees: Path) -> None:
    """Bytecode from the host interpreter (same minor version, same .pyc magic) saves emulated start-up."""
    for tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(tree)], capture_output=True)


# ---------------------------------------------------------------- fake /proc/cpuinfo


def aarch64_layout(directory: Path | None = None) -> dict[str, Path]:
    base = directory or target_dir("qemu-aarch64")
    return {
        "base": base,
        "sysroot": base / "sysroot",
        "site_packages": base / "site-packages",
        "python": base / "sysroot" / "usr" / "bin" / f"python{python_tag()}",
        "roots": base / "roots",
    }


def cpu_root(cpu: str, directory: Path | None = None) -> Path:
    """The -L prefix for one -cpu model: the sysroot's top-level entries plus that model's proc/cpuinfo."""
    return aarch64_layout(directory)["roots"] / cpu


def emulated_hwcaps(cpu: str, directory: Path | None = None) -> list[str]:
    layout = aarch64_layout(directory)
    qemu = qemu_binary("aarch64")
    if qemu is None:
        raise ProvisionError("qemu-aarch64 is not installed")
    cmd = [qemu, "-cpu", cpu, "-L", str(layout["sysroot"]), str(layout["python"]), "-I", "-c", HWCAP_PROBE]
    hwcap, hwcap2 = (int(v) for v in run(cmd).stdout.split())
    names = [n for bit, n in enumerate(HWCAP_NAMES) if hwcap >> bit & 1]
    return names + [n for bit, n in enumerate(HWCAP2_NAMES) if hwcap2 >> bit & 1]


def cpuinfo_text(cpu: str, features: Sequence[str], processors: int) -> str:
    implementer, variant, part, revision = AARCH64_CPU_IDS[cpu]
    block = (
        "processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: " + " ".join(features) + "\n"
        f"CPU implementer\t: 0x{implementer:02x}\nCPU architecture: 8\nCPU variant\t: 0x{variant:x}\n"
        f"CPU part\t: 0x{part:03x}\nCPU revision\t: {revision}\n\n"
    )
    return "".join(block.format(n=n) for n in range(processors))


def ensure_cpu_root(cpu: str, directory: Path | None = None) -> Path:
    if cpu not in AARCH64_CPU_IDS:
        raise ProvisionError(f"no cpuinfo template for -cpu {cpu}; supported: {sorted(AARCH64_CPU_IDS)}")
    layout = aarch64_layout(directory)
    root = cpu_root(cpu, directory)
    cpuinfo = root / "proc" / "cpuinfo"
    if cpuinfo.exists():
        return root
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "proc").mkdir(parents=True)
    for entry in layout["sysroot"].iterdir():
        if entry.name != "proc":
            (staging / entry.name).symlink_to(os.path.relpath(entry, staging))
    text = cpuinfo_text(cpu, emulated_hwcaps(cpu, directory), os.cpu_count() or 1)
    (staging / "proc" / "cpuinfo").write_text(text)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root


# ---------------------------------------------------------------- what the compute process is told


def emulator_description(arch: str, cpu: str) -> dict[str, Any] | None:
    """The emulator under a target's compute process (binary, version, cpu), or None without qemu-{arch}."""
    binary = qemu_binary(arch)
    if binary is None:
        return None
    return {"binary": binary, "version": cached_qemu_version(binary), "cpu": cpu}


@functools.cache
def cached_qemu_version(binary: str) -> str:
    return qemu_version(binary)
