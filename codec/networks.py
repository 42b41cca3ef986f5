"""The codec's networks: architecture, deterministic random weights and the float ONNX graphs.

The codec is a mean-scale hyperprior:

    g_a: four 5x5 stride-2 convolutions (3 -> N -> N -> N -> M), ReLU between them
    h_a: 3x3 stride 1, 5x5 stride 2, 5x5 stride 2 (M -> N -> N -> N), LeakyReLU (slope 1/8) between them
    h_s: 5x5 stride-2 transposed, 5x5 stride-2 transposed, 3x3 stride 1 (N -> N -> N -> 2M), LeakyReLU
         between;
         the 2M outputs are u (first M channels, the scale parameter) and the mean (last M channels)
    g_s: four 5x5 stride-2 transposed convolutions (M -> N -> N -> N -> 3), ReLU between them

Images enter g_a as float32 in [0, 1] with height and width padded to a multiple of `STRIDE` (64), so y has
shape [1, M, H/16, W/16] and z [1, N, H/64, W/64]. This module builds the float graphs the encoder and decoder
run outside the entropy path: `analysis` (g_a + h_a, outputs "y" and "z") and `synthesis` (g_s, input "y_hat",
output "x_hat"). The three precisions of h_s are built by codec/hyper.py and codec/intnet.py from the layer
dicts returned by `hyper_synthesis_layers`.

Weights are numpy arrays in torch layout (Conv: [out, in, k, k]; ConvTranspose: [in, out, k, k]) kept in one
flat dict `{"g_a.0.weight": ..., "g_a.0.bias": ..., ...}` so a package can store them in an npz file.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDE = 64          # total downsampling of g_a + h_a: images are padded to a multiple of this
LATENT_STRIDE = 16   # downsampling of g_a alone
OPSET = 17
IR_VERSION = 8       # old enough for every ONNX Runtime the harness targets

# Random weights are He-initialised, then the last layer of each network is rescaled on the synthetic
# calibration images so that a random codec behaves like a codec: y with a standard deviation of a few
# quantisation steps, z of about one to two, and an h_s that predicts each channel's own mean and spread
# (so scale levels sit where the latents are and few values escape), with a little spatial variation.
_TARGET_Y_STD, _TARGET_Z_STD = 4.0, 1.5
_U_SPREAD, _MEAN_SPREAD = 0.05, 0.25
_NORMALISE_IMAGES, _NORMALISE_SIZE = 3, 128
_GAIN_STEPS = 16        # gains are rounded to powers of 2^(1/16), biases to 2^-10, so that float noise
_BIAS_STEP = 2.0**-10   # between machines cannot change the weights
TRANSFORMS = ("relu", "gdn")
GDN_ACTS = ("gdn", "igdn")

@dataclass(frozen=True)
class Architecture:
    """Channel counts and entropy-path constants of one codec."""

    n: int                  # hidden channels of every network and channels of z
    m: int                  # channels of the latent y
    levels: int = 64        # scale levels (paper 000's N)
    mean_bits: int = 8      # the mean and y_hat are integers in units of 2^-mean_bits
    sigma_min: float = 0.11
    sigma_max: float = 256.0
    transform: str = "relu"  # hidden non-linearity of g_a / g_s: "relu", or "gdn" (simplified GDN / IGDN)

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if self.n < 1 or self.m < 1:
            raise ValueError(f"channel counts must be positive, got N={self.n}, M={self.m}")
        if not 16 <= self.levels <= 256:
            raise ValueError(f"levels must lie in [16, 256], got {self.levels}")
        if not 0 <= self.mean_bits <= 16:
            raise ValueError(f"mean_bits must lie in [0, 16], got {self.mean_bits}")

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["transform"] == "relu":   # omitted: packages built before the field keep their digest
            del data["transform"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class LayerSpec:
    """One convolution: `kind` "conv" or "convT", `act` the activation after it ("relu", "leaky", "gdn",
    "igdn" or None).

    "gdn" and "igdn" are the simplified GDN of Johnston et al. 2019: x / (beta + gamma |x|) and its inverse
    x * (beta + gamma |x|), gamma a non-negative C x C matrix mixing the channels at each pixel; the layer
    then has two more arrays, NAME.gdn_beta [C] and NAME.gdn_gamma [C, C].
    """

    kind: str
    c_in: int
    c_out: int
    kernel: int
    stride: int
    act: str | None

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def output_padding(self) -> int:
        return self.stride - 1 if self.kind == "convT" else 0

    def weight_shape(self) -> tuple[int, int, int, int]:
        if self.kind == "conv":
            return (self.c_out, self.c_in, self.kernel, self.kernel)
        return (self.c_in, self.c_out, self.kernel, self.kernel)


def network_layers(arch: Architecture) -> dict[str, list[LayerSpec]]:
    """The four networks as layer lists, in the order data flows through them."""
    n, m = arch.n, arch.m
    down, up = ("gdn", "igdn") if arch.transform == "gdn" else ("relu", "relu")
    return {
        "g_a": [LayerSpec("conv", c_in, c_out, 5, 2, act)
                for c_in, c_out, act in ((3, n, down), (n, n, down), (n, n, down), (n, m, None))],
        "h_a": [LayerSpec("conv", m, n, 3, 1, "leaky"), LayerSpec("conv", n, n, 5, 2, "leaky"),
                LayerSpec("conv", n, n, 5, 2, None)],
        "h_s": [LayerSpec("convT", n, n, 5, 2, "leaky"), LayerSpec("convT", n, n, 5, 2, "leaky"),
                LayerSpec("conv", n, 2 * m, 3, 1, None)],
        "g_s": [LayerSpec("convT", c_in, c_out, 5, 2, act)
                for c_in, c_out, act in ((m, n, up), (n, n, up), (n, n, up), (n, 3, None))],
    }


def layer_arrays(net: str, index: int, spec: LayerSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every array one layer owns."""
    name = f"{net}.{index}"
    arrays = {f"{name}.weight": spec.weight_shape(), f"{name}.bias": (spec.c_out,)}
    if spec.act in GDN_ACTS:
        arrays[f"{name}.gdn_beta"] = (spec.c_out,)
        arrays[f"{name}.gdn_gamma"] = (spec.c_out, spec.c_out)
    return arrays


