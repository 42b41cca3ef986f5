"""Blobs kept in memory by content digest: package archives, decoded images and parsed maps, read once.

A digest names its content for good, so nothing here is ever stale and nothing needs invalidating: the
cache only forgets, least recently used first, to stay within `max_bytes`. Values are shared between
threads and callers, so arrays are read-only and map sets are never modified after they are built.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from codec.images import decode_png
from server import verdicts
from server.drift import maps_json
from server.forensics import decode_array
from server.storage import BlobStore

DEFAULT_MAX_BYTES = 256 << 20
T = TypeVar("T")


class MapSet(dict):
    """One side's forensic maps as stored (name -> encoded array), each decoded on first use, once."""

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(raw)
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str) -> np.ndarray:
        """`decode_array` of one map (int64, or float64 for a float map), read-only."""
        found = self._arrays.get(name)
        if found is None:
            found = _read_only(decode_array(self[name]))
            self._arrays[name] = found
        return found


def parse_maps(data: bytes) -> MapSet:
    return MapSet(maps_json(data))


class BlobCache:
    """Reads through a `BlobStore`: each blob read from disk, and decoded, at most once while it is kept."""

    def __init__(self, store: BlobStore, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.store, self.max_bytes = store, max_bytes
        self._entries: OrderedDict[tuple[str, ...], tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def blob(self, digest: str) -> bytes:
        """The blob's bytes (`BlobNotFound` if absent)."""
        return self._get(("blob", digest), lambda: self.store.get(digest), len)

    def image(self, digest: str) -> np.ndarray:
        """A stored PNG (a source image or a reconstruction) as a read-only uint8 array."""
        return self._get(("image", digest), lambda: _read_only(decode_png(self.store.get(digest))), _nbytes)

    def maps(self, digest: str) -> MapSet:
        """A stored maps blob (JSON), parsed once; `IndexMapError` if it is not a JSON object."""
        return self._get(("maps", digest), lambda: parse_maps(self.store.get(digest)), _maps_bytes)

    def psnr(self, source_digest: str, recon_digest: str) -> float | None:
        """PSNR of a stored reconstruction against a stored source image, computed once per pair."""

        def compute() -> float | None:
            return verdicts.psnr(self.image(source_digest), self.image(recon_digest))

        return self._get(("psnr", source_digest, recon_digest), compute, lambda _: 64)

    def put_maps(self, data: bytes, maps: dict[str, Any]) -> str:
        """Store a maps blob and keep what it parses to (the caller's dict, as given)."""
        digest = self.store.put(data)
        kept = MapSet(maps)
        self._keep(("maps", digest), kept, _maps_bytes(kept))
        return digest

    def _get(self, key: tuple[str, ...], load: Callable[[], T], size: Callable[[T], int]) -> T:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[0]
        value = load()  # outside the lock: two threads may load one blob at once, to the same value
        self._keep(key, value, size(value))
        return value

    def _keep(self, key: tuple[str, ...], value: Any, nbytes: int) -> None:
        if nbytes > self.max_bytes // 4:  # a huge image would push everything else out
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._entries[key] = (value, nbytes)
            self._size += nbytes
            while self._size > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= dropped


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _nbytes(array: np.ndarray) -> int:
    return int(array.nbytes)


def _maps_bytes(maps: MapSet) -> int:
    """The encoded maps and their decoded arrays (8 bytes an element), as far as the shapes say."""
    total = 0
    for value in maps.values():
        if not isinstance(value, dict):
            total += 1024
            continue
        try:
            elements = int(np.prod([int(n) for n in value.get("shape", ())]))
        except (TypeError, ValueError):
            elements = 0
        total += len(str(value.get("data", ""))) + 8 * elements
    return total
