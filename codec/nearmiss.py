"""How close a float entropy path came to failing between two devices: drift, margins, predicted flips, risk.

A float h_s output v becomes a decision by rounding: a scale index (`floor(u N)` for our level head, the
scale-table thresholds for CompressAI's) or a fixed-point mean (`round(mean 2^m)`). Each decision keeps the
same value for every v inside an interval around the encoder's value (`Interval`); the distances to its ends
are the element's margins. The decoder's device computes v' = v + d, d its drift. The decision flips exactly
when d carries v' past an end of the interval (`Interval.flips`), so the flips predicted from the drift and
the margins equal, element for element, the flips the decoder's scale indexes and means show.

Risk (`flip_probability`, `failure_probability`). An image that survived tonight says little about the
next one. The estimate treats an element's position in its interval and its drift as independent draws from
what the cell measured: q = P(d > above or -d > below) over every pair (margins of element i, drift of
element j) of the cell, which sorting makes O(n log n). An image fails when any of its elements flips (an
index flip desynchronises the arithmetic decoder, a mean flip changes y_hat silently), so with n_k elements
of decision kind k in a 768x512 image, P(fail) = 1 - prod_k (1 - q_k)^(n_k). The assumptions are that drift
does not depend on where a value sits between two boundaries, and that flips of different elements are
independent; tests/codec/test_nearmiss.py checks the estimate against simulated images with a known drift.

Integer packages have no such risk: their h_s is exact by its overflow certificate (codec/intnet.py), so
both devices compute the same integers and no decision can flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec.heads import Head, LevelHead

REFERENCE_HEIGHT, REFERENCE_WIDTH = 512, 768  # the Kodak size the risk is quoted for


@dataclass(frozen=True)
class Interval:
    """Per element, the values that keep the encoder's decision: from `lo` to `hi` (float64, +-inf where
    there is no end). `flips_at_lo` / `flips_at_hi`: whether a value exactly at that end already flips."""

    lo: np.ndarray
    hi: np.ndarray
    flips_at_lo: np.ndarray
    flips_at_hi: np.ndarray

    def margins(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(below, above): how far each value may move down or up before its decision changes."""
        v = np.asarray(values, np.float64)
        return v - self.lo, self.hi - v

    def flips(self, values: np.ndarray, drift: np.ndarray) -> np.ndarray:
        """Whether each element's decision changes when its value moves by `drift` (the predicted flips)."""
        below, above = self.margins(values)
        d = np.asarray(drift, np.float64)
        up = (d > above) | ((d == above) & self.flips_at_hi)
        down = (-d > below) | ((-d == below) & self.flips_at_lo)
        return up | down

    def margin_ulps(self, values: np.ndarray) -> np.ndarray:
        """Per element, the fewest float32 steps that flip its decision (int64; -1 where nothing can)."""
        v = np.asarray(values, np.float32)
        steps = []
        for end, flips_at_end in ((self.lo, self.flips_at_lo), (self.hi, self.flips_at_hi)):
            finite = np.isfinite(end)
            to_end = ulp_distance(v, np.where(finite, end, 0).astype(np.float32)) + ~flips_at_end
            steps.append(np.where(finite, to_end, np.iinfo(np.int64).max))
        nearest = np.minimum(*steps)
        return np.where(nearest == np.iinfo(np.int64).max, -1, nearest)


def level_interval(u: np.ndarray, levels: int) -> Interval:
    """`k = clip(floor(u N), 0, N - 1)`: k holds on [k/N, (k+1)/N), open-ended at both clipped ends."""
    u = np.asarray(u, np.float32)
    k = np.clip(np.floor(u * np.float32(levels)), 0, levels - 1).astype(np.float64)
    lo = np.where(k == 0, -np.inf, k / levels)
    hi = np.where(k == levels - 1, np.inf, (k + 1) / levels)
    return Interval(lo, hi, np.zeros(u.shape, bool), np.ones(u.shape, bool))


def rounding_interval(mean: np.ndarray, fraction_bits: int) -> Interval:
    """`j = round(mean 2^m)`, halves to even: j holds on [(j - 1/2), (j + 1/2)] 2^-m, an end included
    exactly when j is even (a value there rounds to j)."""
    mean = np.asarray(mean, np.float32)
    scale = 2.0**fraction_bits
    j = np.rint(mean.astype(np.float64) * scale)
    odd = (j % 2) != 0
    return Interval((j - 0.5) / scale, (j + 0.5) / scale, odd, odd)


