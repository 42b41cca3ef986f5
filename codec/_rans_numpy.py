"""numpy kernels of the rANS coder, vectorised across the lanes of a group; format in codec/rans.py.

A second conforming implementation of the same integer steps as codec/_rans_numba.py: the Python loop runs
over groups of L symbols (and over payload rounds of groups with escapes), never over single symbols.
All arithmetic is int64 on values below 2^33.
"""

from __future__ import annotations

import numpy as np

OK, ERR_TRUNCATED, ERR_SYMBOL, ERR_CORRUPT = 0, 1, 2, 3
STATE_LOW = 1 << 16
MAX_N = 1 << 32


def _floor_log2(n: np.ndarray) -> np.ndarray:
    k = np.zeros(n.shape, dtype=np.int64)
    for shift in range(1, 64):
        k += (n >> shift) > 0
    return k


def _symbols(values, indexes, cdf, length, offset):  # type: ignore[no-untyped-def]
    """(start, freq, payload) per symbol; payload -1 where the value is not escaped."""
    t = indexes.astype(np.int64)
    lt = length[t].astype(np.int64)
    s = values.astype(np.int64) - offset[t]
    payload = np.where(s <= 0, -s, np.where(s >= lt - 1, s - (lt - 1), -1))
    sym = np.clip(s, 0, lt - 1)
    start = cdf[t, sym].astype(np.int64)
    return start, cdf[t, sym + 1].astype(np.int64) - start, payload


def scan(values, indexes, cdf, length, offset, cost_lb):  # type: ignore[no-untyped-def]
    _, freq, payload = _symbols(values, indexes, cdf, length, offset)
    p = payload[payload >= 0]
    if p.size and p.max() + 1 >= MAX_N:
        return ERR_SYMBOL, 0, 0
    bits = 2 * _floor_log2(p + 1) + 1
    return OK, int(cost_lb[freq].sum() + 256 * bits.sum()), int(bits.sum())


def _emit(x: np.ndarray, limit: np.ndarray, chunks: list[np.ndarray]) -> np.ndarray:
    """Renormalise encoder states x (lanes in increasing order, coded in decreasing order)."""
    over = x >= limit
    if over.any():
        chunks.append((x[over] & 0xFFFF)[::-1])
        x = np.where(over, x >> 16, x)
    return x


def encode(values, indexes, cdf, length, offset, lanes, escape_bits):  # type: ignore[no-untyped-def]
    start, freq, payload = _symbols(values, indexes, cdf, length, offset)
    n = values.size
    x = np.full(lanes, STATE_LOW, dtype=np.int64)
    chunks: list[np.ndarray] = []
    for g in range((n + lanes - 1) // lanes - 1, -1, -1):
        base = g * lanes
        m = min(lanes, n - base)
        esc = np.flatnonzero(payload[base : base + m] >= 0)
        if esc.size:
            code = payload[base + esc] + 1
            k = _floor_log2(code)
            for r in range(int(2 * k.max()), -1, -1):
                sel = r < 2 * k + 1
                lane = esc[sel]
                ks = k[sel]
                bit = np.where(r < ks, 0, (code[sel] >> np.maximum(2 * ks - r, 0)) & 1)
                xs = _emit(x[lane], np.int64(1 << 31), chunks)
                x[lane] = ((xs >> 15) << 16) + (xs & 0x7FFF) + (bit << 15)
        f = freq[base : base + m]
        xs = _emit(x[:m], f << 16, chunks)
        x[:m] = ((xs // f) << 16) + xs % f + start[base : base + m]
    words = np.concatenate(chunks)[::-1] if chunks else np.zeros(0, dtype=np.int64)
    return x, words.astype(np.uint16)


class _Reader:
    """The shared word stream, handed out to lanes in increasing lane order."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words.astype(np.int64)
        self.pos = 0

    def refill(self, x: np.ndarray) -> np.ndarray | None:
        low = x < STATE_LOW
        count = int(low.sum())
        if not count:
            return x
        if self.pos + count > self.words.size:
            return None
        x = x.copy()
        x[low] = (x[low] << 16) | self.words[self.pos : self.pos + count]
        self.pos += count
        return x


def _search_keys(cdf: np.ndarray) -> np.ndarray:
    """cdf rows shifted apart so one sorted array answers the symbol search of every table."""
    rows = np.arange(cdf.shape[0], dtype=np.int64)[:, None] << 17
    return (rows + cdf).reshape(-1)


def decode(states, words, indexes, cdf, length, offset):  # type: ignore[no-untyped-def]
    n = indexes.size
    lanes = states.size
    out = np.zeros(n, dtype=np.int32)
    x = states.astype(np.int64)
    reader = _Reader(words)
    keys = _search_keys(cdf)
    width = cdf.shape[1]
    for g in range((n + lanes - 1) // lanes):
        base = g * lanes
        m = min(lanes, n - base)
        t = indexes[base : base + m].astype(np.int64)
        lt = length[t].astype(np.int64)
        xs = x[:m]
        slot = xs & 0xFFFF
        s = np.searchsorted(keys, (t << 17) + slot, side="right") - 1 - t * width
        c = cdf[t, s].astype(np.int64)
        xs = reader.refill((cdf[t, s + 1] - c) * (xs >> 16) + slot - c)
        if xs is None:
            return ERR_TRUNCATED, out
        x[:m] = xs
        escaped = (s == 0) | (s == lt - 1)
        out[base : base + m] = offset[t] + s
        if escaped.any():
            lanes_esc = np.flatnonzero(escaped)
            status = _decode_payloads(x, reader, lanes_esc, base, s, t, indexes, length, offset, out)
            if status != OK:
                return status, out
    if reader.pos != reader.words.size or np.any(x != STATE_LOW):
        return ERR_CORRUPT, out
    return OK, out


def _decode_payloads(x, reader, lane, base, s, t, indexes, length, offset, out):  # type: ignore[no-untyped-def]
    """Decode the exp-Golomb payloads of the escaped lanes of one group, one bit per lane per round."""
    zeros = np.zeros(lane.size, dtype=np.int64)
    left = np.full(lane.size, -1, dtype=np.int64)
    code = np.zeros(lane.size, dtype=np.int64)
    while True:
        act = np.flatnonzero(left != 0)
        if not act.size:
            break
        xs = x[lane[act]]
        bit = (xs >> 15) & 1
        xs = reader.refill(((xs >> 16) << 15) + (xs & 0x7FFF))
        if xs is None:
            return ERR_TRUNCATED
        x[lane[act]] = xs
        prefix = left[act] < 0
        zeros[act] += prefix & (bit == 0)
        if np.any(zeros > 31):
            return ERR_SYMBOL
        ends_prefix = act[prefix & (bit == 1)]
        in_suffix = act[~prefix]
        code[in_suffix] = 2 * code[in_suffix] + bit[~prefix]
        left[in_suffix] -= 1
        left[ends_prefix] = zeros[ends_prefix]
        code[ends_prefix] = 1
    lanes_t = t[lane]
    top = offset[lanes_t].astype(np.int64) + length[lanes_t] - 1
    v = np.where(s[lane] == 0, offset[lanes_t] - (code - 1), top + code - 1)
    if np.any((v < -(1 << 31)) | (v >= 1 << 31)):
        return ERR_SYMBOL
    out[base + lane] = v
    return OK