def _fan_in(spec: LayerSpec) -> float:
    """Inputs feeding one output element (a transposed conv of stride s sees k^2 / s^2 taps on average)."""
    taps = spec.kernel * spec.kernel
    if spec.kind == "convT":
        taps /= spec.stride * spec.stride
    return spec.c_in * taps


def random_weights(arch: Architecture, seed: int) -> dict[str, np.ndarray]:
    """Deterministic random weights for every network (numpy PCG64, identical on every platform)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    weights: dict[str, np.ndarray] = {}
    for net, layers in network_layers(arch).items():
        for index, spec in enumerate(layers):
            std = np.sqrt((2.0 if spec.act is not None else 1.0) / _fan_in(spec))
            weight = rng.standard_normal(spec.weight_shape()) * std
            weights[f"{net}.{index}.weight"] = weight.astype(np.float32)
            weights[f"{net}.{index}.bias"] = (rng.standard_normal(spec.c_out) * 0.01).astype(np.float32)
            if spec.act in GDN_ACTS:
                weights[f"{net}.{index}.gdn_beta"] = np.ones(spec.c_out, np.float32)
                weights[f"{net}.{index}.gdn_gamma"] = np.eye(spec.c_out, dtype=np.float32) * np.float32(0.1)
    weights["g_s.3.bias"] = np.full(3, 0.5, np.float32)   # reconstructions centred on mid-grey
    _normalise(arch, weights, seed)
    return weights


def _round_gain(gain: float) -> np.float32:
    return np.float32(2.0 ** (round(np.log2(gain) * _GAIN_STEPS) / _GAIN_STEPS))


def _round_bias(values: np.ndarray) -> np.ndarray:
    return (np.rint(values / _BIAS_STEP) * _BIAS_STEP).astype(np.float32)


def _normalise(arch: Architecture, weights: dict[str, np.ndarray], seed: int) -> None:
    """Rescale the last layers of g_a, h_a and h_s on synthetic images (see `_TARGET_Y_STD`)."""
    from codec.scale import ode_mapping

    layers = network_layers(arch)
    images = synthetic_images(seed, _NORMALISE_IMAGES, _NORMALISE_SIZE)
    x = np.concatenate([pad_image(image) for image in images]).astype(np.float64)
    y = forward(x, "g_a", layers["g_a"], weights)
    _scale_layer(weights, "g_a.3", _round_gain(_TARGET_Y_STD / y.std()))
    y = forward(x, "g_a", layers["g_a"], weights)
    z = forward(y, "h_a", layers["h_a"], weights)
    _scale_layer(weights, "h_a.2", _round_gain(_TARGET_Z_STD / max(z.std(), 1e-6)))
    z_hat = np.rint(forward(y, "h_a", layers["h_a"], weights))
    hidden = forward(z_hat, "h_s", layers["h_s"][:2], weights)
    last = forward(hidden, "h_s", layers["h_s"][2:], weights, first_index=2)
    m = arch.m
    weight, bias = weights["h_s.2.weight"], weights["h_s.2.bias"]
    u_part, mean_part = last[:, :m] - bias[:m, None, None], last[:, m:] - bias[m:, None, None]
    weight[:m] *= _round_gain(_U_SPREAD / max(u_part.std(), 1e-6))
    weight[m:] *= _round_gain(_MEAN_SPREAD / max(mean_part.std(), 1e-6))
    channel_mean = y.mean(axis=(0, 2, 3))
    channel_std = np.maximum((y - channel_mean[None, :, None, None]).std(axis=(0, 2, 3)), arch.sigma_min)
    u_centre = ode_mapping(arch.sigma_min, arch.sigma_max).u(channel_std)
    weights["h_s.2.bias"] = _round_bias(np.concatenate([u_centre, channel_mean]))


def _scale_layer(weights: dict[str, np.ndarray], name: str, gain: np.float32) -> None:
    weights[f"{name}.weight"] = weights[f"{name}.weight"] * gain
    weights[f"{name}.bias"] = weights[f"{name}.bias"] * gain


def forward(x: np.ndarray, net: str, specs: list[LayerSpec], weights: dict[str, np.ndarray],
            first_index: int = 0) -> np.ndarray:
    """float64 numpy forward pass of consecutive layers of one network (weight normalisation, tests)."""
    for index, spec in enumerate(specs, start=first_index):
        weight = np.asarray(weights[f"{net}.{index}.weight"], np.float64)
        if spec.kind == "conv":
            x = _conv(x, weight, spec.stride, spec.padding, spec.padding)
        else:
            x = _conv_transpose(x, weight, spec.stride, spec.padding, spec.output_padding)
        x = x + np.asarray(weights[f"{net}.{index}.bias"], np.float64)[None, :, None, None]
        if spec.act == "relu":
            x = np.maximum(x, 0)
        elif spec.act == "leaky":
            x = np.maximum(x, x * 0.125)
        elif spec.act in GDN_ACTS:
            beta = np.asarray(weights[f"{net}.{index}.gdn_beta"], np.float64)
            gamma = np.asarray(weights[f"{net}.{index}.gdn_gamma"], np.float64)
            norm = beta[None, :, None, None] + np.einsum("oc,bchw->bohw", gamma, np.abs(x))
            x = x / norm if spec.act == "gdn" else x * norm
    return x


def _conv(x: np.ndarray, weight: np.ndarray, stride: int, pad_before: int, pad_after: int) -> np.ndarray:
    """Cross-correlation of [B, C, H, W] with [O, C, k, k] (im2col by strided views + one tensordot)."""
    k = weight.shape[2]
    padded = np.pad(x, ((0, 0), (0, 0), (pad_before, pad_after), (pad_before, pad_after)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def _conv_transpose(x: np.ndarray, weight: np.ndarray, stride: int, pad: int, output_pad: int) -> np.ndarray:
    """Transposed convolution with [C, O, k, k] weights: zero insertion, then a flipped-kernel correlation."""
    k = weight.shape[2]
    batch, channels, height, width = x.shape
    dilated = np.zeros((batch, channels, (height - 1) * stride + 1, (width - 1) * stride + 1))
    dilated[:, :, ::stride, ::stride] = x
    flipped = weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    grown = np.pad(dilated, ((0, 0), (0, 0), (0, output_pad), (0, output_pad)))
    return _conv(grown, flipped, 1, k - 1 - pad, k - 1 - pad)


def hyper_synthesis_layers(arch: Architecture, weights: dict[str, np.ndarray]) -> list[dict]:
    """h_s as the layer dicts codec/hyper.py and codec/intnet.py build their graphs from."""
    return [
        {
            "kind": spec.kind,
            "weight": np.asarray(weights[f"h_s.{index}.weight"], np.float32),
            "bias": np.asarray(weights[f"h_s.{index}.bias"], np.float32),
            "stride": spec.stride,
            "padding": spec.padding,
            "output_padding": spec.output_padding,
            "act": spec.act,
        }
        for index, spec in enumerate(network_layers(arch)["h_s"])
    ]


def check_weights(arch: Architecture, weights: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless `weights` holds exactly the arrays `arch` needs, with the right shapes."""
    expected: dict[str, tuple[int, ...]] = {}
    for net, layers in network_layers(arch).items():
        for index, spec in enumerate(layers):
            expected.update(layer_arrays(net, index, spec))
    if set(weights) != set(expected):
        raise ValueError(f"weight names differ from the architecture: {sorted(set(weights) ^ set(expected))}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(weights[name].shape)}, expected {shape}")
        if not np.all(np.isfinite(weights[name])):
            raise ValueError(f"{name} holds non-finite values")


