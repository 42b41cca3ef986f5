"""sigma = T(u) of paper 000: the ODE, the polynomial T_pi, level sigmas and the redundancy they give."""

import math

import numpy as np
import pytest

from codec import scale

RANGES = [(0.11, 256.0), (0.1, 1000.0)]


@pytest.mark.parametrize("sigma_min, sigma_max", RANGES)
@pytest.mark.parametrize("kind", ["ode", "poly"])
def test_endpoints_monotonic_and_inverse(kind, sigma_min, sigma_max):
    mapping = scale.mapping(kind, sigma_min, sigma_max)
    assert mapping.sigma(0.0) == sigma_min
    assert mapping.sigma(1.0) == sigma_max
    u = np.linspace(0.0, 1.0, 4001)
    sigma = mapping.sigma(u)
    assert (np.diff(sigma) > 0).all()
    assert mapping.sigma(-0.5) == sigma_min and mapping.sigma(1.5) == sigma_max
    np.testing.assert_allclose(mapping.u(sigma), u, atol=1e-8)


def test_psi_is_the_curvature_of_relative_redundancy():
    # eq. 13: psi(sigma) = d^2/dsigma^2 L(sigma, rho) at rho = sigma, and L(rho, rho) = 0.
    for sigma in (0.2, 0.5, 3.0, 40.0):
        h = 1e-3 * sigma
        both_sides = scale.relative_redundancy(sigma + h, sigma) + scale.relative_redundancy(sigma - h, sigma)
        curvature = both_sides / h**2
        assert curvature == pytest.approx(float(scale.psi(sigma)), rel=1e-4)


def test_entropy_and_psi_limits_for_wide_gaussians():
    sigma = 60.0
    entropy = float(scale.entropy_bits(sigma))
    assert entropy == pytest.approx(math.log2(math.sqrt(2 * math.pi * math.e) * sigma), abs=1e-4)
    # Fisher information of sigma for a wide Gaussian is 2 / sigma^2 nats.
    assert float(scale.psi(sigma)) == pytest.approx(2.0 / (sigma**2 * math.log(2) * entropy), rel=1e-3)


@pytest.mark.parametrize("sigma_min, sigma_max", RANGES)
def test_ode_holds(sigma_min, sigma_max):
    # eq. 14: dT/du * sqrt(psi(T(u))) = sqrt(alpha), the same at every u.
    mapping = scale.ode_mapping(sigma_min, sigma_max)
    u = np.linspace(0.02, 0.98, 25)
    h = 1e-4
    slope = (mapping.sigma(u + h) - mapping.sigma(u - h)) / (2 * h)
    product = slope * np.sqrt(scale.psi(mapping.sigma(u)))
    assert product.max() / product.min() - 1 < 1e-5


def test_poly_is_eq18_on_its_own_range_and_close_to_the_ode():
    ode, poly = scale.ode_mapping(0.1, 1000.0), scale.poly_mapping(0.1, 1000.0)
    u = np.linspace(0.0, 1.0, 201)
    np.testing.assert_allclose(poly.sigma(u), 10.0 ** np.polyval(scale.POLY_COEFFS, u), rtol=1e-12)
    assert np.abs(np.log10(poly.sigma(u)) - np.log10(ode.sigma(u))).max() < 0.1
    # T_pi is the paper's minimax fit of the derivative: relative derivative error within about +-17 %.
    inner = u[5:-5]
    d_ode = np.gradient(np.log(ode.sigma(u)), u)[5:-5]
    d_poly = np.polyval(np.polyder(scale.POLY_COEFFS), inner) * math.log(10)
    assert np.abs(d_poly / d_ode - 1).max() < 0.2


def test_poly_maps_its_exponent_affinely_onto_other_ranges():
    poly = scale.poly_mapping(0.11, 256.0)
    fraction = (np.polyval(scale.POLY_COEFFS, 0.5) + 1.0) / 4.0
    expected = math.exp(math.log(0.11) + fraction * (math.log(256.0) - math.log(0.11)))
    assert float(poly.sigma(0.5)) == pytest.approx(expected, rel=1e-12)


def test_scale_level():
    u = np.array([-1.0, 0.0, 0.499, 0.5, 0.999, 1.0, 2.0, np.nan])
    np.testing.assert_array_equal(scale.scale_level(u, 16), [0, 0, 7, 8, 15, 15, 15, 0])
    assert scale.scale_level(u, 16).dtype == np.int32


def test_level_sigmas_lie_in_their_levels_and_minimise_eq7():
    mapping = scale.ode_mapping()
    t = scale.level_boundaries(16, mapping)
    rho = scale.level_sigmas(16, mapping)
    assert ((t[:-1] < rho) & (rho < t[1:])).all()
    nodes, weights = np.polynomial.legendre.leggauss(16)
    for k in (0, 7, 15):
        sigma = 0.5 * (t[k] + t[k + 1]) + 0.5 * (t[k + 1] - t[k]) * nodes

        def objective(r, sigma=sigma):
            return float(weights @ scale.relative_redundancy(sigma, r))

        best = objective(rho[k])
        assert best < objective(rho[k] * 1.01) and best < objective(rho[k] / 1.01)


def test_redundancy_quarters_when_n_doubles():
    means = {n: scale.redundancy_curve(n, samples=768)[2].mean() for n in (16, 32, 64)}
    assert 3.6 < means[16] / means[32] < 4.4
    assert 3.6 < means[32] / means[64] < 4.4
    assert 0.01 < means[16] < 0.02  # paper 000 Table 1: ~1.7 % at N = 16 (on [0.1, 1000])


def test_redundancy_is_flat_across_sigma_with_the_ode_and_ripples_with_poly():
    levels = 32
    ratios = {}
    for kind in ("ode", "poly"):
        _, sigma, curve = scale.redundancy_curve(levels, 0.1, 1000.0, kind=kind, samples=768)
        assert (np.diff(sigma) > 0).all()
        per_level = curve.reshape(levels, -1).mean(axis=1)
        ratios[kind] = per_level.max() / per_level.min()
    assert ratios["ode"] < 1.05
    assert ratios["poly"] > 1.5


def test_bad_parameters():
    with pytest.raises(ValueError):
        scale.level_boundaries(8, scale.ode_mapping())
    with pytest.raises(ValueError):
        scale.poly_mapping(5.0, 1.0)
    with pytest.raises(ValueError):
        scale.mapping("linear", 0.1, 10.0)
