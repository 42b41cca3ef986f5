"""The one ONNX graph builder: unique names, constants, nodes, float layers, and the checked model bytes.

Every graph bitmatch ships is written through `GraphBuilder`: the float analysis and synthesis graphs
(codec/networks.py and the importers), the float and integer hyper-synthesis graphs (codec/hyper.py).
Opset 17 and IR version 8 are old enough for every ONNX Runtime the harness targets.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from codec.layers import Layer

OPSET = 17
IR_VERSION = 8
INT64_MAX = 2**63 - 1


def tensor_info(name: str, elem_type: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


class GraphBuilder:
    """Collects nodes and initializers; generated names are `prefix_N`, unique within the graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value: np.ndarray, prefix: str = "c", name: str | None = None) -> str:
        name = name or self.fresh(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        prefix: str | None = None,
        *,
        out: str | None = None,
        node: str | None = None,
        **attrs,
    ) -> str:
        """Append one node; its output is `out`, or a fresh name."""
        out = out or self.fresh(prefix or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=node or f"n_{out}", **attrs))
        return out

    def slice_axis(self, x: str, start: int, end: int, axis: int) -> str:
        return self.op(
            "Slice",
            [
                x,
                self.const(np.array([start], np.int64)),
                self.const(np.array([end], np.int64)),
                self.const(np.array([axis], np.int64)),
            ],
        )

    # --- float layers ---

    def layers(self, prefix: str, x: str, layers: list[Layer]) -> str:
        for index, layer in enumerate(layers):
            x = self.layer(f"{prefix}.{index}", x, layer)
        return x

    def layer(self, name: str, x: str, layer: Layer) -> str:
        """Conv / ConvTranspose with bias, then the activation, in float32."""
        spec = layer.spec
        weight = self.const(np.asarray(layer.weight, np.float32), name=f"{name}.weight")
        bias = self.const(np.asarray(layer.bias, np.float32), name=f"{name}.bias")
        attrs = {
            "kernel_shape": [spec.kernel, spec.kernel],
            "strides": [spec.stride, spec.stride],
            "pads": [spec.padding] * 4,
        }
        if spec.kind == "convT":
            attrs["output_padding"] = [spec.output_padding] * 2
        op = "Conv" if spec.kind == "conv" else "ConvTranspose"
        x = self.op(op, [x, weight, bias], out=f"{name}.out", node=name, **attrs)
        return self.activation(name, x, layer)

    def activation(self, name: str, x: str, layer: Layer) -> str:
        act = layer.act
        if act is None:
            return x
        out = f"{name}.act"
        if act == "relu":
            return self.op("Relu", [x], out=out, node=f"{name}.relu")
        if act == "leaky":
            return self.op("LeakyRelu", [x], out=out, node=f"{name}.leaky", alpha=float(layer.spec.slope))
        return self._gdn(name, x, layer)

    def _gdn(self, name: str, x: str, layer: Layer) -> str:
        """norm = beta + gamma f(x) as a 1x1 convolution; f = |x| (gdn1/igdn1) or x^2 (gdn/igdn)."""
        act = layer.act
        gamma = self.const(np.asarray(layer.gamma, np.float32)[:, :, None, None], name=f"{name}.gdn_gamma")
        beta = self.const(np.asarray(layer.beta, np.float32), name=f"{name}.gdn_beta")
        if act in ("gdn1", "igdn1"):
            magnitude = self.op("Abs", [x], out=f"{name}.abs", node=f"{name}.abs")
        else:
            magnitude = self.op("Mul", [x, x], out=f"{name}.square", node=f"{name}.square")
        norm = self.op(
            "Conv", [magnitude, gamma, beta], out=f"{name}.norm", node=f"{name}.norm", kernel_shape=[1, 1]
        )
        # node names as the shipped packages have them, so that their graphs stay byte-identical
        if act == "gdn1":
            return self.op("Div", [x, norm], out=f"{name}.act", node=f"{name}.Div")
        if act == "igdn1":
            return self.op("Mul", [x, norm], out=f"{name}.act", node=f"{name}.Mul")
        root = self.op("Sqrt", [norm], out=f"{name}.sqrt", node=f"{name}.sqrt")
        if act == "gdn":  # x * rsqrt(norm), as torch computes it
            root = self.op("Reciprocal", [root], out=f"{name}.rsqrt", node=f"{name}.rsqrt")
        return self.op("Mul", [x, root], out=f"{name}.act", node=f"{name}.mul")

    # --- the model ---

    def model(
        self,
        graph_name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        metadata: dict[str, str] | None = None,
    ) -> bytes:
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bitmatch"
        )
        model.ir_version = IR_VERSION
        if metadata:
            helper.set_model_props(model, metadata)
        onnx.checker.check_model(model)
        return model.SerializeToString()


def image_info(
    name: str, channels: int, scale: str, elem_type: int = TensorProto.FLOAT
) -> onnx.ValueInfoProto:
    """[1, C, H<scale>, W<scale>] with symbolic spatial dimensions."""
    return tensor_info(name, elem_type, [1, channels, f"H{scale}", f"W{scale}"])