# --- ONNX graph building ---


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def layers(self, prefix: str, tensor: str, specs: Iterable[LayerSpec],
               weights: dict[str, np.ndarray]) -> str:
        for index, spec in enumerate(specs):
            tensor = self.layer(f"{prefix}.{index}", tensor, spec, weights)
        return tensor

    def layer(self, name: str, tensor: str, spec: LayerSpec, weights: dict[str, np.ndarray]) -> str:
        weight = self.constant(f"{name}.weight", np.asarray(weights[f"{name}.weight"], np.float32))
        bias = self.constant(f"{name}.bias", np.asarray(weights[f"{name}.bias"], np.float32))
        attrs = {"kernel_shape": [spec.kernel, spec.kernel], "strides": [spec.stride, spec.stride],
                 "pads": [spec.padding] * 4}
        if spec.kind == "convT":
            attrs["output_padding"] = [spec.output_padding] * 2
        out = f"{name}.out"
        op = "Conv" if spec.kind == "conv" else "ConvTranspose"
        self.nodes.append(helper.make_node(op, [tensor, weight, bias], [out], name=name, **attrs))
        if spec.act == "relu":
            self.nodes.append(helper.make_node("Relu", [out], [f"{name}.act"], name=f"{name}.relu"))
            return f"{name}.act"
        if spec.act == "leaky":
            self.nodes.append(helper.make_node("LeakyRelu", [out], [f"{name}.act"], name=f"{name}.leaky",
                                               alpha=0.125))
            return f"{name}.act"
        if spec.act in GDN_ACTS:
            return self.gdn(name, out, spec, weights)
        return out

    def gdn(self, name: str, tensor: str, spec: LayerSpec, weights: dict[str, np.ndarray]) -> str:
        """Simplified (I)GDN: the channel mix gamma |x| + beta is a 1x1 convolution."""
        gamma = np.asarray(weights[f"{name}.gdn_gamma"], np.float32)[:, :, None, None]
        gamma = self.constant(f"{name}.gdn_gamma", gamma)
        beta = self.constant(f"{name}.gdn_beta", np.asarray(weights[f"{name}.gdn_beta"], np.float32))
        self.nodes.append(helper.make_node("Abs", [tensor], [f"{name}.abs"], name=f"{name}.abs"))
        self.nodes.append(helper.make_node("Conv", [f"{name}.abs", gamma, beta], [f"{name}.norm"],
                                           name=f"{name}.norm", kernel_shape=[1, 1]))
        op = "Div" if spec.act == "gdn" else "Mul"
        self.nodes.append(helper.make_node(op, [tensor, f"{name}.norm"], [f"{name}.act"],
                                           name=f"{name}.{op.lower()}"))
        return f"{name}.act"

    def rename(self, tensor: str, name: str) -> None:
        self.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"{name}.identity"))

    def model(self, graph_name: str, inputs: list, outputs: list) -> bytes:
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="bitmatch")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model.SerializeToString()


