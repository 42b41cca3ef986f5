"""RDOQ (codec/rdoq.py): exact rates, decodable and deterministic output, a lower D + lambda R."""

from pathlib import Path

import numpy as np
import pytest

from codec import networks, rdoq
from codec.build import build_random
from codec.codec import Codec
from codec.errors import RdoqUnsupported
from codec.rdoq import RATE_UNIT, RdoqOptions, Sites
from codec.tables import code_bits

N, M, SEED = 8, 12, 21
LAMBDA = 0.01
SHIPPED = Path(__file__).resolve().parents[2] / "packages" / "int16" / "q3"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("rdoq")
    for precision in ("int16", "float"):
        build_random(root / precision, precision, N, M, SEED)
    return root


@pytest.fixture(scope="module")
def codec(packages):
    return Codec.load(packages / "int16")


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.ascontiguousarray(networks.synthetic_images(seed, 1, max(height, width))[0][:height, :width])


def _objective(codec: Codec, result, image: np.ndarray, weight: float) -> float:
    """Exact table bits of y + weight * SSE of the decoder's reconstruction."""
    rate = rdoq.TableRate(codec.y_model.tables, result.scale_index)
    recon = codec.decode(result.bitstream).recon.astype(np.float64)
    return rdoq.total_rate(rate, result.latents.symbols) / RATE_UNIT + weight * float(
        np.sum((recon - image) ** 2)
    )


def test_code_lengths_are_exactly_rounded():
    for freq in (1, 2, 3, 1000, 32768, 65535, 65536):
        assert rdoq.code_length_q(freq, 16) == round(RATE_UNIT * (16 - np.log2(freq)))
    assert rdoq.code_length_q(1 << 16, 16) == 0 and rdoq.code_length_q(1 << 8, 16) == 8 * RATE_UNIT


def test_table_rate_matches_the_code_tables(codec):
    result = codec.encode(_image(64, 64), reconstruct=False)
    rate = rdoq.TableRate(codec.y_model.tables, result.scale_index)
    total = rdoq.total_rate(rate, result.latents.symbols) / RATE_UNIT
    expected = code_bits(codec.y_model.tables, result.scale_index, result.latents.symbols)
    assert total == pytest.approx(expected, abs=result.latents.symbols.size / RATE_UNIT)


class LeftContextRate:
    """A toy context model: a symbol costs (1 + |value - left neighbour|) bits."""

    context_offsets = ((0, 0, 1),)

    def costs(self, symbols: np.ndarray, sites: Sites, changed: Sites, values: np.ndarray) -> np.ndarray:
        def value_at(where: Sites) -> np.ndarray:
            same = np.all([a == b for a, b in zip(where, changed, strict=True)], axis=0)
            inside = where[2] >= 0
            clamped = (where[0], where[1], np.maximum(where[2], 0))
            return np.where(inside, np.where(same, values, symbols[0][clamped]), 0).astype(np.int64)

        left = (sites[0], sites[1], sites[2] - 1)
        return RATE_UNIT * (1 + np.abs(value_at(sites) - value_at(left)))

    def most_probable(self, symbols: np.ndarray, sites: Sites) -> np.ndarray:
        c, y, x = sites
        return np.where(x > 0, symbols[0][c, y, np.maximum(x - 1, 0)], 0)


def test_rate_deltas_count_the_context_dependents():
    rng = np.random.default_rng(3)
    symbols = rng.integers(-3, 4, (1, 2, 4, 5)).astype(np.int32)
    model = LeftContextRate()
    sites = rdoq.all_sites(symbols.shape)
    values = symbols[0][sites] + rng.choice([-1, 1], len(sites[0]))
    deltas = rdoq.rate_deltas(model, symbols, sites, values)
    for i in range(len(values)):
        changed = symbols.copy()
        changed[0][tuple(axis[i] for axis in sites)] = values[i]
        assert deltas[i] == rdoq.total_rate(model, changed) - rdoq.total_rate(model, symbols)


def test_rdoq_output_decodes_to_the_chosen_y_hat(codec):
    result = codec.encode(_image(96, 128, seed=1), rdoq=RdoqOptions(lmbda=LAMBDA))
    assert sum(result.rdoq.changes) > 0
    decoded = codec.decode(result.bitstream)
    assert np.array_equal(decoded.latents.y_hat, result.latents.y_hat)
    assert decoded.stage_hashes == result.stage_hashes


def test_rdoq_twice_gives_the_same_bytes(codec):
    image = _image(64, 64, seed=2)
    first = codec.encode(image, rdoq=RdoqOptions(lmbda=LAMBDA))
    assert (
        Codec.load(codec.package.path).encode(image, rdoq=RdoqOptions(lmbda=LAMBDA)).bitstream
        == first.bitstream
    )


@pytest.mark.parametrize("lmbda", [0.002, LAMBDA, 0.05])
def test_rdoq_lowers_the_rd_cost(codec, lmbda):
    image = _image(96, 128, seed=4)
    plain = codec.encode(image)
    optimised = codec.encode(image, rdoq=RdoqOptions(lmbda=lmbda))
    weight = optimised.rdoq.weight
    assert weight == pytest.approx(lmbda / 3)
    assert _objective(codec, optimised, image, weight) < _objective(codec, plain, image, weight)
    assert optimised.rdoq.rate_after <= optimised.rdoq.rate_before or optimised.psnr > plain.psnr


def test_parallel_and_sequential_evaluation_agree(codec):
    image = _image(96, 128, seed=5)
    sequential = codec.encode(image, rdoq=RdoqOptions(lmbda=LAMBDA, batch_sites=1))
    for batch in (3, 1000):
        parallel = codec.encode(image, rdoq=RdoqOptions(lmbda=LAMBDA, batch_sites=batch))
        assert parallel.bitstream == sequential.bitstream
        assert parallel.rdoq.changes == sequential.rdoq.changes


