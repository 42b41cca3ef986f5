"""The dashboard over a real SQLite file and blob store, rendered in process: job list, matrix, cell page with
hashes, first mismatch, error map and repro bundle, RD charts, devices, and the static report.

The job is written through the coordinator's models with a verdict of every kind, so every branch of the
templates renders; `test_browser.py` drives a job that real workers ran.
"""

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_harness import TOKEN, html_references, outside_references

from codec.images import decode_png, encode_png
from codec.package import CodecPackage
from server.app import create_app
from server.bdrate import ENCODER
from server.catalog import add_codec, ensure_image_set
from server.dashboard.charts import nice_ticks, rd_chart
from server.dashboard.images import error_map
from server.models import BdRate, Cell, Decode, Device, Drift, Encode, Fingerprint, Job, Mismatch, RdPoint
from server.report import render_report, write_report
from server.settings import Settings

ENCODERS = ["cpu", "qemu-aarch64"]
DECODERS = ["cpu", "qemu-aarch64"]
STAGES = ("z_hat", "scale_index", "symbols", "mean", "y_hat", "recon")
DIFFERING_STAGES = {"latent-exact": ("recon",), "desync": STAGES[1:]}
FIRST_STAGE = {"desync": "scale_index", "latent-exact": "recon"}
DETAIL = {"desync": "scale_index differs", "error": "decoder error: compute-crashed"}


def planned_verdict(precision: str, encoder: str, decoder: str, image_index: int) -> str:
    """int16: all bit-exact. float: cpu->qemu latent-exact, desync, error on images 0, 1, 2; qemu->qemu
    not-run on image 2 (and qemu->cpu is flagged nondeterministic on image 0)."""
    if precision == "float" and (encoder, decoder) == ("cpu", "qemu-aarch64"):
        return ("latent-exact", "desync", "error")[image_index]
    if precision == "float" and (encoder, decoder) == ("qemu-aarch64", "qemu-aarch64") and image_index == 2:
        return "not-run"
    return "bit-exact"


def seeded_risk(precision: str, encoder: str, decoder: str, image_index: int, kind: str) -> dict:
    """int16: the certificate. float: drift off the diagonal; cpu->cpu image 0 passes at a 30 % risk."""
    if precision == "int16":
        return {"risk": "certificate", "predicted_flips": 0, "observed_flips": 0, "failure_probability": 0.0}
    flips = 1 if kind == "desync" else 0
    probability = 0.3 if (encoder, decoder, image_index) == ("cpu", "cpu", 0) else 0.002
    return {
        "risk": "measured",
        "min_margin_ulp": 2,
        "predicted_flips": flips,
        "observed_flips": flips,
        "failure_probability": probability,
        "silent_corruption": kind == "desync",
    }


def hashes(tag: str, differing: tuple[str, ...] = ()) -> dict[str, str]:
    names = {stage: f"{tag}-{stage}" if stage in differing else f"same-{stage}" for stage in STAGES}
    return {stage: name.encode().hex().ljust(64, "0") for stage, name in names.items()}


def fingerprint(session, target: str, emulated: bool) -> Fingerprint:
    info = {
        "target": target,
        "runtime": "ort-cpu",
        "arch": "aarch64" if emulated else "x86_64",
        "cpu_model": "Cortex-A72" if emulated else "Test CPU",
        "onnxruntime": "1.20.0",
        "emulator": {"binary": "qemu-aarch64", "cpu": "cortex-a72"} if emulated else None,
    }
    row = Fingerprint(
        sha256=f"{target}-fp".encode().hex().ljust(64, "0"),
        target=target,
        arch=info["arch"],
        emulated=emulated,
        info=info,
    )
    session.add(row)
    return row


