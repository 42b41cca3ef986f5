"""The integer g_s (codec/intsynth.py): its ONNX graphs against the int64 reference (int_reference.py) at
the clamps, its certificate, and the int16-full packages it makes."""

import copy
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from int_reference import gs_output_units, reference_gs

from codec import networks
from codec.build import build_random, calibration_latents, load_weights
from codec.codec import Codec
from codec.images import load_png
from codec.intlayer import ACC_LIMIT, OverflowRisk, accumulator_bounds
from codec.intsynth import IntSynthesis, certify_gs
from codec.intsynth_graph import build_gs_onnx
from codec.intsynth_search import integerize_gs
from codec.layers import Layer, LayerSpec
from codec.package import CERTIFICATE, HYPER_SYNTHESIS, CodecPackage
from codec.vocabulary import Lowering, Precision

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"
LOWERINGS = [str(lowering) for lowering in Lowering]
INT32_MAX = 2**31 - 1
NETWORKS = ("relu", "gdn", "trained", "conv-stack")


def _calibration_y(arch: networks.Architecture, weights: dict[str, np.ndarray]) -> np.ndarray:
    images = networks.synthetic_images(5, 2, 128)
    y, _ = calibration_latents(arch, weights, 0, images)
    return y


def _random_gs(transform: str) -> IntSynthesis:
    arch = networks.Architecture(n=8, m=8, transform=transform)
    weights = networks.random_weights(arch, 3)
    return integerize_gs(networks.bind(arch, weights)["g_s"], _calibration_y(arch, weights), arch.mean_bits)


def _trained_gs() -> IntSynthesis:
    package = CodecPackage.load(PACKAGES / "float" / "q2")
    arch = networks.Architecture.from_dict(package.manifest["architecture"])
    weights = load_weights(package)
    return integerize_gs(networks.bind(arch, weights)["g_s"], _calibration_y(arch, weights), arch.mean_bits)


def _conv_stack() -> IntSynthesis:
    """A g_s-like stack that is not ours: a 3x3 conv with ReLU, then a 5x5 stride-2 transposed conv."""
    rng = np.random.default_rng(11)
    specs = [LayerSpec("conv", 4, 6, 3, 1, "relu"), LayerSpec("convT", 6, 3, 5, 2)]
    layers = [
        Layer(
            spec,
            (rng.standard_normal(spec.weight_shape()) * 0.2).astype(np.float32),
            np.full(spec.c_out, 0.3),
        )
        for spec in specs
    ]
    return integerize_gs(layers, rng.standard_normal((2, 4, 8, 8)) * 3, 8)


# the trained g_s (4 layers of 32-48 channels) takes most of the time: make test-fast leaves it out
@pytest.fixture(
    scope="module",
    params=[pytest.param(n, marks=pytest.mark.slow) if n == "trained" else n for n in NETWORKS],
)
def int_gs(request) -> IntSynthesis:
    builders = {
        "relu": lambda: _random_gs("relu"),
        "gdn": lambda: _random_gs("gdn"),
        "trained": _trained_gs,
        "conv-stack": _conv_stack,
    }
    return builders[request.param]()


def _run(model: bytes, *y_hats: np.ndarray) -> np.ndarray:
    """The graph on ORT CPU, one session for every input (the graph's batch is 1), outputs concatenated."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["x_hat"], {"y_hat": y.astype(np.int32)})[0] for y in y_hats])


def _adversarial_inputs(channels: int, size: int = 4) -> dict[str, np.ndarray]:
    """y_hat patterns at and beyond the clamps (int32 extremes clamp to +-L in the first layer)."""
    rng = np.random.default_rng(0)
    shape = (1, channels, size, size)
    c, h, w = np.meshgrid(np.arange(channels), np.arange(size), np.arange(size), indexing="ij")
    alternating = np.where((c + h + w) % 2 == 0, INT32_MAX, -INT32_MAX)[None]
    return {
        "max": np.full(shape, INT32_MAX),
        "min": np.full(shape, -INT32_MAX - 1),
        "alternating": alternating,
        "alternating-space": np.where((h + w) % 2 == 0, INT32_MAX, -INT32_MAX)[None],
        "random-signs": rng.choice([-INT32_MAX, INT32_MAX], shape),
        "random-int32": rng.integers(-(2**31), 2**31, shape),
        "random-latents": rng.integers(-(2**13), 2**13, shape),
        "zero": np.zeros(shape, np.int64),
    }


def _check_bounds(int_gs: IntSynthesis, accumulators: list[np.ndarray]) -> None:
    bounds = [accumulator_bounds(layer) for layer in int_gs.integer_layers()]
    assert len(accumulators) == len(bounds)
    for acc, bound in zip(accumulators, bounds, strict=True):
        assert np.all(np.abs(acc) <= bound.reshape(1, -1, 1, 1)) and bound.max() <= ACC_LIMIT


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_graph_matches_the_int64_reference_at_the_clamps(int_gs, lowering):
    model = build_gs_onnx(int_gs, lowering)
    for name, y_hat in _adversarial_inputs(int_gs.layers[0].spec.c_in).items():
        accumulators: list[np.ndarray] = []
        expected = reference_gs(int_gs, y_hat, accumulators)
        got = _run(model, y_hat)
        assert got.dtype == np.uint8 and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=f"{name} ({lowering})")
        _check_bounds(int_gs, accumulators)


def _tail(int_gs: IntSynthesis, index: int) -> IntSynthesis:
    """Layers index.. as a network of their own whose input is layer `index`'s clamped input itself."""
    return IntSynthesis(int_gs.layers[index:], int_gs.norms[index:], int_gs.layers[index].p_in)


