"""The lowcomplexity family: context-switching entropy model, its decoder kernel, packages and verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codec import contexts, contexts_fit, networks, rans
from codec.codec import Codec
from codec.contexts import ContextModel
from codec.errors import BitstreamError
from codec.lowcx import LowComplexityCodec
from codec.lowcx_build import build_random
from codec.package import CodecPackage
from codec.stages import FACTORIZED_STAGES
from codec.vocabulary import Verdict
from server.verdicts import compare_hashes

N, M = 8, 12


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lowcx")
    build_random(root / "ctx", N, M, seed=5)
    build_random(root / "none", N, M, seed=5, contexts=1, activation=False)
    build_random(root / "int", N, M, seed=5, precision="int16-full")
    return {"ctx": root / "ctx", "none": root / "none", "int": root / "int"}


def _latents(seed: int, shape: tuple[int, ...] = (300, 6, 6, 7)) -> np.ndarray:
    """Spatially and inter-channel correlated integer latents, some channels mostly zero."""
    rng = np.random.default_rng(seed)
    field = rng.normal(0, 1, (*shape[:1], 1, *shape[2:]))
    field = field + np.roll(field, 1, axis=2) + np.roll(field, 1, axis=3)
    lat = np.rint(field * rng.uniform(0.3, 2.5, (1, shape[1], 1, 1)) + rng.normal(0, 0.6, shape))
    lat[:, 0] = np.where(rng.random(lat[:, 0].shape) < 0.97, 0, lat[:, 0])
    return lat.astype(np.int64)


def _reference_contexts(model: ContextModel, y_hat: np.ndarray) -> np.ndarray:
    """eq. 3 written out element by element in int64: the table index of every element, channel order."""
    planes = np.asarray(y_hat, np.int64)[0]
    _, height, width = planes.shape
    index = np.zeros(planes.shape, np.int64)
    for k, c in enumerate(model.order.tolist()):
        eps = int(model.thresholds[c])
        for i in range(height):
            for j in range(width):
                top = i > 0 and int(planes[c, i - 1, j]) >= eps
                left = j > 0 and int(planes[c, i, j - 1]) >= eps
                prev = False
                if k > 0:
                    p = int(model.order[k - 1])
                    prev = int(planes[p, i, j]) >= int(model.thresholds[p])
                context = int(top) + int(left) + int(prev) if model.contexts == 4 else 0
                index[c, i, j] = model.contexts * c + context
    return index[None]


def _round_trip(
    model: ContextModel, y_hat: np.ndarray, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sections = contexts.encode(model, y_hat)
    monkeypatch.setenv(rans.BACKEND_ENV, backend)
    decoded = contexts.decode(model, sections, y_hat.shape[2:])
    np.testing.assert_array_equal(decoded, y_hat)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contexts_match_an_int64_reference(seed: int) -> None:
    model = contexts_fit.fit(_latents(seed))
    y_hat = _latents(seed + 10, (1, 6, 5, 9)).astype(np.int32)
    np.testing.assert_array_equal(model.table_indexes(y_hat), _reference_contexts(model, y_hat))
    assert set(np.unique(model.table_indexes(y_hat) % 4)) <= {0, 1, 2, 3}


def _adversarial(model: ContextModel, rng: np.random.Generator) -> list[np.ndarray]:
    shape = (1, model.channels, 5, 7)
    eps = model.thresholds.reshape(1, -1, 1, 1)
    modes = np.broadcast_to(model.modes.reshape(1, -1, 1, 1), shape)
    at_threshold = np.where(rng.random(shape) < 0.5, eps, eps - 1)
    extreme = rng.choice([-(2**30), -(2**20), -70, 70, 2**20, 2**30 - 1], shape)
    one_active = modes.copy()
    one_active[0, 2, 4, 6] += 1
    return [
        modes.copy(),  # every channel inactive: nothing but the activation bits
        one_active,
        at_threshold,  # every comparison of eq. 3 on its edge
        extreme,  # escapes both ways, up to the int32 limits of the payload
        np.where(rng.random(shape) < 0.5, at_threshold, extreme),
        rng.integers(-6, 7, shape),
    ]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize(("count", "activation"), [(4, True), (4, False), (1, True), (1, False)])
def test_encoder_and_decoder_agree_on_adversarial_latents(
    backend: str, count: int, activation: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = contexts_fit.fit(_latents(3), count, activation)
    rng = np.random.default_rng(count + 2 * activation)
    for y_hat in _adversarial(model, rng):
        _round_trip(model, y_hat.astype(np.int32), backend, monkeypatch)


def test_inactive_channels_cost_no_symbols() -> None:
    model = contexts_fit.fit(_latents(4))
    y_hat = np.broadcast_to(model.modes.reshape(1, -1, 1, 1), (1, model.channels, 4, 4)).astype(np.int32)
    sections = contexts.encode(model, y_hat)
    assert len(sections["y"]) == rans.HEADER_BYTES + 4  # one lane state, no words


def test_the_decoder_kernel_reads_what_rans_decode_reads() -> None:
    """The one-lane stream is an ordinary rANS stream: decoding it with the known indexes agrees."""
    model = contexts_fit.fit(_latents(5))
    y_hat = _latents(6, (1, 6, 6, 7)).astype(np.int32)
    active = model.active(y_hat)
    values, indexes = model.coded(y_hat, active)
    sections = contexts.encode(model, y_hat)
    np.testing.assert_array_equal(rans.decode(sections["y"], indexes, model.tables), values)


def test_damaged_streams_raise_bitstream_errors() -> None:
    model = contexts_fit.fit(_latents(7))
    y_hat = _latents(8, (1, 6, 6, 7)).astype(np.int32)
    sections = contexts.encode(model, y_hat)
    for damaged in (sections["y"][:-2], sections["y"] + b"\0\0", sections["y"][:3]):
        with pytest.raises(BitstreamError):
            contexts.decode(model, {**sections, "y": damaged}, (6, 7))


def test_channel_order_follows_the_channel_that_predicts_it() -> None:
    lat = _latents(9)
    lat[:, 4] = lat[:, 2]  # channel 4 is channel 2: once one is coded, the other is nearly free
    order = contexts_fit.fit(lat).order.tolist()
    assert abs(order.index(4) - order.index(2)) == 1


def test_thresholds_minimise_the_spatial_entropy() -> None:
    lat = _latents(10)
    _, bits = contexts_fit._thresholds(lat, *contexts_fit._ranges(lat)[:2])
    lows, highs, _ = contexts_fit._ranges(lat)
    for c in range(lat.shape[1]):
        values, span = contexts_fit._clipped(lat, c, lows, highs)
        for eps in range(int(lows[c]) + 1, int(highs[c]) + 1):
            assert bits[c] <= contexts_fit._bits(values, contexts_fit._spatial(lat[:, c] >= eps), span, 3)


@pytest.mark.parametrize("name", ["ctx", "none", "int"])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (70, 90), (1, 1)])
def test_random_package_round_trips(packages: dict[str, Path], name: str, height: int, width: int) -> None:
    codec = Codec.load(packages[name])
    assert isinstance(codec, LowComplexityCodec)
    image = networks.synthetic_images(11, 1, 128)[0][:height, :width]
    encoded = codec.encode(image)
    decoded = codec.decode(encoded.bitstream)
    assert set(encoded.stage_hashes) == set(FACTORIZED_STAGES)
    assert encoded.stage_hashes == decoded.stage_hashes
    np.testing.assert_array_equal(encoded.recon, decoded.recon)
    assert compare_hashes(encoded.stage_hashes, decoded.stage_hashes).verdict == Verdict.BIT_EXACT


def test_package_manifest_names_the_family(packages: dict[str, Path]) -> None:
    manifest = CodecPackage.load(packages["ctx"]).manifest
    assert manifest["architecture"] == {"family": "lowcomplexity", "n": N, "m": M}
    assert manifest["contexts"]["contexts"] == 4 and manifest["contexts"]["activation"]
    assert CodecPackage.load(packages["none"]).manifest["contexts"]["contexts"] == 1
    assert "family" not in networks.Architecture(n=32, m=48).to_dict()  # hyperprior digests unchanged


def test_build_random_is_deterministic(packages: dict[str, Path], tmp_path: Path) -> None:
    assert build_random(tmp_path / "again", N, M, seed=5) == CodecPackage.load(packages["ctx"]).digest


def test_build_random_command_builds_the_family(packages: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from codec.cli import codec_group

    args = ["build-random", "--family", "lowcomplexity", "--precision", "float", "--channels", f"{N},{M}"]
    result = CliRunner().invoke(codec_group, [*args, "--seed", "5", "--out", str(tmp_path / "p"), "--json"])
    assert result.exit_code == 0, result.output
    assert CodecPackage.load(tmp_path / "p").digest == CodecPackage.load(packages["ctx"]).digest
    refused = CliRunner().invoke(codec_group, [*args[:4], "int8", *args[5:], "--seed", "5", "--out", "x"])
    assert refused.exit_code != 0 and "float or int16-full" in refused.output


def test_verdicts_of_factorized_stages() -> None:
    hashes = {stage: f"{stage}-hash" for stage in FACTORIZED_STAGES}
    assert compare_hashes(hashes, dict(hashes)).verdict == Verdict.BIT_EXACT
    assert compare_hashes(hashes, {**hashes, "symbols": "x"}).verdict == Verdict.DESYNC
    assert compare_hashes(hashes, {**hashes, "recon": "x"}).verdict == Verdict.LATENT_EXACT
    missing = {k: v for k, v in hashes.items() if k != "y_hat"}
    assert compare_hashes(hashes, missing).verdict == Verdict.ERROR
    assert compare_hashes({**hashes, "z_hat": "z"}, hashes).verdict == Verdict.ERROR  # a hyperprior side


def test_int16_full_package_has_an_integer_g_s(packages: dict[str, Path]) -> None:
    package = CodecPackage.load(packages["int"])
    assert package.precision == "int16-full" and "certificate.json" in package.names()
    codec = Codec.load(packages["int"])
    image = networks.synthetic_images(12, 1, 64)[0]
    float_recon = Codec.load(packages["ctx"]).encode(image).recon
    recon = codec.encode(image).recon
    assert recon.dtype == np.uint8 and np.abs(recon.astype(int) - float_recon).mean() < 3.0


SHIPPED = Path(__file__).resolve().parents[2] / "packages"
SHIPPED_VARIANTS = {"lowcomplexity": 4, "lowcomplexity-nocontext": 1}
SHIPPED_LIMIT = 10 * 2**20


def _shipped_size() -> int:
    paths = [SHIPPED / name for name in SHIPPED_VARIANTS]
    return sum(file.stat().st_size for path in paths for file in path.rglob("*") if file.is_file())


def test_shipped_family_has_four_rate_points_per_variant_in_under_10_mb() -> None:
    assert _shipped_size() <= SHIPPED_LIMIT
    for rate in ("q1", "q2", "q3", "q4"):
        loaded = {name: CodecPackage.load(SHIPPED / name / rate) for name in SHIPPED_VARIANTS}
        for name, package in loaded.items():
            assert package.manifest["architecture"]["family"] == "lowcomplexity"
            assert package.manifest["contexts"]["contexts"] == SHIPPED_VARIANTS[name]
            assert package.precision == "int16-full" and package.manifest["weights"] == "trained"
        graphs = {package.manifest["files"]["synthesis.onnx"]["sha256"] for package in loaded.values()}
        assert len(graphs) == 1  # the variants differ in their entropy model only
    lambdas = [
        CodecPackage.load(SHIPPED / "lowcomplexity" / f"q{r}").manifest["training"]["lambda"]
        for r in (1, 2, 3, 4)
    ]
    assert lambdas == sorted(lambdas)


def test_shipped_package_round_trips_a_photograph() -> None:
    from codec.images import load_png

    image = load_png(SHIPPED.parent / "data" / "testset" / "demo" / "garden.png")
    for name in SHIPPED_VARIANTS:
        codec = Codec.load(SHIPPED / name / "q2")
        encoded = codec.encode(image)
        decoded = codec.decode(encoded.bitstream)
        assert encoded.stage_hashes == decoded.stage_hashes and encoded.psnr > 20