class Seeder:
    """Writes one finished job (2 codecs x 3 images x 2 encoders x 2 decoders = 24 cells), every verdict."""

    def __init__(self, state, packages) -> None:
        self.state = state
        self.codecs = [
            add_codec(state.db, state.store, state.packages_dir, packages[p].archive)[0]
            for p in ("int16", "float")
        ]
        self.image_digests = ensure_image_set(state.db, state.store, "tiny")
        self.cells: dict[str, int] = {}

    def perturbed(self, digest: str) -> str:
        pixels = decode_png(self.state.store.get(digest)).copy()
        pixels[4:8, 10:14, 1] ^= 3  # a small block differs by up to 3
        return self.state.store.put(encode_png(pixels))

    def run(self) -> int:
        with self.state.db.session() as s:
            fps = {"cpu": fingerprint(s, "cpu", False), "qemu-aarch64": fingerprint(s, "qemu-aarch64", True)}
            s.flush()
            s.add_all(
                [
                    Device(
                        name="cpu-a",
                        url="http://127.0.0.1:1",
                        target="cpu",
                        source="config",
                        status="healthy",
                        fingerprint_id=fps["cpu"].id,
                    ),
                    Device(
                        name="arm",
                        url="http://127.0.0.1:2",
                        target="qemu-aarch64",
                        source="config",
                        status="healthy",
                        fingerprint_id=fps["qemu-aarch64"].id,
                    ),
                    Device(
                        name="cpu-bad",
                        url="http://127.0.0.1:3",
                        target="cpu",
                        source="registered",
                        status="quarantined",
                        health_detail="known-answer y_hat hash differs",
                    ),
                ]
            )
            images = {d: i for i, d in enumerate(self.image_digests)}
            job = Job(
                status="done",
                request={},
                codec_digests=[c.digest for c in self.codecs],
                image_digests=self.image_digests,
                encoder_targets=ENCODERS,
                decoder_targets=DECODERS,
            )
            s.add(job)
            s.flush()
            for codec in self.codecs:
                for digest in self.image_digests:
                    image_id = self._image_id(s, digest)
                    for encoder in ENCODERS:
                        self._encoder_row(s, job, codec, image_id, digest, encoder, fps, images[digest])
            self._bd_rates(s, job)
            self._running_job(s)
            return job.id

    def _running_job(self, s) -> None:
        """A second job still running: one worker-lost cell (no encode, no decode), the rest pending."""
        running = Job(
            status="running",
            request={},
            codec_digests=[self.codecs[0].digest],
            image_digests=self.image_digests,
            encoder_targets=["cpu"],
            decoder_targets=DECODERS,
        )
        s.add(running)
        s.flush()
        lost = Cell(
            job_id=running.id,
            codec_id=self.codecs[0].id,
            image_id=self._image_id(s, self.image_digests[0]),
            encoder_target="cpu",
            decoder_target="cpu",
            verdict="worker-lost",
            detail="encoder worker-lost: every cpu worker is gone",
        )
        s.add(lost)
        s.flush()
        self.cells["worker-lost"] = lost.id

    def _image_id(self, session, digest: str) -> int:
        from server.models import Image

        return session.query(Image).filter_by(digest=digest).one().id

    def _encoder_row(self, s, job, codec, image_id, digest, encoder, fps, image_index) -> None:
        encode = Encode(
            job_id=job.id,
            codec_id=codec.id,
            image_id=image_id,
            target=encoder,
            repeat=0,
            status="done",
            device_id=None,
            fingerprint_id=fps[encoder].id,
            emulated=encoder == "qemu-aarch64",
            stage_hashes=hashes("enc"),
            recon_sha256=digest,
            bitstream_sha256=self.state.store.put(f"bits {codec.id} {digest}".encode()),
            bpp=0.5 + 0.25 * image_index + 0.1 * codec.id,
            psnr=30 + 2 * image_index + codec.id,
            timings={"analysis": 1.5, "entropy": 0.25},
        )
        s.add(encode)
        s.flush()
        s.add(
            RdPoint(
                job_id=job.id,
                codec_id=codec.id,
                image_id=image_id,
                encoder_target=encoder,
                decoder_target=ENCODER,
                bpp=encode.bpp,
                psnr=encode.psnr,
            )
        )
        for decoder in DECODERS:
            self._decoder_row(s, job, codec, image_id, digest, encode, decoder, fps, image_index)

    def _decoder_row(self, s, job, codec, image_id, digest, encode, decoder, fps, image_index) -> None:
        kind = planned_verdict(codec.precision, encode.target, decoder, image_index)
        decode = None
        if kind != "not-run":
            decode = self._decode(s, job, encode, decoder, fps, digest, kind)
            s.add(
                RdPoint(
                    job_id=job.id,
                    codec_id=codec.id,
                    image_id=image_id,
                    encoder_target=encode.target,
                    decoder_target=decoder,
                    bpp=encode.bpp,
                    psnr=decode.psnr or encode.psnr,
                )
            )
        nondet = (codec.precision, encode.target, decoder, image_index) == ("float", "qemu-aarch64", "cpu", 0)
        differs = kind in ("latent-exact", "desync")
        cell = Cell(
            job_id=job.id,
            codec_id=codec.id,
            image_id=image_id,
            encoder_target=encode.target,
            decoder_target=decoder,
            verdict=kind,
            encode_id=encode.id,
            decode_id=decode.id if decode else None,
            encoder_fingerprint_id=encode.fingerprint_id,
            decoder_fingerprint_id=fps[decoder].id,
            emulated="qemu-aarch64" in (encode.target, decoder),
            nondeterministic=nondet,
            nondeterminism_detail="2 repeats disagree on recon" if nondet else "",
            first_stage=FIRST_STAGE.get(kind),
            max_abs_diff=3 if differs else None,
            recon_psnr=50.2 if differs else None,
            detail=DETAIL.get(kind, ""),
            **seeded_risk(codec.precision, encode.target, decoder, image_index, kind),
        )
        s.add(cell)
        s.flush()
        self.cells.setdefault(f"{codec.precision}:{kind}", cell.id)
        if cell.failure_probability == 0.3:
            self.cells["float:at-risk"] = cell.id
        if decode is not None and decode.status == "done":
            ulp = 0 if codec.precision == "int16" or encode.target == decoder else 1500
            s.add(
                Drift(
                    cell_id=cell.id,
                    stage="h_s",
                    elements=4096,
                    differing=min(ulp, 40),
                    max_abs_diff=ulp * 1e-7,
                    max_ulp=ulp,
                )
            )
        if kind == "desync":
            s.add(
                Mismatch(
                    cell_id=cell.id,
                    stage="y_hat",
                    flat_index=1234,
                    channel=5,
                    y=3,
                    x=7,
                    encoder_level=17,
                    decoder_level=18,
                    encoder_value=-2,
                    decoder_value=1,
                )
            )

    def _decode(self, s, job, encode, decoder, fps, digest, kind) -> Decode:
        failed = kind == "error"
        recon = self.perturbed(digest) if kind in ("latent-exact", "desync") else digest
        decode = Decode(
            job_id=job.id,
            encode_id=encode.id,
            target=decoder,
            repeat=0,
            status="error" if failed else "done",
            fingerprint_id=fps[decoder].id,
            emulated=decoder == "qemu-aarch64",
            recon_sha256=None if failed else recon,
            stage_hashes=None if failed else hashes("dec", DIFFERING_STAGES.get(kind, ())),
            error_code="compute-crashed" if failed else None,
            psnr=None if failed else encode.psnr - (0.3 if recon != digest else 0.0),
        )
        s.add(decode)
        s.flush()
        return decode

    def _bd_rates(self, s, job) -> None:
        s.add(
            BdRate(
                job_id=job.id,
                kind="codec-vs-codec",
                device="cpu",
                anchor="float",
                test="int16",
                bd_rate=1.234,
                points=3,
            )
        )
        s.add(
            BdRate(
                job_id=job.id,
                kind="decoder-vs-encoder",
                device="cpu->qemu-aarch64",
                anchor="cpu",
                test="qemu-aarch64",
                bd_rate=None,
                points=1,
                note="fewer than 2 points",
            )
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory, packages):
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    app = create_app(Settings(data_dir=data_dir, token=TOKEN, run_scheduler=False, health_interval=3600))
    state = app.state.bitmatch
    seeder = Seeder(state, packages)
    job_id = seeder.run()
    client = TestClient(app)  # no lifespan: no health checks against the seeded, unreachable devices
    yield SimpleNamespace(
        client=client, state=state, job_id=job_id, cells=seeder.cells, seeder=seeder, packages=packages
    )
    state.db.dispose()


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_job_list_links_every_job(site):
    page = site.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'href="/jobs/{site.job_id}"' in page.text
    assert "23 / 24 done, 1 not run" in page.text  # the not-run cell is not counted done


