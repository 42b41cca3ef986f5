"""`bitmatch import onnx --spec FILE`: a codec handed over as four ONNX graphs and its entropy model.

The graphs here are a CompressAI checkpoint's networks written out as a user's exporter would (own tensor
names, the last h_s layer split into a scale head and a mean head joined by a Concat, biases as separate
Add nodes), so the import can be checked against `bitmatch import compressai` of the same checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from bitmatch.cli import cli
from codec.codec import Codec
from codec.importers import calibration
from codec.importers.compressai import build_packages, read_checkpoint
from codec.layers import Layer, LayerSpec
from codec.onnxgraph import GraphBuilder, image_info
from codec.resources import image_set
from codec.train import evaluate

CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "compressai" / "mbt2018-mean-q1.pth"
ARCH = "mbt2018-mean"


def _graph(layers: list[Layer], channels_in: int, channels_out: int, name: str) -> onnx.ModelProto:
    builder = GraphBuilder()
    out = builder.layers(name, "input_tensor", layers)
    builder.op("Identity", [out], out="output_tensor")
    model = builder.model(
        name, [image_info("input_tensor", channels_in, "")], [image_info("output_tensor", channels_out, "")]
    )
    return onnx.load_from_string(model)


def _split_heads_hs(h_s: list[Layer], extra_node: str | None = None) -> onnx.ModelProto:
    """h_s with the last conv as two heads (bias as an Add each), joined by a Concat on the channels."""
    builder = GraphBuilder()
    x = builder.layers("hs", "input_tensor", h_s[:-1])
    if extra_node == "Sigmoid":
        x = builder.op("Sigmoid", [x], node="squash")
    if extra_node == "residual":
        x = builder.op("Add", [x, x], node="residual_add")
    last = h_s[-1]
    m = last.spec.c_out // 2
    heads = []
    for index, part in enumerate((slice(0, m), slice(m, 2 * m))):
        spec = LayerSpec(last.spec.kind, last.spec.c_in, m, last.spec.kernel, last.spec.stride)
        head = Layer(spec, last.weight[part], np.zeros(m, np.float32))
        conv = builder.layer(f"head{index}", x, head)
        heads.append(
            builder.op(
                "Add", [conv, builder.const(last.bias[part].reshape(1, m, 1, 1))], node=f"head{index}_bias"
            )
        )
    builder.op("Concat", heads, out="output_tensor", node="heads", axis=1)
    model = builder.model(
        "h_s", [image_info("input_tensor", h_s[0].spec.c_in, "")], [image_info("output_tensor", 2 * m, "")]
    )
    return onnx.load_from_string(model)


def _write_spec(root: Path, extra_node: str | None = None) -> Path:
    model = read_checkpoint(CHECKPOINT, ARCH)
    nets = model.networks
    n, m = model.n, model.m
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(_graph(nets["g_a"], 3, m, "g_a"), root / "g_a.onnx")
    onnx.save(_graph(nets["h_a"], m, n, "h_a"), root / "h_a.onnx")
    onnx.save(_split_heads_hs(nets["h_s"], extra_node), root / "h_s.onnx")
    onnx.save(_graph(nets["g_s"], m, 3, "g_s"), root / "g_s.onnx")
    from codec.importers.torchfile import load_checkpoint

    state = load_checkpoint(CHECKPOINT)
    for module, file in (("entropy_bottleneck", "z_tables.npz"), ("gaussian_conditional", "y_tables.npz")):
        arrays = {key: state[f"{module}._{key}"] for key in ("quantized_cdf", "cdf_length", "offset")}
        if module == "entropy_bottleneck":
            arrays["medians"] = state["entropy_bottleneck.quantiles"][:, 0, 1]
        np.savez(root / file, **arrays)
    table = ", ".join(repr(t) for t in model.scale_table)
    spec = root / "codec.toml"
    spec.write_text(f"""[graphs]
g_a = "g_a.onnx"
h_a = "h_a.onnx"
h_s = "h_s.onnx"
g_s = "g_s.onnx"

[entropy]
model = "gaussian"
mean = true
scale_table = [{table}]
scale_bound = {model.scale_bound!r}
y_tables = "y_tables.npz"

[z]
tables = "z_tables.npz"
""")
    return spec


def _run(*args: str):
    return CliRunner().invoke(cli, ["import", "onnx", *args])


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> dict[str, Path]:
    """The same checkpoint imported through the ONNX spec and through the CompressAI importer."""
    root = tmp_path_factory.mktemp("onnx-import")
    result = _run("--spec", str(_write_spec(root / "export")), "--out", str(root / "onnx"))
    assert result.exit_code == 0, result.output
    images, name = calibration.images(None)
    build_packages(read_checkpoint(CHECKPOINT, ARCH), root / "compressai", images, name)
    return {"onnx": root / "onnx", "compressai": root / "compressai"}


def test_the_integer_h_s_of_both_routes_is_the_same_graph(routes):
    """Heads joined by a Concat and biases in Add nodes are read back into the very layers CompressAI has."""
    for precision in ("int16", "int8"):
        ours = Codec.load(routes["onnx"] / precision).package.read("hyper_synthesis.onnx")
        theirs = Codec.load(routes["compressai"] / precision).package.read("hyper_synthesis.onnx")
        assert ours == theirs, precision


@pytest.mark.parametrize("precision", ["float", "int16"])
def test_both_routes_code_an_image_alike(routes, precision):
    image = evaluate.load_testset(image_set("testset"))[0][1]
    ours = Codec.load(routes["onnx"] / precision).encode(image)
    theirs = Codec.load(routes["compressai"] / precision).encode(image)
    for stage in ("z_hat", "scale_index", "symbols"):
        assert ours.stage_hashes[stage] == theirs.stage_hashes[stage], stage
    if precision == "int16":
        assert ours.stage_hashes == theirs.stage_hashes
    decoded = Codec.load(routes["onnx"] / precision, "ort-cpu-1t").decode(ours.bitstream)
    assert decoded.stage_hashes["symbols"] == ours.stage_hashes["symbols"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [("Sigmoid", "'squash' is a Sigmoid"), ("residual", "'residual_add' adds two computed tensors")],
)
def test_an_h_s_the_integeriser_does_not_know_is_refused_naming_the_op_and_node(tmp_path, extra, named):
    spec = _write_spec(tmp_path / "export", extra)
    result = _run("--spec", str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and named in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_the_float_package_of_such_a_codec_runs_its_h_s_as_exported(tmp_path):
    spec = _write_spec(tmp_path / "export", "Sigmoid")
    result = _run("--spec", str(spec), "--out", str(tmp_path / "out"), "--precision", "float")
    assert result.exit_code == 0, result.output
    codec = Codec.load(tmp_path / "out" / "float")
    ops = {
        node.op_type for node in onnx.load_from_string(codec.package.read("hyper_synthesis.onnx")).graph.node
    }
    assert "Sigmoid" in ops
    image = evaluate.load_testset(image_set("testset"))[1][1]
    encoded = codec.encode(image)
    assert codec.decode(encoded.bitstream).stage_hashes["symbols"] == encoded.stage_hashes["symbols"]


def test_a_broken_spec_is_one_line(tmp_path):
    (tmp_path / "codec.toml").write_text('[graphs]\ng_a = "missing.onnx"\n')
    result = _run("--spec", str(tmp_path / "codec.toml"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "missing.onnx" in result.output, result.output
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = _run("--spec", str(bad), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "not valid JSON" in result.output
