"""Provisioning for emulated targets: qemu-user, an arm64 sysroot built from Debian packages, aarch64 wheels
and the fake /proc/cpuinfo that onnxruntime reads under emulation.

Everything lands under one per-user cache directory (env BITMATCH_CACHE, else platformdirs' user cache dir).
Each provisioned tree carries a stamp (stamp.json) written last: a tree with a stamp matching the wanted spec
is complete, and setting it up again is a no-op.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from packaging.requirements import Requirement

STAMP_SCHEMA = 1
QEMU_PACKAGE = "qemu-user"
DEB_ARCH = "arm64"
# manylinux wheels expect libstdc++ and libgcc_s from the system; python3.X pulls the rest.
SYSROOT_EXTRA_PACKAGES = ("libstdc++6",)
AARCH64_WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
# What the compute process imports (scipy: codec.metrics); their dependency closure is pinned to the host
# venv's versions.
COMPUTE_PACKAGES = ("numpy", "onnxruntime", "onnx", "numba", "llvmlite", "pillow", "scipy")
DEFAULT_AARCH64_CPU = "neoverse-n1"
X86_SSE_CPU = "Nehalem"
# OpenBLAS (inside numpy) mis-detects qemu's Nehalem and runs AVX kernels (SIGILL); name the core instead.
X86_SSE_ENV = {"OPENBLAS_CORETYPE": "Nehalem"}

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

# Run under a target's interpreter: imports the compute stack, runs one ORT session and one numba function.
COMPUTE_PROBE = """
import json, platform, sys, time
t0 = time.perf_counter()
import numpy as np, onnxruntime as ort, numba, onnx, PIL
from onnx import TensorProto, helper
t1 = time.perf_counter()
vi = helper.make_tensor_value_info
graph = helper.make_graph(
    [helper.make_node('MatMul', ['a', 'b'], ['c'])], 'probe',
    [vi('a', TensorProto.FLOAT, [2, 3]), vi('b', TensorProto.FLOAT, [3, 2])],
    [vi('c', TensorProto.FLOAT, [2, 2])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
a = np.arange(6, dtype=np.float32).reshape(2, 3)
matmul = session.run(None, {'a': a, 'b': a.T.copy()})[0]
t2 = time.perf_counter()

@numba.njit(cache=True)
def weighted_sum(x):
    total = 0
    for i in range(x.shape[0]):
        total += x[i] * (i + 1)
    return total

numba_result = int(weighted_sum(np.arange(100, dtype=np.int64)))
t3 = time.perf_counter()
import llvmlite.binding as llvm
print(json.dumps({
    'machine': platform.machine(), 'python': platform.python_version(), 'numpy': np.__version__,
    'onnxruntime': ort.__version__, 'numba': numba.__version__, 'onnx': onnx.__version__,
    'pillow': PIL.__version__,
    'llvm_cpu': llvm.get_host_cpu_name(), 'matmul': matmul.tolist(), 'numba_result': numba_result,
    'seconds': {'import': t1 - t0, 'ort_session': t2 - t1, 'numba_jit_and_call': t3 - t2},
}))
"""


class ProvisionError(RuntimeError):
    """A target could not be provisioned; the message says why and what to do."""


@dataclass
class SetupResult:
    target: str
    action: str  # "installed", "already provisioned" or "nothing to install"
    seconds: float
    details: dict = field(default_factory=dict)


def cache_root() -> Path:
    override = os.environ.get("BITMATCH_CACHE")
    return Path(override) if override else Path(platformdirs.user_cache_dir("bitmatch"))


def target_dir(name: str) -> Path:
    return cache_root() / "targets" / name


def numba_cache_dir(name: str) -> Path:
    return cache_root() / "numba" / name


def python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


# ---------------------------------------------------------------- stamps and locking


def read_stamp(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "stamp.json").read_text())
    except (OSError, ValueError):
        return None


def write_stamp(directory: Path, stamp: dict) -> None:
    tmp = directory / "stamp.json.tmp"
    tmp.write_text(json.dumps(stamp, indent=2, sort_keys=True))
    tmp.replace(directory / "stamp.json")


def stamp_matches(directory: Path, spec: dict) -> bool:
    stamp = read_stamp(directory)
    return stamp is not None and stamp.get("spec") == spec


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise provisioning of one tree across processes."""
    import fcntl  # provisioning needs a Debian host; importing this module (target listing) does not

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- subprocess helpers


def run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise ProvisionError(f"`{' '.join(cmd)}` failed with exit code {result.returncode}:\n{tail}")
    return result


def apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


APT_LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=600")


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0  # Windows has no uid: never root here


def require_root(what: str) -> None:
    if not is_root():
        raise ProvisionError(f"{what} needs root (apt-get/dpkg); run `bitmatch targets setup` as root")


def apt_update() -> None:
    # Unrelated third-party repositories may fail to refresh; what matters is checked by the caller.
    subprocess.run(["apt-get", *APT_LOCK_WAIT, "update"], capture_output=True, text=True, env=apt_env())


def has_apt_candidate(package: str) -> bool:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    match = re.search(r"Candidate:\s*(\S+)", out)
    return match is not None and match.group(1) != "(none)"


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


def host_pins(roots: Sequence[str] = COMPUTE_PACKAGES) -> dict[str, str]:
    """name -> version for roots and their (marker-applicable) dependencies, as installed in this venv."""
    pins: dict[str, str] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in pins:
            continue
        dist = importlib.metadata.distribution(name)
        pins[key] = dist.version
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                pending.append(req.name)
    return dict(sorted(pins.items()))


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


# ---------------------------------------------------------------- per-target setup


def debian_tools_blocker() -> str | None:
    missing = [tool for tool in ("apt-get", "apt-cache", "dpkg", "dpkg-deb") if not shutil.which(tool)]
    if platform.system() != "Linux" or missing:
        return f"needs a Debian-based Linux with apt (missing: {', '.join(missing) or platform.system()})"
    return None


def apt_blocker() -> str | None:
    """Why Debian packages cannot be installed here (None when they can)."""
    if not is_root():
        return debian_tools_blocker() or "needs root to install Debian packages (apt-get, dpkg)"
    return debian_tools_blocker()


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


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


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


def probe_script() -> Path:
    """COMPUTE_PROBE as a file (numba caches only functions defined in files); rewritten only on change."""
    path = cache_root() / "probes" / "compute_probe.py"
    if not path.exists() or path.read_text() != COMPUTE_PROBE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(COMPUTE_PROBE)
    return path


def run_probe(command: Sequence[str], env: dict[str, str], timeout: float = 600) -> dict:
    """Run a command whose python runs probe_script() and return its JSON report."""
    result = subprocess.run(list(command), capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise ProvisionError(
            f"compute probe failed with exit code {result.returncode} (negative = signal):\n"
            f"{result.stderr.strip()[-2000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