def threshold_interval(sigma: np.ndarray, thresholds: np.ndarray, bound: float) -> Interval:
    """`index = (L - 1) - #{t : max(sigma, bound) <= t}` over the counted thresholds (all >= bound): the
    index holds while max(sigma, bound) stays in (lo, hi], lo and hi the neighbouring thresholds."""
    t = np.sort(np.asarray(thresholds, np.float64))
    s = np.maximum(np.asarray(sigma, np.float32), np.float32(bound)).astype(np.float64)
    position = np.searchsorted(t, s, side="left")  # first threshold >= s
    padded = np.concatenate(([-np.inf], t, [np.inf]))
    lo, hi = padded[position], padded[position + 1]
    return Interval(lo, hi, np.ones(s.shape, bool), np.zeros(s.shape, bool))


@dataclass(frozen=True)
class Decision:
    """One rounding of the float h_s output the parse depends on: its stage, the float values it rounds
    (the encoder's), and their intervals."""

    stage: str
    values: np.ndarray
    interval: Interval


def decisions(head: Head, raw: np.ndarray) -> list[Decision]:
    """The decisions a float package takes from its raw h_s output [1, C, H, W] (codec/heads.py's float
    semantics): the scale index always; the mean only where it is rounded to fixed point (our float twin).
    A float mean (imported float packages) is added to the symbols unrounded, so it never flips the parse."""
    m = head.latent_channels(raw.shape[1])
    scale = np.asarray(raw[:, :m], np.float32)
    if isinstance(head, LevelHead):
        mean = np.asarray(raw[:, m:], np.float32)
        return [
            Decision("scale_index", scale, level_interval(scale, head.levels)),
            Decision("mean", mean, rounding_interval(mean, head.mean_bits)),
        ]
    interval = threshold_interval(scale, head.counted_thresholds(), head.scale_bound)
    return [Decision("scale_index", scale, interval)]


# --- drift between two devices -----------------------------------------------------------------------


@dataclass(frozen=True)
class DriftFigures:
    """How far apart two devices computed one tensor."""

    elements: int
    differing: int
    max_abs_diff: float
    max_ulp: int

    @property
    def fraction(self) -> float:
        return self.differing / self.elements if self.elements else 0.0


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise distance in units in the last place: the number of float32 values between a and b (for
    integer tensors, the absolute difference)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind != "f" and b.dtype.kind != "f":
        return np.abs(a.astype(np.int64) - b.astype(np.int64))
    return np.abs(_ordered(a) - _ordered(b))


def _ordered(values: np.ndarray) -> np.ndarray:
    """float32 bit patterns as int64 that order like the floats (and put -0 and +0 together)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def drift_figures(a: np.ndarray, b: np.ndarray) -> DriftFigures:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare tensors of shapes {a.shape} and {b.shape}")
    if a.size == 0:
        return DriftFigures(0, 0, 0.0, 0)
    if a.dtype == b.dtype and a.tobytes() == b.tobytes():  # the usual cell: nothing drifted
        return DriftFigures(int(a.size), 0, 0.0, 0)
    differ = a != b
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        differ &= ~(np.isnan(a) & np.isnan(b))
    ulps = ulp_distance(a, b)
    abs_diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return DriftFigures(int(a.size), int(differ.sum()), float(np.nanmax(abs_diff)), int(ulps.max()))


# --- risk ----------------------------------------------------------------------------------------------


def flip_probability(interval: Interval, values: np.ndarray, drift: np.ndarray) -> float:
    """q: the chance that one element flips, its position drawn from the measured margins and its drift from
    the measured drifts, independently (every margin paired with every drift)."""
    below, above = interval.margins(values)
    below, above = below.ravel(), above.ravel()
    d = np.sort(np.asarray(drift, np.float64).ravel())
    n = d.size
    if n == 0 or below.size == 0:
        return 0.0
    at_hi, at_lo = interval.flips_at_hi.ravel(), interval.flips_at_lo.ravel()
    up = n - np.where(at_hi, np.searchsorted(d, above, "left"), np.searchsorted(d, above, "right"))
    down = np.where(at_lo, np.searchsorted(d, -below, "right"), np.searchsorted(d, -below, "left"))
    return float(np.mean(np.minimum(up + down, n)) / n)


def failure_probability(flip_probabilities: list[tuple[float, int]]) -> float:
    """P(at least one flip in an image) from (q, elements per image) per decision kind."""
    if any(q >= 1.0 and elements > 0 for q, elements in flip_probabilities):
        return 1.0
    log_survive = sum(elements * np.log1p(-q) for q, elements in flip_probabilities if q > 0)
    return float(-np.expm1(log_survive))
