"""How the last layer of h_s becomes a scale index per latent element (and a mean): the two heads.

- `LevelHead` (our codec; Said, Pourreza and Le, "Optimized learned entropy coding parameters for practical
  neural image and video compression"): the first M channels are u, the scale parameter, with
  sigma = T(u); the index is the level k = clip(floor(u N), 0, N - 1). The last M channels are the mean.
- `ScaleTableHead` (CompressAI's GaussianConditional): the first M channels are sigma; the index is
  `build_indexes`: the number of scale-table entries t[0..L-2] below max(sigma, bound), i.e.
  (L - 1) - #{t : max(sigma, bound) <= t}. The last M channels, when the model has them, are the mean.
  (CompressAI's default table starts a hair below its bound, 0.10999999 < 0.11: such an entry never counts.)

Means, when the codec carries them in fixed point, are integers in units of 2^-mean_bits.

Each head has a float semantics (the float packages, and the float tail of the calibration search) and an
integer one (the integer packages): on the last accumulator `acc`, in units of 2^-e per channel,

    level:       k = clip(floor(acc N 2^-e), 0, N - 1)
    scale table: k = (L - 1) - #{t >= bound : acc <= floor(t 2^e)}   (acc <= t 2^e <=> acc <= floor(t 2^e))
    mean:        floor(acc 2^-(e - m)), the rounding half folded into the bias, clipped to +-2^30

The scale-table rule needs no multiplication at all, and equals the float rule exactly for an exact sigma:
for an entry t at or above the bound, max(sigma, bound) <= t <=> sigma <= t, and an entry below the bound
never counts (t runs over the counted entries only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MEAN_LIMIT = 2**30
THRESHOLD_LIMIT = 2**40  # thresholds beyond any 32-bit accumulator are clipped here (exact in float64)


@dataclass(frozen=True)
class LevelHead:
    levels: int
    mean_bits: int

    kind = "levels"
    has_mean = True

    @property
    def table_count(self) -> int:
        return self.levels

    def latent_channels(self, c_out: int) -> int:
        return c_out // 2

    def float_index(self, u: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(u * self.levels), 0, self.levels - 1).astype(np.int64)

    def integer_index(self, acc: np.ndarray, e: np.ndarray) -> np.ndarray:
        scaled = np.floor(acc * self.levels * np.exp2(-e.astype(np.float64)).reshape(1, -1, 1, 1))
        return np.clip(scaled, 0, self.levels - 1).astype(np.int64)

    def index_growth(self, e: np.ndarray) -> int:
        return self.levels * 2 ** max(int(-e.min()), 0)

    def to_json(self) -> dict:
        return {"kind": self.kind, "levels": self.levels, "mean_bits": self.mean_bits}


@dataclass(frozen=True)
class ScaleTableHead:
    scale_table: tuple[float, ...]  # float32 values, ascending
    scale_bound: float  # float32 lower bound of sigma (CompressAI's LowerBound)
    mean_bits: int | None  # None: a zero-mean model, h_s outputs the M scales only

    kind = "scale-table"

    def __post_init__(self) -> None:
        table = np.asarray(self.scale_table, np.float32)
        if table.ndim != 1 or len(table) < 2 or not np.all(np.diff(table) > 0):
            raise ValueError("the scale table needs at least two strictly increasing entries")
        if not self.scale_bound > 0:
            raise ValueError(f"the scale bound must be positive, got {self.scale_bound}")

    @property
    def has_mean(self) -> bool:
        return self.mean_bits is not None

    @property
    def table_count(self) -> int:
        return len(self.scale_table)

    def latent_channels(self, c_out: int) -> int:
        return c_out // 2 if self.has_mean else c_out

    def thresholds(self) -> np.ndarray:
        """t[0..L-2] as float32 (the entries the index counts)."""
        return np.asarray(self.scale_table[:-1], np.float32)

    def float_index(self, sigma: np.ndarray) -> np.ndarray:
        """`build_indexes` in float32, entry by entry, as CompressAI computes it."""
        s = np.maximum(np.asarray(sigma, np.float32), np.float32(self.scale_bound))
        index = np.full(s.shape, len(self.scale_table) - 1, np.int64)
        for t in self.thresholds():
            index -= s <= t
        return index

    def counted_thresholds(self) -> np.ndarray:
        """The entries that can count: max(sigma, bound) <= t never holds for an entry below the bound."""
        thresholds = self.thresholds()
        return thresholds[thresholds >= np.float32(self.scale_bound)]

    def integer_thresholds(self, e: np.ndarray) -> np.ndarray:
        """floor(t 2^e_j) per counted entry t and channel j: int64 [T, M], clipped to 2^40."""
        return np.array(
            [
                [min(math.floor(float(t) * 2.0 ** int(ej)), THRESHOLD_LIMIT) for ej in e]
                for t in self.counted_thresholds()
            ],
            np.int64,
        ).reshape(-1, len(e))

    def integer_index(self, acc: np.ndarray, e: np.ndarray) -> np.ndarray:
        index = np.full(acc.shape, len(self.scale_table) - 1, np.int64)
        for row in self.integer_thresholds(e):
            index -= acc <= row.reshape(1, -1, 1, 1)
        return index

    def index_growth(self, e: np.ndarray) -> int:
        return 1

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "scale_table": [float(t) for t in self.scale_table],
            "scale_bound": float(self.scale_bound),
            "mean_bits": self.mean_bits,
        }


Head = LevelHead | ScaleTableHead


def head_from_json(data: dict) -> Head:
    if data["kind"] == LevelHead.kind:
        return LevelHead(int(data["levels"]), int(data["mean_bits"]))
    if data["kind"] == ScaleTableHead.kind:
        mean_bits = data.get("mean_bits")
        return ScaleTableHead(
            tuple(float(t) for t in data["scale_table"]),
            float(data["scale_bound"]),
            None if mean_bits is None else int(mean_bits),
        )
    raise ValueError(f"unknown h_s head {data['kind']!r}")


def integer_mean(acc: np.ndarray, e: np.ndarray, mean_bits: int) -> np.ndarray:
    """floor(acc 2^-(e - m)) clipped to +-2^30 (acc float64 holding exact integers)."""
    scale = np.exp2(-(e - mean_bits).astype(np.float64)).reshape(1, -1, 1, 1)
    return np.clip(np.floor(acc * scale), -MEAN_LIMIT, MEAN_LIMIT).astype(np.int64)


def float_outputs(head: Head, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(index, mean in latent units) from a float h_s output: the float packages' semantics."""
    m = head.latent_channels(raw.shape[1])
    index = head.float_index(raw[:, :m])
    if not head.has_mean:
        return index, None
    mean = raw[:, m:]
    if isinstance(head, LevelHead):  # our float twin codes its mean in fixed point
        mean = np.clip(np.rint(mean * 2.0**head.mean_bits), -MEAN_LIMIT, MEAN_LIMIT) * 2.0**-head.mean_bits
    return index, mean
