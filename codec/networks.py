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
output "x_hat"). The three precisions of h_s are built by codec/hyper.py and codec/intnet.py from the layers
returned by `hyper_synthesis`.

Weights are numpy arrays in torch layout (Conv: [out, in, k, k]; ConvTranspose: [in, out, k, k]) kept in one
flat dict `{"g_a.0.weight": ..., "g_a.0.bias": ..., ...}` so a package can store them in an npz file; `bind`
turns the dict into the `codec.layers.Layer` lists every other module works with.
"""

from dataclasses import asdict, dataclass

import numpy as np

from codec import layers as nn
from codec.layers import Layer, LayerSpec
from codec.onnxgraph import GraphBuilder, image_info

STRIDE = 64  # total downsampling of g_a + h_a: images are padded to a multiple of this
LATENT_STRIDE = 16  # downsampling of g_a alone
LEAKY_SLOPE = 0.125

# Random weights are He-initialised, then the last layer of each network is rescaled on the synthetic
# calibration images so that a random codec behaves like a codec: y with a standard deviation of a few
# quantisation steps, z of about one to two, and an h_s that predicts each channel's own mean and spread
# (so scale levels sit where the latents are and few values escape), with a little spatial variation.
_TARGET_Y_STD, _TARGET_Z_STD = 4.0, 1.5
_U_SPREAD, _MEAN_SPREAD = 0.05, 0.25
_NORMALISE_IMAGES, _NORMALISE_SIZE = 3, 128
_GAIN_STEPS = 16  # gains are rounded to powers of 2^(1/16), biases to 2^-10, so that float noise
_BIAS_STEP = 2.0**-10  # between machines cannot change the weights
TRANSFORMS = ("relu", "gdn")
GDN_ACTS = ("gdn1", "igdn1")  # the architecture's "gdn" transform is the simplified GDN (GDN1)
NETWORKS = ("g_a", "h_a", "h_s", "g_s")
HYPERPRIOR, LOWCOMPLEXITY = "hyperprior", "lowcomplexity"
FAMILIES = (HYPERPRIOR, LOWCOMPLEXITY)  # lowcomplexity: g_a and g_s only, factorized prior on y
_HYPER_FIELDS = ("levels", "mean_bits", "sigma_min", "sigma_max")  # what a factorized family has no use for


@dataclass(frozen=True)
class Architecture:
    """Channel counts and entropy-path constants of one codec."""

    n: int  # hidden channels of every network and channels of z
    m: int  # channels of the latent y
    levels: int = 64  # scale levels (paper 000's N)
    mean_bits: int = 8  # the mean and y_hat are integers in units of 2^-mean_bits
    sigma_min: float = 0.11
    sigma_max: float = 256.0
    transform: str = "relu"  # hidden non-linearity of g_a / g_s: "relu", or "gdn" (simplified GDN / IGDN)
    family: str = HYPERPRIOR  # "lowcomplexity": the factorized-prior autoencoder of codec/lowcx.py

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
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
        if data["transform"] == "relu":  # omitted: packages built before the field keep their digest
            del data["transform"]
        if data["family"] == HYPERPRIOR:  # omitted for the same reason
            del data["family"]
        else:
            for key in _HYPER_FIELDS:
                del data[key]
        return data

    @property
    def factorized(self) -> bool:
        """g_a and g_s only: no hyper-latent z, no h_a, no h_s."""
        return self.family == LOWCOMPLEXITY

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def network_layers(arch: Architecture) -> dict[str, list[LayerSpec]]:
    """The four networks as layer specs, in the order data flows through them.

    h_a: 3x3 stride 1, 5x5 stride 2, 5x5 stride 2 (M -> N -> N -> N), LeakyReLU (slope 1/8) between them;
    h_s: 5x5 stride-2 transposed twice, then 3x3 stride 1 (N -> N -> N -> 2M); the 2M outputs are u (first M
    channels, the scale parameter) and the mean (last M channels).
    """
    n, m = arch.n, arch.m
    down, up = ("gdn1", "igdn1") if arch.transform == "gdn" else ("relu", "relu")
    leaky = {"act": "leaky", "slope": LEAKY_SLOPE}
    g_a = [
        LayerSpec("conv", c_in, c_out, 5, 2, act)
        for c_in, c_out, act in ((3, n, down), (n, n, down), (n, n, down), (n, m, None))
    ]
    g_s = [
        LayerSpec("convT", c_in, c_out, 5, 2, act)
        for c_in, c_out, act in ((m, n, up), (n, n, up), (n, n, up), (n, 3, None))
    ]
    if arch.factorized:
        return {"g_a": g_a, "g_s": g_s}
    return {
        "g_a": g_a,
        "h_a": [
            LayerSpec("conv", m, n, 3, 1, **leaky),
            LayerSpec("conv", n, n, 5, 2, **leaky),
            LayerSpec("conv", n, n, 5, 2),
        ],
        "h_s": [
            LayerSpec("convT", n, n, 5, 2, **leaky),
            LayerSpec("convT", n, n, 5, 2, **leaky),
            LayerSpec("conv", n, 2 * m, 3, 1),
        ],
        "g_s": g_s,
    }


def layer_arrays(net: str, index: int, spec: LayerSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every array one layer owns."""
    name = f"{net}.{index}"
    arrays = {f"{name}.weight": spec.weight_shape(), f"{name}.bias": (spec.c_out,)}
    if spec.act in GDN_ACTS:
        arrays[f"{name}.gdn_beta"] = (spec.c_out,)
        arrays[f"{name}.gdn_gamma"] = (spec.c_out, spec.c_out)
    return arrays


