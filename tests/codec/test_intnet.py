"""Integerisation of h_s: shifts (eq. 16-17), certificate and its tightness, serialisation."""

import json
import math

import numpy as np
import pytest
from int_reference import reference_hs

from codec.heads import LevelHead
from codec.hyper import build_hs_onnx, random_hs_layers
from codec.intdigits import ACTIVATION_SPLITS, activation_digits, weight_digits
from codec.intlayer import ACC_LIMIT, PRECISIONS, IntLayer, OverflowRisk, quantize_layer
from codec.intnet import IntHyperSynthesis, certify, certify_digits
from codec.intsearch import integerize_hs
from codec.layers import LayerSpec, channel_l1
from codec.runtime import get_runtime
from codec.vocabulary import Lowering

DIGIT_LOWERINGS = [Lowering.INT8_DIGITS, Lowering.UINT8_DIGITS]

LEVELS, MEAN_BITS = 64, 8
HEAD = LevelHead(LEVELS, MEAN_BITS)


@pytest.fixture(scope="module")
def float_layers():
    return random_hs_layers(6, 4, seed=11)


@pytest.fixture(scope="module")
def calib():
    return np.round(np.random.default_rng(5).normal(0, 3, size=(2, 6, 3, 4)))


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_integerized_network_is_certified_and_within_widths(float_layers, calib, precision):
    int_hs = integerize_hs(float_layers, calib, HEAD, precision)
    spec = PRECISIONS[precision]
    assert int_hs.certificate["ok"] is True
    assert len(int_hs.search) == len(float_layers)
    for layer, report in zip(int_hs.layers, int_hs.certificate["layers"], strict=True):
        assert np.abs(layer.weight).max() <= spec.weight_max
        assert layer.in_bits in spec.act_bits_choices
        assert report["max_bound"] <= ACC_LIMIT
        bounds = channel_l1(np.abs(layer.weight), layer.spec) * layer.clamp + np.abs(layer.bias)
        assert bounds.max() == report["max_bound"]


def test_shifts_follow_eq16_and_eq17(float_layers):
    layer = float_layers[2]
    p_in, in_bits = 9, 14
    int_layer = quantize_layer(layer, p_in, in_bits, PRECISIONS["int16"])
    weight, bias = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    for j in range(bias.shape[0]):
        l1 = np.abs(weight[j]).sum()
        k16 = 32 - in_bits - math.ceil(math.log2(l1))
        k17 = min(32 - 1 - p_in - max(math.ceil(math.log2(abs(bias[j]))), 0), k16) - 1
        width_cap = math.floor(math.log2(PRECISIONS["int16"].weight_max / np.abs(weight[j]).max()))
        assert int_layer.shift[j] <= min(k17, width_cap)
        assert int_layer.shift[j] >= min(k17, width_cap) - 1  # at most one step lost to rounding


def test_convt_bound_counts_one_phase_only():
    weight = np.zeros((1, 1, 5, 5))
    weight[0, 0, 0::2, 0::2] = 1.0  # phase (0, 0): 9 taps
    weight[0, 0, 1, 1] = 1.0  # phase (1, 1): 1 tap
    assert channel_l1(weight, LayerSpec("convT", 1, 1, 5, 2)).tolist() == [9.0]
    assert channel_l1(weight, LayerSpec("conv", 1, 1, 5, 1)).tolist() == [10.0]


