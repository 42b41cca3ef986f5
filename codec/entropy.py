"""The entropy models of a codec package: the factorized prior of z and the conditional model of y.

As in CompressAI's entropy models, each model owns its code tables and turns latents into coded symbols and
symbols back into latents; the scale index of each y element comes from h_s (codec/hyper.py). A package's
latents are in one of two formats (`LatentFormat`, from the manifest):

- `fixed`: everything after the parse is an integer. z_hat = symbols 2^b + median_q (units of 2^-b, b =
  `z_bits`; b = 0 and no medians for our own codec), the mean is an integer in units of 2^-m, and
  y_hat = symbols 2^m + mean (int32). Exact on every device once h_s is.
- `float`: CompressAI's float entropy path, kept on purpose. z_hat = symbols + median and y_hat =
  symbols + mean in float32, with symbols = round(y - mean) computed in float32 as torch does.

Symbols are clipped so that every latent stays inside int32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec.errors import CorruptStream, PackageError
from codec.tables import CodeTables

FIXED, FLOAT = "fixed", "float"
MEAN_KINDS = ("fixed", "float", "none")


@dataclass(frozen=True)
class LatentFormat:
    kind: str = FIXED  # fixed | float
    mean: str = FIXED  # fixed | float | none
    mean_bits: int = 8
    z_bits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in (FIXED, FLOAT) or self.mean not in MEAN_KINDS:
            raise PackageError(f"unknown latent format {self.kind!r} / mean {self.mean!r}")
        if (self.kind, self.mean) in ((FIXED, FLOAT), (FLOAT, FIXED)):
            raise PackageError(
                "a fixed-point latent needs a fixed or no mean, a float latent a float or no mean"
            )
        if not 0 <= self.mean_bits <= 16 or not 0 <= self.z_bits <= 16:
            raise PackageError("mean_bits and z_bits must lie in [0, 16]")

    def to_json(self) -> dict:
        return {"latent": self.kind, "mean": self.mean, "mean_bits": self.mean_bits, "z_bits": self.z_bits}

    @classmethod
    def from_json(cls, data: dict) -> LatentFormat:
        return cls(str(data["latent"]), str(data["mean"]), int(data["mean_bits"]), int(data["z_bits"]))


def _rint_symbols(residual: np.ndarray, fraction_bits: int = 0) -> np.ndarray:
    """round(residual), clipped so that symbols 2^fraction_bits stays inside int32."""
    limit = float(2 ** (30 - fraction_bits))
    return np.rint(np.clip(residual, -limit, limit)).astype(np.int32)


def _checked_int32(values: np.ndarray) -> np.ndarray:
    """int64 -> int32, refused when it leaves int32 (only a damaged stream gets there)."""
    if values.size and (values.min() < -(2**31) or values.max() > 2**31 - 1):
        raise CorruptStream("decoded latent leaves the int32 range: the stream is damaged")
    return values.astype(np.int32)


class FactorizedZ:
    """Per-channel tables for z; symbols = round(z - median_c), z_hat = symbols + median_c."""

    def __init__(self, tables: CodeTables, fmt: LatentFormat, medians: np.ndarray | None = None) -> None:
        self.tables, self.format = tables, fmt
        channels = tables.num_tables
        self.medians = np.zeros(channels, np.float32) if medians is None else np.asarray(medians, np.float32)
        if self.medians.shape != (channels,):
            raise PackageError(f"{len(self.medians)} z medians for {channels} z tables")
        self.medians_fixed = np.rint(self.medians.astype(np.float64) * 2.0**fmt.z_bits).astype(np.int64)

    @property
    def channels(self) -> int:
        return self.tables.num_tables

    def indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        channels = np.arange(self.channels, dtype=np.int32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray(np.broadcast_to(channels, shape))

    def symbols(self, z: np.ndarray) -> np.ndarray:
        bits = self.format.z_bits if self.format.kind == FIXED else 0
        return _rint_symbols(np.asarray(z, np.float32) - self.medians.reshape(1, -1, 1, 1), bits)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        if self.format.kind == FLOAT:
            return symbols.astype(np.float32) + self.medians.reshape(1, -1, 1, 1)
        fixed = symbols.astype(np.int64) * (1 << self.format.z_bits) + self.medians_fixed.reshape(1, -1, 1, 1)
        return _checked_int32(fixed)


class ConditionalY:
    """Tables indexed by h_s's scale index; symbols = round(y - mean), y_hat = symbols + mean."""

    def __init__(self, tables: CodeTables, fmt: LatentFormat) -> None:
        self.tables, self.format = tables, fmt

    def zero_mean(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32 if self.format.kind == FLOAT else np.int32)

    def symbols(self, y: np.ndarray, mean: np.ndarray) -> np.ndarray:
        if self.format.kind == FLOAT:
            return _rint_symbols(np.asarray(y, np.float32) - np.asarray(mean, np.float32))
        residual = y.astype(np.float64) - mean.astype(np.float64) * 2.0**-self.format.mean_bits
        return _rint_symbols(residual, self.format.mean_bits)

    def dequantize(self, symbols: np.ndarray, mean: np.ndarray) -> np.ndarray:
        if self.format.kind == FLOAT:
            return symbols.astype(np.float32) + mean.astype(np.float32)
        return _checked_int32(symbols.astype(np.int64) * (1 << self.format.mean_bits) + mean.astype(np.int64))

    def real(self, y_hat: np.ndarray) -> np.ndarray:
        """y_hat in latent units, float32 (the input of g_s)."""
        if self.format.kind == FLOAT:
            return y_hat.astype(np.float32)
        return (y_hat.astype(np.float64) * 2.0**-self.format.mean_bits).astype(np.float32)
