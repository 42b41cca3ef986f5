"""The offline matrix against a coordinator job, on real processes: `bitmatch encode-set` on cpu and
qemu-aarch64, `bitmatch decode-set` on both, `bitmatch aggregate`; then a `bitmatch serve` job with a worker
per target on the same codecs and images. Verdicts, stage hashes, the JUnit cases and the history database
must agree."""

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import junitparser
import pytest
from server_harness import (
    ROOT,
    WORKER_TOKEN,
    auth,
    bitmatch_command,
    ensure_target,
    start_coordinator,
    start_worker,
    subprocess_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.qemu]

TARGETS = ("cpu", "qemu-aarch64")
PACKAGES = [ROOT / "packages" / p / "q2" for p in ("int16", "float")]
IMAGES = "tiny"


def bitmatch(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*bitmatch_command(args[0]), *args[1:]],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if check:
        assert done.returncode == 0, f"bitmatch {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    ensure_target("qemu-aarch64")
    root = tmp_path_factory.mktemp("offline")
    codecs = [arg for path in PACKAGES for arg in ("--codec", str(path))]
    for target in TARGETS:
        bitmatch(
            "encode-set",
            *codecs,
            "--images",
            IMAGES,
            "--target",
            target,
            "--out",
            str(root / f"enc-{target}"),
        )
    sources = [arg for target in TARGETS for arg in ("--from", str(root / f"enc-{target}"))]
    for target in TARGETS:
        bitmatch("decode-set", *sources, "--target", target, "--out", str(root / f"dec-{target}"))
    sets = [str(root / f"{kind}-{target}") for kind in ("enc", "dec") for target in TARGETS]
    done = bitmatch("aggregate", *sets, "--out", str(root / "report"), "--label", "night-1")
    return root, done


@pytest.fixture(scope="module")
def coordinator_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    workers = {target: start_worker(target, root / target) for target in TARGETS}
    try:
        for worker in workers.values():
            worker.wait_ready()
        config = root / "workers.json"
        entries = [{"name": t, "url": w.url, "token": WORKER_TOKEN, "target": t} for t, w in workers.items()]
        config.write_text(json.dumps({"workers": entries}))
        coordinator = start_coordinator(
            root, "--workers-config", str(config), "--health-package", str(PACKAGES[0])
        )
        try:
            yield _run_job(coordinator.url)
        finally:
            coordinator.stop()
    finally:
        for worker in workers.values():
            worker.stop()


def _run_job(url: str) -> dict:
    from codec.package import CodecPackage, archive_bytes

    with httpx.Client(base_url=url, headers=auth(), timeout=120) as client:
        deadline = time.monotonic() + 900
        while sum(d["status"] == "healthy" for d in client.get("/api/workers").json()) < len(TARGETS):
            assert time.monotonic() < deadline, client.get("/api/workers").text
            time.sleep(0.3)
        digests = []
        for path in PACKAGES:
            package = CodecPackage.load(path)
            client.put(f"/api/codecs/{package.digest}", content=archive_bytes(package)).raise_for_status()
            digests.append(package.digest)
        body = {"codecs": digests, "images": IMAGES, "encoders": list(TARGETS), "decoders": list(TARGETS)}
        job_id = client.post("/api/jobs", json=body).json()["id"]
        while client.get(f"/api/jobs/{job_id}").json()["status"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline + 900, "the job did not finish"
            time.sleep(0.5)
        cells = client.get(f"/api/jobs/{job_id}/cells").json()
        details = {cell["id"]: client.get(f"/api/cells/{cell['id']}").json() for cell in cells}
        junit = client.get(f"/api/jobs/{job_id}/export/junit").text
        return {"cells": cells, "details": details, "junit": junit}


def key(cell: dict) -> tuple:
    return cell["codec"], cell["image"], cell["encoder"], cell["decoder"]


def aggregate_cells(root: Path) -> tuple[list[dict], dict[int, dict]]:
    document = json.loads((root / "report" / "results.json").read_text())
    from server.db import Database
    from server.queries import cell_detail
    from server.settings import Settings

    db = Database(Settings(data_dir=root / "report" / "history").database_url)
    try:
        with db.session() as session:
            details = {cell["id"]: cell_detail(session, cell["id"]) for cell in document["cells"]}
    finally:
        db.dispose()
    return document["cells"], details


def test_aggregate_gives_the_coordinators_verdicts_and_stage_hashes(offline, coordinator_job):
    root, done = offline
    assert "PASS" in done.stdout or "FAIL" in done.stdout
    cells, details = aggregate_cells(root)
    live = {key(c): c for c in coordinator_job["cells"]}
    assert len(cells) == len(live) == 2 * 3 * len(TARGETS) ** 2
    for cell in cells:
        other = live[key(cell)]
        assert cell["verdict"] == other["verdict"], (cell, other)
        ours, theirs = details[cell["id"]], coordinator_job["details"][other["id"]]
        for side in ("encode", "decode"):
            assert ours[side]["stage_hashes"] == theirs[side]["stage_hashes"], (side, key(cell))
        assert (ours["mismatch"] is None) == (theirs["mismatch"] is None)
    int16 = [c for c in cells if c["precision"] == "int16"]
    assert {c["verdict"] for c in int16} <= {"bit-exact", "latent-exact"}


def test_the_junit_cases_are_the_coordinators(offline, coordinator_job):
    root, _ = offline

    def outcomes(xml: junitparser.JUnitXml) -> dict[tuple[str, str], str]:
        result = {}
        for suite in xml:
            for case in suite:
                kind = type(case.result[0]).__name__ if case.result else "passed"
                result[(case.classname, case.name)] = kind
        return result

    ours = junitparser.JUnitXml.fromfile(str(root / "report" / "junit.xml"))
    theirs = junitparser.JUnitXml.fromstring(coordinator_job["junit"])
    assert outcomes(ours) == outcomes(theirs) and len(outcomes(ours)) == 2 * 3 * len(TARGETS) ** 2


def test_the_history_database_holds_the_run_and_a_second_night_adds_to_it(offline):
    root, _ = offline
    sets = [str(root / f"{kind}-{target}") for kind in ("enc", "dec") for target in TARGETS]
    again = bitmatch(
        "aggregate",
        *sets,
        "--out",
        str(root / "report-2"),
        "--history",
        str(root / "report" / "history"),
        "--label",
        "night-2",
    )
    assert again.stdout.splitlines()[0].endswith("pass") and "regression" not in again.stdout
    connection = sqlite3.connect(root / "report" / "history" / "bitmatch.sqlite3")
    try:
        jobs = connection.execute("SELECT id, status FROM jobs ORDER BY id").fetchall()
        per_job = dict(connection.execute("SELECT job_id, count(*) FROM cells GROUP BY job_id").fetchall())
    finally:
        connection.close()
    assert [status for _, status in jobs] == ["done", "done"]
    assert set(per_job.values()) == {2 * 3 * len(TARGETS) ** 2}