def test_json_round_trip(float_layers, calib):
    int_hs = integerize_hs(float_layers, calib, HEAD, "int16")
    again = IntHyperSynthesis.from_json(json.loads(json.dumps(int_hs.to_json())))
    z = np.random.default_rng(1).integers(-9, 9, size=(1, 6, 2, 3))
    for a, b in zip(reference_hs(int_hs, z), reference_hs(again, z), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.certificate == int_hs.certificate


def _layer_at_bound() -> IntHyperSynthesis:
    """One 3x3 conv, 16-bit input clamp 32767, channel bound = 2^31 - 1 exactly.

    32767 * 65538 + 1 = 2^31 - 1, and 65538 = 32767 + 32767 + 4 spread over three taps with mixed signs.
    """
    weight = np.zeros((2, 2, 3, 3), np.int64)
    weight[:, 0, 1, 1] = 32767
    weight[:, 1, 1, 1] = -32767
    weight[:, 0, 0, 0] = 4
    bias = np.array([1, 1], np.int64)
    spec = LayerSpec("conv", 2, 2, 3, 1)
    layer = IntLayer(spec, weight, bias, np.array([16, 16], np.int64), p_in=0, in_bits=16)
    return IntHyperSynthesis("int16", HEAD, [layer])


def _adversarial_input(sign: int) -> np.ndarray:
    """Every input at a clamp limit, signed to match the weights at the centre output."""
    z = np.zeros((1, 2, 3, 3), np.int32)
    z[0, 0], z[0, 1] = sign * 32767, -sign * 32767
    return z


@pytest.mark.parametrize("lowering", list(Lowering))
def test_layer_exactly_at_the_bound_is_certified_and_reaches_it(lowering):
    int_hs = _layer_at_bound()
    certificate = certify(int_hs, lowering)
    assert certificate["layers"][0]["max_bound"] == ACC_LIMIT
    assert certificate["layers"][0]["headroom"] == 0
    accumulators: list[np.ndarray] = []
    reference_hs(int_hs, _adversarial_input(+1), accumulators)
    assert accumulators[0].max() == ACC_LIMIT  # the bound is attained: the certificate is tight
    model = build_hs_onnx("int16", int_hs=int_hs, lowering=lowering)
    session = get_runtime("ort-cpu-1t").session(model)
    for sign in (+1, -1):
        z = _adversarial_input(sign)
        expected = reference_hs(int_hs, z)
        got = session.run({"z_hat": z})
        np.testing.assert_array_equal(got["scale_index"], expected[0])
        np.testing.assert_array_equal(got["mean"], expected[1])
    assert got["mean"][0, 0, 1, 1] == (1 - 32767 * 65538) // 2**8  # floor of the most negative sum


@pytest.mark.parametrize("change", ["one_more_unit", "one_more_bit"])
def test_one_more_weight_magnitude_is_refused(change):
    int_hs = _layer_at_bound()
    weight = int_hs.layers[0].weight
    if change == "one_more_unit":
        weight[1, 0, 0, 0] += 1
    else:
        weight[1, 0, 0, 0] *= 2
    with pytest.raises(OverflowRisk, match="channel 1"):
        certify(int_hs)
    with pytest.raises(OverflowRisk):
        build_hs_onnx("int16", int_hs=int_hs)


def test_wider_weights_or_inputs_are_refused():
    int_hs = _layer_at_bound()
    int_hs.layers[0].bias[:] = 0
    int_hs.layers[0].weight[0, 0, 0, 0] = 32768
    with pytest.raises(OverflowRisk, match=r"\|w\| = 32768"):
        certify(int_hs)
    int_hs = _layer_at_bound()
    int_hs.layers[0].in_bits = 17
    with pytest.raises(OverflowRisk):
        certify(int_hs)


def test_integerized_int16_tracks_the_float_network(float_layers, calib):
    from int_reference import float_hs

    int_hs = integerize_hs(float_layers, calib, HEAD, "int16")
    scale_index, mean = reference_hs(int_hs, calib.astype(np.int64))
    _, out = float_hs(float_layers, calib)
    m = int_hs.m_channels
    float_index = np.clip(np.floor(out[:, :m] * LEVELS), 0, LEVELS - 1)
    assert np.abs(scale_index - float_index).max() <= 1
    assert np.abs(mean - np.round(out[:, m:] * 2**MEAN_BITS)).max() <= 4


@pytest.mark.parametrize("lowering", DIGIT_LOWERINGS)
def test_activation_digits_cover_every_clamped_value(lowering):
    split = ACTIVATION_SPLITS[lowering]
    x = np.arange(-(2**15 - 1), 2**15, dtype=np.int64)
    high, low = activation_digits(x, split)
    np.testing.assert_array_equal(256 * high + low - split.offset, x)
    bounds = (-128, 127) if split.signed else (0, 255)
    for digit in (high, low):
        assert digit.min() >= bounds[0] and digit.max() <= bounds[1]
    assert max(np.abs(high).max(), np.abs(low).max()) == split.digit_max


def test_weight_digits_are_balanced_base_128_within_64():
    w = np.arange(-(2**15 - 1), 2**15, dtype=np.int64)
    digits = weight_digits(w)
    assert len(digits) == 3
    np.testing.assert_array_equal(sum(128**q * d for q, d in enumerate(digits)), w)
    assert max(int(np.abs(d).max()) for d in digits) == 64
    assert len(weight_digits(np.array([-64, 0, 64]))) == 1
    assert len(weight_digits(np.array([65]))) == 2


def test_the_float64_certificate_names_no_lowering(float_layers, calib):
    """Packages built before the digit lowerings keep their certificates, hence their digests."""
    int_hs = integerize_hs(float_layers, calib, HEAD, "int16")
    assert certify(int_hs) == certify(int_hs, Lowering.FLOAT64) == int_hs.certificate
    assert "lowering" not in int_hs.certificate and "digits" not in int_hs.certificate


@pytest.mark.parametrize("lowering", DIGIT_LOWERINGS)
def test_digit_certificate_bounds_every_plane_partial_sum(float_layers, calib, lowering):
    int_hs = integerize_hs(float_layers, calib, HEAD, "int16")
    certificate = certify(int_hs, lowering)
    assert certificate["lowering"] == lowering
    digit_max = ACTIVATION_SPLITS[lowering].digit_max
    for layer, report in zip(int_hs.layers, certificate["digits"], strict=True):
        planes = weight_digits(layer.weight)
        assert report["weight_planes"] == len(planes)
        expected = max(int(channel_l1(np.abs(d), layer.spec).max()) * digit_max for d in planes)
        assert report["plane_partial_max"] == expected <= ACC_LIMIT
        assert report["weight_digit_max"] <= 64
        assert report["combine_max"] < 2**63


def test_digit_lowerings_refuse_what_the_network_certificate_refuses():
    int_hs = _layer_at_bound()
    int_hs.layers[0].in_bits = 17
    for lowering in DIGIT_LOWERINGS:
        with pytest.raises(OverflowRisk):
            certify(int_hs, lowering)
        with pytest.raises(OverflowRisk, match="clamp 65535 outside the activation digits"):
            certify_digits(int_hs, lowering)


def test_only_int16_takes_a_digit_lowering(float_layers, calib):
    int8 = integerize_hs(float_layers, calib, HEAD, "int8")
    with pytest.raises(ValueError, match="no lowering"):
        certify(int8, Lowering.INT8_DIGITS)
