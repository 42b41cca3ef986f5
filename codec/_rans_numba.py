"""Compiled (numba) kernels of the rANS coder; the stream format is specified in codec/rans.py.

All arithmetic is on int64 holding values below 2^33, so there is neither overflow nor a float anywhere.
Table indexes are range-checked by the caller; stream words are bounds-checked here.
"""

from __future__ import annotations

import numba as nb
import numpy as np

OK, ERR_TRUNCATED, ERR_SYMBOL, ERR_CORRUPT = 0, 1, 2, 3
STATE_LOW = 1 << 16
MAX_N = 1 << 32  # n = payload + 1 must stay below 2^32 (at most 31 prefix zeros)
BUCKET_SHIFT = 8  # the symbol search starts from a 256-bucket index of each table, then steps up linearly

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _symbol(v: int, lt: int, o: int) -> tuple[int, int]:
    """(symbol, payload) of value v in a table of lt symbols and offset o; payload -1 when not escaped."""
    s = np.int64(v) - o
    if s <= 0:
        return 0, -s
    if s >= lt - 1:
        return lt - 1, s - (lt - 1)
    return s, -1


@_jit
def _floor_log2(n: int) -> int:
    k = 0
    while n > 1:
        n >>= 1
        k += 1
    return k


@_jit
def scan(values, indexes, cdf, length, offset, cost_lb):  # type: ignore[no-untyped-def]
    """(status, lower bound of the ideal size in 2^-8 bit, number of escape payload bits)."""
    cost = np.int64(0)
    escape_bits = np.int64(0)
    for i in range(values.size):
        t = indexes[i]
        s, p = _symbol(values[i], length[t], offset[t])
        cost += cost_lb[np.int64(cdf[t, s + 1]) - np.int64(cdf[t, s])]
        if p >= 0:
            if p + 1 >= MAX_N:
                return ERR_SYMBOL, cost, escape_bits
            bits = 2 * _floor_log2(p + 1) + 1
            escape_bits += bits
            cost += 256 * bits
    return OK, cost, escape_bits


