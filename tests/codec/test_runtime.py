"""Runtime registry: names, availability reasons, session settings, per-node provider report."""

import subprocess
import sys

import numpy as np
import onnx
import pytest

from codec.hyper import build_hs_onnx, random_hs_layers
from codec.intsearch import integerize_hs
from codec.runtime import (
    RUNTIME_NAMES,
    RuntimeUnavailable,
    get_runtime,
    ort_configuration,
    providers_from_profile,
)


@pytest.fixture(scope="module")
def int16_model():
    layers = random_hs_layers(4, 2, seed=2)
    calib = np.round(np.random.default_rng(0).normal(0, 3, size=(1, 4, 2, 3)))
    return build_hs_onnx("int16", int_hs=integerize_hs(layers, calib, precision="int16"))


def test_unknown_runtime_is_a_typed_error():
    assert RUNTIME_NAMES == (
        "ort-cpu",
        "ort-cpu-1t",
        "onnx-ref",
        "onnx-ref-naive",
        "ort-cuda",
        "ort-openvino",
    )
    with pytest.raises(RuntimeUnavailable, match="unknown runtime"):
        get_runtime("tpu-magic")


@pytest.mark.parametrize(
    ("name", "provider"),
    [("ort-cuda", "CUDAExecutionProvider"), ("ort-openvino", "OpenVINOExecutionProvider")],
)
def test_a_session_whose_provider_this_onnxruntime_lacks_is_a_typed_error(
    int16_model, name, provider, monkeypatch
):
    import onnxruntime as ort

    # On a machine whose onnxruntime has the provider, it is taken away, so the check runs everywhere.
    present = [p for p in ort.get_available_providers() if p != provider]
    monkeypatch.setattr(ort, "get_available_providers", lambda: present)
    with pytest.raises(RuntimeUnavailable, match=f"{name} unavailable: this onnxruntime has no {provider}"):
        get_runtime(name).session(int16_model)


def test_configurations_carry_the_required_settings():
    cuda = ort_configuration("ort-cuda")
    cuda_options = {"use_tf32": "0", "cudnn_conv_algo_search": "DEFAULT"}
    assert cuda.providers == [("CUDAExecutionProvider", cuda_options)]
    assert cuda.session_entries == {"session.disable_cpu_ep_fallback": "1"}
    assert ort_configuration("ort-openvino").session_entries == {"session.disable_cpu_ep_fallback": "1"}
    single = ort_configuration("ort-cpu-1t")
    assert single.single_thread and not single.optimize
    assert ort_configuration("ort-cpu").optimize


def test_single_thread_session_options(int16_model):
    import onnxruntime as ort

    session = get_runtime("ort-cpu-1t").session(int16_model)
    options = session.session_options
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert session.providers == ["CPUExecutionProvider"]


def test_ort_cpu_sessions_keep_ort_default_graph_optimisations(int16_model):
    import onnxruntime as ort

    options = get_runtime("ort-cpu").session(int16_model).session_options
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize("name", ["ort-cpu", "ort-cpu-1t"])
def test_ort_sessions_do_not_spin_their_idle_threads(int16_model, name):
    options = get_runtime(name).session(int16_model).session_options
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"


@pytest.mark.parametrize("name", ["ort-cpu-1t", "ort-cpu", "onnx-ref"])
def test_provider_report_covers_the_graph(int16_model, name):
    z = np.arange(24, dtype=np.int32).reshape(1, 4, 2, 3) - 12
    session = get_runtime(name).session(int16_model)
    outputs, providers = session.run_with_providers({"z_hat": z})
    np.testing.assert_array_equal(outputs["mean"], session.run({"z_hat": z})["mean"])
    expected = "onnx-ref" if name == "onnx-ref" else "CPUExecutionProvider"
    assert providers and set(providers.values()) == {expected}
    if name != "ort-cpu":  # ort-cpu may fuse nodes; unoptimised runs name every graph node
        assert set(providers) == {node.name for node in onnx.load_from_string(int16_model).graph.node}


