"""Codec-version compatibility: bitstreams written by one package digest, decoded by another. A re-release
of the same networks (another digest) decodes them exactly; another rate point of the family cannot, and
that is a finding. Through `bitmatch matrix` (real workers, over HTTP) and through the offline sets."""

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from server_harness import ROOT, bitmatch_command, subprocess_env

from codec.package import CodecPackage, write_package

pytestmark = pytest.mark.slow

Q1, Q2 = (ROOT / "packages" / "int16" / q for q in ("q1", "q2"))


def rerelease(package_dir: Path, out: Path) -> CodecPackage:
    """The same networks and tables under a new manifest (a new digest): what a patch release looks like."""
    package = CodecPackage.load(package_dir)
    fields = {k: v for k, v in package.manifest.items() if k not in ("files", "digest")}
    fields["release"] = "2"
    write_package(out, fields, {name: package.read(name) for name in package.names()})
    return CodecPackage.load(out)


def bitmatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*bitmatch_command(args[0]), *args[1:]],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )


def matrix(tmp_path: Path, decoder: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "compat.toml"
    config.write_text(
        "\n".join(
            [
                "[matrix]",
                'name = "compat"',
                'targets = ["cpu", "cpu-1t-noopt"]',
                "",
                "[[codecs]]",
                f'path = "{Q2}"',
                "",
                "[[images]]",
                'set = "tiny"',
                "",
                "[[compatibility]]",
                f'encoder = "{Q2}"',
                f'decoder = "{decoder}"',
                'images = "tiny"',
                "",
            ]
        )
    )
    return bitmatch("matrix", "--config", str(config), "--out", str(tmp_path / "out"))


def compat_cells(tmp_path: Path) -> list[dict]:
    (outputs,) = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("compat-")]
    return json.loads((outputs / "results.json").read_text())["cells"]


def test_a_rerelease_of_the_same_networks_decodes_every_bitstream_exactly(tmp_path):
    release = rerelease(Q2, tmp_path / "q2-release-2")
    assert release.digest != CodecPackage.load(Q2).digest
    done = matrix(tmp_path, release.path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cells = compat_cells(tmp_path)
    assert len(cells) == 3 * 2 * 2 and {c["verdict"] for c in cells} <= {"bit-exact", "latent-exact"}
    report = next((tmp_path / "out").glob("compat-*/report.html")).read_text()
    assert "decoded by" in report
    cross = next(c for c in cells if (c["encoder"], c["decoder"]) == ("cpu", "cpu-1t-noopt"))
    bundle = download_bundle(tmp_path / "out" / "history", cross["id"], tmp_path / "bundle.zip")
    with zipfile.ZipFile(bundle) as archive:
        names = {name.rsplit("/", 1)[-1] for name in archive.namelist()}
    assert {"codec.tar", "decoder-codec.tar"} <= names
    replayed = bitmatch("replay", str(bundle), "--json")
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    (result,) = json.loads(replayed.stdout)["bundles"]
    assert {side["outcome"] for side in result["sides"].values()} == {"reproduced"}


def download_bundle(data_dir: Path, cell_id: int, path: Path) -> Path:
    """A cell's repro bundle from the dashboard route of the matrix's history, served in process."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings

    app = create_app(Settings(data_dir=data_dir, token="t", run_scheduler=False, health_interval=3600))
    response = TestClient(app).get(f"/cells/{cell_id}/repro.zip")  # no lifespan: no health checks
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    app.state.bitmatch.db.dispose()
    return path


def test_another_rate_point_cannot_decode_them_and_that_is_a_finding(tmp_path):
    done = matrix(tmp_path, Q1)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert {c["verdict"] for c in compat_cells(tmp_path)} == {"desync"}


def test_offline_decode_with_gives_the_same_compatibility_cells(tmp_path):
    release = rerelease(Q2, tmp_path / "q2-release-2")
    digest = CodecPackage.load(Q2).digest
    steps = [
        (
            "encode-set",
            "--codec",
            str(Q2),
            "--images",
            "tiny",
            "--target",
            "cpu",
            "--out",
            str(tmp_path / "enc"),
        ),
        (
            "decode-set",
            "--from",
            str(tmp_path / "enc"),
            "--target",
            "cpu",
            "--decode-with",
            f"{digest}={release.path}",
            "--out",
            str(tmp_path / "dec"),
        ),
        ("aggregate", str(tmp_path / "enc"), str(tmp_path / "dec"), "--out", str(tmp_path / "report")),
    ]
    for step in steps:
        done = bitmatch(*step)
        assert done.returncode == 0, f"{step}: {done.stdout}\n{done.stderr}"
    document = json.loads((tmp_path / "report" / "results.json").read_text())
    assert document["job"]["decode_with"] == {digest: release.digest}
    assert len(document["cells"]) == 3 and {c["verdict"] for c in document["cells"]} == {"bit-exact"}
