"""Integer code tables of the entropy path and the offline redundancy report.

`CodeTables` holds integer CDFs at 16-bit precision with an underflow and an overflow escape symbol per table
(layout in docs/architecture.md). Tables are built once with float maths (`gaussian_level_tables` for the
scale levels of paper 000, `tables_from_pmfs` for anything else, e.g. the per-channel factorized prior of z),
stored as integers (`save_npz`) with a SHA-256, and never recomputed at decode time.

The decode-time part (`CodeTables`, `load_npz`, `frequencies`) needs numpy only; builders import scipy lazily.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from codec import scale
from codec.errors import PackageError

PRECISION = 16
_HASH_TAG = b"bitmatch.CodeTables.v1\0"
_NPZ_KEYS = {"cdf", "length", "offset", "precision", "sha256"}
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1

# R_k: the table of level k spells out every value whose expected count p_n(rho_k) 2^16 is >= MIN_COUNT; the
# rest goes through the escapes. A fixed multiple of sigma is worse at both ends (measured coded redundancy,
# N = 64 / 256, sigma in [0.11, 256]: 4 sigma 0.176 / 0.092 %, 5 sigma 0.133 / 0.055 %, at 17.5-86.6 kB;
# expected count >= 0.2: 0.089 / 0.011 % at 16.8 / 66.8 kB). Narrow tables have counts to spare and escapes
# are dear; wide ones have few counts, and each forced count of 1 in the far tail costs more than an escape.
# Counts of 0.1..0.3 are within 0.003 % of each other on [0.11, 256] and on [0.1, 1000].
MIN_COUNT = 0.2
REPORT_LEVELS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
REPORT_SAMPLES = 1536  # a multiple of every N above, so each level gets the same number of u samples


@dataclass(frozen=True, eq=False)
class CodeTables:
    """T integer CDFs; table t has length[t] symbols (escapes included) starting at value offset[t]."""

    cdf: np.ndarray  # uint32 [T, Lmax + 1]
    length: np.ndarray  # int32 [T]
    offset: np.ndarray  # int32 [T]
    precision: int = PRECISION

    def __post_init__(self) -> None:
        for name in ("cdf", "length", "offset"):
            array = np.array(getattr(self, name), copy=True, order="C")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        _validate(self)

    @property
    def num_tables(self) -> int:
        return int(self.cdf.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.cdf.shape[1] - 1)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_bytes(self)).hexdigest()

    def frequencies(self) -> np.ndarray:
        """int64 [T, Lmax]: frequency of each symbol, 0 past length[t]."""
        return np.diff(self.cdf.astype(np.int64), axis=1)

    def memory_bytes(self) -> int:
        """Storage of all frequencies at 16 bits per element (the paper's 'CV memory')."""
        return 2 * int(self.length.astype(np.int64).sum())

    def save_npz(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        """Write cdf, length, offset, precision and the SHA-256 digest (a path or a binary file object)."""
        digest = np.frombuffer(bytes.fromhex(self.sha256), dtype=np.uint8)
        arrays = {
            "cdf": self.cdf,
            "length": self.length,
            "offset": self.offset,
            "precision": np.int32(self.precision),
            "sha256": digest,
        }
        if hasattr(path, "write"):
            np.savez(path, **arrays)
            return
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load_npz(cls, path: str | os.PathLike[str] | BinaryIO) -> CodeTables:
        """Load and validate; any malformed, inconsistent or tampered file raises PackageError."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if set(data.files) != _NPZ_KEYS:
                    raise PackageError(f"{path}: code tables need {sorted(_NPZ_KEYS)}, got {data.files}")
                arrays = {key: data[key] for key in _NPZ_KEYS}
        except PackageError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise PackageError(f"{path}: unreadable code tables ({exc})") from exc
        precision = arrays["precision"]
        if precision.shape != () or precision.dtype != np.int32:
            raise PackageError(f"{path}: precision must be an int32 scalar")
        stored = arrays["sha256"]
        if stored.dtype != np.uint8 or stored.shape != (32,):
            raise PackageError(f"{path}: sha256 must be 32 uint8 bytes")
        tables = cls(arrays["cdf"], arrays["length"], arrays["offset"], int(precision))
        if tables.sha256 != stored.tobytes().hex():
            raise PackageError(f"{path}: code tables do not match their stored SHA-256")
        return tables


def canonical_bytes(tables: CodeTables) -> bytes:
    """Tag, precision, shape and the little-endian C-order bytes of cdf, length and offset."""
    header = np.array([tables.precision, *tables.cdf.shape], dtype="<u8").tobytes()
    return b"".join(
        [
            _HASH_TAG,
            header,
            tables.cdf.astype("<u4").tobytes(),
            tables.length.astype("<i4").tobytes(),
            tables.offset.astype("<i4").tobytes(),
        ]
    )


def _validate(tables: CodeTables) -> None:
    cdf, length, offset, precision = tables.cdf, tables.length, tables.offset, tables.precision
    if not isinstance(precision, int | np.integer) or not 1 <= precision <= 16:
        raise PackageError(f"precision must be an integer in [1, 16], got {precision!r}")
    if cdf.dtype != np.uint32 or cdf.ndim != 2 or cdf.shape[0] < 1 or cdf.shape[1] < 4:
        raise PackageError(f"cdf must be uint32 [T >= 1, Lmax + 1 >= 4], got {cdf.dtype} {cdf.shape}")
    count, width = cdf.shape
    for name, array in (("length", length), ("offset", offset)):
        if array.dtype != np.int32 or array.shape != (count,):
            raise PackageError(f"{name} must be int32 [{count}], got {array.dtype} {array.shape}")
    if length.min() < 3 or length.max() != width - 1:
        span = f"{length.min()}..{length.max()}"
        raise PackageError(f"lengths must lie in [3, {width - 1}] and reach {width - 1}, got {span}")
    if (offset.astype(np.int64) + length - 1).max() > _INT32_MAX:
        raise PackageError("offset + length - 1 overflows int32")
    total = 1 << int(precision)
    columns = np.arange(width - 1)[None, :]
    inside = columns < length[:, None]
    freq = np.diff(cdf.astype(np.int64), axis=1)
    if (cdf[:, 0] != 0).any():
        raise PackageError("every cdf must start at 0")
    if (freq[inside] < 1).any():
        raise PackageError("every symbol needs a frequency >= 1")
    if (cdf[np.arange(count), length] != total).any():
        raise PackageError(f"every cdf must reach 1 << {precision} at its length")
    if (freq[~inside] != 0).any() or (cdf[:, -1] != total).any():
        raise PackageError(f"cdf entries past the length must stay 1 << {precision}")


# ---------------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------------


def quantize_pmf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Integer frequencies >= 1 summing to exactly 2^precision, close to pmf in cross-entropy.

    Start from max(1, floor(p M)); then hand out (or take back) single counts where they gain (or lose) the
    least code length p log2((f+1)/f), ties by index, until the total is exact. Deterministic.
    """
    p = np.asarray(pmf, dtype=np.float64)
    total = 1 << precision
    if p.ndim != 1 or not 3 <= len(p) <= total or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise PackageError(f"pmf must be a finite non-negative vector of 3..{total} entries, positive sum")
    p = p / p.sum()
    freq = np.maximum(1, np.floor(p * total)).astype(np.int64)
    while (missing := total - int(freq.sum())) != 0:
        if missing > 0:
            gain = p * np.log2((freq + 1) / freq)
            picks = np.argsort(-gain, kind="stable")[:missing]
            freq[picks] += 1
        else:
            loss = np.where(freq > 1, p * np.log2(freq / np.maximum(freq - 1, 1)), np.inf)
            picks = np.argsort(loss, kind="stable")[: min(-missing, int((freq > 1).sum()))]
            freq[picks] -= 1
    return freq


def tables_from_pmfs(
    pmfs: Sequence[np.ndarray], offsets: Sequence[int] | np.ndarray, precision: int = PRECISION
) -> CodeTables:
    """Integer CodeTables from float pmfs; pmfs[t][0] and pmfs[t][-1] are the underflow/overflow masses.

    pmfs[t][s] for 0 < s < L - 1 is the mass of value offsets[t] + s; the escapes carry the mass of
    v <= offsets[t] and of v >= offsets[t] + L - 1 (see docs/architecture.md).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if len(pmfs) == 0 or offsets.shape != (len(pmfs),):
        raise PackageError("need one offset per pmf and at least one pmf")
    if offsets.min() < _INT32_MIN or offsets.max() > _INT32_MAX:
        raise PackageError("offsets must fit int32")
    freqs = [quantize_pmf(p, precision) for p in pmfs]
    lengths = np.array([len(f) for f in freqs], dtype=np.int32)
    cdf = np.full((len(freqs), int(lengths.max()) + 1), 1 << precision, dtype=np.uint32)
    for t, f in enumerate(freqs):
        cdf[t, 0] = 0
        cdf[t, 1 : len(f) + 1] = np.cumsum(f)
    return CodeTables(cdf, lengths, offsets.astype(np.int32), precision)


def level_radius(rho: np.ndarray, min_count: float = MIN_COUNT, precision: int = PRECISION) -> np.ndarray:
    """R_k = the smallest R >= 1 with p_R(rho_k) 2^precision < min_count (p_n decreases in |n|)."""
    rho = np.atleast_1d(np.asarray(rho, dtype=np.float64))
    rows, n = scale._flat_support(rho)
    counts = scale._mass(n.astype(np.float64), rho[rows]) * float(1 << precision)
    small = (counts < min_count) & (n >= 1)
    # The support reaches 9 rho + 1, where counts are < 1e-13; min() picks the first small n of each row.
    first = np.full(len(rho), np.iinfo(np.int64).max)
    np.minimum.at(first, rows[small], n[small])
    if (first == np.iinfo(np.int64).max).any():
        raise PackageError("level radius not found within 9 sigma")  # unreachable for rho > 0
    return first


def gaussian_code_vector(rho: float, radius: int) -> np.ndarray:
    """c(rho) of eq. 4 over [-R, R]: c_0 = P(v <= -R), c_i = p_{i-R}, c_{2R} = P(v >= R)."""
    from scipy.special import erfc

    n = np.abs(np.arange(-(radius - 1), radius, dtype=np.float64))
    inner = scale._mass(n, np.full_like(n, rho))
    escape = 0.5 * float(erfc((2 * radius - 1) / (math.sqrt(8.0) * rho)))
    return np.concatenate([[escape], inner, [escape]])


def gaussian_level_tables(
    levels: int,
    sigma_min: float = scale.DEFAULT_SIGMA_MIN,
    sigma_max: float = scale.DEFAULT_SIGMA_MAX,
    mapping: scale.MappingKind = "ode",
    min_count: float = MIN_COUNT,
) -> tuple[CodeTables, np.ndarray]:
    """One table per scale level k (eq. 4 code vector of rho_k, eq. 7), and the level sigmas rho_k."""
    rho = scale.level_sigmas(levels, scale.mapping(mapping, sigma_min, sigma_max))
    radius = level_radius(rho, min_count)
    pmfs = [gaussian_code_vector(float(r), int(R)) for r, R in zip(rho, radius, strict=True)]
    return tables_from_pmfs(pmfs, -radius), rho


# ---------------------------------------------------------------------------------------------------------
# redundancy report (bitmatch codec tables)
# ---------------------------------------------------------------------------------------------------------


def exp_golomb_bits(payload: np.ndarray) -> np.ndarray:
    """Length of the order-0 exp-Golomb code of payload >= 0: prefix + suffix = 2 floor(log2(x + 1)) + 1."""
    _, exponent = np.frexp(np.asarray(payload, dtype=np.float64) + 1.0)  # x + 1 = m 2^e, m in [0.5, 1)
    return 2 * (exponent.astype(np.int64) - 1) + 1


def _value_cost(tables: CodeTables, freq: np.ndarray, table: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Bits to code each value with its table: -log2(f / 2^precision) plus exp-Golomb bits of an escape."""
    off = tables.offset.astype(np.int64)[table]
    last = tables.length.astype(np.int64)[table] - 1
    symbol = np.clip(value - off, 0, last)
    payload = np.where(symbol == 0, off - value, np.where(symbol == last, value - off - last, 0))
    escaped = (symbol == 0) | (symbol == last)
    bits = tables.precision - np.log2(freq[table, symbol].astype(np.float64))
    return bits + np.where(escaped, exp_golomb_bits(payload), 0)


def code_bits(tables: CodeTables, indexes: np.ndarray, values: np.ndarray) -> float:
    """Total bits rANS spends on `values` coded with the tables `indexes` (within a few bytes of flushing)."""
    table = np.asarray(indexes, np.int64).reshape(-1)
    value = np.asarray(values, np.int64).reshape(-1)
    return float(_value_cost(tables, tables.frequencies(), table, value).sum())


def expected_code_bits(
    samples: scale.SigmaSamples, tables: CodeTables, table_of_sample: np.ndarray
) -> np.ndarray:
    """Expected bits per value for each sample sigma_j coded with table table_of_sample[j]."""
    freq = tables.frequencies()
    table = table_of_sample[samples.rows]
    cost = _value_cost(tables, freq, table, samples.n_int) + _value_cost(tables, freq, table, -samples.n_int)
    cost = np.where(samples.n_int == 0, 0.5 * cost, cost)  # n = 0 counted once; weight 2 folds +n and -n
    return samples.row_sum(samples.p * cost)


def report_row(
    levels: int,
    ode_samples: scale.SigmaSamples,
    poly_samples: scale.SigmaSamples,
    min_count: float = MIN_COUNT,
) -> dict[str, float | int]:
    ode = ode_samples.scale
    tables, rho = gaussian_level_tables(levels, ode.sigma_min, ode.sigma_max, "ode", min_count)
    k = ode_samples.levels_of(levels)
    redundancy = ode_samples.kl_bits(rho[k]) / ode_samples.entropy
    rho_poly = scale.level_sigmas(levels, poly_samples.scale)
    redundancy_poly = poly_samples.kl_bits(rho_poly[poly_samples.levels_of(levels)]) / poly_samples.entropy
    coded = expected_code_bits(ode_samples, tables, k).sum()
    entropy = ode_samples.entropy.sum()
    return {
        "N": levels,
        "memory_kb": tables.memory_bytes() / 1000.0,
        "redundancy_pct": 100.0 * float(redundancy.mean()),
        "redundancy_pct_poly": 100.0 * float(redundancy_poly.mean()),
        "coded_redundancy_pct": 100.0 * float((coded - entropy) / entropy),
    }


def redundancy_report(
    sigma_min: float = scale.DEFAULT_SIGMA_MIN,
    sigma_max: float = scale.DEFAULT_SIGMA_MAX,
    levels: Sequence[int] = REPORT_LEVELS,
    samples: int = REPORT_SAMPLES,
    min_count: float = MIN_COUNT,
) -> list[dict[str, float | int]]:
    """One row per N: memory, paper-000 relative redundancy (ODE and poly T) and the coded redundancy."""
    ode_samples = scale.SigmaSamples(scale.ode_mapping(float(sigma_min), float(sigma_max)), samples)
    poly_samples = scale.SigmaSamples(scale.poly_mapping(sigma_min, sigma_max), samples)
    return [report_row(n, ode_samples, poly_samples, min_count) for n in levels]


def format_report(rows: list[dict[str, float | int]], sigma_min: float, sigma_max: float) -> str:
    lines = [
        f"sigma in [{sigma_min:g}, {sigma_max:g}], sigma sampled uniformly in u; memory at 16 bits/element",
        f"{'N':>4} {'memory kB':>10} {'redundancy %':>13} {'poly T %':>9} {'coded %':>8}",
    ]
    for row in rows:
        lines.append(
            f"{row['N']:>4} {row['memory_kb']:>10.1f} {row['redundancy_pct']:>13.4f}"
            f" {row['redundancy_pct_poly']:>9.4f} {row['coded_redundancy_pct']:>8.4f}"
        )
    return "\n".join(lines)
