"""RDOQ of the lowcomplexity family and of int16-full packages (codec/rdoq_lowcx.py): the context model's
exact rates and context dependents, decodable and deterministic output, a lower D + lambda R."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from codec import networks, rdoq
from codec.build import build_random as build_hyperprior
from codec.cli import codec_group
from codec.codec import Codec
from codec.images import save_png
from codec.lowcx_build import build_random
from codec.rdoq import RATE_UNIT, RdoqOptions
from codec.rdoq_lowcx import ContextRate
from codec.tables import code_bits

N, M, SEED = 8, 12, 5
LAMBDA = 0.01
SHIPPED = Path(__file__).resolve().parents[2] / "packages" / "lowcomplexity" / "q1"
VARIANTS = {
    "contexts": {},
    "nocontext": {"contexts": 1, "activation": False},
    "full": {"precision": "int16-full"},
}


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("rdoq_lowcx")
    for name, options in VARIANTS.items():
        build_random(root / name, N, M, SEED, **options)
    return root


def _image(size: int = 64, seed: int = 0) -> np.ndarray:
    return np.ascontiguousarray(networks.synthetic_images(seed, 1, size)[0][:size, :size])


def _planes(codec, y_hat: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(y_hat[:, codec.model.order])


def _total(rate: ContextRate, planes: np.ndarray) -> int:
    return rdoq.total_rate(rate, planes) + rate.activation_cost(planes)


def _objective(codec, result, image: np.ndarray, weight: float) -> float:
    """Exact table bits of the symbols and activation bits + weight * SSE of the decoder's reconstruction."""
    decoded = codec.decode(result.bitstream)
    bits = _total(ContextRate(codec.model), _planes(codec, decoded.latents.y_hat)) / RATE_UNIT
    return bits + weight * float(np.sum((decoded.recon.astype(np.float64) - image) ** 2))


@pytest.mark.parametrize("variant", ["contexts", "nocontext"])
def test_context_rate_matches_the_code_tables(packages, variant):
    codec = Codec.load(packages / variant)
    y_hat = codec.encode(_image(), reconstruct=False).latents.y_hat
    model = codec.model
    active = model.active(y_hat)
    values, indexes = model.coded(y_hat, active)
    expected = code_bits(model.tables, indexes, values)
    if model.activation_tables is not None:
        expected += code_bits(model.activation_tables, np.arange(model.channels), active)
    total = _total(ContextRate(model), _planes(codec, y_hat)) / RATE_UNIT
    assert total == pytest.approx(expected, abs=(y_hat.size + model.channels) / RATE_UNIT)


def _check_deltas(rate: ContextRate, planes: np.ndarray, sites: list[tuple[int, int, int]], values) -> None:
    for site, value in zip(sites, values, strict=True):
        where = tuple(np.array([axis]) for axis in site)
        delta = int(rdoq.rate_deltas(rate, planes, where, np.array([value]))[0])
        after = planes.copy()
        after[(0, *site)] = value
        assert delta == _total(rate, after) - _total(rate, planes), (site, value)


@pytest.mark.parametrize("variant", ["contexts", "nocontext"])
def test_rate_deltas_are_the_exact_change_of_the_total(packages, variant):
    """Bottom, right and next-channel dependents, a change to the mode and one away from it."""
    codec = Codec.load(packages / variant)
    planes = _planes(codec, codec.encode(_image(seed=3), reconstruct=False).latents.y_hat)
    rate = ContextRate(codec.model)
    rng = np.random.default_rng(0)
    active = np.flatnonzero(rate._off_mode_counts(planes[0]) > 0)
    sites = [(int(rng.choice(active)), *map(int, rng.integers(0, planes.shape[2:]))) for _ in range(60)]
    steps = rng.choice([-1, 1], len(sites))
    values = [planes[(0, *site)] + step for site, step in zip(sites, steps, strict=True)]
    values = [
        rate.modes[site[0]] if i % 4 == 0 else v
        for i, (site, v) in enumerate(zip(sites, values, strict=True))
    ]
    _check_deltas(rate, planes, sites, values)


def test_emptying_a_channel_deactivates_it_in_the_rate(packages):
    """With activation bits a change that leaves a channel at its mode everywhere saves the channel's
    symbols (its bit becomes 0), and the channel is then never touched (most probable = its value)."""
    codec = Codec.load(packages / "contexts")
    rate = ContextRate(codec.model)
    planes = _planes(codec, codec.encode(_image(seed=3), reconstruct=False).latents.y_hat).copy()
    k = 1
    planes[0, k] = rate.modes[k]
    planes[0, k, 2, 3] = rate.modes[k] + 1
    before = _total(rate, planes)
    _check_deltas(rate, planes, [(k, 2, 3)], [rate.modes[k]])
    after = planes.copy()
    after[0, k, 2, 3] = rate.modes[k]
    assert _total(rate, after) < before
    sites = tuple(np.array([v]) for v in (k, 0, 0))
    assert rate.most_probable(after, sites)[0] == rate.modes[k]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rdoq_output_decodes_and_is_deterministic(packages, variant):
    codec = Codec.load(packages / variant)
    image = _image(seed=1)
    options = RdoqOptions(passes=2, lmbda=LAMBDA)
    result = codec.encode(image, rdoq=options)
    assert sum(result.rdoq.changes) > 0
    decoded = Codec.load(packages / variant).decode(result.bitstream)
    assert np.array_equal(decoded.latents.y_hat, result.latents.y_hat)
    if variant == "full":  # integer g_s: the reconstruction too
        assert decoded.stage_hashes == result.stage_hashes
    assert codec.encode(image, rdoq=options).bitstream == result.bitstream


