"""Repro bundles replayed on each side's own target, on real processes: a `bitmatch serve` job with one
`bitmatch worker` per local target (cpu, cpu-1t-noopt, onnx-ref, qemu-aarch64, qemu-x86-sse), the int16
package q2 on two 64x64 images, every cell's bundle downloaded from the dashboard route, the coordinator and
workers stopped, then one `bitmatch replay` over all the bundles: each side must give that side's recorded
stage hashes and reconstruction, and the SSE-only decoder of the latent-exact cpu -> qemu-x86-sse cell its
own pixels, not the encoder's.
"""

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
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

from codec.images import decode_png, encode_png, load_png
from codec.imagesets import make_set

pytestmark = [pytest.mark.slow, pytest.mark.qemu]

TARGETS = ("cpu", "cpu-1t-noopt", "onnx-ref", "qemu-aarch64", "qemu-x86-sse")
EMULATED_CPUS = {"qemu-aarch64": "neoverse-n1", "qemu-x86-sse": "Nehalem"}
PACKAGE = ROOT / "packages" / "int16" / "q2"
SIDES = {"encoder": "encode", "decoder": "decode"}
JOB_TIMEOUT_S = 600


def job_images() -> dict[str, bytes]:
    """A 64x64 crop of the demo's coffee photograph, on which the SSE-only x86 decoder's g_s rounds one
    reconstruction value the other way (latent-exact against an AVX encoder), and the tiny gradient."""
    coffee = load_png(ROOT / "data" / "testset" / "demo" / "coffee.png")[:, 32:96]
    return {
        "coffee-64x64": encode_png(np.ascontiguousarray(coffee)),
        "gradient-64x64": encode_png(make_set("tiny")["gradient-64x64"]),
    }


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The finished job's cells and details, every bundle and both reconstructions of every cell, fetched
    over HTTP; the coordinator and the workers are stopped before the replay runs."""
    for target in EMULATED_CPUS:
        ensure_target(target)
    root = tmp_path_factory.mktemp("repro")
    workers = {target: start_worker(target, root / target) for target in TARGETS}
    try:
        for worker in workers.values():
            worker.wait_ready()
        config = root / "workers.json"
        entries = [{"name": t, "url": w.url, "token": WORKER_TOKEN, "target": t} for t, w in workers.items()]
        config.write_text(json.dumps({"workers": entries}))
        coordinator = start_coordinator(
            root, "--workers-config", str(config), "--health-package", str(PACKAGE)
        )
        try:
            return _run_and_download(coordinator.url, root / "bundles")
        finally:
            coordinator.stop()
    finally:
        for worker in workers.values():
            worker.stop()


def _run_and_download(url: str, bundles: Path) -> SimpleNamespace:
    from codec.package import CodecPackage, archive_bytes

    with httpx.Client(base_url=url, headers=auth(), timeout=120) as client:
        _wait(lambda: _healthy(client) == len(TARGETS), "every worker healthy", client)
        package = CodecPackage.load(PACKAGE)
        client.put(f"/api/codecs/{package.digest}", content=archive_bytes(package)).raise_for_status()
        digests = []
        for name, png in job_images().items():
            response = client.post("/api/images", params={"name": name}, content=png)
            response.raise_for_status()
            digests.append(response.json()["digest"])
        body = {
            "codecs": [package.digest],
            "images": digests,
            "encoders": list(TARGETS),
            "decoders": list(TARGETS),
        }
        job_id = client.post("/api/jobs", json=body).json()["id"]
        finished = ("done", "failed", "cancelled")
        _wait(lambda: client.get(f"/api/jobs/{job_id}").json()["status"] in finished, "the job", client)
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "done"
        cells = client.get(f"/api/jobs/{job_id}/cells").json()
        bundles.mkdir()
        details, pixels, paths = {}, {}, {}
        for cell in cells:
            details[cell["id"]] = client.get(f"/api/cells/{cell['id']}").json()
            for side in SIDES:
                response = client.get(f"/cells/{cell['id']}/{side}.png")
                response.raise_for_status()
                pixels[cell["id"], side] = decode_png(response.content)
            response = client.get(f"/cells/{cell['id']}/repro.zip")
            response.raise_for_status()
            paths[cell["id"]] = bundles / f"cell-{cell['id']}.zip"
            paths[cell["id"]].write_bytes(response.content)
    return SimpleNamespace(cells=cells, details=details, pixels=pixels, bundles=paths, root=bundles.parent)


def _healthy(client: httpx.Client) -> int:
    return sum(d["status"] == "healthy" for d in client.get("/api/workers").json())


def _wait(predicate, what: str, client: httpx.Client) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {client.get('/api/workers').text}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def replayed(job):
    """One `bitmatch replay` over every bundle, with the replayed reconstructions written out."""
    out = job.root / "replayed"
    done = subprocess.run(
        [*bitmatch_command("replay"), *map(str, job.bundles.values()), "--json", "--out", str(out)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return SimpleNamespace(
        done=done, report=report, by_cell={b["cell"]: b for b in report.get("bundles", [])}
    )


def test_every_cell_of_the_five_target_matrix_replays_on_its_own_targets(job, replayed):
    assert len(job.cells) == len(job_images()) * len(TARGETS) ** 2
    assert replayed.done.returncode == 0, replayed.done.stdout[-6000:] + replayed.done.stderr[-3000:]
    assert replayed.report["sides"] == {"reproduced": 2 * len(job.cells), "differs": 0, "not-run": 0}
    assert set(replayed.by_cell) == {cell["id"] for cell in job.cells}
    for cell in job.cells:
        bundle = replayed.by_cell[cell["id"]]
        for side, key in SIDES.items():
            result, recorded = bundle["sides"][side], job.details[cell["id"]][key]
            where = f"cell {cell['id']} {cell['encoder']} -> {cell['decoder']} {side}"
            assert result["outcome"] == "reproduced", (where, result)
            assert result["stage_hashes"] == recorded["stage_hashes"], where
            assert set(result["checks"]) >= {"stage hashes", "reconstruction"}, where
            replayed_png = decode_png(Path(bundle["files"][f"{side}-recon.png"]).read_bytes())
            assert np.array_equal(replayed_png, job.pixels[cell["id"], side]), where
            target = cell[side]
            assert result["replayed_as"]["target"] == target, where
            assert result["replayed_as"]["cpu"] == EMULATED_CPUS.get(target), where
        assert bundle["sides"]["encoder"]["checks"]["bitstream"]


def test_one_compute_process_per_target_serves_every_bundle(replayed):
    starts = [line for line in replayed.done.stderr.splitlines() if line.startswith("replay: starting ")]
    assert sorted(line.split()[2] for line in starts) == sorted(TARGETS)


def test_the_sse_decoder_replay_gives_the_decoders_pixels_not_the_encoders(job, replayed):
    pair = ("cpu", "qemu-x86-sse")
    latent = [c for c in job.cells if (c["encoder"], c["decoder"]) == pair and c["verdict"] == "latent-exact"]
    verdicts = {c["image_name"]: c["verdict"] for c in job.cells if (c["encoder"], c["decoder"]) == pair}
    assert latent, f"no latent-exact cpu -> qemu-x86-sse cell on this host: {verdicts}"
    cell = latent[0]
    files = replayed.by_cell[cell["id"]]["files"]
    decoded = decode_png(Path(files["decoder-recon.png"]).read_bytes())
    encoded = decode_png(Path(files["encoder-recon.png"]).read_bytes())
    assert np.array_equal(decoded, job.pixels[cell["id"], "decoder"])
    assert np.array_equal(encoded, job.pixels[cell["id"], "encoder"])
    assert not np.array_equal(decoded, encoded)
    assert int(np.abs(decoded.astype(int) - encoded.astype(int)).max()) == cell["max_abs_diff"]


def test_the_bundles_replay_script_replays_the_decoder_under_its_emulator(job, tmp_path):
    """replay.sh, run as the bundle ships it from its extracted folder, with `bitmatch` on PATH."""
    cell = next(c for c in job.cells if c["decoder"] == "qemu-x86-sse" and c["verdict"] == "latent-exact")
    with zipfile.ZipFile(io.BytesIO(job.bundles[cell["id"]].read_bytes())) as archive:
        archive.extractall(tmp_path)
    (folder,) = tmp_path.iterdir()
    env = subprocess_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        ["sh", str(folder / "replay.sh"), "--side", "decoder", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (bundle,) = json.loads(done.stdout)["bundles"]
    assert list(bundle["sides"]) == ["decoder"] and bundle["sides"]["decoder"]["outcome"] == "reproduced"
    assert bundle["sides"]["decoder"]["stage_hashes"] == job.details[cell["id"]]["decode"]["stage_hashes"]
