"""h_s ONNX graphs: contract, bit-exactness across runtimes and the int64 reference, float twin."""

import json

import numpy as np
import onnx
import pytest
from int_reference import float_hs, reference_hs

from codec.heads import LevelHead, ScaleTableHead
from codec.hyper import build_hs_onnx, hs_output_size, random_hs_layers
from codec.intlayer import IntLayer, OverflowRisk
from codec.intlowering import lowered_kernel
from codec.intnet import IntHyperSynthesis, certify
from codec.intsearch import integerize_hs
from codec.layers import LayerSpec
from codec.runtime import get_runtime
from codec.vocabulary import Lowering

LEVELS, MEAN_BITS = 64, 8
EXACT_RUNTIMES = ("ort-cpu", "ort-cpu-1t", "onnx-ref")
N, M = 6, 4
HEAD = LevelHead(LEVELS, MEAN_BITS)
INT16_LOWERINGS = [lowering.value for lowering in Lowering]
CASES = [("int16", lowering) for lowering in INT16_LOWERINGS] + [("int8", Lowering.FLOAT64.value)]


@pytest.fixture(scope="module")
def float_layers():
    return random_hs_layers(N, M, seed=7)


@pytest.fixture(scope="module")
def networks(float_layers):
    calib = np.round(np.random.default_rng(3).normal(0, 3, size=(2, N, 3, 4)))
    return {precision: integerize_hs(float_layers, calib, HEAD, precision) for precision in ("int16", "int8")}


def _assert_identical_everywhere(
    int_hs: IntHyperSynthesis, inputs: list[np.ndarray], lowering: str = Lowering.FLOAT64
) -> None:
    model = build_hs_onnx(int_hs.precision, int_hs=int_hs, lowering=lowering)
    sessions = [get_runtime(name).session(model) for name in EXACT_RUNTIMES]
    for z in inputs:
        expected_index, expected_mean = reference_hs(int_hs, z)
        for session in sessions:
            got = session.run({"z_hat": z})
            assert got["scale_index"].dtype == np.int32 and got["mean"].dtype == np.int32
            np.testing.assert_array_equal(got["scale_index"], expected_index, err_msg=session.runtime)
            np.testing.assert_array_equal(got["mean"], expected_mean, err_msg=session.runtime)


def _adversarial(shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Every value far beyond the clamps (so every clamped input sits at +-L): all +, all -, random signs."""
    big = np.int32(2**31 - 1)
    signs = np.random.default_rng(seed).choice(np.array([-1, 1], np.int32), size=shape)
    return [np.full(shape, big), np.full(shape, -big), signs * big]


@pytest.mark.parametrize(("precision", "lowering"), CASES)
def test_integer_hs_is_bit_identical_on_random_inputs(networks, precision, lowering):
    rng = np.random.default_rng(21)
    inputs = [
        rng.integers(-12, 13, size=(1, N, 3, 5)).astype(np.int32),
        rng.integers(-300, 301, size=(1, N, 2, 2)).astype(np.int32),
        np.zeros((1, N, 1, 1), np.int32),
    ]
    _assert_identical_everywhere(networks[precision], inputs, lowering)


@pytest.mark.parametrize(("precision", "lowering"), CASES)
@pytest.mark.parametrize("first_layer", [0, 1, 2])
def test_integer_hs_is_bit_identical_with_every_input_at_a_clamp(networks, precision, lowering, first_layer):
    """The network from `first_layer` on, fed so that layer's inputs all sit at a clamp limit."""
    full = networks[precision]
    suffix = IntHyperSynthesis(full.precision, full.head, full.layers[first_layer:])
    c_in = suffix.layers[0].spec.c_in
    _assert_identical_everywhere(suffix, _adversarial((1, c_in, 3, 4), seed=first_layer), lowering)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding"),
    [(5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2), (2, 2, 0, 0), (3, 1, 1, 0)],
)
@pytest.mark.parametrize("lowering", INT16_LOWERINGS)
def test_transposed_conv_lowering_matches_the_definition(kernel, stride, padding, output_padding, lowering):
    rng = np.random.default_rng(kernel * 10 + stride)
    weight = rng.integers(-500, 501, size=(3, 4, kernel, kernel))
    spec = LayerSpec("convT", 3, 4, kernel, stride, padding=padding, output_padding=output_padding)
    layer = IntLayer(spec, weight, rng.integers(-50, 51, size=4), np.full(4, 6), p_in=0, in_bits=12)
    int_hs = IntHyperSynthesis("int16", HEAD, [layer])
    inputs = [rng.integers(-2047, 2048, size=(1, 3, 3, 4)).astype(np.int32)]
    _assert_identical_everywhere(int_hs, inputs + _adversarial((1, 3, 2, 3), seed=kernel), lowering)


