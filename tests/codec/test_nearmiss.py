"""Margins, predicted flips and the failure-probability estimate (codec/nearmiss.py).

The flip rule is checked against the heads' own float rules (codec/heads.py) on values placed on, next to and
between the boundaries; the estimator against simulated images whose drift has a known distribution.
"""

import numpy as np
import pytest

from codec.heads import LevelHead, ScaleTableHead, float_outputs
from codec.nearmiss import (
    DriftFigures,
    decisions,
    drift_figures,
    failure_probability,
    flip_probability,
    level_interval,
    rounding_interval,
    threshold_interval,
    ulp_distance,
)

RNG_SEED = 20261201


def near_boundaries(boundaries: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """float32 values on the boundaries, one or a few ulps either side, and anywhere between."""
    picks = rng.choice(boundaries, count).astype(np.float32)
    steps = rng.integers(-3, 4, count)
    around = picks.copy()
    for _ in range(3):
        around = np.where(steps > 0, np.nextafter(around, np.float32(np.inf)), around)
        around = np.where(steps < 0, np.nextafter(around, np.float32(-np.inf)), around)
        steps = steps - np.sign(steps)
    spread = rng.uniform(boundaries.min() - 0.2, boundaries.max() + 0.2, count).astype(np.float32)
    return np.concatenate([picks, around, spread])


def pairs(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(encoder values, decoder values) with every kind of move, as float32."""
    other = rng.permutation(values)
    nudged = values.copy()
    for _ in range(int(rng.integers(1, 3))):
        nudged = np.nextafter(nudged, np.where(rng.random(values.size) < 0.5, -np.inf, np.inf)).astype(
            np.float32
        )
    return np.concatenate([values, values, values]), np.concatenate([values, other, nudged])


def test_level_flips_are_exactly_the_level_changes():
    rng = np.random.default_rng(RNG_SEED)
    head = LevelHead(64, 8)
    u = near_boundaries(np.arange(-1, 66) / 64, rng, 4000)
    enc, dec = pairs(u, rng)
    predicted = level_interval(enc, head.levels).flips(enc, dec.astype(np.float64) - enc)
    assert np.array_equal(predicted, head.float_index(enc) != head.float_index(dec))
    assert predicted.any() and not predicted.all()


def test_mean_flips_are_exactly_the_fixed_point_changes_halves_to_even():
    rng = np.random.default_rng(RNG_SEED + 1)
    mean_bits = 8
    means = near_boundaries((np.arange(-600, 600) + 0.5) / 2**mean_bits, rng, 4000)
    enc, dec = pairs(means, rng)
    predicted = rounding_interval(enc, mean_bits).flips(enc, dec.astype(np.float64) - enc)
    fixed = [np.rint(v.astype(np.float32) * np.float32(2**mean_bits)) for v in (enc, dec)]
    assert np.array_equal(predicted, fixed[0] != fixed[1])
    exactly_half = np.float32(3.5 / 2**mean_bits)  # rounds to 4: a value a hair below flips back to 3
    assert not rounding_interval(np.array([exactly_half]), mean_bits).flips(
        np.array([exactly_half]), np.array([0.0])
    )[0]


def test_scale_table_flips_are_exactly_the_build_indexes_changes():
    rng = np.random.default_rng(RNG_SEED + 2)
    table = np.exp(np.linspace(np.log(0.11), np.log(256), 64)).astype(np.float32)
    table[0] = np.float32(0.10999999)  # CompressAI's first entry sits below its bound and never counts
    head = ScaleTableHead(tuple(float(t) for t in table), 0.11, None)
    sigma = near_boundaries(np.concatenate([table, [0.11, 0.05, 300.0]]), rng, 4000)
    enc, dec = pairs(sigma, rng)
    interval = threshold_interval(enc, head.counted_thresholds(), head.scale_bound)
    predicted = interval.flips(enc, dec.astype(np.float64) - enc)
    assert np.array_equal(predicted, head.float_index(enc) != head.float_index(dec))


def test_decisions_follow_the_heads_float_semantics():
    rng = np.random.default_rng(RNG_SEED + 3)
    head = LevelHead(64, 8)
    raw = rng.normal(0.5, 0.4, (1, 8, 4, 6)).astype(np.float32)
    index, mean = float_outputs(head, raw)
    found = {d.stage: d for d in decisions(head, raw)}
    assert set(found) == {"scale_index", "mean"}
    lo, hi = found["scale_index"].interval.lo, found["scale_index"].interval.hi
    assert np.all((index == 0) | (raw[:, :4] >= lo)) and np.all(raw[:, :4] < hi)
    assert np.allclose(mean, np.rint(raw[:, 4:] * 256) / 256)
    no_mean = ScaleTableHead((0.11, 0.2, 0.4), 0.11, None)
    assert [d.stage for d in decisions(no_mean, raw[:, :4])] == ["scale_index"]


def test_ulp_distance_counts_the_floats_between():
    one = np.float32(1)
    assert ulp_distance(np.array([one]), np.array([np.nextafter(one, np.float32(2))]))[0] == 1
    assert ulp_distance(np.array([np.float32(0.0)]), np.array([np.float32(-0.0)]))[0] == 0
    tiny = np.nextafter(np.float32(0), np.float32(1))
    assert ulp_distance(np.array([tiny]), np.array([-tiny]))[0] == 2
    assert ulp_distance(np.array([5], np.int32), np.array([2], np.int32))[0] == 3
    figures = drift_figures(np.array([1.0, 2.0, 3.0], np.float32), np.array([1.0, 2.5, 3.0], np.float32))
    assert (figures.elements, figures.differing, figures.max_abs_diff) == (3, 1, 0.5)
    assert figures.max_ulp == 2**21 and figures.fraction == pytest.approx(1 / 3)


def test_identical_tensors_have_no_drift_and_signed_zeros_still_count_as_equal():
    values = np.array([[0.5, np.nan], [-3.0, np.inf]], np.float32)
    assert drift_figures(values, values.copy()) == DriftFigures(4, 0, 0.0, 0)
    zeros = drift_figures(np.array([0.0, 1.0], np.float32), np.array([-0.0, 1.0], np.float32))
    assert (zeros.differing, zeros.max_abs_diff, zeros.max_ulp) == (0, 0.0, 0)


def simulate_image_failures(
    rng: np.random.Generator, images: int, elements: int, levels: int, moving: float, scale: float
) -> float:
    """Fraction of simulated images with at least one level flip: each element's u is uniform, a fraction
    `moving` of them drift by Laplace(0, scale) and the rest not at all."""
    failed = 0
    for _ in range(images):
        count = rng.binomial(elements, moving)
        u = rng.uniform(0, 1, count)
        drift = rng.laplace(0, scale, count)
        before = np.clip(np.floor(u * levels), 0, levels - 1)
        after = np.clip(np.floor((u + drift) * levels), 0, levels - 1)
        failed += bool(np.any(before != after))
    return failed / images


@pytest.mark.parametrize("moving, scale", [(0.02, 2e-5), (0.05, 1.5e-5)])
def test_the_failure_estimate_is_within_20_percent_of_simulated_images(moving, scale):
    """One measured image gives the estimate; 10^4 simulated images of the same kind give the rate."""
    rng = np.random.default_rng(RNG_SEED + 4)
    levels, elements = 64, 20_000
    u = rng.uniform(0, 1, elements).astype(np.float32)
    drift = np.where(rng.random(elements) < moving, rng.laplace(0, scale, elements), 0.0)
    q = flip_probability(level_interval(u, levels), u, drift)
    estimate = failure_probability([(q, elements)])
    simulated = simulate_image_failures(rng, 10_000, elements, levels, moving, scale)
    print(f"moving {moving}, scale {scale}: estimated {estimate:.4f}, simulated {simulated:.4f}")
    assert 0.1 < simulated < 0.9  # a rate the comparison can resolve
    assert abs(estimate - simulated) <= 0.2 * simulated


def test_no_drift_means_no_risk_and_certain_flips_mean_certain_failure():
    u = np.linspace(0.01, 0.45, 100).astype(np.float32)
    interval = level_interval(u, 64)
    assert flip_probability(interval, u, np.zeros(100)) == 0.0
    assert failure_probability([(0.0, 10**6)]) == 0.0
    assert flip_probability(interval, u, np.full(100, 0.5)) == 1.0
    assert failure_probability([(1.0, 5)]) == 1.0


def test_margins_in_ulps_are_the_steps_that_flip():
    head = LevelHead(64, 8)
    boundary = np.float32(10 / 64)
    below = np.nextafter(np.nextafter(boundary, np.float32(0)), np.float32(0))  # two steps below 10/64
    values = np.array([boundary, below], np.float32)
    ulps = level_interval(values, head.levels).margin_ulps(values)
    assert ulps.tolist() == [1, 2]  # at k/N one step down flips; two steps up reach k/N, where k changes
    clipped = np.array([-5.0], np.float32)  # level 0 below zero: only the way up, to 1/64
    assert (
        level_interval(clipped, 64).margin_ulps(clipped)[0] == ulp_distance(clipped, np.float32([1 / 64]))[0]
    )
    j_even = np.array([2.5 / 256], np.float32)  # exactly half-way, rounds to the even 2: the end stays
    assert rounding_interval(j_even, 8).margin_ulps(j_even)[0] == 1