def _worst_case(
    layer, channel: int, phase: tuple[int, int], sign: int, size: int = 8
) -> tuple[np.ndarray, tuple]:
    """An input of +-L sign(w) on every tap that meets in one output of `channel` (of the given phase),
    and that output's position: its accumulator is b_j +- sum |w| L."""
    spec, weight = layer.spec, np.sign(layer.weight.astype(np.int64))
    weight[weight == 0] = 1
    x = np.zeros((1, spec.c_in, size, size), np.int64)
    s, pad = spec.stride, spec.padding
    if spec.kind == "conv":
        out = (size // (2 * s),) * 2
        for ty in range(spec.kernel):
            for tx in range(spec.kernel):
                iy, ix = out[0] * s - pad + ty, out[1] * s - pad + tx
                x[0, :, iy, ix] = weight[channel, :, ty, tx]
        return sign * layer.clamp * x, out
    out = tuple(size + (phase[axis] - size - pad) % s for axis in range(2))
    for ty in range(phase[0], spec.kernel, s):
        for tx in range(phase[1], spec.kernel, s):
            iy, ix = (out[0] + pad - ty) // s, (out[1] + pad - tx) // s
            x[0, :, iy, ix] = weight[:, channel, ty, tx]
    return sign * layer.clamp * x, out


def _phases(layer) -> list[tuple[int, int]]:
    s = layer.spec.stride if layer.kind == "convT" else 1
    return [(a, b) for a in range(s) for b in range(s)]


def _phase_l1(layer, channel: int, phase: tuple[int, int]) -> int:
    weight = np.abs(layer.weight.astype(np.int64))
    if layer.kind == "conv":
        return int(weight[channel].sum())
    s = layer.spec.stride
    return int(weight[:, channel, phase[0] :: s, phase[1] :: s].sum())


@pytest.mark.parametrize("lowering", [Lowering.FLOAT64, Lowering.INT8_DIGITS])
def test_worst_case_pattern_of_every_output_channel_of_every_layer(int_gs, lowering):
    """Each layer's input set to the pattern that drives one output to its bound, through the graph of the
    network from that layer on: the graph agrees with the reference, which reaches b_j +- sum |w| L."""
    for index, layer in enumerate(int_gs.layers):
        tail = _tail(int_gs, index)
        model = build_gs_onnx(tail, lowering)
        inputs, expected_acc = [], []
        for channel in range(layer.out_channels):
            for phase in _phases(layer):
                for sign in (1, -1):
                    x, (oy, ox) = _worst_case(layer, channel, phase, sign)
                    inputs.append(x)
                    extreme = _phase_l1(layer, channel, phase) * layer.clamp
                    expected_acc.append((channel, oy, ox, int(layer.bias[channel]) + sign * extreme))
        batch = np.concatenate(inputs)
        accumulators: list[np.ndarray] = []
        expected = reference_gs(tail, batch, accumulators)
        got = _run(model, *inputs)
        np.testing.assert_array_equal(got, expected, err_msg=f"layer {index} ({lowering})")
        for row, (channel, oy, ox, value) in enumerate(expected_acc):
            assert accumulators[0][row, channel, oy, ox] == value
        assert max(abs(value) for *_, value in expected_acc) <= int(accumulator_bounds(layer).max())


def test_the_certificate_covers_every_layer_and_its_norm(int_gs):
    certificate = certify_gs(int_gs)
    assert certificate["ok"] and len(certificate["layers"]) == len(int_gs.layers)
    for report, layer, norm in zip(certificate["layers"], int_gs.layers, int_gs.norms, strict=True):
        assert 0 <= report["max_bound"] <= ACC_LIMIT and report["input_clamp"] == 2**15 - 1
        assert ("norm" in report) == (norm is not None) == (layer.act == "igdn1")
        if norm is not None:
            assert report["norm"]["max_bound"] <= ACC_LIMIT and report["norm"]["product_bound"] <= ACC_LIMIT
    digits = certify_gs(int_gs, Lowering.INT8_DIGITS)["digits"]
    assert len(digits) == len(int_gs.integer_layers())


def _mac_names(int_gs: IntSynthesis) -> list[str]:
    names = []
    for index, norm in enumerate(int_gs.norms):
        names += [f"g_s layer {index}"] + ([f"g_s layer {index} IGDN1 norm"] if norm is not None else [])
    return names


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_one_weight_too_large_anywhere_is_refused(int_gs, lowering):
    """Raise one weight of the worst channel of each MAC layer just past the accumulator bound."""
    names = _mac_names(int_gs)
    for position, name in enumerate(names):
        broken = copy.deepcopy(int_gs)
        layer = broken.integer_layers()[position]
        bounds = accumulator_bounds(layer)
        worst = int(np.argmax(bounds))
        channel = layer.weight[worst] if layer.kind == "conv" else layer.weight[:, worst]
        flat = np.unravel_index(int(np.argmax(np.abs(channel))), channel.shape)
        grow = (ACC_LIMIT - int(bounds[worst])) // layer.clamp + 1
        channel[flat] += grow if channel[flat] >= 0 else -grow
        with pytest.raises(OverflowRisk, match=name):
            certify_gs(broken, lowering)
        with pytest.raises(OverflowRisk):
            build_gs_onnx(broken, lowering)


def test_the_pixel_rule_rounds_half_up_in_the_last_layers_units(int_gs):
    e = gs_output_units(int_gs, len(int_gs.layers) - 1)
    assert np.all(e >= 1)  # the rounding half 2^(e-1) is an integer
    assert certify_gs(int_gs)["layers"][-1]["pixel_shift"] == e.tolist()


def test_int16_full_is_one_precision_of_the_vocabulary():
    full = Precision("int16-full")
    assert full.is_integer and full.integer_synthesis and full.hs_precision is Precision.INT16
    assert not any(Precision(p).integer_synthesis for p in ("int16", "int8", "float"))


@pytest.fixture(scope="module")
def random_full(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("full")
    build_random(root / "full", Precision.INT16_FULL, 8, 8, 5)
    build_random(root / "int16", Precision.INT16, 8, 8, 5)
    return root / "full", root / "int16"


def test_random_int16_full_package_has_the_int16_h_s_and_decodes_bit_exactly(random_full):
    full, int16 = random_full
    package = CodecPackage.load(full)
    assert package.manifest["precision"] == "int16-full"
    assert package.read(HYPER_SYNTHESIS) == CodecPackage.load(int16).read(HYPER_SYNTHESIS)
    certificate = json.loads(package.read(CERTIFICATE))
    assert certificate["g_s"]["ok"] and len(certificate["g_s"]["layers"]) == 4
    assert {key: value for key, value in certificate.items() if key != "g_s"} == json.loads(
        CodecPackage.load(int16).read(CERTIFICATE)
    )
    image = networks.synthetic_images(1, 1, 96)[0][:64]
    encoded = Codec.load(full, "ort-cpu").encode(image)
    assert encoded.stage_hashes["y_hat"] == Codec.load(int16).encode(image).stage_hashes["y_hat"]
    for runtime in ("ort-cpu-1t", "onnx-ref"):
        assert Codec.load(full, runtime).decode(encoded.bitstream).stage_hashes == encoded.stage_hashes


FULL_PACKAGE_LIMIT = 4 * 2**20  # the int16 package's files, with a 1.1 MB integer g_s for the float one


def test_shipped_int16_full_family_is_four_modest_packages():
    for rate in ("q1", "q2", "q3", "q4"):
        files = list((PACKAGES / "int16-full" / rate).iterdir())
        assert sum(file.stat().st_size for file in files) <= FULL_PACKAGE_LIMIT
        certificate = CodecPackage.load(PACKAGES / "int16-full" / rate).manifest
        assert certificate["rate_point"] == int(rate[1:])


@pytest.mark.parametrize("rate", ["q1", "q2", "q3", "q4"])
def test_shipped_int16_full_packages_reconstruct_bit_exactly_on_every_runtime(rate):
    path = PACKAGES / "int16-full" / rate
    package = CodecPackage.load(path)
    assert package.manifest["precision"] == "int16-full" and "weights.npz" not in package.manifest["files"]
    assert package.read(HYPER_SYNTHESIS) == CodecPackage.load(PACKAGES / "int16" / rate).read(HYPER_SYNTHESIS)
    image = load_png(ROOT / "data" / "testset" / "demo" / "coffee.png")
    encoded = Codec.load(path, "ort-cpu").encode(image)
    for runtime in ("ort-cpu-1t", "onnx-ref"):
        assert Codec.load(path, runtime).decode(encoded.bitstream).stage_hashes == encoded.stage_hashes
