"""Inference-based rate-distortion optimised quantisation (RDOQ) of the coded latent symbols.

After "Entropy Coding Improvement for Low-complexity Compressive Auto-encoders" (Galpin, Balcilar,
Lefebvre, Racapé, Hellier), section 3.2: the encoder tries a change of -1 and +1 on every symbol that is not
already its most probable value and keeps the better change when it lowers D + lambda R, where D is measured
by running the decoder's own synthesis g_s on a crop of the latent centred on the symbol.

Family-generic pieces:

- `RateModel`: the exact code length of symbols from a family's integer tables, in `RATE_UNIT` (1/256 bit,
  exactly rounded), with the sites whose code length depends on a site's value (`context_offsets`: empty for
  the hyperprior, whose tables depend on z_hat only; top/left/next-channel neighbours for a
  context-switching model). `rate_deltas` adds the change of every such dependent site.
- `CropDistortion`: squared error of the decoder's g_s output on crops of (2 radius + 1)^2 latents, many crops
  per run (the package's synthesis graph with a free batch dimension).
- `optimise`: the search.

Order (deterministic, documented): per pass, per channel c = 0..C-1, per offset (oy, ox) in raster order of a
`stride` x `stride` block, one group = every site (c, oy + i stride, ox + j stride). Sites of one group do not
interact: another group member lies outside any crop holding a site (stride > 2 radius, as crops shift
inward at the borders) and outside the reach of its rate changes (stride > 2 reach), so deciding them all
from the state at the start of the group is exactly the same as deciding them one after another in raster
order (`batch_sites=1`, the sequential reference). A pass that changes nothing ends the search early.

Units: the manifest's lambda is the training's, loss = lambda 255^2 MSE + bpp with MSE over the RGB samples in
[0, 1]. Multiplied by the pixel count that is J = bits + lambda / 3 * SSE with SSE summed over the RGB samples
of the 8-bit reconstruction, so D is in squared 8-bit levels and `weight = lambda / 3` bits per unit of D.
D is measured on the decoder's uint8 reconstruction (rounded, clamped) inside the image, not its padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np

from codec.errors import RdoqUnsupported
from codec.layers import LayerSpec
from codec.networks import LATENT_STRIDE
from codec.tables import CodeTables, exp_golomb_bits

RATE_FRACTION_BITS = 8
RATE_UNIT = 1 << RATE_FRACTION_BITS  # code lengths are integers in 1/256 bit
DEFAULT_PASSES = 3
DEFAULT_BATCH_SITES = 64
STEPS = (-1, 1)  # tried in this order; a tie keeps the first

Sites = tuple[np.ndarray, np.ndarray, np.ndarray]  # channel, row, column of each site (int64)


@dataclass(frozen=True)
class RdoqOptions:
    passes: int = DEFAULT_PASSES
    lmbda: float | None = None  # None: the package manifest's lambda
    radius: int | None = None  # crop radius in latents; None: from g_s's receptive field
    batch_sites: int = DEFAULT_BATCH_SITES  # sites decided per g_s run; 1 = the sequential reference

    def __post_init__(self) -> None:
        if self.passes < 1 or self.batch_sites < 1 or (self.radius is not None and self.radius < 0):
            raise ValueError("passes and batch_sites must be >= 1 and radius >= 0")


@dataclass
class RdoqStats:
    changes: list[int] = field(default_factory=list)  # accepted changes per pass
    rate_before: int = 0  # RATE_UNIT
    rate_after: int = 0
    radius: int = 0
    weight: float = 0.0  # bits per squared 8-bit level


# --- rate ------------------------------------------------------------------------------------------------


class RateModel(Protocol):
    """Exact code lengths of a latent's symbols under a family's integer tables."""

    # (dc, dy, dx) of every other site whose code length depends on a site's value (its context dependents).
    context_offsets: tuple[tuple[int, int, int], ...]

    def costs(self, symbols: np.ndarray, sites: Sites, changed: Sites, values: np.ndarray) -> np.ndarray:
        """Code length (RATE_UNIT, int64) of each of `sites` when the symbol at changed[i] is values[i] and
        every other symbol is as in `symbols` [1, C, H, W]."""
        ...

    def most_probable(self, symbols: np.ndarray, sites: Sites) -> np.ndarray:
        """The value of least code length at each site, given its context in `symbols`."""
        ...


@lru_cache(maxsize=1 << 17)
def code_length_q(freq: int, precision: int) -> int:
    """round(256 (precision - log2 freq)) exactly: round(256 log2 f) = floor(log2(2 f^512) / 2)."""
    return RATE_UNIT * precision - ((2 * freq**512).bit_length() - 1) // 2


def symbol_costs(tables: CodeTables) -> np.ndarray:
    """int64 [T, Lmax]: code length of each symbol of each table in RATE_UNIT (0 past a table's length)."""
    freq = tables.frequencies()
    costs = np.zeros(freq.shape, np.int64)
    for value in np.unique(freq[freq > 0]):
        costs[freq == value] = code_length_q(int(value), tables.precision)
    return costs


class TableRate:
    """Symbols each coded with one table chosen independently of the other symbols (the hyperprior's
    scale index, a function of z_hat only): no context dependents."""

    context_offsets: tuple[tuple[int, int, int], ...] = ()

    def __init__(self, tables: CodeTables, table_index: np.ndarray) -> None:
        self.tables = tables
        self.index = np.asarray(table_index, np.int64)[0]
        self._costs = symbol_costs(tables)
        inner = np.where(
            np.arange(tables.max_length)[None, :] < tables.length[:, None] - 1, tables.frequencies(), 0
        )
        inner[:, 0] = 0  # the underflow escape is never the most probable value
        self._mode = tables.offset.astype(np.int64) + np.argmax(inner, axis=1)

    def costs(self, symbols: np.ndarray, sites: Sites, changed: Sites, values: np.ndarray) -> np.ndarray:
        same = np.all([a == b for a, b in zip(sites, changed, strict=True)], axis=0)
        value = np.where(same, values, symbols[0][sites]).astype(np.int64)
        return self.value_costs(self.index[sites], value)

    def most_probable(self, symbols: np.ndarray, sites: Sites) -> np.ndarray:
        return self._mode[self.index[sites]]

    def value_costs(self, table: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Main symbol plus exp-Golomb payload of an escape (codec/rans.py), in RATE_UNIT."""
        offset = self.tables.offset.astype(np.int64)[table]
        last = self.tables.length.astype(np.int64)[table] - 1
        symbol = np.clip(value - offset, 0, last)
        payload = np.where(symbol == 0, offset - value, np.where(symbol == last, value - offset - last, 0))
        escaped = (symbol == 0) | (symbol == last)
        return self._costs[table, symbol] + np.where(escaped, RATE_UNIT * exp_golomb_bits(payload), 0)


def all_sites(shape: tuple[int, ...]) -> Sites:
    c, y, x = np.indices(shape[1:]).reshape(3, -1).astype(np.int64)
    return c, y, x


def total_rate(model: RateModel, symbols: np.ndarray) -> int:
    """Code length of every symbol, RATE_UNIT."""
    sites = all_sites(symbols.shape)
    return int(model.costs(symbols, sites, sites, symbols[0][sites]).sum())


def rate_deltas(model: RateModel, symbols: np.ndarray, sites: Sites, values: np.ndarray) -> np.ndarray:
    """Change of the total code length (RATE_UNIT) when the symbol at sites[i] alone becomes values[i]: its
    own code length and that of every context dependent inside the tensor."""
    current = symbols[0][sites]
    delta = np.zeros(len(sites[0]), np.int64)
    for offset in ((0, 0, 0), *model.context_offsets):
        target = tuple(axis + step for axis, step in zip(sites, offset, strict=True))
        inside = np.all([(t >= 0) & (t < n) for t, n in zip(target, symbols.shape[1:], strict=True)], axis=0)
        target = tuple(np.where(inside, t, 0) for t in target)
        after = model.costs(symbols, target, sites, values)
        before = model.costs(symbols, target, sites, current)
        delta += np.where(inside, after - before, 0)
    return delta


def context_reach(model: RateModel) -> int:
    return max((max(abs(dy), abs(dx)) for _, dy, dx in model.context_offsets), default=0)


# --- distortion ------------------------------------------------------------------------------------------


def footprint(g_s: list[LayerSpec]) -> int:
    """Width in pixels of the output a single latent reaches through g_s's transposed convolutions."""
    width = 1
    for spec in g_s:
        width = (width - 1) * spec.stride + spec.kernel
    return width


def receptive_field(g_s: list[LayerSpec]) -> int:
    """Latents per axis that the distortion change of one latent depends on: its footprint reaches
    h = (F - 1) / 2 pixels either side, and each of those pixels depends on the latents within h of it,
    so 2 floor(2h / 16) + 1 (7 for four 5x5 stride-2 layers; a crop of 7 gives the exact change)."""
    reach = footprint(g_s) - 1
    return 2 * (reach // LATENT_STRIDE) + 1


def default_radius(g_s: list[LayerSpec]) -> int:
    """Half the receptive field, rounded up to an odd crop: 7 -> 4 -> a crop of 5 (radius 2). Measured on
    int16/q2 (30 random +1 changes): mean error of the distortion change 31 % with radius 1, 5 % with
    radius 2, 0 with radius 3."""
    return (receptive_field(g_s) + 1) // 4


def batched_synthesis(model: bytes) -> bytes:
    """The synthesis graph with a free batch dimension (the package's graph fixes it to 1)."""
    import onnx

    proto = onnx.load_from_string(model)
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "B"
    del proto.graph.value_info[:]
    return proto.SerializeToString()


class CropDistortion:
    """Squared error of g_s's uint8 output on latent crops, against the image inside its borders.

    A crop is (2 radius + 1)^2 latents (fewer where the latent is smaller) centred on its site, shifted
    inward at the latent's borders: g_s on a crop treats the crop's edges as the latent's, exactly what the
    decoder does at the real borders, so a crop never reaches past them (zero latents there would be wrong:
    g_s's biases make its hidden layers non-zero past the border)."""

    def __init__(self, session, y_real: np.ndarray, image: np.ndarray, radius: int) -> None:
        self.session, self.radius = session, radius
        self.latent = np.array(y_real[0], np.float32)
        _, rows, cols = self.latent.shape
        self.size = (min(2 * radius + 1, rows), min(2 * radius + 1, cols))
        height, width = image.shape[:2]
        self.target = np.zeros((3, rows * LATENT_STRIDE, cols * LATENT_STRIDE), np.float32)
        self.target[:, :height, :width] = image.transpose(2, 0, 1)
        self.mask = np.zeros(self.target.shape[1:], np.float32)
        self.mask[:height, :width] = 1.0

    def set(self, sites: Sites, real: np.ndarray) -> None:
        self.latent[sites] = real

    def origins(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-left latent of the crop of each site."""
        _, height, width = self.latent.shape
        top = np.clip(rows - self.radius, 0, height - self.size[0])
        left = np.clip(cols - self.radius, 0, width - self.size[1])
        return top, left

    def sse(self, rows: np.ndarray, cols: np.ndarray, channel: np.ndarray, real: np.ndarray) -> np.ndarray:
        """SSE of the crop of each site (rows[i], cols[i]) with latent channel[i] there set to real[i]
        (channel -1: unchanged), float64."""
        top, left = self.origins(rows, cols)
        windows = np.lib.stride_tricks.sliding_window_view(self.latent, self.size, axis=(1, 2))
        crops = np.ascontiguousarray(windows[:, top, left].transpose(1, 0, 2, 3))
        changed = np.flatnonzero(channel >= 0)
        crops[changed, channel[changed], (rows - top)[changed], (cols - left)[changed]] = real[changed]
        x_hat = np.asarray(self.session.run({"y_hat": crops})["x_hat"])
        pixels = np.clip(np.rint(x_hat * np.float32(255.0)), 0, 255)
        size = (self.size[0] * LATENT_STRIDE, self.size[1] * LATENT_STRIDE)
        target = np.lib.stride_tricks.sliding_window_view(self.target, size, axis=(1, 2))
        target = target[:, top * LATENT_STRIDE, left * LATENT_STRIDE].transpose(1, 0, 2, 3)
        mask = np.lib.stride_tricks.sliding_window_view(self.mask, size)[
            top * LATENT_STRIDE, left * LATENT_STRIDE
        ]
        error = (pixels - target) * mask[:, None]
        return np.einsum("bchw,bchw->b", error, error, dtype=np.float64)


# --- search ----------------------------------------------------------------------------------------------


class Dequantize(Protocol):
    def __call__(self, values: np.ndarray, sites: Sites) -> np.ndarray:
        """The g_s input (float32, latent units) of symbol values[i] at sites[i]."""
        ...


@dataclass
class Problem:
    symbols: np.ndarray  # int32 [1, C, H, W], changed in place
    rate: RateModel
    distortion: CropDistortion
    real: Dequantize
    weight: float  # bits per unit of D


def group_order(shape: tuple[int, ...], stride: int) -> Iterator[Sites]:
    """The fixed order of the module docstring: channel, then block offset in raster order."""
    _, channels, height, width = shape
    for c in range(channels):
        for oy in range(min(stride, height)):
            for ox in range(min(stride, width)):
                y, x = np.meshgrid(np.arange(oy, height, stride), np.arange(ox, width, stride), indexing="ij")
                y, x = y.reshape(-1).astype(np.int64), x.reshape(-1).astype(np.int64)
                yield np.full_like(y, c), y, x


def candidate_costs(problem: Problem, sites: Sites, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, their change of J in bits), each [len(STEPS), sites]: every crop of a call (the sites'
    current crops, then those of each step) in one g_s run."""
    count, steps = len(current), len(STEPS)
    candidates = np.stack([current + step for step in STEPS])
    channel = np.concatenate([np.full(count, -1), *[sites[0]] * steps])
    real = np.concatenate([np.zeros(count, np.float32), *[problem.real(v, sites) for v in candidates]])
    rows, cols = np.tile(sites[1], 1 + steps), np.tile(sites[2], 1 + steps)
    sse = problem.distortion.sse(rows, cols, channel, real).reshape(1 + steps, count)
    rate = np.stack([rate_deltas(problem.rate, problem.symbols, sites, v) for v in candidates])
    return candidates, problem.weight * (sse[1:] - sse[0]) + rate / RATE_UNIT


def decide(problem: Problem, sites: Sites) -> int:
    """Decide the sites together from the current state; apply and count the accepted changes."""
    current = problem.symbols[0][sites].astype(np.int64)
    eligible = current != problem.rate.most_probable(problem.symbols, sites)
    if not eligible.any():
        return 0
    sites = tuple(axis[eligible] for axis in sites)
    candidates, cost = candidate_costs(problem, sites, current[eligible])
    best = np.argmin(cost, axis=0)  # the first step on ties
    columns = np.arange(cost.shape[1])
    accept = cost[best, columns] < 0
    chosen = tuple(axis[accept] for axis in sites)
    values = candidates[best, columns][accept]
    problem.symbols[0][chosen] = values
    problem.distortion.set(chosen, problem.real(values, chosen))
    return int(accept.sum())


def stride_for(radius: int, model: RateModel) -> int:
    """Sites this far apart on some axis never share a crop (a crop spans up to 2 radius from its site
    at a border) nor a rate change's reach."""
    return max(2 * radius + 1, 2 * context_reach(model) + 1)


def optimise(problem: Problem, passes: int, batch_sites: int = DEFAULT_BATCH_SITES) -> list[int]:
    """Run the search; returns the accepted changes per pass run."""
    stride = stride_for(problem.distortion.radius, problem.rate)
    changes: list[int] = []
    for _ in range(passes):
        accepted = 0
        for group in group_order(problem.symbols.shape, stride):
            for start in range(0, len(group[0]), batch_sites):
                accepted += decide(problem, tuple(axis[start : start + batch_sites] for axis in group))
        changes.append(accepted)
        if accepted == 0:
            break
    return changes


# --- the hyperprior packages -----------------------------------------------------------------------------


def require_exact(precision: str, latent_kind: str) -> None:
    """RDOQ is for packages whose decoder rebuilds exactly the y_hat the encoder chose on every device:
    an integer h_s and a fixed-point latent. Float packages are refused."""
    from codec.entropy import FIXED
    from codec.vocabulary import Precision

    if precision not in {p.value for p in Precision} or not Precision(precision).is_integer:
        raise RdoqUnsupported(f"RDOQ needs an exact decoder; a {precision} package's h_s is not exact")
    if latent_kind != FIXED:
        raise RdoqUnsupported(
            f"RDOQ needs an exact decoder; this package's latent is {latent_kind}, not fixed"
        )


def lambda_weight(manifest: dict, lmbda: float | None) -> float:
    """Bits per squared 8-bit level: lambda / 3 (module docstring)."""
    if lmbda is None:
        if "lambda" not in manifest:
            raise RdoqUnsupported("the package's manifest has no lambda; give one (--rdoq-lambda)")
        lmbda = float(manifest["lambda"])
    if not lmbda > 0:
        raise RdoqUnsupported(f"lambda must be positive, got {lmbda}")
    return float(lmbda) / 3.0


def g_s_specs(manifest: dict) -> list[LayerSpec]:
    from codec.networks import Architecture, network_layers

    return network_layers(Architecture.from_dict(manifest["architecture"]))["g_s"]


def optimise_hyperprior(
    codec,
    image: np.ndarray,
    symbols: np.ndarray,
    scale_index: np.ndarray,
    mean: np.ndarray,
    options: RdoqOptions,
) -> tuple[np.ndarray, RdoqStats]:
    """RDOQ of a hyperprior package's y symbols (codec.Codec.encode with `rdoq`); returns new symbols."""
    require_exact(codec.precision, codec.format.kind)
    manifest = codec.package.manifest
    weight = lambda_weight(manifest, options.lmbda)
    radius = default_radius(g_s_specs(manifest)) if options.radius is None else options.radius
    y_model = codec.y_model

    def real(values: np.ndarray, sites: Sites) -> np.ndarray:
        return y_model.real(y_model.dequantize(values, mean[0][sites]))

    symbols = np.array(symbols, np.int32, copy=True)
    y_real = y_model.real(y_model.dequantize(symbols, mean))
    distortion = CropDistortion(codec.batched_synthesis(), y_real, image, radius)
    problem = Problem(symbols, TableRate(y_model.tables, scale_index), distortion, real, weight)
    stats = RdoqStats(rate_before=total_rate(problem.rate, symbols), radius=radius, weight=weight)
    stats.changes = optimise(problem, options.passes, options.batch_sites)
    stats.rate_after = total_rate(problem.rate, symbols)
    return symbols, stats
