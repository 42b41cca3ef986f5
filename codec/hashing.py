"""SHA-256 digests of arrays, byte strings and files.

A stage hash identifies an intermediate tensor of the entropy path (z_hat, scale_index, mean, y_hat, recon) so
that two devices can compare their results by digest alone. It is computed over a canonical encoding that does
not depend on the machine's byte order or on the array's memory layout:

    b"bitmatch-array-v1\\0"
    dtype name (ASCII, e.g. b"int32"; byte order is not part of it) + b"\\0"
    ndim as uint32 little-endian
    each dimension as uint64 little-endian
    the elements in C order, each in little-endian byte order
"""

import hashlib
import struct
from pathlib import Path

import numpy as np

_ARRAY_DOMAIN = b"bitmatch-array-v1\0"
_HASHABLE_KINDS = frozenset("biuf")
_FILE_CHUNK = 1 << 20


def stage_hash(arr: np.ndarray) -> str:
    """Hex SHA-256 of the canonical encoding of a numeric array (see the module docstring)."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in _HASHABLE_KINDS or arr.dtype.fields is not None:
        raise TypeError(f"stage_hash takes bool, integer or float arrays, not {arr.dtype}")
    little_endian = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    digest = hashlib.sha256(_ARRAY_DOMAIN)
    digest.update(arr.dtype.name.encode("ascii") + b"\0")
    digest.update(struct.pack(f"<I{arr.ndim}Q", arr.ndim, *arr.shape))
    digest.update(memoryview(little_endian.reshape(-1)).cast("B"))
    return digest.hexdigest()


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk_size: int = _FILE_CHUNK) -> str:
    """Hex SHA-256 of a file's contents, read in chunks so large files never sit in memory whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