def test_lowered_kernel_keeps_every_tap_once():
    weight = np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5) + 1
    zeros = np.zeros(3, np.int64)
    layer = IntLayer(LayerSpec("convT", 2, 3, 5, 2), weight, zeros, zeros, 0, 16)
    kernel, geometry = lowered_kernel(layer)
    assert kernel.shape == (4 * 3, 2, 3, 3)
    assert geometry["crop"] == (0, 0)
    assert sorted(kernel[kernel != 0].tolist()) == sorted(weight.ravel().tolist())


@pytest.mark.parametrize(("precision", "lowering"), [*CASES, ("float", Lowering.FLOAT64.value)])
def test_graph_contract(float_layers, networks, precision, lowering):
    if precision == "float":
        model = build_hs_onnx("float", h_s=float_layers, head=HEAD)
    else:
        model = build_hs_onnx(precision, int_hs=networks[precision], lowering=lowering)
    proto = onnx.load_from_string(model)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["z_hat"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert [o.name for o in proto.graph.output] == ["scale_index", "mean"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["bitmatch.hs.precision"] == precision
    if precision != "float":
        certificate = json.loads(meta["bitmatch.hs.certificate"])
        assert certificate["ok"] is True
        assert certificate.get("lowering", Lowering.FLOAT64) == lowering
    z = np.random.default_rng(0).integers(-5, 6, size=(1, N, 3, 5)).astype(np.int32)
    out = get_runtime("ort-cpu").session(model).run({"z_hat": z})
    for name in ("scale_index", "mean"):
        assert out[name].dtype == np.int32
        assert out[name].shape == (1, M, *hs_output_size(3, 5))
    assert out["scale_index"].min() >= 0 and out["scale_index"].max() < LEVELS


def _op_types(model: bytes) -> set[str]:
    return {node.op_type for node in onnx.load_from_string(model).graph.node}


def test_integer_ops_are_integer_kernels(networks):
    ops = _op_types(build_hs_onnx("int8", int_hs=networks["int8"]))
    assert "MatMulInteger" in ops and "MatMul" not in ops and "Conv" not in ops
    ops = _op_types(build_hs_onnx("int16", int_hs=networks["int16"]))
    assert "MatMul" in ops and not ops & {"Conv", "ConvTranspose", "Round", "LeakyRelu"}
    assert "Shape" not in ops  # static shapes only: nothing a GPU provider would hand back to the CPU


def _growing_network(seed: int) -> IntHyperSynthesis:
    """convT (relu) -> conv (leaky 0.01) -> conv, hand-made so every post-op path runs: a fixed-point z_hat
    (input_bits 3, so the input shift is negative), a requantisation that multiplies (negative shifts on
    some channels), per-channel shifts past 53, weights up to +-32767 (three weight digits)."""
    rng = np.random.default_rng(seed)
    specs = [
        LayerSpec("convT", 3, 4, 3, 2, "relu"),
        LayerSpec("conv", 4, 4, 3, 1, "leaky", 0.01),
        LayerSpec("conv", 4, 2 * 2, 1, 1),
    ]
    layers, p_in = [], 0
    shifts = [[10, 9, 8, 7], [14, 12, 10, 8], [60, 14, 12, 10]]  # last: scale, scale, mean, mean
    for spec, shift, in_bits, next_p in zip(specs, shifts, [12, 16, 14], [9, 2, 0], strict=True):
        weight = rng.integers(-2000, 2001, size=spec.weight_shape())
        weight.flat[0], weight.flat[1] = 32767, -32767
        bias = rng.integers(-5000, 5001, size=spec.c_out)
        layers.append(IntLayer(spec, weight, bias, np.array(shift), p_in, in_bits))
        p_in = next_p
    for layer in layers:
        while True:
            try:
                certify(IntHyperSynthesis("int16", HEAD, [layer]))
                break
            except OverflowRisk:
                layer.weight[...] = np.trunc(layer.weight / 2)
                layer.weight.flat[0], layer.weight.flat[1] = 32767, -32767
                layer.bias[...] = np.trunc(layer.bias / 2)
    return IntHyperSynthesis("int16", HEAD, layers, input_bits=3)


@pytest.mark.parametrize("lowering", INT16_LOWERINGS)
@pytest.mark.parametrize("seed", [1, 2])
def test_every_post_op_path_is_bit_identical(lowering, seed):
    int_hs = _growing_network(seed)
    assert (int_hs.requant_shifts(0) < 0).any() and int_hs.input_shift() < 0
    assert int_hs.output_shifts().max() > 53
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(-800, 800, size=(1, 3, 3, 4)).astype(np.int32), *_adversarial((1, 3, 2, 3), seed)]
    scale_index, mean = reference_hs(int_hs, inputs[0])
    assert len(np.unique(scale_index)) > 1 and len(np.unique(mean)) > 10  # not a degenerate network
    _assert_identical_everywhere(int_hs, inputs, lowering)


FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("lowering", [Lowering.INT8_DIGITS, Lowering.UINT8_DIGITS])
def test_digit_lowerings_use_integer_ops_only(networks, lowering):
    proto = onnx.load_from_string(build_hs_onnx("int16", int_hs=networks["int16"], lowering=lowering))
    ops = {node.op_type for node in proto.graph.node}
    assert "MatMulInteger" in ops and not ops & {"MatMul", "Floor", "Conv", "ConvTranspose"}
    assert not {tensor.data_type for tensor in proto.graph.initializer} & FLOAT_TYPES
    casts = {a.i for node in proto.graph.node if node.op_type == "Cast" for a in node.attribute}
    assert not casts & FLOAT_TYPES
    digit_type = onnx.TensorProto.INT8 if lowering == Lowering.INT8_DIGITS else onnx.TensorProto.UINT8
    assert digit_type in casts
    weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(np.abs(onnx.numpy_helper.to_array(t)).max() for t in weights) <= 64


@pytest.mark.parametrize("lowering", [Lowering.INT8_DIGITS, Lowering.UINT8_DIGITS])
def test_digit_lowerings_of_a_scale_table_head_match_the_reference(float_layers, lowering):
    head = ScaleTableHead(tuple(float(t) for t in np.geomspace(0.11, 64, 20)), 0.11, MEAN_BITS)
    calib = np.round(np.random.default_rng(8).normal(0, 3, size=(2, N, 3, 4)))
    int_hs = integerize_hs(float_layers, calib, head, "int16")
    rng = np.random.default_rng(9)
    inputs = [rng.integers(-20, 21, size=(1, N, 3, 4)).astype(np.int32), *_adversarial((1, N, 2, 3), seed=9)]
    _assert_identical_everywhere(int_hs, inputs, lowering)


def test_float_twin_follows_the_float_definition(float_layers):
    z = np.random.default_rng(4).integers(-6, 7, size=(1, N, 3, 4)).astype(np.int32)
    model = build_hs_onnx("float", h_s=float_layers, head=HEAD)
    out = get_runtime("ort-cpu-1t").session(model).run({"z_hat": z})
    _, raw = float_hs(float_layers, z)
    index = np.clip(np.floor(raw[:, :M] * LEVELS), 0, LEVELS - 1)
    mean = np.round(raw[:, M:] * 2**MEAN_BITS)
    # float32 vs float64: equal except where a value sits on a rounding boundary
    assert np.abs(out["scale_index"] - index).max() <= 1
    assert (out["scale_index"] == index).mean() > 0.99
    assert np.abs(out["mean"] - mean).max() <= 1


def test_builder_refuses_mismatched_or_unsafe_networks(networks, float_layers):
    with pytest.raises(ValueError):
        build_hs_onnx("int16", int_hs=networks["int8"])
    with pytest.raises(ValueError):
        build_hs_onnx("float")
    with pytest.raises(ValueError):
        build_hs_onnx("int4", int_hs=networks["int16"])
    with pytest.raises(ValueError, match="one lowering"):
        build_hs_onnx("int8", int_hs=networks["int8"], lowering=Lowering.INT8_DIGITS)
    with pytest.raises(ValueError, match="head"):
        build_hs_onnx("int16", int_hs=networks["int16"], head=LevelHead(LEVELS * 2, MEAN_BITS))
    data = networks["int8"].to_json()
    data["layers"][0]["in_bits"] = 9
    with pytest.raises(OverflowRisk):
        build_hs_onnx("int8", int_hs=IntHyperSynthesis.from_json(data))