@pytest.mark.parametrize("variant", ["contexts", "nocontext"])
def test_rdoq_lowers_the_rd_cost(packages, variant):
    codec = Codec.load(packages / variant)
    image = _image(seed=2)
    weight = LAMBDA / 3
    plain = codec.encode(image)
    optimised = codec.encode(image, rdoq=RdoqOptions(passes=3, lmbda=LAMBDA))
    assert _objective(codec, optimised, image, weight) < _objective(codec, plain, image, weight)


def test_parallel_and_sequential_evaluation_agree(packages):
    codec = Codec.load(packages / "contexts")
    image = _image(seed=4)
    batched = codec.encode(image, rdoq=RdoqOptions(passes=1, lmbda=LAMBDA))
    sequential = codec.encode(image, rdoq=RdoqOptions(passes=1, lmbda=LAMBDA, batch_sites=1))
    assert batched.bitstream == sequential.bitstream


def test_shipped_lowcomplexity_package():
    """The trained q1 with its own lambda (from its training metadata) on a 64x64 crop of a photograph."""
    from codec.images import load_png

    image = np.ascontiguousarray(load_png(SHIPPED.parents[2] / "data" / "testset" / "coffee.png")[:64, :64])
    codec = Codec.load(SHIPPED)
    plain = codec.encode(image)
    result = codec.encode(image, rdoq=RdoqOptions(passes=2))
    decoded = Codec.load(SHIPPED, "ort-cpu-1t").decode(result.bitstream)
    assert decoded.stage_hashes == result.stage_hashes  # int16-full: bit-exact reconstruction
    weight = rdoq.lambda_weight({"lambda": codec.package.manifest["training"]["lambda"]}, None)
    assert result.rdoq.weight == weight
    assert _objective(codec, result, image, weight) < _objective(codec, plain, image, weight)


def test_int16_full_hyperprior_package(tmp_path):
    """Its integer g_s (batch 1) measures D one crop at a time; the output decodes bit-exactly."""
    build_hyperprior(tmp_path / "full", "int16-full", N, M, SEED)
    codec = Codec.load(tmp_path / "full")
    image = _image(seed=6)
    result = codec.encode(image, rdoq=RdoqOptions(passes=1, lmbda=LAMBDA))
    assert sum(result.rdoq.changes) > 0
    assert Codec.load(tmp_path / "full").decode(result.bitstream).stage_hashes == result.stage_hashes


def test_cli_encode_with_rdoq_on_a_lowcomplexity_package(tmp_path):
    runner = CliRunner()
    package = tmp_path / "lowcx"
    options = ["--family", "lowcomplexity", "--precision", "int16-full", "--channels", f"{N},{M}"]
    built = runner.invoke(codec_group, ["build-random", *options, "--seed", str(SEED), "--out", str(package)])
    assert built.exit_code == 0, built.output
    source = tmp_path / "in.png"
    save_png(_image(seed=7), source)
    args = ["encode", str(source), str(tmp_path / "a.bmc"), "--codec", str(package), "--json"]
    done = runner.invoke(codec_group, [*args, "--rdoq", "--rdoq-lambda", str(LAMBDA), "--passes", "2"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert 1 <= len(report["rdoq"]["changes"]) <= 2
    decoded = runner.invoke(
        codec_group,
        ["decode", str(tmp_path / "a.bmc"), str(tmp_path / "out.png"), "--codec", str(package), "--json"],
    )
    assert decoded.exit_code == 0, decoded.output
    assert json.loads(decoded.stdout)["stage_hashes"]["y_hat"] == report["stage_hashes"]["y_hat"]


def test_eval_measures_an_rdoq_curve_at_a_scaled_lambda():
    """codec eval's RDOQ points (codec/train/evaluate.py): the package's lambda times the curve's scale."""
    from codec.images import load_png
    from codec.train import evaluate

    image = np.ascontiguousarray(load_png(SHIPPED.parents[2] / "data" / "testset" / "coffee.png")[:64, :64])
    point = evaluate.codec_point(SHIPPED, [("crop", image)], rdoq_passes=1, rdoq_lambda_scale=0.25)
    lmbda = Codec.load(SHIPPED).package.manifest["training"]["lambda"]
    assert point["rdoq_passes"] == 1 and point["rdoq_lambda"] == pytest.approx(lmbda / 4)
    assert "rdoq_passes" not in evaluate.codec_point(SHIPPED, [("crop", image)])
    names = [spec[0] for spec in evaluate.curve_specs(evaluate.shipped_families(), None)]
    assert not any("rdoq" in name for name in names)


def test_bd_of_curves_without_a_common_psnr_range_keeps_the_bd_psnr():
    from codec.train import evaluate

    anchor = [{"bpp": r, "psnr": 24 + r, "ms_ssim": 0.8 + r / 10} for r in (0.2, 0.3, 0.4)]
    test = [{"bpp": r, "psnr": 26 + r, "ms_ssim": 0.9 + r / 10} for r in (0.2, 0.3, 0.4)]
    result = evaluate._bd(anchor, test)
    assert "not computable" in result["error"] and result["bd_psnr_db"] == pytest.approx(2.0)
