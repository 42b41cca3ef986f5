"""RDOQ (codec/rdoq.py) for the lowcomplexity family (codec/lowcx.py) and for integer-g_s packages.

The search, its order and its units are codec/rdoq.py's. What this module adds:

- `ContextRate`: the exact code lengths of a `ContextModel` (codec/contexts.py). It works on the latent in
  coding order (planes[k] = y_hat[order[k]]), where the context dependents of a site are fixed offsets: its
  bottom and right neighbours (top / left of theirs) and the same element of the next channel coded (its
  `prev`). With activation bits an inactive channel costs nothing but its bit and is never changed (its
  sites report their value as the most probable); a change that leaves a channel with no element off its
  mode deactivates it, and the rate change of that site then counts the channel's whole symbol cost and the
  bit's change. Like every rate change it is decided from the state at the start of its group, so another
  site of the same group leaving the mode at the same time would keep the channel active (the estimate is
  then off by that channel's cost; the bitstream is exact either way, it only codes what was chosen).
- Distortion through g_s for integer g_s graphs, whose batch dimension is fixed to 1 (the digit lowering
  uses the batch axis): a package that carries its float weights (the lowcomplexity family) measures D with
  the float g_s those integers were calibrated on, batched (17x faster per crop than the integer graph one
  crop at a time, measured on lowcomplexity/q2); one without (int16-full hyperprior packages) runs its own
  integer g_s one crop at a time (`SequentialSynthesis`), exact and slow.
"""

from __future__ import annotations

import io

import numpy as np

from codec import contexts, networks
from codec.rdoq import (
    CropDistortion,
    Problem,
    RdoqOptions,
    RdoqStats,
    Sites,
    TableRate,
    batched_synthesis,
    default_radius,
    g_s_specs,
    lambda_weight,
    optimise,
    total_rate,
)

PIXEL_MAX = np.float32(255.0)


def _no_context_index() -> np.ndarray:
    return np.zeros((1, 1, 1, 1), np.int64)


