"""Rate families, RD points, BD-rates and the exports (JSON, CSV, JUnit XML) of a hand-made job in a real
SQLite file."""

import csv
import io
import json
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select, update

from server import bdrate, exports, queries, rdfamilies, verdicts
from server.db import Database
from server.models import Cell, Codec, Decode, Encode, Image, Job, Mismatch

HASHES = {"z_hat": "1", "scale_index": "2", "mean": "3", "y_hat": "4", "recon": "5"}
RATES, QUALITIES = (0.25, 0.5, 1.0, 2.0), (28.0, 30.0, 33.0, 35.0)
# (precision, package index) -> bpp, PSNR per image: a rate sweep of four packages (q1..q4) per precision,
# int16 spending 10 % more rate than float at equal PSNR.
CURVES = {
    (precision, index): (rate * scale, quality)
    for precision, scale in (("float", 1.0), ("int16", 1.1))
    for index, (rate, quality) in enumerate(zip(RATES, QUALITIES, strict=True))
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
                manifest={"precision": key[0], "rate_point": key[1] + 1},
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


def bd_rows(db, job_id) -> dict[tuple[str, str, str, str], dict]:
    with db.session() as session:
        bdrate.record(session, job_id)
        bdrate.record(session, job_id)  # idempotent
        return {
            (r["kind"], r["device"], r["anchor"], r["test"]): r for r in queries.bd_rates(session, job_id)
        }


def test_bd_rates_compare_rate_families_and_the_decoders_that_change_them(db, job_id):
    rows = bd_rows(db, job_id)
    codec_row = rows[("codec-vs-codec", "cpu", "float (q1..q4)", "int16 (q1..q4)")]
    assert codec_row["points"] == 4
    assert codec_row["bd_rate"] == pytest.approx(10.0, abs=1e-6)  # int16 spends 10 % more rate at equal PSNR
    for precision in ("float", "int16"):  # the arm decoder loses 0.5 dB at equal rate; cpu decodes exactly
        key = (
            "decoder-vs-encoder",
            "cpu→arm",
            f"{precision} (q1..q4) (encoder)",
            f"{precision} (q1..q4) cpu→arm",
        )
        assert rows[key]["points"] == 4 and rows[key]["bd_rate"] > 0
    assert len(rows) == 3  # no row for the exact decoder, none of n/a
    assert "@encoder" not in json.dumps(list(rows))


def test_families_of_fewer_than_four_rate_points_get_no_bd_rate_rows(db, job_id):
    with db.session() as session:
        for codec in session.query(Codec).filter(Codec.name.endswith("q3")):
            codec.architecture = "solo"  # every family now has three rate points, or one
        session.flush()
        bdrate.record(session, job_id)
        assert queries.bd_rates(session, job_id) == []
        session.rollback()


def test_a_decoded_curve_that_does_not_rise_is_recorded_with_the_reason(db, job_id):
    with db.session() as session:
        q2 = select(Encode.id).join(Codec, Encode.codec_id == Codec.id).where(Codec.name == "float-q1")
        garbage = update(Decode).where(Decode.target == "arm", Decode.encode_id.in_(q2)).values(psnr=12.0)
        session.execute(garbage)  # the second rate point decodes worse than the first
        bdrate.record(session, job_id)
        rows = {r["test"]: r for r in queries.bd_rates(session, job_id) if r["kind"] == "decoder-vs-encoder"}
        session.rollback()
    broken = rows["float (q1..q4) cpu→arm"]
    assert broken["bd_rate"] is None
    assert broken["note"].startswith("not computable: the quality of float (q1..q4) cpu→arm does not rise")


def test_rd_points_cover_encoder_and_decoders(db, job_id):
    with db.session() as session:
        bdrate.record(session, job_id)
        points = queries.rd_points(session, job_id)
    assert len(points) == len(CURVES) * 2 * 3  # codecs x images x (encoder + 2 decoders)
    assert {p["decoder"] for p in points} == {bdrate.ENCODER, "cpu", "arm"}


def codec(codec_id: int, precision: str, manifest: dict, architecture: str = "arch") -> Codec:
    return Codec(
        id=codec_id,
        digest=f"{codec_id:064x}",
        name=f"{precision}-{codec_id}",
        precision=precision,
        architecture=architecture,
        manifest={"precision": precision, **manifest},
        archive_sha256="0" * 64,
        size=1,
    )


def test_families_are_named_by_precision_and_rate_points():
    trained = {"weights": "trained", "seed": 0}
    codecs = [  # rate points out of order
        codec(10 * i + q, p, {**trained, "rate_point": q})
        for i, p in enumerate(("int16", "float"))
        for q in (2, 1, 4, 3)
    ]
    families = rdfamilies.group(codecs)
    assert [f.label for f in families] == ["float (q1..q4)", "int16 (q1..q4)"]
    int16 = families[1]
    assert int16.point_labels == ("int16 q1", "int16 q2", "int16 q3", "int16 q4")
    by_id = {c.id: c for c in codecs}
    assert [by_id[i].manifest["rate_point"] for i in int16.codec_ids] == [1, 2, 3, 4]
    assert (
        rdfamilies.twins(families, int16) == [families[0]] and rdfamilies.twins(families, families[0]) == []
    )
    gaps = rdfamilies.group([codec(1, "int8", {"rate_point": 1}), codec(2, "int8", {"rate_point": 3})])
    assert [f.label for f in gaps] == ["int8 (q1, q3)"]
    assert [f.label for f in rdfamilies.group([codec(1, "int16", {"rate_point": 2})])] == ["int16 q2"]


def test_families_of_several_lineages_carry_the_lineage_name():
    imported = {"architecture": {"family": "compressai", "name": "mbt2018-mean", "n": 32, "m": 48}}
    codecs = [
        *(codec(i, "int16", imported, architecture="mbt") for i in range(4)),
        codec(10, "int16", {"weights": "trained", "seed": 0, "rate_point": 2}),
        codec(11, "float", {"weights": "random", "seed": 11}, architecture="rnd"),
    ]
    labels = [f.label for f in rdfamilies.group(codecs)]
    assert sorted(labels) == [
        "bitmatch int16 q2",
        "mbt2018-mean int16 (4 rate points)",
        "random seed 11 float",
    ]


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
