"""What an encode or a decode returns (the records of every codec family), and the per-stage clock."""

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from codec.hashing import stage_hash
from codec.stages import STAGES

if TYPE_CHECKING:
    from codec.rdoq import RdoqStats


@dataclass
class Latents:
    """Every tensor of the entropy path, as the encoder or the decoder computed it."""

    z_hat: np.ndarray
    scale_index: np.ndarray
    symbols: np.ndarray
    mean: np.ndarray
    y_hat: np.ndarray

    def hashes(self, recon: np.ndarray | None) -> dict[str, str]:
        """The stage hashes; without a reconstruction (an encode that did not reconstruct) no `recon`."""
        arrays = {**self.__dict__, "recon": recon}
        return {name: stage_hash(arrays[name]) for name in STAGES if arrays[name] is not None}


@dataclass
class EncodeResult:
    """What an encode computed. Without `reconstruct` g_s does not run: `recon` and `psnr` are None and
    `stage_hashes` has no `recon` (decoding the bitstream on the same runtime gives that image)."""

    bitstream: bytes
    stage_hashes: dict[str, str]
    bpp: float
    psnr: float | None
    timings: dict[str, float]  # milliseconds per stage
    recon: np.ndarray | None
    scale_index: np.ndarray
    latents: Latents | None = field(repr=False, default=None)
    y_hat_real: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    y: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))  # g_a's output
    rdoq: "RdoqStats | None" = field(repr=False, default=None)  # with `encode(rdoq=...)`


@dataclass
class DecodeResult:
    recon: np.ndarray
    stage_hashes: dict[str, str]
    timings: dict[str, float]
    scale_index: np.ndarray
    latents: Latents | None = field(repr=False, default=None)
    y_hat_real: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    bitstream_codec: str = ""  # the digest the bitstream names (another package's, with allow_foreign)


class StageClock:
    """Milliseconds spent per named stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self._last) * 1e3
        self._last = now

    def total(self) -> dict[str, float]:
        self.timings["total"] = (time.perf_counter() - self._start) * 1e3
        return self.timings
