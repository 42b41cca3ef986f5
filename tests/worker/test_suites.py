"""Conformance suites for real: `bitmatch suite make` from an aggregated job of the int16 package, `bitmatch
suite run` on a native and an emulated target: every vector gives its expected result, a damaged bitstream
the same typed error on both; a vector whose expectation is wrong fails the run (exit 1)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INT16 = ROOT / "packages" / "int16" / "q2"
BITMATCH = [
    sys.executable,
    "-c",
    "import sys; from bitmatch.cli import main; sys.argv[0] = 'bitmatch'; main()",
]

pytestmark = [pytest.mark.slow, pytest.mark.qemu]


def bitmatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BITMATCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("suite")
    steps = [
        (
            "encode-set",
            "--codec",
            str(INT16),
            "--images",
            "tiny",
            "--target",
            "cpu",
            "--out",
            str(root / "enc"),
        ),
        ("decode-set", "--from", str(root / "enc"), "--target", "cpu", "--out", str(root / "dec")),
        ("aggregate", str(root / "enc"), str(root / "dec"), "--out", str(root / "report")),
        (
            "suite",
            "make",
            "--data-dir",
            str(root / "report" / "history"),
            "--job",
            "1",
            "--out",
            str(root / "suite"),
            "--name",
            "int16-q2-tiny",
        ),
    ]
    for step in steps:
        done = bitmatch(*step)
        assert done.returncode == 0, f"{step}: {done.stdout}\n{done.stderr}"
    return root / "suite"


def test_a_suite_holds_the_bitstreams_and_their_damaged_copies(suite):
    document = json.loads((suite / "suite.json").read_text())
    assert document["format"] == "bitmatch-conformance-suite" and document["name"] == "int16-q2-tiny"
    errors = sorted(v["expected_error"] for v in document["test_vectors"] if "expected_error" in v)
    assert errors == ["bad-magic", "crc-mismatch", "truncated", "unsupported-version", "wrong-codec"]
    positives = [v for v in document["test_vectors"] if "expected" in v]
    assert len(positives) == 3 and all(len(v["expected"]["stage_hashes"]) == 6 for v in positives)


@pytest.mark.parametrize("target", ["cpu", "qemu-aarch64"])
def test_every_device_gives_every_expected_result(suite, target, tmp_path):
    done = bitmatch("suite", "run", str(suite), "--target", target, "--junit", str(tmp_path / "junit.xml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"int16-q2-tiny on {target}: 8 of 8 as expected" in done.stdout
    assert 'failures="0"' in (tmp_path / "junit.xml").read_text()


def test_a_wrong_expectation_fails_the_run(suite, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(suite, broken)
    document = json.loads((broken / "suite.json").read_text())
    vector = next(v for v in document["test_vectors"] if "expected" in v)
    vector["expected"]["stage_hashes"]["recon"] = "0" * 64
    (broken / "suite.json").write_text(json.dumps(document))
    done = bitmatch("suite", "run", str(broken), "--target", "cpu")
    assert done.returncode == 1 and f"FAIL {vector['name']}: differs at recon" in done.stdout


def test_a_suite_run_on_a_missing_target_is_an_infrastructure_failure(suite):
    done = bitmatch("suite", "run", str(suite), "--target", "cuda")
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
