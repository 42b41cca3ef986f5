"""The post-training context-switching entropy model of a factorized latent (the lowcomplexity family).

After Galpin, Balcilar, Lefebvre, Racapé and Hellier, "Entropy coding improvement for low-complexity
compressive auto-encoders", section 3.1. The latent y_hat [1, M, H, W] is integer. Channels are coded in a
fixed order (`order`, section 3.1.4); the element (i, j) of the channel at position k of that order is coded
with one of `contexts` tables of its channel, chosen by eq. 3 from three integer comparisons:

    top  = y[k][i-1, j] >= eps[k],  left = y[k][i, j-1] >= eps[k],  prev = y[k-1][i, j] >= eps[k-1]
    C    = top + left + prev          (0: none, 1: exactly one, 2: two, 3: all three of them)

A neighbour outside the latent (first row, first column, first channel of the order) counts as below its
threshold. eq. 3 writes "exactly one" as a three-way XOR; read literally, a XOR also holds when all three
do, which would leave C = 3 unreachable, so the count is the reading taken. With `contexts == 1` every
element uses its channel's single table (no contexts: the factorized baseline).

Channel activation (section 3.1.2): with `activation`, one bit per channel says whether any element of the
channel differs from the channel's most probable value (`modes`); an inactive channel is not coded and
decodes as all `modes`. Every decision is an integer comparison; the tables are integer CDFs (codec/tables.py)
and the coder is codec/rans.py. The symbol stream has one rANS lane, so the decoder resolves each symbol,
escape included, before the context of the next is needed (codec/_contexts_kernel.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec.errors import CorruptStream, PackageError, SymbolOutOfRange, Truncated
from codec.tables import CodeTables

CONTEXT_COUNTS = (1, 4)


@dataclass(frozen=True, eq=False)
class ContextModel:
    """Tables and integer parameters of the context-switching model of one package."""

    tables: CodeTables  # contexts * M tables: channel c, context C -> table contexts * c + C
    activation_tables: CodeTables | None  # M binary tables (value 0 / 1), None without activation bits
    order: np.ndarray  # int64 [M]: order[k] is the channel coded at position k
    thresholds: np.ndarray  # int64 [M], per channel (eps_c)
    modes: np.ndarray  # int64 [M], per channel: its most probable value
    contexts: int  # 1 or 4

    def __post_init__(self) -> None:
        for name in ("order", "thresholds", "modes"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), np.int64).copy())
        m = self.channels
        if self.contexts not in CONTEXT_COUNTS:
            raise PackageError(f"contexts must be one of {CONTEXT_COUNTS}, got {self.contexts}")
        if sorted(self.order.tolist()) != list(range(m)):
            raise PackageError("the channel order must be a permutation of the channels")
        if self.thresholds.shape != (m,) or self.modes.shape != (m,):
            raise PackageError(f"need {m} thresholds and {m} modes")
        if self.tables.num_tables != self.contexts * m:
            raise PackageError(f"{self.tables.num_tables} tables for {m} channels x {self.contexts} contexts")
        if self.activation_tables is not None and self.activation_tables.num_tables != m:
            raise PackageError(f"{self.activation_tables.num_tables} activation tables for {m} channels")

    @property
    def channels(self) -> int:
        return int(self.order.size)

    @property
    def activation(self) -> bool:
        return self.activation_tables is not None

    def to_json(self) -> dict:
        """The integer parameters, for the manifest (the tables are files of their own)."""
        return {
            "contexts": self.contexts,
            "activation": self.activation,
            "order": self.order.tolist(),
            "thresholds": self.thresholds.tolist(),
            "modes": self.modes.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict, tables: CodeTables, activation_tables: CodeTables | None) -> ContextModel:
        if bool(data["activation"]) != (activation_tables is not None):
            raise PackageError("the manifest's activation flag and the activation tables disagree")
        return cls(
            tables, activation_tables, data["order"], data["thresholds"], data["modes"], int(data["contexts"])
        )

    # --- the encoder side: every context is known up front -------------------------------------------

    def active(self, y_hat: np.ndarray) -> np.ndarray:
        """int32 [M]: 1 where a channel has an element other than its mode (all ones without activation)."""
        planes = np.asarray(y_hat, np.int64)[0]
        if not self.activation:
            return np.ones(self.channels, np.int32)
        return np.any(planes != self.modes[:, None, None], axis=(1, 2)).astype(np.int32)

    def table_indexes(self, y_hat: np.ndarray) -> np.ndarray:
        """int32 [1, M, H, W]: the table of every element (channel order), from eq. 3 on y_hat itself."""
        planes = np.asarray(y_hat, np.int64)[0]
        channel = np.arange(self.channels, dtype=np.int64)[:, None, None]
        if self.contexts == 1:
            return np.broadcast_to(channel, planes.shape)[None].astype(np.int32)
        ordered = planes[self.order]
        context = count_contexts(ordered >= self.thresholds[self.order][:, None, None])
        index = np.empty_like(ordered)
        index[self.order] = self.contexts * self.order[:, None, None] + context
        return index[None].astype(np.int32)

    def coded(self, y_hat: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, table indexes) of the symbol stream: the active channels in coding order, row-major."""
        planes = np.asarray(y_hat, np.int64)[0]
        index = self.table_indexes(y_hat)[0]
        kept = self.order[active[self.order] == 1]
        return planes[kept].reshape(-1).astype(np.int32), index[kept].reshape(-1)


