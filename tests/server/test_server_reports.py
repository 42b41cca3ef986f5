"""RD points, BD-rates and the exports (JSON, CSV, JUnit XML) of a hand-made job in a real SQLite file."""

import csv
import io
import json
from xml.etree import ElementTree as ET

import pytest

from server import bdrate, exports, queries, verdicts
from server.db import Database
from server.models import Cell, Codec, Decode, Encode, Image, Job, Mismatch

HASHES = {"z_hat": "1", "scale_index": "2", "mean": "3", "y_hat": "4", "recon": "5"}
# (precision, package index) -> bpp, PSNR per image: a rate sweep of two packages per precision.
CURVES = {
    ("float", 0): (0.5, 30.0),
    ("float", 1): (1.0, 33.0),
    ("int16", 0): (0.55, 30.0),
    ("int16", 1): (1.1, 33.0),
}


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'reports.sqlite3'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def job_id(db) -> int:
    with db.session() as session:
        codecs = {
            key: Codec(
                digest=f"{i:064x}",
                name=f"{key[0]}-q{key[1]}",
                precision=key[0],
                architecture="arch",
                manifest={},
                archive_sha256="0" * 64,
                size=1,
            )
            for i, key in enumerate(CURVES)
        }
        images = [
            Image(digest=f"{100 + i:064x}", name=f"img{i}", width=8, height=8, size=1) for i in range(2)
        ]
        session.add_all([*codecs.values(), *images])
        session.flush()
        job = Job(
            status="done",
            request={},
            codec_digests=[c.digest for c in codecs.values()],
            image_digests=[i.digest for i in images],
            encoder_targets=["cpu"],
            decoder_targets=["cpu", "arm"],
        )
        session.add(job)
        session.flush()
        for key, codec in codecs.items():
            bpp, psnr = CURVES[key]
            for image in images:
                encode = Encode(
                    job_id=job.id,
                    codec_id=codec.id,
                    image_id=image.id,
                    target="cpu",
                    repeat=0,
                    status="done",
                    bpp=bpp,
                    psnr=psnr,
                    stage_hashes=HASHES,
                )
                session.add(encode)
                session.flush()
                for target, drop in (("cpu", 0.0), ("arm", 0.5)):
                    session.add(
                        Decode(
                            job_id=job.id,
                            encode_id=encode.id,
                            target=target,
                            repeat=0,
                            status="done",
                            psnr=psnr - drop,
                            stage_hashes=HASHES,
                        )
                    )
        _add_cells(session, job.id, codecs[("int16", 0)].id, images[0].id)
        return job.id


def _add_cells(session, job_id: int, codec_id: int, image_id: int) -> None:
    for index, verdict in enumerate(verdicts.VERDICTS):
        cell = Cell(
            job_id=job_id,
            codec_id=codec_id,
            image_id=image_id,
            encoder_target=f"enc{index}",
            decoder_target="dec",
            verdict=verdict,
            detail=f"why {verdict}",
        )
        session.add(cell)
        session.flush()
        if verdict == verdicts.DESYNC:
            session.add(
                Mismatch(
                    cell_id=cell.id,
                    stage="y_hat",
                    flat_index=5,
                    channel=1,
                    y=0,
                    x=2,
                    encoder_level=3,
                    decoder_level=4,
                )
            )
    session.add(
        Cell(
            job_id=job_id,
            codec_id=codec_id,
            image_id=image_id,
            encoder_target="flaky",
            decoder_target="dec",
            verdict=verdicts.BIT_EXACT,
            nondeterministic=True,
            nondeterminism_detail="encoder: 2 repeats disagree on recon",
        )
    )