def _image_value(name: str, channels: int, scale: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, f"H{scale}", f"W{scale}"])


def analysis_model(arch: Architecture, weights: dict[str, np.ndarray]) -> bytes:
    """g_a + h_a: input "x" float32 [1, 3, H, W] (H, W multiples of 64), outputs "y" and "z"."""
    layers = network_layers(arch)
    builder = _GraphBuilder()
    y = builder.layers("g_a", "x", layers["g_a"], weights)
    z = builder.layers("h_a", y, layers["h_a"], weights)
    builder.rename(y, "y")
    builder.rename(z, "z")
    return builder.model("bitmatch_analysis", [_image_value("x", 3, "")],
                         [_image_value("y", arch.m, "/16"), _image_value("z", arch.n, "/64")])


def synthesis_model(arch: Architecture, weights: dict[str, np.ndarray]) -> bytes:
    """g_s: input "y_hat" float32 [1, M, h, w], output "x_hat" float32 [1, 3, 16h, 16w] (nominally [0, 1])."""
    builder = _GraphBuilder()
    x_hat = builder.layers("g_s", "y_hat", network_layers(arch)["g_s"], weights)
    builder.rename(x_hat, "x_hat")
    return builder.model("bitmatch_synthesis", [_image_value("y_hat", arch.m, "")],
                         [_image_value("x_hat", 3, "*16")])


