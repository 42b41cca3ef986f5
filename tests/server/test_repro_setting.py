"""What a repro bundle's README says of each side, from the fingerprint its task recorded alone."""

import platform

from server.dashboard.repro import runtime_of, side_targets

HOST = platform.machine()
REPORTED = {
    "target": "qemu-aarch64",
    "arch": "aarch64",
    "runtime": "ort-cpu",
    "emulator": {"binary": "qemu-aarch64", "cpu": "neoverse-n1"},
    "replay": {"target": "qemu-aarch64:neoverse-n1", "runtime": "ort-cpu", "cpu": "neoverse-n1"},
}


def test_each_side_is_described_by_the_replay_setting_its_worker_reported():
    native = {"target": "cpu", "fingerprint": {"target": "cpu", "arch": HOST, "runtime": "ort-cpu-1t"}}
    cell = {"encode": native, "decode": {"target": "qemu-aarch64", "fingerprint": REPORTED}}
    assert side_targets(cell) == {
        "encoder": "cpu (ort-cpu-1t)",
        "decoder": "qemu-aarch64:neoverse-n1 (ort-cpu, emulated, -cpu neoverse-n1)",
    }
    assert runtime_of(native) == "ort-cpu-1t" and runtime_of(None) == "ort-cpu"


def test_a_side_that_ran_natively_on_another_machine_says_where_to_replay_it():
    other = "aarch64" if HOST != "aarch64" else "x86_64"
    away = {"target": "cpu", "fingerprint": {"target": "cpu", "arch": other, "runtime": "ort-cpu"}}
    described = side_targets({"encode": away, "decode": None})
    assert described["encoder"].startswith("cannot be replayed: the side ran cpu natively on")
    assert described["encoder"].endswith(f"replay it on {other}")
    assert described["decoder"] == "no task recorded"
