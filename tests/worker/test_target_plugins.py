"""Targets are one-file plugins: a module that defines a `Target` subclass with `@register` is all a new
target takes, and the README's device-target table is the one the registry renders."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from worker.targets import TARGETS, Target, get_target, unregister
from worker.targets.readme import readme_table
from worker.targets_cli import targets_group

README = Path(__file__).resolve().parents[2] / "README.md"

EXAMPLE_MODULE = '''
"""A throwaway target: the host interpreter, always available."""

import sys

from worker.targets import NativeTarget, register


@register
class ExampleTarget(NativeTarget):
    name = "example"
    description = "host CPU, a target written by a test"
    runtime = "ort-cpu"
    readme_row = "a test's throwaway target"

    def check(self):
        return None
'''


@pytest.fixture
def example_target(tmp_path):
    path = tmp_path / "example.py"
    path.write_text(EXAMPLE_MODULE)
    spec = importlib.util.spec_from_file_location("bitmatch_example_target", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        unregister("example")
        sys.modules.pop(spec.name, None)


def test_a_target_is_one_module(example_target):
    target = get_target("example")
    assert isinstance(target, example_target.ExampleTarget) and isinstance(target, Target)
    assert target.available() and target.compute_command(["-c", "pass"]) == [sys.executable, "-c", "pass"]
    assert target.fingerprint() == {"target": "example", "runtime": "ort-cpu", "emulator": None}
    assert "| `example` | a test's throwaway target |" in readme_table()
    result = CliRunner().invoke(targets_group, ["list", "--json"])
    assert result.exit_code == 0, result.output
    assert {"name": "example", "available": True}.items() <= json.loads(result.output)[-1].items()


def test_a_module_dropped_into_the_package_is_discovered(tmp_path, monkeypatch):
    import worker.targets

    (tmp_path / "example.py").write_text(EXAMPLE_MODULE)
    monkeypatch.setattr(worker.targets, "__path__", [*worker.targets.__path__, str(tmp_path)])
    try:
        worker.targets._import_target_modules()
        assert type(get_target("example")).__module__ == "worker.targets.example"
        assert list(TARGETS)[-1] == "example"
    finally:
        unregister("example")
        sys.modules.pop("worker.targets.example", None)


def test_the_throwaway_target_is_gone_afterwards():
    assert "example" not in TARGETS
    with pytest.raises(KeyError):
        get_target("example")


def test_a_name_is_registered_once():
    from worker.targets import register

    class Twin(Target):
        name = "cpu"

    with pytest.raises(ValueError, match="registered twice"):
        register(Twin)


def test_every_target_is_its_own_module():
    modules = {name: cls.__module__ for name, cls in TARGETS.items()}
    assert modules["qemu-aarch64"] == "worker.targets.qemu_aarch64"
    assert modules["qemu-x86-sse"] == "worker.targets.qemu_x86_sse"
    assert modules["cuda"] == "worker.targets.cuda" and modules["openvino"] == "worker.targets.openvino"
    assert {modules["cpu"], modules["cpu-1t-noopt"]} == {"worker.targets.cpu"}
    assert {modules["onnx-ref"], modules["onnx-ref-naive"]} == {"worker.targets.onnx_ref"}


def test_the_readme_table_is_the_registry_rendered():
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Device targets\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = lines.index("| target | what runs the codec |")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    assert "\n".join(lines[start:end]) + "\n" == readme_table()
