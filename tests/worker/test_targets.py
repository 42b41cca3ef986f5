"""The target registry and `bitmatch targets list`."""

import json
import subprocess

import pytest
from click.testing import CliRunner

from worker.targets import TARGETS, get_target, launch_environment, project_root
from worker.targets import base as targets_base
from worker.targets import cuda as cuda_module
from worker.targets_cli import targets_group

EXPECTED_RUNTIMES = {
    "cpu": "ort-cpu",
    "cpu-1t-noopt": "ort-cpu-1t",
    "onnx-ref": "onnx-ref",
    "onnx-ref-naive": "onnx-ref-naive",
    "qemu-aarch64": "ort-cpu",
    "qemu-x86-sse": "ort-cpu",
    "openvino": "ort-openvino",
    "cuda": "ort-cuda",
}


def test_every_target_is_registered_with_its_runtime():
    assert {name: cls.runtime for name, cls in TARGETS.items()} == EXPECTED_RUNTIMES
    assert all(cls.description for cls in TARGETS.values())


def test_every_target_says_whether_it_runs_here():
    """Availability is each target's check (its runtime's provider for the ORT ones), not the codec's."""
    for name in ("cpu", "cpu-1t-noopt", "onnx-ref", "onnx-ref-naive"):
        assert get_target(name).check() is None, name
    for cls in TARGETS.values():
        reason = cls().check()
        assert reason is None or (isinstance(reason, str) and reason)


def test_the_provider_targets_name_their_missing_provider(monkeypatch):
    monkeypatch.setattr(targets_base, "ort_providers", lambda: ("CPUExecutionProvider",))
    monkeypatch.setattr(cuda_module, "ort_providers", lambda: ("CPUExecutionProvider",))
    assert "OpenVINOExecutionProvider missing" in get_target("openvino").check()
    assert "CUDAExecutionProvider missing" in get_target("cuda").check()


def test_target_option_selects_the_qemu_cpu_model():
    assert get_target("qemu-aarch64").cpu == "neoverse-n1"
    assert get_target("qemu-aarch64:cortex-a72").cpu == "cortex-a72"
    assert "-cpu" in get_target("qemu-aarch64:cortex-a72").compute_command([])


def test_unknown_target_names_the_known_ones():
    with pytest.raises(KeyError, match="qemu-aarch64"):
        get_target("riscv")


def test_unsupported_cpu_model_is_unavailable_with_a_reason():
    reason = get_target("qemu-aarch64:a64fx").check()
    assert reason is not None and "a64fx" in reason


def test_list_json_shape():
    result = CliRunner().invoke(targets_group, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == list(TARGETS)
    for row in rows:
        assert isinstance(row["available"], bool)
        if row["available"]:
            assert row["reason"] is None
        else:
            assert isinstance(row["reason"], str) and row["reason"]
    native = {row["name"]: row for row in rows}
    assert native["cpu"]["available"] and native["cpu"]["emulator"] is None


def test_list_text_names_every_target():
    result = CliRunner().invoke(targets_group, ["list"])
    assert result.exit_code == 0
    for name in TARGETS:
        assert name in result.output


def test_setup_needs_a_name_or_all_available():
    assert CliRunner().invoke(targets_group, ["setup"]).exit_code == 2
    assert CliRunner().invoke(targets_group, ["setup", "no-such-target"]).exit_code == 2


def test_native_compute_process_imports_the_project_from_anywhere(tmp_path):
    target = get_target("cpu-1t-noopt")
    code = "import codec, os; print(os.path.dirname(codec.__path__[0]), os.environ['OMP_NUM_THREADS'])"
    out = subprocess.run(
        target.compute_command(["-c", code]),
        env=launch_environment(target),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(project_root()), "1"]
