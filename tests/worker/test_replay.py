"""Which target `bitmatch replay` runs a recorded side on: its fingerprint's device class made a target again,
with the emulator's -cpu model, the runtime and the thread variables it recorded (worker/replay.py). The
replays themselves run in tests/server/test_repro_replay.py and test_dashboard.py."""

import platform

import pytest

from worker.replay_setting import ReplayUnavailable, setting_of


def side(name: str, /, **fingerprint) -> dict:
    """A recorded task of matrix target `name` with these fingerprint fields."""
    return {"target": name, "status": "done", "fingerprint": fingerprint or None}


def test_an_emulated_side_keeps_its_cpu_model_and_a_default_model_stays_implicit():
    a72 = setting_of(side("qemu-aarch64", target="qemu-aarch64", emulator={"cpu": "cortex-a72"}))
    assert (a72.spec, a72.emulated_cpu) == ("qemu-aarch64:cortex-a72", "cortex-a72")
    n1 = setting_of(side("qemu-aarch64", target="qemu-aarch64", emulator={"cpu": "neoverse-n1"}))
    assert (n1.spec, n1.emulated_cpu) == ("qemu-aarch64", "neoverse-n1")
    sse = setting_of(side("qemu-x86-sse", target="qemu-x86-sse", emulator={"cpu": "Nehalem"}))
    assert sse.describe() == "qemu-x86-sse (ort-cpu, emulated, -cpu Nehalem)"


def test_the_runtime_and_thread_variables_come_from_the_fingerprint():
    recorded = side(
        "cpu-1t-noopt",
        target="cpu-1t-noopt",
        arch=platform.machine(),
        runtime="ort-cpu-1t",
        threads_env={"OMP_NUM_THREADS": "1", "UNRELATED": "x"},
    )
    setting = setting_of(recorded)
    assert (setting.spec, setting.runtime, setting.threads_env) == (
        "cpu-1t-noopt",
        "ort-cpu-1t",
        (("OMP_NUM_THREADS", "1"),),
    )
    assert setting_of(side("cpu")).threads_env is None  # no fingerprint: the target's own settings


def test_an_offline_label_and_a_device_class_name_their_target():
    assert setting_of(side("cpu@macos-14")).spec == "cpu"
    native = side("cpu-aarch64", target="cpu-aarch64", arch="aarch64", runtime="ort-cpu")
    if platform.machine() == "aarch64":
        assert setting_of(native).spec == "cpu"
    else:
        with pytest.raises(ReplayUnavailable, match="natively on aarch64; this host is"):
            setting_of(native)


@pytest.mark.parametrize(
    ("recorded", "reason"),
    [
        (side("qemu-x86-sse", target="qemu-x86-sse", emulator={"cpu": "Haswell"}), "cannot present it"),
        (side("cpu", target="cpu", arch=platform.machine(), runtime="ort-tpu"), "runtime 'ort-tpu'"),
        (side("riscv-board", target="riscv-board"), "'riscv-board' is none of this bitmatch's"),
    ],
)
def test_a_side_no_target_here_can_be_says_why(recorded, reason):
    with pytest.raises(ReplayUnavailable, match=reason):
        setting_of(recorded)