def test_job_page_renders_one_matrix_per_codec_with_every_cell(site):
    page = site.client.get(f"/jobs/{site.job_id}")
    assert page.status_code == 200
    html = page.text
    assert count(r'<table class="matrix"', html) == 2
    assert count(r'<td class="matrix-cell ', html) == 2 * len(ENCODERS) * len(DECODERS)
    assert count(r'<a class="chip ', html) == 24
    assert set(re.findall(r'data-verdict="([a-z-]+)"', html)) == {"bit-exact", "desync", "not-run"}
    assert 'class="tag emu"' in html and 'class="tag" title="2 repeats disagree on recon"' in html
    for verdict in ("latent-exact", "error", "worker-lost", "timeout"):
        assert f"swatch v-{verdict}" in html  # legend
    assert f'href="/cells/{site.cells["float:desync"]}"' in html


def test_job_page_draws_rd_charts_and_the_bd_rate_table(site):
    html = site.client.get(f"/jobs/{site.job_id}").text
    assert count(r'<svg class="rd-chart"', html) == len(ENCODERS) + 2
    assert "+1.23 %" in html and "fewer than 2 points" in html and "n/a" in html
    assert '<meta http-equiv="refresh"' not in html  # finished jobs do not reload


def test_a_running_job_shows_pending_positions_and_refreshes(site):
    html = site.client.get(f"/jobs/{site.job_id + 1}").text
    assert count(r'<td class="matrix-cell v-pending"', html) == len(DECODERS) - 1
    assert count(r'<td class="matrix-cell v-worker-lost"', html) == 1
    assert '<meta http-equiv="refresh" content="5">' in html and "1 / 6" in html


