"""CompressAI's quantized CDFs as bitmatch code tables, frequencies unchanged.

A CompressAI table t (`_quantized_cdf[t, :_cdf_length[t]]`, 16-bit precision) has pmf_length value symbols,
value `_offset[t] + s` for symbol s, and one last symbol for every value outside that range (its escape,
coded with bypass bits). bitmatch's tables (docs/architecture.md) have an underflow escape first and an
overflow escape last, so table t becomes: offset `_offset[t] - 1`, the pmf_length value frequencies as they
are, and CompressAI's escape frequency split between the two escapes (half each, the odd count to the
overflow side; an escape frequency of 1 borrows one count from the most frequent value).
"""

from __future__ import annotations

import numpy as np

from codec.importers.torchfile import CheckpointError
from codec.tables import PRECISION, CodeTables


def compressai_tables(cdf: np.ndarray, length: np.ndarray, offset: np.ndarray, where: str) -> CodeTables:
    rows = []
    for t in range(len(length)):
        rows.append(_frequencies(np.asarray(cdf[t], np.int64), int(length[t]), f"{where} table {t}"))
    width = max(len(row) for row in rows)
    table_cdf = np.full((len(rows), width + 1), 1 << PRECISION, np.uint32)
    for t, freq in enumerate(rows):
        table_cdf[t, 0] = 0
        table_cdf[t, 1 : len(freq) + 1] = np.cumsum(freq)
    lengths = np.array([len(row) for row in rows], np.int32)
    offsets = np.asarray(offset, np.int64) - 1
    if offsets.min() < -(2**31) or offsets.max() + width > 2**31 - 1:
        raise CheckpointError(f"{where}: offsets leave the int32 range")
    return CodeTables(table_cdf, lengths, offsets.astype(np.int32), PRECISION)


def _frequencies(row: np.ndarray, cdf_length: int, where: str) -> np.ndarray:
    """[underflow escape, value frequencies..., overflow escape] of one CompressAI table."""
    if not 3 <= cdf_length <= row.shape[0]:
        raise CheckpointError(f"{where}: _cdf_length {cdf_length} does not fit its CDF row of {row.shape[0]}")
    cumulative = row[:cdf_length]
    freq = np.diff(cumulative)
    if cumulative[0] != 0 or cumulative[-1] != 1 << PRECISION or (freq < 1).any():
        raise CheckpointError(
            f"{where}: not a 16-bit quantized CDF (it must rise from 0 to 65536 in steps of at least 1)"
        )
    values, escape = freq[:-1].copy(), int(freq[-1])
    under, over = escape // 2, escape - escape // 2
    if under == 0:
        values[int(np.argmax(values))] -= 1
        under = 1
    return np.concatenate([[under], values, [over]])
