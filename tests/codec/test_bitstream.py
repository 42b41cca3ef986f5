"""The .bmc container: exact layout, round trips, and a typed error for every kind of damage."""

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.bitstream import MAX_PIXELS, Bitstream, pack, unpack
from codec.errors import (
    BadMagic,
    BitstreamError,
    CrcMismatch,
    LengthFieldError,
    Truncated,
    UnsupportedVersion,
    WrongCodec,
)

DIGEST = bytes(range(32)).hex()
OTHER_DIGEST = bytes(range(1, 33)).hex()
SAMPLE = Bitstream(DIGEST, 17, 31, {"z": b"\x01\x02\x03", "y": b"\xff" * 5})
SECTIONS_START = 46 + 1 + (1 + 1 + 4) * 2  # fixed header, count, two one-letter entries


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """`data` with one field overwritten and the CRC recomputed, so the field itself is what gets tested."""
    body = bytearray(data[:-4])
    struct.pack_into(fmt, body, offset, value)
    return with_crc(bytes(body))


def test_layout_matches_the_documented_table():
    expected_body = (
        b"BMC\x1a"
        + struct.pack("<H", 1)
        + bytes(range(32))
        + struct.pack("<II", 17, 31)
        + b"\x02"
        + b"\x01z"
        + struct.pack("<I", 3)
        + b"\x01y"
        + struct.pack("<I", 5)
        + b"\x01\x02\x03"
        + b"\xff" * 5
    )
    assert pack(SAMPLE) == with_crc(expected_body)
    assert len(expected_body) == SECTIONS_START + 8


def test_round_trip_keeps_section_order_and_accepts_any_buffer_type():
    data = pack(SAMPLE)
    for buffer in (data, bytearray(data), memoryview(data)):
        decoded = unpack(buffer, expected_digest=DIGEST)
        assert decoded == SAMPLE
        assert list(decoded.sections) == ["z", "y"]
        assert all(type(payload) is bytes for payload in decoded.sections.values())


section_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=16)


@settings(max_examples=200, deadline=None)
@given(
    digest=st.binary(min_size=32, max_size=32),
    height=st.integers(1, 8192),
    width=st.integers(1, 8192),
    sections=st.dictionaries(section_names, st.binary(max_size=300), min_size=1, max_size=16),
)
def test_round_trip_of_random_bitstreams(digest, height, width, sections):
    bs = Bitstream(digest.hex(), height, width, sections)
    assert unpack(pack(bs), expected_digest=digest.hex()) == bs


def test_expected_digest_is_compared_case_insensitively_and_optional():
    data = pack(SAMPLE)
    assert unpack(data, expected_digest=DIGEST.upper()) == SAMPLE
    assert unpack(data) == SAMPLE


def test_bitstream_of_another_codec_is_refused():
    with pytest.raises(WrongCodec):
        unpack(pack(SAMPLE), expected_digest=OTHER_DIGEST)


@pytest.mark.parametrize("data", [b"", b"B", b"BMC", b"BMC\x1a", pack(SAMPLE)[:45]])
def test_short_prefixes_of_a_valid_stream_are_truncated(data):
    with pytest.raises(Truncated):
        unpack(data)


@pytest.mark.parametrize(
    "data", [b"PNG\x89", b"x", b"\x89PNG\r\n\x1a\n" + bytes(100), b"BMC\x00" + pack(SAMPLE)[4:]]
)
def test_other_files_are_bad_magic(data):
    with pytest.raises(BadMagic):
        unpack(data)


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_unknown_format_version_is_refused(version):
    with pytest.raises(UnsupportedVersion):
        unpack(patched(pack(SAMPLE), 4, "<H", version))


def test_every_truncation_is_a_typed_error():
    data = pack(SAMPLE)
    for end in range(len(data)):
        with pytest.raises((Truncated, CrcMismatch)):
            unpack(data[:end])


def test_truncation_inside_the_payload_is_reported_as_truncated():
    with pytest.raises(Truncated):
        unpack(pack(SAMPLE)[:-6])