def test_cell_page_highlights_differing_stages_and_the_first_mismatch(site):
    cell_id = site.cells["float:desync"]
    html = site.client.get(f"/cells/{cell_id}").text
    differing = re.findall(r'<tr class="differs" data-stage="([a-z_]+)"', html)
    assert differing == list(DIFFERING_STAGES["desync"])
    mismatch = html[html.index('class="panel alert first-mismatch"') :]
    for label, value in (
        ("channel", 5),
        ("y", 3),
        ("x", 7),
        ("scale level (encoder)", 17),
        ("scale level (decoder)", 18),
    ):
        assert f"<span>{label}</span><b>{value}</b>" in mismatch
    assert "bitmatch codec decode bits.bmc decoded.png --codec codec.tar --runtime ort-cpu" in html
    assert f'src="/cells/{cell_id}/error-map.png"' in html
    assert "amplified ×85" in html  # max difference 3 -> gain 255 // 3


def test_cell_page_without_encode_or_decode_still_renders(site):
    cell_id = site.cells["worker-lost"]
    html = site.client.get(f"/cells/{cell_id}").text
    assert "every cpu worker is gone" in html and "no decoder reconstruction" in html
    assert count(r'<tr class="missing"', html) == len(STAGES)
    with zipfile.ZipFile(io.BytesIO(site.client.get(f"/cells/{cell_id}/repro.zip").content)) as bundle:
        readme = next(bundle.read(n).decode() for n in bundle.namelist() if n.endswith("README.txt"))
    assert "left empty: bits.bmc, encoder-recon.png, decoder-recon.png" in readme


def test_cell_page_of_a_bit_exact_cell_has_no_mismatch(site):
    html = site.client.get(f"/cells/{site.cells['int16:bit-exact']}").text
    assert 'class="differs"' not in html and "None: the parse agrees" in html
    assert "identical" in html


def test_error_map_png_shows_where_the_reconstructions_differ(site):
    cell_id = site.cells["float:latent-exact"]
    response = site.client.get(f"/cells/{cell_id}/error-map.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    pixels = decode_png(response.content)
    lit = np.argwhere(pixels.max(axis=2) > 0)
    assert lit.min(axis=0).tolist() == [4, 10] and lit.max(axis=0).tolist() == [7, 13]
    source = site.client.get(f"/cells/{cell_id}/source.png")
    assert decode_png(source.content).shape == pixels.shape
    assert site.client.get(f"/cells/{site.cells['float:error']}/error-map.png").status_code == 404


def test_repro_bundle_holds_package_bitstream_image_fingerprints_and_replay_line(site, tmp_path: Path):
    cell_id = site.cells["float:desync"]
    response = site.client.get(f"/cells/{cell_id}/repro.zip")
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        bundle.extractall(tmp_path)
        root = tmp_path / bundle.namelist()[0].split("/")[0]
    names = {p.name for p in root.iterdir()}
    assert {
        "codec.tar",
        "bits.bmc",
        "image.png",
        "encoder-fingerprint.json",
        "decoder-fingerprint.json",
        "encoder-recon.png",
        "decoder-recon.png",
        "cell.json",
        "replay.sh",
        "README.txt",
    } <= names
    assert CodecPackage.load(root / "codec.tar").digest == site.packages["float"].digest
    assert tarfile.is_tarfile(root / "codec.tar")
    assert json.loads((root / "decoder-fingerprint.json").read_text())["arch"] == "aarch64"
    assert json.loads((root / "cell.json").read_text())["mismatch"]["channel"] == 5
    replay = (root / "replay.sh").read_text()
    assert (
        "bitmatch codec decode bits.bmc decoded.png --codec codec.tar --runtime ort-cpu "
        "--reference image.png --json"
    ) in replay


def test_devices_page_shows_fingerprints_and_quarantined_workers(site):
    html = site.client.get("/devices").text
    assert count(r'<tr class="device ', html) == 3
    assert 'data-status="quarantined"' in html and "known-answer y_hat hash differs" in html
    assert "Cortex-A72" in html and 'class="tag emu"' in html


def test_unknown_pages_are_html_404s(site):
    bit_exact = site.cells["int16:bit-exact"]
    for path in ("/jobs/999999", "/cells/999999", "/cells/999999/repro.zip", f"/cells/{bit_exact}/x.png"):
        response = site.client.get(path)
        assert response.status_code == 404 and "text/html" in response.headers["content-type"], path


def test_dashboard_pages_stay_out_of_the_openapi_schema(site):
    paths = site.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith("/api") and p != "/healthz"]


