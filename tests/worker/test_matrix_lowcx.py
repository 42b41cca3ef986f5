"""The encoder x decoder matrix of the lowcomplexity family (codec/lowcx.py) over the five local targets.

Every decoder must rebuild the encoder's symbols and y_hat (the context-switching entropy path is integer
only); the reconstruction comes from g_s, whose differing pairs are printed and, for a package whose g_s is
integer, asserted too."""

import json

import pytest
from matrix_runs import TARGETS, WORKER_TIMEOUT_S, provision, run_matrix

from codec.lowcx_build import build_random
from codec.package import CodecPackage, archive_bytes
from codec.stages import FACTORIZED_STAGES

pytestmark = [pytest.mark.slow, pytest.mark.qemu]


@pytest.fixture(scope="module")
def lowcx_packages(harness, tmp_path_factory) -> dict[str, tuple[str, bytes, bool]]:
    """{name: (digest, archive, g_s integer)}: random packages (float and integer g_s) and the shipped q2."""
    root = tmp_path_factory.mktemp("lowcx-packages")
    build_random(root / "random", 8, 12, seed=4)
    build_random(root / "random-int", 8, 12, seed=4, precision="int16-full")
    dirs = {
        "random": root / "random",
        "random int16-full": root / "random-int",
        "shipped q2": harness.ROOT / "packages" / "lowcomplexity" / "q2",
    }
    loaded = {name: CodecPackage.load(path) for name, path in dirs.items()}
    return {
        name: (package.digest, archive_bytes(package), package.precision != "float")
        for name, package in loaded.items()
    }


@pytest.fixture(scope="module")
def lowcx_workers(harness, lowcx_packages, tmp_path_factory):
    for name in TARGETS:
        provision(name)
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


@pytest.mark.parametrize("name", ["random", "random int16-full", "shipped q2"])
def test_every_decoder_gets_the_encoders_symbols_and_y_hat(
    lowcx_workers, lowcx_packages, harness, name, capsys
):
    digest, _, integer_gs = lowcx_packages[name]
    encodes, decodes = run_matrix(lowcx_workers, digest, harness.tiny_png(64, 64))
    differing = {}
    for (enc, dec), decoded in decodes.items():
        assert "error" not in decoded, (enc, dec, decoded)  # every decode of this family succeeds
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
