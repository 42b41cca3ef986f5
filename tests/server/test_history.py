"""History and regressions over recorded nights: three `bitmatch aggregate` runs into one history, the second
with one decoder result broken (and the decoder's onnxruntime version changed): pass -> desync -> pass is a
regression, then fixed; the cell page and /api/cells/{id}/history show it, with what changed. The other
classes on constructed runs."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_harness import ROOT, TOKEN, bitmatch_command, subprocess_env

from codec.vocabulary import Trend
from server.history import Run, classify

pytestmark = pytest.mark.slow  # every test here runs real encode-set nights first

TARGETS = ("cpu", "cpu-1t-noopt")
INT16 = ROOT / "packages" / "int16" / "q2"


def bitmatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bitmatch_command(args[0]), *args[1:]],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("nights")
    for target in TARGETS:
        made = bitmatch(
            "encode-set",
            "--codec",
            str(INT16),
            "--images",
            "tiny",
            "--target",
            target,
            "--out",
            str(root / f"enc-{target}"),
        )
        assert made.returncode == 0, made.stderr
    sources = [a for t in TARGETS for a in ("--from", str(root / f"enc-{t}"))]
    for target in TARGETS:
        made = bitmatch("decode-set", *sources, "--target", target, "--out", str(root / f"dec-{target}"))
        assert made.returncode == 0, made.stderr
    broken = break_one_decode(root, "dec-cpu-1t-noopt")
    history = root / "history"
    runs = []
    for night, decoder_set in (
        ("night-1", "dec-cpu-1t-noopt"),
        ("night-2", broken),
        ("night-3", "dec-cpu-1t-noopt"),
    ):
        sets = [root / "enc-cpu", root / "enc-cpu-1t-noopt", root / "dec-cpu", root / decoder_set]
        runs.append(
            bitmatch(
                "aggregate",
                *map(str, sets),
                "--out",
                str(root / night),
                "--history",
                str(history),
                "--series",
                "nightly",
                "--label",
                night,
            )
        )
    return root, history, runs


def break_one_decode(root: Path, name: str) -> str:
    """A copy of a decode set in which one result's scale-index hash is wrong and onnxruntime is newer."""
    copy = root / f"{name}-broken"
    shutil.copytree(root / name, copy)
    manifest = json.loads((copy / "set.json").read_text())
    manifest["fingerprint"]["onnxruntime"] = "9.9.9"
    (copy / "set.json").write_text(json.dumps(manifest))
    task = next(t for t in manifest["tasks"] if t["encoder_target"] == "cpu")
    report_path = copy / task["report"]
    report = json.loads(report_path.read_text())
    report["result"]["stage_hashes"]["scale_index"] = "0" * 64
    report_path.write_text(json.dumps(report))
    return copy.name


def test_pass_desync_pass_is_a_regression_then_fixed(nights):
    _, _, (first, second, third) = nights
    assert first.returncode == 0 and "regression" not in first.stdout
    assert second.returncode == 1, second.stdout
    lines = second.stdout.splitlines()
    assert lines[1].startswith("regression") and "cpu -> cpu-1t-noopt: desync since night-2" in lines[1]
    assert "decoder onnxruntime" in lines[1]  # what changed between the last good and the first bad run
    assert third.returncode == 0
    assert any(
        line.startswith("fixed") and "cpu -> cpu-1t-noopt" in line for line in third.stdout.splitlines()
    )


def test_the_dashboard_shows_the_history_and_what_changed(nights):
    from server.app import create_app
    from server.settings import Settings

    _, history, _ = nights
    app = create_app(Settings(data_dir=history, token=TOKEN, run_scheduler=False, health_interval=3600))
    client = TestClient(app)
    trends = client.get("/api/jobs/2/history").json()
    assert (
        trends[0]["trend"] == "regression"
        and trends[0]["fingerprint_diff"]["decoder"]["onnxruntime"][1] == "9.9.9"
    )
    cell_id = trends[0]["runs"][-1]["cell"]
    page = client.get(f"/cells/{cell_id}").text
    assert 'data-trend="regression"' in page and "What changed between the last good run" in page
    assert "9.9.9" in page
    fixed = client.get("/api/jobs/3/history").json()
    assert fixed[0]["trend"] == "fixed" and fixed[0]["since"]["label"] == "night-3"
    job_page = client.get("/jobs/2").text
    assert "Changes since the previous run" in job_page and 'data-trend="regression"' in job_page
    app.state.bitmatch.db.dispose()


def run(passed: bool, job: int = 1) -> Run:
    return Run(job, f"n{job}", None, job, "bit-exact" if passed else "desync", passed, None, None)


@pytest.mark.parametrize(
    ("outcomes", "trend"),
    [
        ([True], Trend.NEW),
        ([True, True], Trend.PASS),
        ([True, False], Trend.REGRESSION),
        ([False, True], Trend.FIXED),
        ([False, False], Trend.PERSISTENT_FAILURE),
        ([True, False, True], Trend.FIXED),
        ([True, False, True, False], Trend.UNSTABLE),
        ([True, False, True, False, True, True, True], Trend.PASS),
    ],
)
def test_classes_from_the_outcomes_of_the_runs(outcomes, trend):
    runs = [run(passed, i) for i, passed in enumerate(outcomes, 1)]
    assert classify(("c", "i", "e", "d"), runs).trend == trend