def count_contexts(above: np.ndarray) -> np.ndarray:
    """eq. 3 for planes in coding order: above [K, H, W] bool -> C [K, H, W] int64 (top + left + prev)."""
    above = above.astype(np.int64)
    context = np.zeros_like(above)
    context[:, 1:, :] += above[:, :-1, :]
    context[:, :, 1:] += above[:, :, :-1]
    context[1:] += above[:-1]
    return context


# --- coding ----------------------------------------------------------------------------------------------


def encode(model: ContextModel, y_hat: np.ndarray) -> dict[str, bytes]:
    """The sections of y_hat [1, M, H, W] int32: "a" (activation bits, if the model has them), "y"."""
    from codec import rans

    active = model.active(y_hat)
    sections = {}
    if model.activation_tables is not None:
        channels = np.arange(model.channels, dtype=np.int32)
        sections["a"] = rans.encode(active, channels, model.activation_tables)
    values, indexes = model.coded(y_hat, active)
    sections["y"] = rans.encode(values, indexes, model.tables, lanes=1)
    return sections


def section_names(model: ContextModel) -> tuple[str, ...]:
    return ("a", "y") if model.activation else ("y",)


def decode(model: ContextModel, sections: dict[str, bytes], shape: tuple[int, int]) -> np.ndarray:
    """y_hat [1, M, H, W] int32 from the sections `encode` wrote for a latent of spatial size `shape`."""
    from codec import rans

    active = np.ones(model.channels, np.int32)
    if model.activation_tables is not None:
        channels = np.arange(model.channels, dtype=np.int32)
        active = rans.decode(sections["a"], channels, model.activation_tables)
        if np.any((active != 0) & (active != 1)):
            raise CorruptStream("a channel activation flag is neither 0 nor 1")
    planes = np.empty((model.channels, *shape), np.int32)
    planes[:] = model.modes[model.order].astype(np.int32)[:, None, None]
    _decode_symbols(model, sections["y"], active[model.order].astype(np.int64), planes)
    y_hat = np.empty_like(planes)
    y_hat[model.order] = planes
    return y_hat[None]


def _decode_symbols(model: ContextModel, data: bytes, active: np.ndarray, planes: np.ndarray) -> None:
    """Decode the one-lane symbol stream into `planes` (coding order), or raise the stream's error."""
    import os

    from codec import _contexts_kernel as kernel
    from codec import rans

    cdf, length, offset = rans._table_arrays(model.tables)
    states, words = rans._parse(data)
    if states.size != 1:
        raise CorruptStream(f"the context-coded stream has {states.size} rANS lanes, not 1")
    numpy_backend = os.environ.get(rans.BACKEND_ENV) == "numpy"
    run = kernel.decode_planes_py if numpy_backend else kernel.decode_planes
    eps = model.thresholds[model.order]
    status = run(states, words, cdf, length, offset, model.order, eps, active, model.contexts, planes)
    if status == kernel.ERR_TRUNCATED:
        raise Truncated("rANS stream ran out of words")
    if status == kernel.ERR_SYMBOL:
        raise SymbolOutOfRange("escape payload longer than 31 prefix bits or decoded value outside int32")
    if status == kernel.ERR_CORRUPT:
        raise CorruptStream("rANS lane did not end in its initial state or words were left over")
