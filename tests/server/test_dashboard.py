"""The dashboard over a real SQLite file and blob store, rendered in process: job list, matrix, cell page with
hashes, first mismatch, error map and repro bundle, RD curves and BD-rates, the RD evidence page, devices,
the API docs and the static report; the bundle replayed by `bitmatch replay` where its record cannot be
reproduced or its target cannot run.

The jobs are written through the coordinator's models: one with a verdict of every kind, so every branch of
the templates renders, and one of two rate families (q1..q4); `test_browser.py` drives jobs that real
workers ran.
"""

import base64
import hashlib
import io
import json
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_harness import ROOT, TOKEN, bitmatch_command, html_references, outside_references, subprocess_env

from codec.images import decode_png, encode_png
from codec.package import CodecPackage
from server import bdrate
from server.anchors import AnchorCache
from server.app import create_app
from server.bdrate import ENCODER
from server.catalog import add_codec, ensure_image_set
from server.dashboard.charts import (
    LEGEND_CHARS,
    LEGEND_ROW,
    LEGEND_WIDTH,
    WIDTH,
    Line,
    legend_text,
    nice_ticks,
    rd_chart,
    tick_labels,
)
from server.dashboard.images import error_map
from server.models import (
    Cell,
    Codec,
    Decode,
    Device,
    Drift,
    Encode,
    Fingerprint,
    Image,
    Job,
    Mismatch,
    RdPoint,
)
from server.report import render_report, write_report
from server.settings import Settings, shipped_rd_evidence

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
        "replay": {  # as the compute process reports it (worker/contract/replay_setting.py)
            "target": f"{target}:cortex-a72" if emulated else target,
            "runtime": "ort-cpu",
            "cpu": "cortex-a72" if emulated else None,
            "threads_env": {},
        },
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
            s.flush()
            bdrate.record(s, job.id)
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


RD_RATES, RD_PSNR = (0.3, 0.5, 0.8, 1.2), (26.0, 28.0, 30.0, 32.0)
RD_ENCODERS, RD_DECODERS = ["cpu", "cpu-1t-noopt"], ["cpu", "arm"]


def seed_rate_families(state) -> int:
    """A finished job of two families, float and int16 q1..q4, on the tiny set: int16 spends 10 % more rate at
    equal PSNR, both encoders agree, and the arm decoder loses 0.5 dB of float's quality."""
    images = ensure_image_set(state.db, state.store, "tiny")
    with state.db.session() as s:
        codecs = {
            (precision, q): Codec(
                digest=f"{precision}-q{q}".encode().hex().ljust(64, "0"),
                name=f"{precision}-q{q}",
                precision=precision,
                architecture="trained-arch",
                manifest={"precision": precision, "rate_point": q, "weights": "trained", "seed": 0},
                archive_sha256="0" * 64,
                size=1,
            )
            for precision in ("int16", "float")
            for q in (1, 2, 3, 4)
        }
        s.add_all(codecs.values())
        job = Job(
            status="done",
            request={},
            codec_digests=[c.digest for c in codecs.values()],
            image_digests=images,
            encoder_targets=RD_ENCODERS,
            decoder_targets=RD_DECODERS,
        )
        s.add(job)
        s.flush()
        image_ids = [s.query(Image).filter_by(digest=d).one().id for d in images]
        for (precision, q), codec in codecs.items():
            rate = RD_RATES[q - 1] * (1.1 if precision == "int16" else 1.0)
            for index, image_id in enumerate(image_ids):
                for encoder in RD_ENCODERS:
                    encode = Encode(
                        job_id=job.id,
                        codec_id=codec.id,
                        image_id=image_id,
                        target=encoder,
                        repeat=0,
                        status="done",
                        bpp=rate * (1 + 0.05 * index),
                        psnr=RD_PSNR[q - 1] + index,
                    )
                    s.add(encode)
                    s.flush()
                    for decoder in RD_DECODERS:
                        loss = 0.5 if (precision, decoder) == ("float", "arm") else 0.0
                        s.add(
                            Decode(
                                job_id=job.id,
                                encode_id=encode.id,
                                target=decoder,
                                repeat=0,
                                status="done",
                                psnr=encode.psnr - loss,
                            )
                        )
        s.flush()
        bdrate.record(s, job.id, AnchorCache(state.settings.anchor_dir, state.store))
        return job.id


