"""The encoder x decoder matrix over real workers: native, single-threaded, ONNX reference, and qemu-user
emulated aarch64 and SSE-only x86. The int16 package must give every decoder the encoder's y_hat; the float
twin's differing pairs are printed, not asserted (the machine decides). The int16-full packages (integer g_s)
must give every decoder the encoder's reconstruction too."""

import pytest
from matrix_runs import TARGETS, WORKER_TIMEOUT_S, provision, run_matrix

from codec.stages import LATENT_STAGES, PARSE_STAGES

ENTROPY_STAGES = PARSE_STAGES + LATENT_STAGES

pytestmark = [pytest.mark.slow, pytest.mark.qemu]


@pytest.fixture(scope="module")
def workers(harness, packages, lowered_packages, shipped, full_packages, tmp_path_factory):
    for name in TARGETS:
        provision(name)
    root = tmp_path_factory.mktemp("matrix")
    specs = [(name, root / name, ("--timeout", WORKER_TIMEOUT_S)) for name in TARGETS]
    started = harness.start_workers(specs)
    try:
        for worker in started:
            uploads = [packages, lowered_packages, shipped, full_packages]
            for digest, archive in [pair for group in uploads for pair in group.values()]:
                assert worker.upload(archive, digest).status_code == 201
        yield {worker.target: worker for worker in started}
    finally:
        for worker in started:
            worker.stop()


def differing_stages(encoded: dict, decoded: dict) -> list[str]:
    if "error" in decoded:
        return [f"decode failed: {decoded['error']}"]
    return [s for s in (*ENTROPY_STAGES, "recon") if encoded["stage_hashes"][s] != decoded["stage_hashes"][s]]


def report(title: str, encodes: dict, decodes: dict) -> str:
    lines = [title]
    for (enc, dec), decoded in decodes.items():
        stages = differing_stages(encodes[enc], decoded)
        verdict = "bit-exact" if not stages else "latent-exact" if stages == ["recon"] else "desync"
        detail = f"differs: {', '.join(stages)}" if stages else ""
        lines.append(f"  {enc:>13} -> {dec:<13} {verdict:<12} {detail}")
    bitstreams = {enc: body["bitstream_sha256"][:12] for enc, body in encodes.items()}
    lines.append(f"  bitstream sha256 by encoder: {bitstreams}")
    return "\n".join(lines)


def test_qemu_workers_run_emulated_code(workers):
    aarch64 = workers["qemu-aarch64"].client.get("/v1/info").json()
    assert aarch64["arch"] == "aarch64"
    assert aarch64["emulator"]["cpu"] == "neoverse-n1" and "qemu-aarch64" in aarch64["emulator"]["binary"]
    sse = workers["qemu-x86-sse"].client.get("/v1/info").json()
    assert sse["arch"] == "x86_64" and sse["emulator"]["cpu"] == "Nehalem"
    assert "SSE42" in sse["cpu_features_detected"] and "AVX" not in sse["cpu_features_detected"]
    for name in ("cpu", "cpu-1t-noopt", "onnx-ref"):
        assert workers[name].client.get("/v1/info").json()["emulator"] is None


def assert_exact_matrix(workers: dict, digest: str, png: bytes, title: str, capsys) -> None:
    """Every decoder must reproduce the encoder's entropy-path stages; the matrix is printed either way."""
    encodes, decodes = run_matrix(workers, digest, png)
    with capsys.disabled():
        print("\n" + report(title, encodes, decodes))
    for (enc, dec), decoded in decodes.items():
        assert "error" not in decoded, (enc, dec, decoded)
        for stage in ENTROPY_STAGES:
            assert decoded["stage_hashes"][stage] == encodes[enc]["stage_hashes"][stage], (enc, dec, stage)


def print_float_matrix(workers: dict, digest: str, png: bytes, name: str, capsys) -> None:
    """The float twin's matrix: differing pairs are printed, never asserted (the machines decide)."""
    encodes, decodes = run_matrix(workers, digest, png)
    differing = {pair for pair, decoded in decodes.items() if differing_stages(encodes[pair[0]], decoded)}
    with capsys.disabled():
        title = f"{name}, encoder -> decoder ({len(differing)} of {len(decodes)} pairs differ):"
        print("\n" + report(title, encodes, decodes))
    assert len(decodes) == len(workers) ** 2


def test_int16_package_every_decoder_gets_the_encoders_y_hat(workers, packages, png, capsys):
    assert_exact_matrix(workers, packages["int16"][0], png, "int16 package, encoder -> decoder:", capsys)


@pytest.mark.parametrize("lowering", ["int8-digits", "uint8-digits"])
def test_int16_digit_lowerings_every_decoder_gets_the_encoders_y_hat(
    workers, lowered_packages, png, lowering, capsys
):
    """The same int16 package with its h_s on MatMulInteger (s8 or u8 activation digits)."""
    title = f"int16 package, {lowering} h_s, encoder -> decoder:"
    assert_exact_matrix(workers, lowered_packages[lowering][0], png, title, capsys)


def test_float_twin_matrix_is_reported(workers, packages, png, capsys):
    print_float_matrix(workers, packages["float"][0], png, "float twin", capsys)


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_shipped_trained_packages_every_decoder_gets_the_encoders_y_hat(
    workers, shipped, photo_png, precision, capsys
):
    title = f"trained {precision} package on a photograph, encoder -> decoder:"
    assert_exact_matrix(workers, shipped[precision][0], photo_png, title, capsys)


def test_shipped_float_twin_matrix_is_reported(workers, shipped, photo_png, capsys):
    """The trained float twin on the same photograph (where paper 003's desync would show)."""
    print_float_matrix(workers, shipped["float"][0], photo_png, "trained float twin", capsys)


@pytest.mark.parametrize("which", ["random", "shipped"])
def test_int16_full_packages_every_decoder_gets_the_encoders_reconstruction(
    workers, full_packages, png, photo_png, which, capsys
):
    """The integer g_s: every stage, the reconstruction included, is the encoder's on every decoder."""
    image = png if which == "random" else photo_png
    encodes, decodes = run_matrix(workers, full_packages[which][0], image)
    with capsys.disabled():
        print("\n" + report(f"{which} int16-full package, encoder -> decoder:", encodes, decodes))
    for (enc, dec), decoded in decodes.items():
        assert differing_stages(encodes[enc], decoded) == [], (enc, dec)  # the `bit-exact` verdict
