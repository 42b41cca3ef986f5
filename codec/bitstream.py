"""The `.bmc` container: one coded image with the digest of the codec package that made it.

Byte layout (all integers unsigned little-endian; S = section count):

| offset          | size | field                                                                |
|-----------------|------|----------------------------------------------------------------------|
| 0               | 4    | magic ``b"BMC\\x1a"``                                                 |
| 4               | 2    | format version (1)                                                   |
| 6               | 32   | codec-package digest (raw SHA-256 bytes)                             |
| 38              | 4    | image height, >= 1                                                   |
| 42              | 4    | image width, >= 1; height x width <= 64 megapixels (64 x 2^20)       |
| 46              | 1    | section count S, 1..16                                               |
| 47              | var  | S section entries: name length n (1 byte, 1..16), name (n bytes of   |
|                 |      | ``[a-z0-9_]``, unique), payload length (4 bytes)                     |
| after entries   | var  | the S payloads, in entry order, back to back                         |
| end - 4         | 4    | CRC-32 (zlib / ISO-HDLC) of every byte before it                     |

The codec writes two sections, ``z`` (the hyper-latent) then ``y`` (the latent), each an rANS stream
(codec/rans.py).

Decoding checks, in this order: magic, version, the header's own fields against the bytes present (every
length is compared with the data before anything is sliced, so no allocation is sized by an unchecked field),
the total length (short data is `Truncated`, extra bytes a `LengthFieldError`), the CRC, then the codec digest
and the image size. Only then are the sections handed out. Every failure is a `BitstreamError` subclass.
"""

import re
import struct
import zlib
from dataclasses import dataclass

from codec.errors import (
    BadMagic,
    CrcMismatch,
    LengthFieldError,
    Truncated,
    UnsupportedVersion,
    WrongCodec,
)

MAGIC = b"BMC\x1a"
FORMAT_VERSION = 1
MAX_SECTIONS = 16
MAX_NAME_LENGTH = 16
MAX_PIXELS = 64 * 2**20
MAX_SECTION_LENGTH = 2**32 - 1

_FIXED = struct.Struct("<4sH32sIIB")
_SECTION_LENGTH = struct.Struct("<I")
_CRC = struct.Struct("<I")
_NAME_PATTERN = re.compile(rb"[a-z0-9_]+")
_DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Bitstream:
    codec_digest: str  # hex SHA-256 of the codec package (64 lower-case hex chars)
    height: int
    width: int
    sections: dict[str, bytes]  # ordered: the codec writes "z", then "y"

    def payloads(self, *names: str) -> tuple[bytes, ...]:
        """The payloads of exactly the sections `names`, in that order, or LengthFieldError."""
        if tuple(self.sections) != names:
            raise LengthFieldError(f"bitstream holds sections {list(self.sections)}, expected {list(names)}")
        return tuple(self.sections.values())


def pack(bs: Bitstream) -> bytes:
    """Serialise a bitstream. Raises ValueError when a field cannot be represented in the format."""
    _check_packable(bs)
    header = [
        _FIXED.pack(
            MAGIC, FORMAT_VERSION, bytes.fromhex(bs.codec_digest), bs.height, bs.width, len(bs.sections)
        )
    ]
    for name, payload in bs.sections.items():
        encoded = name.encode("ascii")
        header.append(bytes([len(encoded)]) + encoded + _SECTION_LENGTH.pack(len(payload)))
    body = b"".join(header) + b"".join(bytes(payload) for payload in bs.sections.values())
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes | bytearray | memoryview, expected_digest: str | None = None) -> Bitstream:
    """Parse and verify a `.bmc` container.

    `expected_digest` (hex), when given, turns a bitstream of another codec package into `WrongCodec`.
    """
    data = bytes(data)
    digest, height, width, count = _read_fixed_header(data)
    entries, payload_start = _read_section_entries(data, count)
    crc_offset = payload_start + sum(length for _, length in entries)
    _check_total_length(len(data), crc_offset)
    _check_crc(data, crc_offset)
    if expected_digest is not None and digest != expected_digest.lower():
        raise WrongCodec(f"bitstream was made by codec {digest[:16]}…, expected {expected_digest[:16]}…")
    _check_image_size(height, width)
    return Bitstream(digest, height, width, _slice_sections(data, entries, payload_start))


