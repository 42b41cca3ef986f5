"""The base of every codec family's class: a package bound to a runtime, and g_a / g_s sessions by image size.

`codec.codec.Codec` (the hyperprior family) and `codec.lowcx.LowComplexityCodec` derive from it;
`Codec.load` picks the family a package names.
"""

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from codec import networks
from codec.package import CodecPackage
from codec.results import DecodeResult, EncodeResult
from codec.runtime import Runtime, Session

# Padded images up to this size run g_a and g_s on sessions that keep their memory between runs (at most a
# GB for N=128 at 768x512); larger ones on sessions that give it back (codec/runtime.py).
RETAIN_MEMORY_PIXELS = 1 << 19  # 768x512 (Kodak) fits


class FamilyCodec(ABC):
    """A loaded codec package bound to one runtime (see codec/runtime.py for the names)."""

    package: CodecPackage
    digest: str
    precision: str
    runtime_name: str
    _backend: Runtime
    _lean: dict[str, Session]  # g_a and g_s for large images, made on first use

    @abstractmethod
    def encode(self, image: np.ndarray, reconstruct: bool = True, rdoq: Any = None) -> EncodeResult: ...

    @abstractmethod
    def decode(self, data: bytes, allow_foreign: bool = False) -> DecodeResult: ...

    @abstractmethod
    def decode_hyper(self, data: bytes, allow_foreign: bool = False) -> Any: ...

    @abstractmethod
    def hyper_raw(self, z_hat: np.ndarray) -> np.ndarray | None: ...

    def _network(self, name: str, retaining: Session, height: int, width: int) -> Session:
        """`retaining` for an image up to RETAIN_MEMORY_PIXELS (padded), else the lean session of `name`."""
        lat_h, lat_w = networks.latent_shape(height, width)
        if lat_h * lat_w * networks.LATENT_STRIDE**2 <= RETAIN_MEMORY_PIXELS:
            return retaining
        if name not in self._lean:
            self._lean[name] = self._backend.session(self.package.read(name))
        return self._lean[name]
