"""Provisioning shared by every target: the per-user cache, stamps and locks, subprocess and apt helpers,
the host venv's pins and the compute probe that proves a target's Python runs the compute stack.

Everything lands under one per-user cache directory (env BITMATCH_CACHE, else platformdirs' user cache dir).
Each provisioned tree carries a stamp (stamp.json) written last: a tree with a stamp matching the wanted spec
is complete, and setting it up again is a no-op. Emulation (qemu-user, the arm64 sysroot, aarch64 wheels,
fake /proc/cpuinfo) is worker/emulation.py; each target's own setup is in its module under worker/targets/.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from packaging.requirements import Requirement

STAMP_SCHEMA = 1
# What the compute process imports (scipy: codec.metrics); their dependency closure is pinned to the host
# venv's versions.
COMPUTE_PACKAGES = ("numpy", "onnxruntime", "onnx", "numba", "llvmlite", "pillow", "scipy")

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


# ---------------------------------------------------------------- the host venv's pins


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


# ---------------------------------------------------------------- blockers, sizes and the compute probe


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


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


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
