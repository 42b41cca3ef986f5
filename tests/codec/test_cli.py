"""`bitmatch codec build-random / encode / decode / eval` through the click commands."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bitmatch.cli import cli
from codec import networks, stages
from codec.images import load_png, save_png

STAGES = set(stages.STAGES)


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["codec", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    for precision in ("int16", "float"):
        result = _invoke(
            "build-random",
            "--precision",
            precision,
            "--channels",
            "4,6",
            "--seed",
            "5",
            "--out",
            str(root / precision),
            "--levels",
            "32",
            "--json",
        )
        assert result.exit_code == 0, result.output
    images = root / "images"
    images.mkdir()
    for index, size in enumerate([(23, 41), (64, 64)]):
        save_png(
            np.ascontiguousarray(networks.synthetic_images(index, 1, 64)[0][: size[0], : size[1]]),
            images / f"img{index}.png",
        )
    return root


def test_encode_then_decode_with_another_runtime(workspace):
    source, bmc, out = workspace / "images" / "img0.png", workspace / "a.bmc", workspace / "a.png"
    codec = ["--codec", str(workspace / "int16"), "--runtime", "ort-cpu", "--json"]
    encoded = _invoke("encode", str(source), str(bmc), *codec, "--reconstruct")
    assert encoded.exit_code == 0, encoded.output
    enc = json.loads(encoded.output)
    assert set(enc["stage_hashes"]) == STAGES and enc["bpp"] > 0 and enc["psnr"] > 0
    decoded = _invoke(
        "decode",
        str(bmc),
        str(out),
        "--codec",
        str(workspace / "int16"),
        "--runtime",
        "ort-cpu-1t",
        "--reference",
        str(source),
        "--json",
    )
    assert decoded.exit_code == 0, decoded.output
    dec = json.loads(decoded.output)
    assert dec["stage_hashes"]["y_hat"] == enc["stage_hashes"]["y_hat"]
    assert dec["bpp"] == pytest.approx(enc["bpp"]) and dec["psnr"] == pytest.approx(enc["psnr"])
    assert load_png(out).shape == (23, 41, 3)


def test_encode_reconstructs_only_when_asked(workspace, tmp_path):
    source, codec = workspace / "images" / "img1.png", ["--codec", str(workspace / "int16")]
    pure = _invoke("encode", str(source), str(tmp_path / "a.bmc"), *codec, "--json")
    full = _invoke("encode", str(source), str(tmp_path / "b.bmc"), *codec, "--json", "--reconstruct")
    assert pure.exit_code == full.exit_code == 0, pure.output + full.output
    enc, rec = json.loads(pure.output), json.loads(full.output)
    assert enc["psnr"] is None and set(enc["stage_hashes"]) == STAGES - {"recon"}
    assert (tmp_path / "a.bmc").read_bytes() == (tmp_path / "b.bmc").read_bytes()
    assert rec["psnr"] > 0 and "recon" in rec["stage_hashes"]
    text = _invoke("encode", str(source), str(tmp_path / "c.bmc"), *codec)
    assert text.exit_code == 0 and " dB" not in text.output


def test_eval_reports_every_image_and_the_mean(workspace):
    result = _invoke("eval", str(workspace / "images"), "--codec", str(workspace / "float"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # progress goes to stderr: stdout is the JSON alone
    assert [row["image"] for row in report["images"]] == ["img0.png", "img1.png"]
    for row in report["images"]:
        assert {"bpp", "psnr", "psnr_y", "ms_ssim", "stage_hashes"} <= set(row)
    assert report["mean"]["bpp"] == pytest.approx(np.mean([row["bpp"] for row in report["images"]]))
    text = _invoke("eval", str(workspace / "images"), "--codec", str(workspace / "float"))
    assert text.exit_code == 0 and "mean" in text.output


def test_typed_errors_exit_non_zero_with_one_line(workspace, tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(grey)
    result = _invoke("encode", str(grey), str(tmp_path / "x.bmc"), "--codec", str(workspace / "int16"))
    assert result.exit_code != 0
    assert "bad-image" in result.output and len(result.output.strip().splitlines()) == 1

    bmc = tmp_path / "y.bmc"
    assert (
        _invoke(
            "encode", str(workspace / "images" / "img1.png"), str(bmc), "--codec", str(workspace / "int16")
        ).exit_code
        == 0
    )
    wrong = _invoke("decode", str(bmc), str(tmp_path / "y.png"), "--codec", str(workspace / "float"))
    assert wrong.exit_code != 0 and "wrong-codec" in wrong.output
    assert not (tmp_path / "y.png").exists()

    unknown = _invoke(
        "decode",
        str(bmc),
        str(tmp_path / "z.png"),
        "--codec",
        str(workspace / "int16"),
        "--runtime",
        "no-such-runtime",
    )
    assert unknown.exit_code != 0 and "runtime" in unknown.output


def test_pack_writes_an_archive_with_the_same_digest(workspace, tmp_path):
    archive = tmp_path / "new-folder" / "codec.bmpkg"  # the output's folder is created
    result = _invoke("pack", str(workspace / "int16"), str(archive))
    assert result.exit_code == 0, result.output
    manifest = json.loads((workspace / "int16" / "manifest.json").read_text())
    assert result.stdout == manifest["digest"] + "\n"  # DIGEST=$(bitmatch codec pack PKG OUT)
    assert result.stderr == f"{archive}: {manifest['digest']}\n"
    encoded = _invoke(
        "encode",
        str(workspace / "images" / "img1.png"),
        str(tmp_path / "a.bmc"),
        "--codec",
        str(archive),
        "--json",
    )
    assert json.loads(encoded.output)["codec"] == manifest["digest"]


def test_build_random_is_reproducible(workspace, tmp_path):
    first = json.loads(
        _invoke(
            "build-random",
            "--precision",
            "int16",
            "--channels",
            "4,6",
            "--seed",
            "5",
            "--out",
            str(tmp_path / "again"),
            "--levels",
            "32",
            "--json",
        ).output
    )
    manifest = json.loads((workspace / "int16" / "manifest.json").read_text())
    assert first["digest"] == manifest["digest"]
    bad = _invoke(
        "build-random",
        "--precision",
        "int16",
        "--channels",
        "4",
        "--seed",
        "5",
        "--out",
        str(tmp_path / "bad"),
    )
    assert bad.exit_code != 0


def test_console_script_reports_a_typed_error_on_one_line(workspace, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "bitmatch"
    garbage = tmp_path / "garbage.bmc"
    garbage.write_bytes(b"not a bitstream")
    done = subprocess.run(
        [
            str(script),
            "codec",
            "decode",
            str(garbage),
            str(tmp_path / "out.png"),
            "--codec",
            str(workspace / "int16"),
            "--runtime",
            "ort-cpu-1t",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(("error: truncated:", "error: bad-magic:"))
    assert str(garbage) in done.stderr