class ContextRate:
    """RateModel of a ContextModel on a latent in coding order [1, K, H, W]."""

    context_offsets: tuple[tuple[int, int, int], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))

    def __init__(self, model: contexts.ContextModel) -> None:
        self.model = model
        self.eps = model.thresholds[model.order]
        self.modes = model.modes[model.order]
        self.first_table = model.contexts * model.order  # the table of position k in context 0
        self.symbols = TableRate(model.tables, _no_context_index())
        self.bits = None
        if model.activation_tables is not None:
            self.bits = TableRate(model.activation_tables, _no_context_index())

    # --- RateModel ---

    def costs(self, symbols: np.ndarray, sites: Sites, changed: Sites, values: np.ndarray) -> np.ndarray:
        planes = symbols[0]
        value = _value_at(planes, sites, changed, values)[0]
        cost = self.symbols.value_costs(self._tables(planes, sites, changed, values), value)
        counts = self._off_mode_counts(planes)
        cost = np.where(counts[sites[0]] > 0, cost, 0)
        if self.bits is not None:
            cost += self._deactivation(planes, sites, changed, values, counts)
        return cost

    def most_probable(self, symbols: np.ndarray, sites: Sites) -> np.ndarray:
        planes = symbols[0]
        current = planes[sites].astype(np.int64)
        table = self._tables(planes, sites, sites, current)
        active = self._off_mode_counts(planes)[sites[0]] > 0
        return np.where(active, self.symbols._mode[table], current)

    # --- pieces ---

    def _tables(self, planes: np.ndarray, sites: Sites, changed: Sites, values: np.ndarray) -> np.ndarray:
        """eq. 3's table of each site with changed[i] set to values[i]."""
        k = sites[0]
        table = self.first_table[k]
        if self.model.contexts == 1:
            return table
        for offset, eps in (((0, -1, 0), self.eps[k]), ((0, 0, -1), self.eps[k]), ((-1, 0, 0), None)):
            target = tuple(axis + step for axis, step in zip(sites, offset, strict=True))
            value, inside = _value_at(planes, target, changed, values)
            threshold = self.eps[np.maximum(target[0], 0)] if eps is None else eps
            table = table + (inside & (value >= threshold))
        return table

    def _off_mode_counts(self, planes: np.ndarray) -> np.ndarray:
        """Elements of each position's plane other than its mode; all positive without activation bits."""
        if self.bits is None:
            return np.ones(planes.shape[0], np.int64)
        return np.count_nonzero(planes != self.modes[:, None, None], axis=(1, 2))

    def _deactivation(
        self, planes: np.ndarray, sites: Sites, changed: Sites, values: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        """At a changed site whose new value empties its channel: bit(0) - bit(1) minus the channel's cost
        after the change, so that with its dependents' changes the total is the channel's saving (module
        docstring)."""
        extra = np.zeros(len(sites[0]), np.int64)
        k = sites[0]
        own = (k == changed[0]) & (sites[1] == changed[1]) & (sites[2] == changed[2])
        empties = own & (counts[k] == 1) & (planes[sites] != self.modes[k]) & (values == self.modes[k])
        for i in np.flatnonzero(empties):
            channel = self.model.order[k[i]]
            bits = self.bits.value_costs(np.array([channel, channel]), np.array([0, 1]))
            extra[i] = bits[0] - bits[1] - self._plane_cost(planes, k[i], (sites[1][i], sites[2][i]))
        return extra

    def _plane_cost(self, planes: np.ndarray, k: int, emptied: tuple[int, int]) -> int:
        """Symbol cost of plane k with the element at `emptied` set to its mode."""
        plane = planes[k].astype(np.int64).copy()
        plane[emptied] = self.modes[k]
        above = plane >= self.eps[k]
        context = np.zeros_like(plane)
        if self.model.contexts > 1:
            context[1:, :] += above[:-1, :]
            context[:, 1:] += above[:, :-1]
            if k > 0:
                context += planes[k - 1] >= self.eps[k - 1]
        table = self.first_table[k] + context
        return int(self.symbols.value_costs(table.reshape(-1), plane.reshape(-1)).sum())

    def activation_cost(self, symbols: np.ndarray) -> int:
        """RATE_UNIT of the activation bits of a latent in coding order (0 without them)."""
        if self.bits is None:
            return 0
        active = (self._off_mode_counts(symbols[0]) > 0).astype(np.int64)
        return int(self.bits.value_costs(self.model.order, active).sum())


def _value_at(planes: np.ndarray, target: Sites, changed: Sites, values: np.ndarray):  # type: ignore[no-untyped-def]
    """(value at each target with changed[i] = values[i], whether the target is inside the latent)."""
    (k, y, x), (depth, height, width) = target, planes.shape
    inside = (k >= 0) & (k < depth) & (y >= 0) & (y < height) & (x >= 0) & (x < width)
    clipped = (np.minimum(np.maximum(k, 0), depth - 1), np.minimum(np.maximum(y, 0), height - 1))
    value = planes[(*clipped, np.minimum(np.maximum(x, 0), width - 1))]
    same = (k == changed[0]) & (y == changed[1]) & (x == changed[2])
    return np.where(same, values, value).astype(np.int64), inside


# --- g_s sessions ----------------------------------------------------------------------------------------


class PermutedSynthesis:
    """A batched g_s fed crops whose channels are in coding order."""

    def __init__(self, session, order: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        self.session, self.inverse = session, np.argsort(order)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.session.run({"y_hat": np.ascontiguousarray(feeds["y_hat"][:, self.inverse])})


class SequentialSynthesis:
    """An integer g_s graph (int32 y_hat in units of 2^-input_bits, uint8 pixels out, batch 1) behind the
    float interface CropDistortion uses: real latents in, x_hat = pixels / 255 out (rint(255 x_hat) gives
    the pixels back exactly)."""

    def __init__(self, session, input_bits: int) -> None:  # type: ignore[no-untyped-def]
        self.session, self.scale = session, np.float64(2.0**input_bits)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fixed = np.rint(np.asarray(feeds["y_hat"], np.float64) * self.scale).astype(np.int32)
        pixels = [np.asarray(self.session.run({"y_hat": crop[None]})["x_hat"]) for crop in fixed]
        return {"x_hat": np.concatenate(pixels).astype(np.float32) / PIXEL_MAX}


def graph_input_bits(model: bytes) -> int:
    """The `bitmatch.gs.input_bits` of an integer g_s graph (codec/intsynth.py)."""
    import onnx

    meta = {entry.key: entry.value for entry in onnx.load_from_string(model).metadata_props}
    return int(meta["bitmatch.gs.input_bits"])


def integer_synthesis_session(backend, model: bytes) -> SequentialSynthesis:  # type: ignore[no-untyped-def]
    return SequentialSynthesis(backend.session(model, retain_memory=True), graph_input_bits(model))


def lowcx_synthesis(codec):  # type: ignore[no-untyped-def]
    """The batched g_s RDOQ measures D with (module docstring), channels in the package's order."""
    from codec.package import SYNTHESIS, WEIGHTS
    from codec.vocabulary import Precision

    package = codec.package
    if not Precision(codec.precision).integer_synthesis:
        session = codec._backend.session(batched_synthesis(package.read(SYNTHESIS)), retain_memory=True)
    elif WEIGHTS in package.manifest["files"]:
        weights = dict(np.load(io.BytesIO(package.read(WEIGHTS))))
        model = batched_synthesis(networks.synthesis_model(codec.arch, weights))
        session = codec._backend.session(model, retain_memory=True)
    else:
        session = integer_synthesis_session(codec._backend, package.read(SYNTHESIS))
    return PermutedSynthesis(session, codec.model.order)


# --- the search ------------------------------------------------------------------------------------------


def manifest_lambda(manifest: dict) -> dict:
    """The lambda of a lowcomplexity manifest: its own, or its training's."""
    lmbda = manifest.get("lambda", manifest.get("training", {}).get("lambda"))
    return {} if lmbda is None else {"lambda": lmbda}


def optimise_lowcx(codec, image: np.ndarray, y_hat: np.ndarray, options: RdoqOptions):  # type: ignore[no-untyped-def]
    """RDOQ of a lowcomplexity package's y_hat [1, M, H, W] int32; returns (new y_hat, RdoqStats)."""
    manifest = codec.package.manifest
    weight = lambda_weight(manifest_lambda(manifest), options.lmbda)
    radius = default_radius(g_s_specs(manifest)) if options.radius is None else options.radius
    model: contexts.ContextModel = codec.model
    planes = np.ascontiguousarray(np.asarray(y_hat, np.int32)[:, model.order])
    if codec._rdoq_synthesis is None:
        codec._rdoq_synthesis = lowcx_synthesis(codec)
    distortion = CropDistortion(codec._rdoq_synthesis, planes.astype(np.float32), image, radius)
    rate = ContextRate(model)

    def real(values: np.ndarray, sites: Sites) -> np.ndarray:
        return np.asarray(values, np.float32)

    problem = Problem(planes, rate, distortion, real, weight)
    stats = RdoqStats(radius=radius, weight=weight)
    stats.rate_before = total_rate(rate, planes) + rate.activation_cost(planes)
    stats.changes = optimise(problem, options.passes, options.batch_sites)
    stats.rate_after = total_rate(rate, planes) + rate.activation_cost(planes)
    out = np.empty_like(planes)
    out[:, model.order] = planes
    return out, stats