def bind(arch: Architecture, weights: dict[str, np.ndarray]) -> dict[str, list[Layer]]:
    """The four networks as `Layer`s holding their weights (float32)."""

    def layer(net: str, index: int, spec: LayerSpec) -> Layer:
        name = f"{net}.{index}"
        gdn = spec.act in GDN_ACTS
        return Layer(
            spec,
            np.asarray(weights[f"{name}.weight"], np.float32),
            np.asarray(weights[f"{name}.bias"], np.float32),
            np.asarray(weights[f"{name}.gdn_beta"], np.float32) if gdn else None,
            np.asarray(weights[f"{name}.gdn_gamma"], np.float32) if gdn else None,
        )

    return {
        net: [layer(net, index, spec) for index, spec in enumerate(specs)]
        for net, specs in network_layers(arch).items()
    }


def hyper_synthesis(arch: Architecture, weights: dict[str, np.ndarray]) -> list[Layer]:
    """h_s, the network codec/hyper.py and codec/intnet.py build their graphs from."""
    return bind(arch, weights)["h_s"]


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
    for net, specs in network_layers(arch).items():
        for index, spec in enumerate(specs):
            std = np.sqrt((2.0 if spec.act is not None else 1.0) / _fan_in(spec))
            weight = rng.standard_normal(spec.weight_shape()) * std
            weights[f"{net}.{index}.weight"] = weight.astype(np.float32)
            weights[f"{net}.{index}.bias"] = (rng.standard_normal(spec.c_out) * 0.01).astype(np.float32)
            if spec.act in GDN_ACTS:
                weights[f"{net}.{index}.gdn_beta"] = np.ones(spec.c_out, np.float32)
                weights[f"{net}.{index}.gdn_gamma"] = np.eye(spec.c_out, dtype=np.float32) * np.float32(0.1)
    weights["g_s.3.bias"] = np.full(3, 0.5, np.float32)  # reconstructions centred on mid-grey
    _normalise(arch, weights, seed)
    return weights


def _round_gain(gain: float) -> np.float32:
    return np.float32(2.0 ** (round(np.log2(gain) * _GAIN_STEPS) / _GAIN_STEPS))


def _round_bias(values: np.ndarray) -> np.ndarray:
    return (np.rint(values / _BIAS_STEP) * _BIAS_STEP).astype(np.float32)