def test_trailing_bytes_are_a_length_error():
    with pytest.raises(LengthFieldError):
        unpack(pack(SAMPLE) + b"\x00")


def test_every_single_bit_flip_is_detected():
    data = pack(SAMPLE)
    for bit in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(BitstreamError):
            unpack(bytes(damaged))


def test_payload_damage_is_a_crc_mismatch():
    data = bytearray(pack(SAMPLE))
    data[SECTIONS_START] ^= 0x40
    with pytest.raises(CrcMismatch):
        unpack(bytes(data))


def test_a_huge_section_length_is_refused_without_allocating():
    with pytest.raises(Truncated):
        unpack(patched(pack(SAMPLE), 49, "<I", 0xFFFFFFFF))


def test_section_lengths_that_shift_the_boundary_are_caught():
    data = pack(SAMPLE)
    with pytest.raises(Truncated):  # z claims one byte more: the stream is one byte short
        unpack(patched(data, 49, "<I", 4))
    with pytest.raises(LengthFieldError):  # z claims one byte less: one byte is left over
        unpack(patched(data, 49, "<I", 2))


@pytest.mark.parametrize("count", [0, 17, 255])
def test_section_count_outside_the_limits_is_refused(count):
    with pytest.raises(LengthFieldError):
        unpack(patched(pack(SAMPLE), 46, "<B", count))


@pytest.mark.parametrize("name_length", [0, 17, 255])
def test_section_name_length_outside_the_limits_is_refused(name_length):
    with pytest.raises(LengthFieldError):
        unpack(patched(pack(SAMPLE), 47, "<B", name_length))


@pytest.mark.parametrize("name_byte", [b"Z", b"\x00", b"-", b"\xff"])
def test_section_names_outside_the_alphabet_are_refused(name_byte):
    with pytest.raises(LengthFieldError):
        unpack(patched(pack(SAMPLE), 48, "<B", name_byte[0]))


def test_duplicate_section_names_are_refused():
    with pytest.raises(LengthFieldError):
        unpack(patched(pack(SAMPLE), 54, "<B", ord("z")))


@pytest.mark.parametrize(
    ("height", "width"), [(0, 31), (17, 0), (MAX_PIXELS // 1024 + 1, 1024), (0xFFFFFFFF, 0xFFFFFFFF)]
)
def test_image_size_outside_the_limits_is_refused(height, width):
    data = patched(patched(pack(SAMPLE), 38, "<I", height), 42, "<I", width)
    with pytest.raises(LengthFieldError):
        unpack(data)


def test_largest_allowed_image_size_is_accepted():
    bs = Bitstream(DIGEST, MAX_PIXELS // 1024, 1024, {"z": b""})
    assert unpack(pack(bs)) == bs


@pytest.mark.parametrize(
    "bad",
    [
        Bitstream("ab" * 31, 1, 1, {"z": b""}),
        Bitstream(DIGEST.upper(), 1, 1, {"z": b""}),
        Bitstream(DIGEST, 0, 1, {"z": b""}),
        Bitstream(DIGEST, MAX_PIXELS, 2, {"z": b""}),
        Bitstream(DIGEST, 1, 1, {}),
        Bitstream(DIGEST, 1, 1, {f"s{i}": b"" for i in range(17)}),
        Bitstream(DIGEST, 1, 1, {"": b""}),
        Bitstream(DIGEST, 1, 1, {"a" * 17: b""}),
        Bitstream(DIGEST, 1, 1, {"Y": b""}),
        Bitstream(DIGEST, 1, 1, {"ü": b""}),
    ],
)
def test_pack_refuses_what_the_format_cannot_hold(bad):
    with pytest.raises(ValueError):
        pack(bad)


def test_payloads_returns_exactly_the_named_sections_in_order():
    assert SAMPLE.payloads("z", "y") == (b"\x01\x02\x03", b"\xff" * 5)
    for names in (("y", "z"), ("z",), ("z", "y", "w")):
        with pytest.raises(LengthFieldError):
            SAMPLE.payloads(*names)
