"""The trained packages shipped in packages/: complete, small, exact across runtimes, and the RD evidence that
`bitmatch codec eval` (no arguments) prints, with the acceptance figures of the trained-codec issue."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from codec.cli import codec_group
from codec.codec import Codec
from codec.images import load_png
from codec.package import CodecPackage
from codec.train import evaluate

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"
PRECISIONS = ("int16", "int8", "float")
RATE_POINTS = ("q1", "q2", "q3", "q4")
SIZE_LIMIT = 30 * 2**20  # the hyperprior family: int16, int8 and float twins
REPOSITORY_BUDGET = 50 * 2**20  # everything under packages/: the 50 MiB the README states


def _size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def test_every_precision_ships_four_rate_points_in_under_30_mb_and_packages_stay_in_budget():
    assert sum(_size(PACKAGES / precision) for precision in PRECISIONS) <= SIZE_LIMIT
    assert _size(PACKAGES) <= REPOSITORY_BUDGET
    lambdas = {}
    for precision in PRECISIONS:
        for rate in RATE_POINTS:
            package = CodecPackage.load(PACKAGES / precision / rate)
            manifest = package.manifest
            assert manifest["precision"] == precision and manifest["weights"] == "trained"
            assert ("weights.npz" in manifest["files"]) == (precision == "float")
            lambdas.setdefault(rate, set()).add(manifest["lambda"])
    assert all(len(values) == 1 for values in lambdas.values())  # one set of weights per rate point
    ordered = [lambdas[rate].pop() for rate in RATE_POINTS]
    assert ordered == sorted(ordered)


@pytest.mark.parametrize("precision", ["int16", "int8"])
@pytest.mark.parametrize("rate", RATE_POINTS)
def test_shipped_integer_packages_decode_bit_exactly_on_every_runtime(precision, rate):
    image = load_png(ROOT / "data" / "testset" / "demo" / "coffee.png")
    encoded = Codec.load(PACKAGES / precision / rate, "ort-cpu").encode(image)
    for runtime in ("ort-cpu-1t", "onnx-ref"):
        decoded = Codec.load(PACKAGES / precision / rate, runtime).decode(encoded.bitstream)
        assert decoded.stage_hashes == encoded.stage_hashes, runtime


CODEC_FAMILIES = (
    "bitmatch-int16",
    "bitmatch-int8",
    "bitmatch-float",
    "bitmatch-int16-full",
    "lowcomplexity-nocontext",
    "lowcomplexity",
)
# lowcomplexity with 3 RDOQ passes at the packages' lambda and at a quarter of it: only in the committed
# report (the fresh one of this suite leaves RDOQ out)
RDOQ_FAMILIES = {"lowcomplexity-rdoq": 1.0, "lowcomplexity-rdoq-quarter-lambda": 0.25}
TABLE2 = ("lowcomplexity", *RDOQ_FAMILIES, "int16", "int16-full", "jpeg", "webp")
BASE = "lowcomplexity-nocontext"


@pytest.fixture(scope="module")
def report() -> dict:
    """A fresh `bitmatch codec eval` without the RDOQ curve (minutes of RDOQ are not for the test suite)."""
    result = CliRunner().invoke(codec_group, ["eval", "--json", "--no-rdoq"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # progress goes to stderr


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads((PACKAGES / "rd.json").read_text())


def test_eval_without_arguments_reports_every_family_and_the_anchors(report, shipped):
    families = report["packages"]
    assert set(families) == {*CODEC_FAMILIES, "jpeg", "webp"}
    assert set(shipped["packages"]) == {*CODEC_FAMILIES, *RDOQ_FAMILIES, "jpeg", "webp"}
    for name in (*CODEC_FAMILIES, *RDOQ_FAMILIES):
        assert len(shipped["packages"][name]["rd_points"]) == len(RATE_POINTS), name
    for family in (*families.values(), *shipped["packages"].values()):
        for point in family["rd_points"]:
            assert point["bpp"] > 0 and point["psnr"] > 15 and 0 < point["ms_ssim"] <= 1
    assert report["test_set"]["images"] >= 12 and shipped["test_set"] == report["test_set"]
    assert {"int16_vs_float", "int8_vs_float", "int16_vs_jpeg"} <= set(report["bd_rate"])
    assert {f"{key}_vs_{BASE}" for key in TABLE2} <= set(shipped["bd_rate"])


def test_table_2_contexts_and_rdoq_each_save_rate_against_the_base(shipped):
    """Galpin et al.'s Table 2 on the test set: contexts < 0 and contexts + RDOQ below contexts in BD-rate vs
    the base. At the packages' own lambda RDOQ's PSNR range lies above the base's (no BD-rate; its BD-PSNR
    is above the contexts'); at a quarter of it the curves overlap."""
    bd = shipped["bd_rate"]
    contexts = bd[f"lowcomplexity_vs_{BASE}"]
    with_rdoq = bd[f"lowcomplexity-rdoq-quarter-lambda_vs_{BASE}"]["bd_rate_pct"]
    assert contexts["bd_rate_pct"] < 0 and with_rdoq < contexts["bd_rate_pct"]
    assert bd[f"lowcomplexity-rdoq_vs_{BASE}"]["bd_psnr_db"] > contexts["bd_psnr_db"]
    plain = shipped["packages"]["lowcomplexity"]["rd_points"]
    for name, scale in RDOQ_FAMILIES.items():
        optimised = shipped["packages"][name]["rd_points"]
        assert [p["digest"] for p in optimised] == [p["digest"] for p in plain]
        for point in optimised:
            lmbda = CodecPackage.load(ROOT / point["package"]).manifest["training"]["lambda"]
            assert point["rdoq_passes"] == 3 and point["rdoq_lambda"] == pytest.approx(lmbda * scale)
    assert evaluate.table2_lines(shipped)


