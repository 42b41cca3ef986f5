"""Fitting the context-switching model (codec/contexts.py) to a set of integer training latents.

Section 3.1 of Galpin et al., "Entropy coding improvement for low-complexity compressive auto-encoders":
per-channel thresholds that minimise the channel's entropy under spatial-only contexts (K1, section 3.1.5),
a greedy channel order that takes next the channel whose entropy the previous channel lowers most (K2 against
K1, section 3.1.4), then the cumulative histograms of every channel and context (Listing 1) turned into
integer CDFs, and the activation probability of every channel (section 3.1.2). Float maths is used here only,
to build tables once; the codec decides nothing in float.

Choices the paper leaves open: entropies are empirical (bits of the training latents under their own
histograms); a context's histogram is smoothed towards its channel's histogram with the weight of
`SMOOTHING` samples (rare contexts get their channel's shape, not noise); every table spans the channel's
observed values with an escape either side, whose mass is that of `ESCAPE_MASS`; the activation probability
is kept within [1/256, 255/256].
"""

from __future__ import annotations

import numpy as np

from codec.contexts import ContextModel, count_contexts
from codec.tables import CodeTables, tables_from_pmfs

SMOOTHING = 16.0
ESCAPE_MASS = 1e-6
FLOOR_MASS = 0.05  # pseudo-count of every value inside a table's range
MAX_SPAN = 512
_ACTIVE_LIMIT = 1.0 / 256


def fit(latents: np.ndarray, contexts: int = 4, activation: bool = True) -> ContextModel:
    """A ContextModel for integer latents [B, M, H, W] (B images of one latent size)."""
    lat = np.asarray(latents, np.int64)
    lows, highs, modes = _ranges(lat)
    if contexts == 1:
        thresholds = modes + 1
        order = np.arange(lat.shape[1], dtype=np.int64)
    else:
        thresholds, k1_bits = _thresholds(lat, lows, highs)
        order = _order(lat, thresholds, lows, highs, k1_bits)
    active = _active_instances(lat, modes) if activation else np.ones(lat.shape[:2], bool)
    tables = _context_tables(lat, order, thresholds, lows, highs, contexts, active)
    activation_tables = _activation_tables(active) if activation else None
    return ContextModel(tables, activation_tables, order, thresholds, modes, contexts)