def _read_fixed_header(data: bytes) -> tuple[str, int, int, int]:
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise BadMagic(f"not a .bmc bitstream (starts with {data[: len(MAGIC)]!r})")
    if len(data) < _FIXED.size:
        raise Truncated(f"{len(data)} bytes is shorter than the {_FIXED.size}-byte header")
    _, version, digest, height, width, count = _FIXED.unpack_from(data)
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(f"format version {version}; this decoder reads version {FORMAT_VERSION}")
    if not 1 <= count <= MAX_SECTIONS:
        raise LengthFieldError(f"section count {count} outside 1..{MAX_SECTIONS}")
    return digest.hex(), height, width, count


def _read_section_entries(data: bytes, count: int) -> tuple[list[tuple[str, int]], int]:
    entries: list[tuple[str, int]] = []
    pos = _FIXED.size
    for _ in range(count):
        _require(data, pos + 1, "section name length")
        name_length = data[pos]
        if not 1 <= name_length <= MAX_NAME_LENGTH:
            raise LengthFieldError(f"section name length {name_length} outside 1..{MAX_NAME_LENGTH}")
        _require(data, pos + 1 + name_length + _SECTION_LENGTH.size, "section entry")
        raw_name = data[pos + 1 : pos + 1 + name_length]
        if not _NAME_PATTERN.fullmatch(raw_name):
            raise LengthFieldError(f"section name {raw_name!r} is not [a-z0-9_]+")
        name = raw_name.decode("ascii")
        if any(name == seen for seen, _ in entries):
            raise LengthFieldError(f"section {name!r} appears twice")
        (length,) = _SECTION_LENGTH.unpack_from(data, pos + 1 + name_length)
        entries.append((name, length))
        pos += 1 + name_length + _SECTION_LENGTH.size
    return entries, pos


def _require(data: bytes, end: int, what: str) -> None:
    if len(data) < end:
        raise Truncated(f"data ends at byte {len(data)} inside the {what} (needs {end})")


def _check_total_length(actual: int, crc_offset: int) -> None:
    expected = crc_offset + _CRC.size
    if actual < expected:
        raise Truncated(f"section lengths need {expected} bytes, only {actual} present")
    if actual > expected:
        raise LengthFieldError(f"{actual - expected} trailing bytes after the CRC")


def _check_crc(data: bytes, crc_offset: int) -> None:
    (stored,) = _CRC.unpack_from(data, crc_offset)
    computed = zlib.crc32(memoryview(data)[:crc_offset])
    if stored != computed:
        raise CrcMismatch(f"CRC-32 {computed:08x} of the content differs from the stored {stored:08x}")


def _check_image_size(height: int, width: int) -> None:
    if height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise LengthFieldError(f"image size {height}x{width} outside 1..{MAX_PIXELS} pixels")


def _slice_sections(data: bytes, entries: list[tuple[str, int]], start: int) -> dict[str, bytes]:
    sections: dict[str, bytes] = {}
    for name, length in entries:
        sections[name] = data[start : start + length]
        start += length
    return sections


def _check_packable(bs: Bitstream) -> None:
    if not isinstance(bs.codec_digest, str) or not _DIGEST_PATTERN.fullmatch(bs.codec_digest):
        raise ValueError("codec_digest must be 64 lower-case hex characters")
    if bs.height < 1 or bs.width < 1 or bs.height * bs.width > MAX_PIXELS:
        raise ValueError(f"image size {bs.height}x{bs.width} outside 1..{MAX_PIXELS} pixels")
    if not 1 <= len(bs.sections) <= MAX_SECTIONS:
        raise ValueError(f"{len(bs.sections)} sections; the format holds 1..{MAX_SECTIONS}")
    for name, payload in bs.sections.items():
        if not (len(name) <= MAX_NAME_LENGTH and _NAME_PATTERN.fullmatch(name.encode("ascii", "replace"))):
            raise ValueError(f"section name {name!r} is not 1..{MAX_NAME_LENGTH} chars of [a-z0-9_]")
        if len(payload) > MAX_SECTION_LENGTH:
            raise ValueError(f"section {name!r} is longer than {MAX_SECTION_LENGTH} bytes")