def _normalise(arch: Architecture, weights: dict[str, np.ndarray], seed: int) -> None:
    """Rescale the last layers of g_a, h_a and h_s on synthetic images (see `_TARGET_Y_STD`)."""
    from codec.scale import ode_mapping

    images = synthetic_images(seed, _NORMALISE_IMAGES, _NORMALISE_SIZE)
    x = np.concatenate([pad_image(image) for image in images]).astype(np.float64)
    y = nn.forward(bind(arch, weights)["g_a"], x)
    _scale_layer(weights, "g_a.3", _round_gain(_TARGET_Y_STD / y.std()))
    if arch.factorized:
        return
    y = nn.forward(bind(arch, weights)["g_a"], x)
    z = nn.forward(bind(arch, weights)["h_a"], y)
    _scale_layer(weights, "h_a.2", _round_gain(_TARGET_Z_STD / max(z.std(), 1e-6)))
    nets = bind(arch, weights)
    z_hat = np.rint(nn.forward(nets["h_a"], y))
    last = nn.forward(nets["h_s"], z_hat)
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


def check_weights(arch: Architecture, weights: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless `weights` holds exactly the arrays `arch` needs, with the right shapes."""
    expected: dict[str, tuple[int, ...]] = {}
    for net, specs in network_layers(arch).items():
        for index, spec in enumerate(specs):
            expected.update(layer_arrays(net, index, spec))
    if set(weights) != set(expected):
        raise ValueError(f"weight names differ from the architecture: {sorted(set(weights) ^ set(expected))}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(weights[name].shape)}, expected {shape}")
        if not np.all(np.isfinite(weights[name])):
            raise ValueError(f"{name} holds non-finite values")


# --- ONNX graphs ---


def analysis_graph(g_a: list[Layer], h_a: list[Layer] | None, abs_before_h_a: bool = False) -> bytes:
    """g_a + h_a: input "x" float32 [1, 3, H, W] (H, W multiples of 64), outputs "y" and "z"; without h_a
    (a factorized family) g_a alone, output "y".

    `abs_before_h_a`: h_a sees |y| (the scale-only hyperprior of Balle et al. 2018).
    """
    builder = GraphBuilder()
    y = builder.layers("g_a", "x", g_a)
    if h_a is None:
        builder.op("Identity", [y], out="y", node="y.identity")
        outputs = [image_info("y", g_a[-1].spec.c_out, "/16")]
        return builder.model("bitmatch_analysis", [image_info("x", 3, "")], outputs)
    h_in = builder.op("Abs", [y], out="y.abs", node="y.abs") if abs_before_h_a else y
    z = builder.layers("h_a", h_in, h_a)
    builder.op("Identity", [y], out="y", node="y.identity")
    builder.op("Identity", [z], out="z", node="z.identity")
    return builder.model(
        "bitmatch_analysis",
        [image_info("x", 3, "")],
        [image_info("y", g_a[-1].spec.c_out, "/16"), image_info("z", h_a[-1].spec.c_out, "/64")],
    )


def synthesis_graph(g_s: list[Layer]) -> bytes:
    """g_s: input "y_hat" float32 [1, M, h, w], output "x_hat" float32 [1, 3, 16h, 16w] (nominally [0, 1])."""
    builder = GraphBuilder()
    x_hat = builder.layers("g_s", "y_hat", g_s)
    builder.op("Identity", [x_hat], out="x_hat", node="x_hat.identity")
    return builder.model(
        "bitmatch_synthesis", [image_info("y_hat", g_s[0].spec.c_in, "")], [image_info("x_hat", 3, "*16")]
    )


def analysis_model(arch: Architecture, weights: dict[str, np.ndarray]) -> bytes:
    nets = bind(arch, weights)
    return analysis_graph(nets["g_a"], nets.get("h_a"))


def synthesis_model(arch: Architecture, weights: dict[str, np.ndarray]) -> bytes:
    return synthesis_graph(bind(arch, weights)["g_s"])


# --- images <-> network tensors ---


def pad_image(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 [1, 3, H', W'] in [0, 1], H' and W' the next multiples of 64 (edge padded)."""
    height, width = image.shape[:2]
    pad_h, pad_w = -height % STRIDE, -width % STRIDE
    padded = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)


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
                -0.3, 0.3, 3
            )
        for _edge in range(3):
            normal = rng.standard_normal(2)
            step = (normal[0] * (rows - 0.5) + normal[1] * (cols - 0.5)) > rng.uniform(-0.3, 0.3)
            field += step[..., None] * rng.uniform(-0.4, 0.4, 3)
        field += rng.standard_normal((size, size, 3)) * 0.03
        images.append(np.clip(np.rint((field * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8))
    return images