def float_hyper_synthesis_model(arch: Architecture, weights: dict[str, np.ndarray]) -> bytes:
    """Plain float h_s (input "z_hat" float32, output "hs" float32 [1, 2M, 4h, 4w]); used for calibration."""
    builder = _GraphBuilder()
    out = builder.layers("h_s", "z_hat", network_layers(arch)["h_s"], weights)
    builder.rename(out, "hs")
    return builder.model("bitmatch_float_hs", [_image_value("z_hat", arch.n, "")],
                         [_image_value("hs", 2 * arch.m, "*4")])


# --- images <-> network tensors ---


def pad_image(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 [1, 3, H', W'] in [0, 1], H' and W' the next multiples of 64 (edge padded)."""
    height, width = image.shape[:2]
    pad_h, pad_w = -height % STRIDE, -width % STRIDE
    padded = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return (padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0))


def latent_shape(height: int, width: int) -> tuple[int, int]:
    """Spatial size of y for an image of the given size."""
    return (height + STRIDE - 1) // STRIDE * 4, (width + STRIDE - 1) // STRIDE * 4


def to_uint8_image(x_hat: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [1, 3, H', W'] -> uint8 HxWx3, cropped, rounded half to even and clamped to [0, 255]."""
    pixels = np.clip(np.rint(x_hat[0, :, :height, :width].astype(np.float32) * np.float32(255.0)), 0, 255)
    return np.ascontiguousarray(pixels.astype(np.uint8).transpose(1, 2, 0))


def synthetic_images(seed: int, count: int = 4, size: int = 128) -> list[np.ndarray]:
    """Deterministic natural-ish uint8 RGB images (smooth colour fields, edges, texture) for calibration."""
    rng = np.random.Generator(np.random.PCG64(seed))
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) / size
    images = []
    for _ in range(count):
        field = np.zeros((size, size, 3))
        for _wave in range(6):
            freq = rng.uniform(0.5, 6.0, 2)
            phase = rng.uniform(0, 2 * np.pi)
            field += np.sin(2 * np.pi * (freq[0] * rows + freq[1] * cols) + phase)[..., None] * rng.uniform(
                -0.3, 0.3, 3)
        for _edge in range(3):
            normal = rng.standard_normal(2)
            step = (normal[0] * (rows - 0.5) + normal[1] * (cols - 0.5)) > rng.uniform(-0.3, 0.3)
            field += step[..., None] * rng.uniform(-0.4, 0.4, 3)
        field += rng.standard_normal((size, size, 3)) * 0.03
        images.append(np.clip(np.rint((field * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8))
    return images