def _ranges(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: the lowest and highest value its tables spell out, and its most probable value (ties: the
    lowest)."""
    lows, highs, modes = [], [], []
    for channel in np.moveaxis(lat, 1, 0).reshape(lat.shape[1], -1):
        low, high = int(channel.min()), int(channel.max())
        mode = low + int(np.argmax(np.bincount(channel - low)))
        low, high = max(low, mode - MAX_SPAN // 2), min(high, mode + MAX_SPAN // 2)
        lows.append(low)
        highs.append(high)
        modes.append(mode)
    return np.array(lows), np.array(highs), np.array(modes)


def _bits(values: np.ndarray, context: np.ndarray, span: int, count: int) -> float:
    """Empirical conditional entropy, in bits, of `values` (offset to [0, span)) given `context`."""
    joint = np.bincount(context.reshape(-1) * span + values.reshape(-1), minlength=count * span)
    joint = joint.reshape(count, span).astype(np.float64)
    totals = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log2(np.where(joint > 0, joint, 1) / totals), 0.0)
    return float(-terms.sum())


def _spatial(above: np.ndarray) -> np.ndarray:
    """top + left of every element of [B, H, W] planes (K1 contexts)."""
    above = above.astype(np.int64)
    context = np.zeros_like(above)
    context[:, 1:, :] += above[:, :-1, :]
    context[:, :, 1:] += above[:, :, :-1]
    return context


def _clipped(lat: np.ndarray, c: int, lows: np.ndarray, highs: np.ndarray) -> tuple[np.ndarray, int]:
    return np.clip(lat[:, c], lows[c], highs[c]) - lows[c], int(highs[c] - lows[c] + 1)


def _thresholds(lat: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the threshold of least K1 entropy (ties: the lowest), and that entropy in bits."""
    thresholds, best_bits = [], []
    for c in range(lat.shape[1]):
        values, span = _clipped(lat, c, lows, highs)
        candidates = range(int(lows[c]) + 1, int(highs[c]) + 1) or [int(highs[c]) + 1]
        scored = [(_bits(values, _spatial(lat[:, c] >= eps), span, 3), eps) for eps in candidates]
        bits, eps = min(scored)
        thresholds.append(eps)
        best_bits.append(bits)
    return np.array(thresholds), np.array(best_bits)


def _order(
    lat: np.ndarray, thresholds: np.ndarray, lows: np.ndarray, highs: np.ndarray, k1_bits: np.ndarray
) -> np.ndarray:
    """Greedy channel order: the channel of highest K1 entropy first, then each time the remaining channel
    whose K2 entropy given the last one gains most over its K1 entropy."""
    above = lat >= thresholds[None, :, None, None]
    spatial = [_spatial(above[:, c]) for c in range(lat.shape[1])]
    order = [int(np.argmax(k1_bits))]
    remaining = [c for c in range(lat.shape[1]) if c != order[0]]
    while remaining:
        prev = above[:, order[-1]].astype(np.int64)
        gains = []
        for c in remaining:
            values, span = _clipped(lat, c, lows, highs)
            gains.append(k1_bits[c] - _bits(values, spatial[c] + prev, span, 4))
        order.append(remaining.pop(int(np.argmax(gains))))
    return np.array(order)


def _active_instances(lat: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """bool [B, M]: whether channel c of image b has an element other than the channel's mode."""
    return np.any(lat != modes[None, :, None, None], axis=(2, 3))


def _context_tables(
    lat: np.ndarray,
    order: np.ndarray,
    thresholds: np.ndarray,
    lows: np.ndarray,
    highs: np.ndarray,
    contexts: int,
    active: np.ndarray,
) -> CodeTables:
    """Listing 1: the histogram of every (channel, context) over the coded (active) channels -> CDFs."""
    ordered = lat[:, order]
    if contexts == 1:
        context = np.zeros_like(ordered)
    else:
        above = ordered >= thresholds[order][None, :, None, None]
        context = np.stack([count_contexts(planes) for planes in above])
    pmfs: list[np.ndarray] = [np.zeros(0)] * (contexts * lat.shape[1])
    offsets = np.zeros(contexts * lat.shape[1], np.int64)
    for k, c in enumerate(order.tolist()):
        values, span = _clipped(lat, c, lows, highs)
        keep = active[:, c]
        hist = np.bincount(
            (context[keep, k] * span + values[keep]).reshape(-1), minlength=contexts * span
        ).reshape(contexts, span)
        channel = hist.sum(axis=0) + FLOOR_MASS
        channel = channel / channel.sum()
        for ctx in range(contexts):
            counts = hist[ctx] + SMOOTHING * channel
            pmfs[contexts * c + ctx] = _with_escapes(counts / counts.sum())
            offsets[contexts * c + ctx] = lows[c] - 1
    return tables_from_pmfs(pmfs, offsets)


def _with_escapes(pmf: np.ndarray) -> np.ndarray:
    return np.concatenate([[ESCAPE_MASS], pmf, [ESCAPE_MASS]])


def _activation_tables(active: np.ndarray) -> CodeTables:
    """One binary table per channel: value 0 (inactive) or 1 (active), escapes around them."""
    probability = np.clip(active.mean(axis=0), _ACTIVE_LIMIT, 1 - _ACTIVE_LIMIT)
    pmfs = [_with_escapes(np.array([1 - p, p])) for p in probability]
    return tables_from_pmfs(pmfs, np.full(len(pmfs), -1))
