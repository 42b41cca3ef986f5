"""stage_hash digests an array's values, shape and dtype, independent of byte order and memory layout."""

import hashlib
import struct

import numpy as np
import pytest

from codec.hashing import sha256_bytes, sha256_file, stage_hash


def test_stage_hash_matches_the_documented_canonical_encoding():
    arr = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32)
    canonical = (
        b"bitmatch-array-v1\0"
        + b"int32\0"
        + struct.pack("<IQQ", 2, 2, 3)
        + b"".join(struct.pack("<i", v) for v in (1, -2, 3, 4, 5, -6))
    )
    assert stage_hash(arr) == hashlib.sha256(canonical).hexdigest()


def test_stage_hash_ignores_byte_order_and_memory_layout():
    arr = np.arange(-12, 12, dtype=np.int32).reshape(4, 6)
    reference = stage_hash(arr)
    assert stage_hash(arr.astype(">i4")) == reference
    assert stage_hash(np.asfortranarray(arr)) == reference
    strided = np.zeros((4, 12), dtype=np.int32)
    strided[:, ::2] = arr
    assert stage_hash(strided[:, ::2]) == reference


@pytest.mark.parametrize(
    "other",
    [
        np.arange(-12, 12, dtype=np.int64).reshape(4, 6),  # same values, other dtype
        np.arange(-12, 12, dtype=np.int32).reshape(6, 4),  # same bytes, other shape
        np.arange(-12, 12, dtype=np.int32).reshape(1, 4, 6),  # extra axis
        np.arange(-11, 13, dtype=np.int32).reshape(4, 6),  # other values
    ],
)
def test_stage_hash_separates_dtype_shape_and_values(other):
    assert stage_hash(other) != stage_hash(np.arange(-12, 12, dtype=np.int32).reshape(4, 6))


def test_stage_hash_handles_empty_scalar_bool_and_uint8_arrays():
    digests = {
        stage_hash(np.zeros((0, 3), dtype=np.int32)),
        stage_hash(np.zeros((3, 0), dtype=np.int32)),
        stage_hash(np.array(7, dtype=np.int32)),
        stage_hash(np.array([True, False])),
        stage_hash(np.full((2, 2, 3), 255, dtype=np.uint8)),
        stage_hash(np.array([0.5], dtype=">f4")),
    }
    assert len(digests) == 6
    assert all(len(d) == 64 for d in digests)


def test_stage_hash_rejects_non_numeric_arrays():
    with pytest.raises(TypeError):
        stage_hash(np.array(["a"]))
    with pytest.raises(TypeError):
        stage_hash(np.array([1], dtype=object))


def test_sha256_bytes_and_streamed_file_hash_agree_with_hashlib(tmp_path):
    payload = bytes(range(256)) * 5000  # 1.28 MB: several chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    expected = hashlib.sha256(payload).hexdigest()
    assert sha256_bytes(payload) == expected
    assert sha256_file(path) == expected
    assert sha256_file(str(path), chunk_size=7) == expected
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