@_jit
def encode(values, indexes, cdf, length, offset, lanes, escape_bits):  # type: ignore[no-untyped-def]
    """(final lane states, words in decoder order) for symbols already checked by `scan`."""
    n = values.size
    out = np.empty(n + escape_bits, dtype=np.uint16)
    wpos = out.size
    x = np.full(lanes, STATE_LOW, dtype=np.int64)
    start = np.empty(lanes, dtype=np.int64)
    freq = np.empty(lanes, dtype=np.int64)
    esc_lane = np.empty(lanes, dtype=np.int64)
    esc_n = np.empty(lanes, dtype=np.int64)
    esc_k = np.empty(lanes, dtype=np.int64)
    groups = (n + lanes - 1) // lanes
    for g in range(groups - 1, -1, -1):
        base = g * lanes
        m = min(lanes, n - base)
        n_esc = 0
        rounds = 0
        for lane in range(m):
            i = base + lane
            t = indexes[i]
            s, p = _symbol(values[i], length[t], offset[t])
            start[lane] = cdf[t, s]
            freq[lane] = np.int64(cdf[t, s + 1]) - start[lane]
            if p >= 0:
                k = _floor_log2(p + 1)
                esc_lane[n_esc] = lane
                esc_n[n_esc] = p + 1
                esc_k[n_esc] = k
                n_esc += 1
                rounds = max(rounds, 2 * k + 1)
        for r in range(rounds - 1, -1, -1):
            for j in range(n_esc - 1, -1, -1):
                k = esc_k[j]
                if r >= 2 * k + 1:
                    continue
                bit = 0 if r < k else (esc_n[j] >> (2 * k - r)) & 1
                lane = esc_lane[j]
                xs = x[lane]
                if xs >= 1 << 31:
                    wpos -= 1
                    out[wpos] = xs & 0xFFFF
                    xs >>= 16
                x[lane] = ((xs >> 15) << 16) + (xs & 0x7FFF) + (bit << 15)
        for lane in range(m - 1, -1, -1):
            xs = x[lane]
            f = freq[lane]
            if xs >= f << 16:
                wpos -= 1
                out[wpos] = xs & 0xFFFF
                xs >>= 16
            x[lane] = ((xs // f) << 16) + (xs % f) + start[lane]
    return x, out[wpos:]


@_jit
def _bucket_symbols(cdf, length):  # type: ignore[no-untyped-def]
    """first[t, b]: the symbol of table t holding slot b << BUCKET_SHIFT, where the symbol search starts."""
    first = np.empty((length.size, 1 << (16 - BUCKET_SHIFT)), dtype=np.int64)
    for t in range(length.size):
        s = 0
        for b in range(first.shape[1]):
            while cdf[t, s + 1] <= b << BUCKET_SHIFT:
                s += 1
            first[t, b] = s
    return first


@_jit
def decode(states, words, indexes, cdf, length, offset):  # type: ignore[no-untyped-def]
    """(status, values): decode len(indexes) symbols from lane states and the word stream."""
    n = indexes.size
    lanes = states.size
    out = np.zeros(n, dtype=np.int32)
    x = states.copy()
    nwords = words.size
    pos = 0
    first = _bucket_symbols(cdf, length)
    esc_lane = np.empty(lanes, dtype=np.int64)
    esc_sym = np.empty(lanes, dtype=np.int64)
    esc_zeros = np.empty(lanes, dtype=np.int64)
    esc_left = np.empty(lanes, dtype=np.int64)  # suffix bits still to read; -1 while in the prefix
    esc_n = np.empty(lanes, dtype=np.int64)
    groups = (n + lanes - 1) // lanes
    for g in range(groups):
        base = g * lanes
        m = min(lanes, n - base)
        n_esc = 0
        for lane in range(m):
            i = base + lane
            t = indexes[i]
            lt = length[t]
            xs = x[lane]
            slot = xs & 0xFFFF
            s = first[t, slot >> BUCKET_SHIFT]
            while cdf[t, s + 1] <= slot:  # ends at s = lt - 1 at the latest: cdf[t, lt] = 2^16 > slot
                s += 1
            c = np.int64(cdf[t, s])
            xs = (np.int64(cdf[t, s + 1]) - c) * (xs >> 16) + slot - c
            if xs < STATE_LOW:
                if pos >= nwords:
                    return ERR_TRUNCATED, out
                xs = (xs << 16) | words[pos]
                pos += 1
            x[lane] = xs
            if s == 0 or s == lt - 1:
                esc_lane[n_esc] = lane
                esc_sym[n_esc] = s
                esc_zeros[n_esc] = 0
                esc_left[n_esc] = -1
                n_esc += 1
            else:
                out[i] = offset[t] + s
        active = n_esc
        while active > 0:
            for j in range(n_esc):
                if esc_left[j] == 0:
                    continue
                lane = esc_lane[j]
                xs = x[lane]
                bit = (xs >> 15) & 1
                xs = ((xs >> 16) << 15) + (xs & 0x7FFF)
                if xs < STATE_LOW:
                    if pos >= nwords:
                        return ERR_TRUNCATED, out
                    xs = (xs << 16) | words[pos]
                    pos += 1
                x[lane] = xs
                if esc_left[j] < 0:
                    if bit == 0:
                        esc_zeros[j] += 1
                        if esc_zeros[j] > 31:
                            return ERR_SYMBOL, out
                        continue
                    esc_left[j] = esc_zeros[j]
                    esc_n[j] = 1
                else:
                    esc_n[j] = 2 * esc_n[j] + bit
                    esc_left[j] -= 1
                if esc_left[j] == 0:
                    active -= 1
                    i = base + esc_lane[j]
                    t = indexes[i]
                    if esc_sym[j] == 0:
                        v = np.int64(offset[t]) - (esc_n[j] - 1)
                    else:
                        v = np.int64(offset[t]) + length[t] - 1 + esc_n[j] - 1
                    if v < -(1 << 31) or v >= 1 << 31:
                        return ERR_SYMBOL, out
                    out[i] = v
    if pos != nwords:
        return ERR_CORRUPT, out
    for lane in range(lanes):
        if x[lane] != STATE_LOW:
            return ERR_CORRUPT, out
    return OK, out
