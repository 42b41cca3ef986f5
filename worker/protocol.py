"""Framing between the worker's HTTP front and its compute process (over the compute process's stdin/stdout).

A frame is

    uint32 LE  header length H   (1 <= H <= MAX_HEADER_BYTES)
    uint64 LE  payload length P  (P <= MAX_PAYLOAD_BYTES)
    H bytes    header: a UTF-8 JSON object
    P bytes    payload: raw bytes (an image, a bitstream, or several blobs back to back)

Several binary results travel in one payload as blobs; the header maps each blob's name to
`[offset, length]` within the payload (`pack_blobs` / `unpack_blobs`).

Requests carry `{"id": n, "op": ...}`; responses echo the id with `"ok": true` and the op's fields, or
`"ok": false` with `error` (a stable code), `category` and `detail`. The compute process opens the
conversation with one `{"op": "hello", "fingerprint": ...}` frame.
"""

import asyncio
import json
import struct
from typing import Any, BinaryIO

PREFIX = struct.Struct("<IQ")
MAX_HEADER_BYTES = 16 * 2**20
MAX_PAYLOAD_BYTES = 2**34


class ProtocolError(Exception):
    """A frame is malformed; the stream cannot be trusted after it."""


def encode_prefix_and_header(header: dict[str, Any], payload_length: int) -> bytes:
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if not 1 <= len(raw) <= MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(raw)} bytes is outside 1..{MAX_HEADER_BYTES}")
    if payload_length > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload of {payload_length} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return PREFIX.pack(len(raw), payload_length) + raw


def parse_prefix(prefix: bytes) -> tuple[int, int]:
    header_length, payload_length = PREFIX.unpack(prefix)
    if not 1 <= header_length <= MAX_HEADER_BYTES:
        raise ProtocolError(f"header length {header_length} is outside 1..{MAX_HEADER_BYTES}")
    if payload_length > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload length {payload_length} exceeds {MAX_PAYLOAD_BYTES}")
    return header_length, payload_length


def parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header


def write_frame(stream: BinaryIO, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
    stream.write(encode_prefix_and_header(header, len(payload)))
    if payload:
        stream.write(payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at a clean end of stream (EOF before the first prefix byte)."""
    prefix = stream.read(PREFIX.size)
    if not prefix:
        return None
    if len(prefix) < PREFIX.size:
        raise ProtocolError("stream ended inside a frame prefix")
    header_length, payload_length = parse_prefix(prefix)
    raw = _read_exactly(stream, header_length)
    payload = _read_exactly(stream, payload_length)
    return parse_header(raw), payload


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise ProtocolError(f"stream ended after {len(data)} of {size} bytes")
    return data


async def read_frame_async(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    """The next frame; asyncio.IncompleteReadError when the stream ends, ProtocolError when malformed."""
    header_length, payload_length = parse_prefix(await reader.readexactly(PREFIX.size))
    header = parse_header(await reader.readexactly(header_length))
    payload = await reader.readexactly(payload_length) if payload_length else b""
    return header, payload


async def write_frame_async(
    writer: asyncio.StreamWriter, header: dict[str, Any], payload: bytes = b""
) -> None:
    writer.write(encode_prefix_and_header(header, len(payload)))
    if payload:
        writer.write(payload)
    await writer.drain()


def pack_blobs(blobs: dict[str, bytes]) -> tuple[dict[str, list[int]], bytes]:
    """Concatenate named blobs; returns the `{name: [offset, length]}` index and the payload."""
    index: dict[str, list[int]] = {}
    offset = 0
    for name, blob in blobs.items():
        index[name] = [offset, len(blob)]
        offset += len(blob)
    return index, b"".join(blobs.values())


def unpack_blobs(index: dict[str, Any], payload: bytes) -> dict[str, bytes]:
    blobs = {}
    for name, span in index.items():
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)):
            raise ProtocolError(f"blob {name!r} has a malformed span {span!r}")
        offset, length = span
        if offset < 0 or length < 0 or offset + length > len(payload):
            raise ProtocolError(f"blob {name!r} span {span} lies outside a payload of {len(payload)} bytes")
        blobs[name] = payload[offset : offset + length]
    return blobs
