"""Interleaved rANS entropy coder: integer symbols with one code table per symbol.

The coder follows the `CodeTables` contract of codec/tables.py: probability precision 16 bits, symbol 0 of
table t is the underflow escape, symbol length[t] - 1 the overflow escape, symbol s otherwise stands for the
value offset[t] + s. An escaped value is followed by its payload (o - v for underflow,
v - (o + length[t] - 1) for overflow) as an exp-Golomb code of order 0, written as bypass bits of the same
coder. Everything that decides a bit of the output is integer arithmetic, so any conforming decoder on any
CPU reproduces the stream bit for bit.

Coder state and steps (all quantities are integers; M = 2^16 is the probability scale and the state range is
[2^16, 2^32)):

- decode one symbol of table t in a lane with state x: slot = x mod M; s is the symbol with
  cdf[t, s] <= slot < cdf[t, s + 1]; f = cdf[t, s + 1] - cdf[t, s]; x = f * (x >> 16) + slot - cdf[t, s];
  if x < 2^16, x = (x << 16) | w where w is the next 16-bit word of the stream (one read at most).
- a bypass bit is a symbol of frequency 2^15 in an implicit two-symbol table: bit = slot >> 15, with
  cumulative start bit << 15.
- encoding is the exact inverse, run backwards: if x >= f << 16, emit x mod 2^16 and x = x >> 16; then
  x = ((x // f) << 16) + (x mod f) + cdf[t, s]. Every lane starts and, after decoding, ends in the state 2^16.

Symbol order. Symbols are the C-order flattening of `indexes`; symbol i goes to lane i mod L. Symbols are
taken in groups of L (group g holds symbols g*L ... g*L + m - 1, m = L except possibly in the last group).
The decoder, for each group in turn:

1. decodes the main symbol of lanes 0, 1, ..., m - 1 in that order;
2. then, if some of these symbols are escapes, decodes their payload bits in rounds: round r = 0, 1, ...
   visits, in increasing lane order, every escaped lane of the group whose payload is not yet complete and
   decodes one bypass bit in that lane. An exp-Golomb code of payload p, with n = p + 1 and k = floor(log2 n),
   is k zero bits followed by the k + 1 bits of n, most significant first (2k + 1 bits). k is at most 31: a
   32nd zero, or a value outside int32, is an error.

Words are read from one shared stream in exactly the order the steps above need them.

Stream layout (little-endian):

    offset 0        uint16  L, the lane count (1 <= L <= 65535)
    offset 2        L x uint32  the encoder's final state of lane 0, 1, ..., L - 1 (each in [2^16, 2^32))
    offset 2 + 4L   uint16 words, in the order the decoder reads them, up to the end of the data

A valid stream is consumed exactly: every lane ends in state 2^16 and no word is left over. The stream is
self-delimiting given the index array (its length is the number of symbols).

Lane count rule. The encoder first computes, with integers only, a lower bound B of the ideal size in units
of 2^-8 bit: per main symbol COST_LB[f] <= 256 * (16 - log2 f) (from an exact integer upper bound of log2 f,
see `_cost_lower_bounds`), plus 256 * (2k + 1) per escape payload. It takes L = clamp(B >> 23, 1, 4096):
at least 2^15 ideal bits per lane, so the 32-bit flushed states cost at most 1/1024 (0.1 %) of the ideal
size, and nothing for short or nearly free streams (L = 1 costs 6 bytes).

Coding loss. With 32-bit states and 16-bit words the state floor equals the probability scale (2^16), so a
step's cost log2(x'/x) deviates from -log2 p by up to about log2(1 + 1/q), q = x // f. For data distributed
like its table these deviations cancel to first order: measured 0.08-0.12 % of the ideal size (Gaussian
workload: 0.19 % with the flushed states). Data that sits on symbols far from its table's distribution pays
up to ~0.15 bit per symbol (measured on single-symbol streams); only a larger state (64-bit states with 32-bit
words, as in CompressAI) removes that.

Backends: `numba` (compiled loops, default) and `numpy` (vector operations across lanes, a second conforming
implementation). They produce identical bytes; pick one with `backend=` or the environment variable
BITMATCH_RANS_BACKEND.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import Any

import numpy as np

from codec.errors import CodecError, CorruptStream, LengthFieldError, SymbolOutOfRange, Truncated

PRECISION = 16
STATE_LOW = 1 << 16
MAX_LANES = 0xFFFF
AUTO_MAX_LANES = 4096
LANE_COST_SHIFT = 23  # 2^15 ideal bits per lane, in units of 2^-8 bit
MAX_PAYLOAD = (1 << 32) - 2  # exp-Golomb with at most 31 prefix zeros
HEADER_BYTES = 2
BACKENDS = ("numba", "numpy")
DEFAULT_BACKEND = "numba"
BACKEND_ENV = "BITMATCH_RANS_BACKEND"

# Status codes shared by the kernels of both backends.
OK, ERR_TRUNCATED, ERR_SYMBOL, ERR_CORRUPT = 0, 1, 2, 3


def _ceil_log2_times_256(a: int) -> int:
    """ceil(256 * log2(a)) for an integer a >= 1, exactly (smallest k with 2^k >= a^256)."""
    return (a**256 - 1).bit_length()


def _cost_lower_bounds() -> np.ndarray:
    """COST_LB[f] <= 256 * (16 - log2 f) for f in 1 .. 2^16, integers only.

    With f = 2^e * (1 + j / 256 + rest), 0 <= j < 256, log2 f <= e + log2((257 + j) / 256), and that bound is
    rounded up to a multiple of 1/256 exactly with Python integers.
    """
    upper_frac = np.array([_ceil_log2_times_256(257 + j) - 2048 for j in range(256)], dtype=np.int64)
    f = np.arange(1 << PRECISION, dtype=np.int64) + 1
    e = np.zeros_like(f)
    for k in range(1, PRECISION + 1):
        e += (f >> k) > 0
    j = ((f << 8) >> e) - 256
    cost = 256 * PRECISION - 256 * e - upper_frac[j]
    return np.concatenate([[0], np.maximum(cost, 0)]).astype(np.int64)


COST_LB = _cost_lower_bounds()


def choose_lanes(cost_lb_q: int) -> int:
    """The encoder's lane count for a lower bound of the ideal size in units of 2^-8 bit."""
    return int(min(AUTO_MAX_LANES, max(1, cost_lb_q >> LANE_COST_SHIFT)))


