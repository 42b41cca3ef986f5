"""The decoder of the context-switching model's symbol stream: one rANS lane, each table index from eq. 3.

The stream is an ordinary codec/rans.py stream with one lane, so each symbol (its escape payload included)
is read before the next element's context is computed from the values decoded so far. The same source runs
compiled (numba) or as plain Python (`decode_planes.py_func`, the numpy backend's choice); both are integer
only, on int64 below 2^33, with the rANS steps of codec/_rans_numba.py.
"""

from __future__ import annotations

import numpy as np

OK, ERR_TRUNCATED, ERR_SYMBOL, ERR_CORRUPT = 0, 1, 2, 3
STATE_LOW = 1 << 16

try:
    import numba as nb

    _jit = nb.njit(cache=True, nogil=True, error_model="numpy")
except ImportError:  # pragma: no cover - numba is a dependency; plain Python still decodes
    _jit = None


def _decode_planes(states, words, cdf, length, offset, order, eps, active, contexts, planes):  # type: ignore[no-untyped-def]
    """Fill planes [M, H, W] (coding order, pre-filled with the modes) from the stream; returns a status.

    order[k]: channel at position k; eps[k]: its threshold; active[k]: 1 if it is coded.
    """
    x = np.int64(states[0])
    pos = 0
    nwords = words.size
    height, width = planes.shape[1], planes.shape[2]
    for k in range(planes.shape[0]):
        if active[k] == 0:
            continue
        for i in range(height):
            for j in range(width):
                ctx = 0
                if contexts > 1:
                    if i > 0 and planes[k, i - 1, j] >= eps[k]:
                        ctx += 1
                    if j > 0 and planes[k, i, j - 1] >= eps[k]:
                        ctx += 1
                    if k > 0 and planes[k - 1, i, j] >= eps[k - 1]:
                        ctx += 1
                t = contexts * order[k] + ctx
                lt = length[t]
                slot = x & 0xFFFF
                s = 0
                while cdf[t, s + 1] <= slot:  # ends at lt - 1 at the latest: cdf[t, lt] = 2^16 > slot
                    s += 1
                c = np.int64(cdf[t, s])
                x = (np.int64(cdf[t, s + 1]) - c) * (x >> 16) + slot - c
                if x < STATE_LOW:
                    if pos >= nwords:
                        return ERR_TRUNCATED
                    x = (x << 16) | np.int64(words[pos])
                    pos += 1
                if s != 0 and s != lt - 1:
                    planes[k, i, j] = offset[t] + s
                    continue
                zeros = 0
                n = np.int64(1)
                left = -1  # suffix bits still to read; -1 while in the prefix
                while left != 0:
                    bit = (x >> 15) & 1
                    x = ((x >> 16) << 15) + (x & 0x7FFF)
                    if x < STATE_LOW:
                        if pos >= nwords:
                            return ERR_TRUNCATED
                        x = (x << 16) | np.int64(words[pos])
                        pos += 1
                    if left < 0:
                        if bit == 0:
                            zeros += 1
                            if zeros > 31:
                                return ERR_SYMBOL
                            continue
                        left = zeros
                    else:
                        n = 2 * n + bit
                        left -= 1
                base = np.int64(offset[t]) if s == 0 else np.int64(offset[t]) + lt - 1
                v = base - (n - 1) if s == 0 else base + n - 1
                if v < -(1 << 31) or v >= 1 << 31:
                    return ERR_SYMBOL
                planes[k, i, j] = v
    if pos != nwords or x != STATE_LOW:
        return ERR_CORRUPT
    return OK


decode_planes_py = _decode_planes
decode_planes = _jit(_decode_planes) if _jit is not None else _decode_planes