def test_static_report_is_self_contained(site, tmp_path: Path):
    out = write_report(site.state.db, site.job_id, tmp_path / "report.html")
    html = out.read_text()
    assert count(r'<td class="matrix-cell ', html) == 8 and count(r'<a class="chip ', html) == 24
    assert "<style>" in html and 'rel="stylesheet"' not in html and "<script" not in html
    urls, ids = html_references(html)
    assert urls and outside_references(html) == [], outside_references(html)
    # every chip leads to its cell's row in the file, which holds the cell's details
    desync = site.cells["float:desync"]
    assert f'href="#cell-{desync}"' in html and f"cell-{desync}" in ids
    row = html[html.index(f'<tr id="cell-{desync}">') :]
    assert "scale_index differs" in row[: row.index("</tr>")]
    assert "repro bundle are not" in html  # what the file leaves out, said


def test_a_cancelled_job_shows_what_was_done_and_what_was_cancelled(site, cancelled_job, tmp_path: Path):
    summary = site.client.get(f"/api/jobs/{cancelled_job}").json()
    assert summary["status"] == "cancelled"
    progress = summary["progress"]
    assert progress["encodes"] == {"done": 1, "cancelled": 2, "not_run": 0, "total": 3}
    assert progress["decodes"] == {"done": 2, "cancelled": 4, "not_run": 0, "total": 6}
    assert progress["cells"] == {"done": 2, "cancelled": 4, "not_run": 0, "total": 6}
    assert progress["fraction"] == pytest.approx(2 / 6)
    page = site.client.get(f"/jobs/{cancelled_job}").text
    report = write_report(site.state.db, cancelled_job, tmp_path / "cancelled.html").read_text()
    for html in (page, report):
        bar = re.search(r'<span class="progress"[^>]*>.*?</span>', html, re.S).group(0)
        assert 'data-done="2" data-cancelled="4"' in bar and "2 of 6 cells done, 4 cancelled" in bar
        assert re.search(r'<div class="done" style="width: 33.3%">', bar)
        assert re.search(r'<div class="cancelled" style="width: 66.7%">', bar)
        assert "2 / 6 done, 4 cancelled" in html
    listing = site.client.get("/").text
    assert "2 / 6 done, 4 cancelled" in listing


@pytest.fixture(scope="module")
def cancelled_job(site) -> int:
    """A job cancelled after one of its three encodes (and that encode's two decodes) ran: the other two
    encodes were closed not-run, their decodes never planned, four of its six cells not-run."""
    seeder, codec = site.seeder, site.seeder.codecs[0]
    with site.state.db.session() as s:
        job = Job(
            status="cancelled",
            detail="cancelled on request",
            request={},
            codec_digests=[codec.digest],
            image_digests=seeder.image_digests,
            encoder_targets=["cpu"],
            decoder_targets=DECODERS,
        )
        s.add(job)
        s.flush()
        for index, digest in enumerate(seeder.image_digests):
            image_id = seeder._image_id(s, digest)
            ran = index == 0
            encode = Encode(job_id=job.id, codec_id=codec.id, image_id=image_id, target="cpu", repeat=0)
            encode.status = "done" if ran else "not-run"
            encode.error_detail = None if ran else "job cancelled"
            s.add(encode)
            s.flush()
            for decoder in DECODERS:
                if ran:
                    s.add(Decode(job_id=job.id, encode_id=encode.id, target=decoder, repeat=0, status="done"))
                verdict = "bit-exact" if ran else "not-run"
                s.add(
                    Cell(
                        job_id=job.id,
                        codec_id=codec.id,
                        image_id=image_id,
                        encoder_target="cpu",
                        decoder_target=decoder,
                        verdict=verdict,
                        detail="" if ran else "encoder not-run: job cancelled",
                    )
                )
        return job.id


