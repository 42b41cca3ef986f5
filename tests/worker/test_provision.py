"""Provisioning of the emulated targets, for real: qemu-user, the arm64 sysroot, aarch64 wheels, the fake
/proc/cpuinfo. The first run on a fresh machine installs them (as root); later runs reuse the cache."""

import json
import re
import subprocess

import pytest

from worker import emulation, provision
from worker.targets import get_target, launch_environment

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def aarch64():
    target = get_target("qemu-aarch64")
    target.setup()
    assert target.check() is None
    return target


@pytest.fixture(scope="module")
def x86_sse():
    target = get_target("qemu-x86-sse")
    target.setup()
    assert target.check() is None
    return target


def run_in(target, python_args):
    result = subprocess.run(
        target.compute_command(python_args),
        env=launch_environment(target),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def probe(target):
    return json.loads(run_in(target, [str(provision.probe_script())]).strip().splitlines()[-1])


def test_setup_is_idempotent(aarch64, x86_sse):
    stamps = {t.name: provision.read_stamp(provision.target_dir(t.name)) for t in (aarch64, x86_sse)}
    for target in (aarch64, x86_sse):
        assert target.setup().action == "already provisioned"
        assert provision.read_stamp(provision.target_dir(target.name)) == stamps[target.name]


def test_aarch64_stamp_records_debian_packages_and_host_matched_wheels(aarch64):
    stamp = provision.read_stamp(provision.target_dir("qemu-aarch64"))
    assert f"python{provision.python_tag()}:arm64" in stamp["debs"]
    assert "libstdc++6:arm64" in stamp["debs"]
    pins = provision.host_pins()
    for name in ("numpy", "onnxruntime", "numba", "llvmlite", "onnx", "pillow"):
        assert stamp["wheels"][name] == pins[name]


def test_aarch64_runs_numpy_onnxruntime_and_numba_as_aarch64_code(aarch64):
    report = probe(aarch64)
    assert report["machine"] == "aarch64"
    assert report["llvm_cpu"] == "neoverse-n1"
    assert report["matmul"] == [[5.0, 14.0], [14.0, 50.0]]
    assert report["numba_result"] == sum(i * (i + 1) for i in range(100))


def test_aarch64_compute_process_imports_the_project(aarch64):
    code = "import codec.errors, worker.fingerprint, platform; print(platform.machine())"
    assert run_in(aarch64, ["-c", code]).split() == ["aarch64"]


def test_fake_cpuinfo_matches_the_emulated_cpu(aarch64):
    text = (emulation.cpu_root("neoverse-n1") / "proc" / "cpuinfo").read_text()
    assert "CPU part\t: 0xd0c" in text
    features = re.search(r"Features\t: (.*)", text).group(1).split()
    assert features == emulation.emulated_hwcaps("neoverse-n1")
    assert "asimd" in features and "sve" not in features


def test_another_cpu_model_gets_its_own_cpuinfo(aarch64):
    target = get_target("qemu-aarch64:cortex-a72")
    target.setup()
    assert target.check() is None
    code = "import onnxruntime, platform as p; print(p.machine(), open('/proc/cpuinfo').read().count('d08'))"
    machine, parts = run_in(target, ["-c", code]).split()
    assert machine == "aarch64" and int(parts) >= 1


def test_x86_sse_runs_the_venv_without_avx(x86_sse):
    report = probe(x86_sse)
    assert report["machine"] == "x86_64"
    assert report["llvm_cpu"] == "nehalem"
    assert report["matmul"] == [[5.0, 14.0], [14.0, 50.0]]


def test_emulator_descriptions(aarch64, x86_sse):
    for target, cpu in ((aarch64, "neoverse-n1"), (x86_sse, "Nehalem")):
        emulator = target.emulator()
        assert emulator["cpu"] == cpu
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", emulator["version"])
        assert json.loads(launch_environment(target)["BITMATCH_EMULATOR"]) == emulator