def test_profile_parsing_strips_event_suffixes():
    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {"cat": "Node", "name": "n_matmul_3_kernel_time", "args": {"provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "n_floor_4_fence_before", "args": {"op_name": "Floor"}},
    ]
    assert providers_from_profile(events) == {"n_matmul_3": "CUDAExecutionProvider"}


def test_importing_the_registry_does_not_load_onnx_or_onnxruntime():
    code = "import sys, codec.runtime; print('onnxruntime' in sys.modules or 'onnx' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert result.stdout.strip() == "False"


def _one_node_model(op: str, weight: np.ndarray, bias: np.ndarray, **attributes) -> bytes:
    """A float32 model y = op(x, w, b) with the weights as initializers."""
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(op, ["x", "w", "b"], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _conv_transpose_model(weight: np.ndarray, bias: np.ndarray, stride: int, pad: int, out_pad: int) -> bytes:
    kernel = weight.shape[2]
    return _one_node_model(
        "ConvTranspose",
        weight,
        bias,
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=[pad] * 4,
        output_padding=[out_pad, out_pad],
    )


@pytest.mark.parametrize(
    ("kernel", "stride", "pad", "out_pad"),
    [(5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2), (3, 1, 1, 0), (5, 2, 0, 0), (5, 2, 4, 1)],
)
def test_vectorised_conv_transpose_equals_the_reference_loops_bit_for_bit(kernel, stride, pad, out_pad):
    """onnx-ref's ConvTranspose (codec/onnxref.py) against onnx's own, in float32, byte for byte."""
    rng = np.random.default_rng(kernel * 7 + stride + pad)
    weight = rng.standard_normal((3, 4, kernel, kernel)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    model = _conv_transpose_model(weight, bias, stride, pad, out_pad)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    fast = get_runtime("onnx-ref").session(model).run({"x": x})["y"]
    naive = get_runtime("onnx-ref-naive").session(model).run({"x": x})["y"]
    assert fast.dtype == naive.dtype == np.float32
    assert fast.tobytes() == naive.tobytes()


def _conv_model(weight: np.ndarray, bias: np.ndarray, stride: int, pads: list[int]) -> bytes:
    kernel = list(weight.shape[2:])
    return _one_node_model("Conv", weight, bias, kernel_shape=kernel, strides=[stride] * 2, pads=pads)


@pytest.mark.parametrize(
    ("kernel", "stride", "pads", "batch"),
    [
        ((5, 5), 2, [2, 2, 2, 2], 1),
        ((3, 3), 1, [1, 1, 1, 1], 2),
        ((1, 1), 1, [0, 0, 0, 0], 1),
        ((5, 3), 2, [2, 1, 0, 3], 2),
        ((3, 3), 3, [0, 0, 0, 0], 1),
    ],
)
def test_vectorised_conv_equals_the_reference_gather_bit_for_bit(kernel, stride, pads, batch):
    """onnx-ref's Conv (codec/onnxref.py) against onnx's own im2col gather, in float32, byte for byte."""
    rng = np.random.default_rng(sum(kernel) * 11 + stride + sum(pads) + batch)
    weight = rng.standard_normal((6, 3, *kernel)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    model = _conv_model(weight, bias, stride, pads)
    x = rng.standard_normal((batch, 3, 13, 17)).astype(np.float32)
    fast = get_runtime("onnx-ref").session(model).run({"x": x})["y"]
    naive = get_runtime("onnx-ref-naive").session(model).run({"x": x})["y"]
    assert fast.dtype == naive.dtype == np.float32
    assert fast.shape == naive.shape and fast.tobytes() == naive.tobytes()


def test_onnx_ref_encodes_a_shipped_package_as_the_naive_evaluator_does():
    from pathlib import Path

    from codec.codec import Codec
    from codec.networks import synthetic_images

    package = Path(__file__).resolve().parents[2] / "packages" / "float" / "q2"
    image = synthetic_images(3, 1, 64)[0]
    fast = Codec.load(package, "onnx-ref").encode(image)
    naive = Codec.load(package, "onnx-ref-naive").encode(image)
    assert fast.bitstream == naive.bitstream and fast.stage_hashes == naive.stage_hashes
