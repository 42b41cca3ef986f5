"""h_s of an imported ONNX graph as bitmatch layers, so that it can be integerised.

g_a, h_a and g_s run as they are (codec/importers/onnx_package.py). h_s is read into bitmatch's layers: it
must be a chain of Conv / ConvTranspose (bias as an input or a following Add of a constant), each optionally
followed by Relu / LeakyRelu, and may end in a Concat of parallel convolutions of one tensor (separate scale
and mean heads, merged into one convolution). Any other op, or a residual Add of two computed tensors, is
refused with the op and the node named; `--precision float` still imports such a codec, with its h_s graph
as it is.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from codec.errors import PackageError
from codec.layers import Layer, LayerSpec

INTEGERIZABLE_OPS = ("Conv", "ConvTranspose", "Relu", "LeakyRelu", "Add", "Concat")


class UnsupportedOp(PackageError):
    code = "unsupported-op"


def hs_layers(model: onnx.ModelProto) -> list[Layer]:
    """The chain of layers an h_s graph computes, or UnsupportedOp naming the op and node that breaks it."""
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = [n for n in graph.node if n.op_type not in ("Constant", "Identity")]
    for node in nodes:
        if node.op_type not in INTEGERIZABLE_OPS:
            raise UnsupportedOp(
                f"h_s node {node.name or node.output[0]!r} is a {node.op_type}; the integeriser "
                f"knows {', '.join(INTEGERIZABLE_OPS)}"
            )
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    return _Chain(nodes, constants, alias).walk(
        _graph_input(graph, constants), _resolve(alias, graph.output[0].name)
    )


def _graph_input(graph: onnx.GraphProto, constants: dict) -> str:
    return next(i.name for i in graph.input if i.name not in constants)


def _resolve(alias: dict[str, str], name: str) -> str:
    while name in alias:
        name = alias[name]
    return name


class _Chain:
    def __init__(self, nodes: list, constants: dict, alias: dict[str, str]) -> None:
        self.constants, self.alias = constants, alias
        self.consumers: dict[str, list] = {}
        for node in nodes:
            for name in dict.fromkeys(_resolve(alias, name) for name in node.input):
                self.consumers.setdefault(name, []).append(node)

    def walk(self, tensor: str, output: str) -> list[Layer]:
        layers: list[Layer] = []
        while tensor != output:
            users = self.consumers.get(tensor, [])
            if len(users) == 1 and users[0].op_type in ("Conv", "ConvTranspose"):
                layer, tensor = self._follow(*self._conv(users[0]))
                layers.append(layer)
            elif len(users) > 1 and all(u.op_type in ("Conv", "ConvTranspose") for u in users):
                layer, tensor = self._parallel_heads(users)
                layers.append(layer)
            elif len(users) == 1 and users[0].op_type == "Add" and layers:
                self._bias(layers[-1], users[0])  # a constant here follows an activation: refused below
                raise UnsupportedOp(f"h_s node {users[0].name!r} adds a bias after an activation")
            else:
                raise UnsupportedOp(_not_a_chain(users[0] if users else None, tensor))
        if not layers:
            raise UnsupportedOp("h_s computes no convolution")
        return layers

    def _follow(self, layer: Layer, tensor: str) -> tuple[Layer, str]:
        """Absorb what follows a convolution into its layer: bias Adds, then one Relu / LeakyRelu."""
        while len(users := self.consumers.get(tensor, [])) == 1:
            node = users[0]
            if node.op_type == "Add" and layer.act is None:
                layer, tensor = self._bias(layer, node)
            elif node.op_type in ("Relu", "LeakyRelu"):
                layer, tensor = _with_activation(layer, node), node.output[0]
            else:
                break
        return layer, tensor

    def _weight(self, node, index: int) -> np.ndarray | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        name = _resolve(self.alias, node.input[index])
        if name not in self.constants:
            raise UnsupportedOp(f"h_s node {node.name!r}: input {index} is computed, not a constant")
        return np.asarray(self.constants[name], np.float32)

    def _conv(self, node) -> tuple[Layer, str]:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = self._weight(node, 1)
        kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
        strides, pads = list(attrs.get("strides", [1, 1])), list(attrs.get("pads", [0, 0, 0, 0]))
        output_padding = list(attrs.get("output_padding", [0, 0]))
        if (
            len(set(kernel)) != 1
            or len(set(strides)) != 1
            or len(set(pads)) != 1
            or len(set(output_padding)) != 1
            or attrs.get("group", 1) != 1
            or set(attrs.get("dilations", [1, 1])) != {1}
            or "output_shape" in attrs
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        ):
            raise UnsupportedOp(
                f"h_s node {node.name!r} ({node.op_type}): only square, ungrouped, undilated "
                "kernels with equal strides and symmetric pads are integerised"
            )
        kind = "conv" if node.op_type == "Conv" else "convT"
        c_out, c_in = (
            (weight.shape[0], weight.shape[1]) if kind == "conv" else (weight.shape[1], weight.shape[0])
        )
        spec = LayerSpec(
            kind,
            int(c_in),
            int(c_out),
            int(kernel[0]),
            int(strides[0]),
            padding=int(pads[0]),
            output_padding=int(output_padding[0]),
        )
        bias = self._weight(node, 2)
        return Layer(spec, weight, np.zeros(c_out, np.float32) if bias is None else bias), node.output[0]

    def _bias(self, layer: Layer, node) -> tuple[Layer, str]:
        names = [_resolve(self.alias, name) for name in node.input]
        constant = next((self.constants[n] for n in names if n in self.constants), None)
        if constant is None:
            raise UnsupportedOp(
                f"h_s node {node.name!r} adds two computed tensors (a residual connection); "
                "the integeriser handles chains"
            )
        values = np.asarray(constant, np.float32)
        if values.size != layer.spec.c_out:
            raise UnsupportedOp(
                f"h_s node {node.name!r} adds a constant of shape {values.shape} to "
                f"{layer.spec.c_out} channels: only a per-channel bias is integerised"
            )
        return Layer(layer.spec, layer.weight, layer.bias + values.reshape(-1)), node.output[0]

    def _parallel_heads(self, users: list) -> tuple[Layer, str]:
        """Convolutions of one tensor whose outputs meet in one channel Concat: one convolution."""
        heads = [self._follow(*self._conv(node)) for node in users]
        concat_users = [self.consumers.get(out, []) for _, out in heads]
        concat = concat_users[0][0] if concat_users[0] else None
        ok = concat is not None and concat.op_type == "Concat" and all(u == [concat] for u in concat_users)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in concat.attribute} if concat else {}
        if not ok or attrs.get("axis") != 1:
            raise UnsupportedOp(
                f"h_s: parallel convolutions {[n.name for n in users]} must meet in one Concat "
                "on the channel axis"
            )
        order = [_resolve(self.alias, name) for name in concat.input]
        layers = [dict((out, layer) for layer, out in heads)[name] for name in order]
        first = layers[0].spec
        if any(
            la.act != first.act
            or la.spec.slope != first.slope
            or la.spec.kind != first.kind
            or la.spec.kernel != first.kernel
            or la.spec.stride != first.stride
            or la.spec.padding != first.padding
            or la.spec.output_padding != first.output_padding
            for la in layers
        ):
            raise UnsupportedOp(f"h_s node {concat.name!r} joins heads of different geometry")
        axis = 0 if first.kind == "conv" else 1
        weight = np.concatenate([la.weight for la in layers], axis=axis)
        bias = np.concatenate([la.bias for la in layers])
        spec = LayerSpec(
            first.kind,
            first.c_in,
            int(bias.size),
            first.kernel,
            first.stride,
            act=first.act,
            slope=first.slope,
            padding=first.padding,
            output_padding=first.output_padding,
        )
        return Layer(spec, weight, bias), concat.output[0]


def _not_a_chain(node, tensor: str) -> str:
    what = f"node {node.name or node.output[0]!r} ({node.op_type})" if node else f"tensor {tensor!r}"
    return (
        f"h_s is not a chain the integeriser knows at {what}: only convolutions, their bias Add, "
        "Relu / LeakyRelu and a final Concat of parallel heads"
    )


def _with_activation(layer: Layer, node) -> Layer:
    if layer.act is not None:
        raise UnsupportedOp(f"h_s node {node.name!r}: two activations in a row")
    if node.op_type == "Relu":
        spec = LayerSpec(**{**layer.spec.__dict__, "act": "relu"})
    else:
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 0.01)
        spec = LayerSpec(**{**layer.spec.__dict__, "act": "leaky", "slope": float(alpha)})
    return Layer(spec, layer.weight, layer.bias)
