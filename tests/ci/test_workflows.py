"""The GitHub workflows: actionlint finds nothing, the nightly has the shape it needs, and its script runs."""

import fnmatch
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from nightly_harness import DEVICES, ROOT, SCRIPT, Night, nightly

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = Path(sys.executable).parent / "actionlint"
RUNNERS = ["ubuntu-24.04", "ubuntu-24.04-arm", "macos-14", "windows-2022"]
GPU_GUARD = "vars.BITMATCH_GPU_RUNNER == 'true'"
NO_EVIDENCE = {"error", "timeout", "worker-lost", "not-run"}


def load(name: str) -> dict[str, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").split("@")[0] == action]


def run_lines(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    return load("nightly.yml")["jobs"]


def test_actionlint_finds_nothing() -> None:
    assert ACTIONLINT.exists(), f"{ACTIONLINT} is missing: pip install -e '.[dev]'"
    files = [WORKFLOWS / "ci.yml", WORKFLOWS / "nightly.yml"]
    done = subprocess.run(
        [str(ACTIONLINT), *map(str, files)],  # .github/actionlint.yaml declares the `gpu` label
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_actionlint_does_find_problems() -> None:
    broken = (
        "on: push\njobs:\n  a:\n    needs: [b]\n    runs-on: ubuntu-24.04\n    steps:\n      - run: 'true'\n"
    )
    done = subprocess.run(
        [str(ACTIONLINT), "-no-color", "-"], input=broken, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "[job-needs]" in done.stdout


def test_ci_runs_the_readme_test_command_as_root_on_debian() -> None:
    workflow = load("ci.yml")
    assert set(workflow["on"]) == {"push", "pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-24.04" and job["timeout-minutes"] == 90
    # Debian's python3 (3.11) and arm64 archive, as root, privileged for binfmt_misc and dockerd
    assert job["container"] == {"image": "debian:bookworm", "options": "--privileged"}
    assert re.search(r"^\s*\.ci/run$", run_lines(job), re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_action_is_an_official_one_pinned_to_a_major_version() -> None:
    for name in ("ci.yml", "nightly.yml"):
        workflow = load(name)
        assert workflow["defaults"]["run"]["shell"] == "bash"
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"actions/[a-z-]+(/[a-z-]+)?@v[45]", step["uses"]), step["uses"]
                assert step.get("shell", "bash") == "bash"


def test_nightly_runs_on_a_schedule_and_by_hand(jobs: dict[str, Any]) -> None:
    workflow = load("nightly.yml")
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    assert workflow["on"]["schedule"][0]["cron"]
    assert workflow["permissions"] == {"contents": "read"}
    assert all(job["timeout-minutes"] <= 60 for job in jobs.values())


@pytest.mark.parametrize("name", ["encode", "decode"])
def test_the_runner_matrix(jobs: dict[str, Any], name: str) -> None:
    job = jobs[name]
    assert job["strategy"]["matrix"]["runner"] == RUNNERS
    assert job["strategy"]["fail-fast"] is False
    assert job["runs-on"] == "${{ matrix.runner }}"
    assert '"cpu@${{ matrix.runner }}"' in run_lines(job)
    (upload,) = steps_using(job, "actions/upload-artifact")
    assert upload["with"]["name"] == f"{name}-set-${{{{ matrix.runner }}}}"


@pytest.mark.parametrize("name", ["encode-gpu", "decode-gpu"])
def test_the_gpu_jobs_run_only_when_the_runner_is_declared(jobs: dict[str, Any], name: str) -> None:
    job = jobs[name]
    assert GPU_GUARD in job["if"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    assert "nightly.sh " + name.removesuffix("-gpu") + " cuda" in run_lines(job)


def test_a_skipped_gpu_job_skips_nothing_downstream(jobs: dict[str, Any]) -> None:
    for name, job in jobs.items():
        if {"encode-gpu", "decode-gpu"} & set(job.get("needs", [])):
            assert "!cancelled()" in job["if"] or "always()" in job["if"], name


def test_every_set_reaches_the_jobs_that_read_it(jobs: dict[str, Any]) -> None:
    uploads = {
        step["with"]["name"].replace("${{ matrix.runner }}", runner)
        for job in jobs.values()
        for step in steps_using(job, "actions/upload-artifact")
        for runner in RUNNERS
    }
    for name, wanted in (("decode", "encode-set-"), ("decode-gpu", "encode-set-"), ("aggregate", "-set-")):
        (download,) = steps_using(jobs[name], "actions/download-artifact")
        matched = fnmatch.filter(uploads, download["with"]["pattern"])
        assert matched and all(wanted in artifact for artifact in matched), (name, matched)


def test_the_aggregate_job(jobs: dict[str, Any]) -> None:
    job = jobs["aggregate"]
    assert job["runs-on"] == "ubuntu-24.04"
    assert job["if"].startswith("${{ always()") and "needs.decode.result" in job["if"]
    assert {"decode", "decode-gpu"} <= set(job["needs"])
    (restore,) = steps_using(job, "actions/cache/restore")
    (save,) = steps_using(job, "actions/cache/save")
    assert restore["with"]["path"] == save["with"]["path"] == "history"
    assert restore["with"]["key"].startswith(restore["with"]["restore-keys"])
    assert "github.run_id" in save["with"]["key"] and "always()" in save["if"]
    uploaded = [step["with"]["path"] for step in steps_using(job, "actions/upload-artifact")]
    assert "history" in uploaded
    report = next(path for path in uploaded if "junit.xml" in path)
    assert all(f"report/{name}" in report for name in ("report.html", "junit.xml", "results.json"))
    assert "nightly.sh aggregate sets history report" in run_lines(job)
    assert 'exit "$CODE"' in run_lines(job) and "exit 1" in run_lines(job)


def test_the_script_fails_on_integer_desyncs_and_writes_the_step_summary() -> None:
    script = SCRIPT.read_text()
    assert "--fail-on integer-desync" in script
    assert (
        '--summary-md "$summary"' in script and 'summary="${GITHUB_STEP_SUMMARY:-$out/summary.md}"' in script
    )


def test_two_nights_of_the_script_make_every_cell(nights: tuple[Night, Night, Path]) -> None:
    first, second, history = nights
    for night in (first, second):
        for name in ("results.json", "cells.csv", "junit.xml", "report.html"):
            assert (night.report / name).is_file(), name
        assert night.summary.read_text().startswith("## bitmatch")
    assert (history / "bitmatch.sqlite3").is_file()
    results = json.loads((second.report / "results.json").read_text())
    labels = [label for _, label, _ in DEVICES]
    cells = {(c["codec_name"], c["image_name"], c["encoder"], c["decoder"]): c for c in results["cells"]}
    codecs = {c["codec_name"] for c in results["cells"]}
    images = {c["image_name"] for c in results["cells"]}
    assert len(codecs) == 2 and len(images) == 3 and len(results["cells"]) == len(cells)
    assert set(cells) == set(itertools.product(codecs, images, labels, labels))
    assert not {c["verdict"] for c in cells.values()} & NO_EVIDENCE
    assert all(c["passed"] for c in cells.values() if c["precision"] == "int16")
    assert results["job"]["id"] == json.loads((first.report / "results.json").read_text())["job"]["id"] + 1


def test_the_script_refuses_bad_usage_with_exit_2(tmp_path: Path) -> None:
    assert nightly().returncode == 2
    assert nightly("encode", "cpu").returncode == 2
    assert nightly("dance").returncode == 2
    empty = nightly("decode", "cpu", "cpu@linux", tmp_path, tmp_path / "out")
    assert empty.returncode == 2 and "no encode set" in empty.stderr


@pytest.mark.parametrize("code", [1, 2])
def test_the_script_passes_on_bitmatch_s_exit_code(tmp_path: Path, code: int) -> None:
    fake = tmp_path / "bitmatch"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\nexit {code}\n')
    fake.chmod(0o755)
    (tmp_path / "sets" / "one").mkdir(parents=True)
    (tmp_path / "sets" / "one" / "set.json").write_text("{}")
    summary = tmp_path / "summary.md"
    done = nightly(
        "aggregate",
        tmp_path / "sets",
        tmp_path / "history",
        tmp_path / "out",
        env={"BITMATCH": str(fake), "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert done.returncode == code
    argv = (tmp_path / "argv").read_text()
    assert "--fail-on integer-desync" in argv and f"--summary-md {summary}" in argv
    assert f"exited {code} without writing a report" in summary.read_text()
