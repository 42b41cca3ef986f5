"""The float networks: shapes, determinism, ONNX graphs against a numpy forward pass."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from codec import networks
from codec.layers import forward

ARCH = networks.Architecture(n=4, m=6, levels=16)


def _session(model: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def test_random_weights_are_deterministic_and_seed_dependent():
    first, again, other = (networks.random_weights(ARCH, seed) for seed in (7, 7, 8))
    networks.check_weights(ARCH, first)
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["g_a.0.weight"], other["g_a.0.weight"])


def test_check_weights_refuses_wrong_shapes():
    weights = networks.random_weights(ARCH, 1)
    weights["h_s.2.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"h_s\.2\.bias"):
        networks.check_weights(ARCH, weights)


def _conv_numpy(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out_c, _, k, _ = weight.shape
    rows = (x.shape[1] - k) // stride + 1
    cols = (x.shape[2] - k) // stride + 1
    out = np.zeros((out_c, rows, cols))
    for i in range(k):
        for j in range(k):
            patch = x[:, i : i + stride * rows : stride, j : j + stride * cols : stride]
            out += np.einsum("oc,chw->ohw", weight[:, :, i, j], patch)
    return out + bias[:, None, None]


def test_analysis_graph_matches_numpy_forward_pass():
    weights = networks.random_weights(ARCH, 3)
    image = networks.synthetic_images(5, 1, 64)[0]
    x = networks.pad_image(image)
    y, z = _session(networks.analysis_model(ARCH, weights)).run(["y", "z"], {"x": x})
    act = x[0].astype(np.float64)
    for index in range(4):
        act = _conv_numpy(act, weights[f"g_a.{index}.weight"], weights[f"g_a.{index}.bias"], 2, 2)
        act = np.maximum(act, 0) if index < 3 else act
    np.testing.assert_allclose(y[0], act, rtol=1e-4, atol=1e-4)
    for index, (stride, pad) in enumerate([(1, 1), (2, 2), (2, 2)]):
        act = _conv_numpy(act, weights[f"h_a.{index}.weight"], weights[f"h_a.{index}.bias"], stride, pad)
        act = np.maximum(act, act / 8) if index < 2 else act
    np.testing.assert_allclose(z[0], act, rtol=1e-4, atol=1e-4)
    assert y.shape == (1, ARCH.m, 4, 4) and z.shape == (1, ARCH.n, 1, 1)


def test_synthesis_graph_upsamples_by_sixteen_and_models_are_valid_onnx():
    weights = networks.random_weights(ARCH, 3)
    model = networks.synthesis_model(ARCH, weights)
    onnx.checker.check_model(onnx.load_from_string(model))
    (x_hat,) = _session(model).run(["x_hat"], {"y_hat": np.zeros((1, ARCH.m, 3, 5), np.float32)})
    assert x_hat.shape == (1, 3, 48, 80)


def test_hyper_synthesis_layers_follow_the_runtime_contract():
    layers = networks.hyper_synthesis(ARCH, networks.random_weights(ARCH, 3))
    assert [layer.kind for layer in layers] == ["convT", "convT", "conv"]
    assert [layer.act for layer in layers] == ["leaky", "leaky", None]
    assert layers[0].weight.shape == (ARCH.n, ARCH.n, 5, 5)
    assert layers[2].weight.shape == (2 * ARCH.m, ARCH.n, 3, 3)
    assert [layer.spec.output_padding for layer in layers] == [1, 1, 0]


@pytest.mark.parametrize("size", [(1, 1), (17, 31), (64, 64), (65, 129)])
def test_padding_and_cropping_round_trip(size):
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    x = networks.pad_image(image)
    assert x.shape[2] % 64 == 0 and x.shape[3] % 64 == 0
    assert np.array_equal(networks.to_uint8_image(x, *size), image)
    assert networks.latent_shape(*size) == (x.shape[2] // 16, x.shape[3] // 16)


def test_random_codec_latents_have_codec_like_magnitudes():
    arch = networks.Architecture(n=16, m=24)
    weights = networks.random_weights(arch, 0)
    x = networks.pad_image(networks.synthetic_images(1, 1, 128)[0])
    y, z = _session(networks.analysis_model(arch, weights)).run(["y", "z"], {"x": x})
    assert 1.0 < y.std() < 10.0
    assert 0.5 < z.std() < 4.0


def test_numpy_forward_pass_matches_the_synthesis_graph():
    weights = networks.random_weights(ARCH, 4)
    y = np.random.default_rng(2).normal(0, 3, (1, ARCH.m, 3, 5)).astype(np.float32)
    (x_hat,) = _session(networks.synthesis_model(ARCH, weights)).run(["x_hat"], {"y_hat": y})
    expected = forward(networks.bind(ARCH, weights)["g_s"], y)
    np.testing.assert_allclose(x_hat, expected, rtol=1e-4, atol=1e-5)


def test_random_hyper_synthesis_predicts_each_channels_spread():
    arch = networks.Architecture(n=8, m=12)
    weights = networks.random_weights(arch, 2)
    u_bias = weights["h_s.2.bias"][: arch.m]
    assert u_bias.min() > 0.2 and u_bias.max() < 0.95  # sigma between ~0.3 and ~100: latents' own scale
    assert np.all(weights["h_s.2.bias"] * 1024 == np.rint(weights["h_s.2.bias"] * 1024))


GDN_ARCH = networks.Architecture(n=4, m=6, levels=16, transform="gdn")


def _gdn_weights(seed: int) -> dict[str, np.ndarray]:
    """Random GDN weights with a non-trivial (non-diagonal, uneven) channel mix."""
    weights = networks.random_weights(GDN_ARCH, seed)
    rng = np.random.default_rng(seed)
    for name in weights:
        if name.endswith(".gdn_gamma"):
            weights[name] = rng.uniform(0, 0.3, weights[name].shape).astype(np.float32)
        elif name.endswith(".gdn_beta"):
            weights[name] = rng.uniform(0.5, 1.5, weights[name].shape).astype(np.float32)
    return weights


def _simplified_gdn(x: np.ndarray, beta: np.ndarray, gamma: np.ndarray, inverse: bool) -> np.ndarray:
    norm = beta[:, None, None] + np.einsum("oc,chw->ohw", gamma.astype(np.float64), np.abs(x))
    return x * norm if inverse else x / norm


def test_gdn_analysis_graph_matches_a_per_layer_numpy_reference():
    weights = _gdn_weights(3)
    x = networks.pad_image(networks.synthetic_images(5, 1, 64)[0])
    (y,) = _session(networks.analysis_model(GDN_ARCH, weights)).run(["y"], {"x": x})
    act = x[0].astype(np.float64)
    for index in range(4):
        act = _conv_numpy(act, weights[f"g_a.{index}.weight"], weights[f"g_a.{index}.bias"], 2, 2)
        if index < 3:
            beta, gamma = weights[f"g_a.{index}.gdn_beta"], weights[f"g_a.{index}.gdn_gamma"]
            act = _simplified_gdn(act, beta, gamma, False)
    np.testing.assert_allclose(y[0], act, rtol=1e-4, atol=1e-4)


def test_gdn_synthesis_graph_matches_the_numpy_forward_pass():
    weights = _gdn_weights(4)
    y = np.random.default_rng(2).normal(0, 3, (1, GDN_ARCH.m, 3, 5)).astype(np.float32)
    (x_hat,) = _session(networks.synthesis_model(GDN_ARCH, weights)).run(["x_hat"], {"y_hat": y})
    specs = networks.network_layers(GDN_ARCH)["g_s"]
    assert [spec.act for spec in specs] == ["igdn1", "igdn1", "igdn1", None]
    expected = forward(networks.bind(GDN_ARCH, weights)["g_s"], y)
    # IGDN is quadratic in its input, so float32 rounding grows with the magnitude: compare relative to it
    np.testing.assert_allclose(x_hat, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_gdn_layers_need_their_beta_and_gamma():
    weights = _gdn_weights(1)
    networks.check_weights(GDN_ARCH, weights)
    del weights["g_s.1.gdn_gamma"]
    with pytest.raises(ValueError, match=r"g_s\.1\.gdn_gamma"):
        networks.check_weights(GDN_ARCH, weights)
    with pytest.raises(ValueError, match="transform"):
        networks.Architecture(n=4, m=6, transform="tanh")


def test_relu_architecture_serialises_as_before_so_old_digests_hold():
    assert "transform" not in ARCH.to_dict()
    assert GDN_ARCH.to_dict()["transform"] == "gdn"
    assert networks.Architecture.from_dict(GDN_ARCH.to_dict()) == GDN_ARCH
    assert networks.Architecture.from_dict(ARCH.to_dict()) == ARCH
