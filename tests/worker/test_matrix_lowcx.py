"""The encoder x decoder matrix of the lowcomplexity family (codec/lowcx.py) over the five local targets.

Every decoder must rebuild the encoder's symbols and y_hat (the context-switching entropy path is integer
only); the reconstruction comes from g_s, whose differing pairs are printed and, for a package whose g_s is
integer, asserted too."""

import base64
import concurrent.futures
import json

import pytest

from codec.lowcx_build import build_random
from codec.package import CodecPackage, archive_bytes
from codec.stages import FACTORIZED_STAGES
from worker.targets import get_target

TARGETS = ("cpu", "cpu-1t-noopt", "onnx-ref", "qemu-aarch64", "qemu-x86-sse")
WORKER_TIMEOUT_S = "900"

pytestmark = [pytest.mark.slow, pytest.mark.qemu]


def _provision(name: str) -> None:
    target = get_target(name)
    if target.check() is not None:
        target.setup()
    reason = target.check()
    assert reason is None, f"target {name} cannot run here after setup: {reason}"


@pytest.fixture(scope="module")
def lowcx_packages(harness, tmp_path_factory) -> dict[str, tuple[str, bytes, bool]]:
    """{name: (digest, archive, g_s integer)}: random packages (float and integer g_s) and the shipped q2,
    when there is one."""
    root = tmp_path_factory.mktemp("lowcx-packages")
    build_random(root / "random", 8, 12, seed=4)
    build_random(root / "random-int", 8, 12, seed=4, precision="int16-full")
    dirs = {"random": root / "random", "random int16-full": root / "random-int"}
    shipped = harness.ROOT / "packages" / "lowcomplexity" / "q2"
    if (shipped / "manifest.json").exists():
        dirs["shipped q2"] = shipped
    loaded = {name: CodecPackage.load(path) for name, path in dirs.items()}
    return {
        name: (package.digest, archive_bytes(package), package.precision != "float")
        for name, package in loaded.items()
    }


@pytest.fixture(scope="module")
def lowcx_workers(harness, lowcx_packages, tmp_path_factory):
    for name in TARGETS:
        _provision(name)
    root = tmp_path_factory.mktemp("lowcx-matrix")
    started = harness.start_workers(
        [(name, root / name, ("--timeout", WORKER_TIMEOUT_S)) for name in TARGETS]
    )
    try:
        for worker in started:
            for digest, archive, _ in lowcx_packages.values():
                assert worker.upload(archive, digest).status_code == 201
        yield {worker.target: worker for worker in started}
    finally:
        for worker in started:
            worker.stop()


def _call(worker, op: str, digest: str, content: bytes) -> dict:
    response = worker.client.post(f"/v1/{op}", params={"codec": digest}, content=content)
    assert response.status_code == 200, f"{op} on {worker.target}: {response.text}\n{worker.log()}"
    return response.json()


def _matrix(workers: dict, digest: str, png: bytes) -> tuple[dict, dict]:
    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        encoded = pool.map(lambda w: _call(w, "encode", digest, png), workers.values())
        encodes = dict(zip(workers, encoded, strict=True))
        pairs = [(enc, dec) for enc in workers for dec in workers]
        decoded = pool.map(
            lambda p: _call(workers[p[1]], "decode", digest, base64.b64decode(encodes[p[0]]["bitstream"])),
            pairs,
        )
        return encodes, dict(zip(pairs, decoded, strict=True))


@pytest.mark.parametrize("name", ["random", "random int16-full", "shipped q2"])
def test_every_decoder_gets_the_encoders_symbols_and_y_hat(
    lowcx_workers, lowcx_packages, harness, name, capsys
):
    if name not in lowcx_packages:
        pytest.skip("no packages/lowcomplexity/q2 in this checkout")
    digest, _, integer_gs = lowcx_packages[name]
    encodes, decodes = _matrix(lowcx_workers, digest, harness.tiny_png(64, 64))
    differing = {}
    for (enc, dec), decoded in decodes.items():
        expected = encodes[enc]["stage_hashes"]
        assert set(decoded["stage_hashes"]) == set(FACTORIZED_STAGES)
        for stage in ("symbols", "y_hat"):
            assert decoded["stage_hashes"][stage] == expected[stage], (enc, dec, stage)
        if decoded["stage_hashes"]["recon"] != expected["recon"]:
            differing[f"{enc} -> {dec}"] = "recon"
    recons = {enc: body["stage_hashes"]["recon"][:12] for enc, body in encodes.items()}
    with capsys.disabled():
        print(f"\nlowcomplexity {name}: {len(differing)} of {len(decodes)} pairs differ in recon")
        print(json.dumps({"differing": differing, "recon_by_encoder": recons}, indent=1))
    if integer_gs:
        assert not differing