@pytest.fixture(scope="module")
def site(tmp_path_factory, packages):
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    app = create_app(Settings(data_dir=data_dir, token=TOKEN, run_scheduler=False, health_interval=3600))
    state = app.state.bitmatch
    seeder = Seeder(state, packages)
    job_id = seeder.run()
    families_job = seed_rate_families(state)
    client = TestClient(app)  # no lifespan: no health checks against the seeded, unreachable devices
    yield SimpleNamespace(
        client=client,
        state=state,
        job_id=job_id,
        families_job=families_job,
        cells=seeder.cells,
        seeder=seeder,
        packages=packages,
    )
    state.db.dispose()


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_job_list_links_every_job(site):
    page = site.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'href="/jobs/{site.job_id}"' in page.text
    assert "23 / 24 done, 1 not run" in page.text  # the not-run cell is not counted done
    assert f'href="/jobs/{site.families_job}"' in page.text


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


def rd_section(html: str) -> str:
    return html[html.index('<h2 id="rd">') : html.index('<h2 id="all-cells">All cells</h2>')]


def chart_labels(html: str) -> list[list[str]]:
    """The legend entries of every chart, in order."""
    return [
        re.findall(r'<g class="series [a-z]+" data-label="([^"]*)"', svg) for svg in html.split("<svg")[1:]
    ]


def test_single_rate_point_families_draw_one_point_each_and_no_bd_rate_rows(site):
    html = site.client.get(f"/jobs/{site.job_id}").text
    rd = rd_section(html)
    assert chart_labels(rd) == [
        ["float", "int16"],
        ["float (encoder, same images)", "float cpu→qemu-aarch64 (2 of 3 images)"],
    ]
    assert "1 of 8 decoded curves (family × encoder → decoder) differ" in rd
    assert 'class="data bd-rates"' not in rd and "n/a" not in rd and "+0.00 %" not in rd
    assert "No BD-rates: a BD-rate compares curves of at least 4 rate points" in rd
    assert "float (1 rate point), int16 (1 rate point)" in rd
    assert "@encoder" not in rd and 'class="series scatter"' not in rd  # per image only on request
    assert '<meta http-equiv="refresh"' not in html  # finished jobs do not reload


def test_rate_families_draw_curves_against_jpeg_and_webp_and_bd_rates_between_them(site):
    rd = rd_section(site.client.get(f"/jobs/{site.families_job}").text)
    charts = chart_labels(rd)
    assert charts[0] == ["float (q1..q4)", "int16 (q1..q4)", "JPEG (q=5..90)", "WebP (q=5..90)"]
    assert charts[1] == ["float (q1..q4) (encoder)", "float (q1..q4) cpu→arm, cpu-1t-noopt→arm"]
    assert len(charts) == 2 and "2 of 8 decoded curves" in rd
    rows = re.findall(
        r'<tr data-kind="([a-z-]+)"><td class="comparison">([^<]*)</td>.*?<td class="num">([^<]*)</td>',
        rd,
        re.S,
    )
    assert rows[0] == ("codec-vs-codec", "int16 (q1..q4) vs float (q1..q4)", "+10.00 %")
    decoded = [r for r in rows if r[0] == "decoder-vs-encoder"]
    assert [r[1] for r in decoded] == ["float (q1..q4) cpu→arm, cpu-1t-noopt→arm vs float (q1..q4) (encoder)"]
    assert decoded[0][2].startswith("+")  # the arm decoder costs rate at equal PSNR
    failed = re.findall(r"<li>([^<]*) <span", rd)
    against = [r[1] for r in rows if r[0] == "codec-vs-anchor"] + failed
    for family in ("float (q1..q4)", "int16 (q1..q4)"):  # each against both anchors, computed or why not
        assert {f"{family} vs JPEG (q=5..90)", f"{family} vs WebP (q=5..90)"} <= {a.strip() for a in against}
    table = rd[rd.index('class="data bd-rates"') : rd.index("</table>")]
    assert "n/a" not in table and "+0.00 %" not in table
    assert "Not compared" not in rd