def test_int16_stays_within_0_3_percent_of_its_float_twin_on_the_test_set(report):
    assert report["bd_rate"]["int16_vs_float"]["bd_rate_pct"] <= 0.3
    assert "bd_rate_pct" in report["bd_rate"]["int8_vs_float"]  # reported, not bounded


def test_int16_stays_within_0_3_percent_on_photographs_from_another_source():
    """data/heldout: KDE's wallpapers, used neither for training nor for calibration."""
    images = evaluate.load_testset(ROOT / "data" / "heldout")
    families = evaluate.shipped_families(PACKAGES)
    curves = {p: [evaluate.codec_point(path, images) for path in families[p]] for p in ("float", "int16")}
    assert evaluate._bd(curves["float"], curves["int16"])["bd_rate_pct"] <= 0.3


def test_every_integer_package_is_calibrated_on_the_bundled_calibration_set():
    for precision in ("int16", "int8"):
        for rate in RATE_POINTS:
            manifest = CodecPackage.load(PACKAGES / precision / rate).manifest
            assert manifest["calibration"] == "data/calibration", (precision, rate)


def test_the_trained_codec_beats_jpeg(report):
    assert report["bd_rate"]["int16_vs_jpeg"]["bd_rate_pct"] < 0


def test_the_readme_evidence_is_what_eval_computes_now(report, shipped):
    """packages/rd.json (the README's numbers) matches a fresh run: rates exactly, quality to rounding."""
    for name in CODEC_FAMILIES:
        recorded_points = shipped["packages"][name]["rd_points"]
        for fresh, recorded in zip(report["packages"][name]["rd_points"], recorded_points, strict=True):
            assert fresh["digest"] == recorded["digest"]
            assert fresh["bpp"] == pytest.approx(recorded["bpp"], rel=1e-3)
            assert fresh["psnr"] == pytest.approx(recorded["psnr"], abs=0.01)
    assert evaluate.format_text(shipped)


def test_eval_without_packages_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(codec_group, ["eval", "--packages", str(tmp_path), "--json"])
    assert result.exit_code != 0
    assert "no packages in" in result.output and "qI/PRECISION" in result.output