def test_report_of_a_missing_job_is_a_key_error(site):
    with site.state.db.session() as session, pytest.raises(KeyError):
        render_report(session, 999999)


def test_error_map_amplifies_to_full_range():
    a = np.zeros((4, 5, 3), np.uint8)
    b = a.copy()
    b[1, 2] = (0, 2, 1)
    result = error_map(a, b)
    assert (result.max_abs_diff, result.gain) == (2, 127)
    pixels = decode_png(result.png)
    assert pixels[1, 2].tolist() == [255, 255, 252] and int(pixels.sum()) == 255 + 255 + 252
    assert error_map(a, a).gain == 1
    with pytest.raises(ValueError):
        error_map(a, np.zeros((5, 4, 3), np.uint8))


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0.13, 0.92) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = nice_ticks(30.2, 30.2)
    assert ticks[0] <= 30.2 <= ticks[-1] and len(ticks) >= 2


def test_rd_chart_escapes_labels_and_handles_no_points():
    svg = rd_chart({"<int16>": [(0.5, 30.0), (0.2, 28.0)]}, "a & b")
    assert "&lt;int16&gt;" in svg and "a &amp; b" in svg and "<polyline" in svg
    assert "no RD points" in rd_chart({}, "empty")


def test_job_page_shows_a_drift_matrix_beside_each_verdict_matrix(site):
    html = site.client.get(f"/jobs/{site.job_id}").text
    assert count(r'<table class="matrix drift-matrix"', html) == 2
    assert count(r'class="drift-cell d-exact"', html) == 4 + 2  # int16 everywhere, float on the diagonal
    assert count(r'class="drift-cell d4"', html) == 2  # float across the devices: 1500 ulp
    assert "float: 1 of 6 cross-device decodes broke; int16: 0" in html


def test_a_passing_position_with_a_high_failure_estimate_is_at_risk_not_green(site):
    html = site.client.get(f"/jobs/{site.job_id}").text
    at_risk = re.findall(
        r'<td class="matrix-cell v-bit-exact at-risk"[^>]*data-encoder="cpu" data-decoder="cpu"', html
    )
    assert len(at_risk) == 1  # the float matrix's cpu -> cpu; int16's stays green
    page = site.client.get(f"/cells/{site.cells['float:at-risk']}").text
    assert 'class="tag risk"' in page and "30 %" in page and 'data-risk="measured"' in page


def test_cell_pages_show_drift_risk_certificate_and_silent_corruption(site):
    desync = site.client.get(f"/cells/{site.cells['float:desync']}").text
    assert 'id="silent-corruption"' in desync and "margins.png" in desync
    assert '<b class="predicted-flips">1</b>' in desync and '<b class="observed-flips">1</b>' in desync
    clean = site.client.get(f"/cells/{site.cells['int16:bit-exact']}").text
    assert 'data-risk="certificate"' in clean and "Zero by construction" in clean
    assert 'id="silent-corruption"' not in clean
    # the seeded cells have no maps: the histogram says so instead of drawing nothing
    assert site.client.get(f"/cells/{site.cells['float:desync']}/margins.png").status_code == 404


def test_exports_carry_the_risk_of_every_cell(site):
    csv_text = site.client.get(f"/api/jobs/{site.job_id}/export/csv").text
    header = csv_text.splitlines()[0].split(",")
    assert {"risk", "failure_probability", "at_risk", "hs_max_ulp", "silent_corruption"} <= set(header)
    junit = site.client.get(f"/api/jobs/{site.job_id}/export/junit").text
    assert junit.count("risk: certificate") == 12
    assert junit.count("at_risk: true") == 1
    document = site.client.get(f"/api/jobs/{site.job_id}/export/json").json()
    risky = [c for c in document["cells"] if c["risk"]["at_risk"]]
    assert len(risky) == 1 and risky[0]["verdict"] == "bit-exact"
