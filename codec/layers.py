"""One network layer: a convolution with its activation, its float weights, and its float64 numpy forward.

Every network of every codec family is a list of `Layer`s: our own hyperprior (codec/networks.py), the
CompressAI and ONNX imports (codec/importers/) and the input of the integeriser (codec/intnet.py, whose
`IntLayer` keeps the `LayerSpec` of the layer it integerises). The ONNX graphs are emitted from the same
objects by codec/onnxgraph.py.

Weights are in torch layout: Conv [out, in, k, k], ConvTranspose [in, out, k, k]. Activations:

    relu            max(x, 0)
    leaky           max(x, slope x)                              (slope < 1)
    gdn / igdn      x / sqrt(beta + gamma x^2), x sqrt(...)      GDN of Balle, Laparra and Simoncelli,
                                                                 "Density modeling of images using a
                                                                 generalized normalization transformation"
    gdn1 / igdn1    x / (beta + gamma |x|), x (beta + gamma |x|) simplified GDN of Johnston et al.,
                                                                 "Computationally efficient neural image
                                                                 compression"

gamma mixes the channels at each pixel: norm_i = beta_i + sum_j gamma[i, j] f(x_j), a 1x1 convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("conv", "convT")
ACTIVATIONS = ("relu", "leaky", "gdn", "igdn", "gdn1", "igdn1")
GDN_ACTS = ("gdn", "igdn", "gdn1", "igdn1")
DEFAULT_SLOPE = 0.125


@dataclass(frozen=True)
class LayerSpec:
    """The geometry and activation of one convolution (no weights).

    `padding` defaults to kernel // 2 and `output_padding` to stride - 1 for a transposed convolution, the
    convention of both codecs' `conv` / `deconv` helpers; ONNX imports may set them explicitly.
    """

    kind: str
    c_in: int
    c_out: int
    kernel: int
    stride: int
    act: str | None = None
    slope: float = DEFAULT_SLOPE
    padding: int = field(default=-1)
    output_padding: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"layer kind must be one of {KINDS}, got {self.kind!r}")
        if self.act is not None and self.act not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS} or None, got {self.act!r}")
        if self.act == "leaky" and not 0 <= self.slope < 1:
            raise ValueError(f"leaky slope must lie in [0, 1), got {self.slope}")
        if self.padding < 0:
            object.__setattr__(self, "padding", self.kernel // 2)
        if self.output_padding < 0:
            object.__setattr__(self, "output_padding", self.stride - 1 if self.kind == "convT" else 0)

    def weight_shape(self) -> tuple[int, int, int, int]:
        if self.kind == "conv":
            return (self.c_out, self.c_in, self.kernel, self.kernel)
        return (self.c_in, self.c_out, self.kernel, self.kernel)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "c_in": self.c_in,
            "c_out": self.c_out,
            "kernel": self.kernel,
            "stride": self.stride,
            "act": self.act,
            "slope": self.slope,
            "padding": self.padding,
            "output_padding": self.output_padding,
        }

    @classmethod
    def from_json(cls, data: dict) -> LayerSpec:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True, eq=False)
class Layer:
    """A `LayerSpec` with its float32 weight and bias, and for the GDN family beta [C] and gamma [C, C]."""

    spec: LayerSpec
    weight: np.ndarray
    bias: np.ndarray
    beta: np.ndarray | None = None
    gamma: np.ndarray | None = None

    def __post_init__(self) -> None:
        spec = self.spec
        if tuple(self.weight.shape) != spec.weight_shape():
            raise ValueError(
                f"weight has shape {tuple(self.weight.shape)}, the layer needs {spec.weight_shape()}"
            )
        if tuple(self.bias.shape) != (spec.c_out,):
            raise ValueError(f"bias has shape {tuple(self.bias.shape)}, the layer needs ({spec.c_out},)")
        if (spec.act in GDN_ACTS) != (self.beta is not None and self.gamma is not None):
            raise ValueError(f"activation {spec.act!r} and the GDN parameters do not go together")
        if self.beta is not None and (
            self.beta.shape != (spec.c_out,) or self.gamma.shape != (spec.c_out, spec.c_out)
        ):
            raise ValueError(
                f"GDN parameters need beta ({spec.c_out},) and gamma ({spec.c_out}, {spec.c_out})"
            )

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def act(self) -> str | None:
        return self.spec.act


def forward(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """float64 forward pass of consecutive layers on [B, C, H, W]."""
    x = np.asarray(x, np.float64)
    for layer in layers:
        x = forward_layer(layer, x)
    return x


def forward_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    spec = layer.spec
    weight = np.asarray(layer.weight, np.float64)
    x = convolve(x, weight, spec) + np.asarray(layer.bias, np.float64)[None, :, None, None]
    return activate(x, layer)


def convolve(x: np.ndarray, weight: np.ndarray, spec: LayerSpec) -> np.ndarray:
    """The layer's convolution without bias (exact for integer-valued float64 below 2^53)."""
    if spec.kind == "conv":
        return conv2d(x, weight, spec.stride, spec.padding, spec.padding)
    return conv_transpose2d(x, weight, spec.stride, spec.padding, spec.output_padding)


def activate(x: np.ndarray, layer: Layer) -> np.ndarray:
    act = layer.act
    if act is None:
        return x
    if act == "relu":
        return np.maximum(x, 0)
    if act == "leaky":
        return np.maximum(x, x * layer.spec.slope)
    beta = np.asarray(layer.beta, np.float64)[None, :, None, None]
    gamma = np.asarray(layer.gamma, np.float64)
    magnitude = np.abs(x) if act in ("gdn1", "igdn1") else x * x
    norm = beta + np.einsum("oc,bchw->bohw", gamma, magnitude)
    if act in ("gdn", "igdn"):
        norm = np.sqrt(norm)
    return x / norm if act in ("gdn", "gdn1") else x * norm


def conv2d(x: np.ndarray, weight: np.ndarray, stride: int, pad_before: int, pad_after: int) -> np.ndarray:
    """Cross-correlation of [B, C, H, W] with [O, C, k, k] (im2col by strided views + one tensordot)."""
    k = weight.shape[2]
    padded = np.pad(x, ((0, 0), (0, 0), (pad_before, pad_after), (pad_before, pad_after)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, stride: int, pad: int, output_pad: int) -> np.ndarray:
    """Transposed convolution with [C, O, k, k] weights: zero insertion, then a flipped-kernel correlation."""
    k = weight.shape[2]
    batch, channels, height, width = x.shape
    dilated = np.zeros((batch, channels, (height - 1) * stride + 1, (width - 1) * stride + 1), x.dtype)
    dilated[:, :, ::stride, ::stride] = x
    flipped = weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    grown = np.pad(dilated, ((0, 0), (0, 0), (0, output_pad), (0, output_pad)))
    return conv2d(grown, flipped, 1, k - 1 - pad, k - 1 - pad)


def channel_l1(weight: np.ndarray, spec: LayerSpec) -> np.ndarray:
    """Per output channel, the largest sum of |w| over the taps that meet in one output element.

    For a conv that is every tap; for a transposed conv with stride s only the taps of one phase
    (ty mod s, tx mod s) ever land on the same output, so the bound is the maximum over phases.
    """
    magnitude = np.abs(weight)
    if spec.kind == "conv":
        return magnitude.sum(axis=(1, 2, 3))
    per_out = magnitude.transpose(1, 0, 2, 3)
    s = spec.stride
    phases = [per_out[:, :, a::s, b::s].sum(axis=(1, 2, 3)) for a in range(s) for b in range(s)]
    return np.max(np.stack(phases), axis=0)