def test_bd_rates_compare_precisions_and_decoders(db, job_id):
    with db.session() as session:
        bdrate.record(session, job_id)
        bdrate.record(session, job_id)  # idempotent
        rows = {
            (r["kind"], r["device"], r["anchor"], r["test"]): r for r in queries.bd_rates(session, job_id)
        }
    codec_row = rows[("codec-vs-codec", "cpu", "arch/float", "arch/int16")]
    assert codec_row["points"] == 2
    assert codec_row["bd_rate"] == pytest.approx(10.0, abs=1e-6)  # int16 spends 10 % more rate at equal PSNR
    same_device = rows[("decoder-vs-encoder", "cpu->cpu", "arch/float@cpu", "arch/float@cpu")]
    assert same_device["bd_rate"] == 0.0
    other = rows[("decoder-vs-encoder", "cpu->arm", "arch/float@cpu", "arch/float@arm")]
    assert other["points"] == 2 and other["bd_rate"] > 0  # the decoder loses 0.5 dB at equal rate


def test_a_single_package_per_precision_is_reported_not_hidden(db, job_id):
    with db.session() as session:
        for codec in session.query(Codec).filter(Codec.name.endswith("q1")):
            codec.architecture = "solo"
        session.flush()
        bdrate.record(session, job_id)
        rows = {
            (r["kind"], r["device"], r["anchor"], r["test"]): r for r in queries.bd_rates(session, job_id)
        }
        session.rollback()
    solo = rows[("codec-vs-codec", "cpu", "solo/float", "solo/int16")]
    assert solo["bd_rate"] is None and "one point per image" in solo["note"]


def test_rd_points_cover_encoder_and_decoders(db, job_id):
    with db.session() as session:
        bdrate.record(session, job_id)
        points = queries.rd_points(session, job_id)
    assert len(points) == 4 * 2 * 3  # codecs x images x (encoder + 2 decoders)
    assert {p["decoder"] for p in points} == {bdrate.ENCODER, "cpu", "arm"}


def test_junit_passes_only_exact_deterministic_cells(db, job_id):
    with db.session() as session:
        xml = exports.to_junit(session, session.get(Job, job_id))
    cases = ET.fromstring(xml).iter("testcase")
    outcome = {}
    for case in cases:
        children = [child.tag for child in case if child.tag not in ("system-out", "properties")]
        outcome[case.get("name").split(" -> ")[0]] = children[0] if children else "pass"
    index = {v: f"enc{i}" for i, v in enumerate(verdicts.VERDICTS)}
    passing = ("bit-exact", "latent-exact", "symbol-exact")
    assert [outcome[index[verdict]] for verdict in passing] == ["pass"] * 3
    assert outcome[index["desync"]] == outcome[index["not-run"]] == "failure"
    assert outcome[index["error"]] == outcome[index["timeout"]] == outcome[index["worker-lost"]] == "error"
    assert outcome["flaky"] == "failure"
    root = ET.fromstring(xml)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("9", "3", "3")
    verdict_of = {
        case.get("name"): case.find("system-out").text.splitlines()[0].removeprefix("verdict: ")
        for case in root.iter("testcase")
    }
    assert sorted(set(verdict_of.values())) == sorted(verdicts.VERDICTS)


def test_csv_and_json_hold_every_cell_with_its_evidence(db, job_id):
    with db.session() as session:
        job = session.get(Job, job_id)
        rows = list(csv.DictReader(io.StringIO(exports.to_csv(session, job))))
        document = json.loads(exports.to_json(session, job))
    assert len(rows) == len(document["cells"]) == len(verdicts.VERDICTS) + 1
    desync = next(r for r in rows if r["verdict"] == "desync")
    assert (desync["mismatch_channel"], desync["mismatch_y"], desync["mismatch_x"]) == ("1", "0", "2")
    assert desync["passed"] == "False"
    assert document["verdict_counts"]["int16-q0"]["bit-exact"] == 2


def test_matrix_shows_the_worst_verdict_per_position(db, job_id):
    with db.session() as session:
        job = session.get(Job, job_id)
        job.encoder_targets = [f"enc{verdicts.VERDICTS.index(verdicts.DESYNC)}", "flaky"]
        job.decoder_targets = ["dec", "nowhere"]
        matrices = queries.job_matrix(session, job)
        session.rollback()
    int16 = next(m for m in matrices if m["codec_name"] == "int16-q0")
    assert [[p["verdict"] for p in row] for row in int16["rows"]] == [
        ["desync", "pending"],
        ["bit-exact", "pending"],
    ]
    assert int16["rows"][1][0]["nondeterministic"]