def test_per_image_points_only_on_request(site):
    off = rd_section(site.client.get(f"/jobs/{site.families_job}").text)
    assert 'class="series scatter"' not in off and f'href="/jobs/{site.families_job}?per_image=1#rd"' in off
    on = rd_section(site.client.get(f"/jobs/{site.families_job}?per_image=1").text)
    charts = chart_labels(on)
    assert charts[2:] == [[f"float q{q}" for q in (1, 2, 3, 4)], [f"int16 q{q}" for q in (1, 2, 3, 4)]]
    assert on.count('class="series scatter"') == 8 and f'href="/jobs/{site.families_job}#rd"' in on


def test_jpeg_and_webp_are_measured_once_per_image(site):
    cached = sorted(p.name for p in site.state.settings.anchor_dir.glob("*.json"))
    assert cached == sorted(f"{d}.json" for d in ensure_image_set(site.state.db, site.state.store, "tiny"))
    document = json.loads((site.state.settings.anchor_dir / cached[0]).read_text())
    assert [p["quality"] for p in document["jpeg"]] == [5, 10, 20, 30, 40, 50, 60, 70, 80, 90]


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
    name = f"bitmatch-job{site.job_id}-cell{cell_id}"
    assert f'<pre class="cli replay">bitmatch replay {name}.zip</pre>' in html
    assert f"bitmatch replay {name}.zip --side decoder" in html and "-cpu cortex-a72" in html
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
        script_mode = bundle.getinfo(f"{root.name}/replay.sh").external_attr >> 16
    assert script_mode & 0o111  # unzip makes it executable
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
    assert 'exec bitmatch replay "$(dirname "$0")" "$@"' in (root / "replay.sh").read_text()
    readme = (root / "README.txt").read_text()
    name = root.name
    assert f"  bitmatch replay {name}.zip " in readme
    assert f"on cpu (ort-cpu):\n  bitmatch replay {name}.zip --side encoder" in readme
    decoder = "on qemu-aarch64:cortex-a72 (ort-cpu, emulated, -cpu cortex-a72)"  # not the default model
    assert f"{decoder}:\n  bitmatch replay {name}.zip --side decoder" in readme
    host = readme[readme.index("On the host, without the target") :]
    assert (
        "bitmatch codec decode bits.bmc decoded.png --codec codec.tar --runtime ort-cpu "
        "--reference image.png --json"
    ) in host


def download_bundle(site, cell_id: int, directory: Path) -> Path:
    response = site.client.get(f"/cells/{cell_id}/repro.zip")
    assert response.status_code == 200
    path = directory / f"cell-{cell_id}.zip"
    path.write_bytes(response.content)
    return path