def _backend(name: str | None) -> Any:
    name = name or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    if name == "numba":
        from codec import _rans_numba

        return _rans_numba
    if name == "numpy":
        from codec import _rans_numpy

        return _rans_numpy
    raise ValueError(f"unknown rANS backend {name!r}; choose one of {BACKENDS}")


_CHECKED: weakref.WeakKeyDictionary[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]
_CHECKED = weakref.WeakKeyDictionary()


def _table_arrays(tables: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (cdf, length, offset) arrays of `tables` in kernel dtypes, checked once per read-only table set."""
    try:
        return _CHECKED[tables]
    except (KeyError, TypeError):
        pass
    arrays = _check_tables(tables)
    if not any(a.flags.writeable for a in arrays):  # e.g. codec.tables.CodeTables: cannot change later
        with contextlib.suppress(TypeError):  # not weak-referenceable: check every time
            _CHECKED[tables] = arrays
    return arrays


def _check_tables(tables: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if int(tables.precision) != PRECISION:
        raise ValueError(f"rANS needs {PRECISION}-bit tables, got precision {tables.precision}")
    cdf = np.ascontiguousarray(tables.cdf, dtype=np.uint32)
    length = np.ascontiguousarray(tables.length, dtype=np.int32)
    offset = np.ascontiguousarray(tables.offset, dtype=np.int32)
    if cdf.ndim != 2 or length.shape != (cdf.shape[0],) or offset.shape != length.shape or cdf.shape[0] == 0:
        raise ValueError("tables: cdf must be [T, Lmax + 1] with length and offset of size T >= 1")
    if np.any(length < 3) or np.any(length > cdf.shape[1] - 1):
        raise ValueError("tables: every length must lie in [3, Lmax]")
    inside = np.arange(cdf.shape[1] - 1)[None, :] < length[:, None]
    freqs = np.diff(cdf.astype(np.int64), axis=1)
    ends = cdf[np.arange(cdf.shape[0]), length]
    if np.any(cdf[:, 0] != 0) or np.any(ends != 1 << PRECISION) or np.any((freqs < 1) & inside):
        raise ValueError("tables: cdf rows must rise from 0 to 2^16 with every frequency >= 1")
    return cdf, length, offset


def _int32_array(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu" and arr.size:
        raise CodecError(f"{what} must be an integer array, got dtype {arr.dtype}")
    flat = arr.reshape(-1)
    if flat.size and (flat.min() < np.iinfo(np.int32).min or flat.max() > np.iinfo(np.int32).max):
        raise SymbolOutOfRange(f"{what} outside int32")
    return np.ascontiguousarray(flat, dtype=np.int32)


def _check_indexes(indexes: np.ndarray, n_tables: int) -> None:
    if indexes.size and (indexes.min() < 0 or indexes.max() >= n_tables):
        raise SymbolOutOfRange(f"table index outside [0, {n_tables})")


def encode(
    values: np.ndarray,
    indexes: np.ndarray,
    tables: Any,
    *,
    lanes: int | None = None,
    backend: str | None = None,
) -> bytes:
    """rANS-code int32 `values`, value i with table `indexes[i]`; `lanes` overrides the lane count rule."""
    cdf, length, offset = _table_arrays(tables)
    if np.shape(values) != np.shape(indexes):
        raise CodecError(f"values {np.shape(values)} and indexes {np.shape(indexes)} differ in shape")
    vals = _int32_array(values, "values")
    idx = _int32_array(indexes, "indexes")
    _check_indexes(idx, cdf.shape[0])
    kernels = _backend(backend)
    status, cost_lb_q, escape_bits = kernels.scan(vals, idx, cdf, length, offset, COST_LB)
    if status != OK:
        raise SymbolOutOfRange(f"an escaped value needs a payload above {MAX_PAYLOAD}")
    if lanes is None:
        lanes = choose_lanes(int(cost_lb_q))
    if not 1 <= lanes <= MAX_LANES:
        raise ValueError(f"lane count must lie in [1, {MAX_LANES}], got {lanes}")
    states, words = kernels.encode(vals, idx, cdf, length, offset, int(lanes), int(escape_bits))
    header = np.uint16(lanes).astype("<u2").tobytes()
    return b"".join([header, states.astype("<u4").tobytes(), words.astype("<u2").tobytes()])


def _parse(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(lane states, words) of a stream, checking only the sizes."""
    buf = memoryview(data).cast("B")
    if len(buf) < HEADER_BYTES:
        raise Truncated("rANS stream shorter than its header")
    lanes = int.from_bytes(buf[:HEADER_BYTES], "little")
    if lanes == 0:
        raise LengthFieldError("rANS lane count is zero")
    words_at = HEADER_BYTES + 4 * lanes
    if len(buf) < words_at:
        raise LengthFieldError(f"rANS header announces {lanes} lanes but the data ends inside their states")
    if (len(buf) - words_at) % 2:
        raise Truncated("rANS stream ends inside a 16-bit word")
    states = np.frombuffer(buf, dtype="<u4", count=lanes, offset=HEADER_BYTES).astype(np.int64)
    words = np.frombuffer(buf, dtype="<u2", offset=words_at).astype(np.uint16)
    if np.any(states < STATE_LOW):
        raise CorruptStream("rANS lane state below 2^16")
    return states, words


def decode(data: bytes, indexes: np.ndarray, tables: Any, *, backend: str | None = None) -> np.ndarray:
    """Decode a stream made by `encode` with the same `indexes` and `tables`: int32, shape of `indexes`."""
    cdf, length, offset = _table_arrays(tables)
    idx = _int32_array(indexes, "indexes")
    _check_indexes(idx, cdf.shape[0])
    states, words = _parse(data)
    status, values = _backend(backend).decode(states, words, idx, cdf, length, offset)
    if status == ERR_TRUNCATED:
        raise Truncated("rANS stream ran out of words")
    if status == ERR_SYMBOL:
        raise SymbolOutOfRange("escape payload longer than 31 prefix bits or decoded value outside int32")
    if status == ERR_CORRUPT:
        raise CorruptStream("rANS lanes did not end in their initial state or words were left over")
    return values.reshape(np.shape(indexes))


def ideal_bits(values: np.ndarray, indexes: np.ndarray, tables: Any) -> float:
    """-sum log2 p under the integer tables plus the escape payload bits (a report, not used for coding)."""
    cdf, length, offset = _table_arrays(tables)
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    t = np.asarray(indexes, dtype=np.int64).reshape(-1)
    lt = length[t].astype(np.int64)
    s = v - offset[t]
    payload = np.where(s <= 0, -s, np.where(s >= lt - 1, s - (lt - 1), -1))
    sym = np.clip(s, 0, lt - 1)
    freq = cdf[t, sym + 1].astype(np.int64) - cdf[t, sym]
    code = payload[payload >= 0] + 1
    k = sum(((code >> shift) > 0).astype(np.int64) for shift in range(1, 64))
    return float(np.sum(PRECISION - np.log2(freq)) + np.sum(2 * k + 1))
