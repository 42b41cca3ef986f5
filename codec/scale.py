"""Scale parameterization of Said et al. (*Optimized Learned Entropy Coding Parameters*): sigma = T(u).

The hyper-synthesis predicts u, never sigma; the entropy path only sees the level k = floor(u * N). This
module holds the offline float maths that turns that into numbers:

- `psi(sigma)`: the curvature of the relative redundancy of the discretised Gaussian (eq. 15/16);
- `ode_mapping`: T(u) solving dT/du = sqrt(alpha / psi(T)) (eq. 14) with T(0) = sigma_min, T(1) = sigma_max,
  i.e. u(sigma) is the normalised integral of sqrt(psi) (computed over log sigma, Gauss-Legendre per cell,
  inverted with cubic Hermite interpolation using the exact derivatives);
- `poly_mapping`: T_pi(u) = 10^pi(u) of eq. 18. pi maps [0, 1] onto [-1, 3], i.e. [0.1, 1000]; for another
  range its exponent is mapped affinely onto [log10 sigma_min, log10 sigma_max];
- `level_sigmas`: per level the rho_k minimising the integral of L(sigma, rho) over [t_k, t_{k+1}] (eq. 7).

Nothing here runs at decode time, so scipy is imported lazily: the codec runtime imports this module (through
codec.tables) on targets that have no scipy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

DEFAULT_SIGMA_MIN = 0.11
DEFAULT_SIGMA_MAX = 256.0
DEFAULT_LEVELS = 64
MIN_LEVELS = 16
MAX_LEVELS = 256
POLY_COEFFS = (2.49284, 0.93703, 0.57013, -1.0)  # eq. 18, highest power first; pi(0) = -1, pi(1) = 3
_POLY_LOW, _POLY_HIGH = -1.0, 3.0

# Sums over n stop at n = ceil(_REACH * sigma) + 1: beyond 9 sigma the masses are below e^-40 of the peak.
_REACH = 9.0
_CHUNK = 1 << 20  # flat (row, n) elements processed at once
_SQRT8 = math.sqrt(8.0)
_LN2 = math.log(2.0)

MappingKind = Literal["ode", "poly"]


# ---------------------------------------------------------------------------------------------------------
# discretised Gaussian: masses, logs, entropy, Fisher term
# ---------------------------------------------------------------------------------------------------------


def _mass(n: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """p_n(sigma) of eq. 1 for n >= 0 (p_-n = p_n), accurate in the tails and near the centre."""
    from scipy.special import erf, erfc

    a = (2 * n - 1) / (_SQRT8 * sigma)
    b = (2 * n + 1) / (_SQRT8 * sigma)
    # erf differences are accurate near 0, erfc differences in the tail.
    central = a < 0.5
    return np.where(central, 0.5 * (erf(b) - erf(a)), 0.5 * (erfc(np.maximum(a, 0.5)) - erfc(b)))


def _log_mass(n: np.ndarray, sigma: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """ln p_n, with ln p_0 = log1p(-erfc(1/(sqrt8 sigma))) so that p_0 ~ 1 keeps its precision."""
    from scipy.special import erfc

    with np.errstate(divide="ignore"):
        log_p = np.log(mass)
    zero = n == 0
    if zero.any():
        log_p[zero] = np.log1p(-erfc(1.0 / (_SQRT8 * sigma[zero])))
    return log_p


def _phi(k: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """phi_k(sigma) of eq. 17 = d/dsigma erfc(k / (sqrt8 sigma))."""
    return k * np.exp(-(k * k) / (8.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma * sigma)


def _chunks(reach: np.ndarray) -> list[tuple[int, int]]:
    """Split rows into consecutive blocks of at most ~_CHUNK flat (row, n) elements."""
    counts = np.ceil(_REACH * reach).astype(np.int64) + 2
    ends = np.cumsum(counts)
    blocks, start = [], 0
    while start < len(counts):
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + _CHUNK, side="right")))
        blocks.append((start, stop))
        start = stop
    return blocks


def _flat_support(reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and n = 0..ceil(9 reach)+1 of each row, flattened."""
    counts = np.ceil(_REACH * reach).astype(np.int64) + 2
    rows = np.repeat(np.arange(len(reach)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return rows, np.arange(int(counts.sum()), dtype=np.int64) - starts


def _row_sums(
    reach: np.ndarray, columns: tuple[np.ndarray, ...], term: Callable[..., np.ndarray]
) -> np.ndarray:
    """sum over n >= 0 of term(n, weight, *columns[rows]) for every row; weight = 1 for n = 0, else 2."""
    reach = np.asarray(reach, dtype=np.float64).ravel()
    out = np.zeros(len(reach))
    for start, stop in _chunks(reach):
        rows, n = _flat_support(reach[start:stop])
        weight = np.where(n == 0, 1.0, 2.0)
        values = term(n.astype(np.float64), weight, *(c[start:stop][rows] for c in columns))
        out[start:stop] = np.bincount(rows, weights=values, minlength=stop - start)
    return out


def entropy_bits(sigma: np.ndarray | float) -> np.ndarray:
    """H(sigma) of eq. 2 in bits, vectorised."""
    s = np.atleast_1d(np.asarray(sigma, dtype=np.float64))

    def term(n, w, s_):
        p = _mass(n, s_)
        log_p = _log_mass(n, s_, p)
        return np.where(p > 0, -w * p * log_p, 0.0)

    return _row_sums(s, (s,), term).reshape(np.shape(sigma)) / _LN2


def _fisher_sum(sigma: np.ndarray) -> np.ndarray:
    """sum_n (dp_n/dsigma)^2 / p_n (the braces of eq. 16), in nats."""

    def term(n, w, s_):
        p = _mass(n, s_)
        dp = 0.5 * (_phi(2 * n - 1, s_) - _phi(2 * n + 1, s_))  # also right for n = 0 (phi is odd in k)
        return np.where(p > 0, w * dp * dp / np.where(p > 0, p, 1.0), 0.0)

    return _row_sums(sigma, (sigma,), term)


def psi(sigma: np.ndarray | float) -> np.ndarray:
    """psi(sigma) of eq. 15/16: d^2/dsigma^2 L(sigma, rho) at rho = sigma."""
    s = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    return (_fisher_sum(s) / (_LN2 * entropy_bits(s))).reshape(np.shape(sigma))


def kl_bits(sigma: np.ndarray | float, rho: np.ndarray | float) -> np.ndarray:
    """R(sigma, rho) of eq. 5 in bits, elementwise over broadcast sigma and rho."""
    s, r = np.broadcast_arrays(np.asarray(sigma, dtype=np.float64), np.asarray(rho, dtype=np.float64))

    def term(n, w, s_, r_):
        p = _mass(n, s_)
        q = _mass(n, r_)
        ok = p > 0
        return np.where(ok, w * p * (_log_mass(n, s_, p) - _log_mass(n, r_, q)), 0.0)

    flat = _row_sums(s.ravel(), (s.ravel(), r.ravel()), term)
    return flat.reshape(s.shape) / _LN2


def relative_redundancy(sigma: np.ndarray | float, rho: np.ndarray | float) -> np.ndarray:
    """L(sigma, rho) = R(sigma, rho) / H(sigma) of eq. 6."""
    s, r = np.broadcast_arrays(np.asarray(sigma, dtype=np.float64), np.asarray(rho, dtype=np.float64))
    return kl_bits(s, r) / entropy_bits(s)


# ---------------------------------------------------------------------------------------------------------
# mappings T(u)
# ---------------------------------------------------------------------------------------------------------


def _hermite(xq: np.ndarray, x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation through (x, y) with slopes dy (x increasing)."""
    i = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, len(x) - 2)
    h = x[i + 1] - x[i]
    t = (xq - x[i]) / h
    t2, t3 = t * t, t * t * t
    return (
        (2 * t3 - 3 * t2 + 1) * y[i]
        + (t3 - 2 * t2 + t) * h * dy[i]
        + (-2 * t3 + 3 * t2) * y[i + 1]
        + (t3 - t2) * h * dy[i + 1]
    )


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got [{sigma_min}, {sigma_max}]")


@dataclass(frozen=True, eq=False)
class ScaleMapping:
    """sigma = T(u) on [0, 1] and its inverse u(sigma), for one sigma range."""

    kind: MappingKind
    sigma_min: float
    sigma_max: float
    # ODE: nodes in x = ln sigma with u(x) and du/dx; unused for "poly".
    _x: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    _u: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    _du_dx: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def sigma(self, u: np.ndarray | float) -> np.ndarray:
        """T(u); u is clipped to [0, 1], T(0) = sigma_min and T(1) = sigma_max exactly."""
        uu = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if self.kind == "ode":
            log_sigma = _hermite(uu, self._u, self._x, 1.0 / self._du_dx)
        else:
            log_sigma = self._poly_log_sigma(uu)
        out = np.clip(np.exp(log_sigma), self.sigma_min, self.sigma_max)
        out = np.where(uu <= 0.0, self.sigma_min, np.where(uu >= 1.0, self.sigma_max, out))
        return out

    def u(self, sigma: np.ndarray | float) -> np.ndarray:
        """The inverse u(sigma) of T, clipped to [0, 1]."""
        x = np.log(np.clip(np.asarray(sigma, dtype=np.float64), self.sigma_min, self.sigma_max))
        if self.kind == "ode":
            return np.clip(_hermite(x, self._x, self._u, self._du_dx), 0.0, 1.0)
        return self._poly_inverse(x)

    def _poly_log_sigma(self, u: np.ndarray) -> np.ndarray:
        fraction = (np.polyval(POLY_COEFFS, u) - _POLY_LOW) / (_POLY_HIGH - _POLY_LOW)
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return lo + fraction * (hi - lo)

    def _poly_inverse(self, x: np.ndarray) -> np.ndarray:
        # pi is strictly increasing on [0, 1] (pi' > 0.57), so bisection converges to the unique root.
        lo, hi = np.zeros_like(x), np.ones_like(x)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = self._poly_log_sigma(mid) < x
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)


_GL3 = (np.array([-math.sqrt(0.6), 0.0, math.sqrt(0.6)]), np.array([5.0, 8.0, 5.0]) / 9.0)


@functools.lru_cache(maxsize=16)
def ode_mapping(
    sigma_min: float = DEFAULT_SIGMA_MIN, sigma_max: float = DEFAULT_SIGMA_MAX, cells: int = 512
) -> ScaleMapping:
    """T(u) of eq. 14: u(sigma) = int_{sigma_min}^{sigma} sqrt(psi) / int_{sigma_min}^{sigma_max} sqrt(psi).

    Integrated over x = ln sigma (integrand sqrt(psi(e^x)) e^x, smooth) with 3-point Gauss-Legendre per cell;
    psi is evaluated once on that grid (cached per range).
    """
    _check_range(sigma_min, sigma_max)
    x = np.linspace(math.log(sigma_min), math.log(sigma_max), cells + 1)
    h = x[1] - x[0]
    mid = 0.5 * (x[:-1] + x[1:])
    gauss_x = (mid[:, None] + 0.5 * h * _GL3[0][None, :]).ravel()
    values = np.exp(np.concatenate([x, gauss_x]))
    integrand = np.sqrt(psi(values)) * values
    at_nodes, at_gauss = integrand[: cells + 1], integrand[cells + 1 :].reshape(cells, 3)
    cell_integrals = 0.5 * h * (at_gauss @ _GL3[1])
    cumulative = np.concatenate([[0.0], np.cumsum(cell_integrals)])
    total = cumulative[-1]
    u = cumulative / total
    u[-1] = 1.0
    return ScaleMapping("ode", float(sigma_min), float(sigma_max), x, u, at_nodes / total)


def poly_mapping(sigma_min: float = DEFAULT_SIGMA_MIN, sigma_max: float = DEFAULT_SIGMA_MAX) -> ScaleMapping:
    """T_pi(u) = 10^pi(u) (eq. 18); pi's range [-1, 3] maps affinely onto [log sigma_min, log sigma_max]."""
    _check_range(sigma_min, sigma_max)
    return ScaleMapping("poly", float(sigma_min), float(sigma_max))


def mapping(kind: MappingKind, sigma_min: float, sigma_max: float) -> ScaleMapping:
    if kind == "ode":
        return ode_mapping(float(sigma_min), float(sigma_max))
    if kind == "poly":
        return poly_mapping(sigma_min, sigma_max)
    raise ValueError(f"unknown mapping {kind!r} (use 'ode' or 'poly')")


# ---------------------------------------------------------------------------------------------------------
# levels
# ---------------------------------------------------------------------------------------------------------


def check_levels(levels: int) -> None:
    if not (isinstance(levels, int | np.integer) and MIN_LEVELS <= levels <= MAX_LEVELS):
        raise ValueError(f"number of levels must be an integer in [{MIN_LEVELS}, {MAX_LEVELS}], got {levels}")


def scale_level(u: np.ndarray | float, levels: int) -> np.ndarray:
    """k = clip(floor(u * N), 0, N - 1) as int32."""
    k = np.floor(np.asarray(u, dtype=np.float64) * levels)
    return np.clip(np.nan_to_num(k, nan=0.0), 0, levels - 1).astype(np.int32)


def level_boundaries(levels: int, scale: ScaleMapping) -> np.ndarray:
    """t_k = T(k / N), k = 0..N."""
    check_levels(levels)
    return scale.sigma(np.arange(levels + 1) / levels)


_GL_NODES = 8
_GOLDEN_STEPS = 40  # shrinks each bracket by 0.618^40 ~ 4e-9


def level_sigmas(levels: int, scale: ScaleMapping) -> np.ndarray:
    """rho_k* = argmin_rho int_{t_k}^{t_{k+1}} L(sigma, rho) dsigma (eq. 7), for all levels at once.

    The rho-dependent part of the objective is the cross-entropy -sum_n m_n log p_n(rho) against the
    mixture m_n = int p_n(sigma) / H(sigma) dsigma (Gauss-Legendre in sigma), minimised by golden section
    over ln rho in [ln t_k, ln t_{k+1}].
    """
    t = level_boundaries(levels, scale)
    nodes, weights = np.polynomial.legendre.leggauss(_GL_NODES)
    lo, hi = t[:-1], t[1:]
    sig = 0.5 * (lo + hi)[:, None] + 0.5 * (hi - lo)[:, None] * nodes[None, :]  # [N, Q]
    quad_w = 0.5 * (hi - lo)[:, None] * weights[None, :] / entropy_bits(sig.ravel()).reshape(sig.shape)

    rows, n = _flat_support(hi)
    nf = n.astype(np.float64)
    weight = np.where(n == 0, 1.0, 2.0)
    mixture = np.zeros(len(n))
    for q in range(_GL_NODES):
        mixture += quad_w[rows, q] * _mass(nf, sig[rows, q])
    mixture *= weight

    def cross_entropy(log_rho: np.ndarray) -> np.ndarray:
        r = np.exp(log_rho)[rows]
        log_q = _log_mass(nf, r, _mass(nf, r))
        return -np.bincount(rows, weights=mixture * log_q, minlength=levels)

    return np.exp(_golden_minimum(cross_entropy, np.log(lo), np.log(hi)))


def _golden_minimum(f: Callable[[np.ndarray], np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = a.copy(), b.copy()
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(_GOLDEN_STEPS):
        left = fc < fd
        a, b = np.where(left, a, c), np.where(left, d, b)
        new_c, new_d = np.where(left, b - g * (b - a), d), np.where(left, c, a + g * (b - a))
        f_new = f(np.where(left, new_c, new_d))
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
        c, d = new_c, new_d
    return 0.5 * (a + b)


# ---------------------------------------------------------------------------------------------------------
# redundancy measured on sigma samples uniform in u
# ---------------------------------------------------------------------------------------------------------


class SigmaSamples:
    """sigma_j = T(u_j) at u_j = (j + 1/2) / count, with their pmfs cached on a flat (j, n >= 0) support."""

    def __init__(self, scale: ScaleMapping, count: int):
        self.scale = scale
        self.count = count
        self.u = (np.arange(count) + 0.5) / count
        self.sigma = scale.sigma(self.u)
        self.rows, n = _flat_support(self.sigma)
        self.n = n.astype(np.float64)
        self.n_int = n
        self.weight = np.where(n == 0, 1.0, 2.0)
        s = self.sigma[self.rows]
        self.p = _mass(self.n, s)
        self.log_p = _log_mass(self.n, s, self.p)
        terms = np.where(self.p > 0, -self.weight * self.p * self.log_p, 0.0)
        self.entropy = np.bincount(self.rows, weights=terms, minlength=count) / _LN2

    def levels_of(self, levels: int) -> np.ndarray:
        """k_j = floor(u_j N), exact in integers."""
        return ((2 * np.arange(self.count) + 1) * levels // (2 * self.count)).astype(np.int64)

    def row_sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.rows, weights=values, minlength=self.count)

    def kl_bits(self, rho_per_sample: np.ndarray) -> np.ndarray:
        r = rho_per_sample[self.rows]
        log_q = _log_mass(self.n, r, _mass(self.n, r))
        terms = np.where(self.p > 0, self.weight * self.p * (self.log_p - log_q), 0.0)
        return self.row_sum(terms) / _LN2


def redundancy_curve(
    levels: int,
    sigma_min: float = DEFAULT_SIGMA_MIN,
    sigma_max: float = DEFAULT_SIGMA_MAX,
    kind: MappingKind = "ode",
    samples: int = 1536,
    rho: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u_j, sigma_j, L(sigma_j, rho_k(j))) for sigma sampled uniformly in u with the given mapping."""
    scale = mapping(kind, sigma_min, sigma_max)
    return _curve(SigmaSamples(scale, samples), levels, rho)


def _curve(
    samples: SigmaSamples, levels: int, rho: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rho = level_sigmas(levels, samples.scale) if rho is None else rho
    k = samples.levels_of(levels)
    return samples.u, samples.sigma, samples.kl_bits(rho[k]) / samples.entropy