def test_parallel_and_sequential_agree_with_a_context_model(codec):
    image = _image(64, 128, seed=6)
    base = codec.encode(image, reconstruct=False)

    def run(batch: int) -> np.ndarray:
        symbols = base.latents.symbols.copy()
        mean = base.latents.mean

        def real(values, sites):
            return codec.y_model.real(codec.y_model.dequantize(values, mean[0][sites]))

        y_real = codec.y_model.real(base.latents.y_hat)
        distortion = rdoq.CropDistortion(codec.batched_synthesis(), y_real, image, 1)
        problem = rdoq.Problem(symbols, LeftContextRate(), distortion, real, LAMBDA / 3)
        assert rdoq.stride_for(1, problem.rate) == 3
        rdoq.optimise(problem, 2, batch)
        return symbols

    sequential = run(1)
    assert not np.array_equal(sequential, base.latents.symbols)
    assert np.array_equal(run(1000), sequential)


def test_shipped_int16_package(tmp_path):
    codec = Codec.load(SHIPPED)
    image = _image(64, 64, seed=7)
    plain = codec.encode(image)
    optimised = codec.encode(image, rdoq=RdoqOptions(passes=2))
    assert optimised.rdoq.weight == pytest.approx(codec.package.manifest["lambda"] / 3)
    decoded = codec.decode(optimised.bitstream)
    assert np.array_equal(decoded.latents.y_hat, optimised.latents.y_hat)
    weight = optimised.rdoq.weight
    assert _objective(codec, optimised, image, weight) < _objective(codec, plain, image, weight)


def test_packages_without_an_exact_decoder_or_a_lambda_are_refused(packages, codec):
    image = _image(32, 32)
    with pytest.raises(RdoqUnsupported, match="exact decoder"):
        Codec.load(packages / "float").encode(image, rdoq=RdoqOptions(lmbda=LAMBDA))
    with pytest.raises(RdoqUnsupported, match="no lambda"):
        codec.encode(image, rdoq=RdoqOptions())


def test_default_window_is_half_the_receptive_field():
    g_s = networks.network_layers(networks.Architecture(n=N, m=M))["g_s"]
    assert rdoq.footprint(g_s) == 61 and rdoq.receptive_field(g_s) == 7
    assert rdoq.default_radius(g_s) == 2


def _invoke(*args: str):
    from click.testing import CliRunner

    from bitmatch.cli import cli

    return CliRunner().invoke(cli, ["codec", *args])


def test_cli_encode_with_rdoq(packages, tmp_path):
    from codec.images import save_png

    source = tmp_path / "in.png"
    save_png(_image(64, 64, seed=8), source)
    codec = ["--codec", str(packages / "int16"), "--json"]
    plain = _invoke("encode", str(source), str(tmp_path / "a.bmc"), *codec)
    done = _invoke("encode", str(source), str(tmp_path / "b.bmc"), *codec, "--rdoq", "--rdoq-lambda", "0.01")
    assert plain.exit_code == 0 and done.exit_code == 0, plain.output + done.output
    assert "rdoq" not in plain.output and len(json_changes(done.output)) <= rdoq.DEFAULT_PASSES
    one = _invoke(
        "encode",
        str(source),
        str(tmp_path / "c.bmc"),
        *codec,
        "--rdoq",
        "--rdoq-lambda",
        "0.01",
        "--passes",
        "1",
    )
    assert one.exit_code == 0 and len(json_changes(one.output)) == 1

    refused = _invoke(
        "encode", str(source), str(tmp_path / "d.bmc"), "--codec", str(packages / "float"), "--rdoq"
    )
    assert refused.exit_code == 1 and not (tmp_path / "d.bmc").exists()
    assert refused.output.strip().startswith("error: rdoq-unsupported:")
    assert len(refused.output.strip().splitlines()) == 1
    stray = _invoke("encode", str(source), str(tmp_path / "e.bmc"), *codec, "--passes", "2")
    assert stray.exit_code == 2 and "--rdoq" in stray.output


def json_changes(output: str) -> list[int]:
    import json

    return json.loads(output)["rdoq"]["changes"]


def test_a_crop_of_the_receptive_field_gives_the_exact_distortion_change(codec):
    image = _image(64, 112, seed=9)
    latents = codec.encode(image, reconstruct=False).latents
    y_model = codec.y_model
    distortion = rdoq.CropDistortion(codec.batched_synthesis(), y_model.real(latents.y_hat), image, 3)

    def full_sse(symbols: np.ndarray) -> float:
        recon = codec._synthesise(y_model.dequantize(symbols, latents.mean), *image.shape[:2])
        return float(np.sum((recon.astype(np.float64) - image) ** 2))

    base = full_sse(latents.symbols)
    sites = (np.array([0, 3, 5, 11]), np.array([0, 3, 1, 2]), np.array([0, 6, 4, 7]))
    values = latents.symbols[0][sites] + 1
    real = y_model.real(y_model.dequantize(values, latents.mean[0][sites]))
    count = len(values)
    channel = np.concatenate([np.full(count, -1), sites[0]])
    sse = distortion.sse(
        np.tile(sites[1], 2), np.tile(sites[2], 2), channel, np.concatenate([0 * real, real])
    )
    for i in range(count):
        changed = latents.symbols.copy()
        changed[0][tuple(axis[i] for axis in sites)] = values[i]
        assert sse[count + i] - sse[i] == full_sse(changed) - base
