"""The worker's published contract (worker/contract/): what the coordinator reads of a worker."""

import json
import subprocess
import sys
from pathlib import Path

from worker import fingerprint
from worker.contract.replay_setting import ReplaySetting

ROOT = Path(__file__).resolve().parents[2]


def test_the_result_models_are_importable_from_the_package_as_before():
    from worker.contract import DecodeResult, EncodeResult, TaskReport, parse_result
    from worker.contract.results import TaskReport as Same

    assert TaskReport is Same and callable(parse_result) and EncodeResult and DecodeResult


def test_the_compute_process_needs_no_pydantic():
    """A target's sysroot has numpy and onnxruntime, not pydantic: the fingerprint must not need it."""
    code = "import sys, worker.compute; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_fingerprint_reports_how_to_replay_it(monkeypatch):
    emulator = {"binary": "/usr/bin/qemu-aarch64", "version": "8.2", "cpu": "cortex-a72"}
    monkeypatch.setenv(fingerprint.EMULATOR_ENV, json.dumps(emulator))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    info = fingerprint.collect("qemu-aarch64:cortex-a72", "ort-cpu-1t")
    setting = ReplaySetting.from_fingerprint(info)
    threads = (("OMP_NUM_THREADS", "1"),)
    assert setting == ReplaySetting("qemu-aarch64:cortex-a72", "ort-cpu-1t", "cortex-a72", threads)
    described = "qemu-aarch64:cortex-a72 (ort-cpu-1t, emulated, -cpu cortex-a72, OMP_NUM_THREADS=1)"
    assert setting.describe() == described


def test_a_native_fingerprint_replays_its_launch_spec_not_its_device_class(monkeypatch):
    monkeypatch.delenv(fingerprint.EMULATOR_ENV, raising=False)
    info = fingerprint.collect("cpu", "ort-cpu")
    assert ReplaySetting.from_fingerprint(info).target == "cpu" and info["replay"]["cpu"] is None


def test_a_fingerprint_recorded_before_the_replay_entry_is_read_from_its_fields():
    old_native = {"target": "cpu-aarch64", "arch": "aarch64", "runtime": "ort-cpu", "emulator": None}
    old_native["threads_env"] = {"OMP_NUM_THREADS": "2"}
    assert ReplaySetting.from_fingerprint(old_native).describe() == "cpu (ort-cpu, OMP_NUM_THREADS=2)"
    old_emulated = {"target": "qemu-aarch64", "arch": "aarch64", "runtime": "ort-cpu"}
    old_emulated["emulator"] = {"binary": "qemu-aarch64", "cpu": "cortex-a72"}
    described = ReplaySetting.from_fingerprint(old_emulated).describe()
    assert described == "qemu-aarch64 (ort-cpu, emulated, -cpu cortex-a72)"
    assert ReplaySetting.from_fingerprint({}, "cpu@macos-14").describe() == "cpu (ort-cpu)"