def replay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bitmatch_command("replay"), *args],
        cwd=ROOT,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_replay_that_does_not_give_the_record_exits_1(site, tmp_path: Path):
    """The seeded hashes, reconstructions and bitstream are made up: a real encode on cpu gives others, and
    the made-up bitstream does not decode."""
    bundle = download_bundle(site, site.cells["int16:bit-exact"], tmp_path)  # cpu -> cpu
    done = replay(str(bundle), "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["exit_code"] == 1 and report["sides"] == {"reproduced": 0, "differs": 2, "not-run": 0}
    encoder, decoder = (report["bundles"][0]["sides"][side] for side in ("encoder", "decoder"))
    assert encoder["outcome"] == "differs" and encoder["differing_stages"] == list(STAGES)
    assert encoder["checks"] == {"stage hashes": False, "reconstruction": False, "bitstream": False}
    assert encoder["replayed_as"] == {"target": "cpu", "runtime": "ort-cpu", "cpu": None, "threads_env": None}
    assert decoder["outcome"] == "differs" and decoder["detail"].startswith(
        "recorded a result; the replay failed"
    )


def test_a_side_whose_target_is_not_provisioned_says_which_setup_to_run(site, tmp_path: Path):
    bundle = download_bundle(site, site.cells["float:desync"], tmp_path)  # cpu -> qemu-aarch64, cortex-a72
    env = {**subprocess_env(), "BITMATCH_CACHE": str(tmp_path / "bare-cache")}  # nothing provisioned there
    done = replay(str(bundle), "--side", "decoder", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [text for text in done.stdout.splitlines() if text.strip().startswith("decoder ")]
    assert "not-run: target qemu-aarch64:cortex-a72 is not available here" in line
    assert line.endswith("run `bitmatch targets setup qemu-aarch64:cortex-a72`")


def test_replay_refuses_what_is_not_a_bundle_in_one_line(tmp_path: Path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    for path, problem in (
        (junk, "is not a repro bundle"),
        (tmp_path / "missing.zip", "does not exist"),
        (tmp_path, "no cell.json in it"),
    ):
        done = replay(str(path))
        assert done.returncode == 2 and not done.stdout, done.stderr
        one_line = done.stderr.count("\n") == 1
        assert one_line and done.stderr.startswith(f"error: {path}") and problem in done.stderr, done.stderr


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
    assert tick_labels(nice_ticks(0.2136, 0.2144)) == ["0.2136", "0.2138", "0.2140", "0.2142", "0.2144"]
    assert tick_labels(nice_ticks(20, 35)) == ["20", "25", "30", "35"]
    ticks = nice_ticks(30.2, 30.2)
    assert ticks[0] <= 30.2 <= ticks[-1] and len(ticks) >= 2


def test_rd_chart_escapes_labels_and_handles_no_points():
    svg = rd_chart([Line("<int16>", [(0.5, 30.0), (0.2, 28.0)])], "a & b")
    assert "&lt;int16&gt;" in svg and "a &amp; b" in svg and "<polyline" in svg
    assert "no RD points" in rd_chart([], "empty")
    scatter = rd_chart([Line("images", [(0.5, 30.0), (0.2, 28.0)], joined=False)], "per image")
    assert "<polyline" not in scatter and 'class="series scatter"' in scatter


def test_rd_chart_legend_grows_the_figure_rather_than_drop_an_entry():
    lines = [Line(f"float q2 cpu→decoder-{i} (7 of 8 images), wrapped", [(0.3, 20.0 + i)]) for i in range(30)]
    svg = rd_chart(lines, "thirty curves")
    height = int(re.search(r'viewBox="0 0 \d+ (\d+)"', svg).group(1))
    entries = [int(y) for y in re.findall(r'<text class="legend-entry" x="[\d.]+" y="(\d+)"', svg)]
    assert len(entries) == 30 and max(entries) + 2 * LEGEND_ROW <= height  # two rows each, all inside
    second_row = f'<tspan x="{WIDTH - LEGEND_WIDTH + 17}" dy="{LEGEND_ROW}">wrapped</tspan>'
    assert f"float q2 cpu→decoder-29 (7 of 8 images),{second_row}" in svg
    assert "…" not in svg


def test_legend_text_wraps_once_then_cuts_and_keeps_the_whole_label_on_hover():
    assert legend_text("int16 (q1..q4)") == ["int16 (q1..q4)"]
    long = "float (q1..q4) cpu→arm, cpu-1t-noopt→arm, qemu-aarch64→arm, qemu-x86-sse→arm"
    first, second = legend_text(long)
    assert len(first) <= LEGEND_CHARS and len(second) == LEGEND_CHARS and second.endswith("…")
    assert long.startswith(first) and f"<title>{long}</title>" in rd_chart([Line(long, [(1, 2)])], "t")


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


EVIDENCE_FAMILIES = [
    "bitmatch-float (q1..q4)",
    "bitmatch-int16 (q1..q4)",
    "bitmatch-int16-full (q1..q4)",
    "bitmatch-int8 (q1..q4)",
    "JPEG (q=5..90)",
    "lowcomplexity (q1..q4)",
    "lowcomplexity-nocontext (q1..q4)",
    "lowcomplexity-rdoq (q1..q4)",
    "lowcomplexity-rdoq-quarter-lambda (q1..q4)",
    "WebP (q=5..90)",
]


def test_rd_evidence_page_draws_the_shipped_curves_and_bd_rates(site):
    assert 'href="/rd"' in site.client.get("/").text  # in the nav
    html = site.client.get("/rd").text
    evidence = json.loads(shipped_rd_evidence().read_text())
    assert chart_labels(html) == [EVIDENCE_FAMILIES, EVIDENCE_FAMILIES]  # PSNR, MS-SSIM
    assert 'aria-label="PSNR (dB, RGB) against rate' in html and 'aria-label="MS-SSIM against rate' in html
    rows = dict(re.findall(r'<tr data-key="([a-z0-9_-]+)"><td class="comparison">([^<]*)</td>', html))
    assert set(rows) == {key for key, value in evidence["bd_rate"].items() if "error" not in value}
    assert "lowcomplexity-rdoq (q1..q4) vs lowcomplexity-nocontext (q1..q4): BD-rate not computable" in html
    assert rows["int16_vs_float"] == "bitmatch-int16 (q1..q4) vs bitmatch-float (q1..q4)"
    assert rows["float_vs_webp"] == "bitmatch-float (q1..q4) vs WebP (q=5..90)"
    int16 = html[html.index('<tr data-key="int16_vs_float">') :].split("</tr>")[0]
    bd = evidence["bd_rate"]["int16_vs_float"]
    for value in (bd["bd_rate_pct"], bd["bd_rate_pct_akima"], bd["bd_rate_ms_ssim_pct"]):
        assert f"{value:+.2f} %" in int16
    assert html.count('<td class="mono">packages/') == 32 and html.count(">q=") == 20  # every point listed


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        (None, 404, "no such file (bitmatch codec eval --json writes it)"),
        ("{", 500, "not JSON"),
        ('{"packages": {}, "bd_rate": {}, "test_set": {"images": 1, "pixels": 1}}', 500, "packages: "),
        ('{"packages": {"x": {"rd_points": [{"bpp": "a"}]}}}', 500, "not an evaluation report: "),
    ],
)
def test_unusable_rd_evidence_is_a_one_line_error_page(tmp_path: Path, content, status, reason):
    path = tmp_path / "rd.json"
    if content is not None:
        path.write_text(content)
    settings = Settings(data_dir=tmp_path / "data", token=TOKEN, run_scheduler=False, rd_evidence=path)
    app = create_app(settings)
    try:
        response = TestClient(app).get("/rd")
    finally:
        app.state.bitmatch.db.dispose()
    assert response.status_code == status and response.headers["content-type"].startswith("text/html")
    message = re.search(r"<p>([^<]*)</p>", response.text).group(1)
    assert message.startswith(str(path)) and reason in message and "\n" not in message


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_use_only_the_coordinators_own_assets_and_a_strict_policy(site, page):
    response = site.client.get(page)
    assert response.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        assert site.client.get(asset).status_code == 200, asset
    policy = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    scripts = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts]
    assert policy["script-src"].split() == ["'self'", *hashes]  # inline scripts by hash, nothing else


def test_rd_chart_draws_points_a_thousandth_of_a_db_apart_together():
    svg = rd_chart(
        [Line("float q2 @cpu", [(0.2143, 29.3201)]), Line("int16 q2", [(0.2136, 29.3209)])], "close"
    )
    y_ticks = [float(t) for t in re.findall(r'text-anchor="end">([^<]+)</text>', svg)]
    x_ticks = [float(t) for t in re.findall(r'text-anchor="middle">([0-9.]+)</text>', svg)]
    assert len(set(y_ticks)) == len(y_ticks) and y_ticks[-1] - y_ticks[0] >= 0.29  # 1 % of 29.3 dB at least
    assert x_ticks[-1] - x_ticks[0] >= 0.05 * 0.2143
