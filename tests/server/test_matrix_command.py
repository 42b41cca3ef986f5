"""`bitmatch matrix --config FILE.toml` for real (a local coordinator and workers per run), one run per exit
code: 0 when every verdict passes, 1 on a verdict failure (the float twin on the Kodak-size set), 2 on an
infrastructure failure (a target that cannot run here). And the example config parses and names only local
targets."""

import json
import subprocess
from pathlib import Path

import pytest
from server_harness import ROOT, bitmatch_command, subprocess_env

from bitmatch.matrix import load_config

pytestmark = pytest.mark.slow

PACKAGES = ROOT / "packages"


def run_matrix(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "matrix.toml"
    path.write_text(config)
    return subprocess.run(
        [*bitmatch_command("matrix"), "--config", str(path), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )


def config(targets: list[str], codecs: list[tuple[str, list[str]]], images: str) -> str:
    lines = ["[matrix]", 'name = "test"', f"targets = {json.dumps(targets)}", ""]
    for path, expect in codecs:
        lines += ["[[codecs]]", f'path = "{PACKAGES / path}"', f"expect = {json.dumps(expect)}", ""]
    lines += ["[[images]]", images, ""]
    return "\n".join(lines)


def test_a_passing_matrix_exits_0_and_writes_every_output(tmp_path):
    done = run_matrix(tmp_path, config(["cpu", "cpu-1t-noopt"], [("int16/q2", [])], 'set = "tiny"'))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS: 0 verdict failures, 0 infrastructure failures" in done.stdout
    outputs = tmp_path / "out" / "tiny"
    assert {p.name for p in outputs.iterdir()} >= {"results.json", "cells.csv", "junit.xml", "report.html"}
    cells = json.loads((outputs / "results.json").read_text())["cells"]
    assert len(cells) == 3 * 2 * 2 and all(c["verdict"] in ("bit-exact", "latent-exact") for c in cells)


def test_the_float_twin_on_the_kodak_size_set_exits_1_unless_its_desyncs_are_expected(tmp_path):
    kodak = f'dir = "{ROOT / "data" / "kodak"}"'
    done = run_matrix(tmp_path, config(["cpu", "cpu-1t-noopt"], [("float/q2", [])], kodak))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAIL (verdicts)" in done.stdout and "desync" in done.stdout
    expected = run_matrix(
        tmp_path / "expected", config(["cpu", "cpu-1t-noopt"], [("float/q2", ["desync"])], kodak)
    )
    assert expected.returncode == 0, expected.stdout[-3000:]
    # the second run of the series: every cell has a history now
    again = run_matrix(tmp_path, config(["cpu", "cpu-1t-noopt"], [("float/q2", [])], kodak))
    assert again.returncode == 1 and "persistent-failure" in again.stdout


def test_a_target_that_cannot_run_here_exits_2(tmp_path):
    done = run_matrix(tmp_path, config(["cpu", "cuda"], [("int16/q2", [])], 'set = "tiny"'))
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "target cuda could not take part" in done.stdout


def test_a_config_that_breaks_the_schema_is_one_line_and_exit_2(tmp_path):
    done = run_matrix(tmp_path, "[matrix]\nname = 'x'\n")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_the_example_config_names_local_targets_and_the_shipped_packages():
    example = load_config(ROOT / "examples" / "local-matrix.toml")
    assert set(example.matrix.targets) <= {"cpu", "cpu-1t-noopt", "onnx-ref", "qemu-aarch64", "qemu-x86-sse"}
    assert all(entry.path.is_dir() for entry in example.codecs)
