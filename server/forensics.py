"""Locating the first bad latent symbol of a desync from both sides' per-element scale-level maps.

Workers return index maps (`return_index_map=true`) as JSON; this accepts the shapes a JSON array can take:
nested lists, `{"shape", "dtype", "data": base64 little-endian}`, `{"shape", "values": flat list}`, or a
base64
`.npy` file. Elements are compared in C order, the order the entropy coder visits them.
"""

import base64
import io
import zlib
from dataclasses import dataclass, fields
from typing import Any

import numpy as np


class IndexMapError(ValueError):
    pass


@dataclass(frozen=True)
class FirstMismatch:
    flat_index: int
    channel: int | None
    y: int | None
    x: int | None
    encoder_level: int | None
    decoder_level: int | None
    encoder_value: int | None = None
    decoder_value: int | None = None


LOCATION_FIELDS = tuple(field.name for field in fields(FirstMismatch))  # what a cell's mismatch record copies


def decode_array(obj: Any) -> np.ndarray:
    try:
        if isinstance(obj, list):
            return np.asarray(obj, dtype=np.int64)
        if isinstance(obj, str):
            return np.load(io.BytesIO(base64.b64decode(obj, validate=True)), allow_pickle=False).astype(
                np.int64
            )
        if isinstance(obj, dict):
            return _decode_dict(obj)
    except (ValueError, TypeError, OSError) as exc:
        raise IndexMapError(f"unreadable index map: {exc}") from None
    raise IndexMapError(f"unreadable index map of type {type(obj).__name__}")


def _decode_dict(obj: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(n) for n in obj.get("shape", ()))
    if "values" in obj:
        flat = np.asarray(obj["values"], dtype=np.int64)
    elif "data" in obj:
        dtype = np.dtype(str(obj.get("dtype", "int32"))).newbyteorder("<")
        if dtype.kind not in "iuf":
            raise IndexMapError(f"map dtype {dtype} is not a number")
        data = base64.b64decode(obj["data"], validate=True)
        if obj.get("compression") == "zlib":
            data = _inflate(data, int(np.prod(shape)) * dtype.itemsize)
        raw = np.frombuffer(data, dtype=dtype)
        flat = raw.astype(np.float64 if dtype.kind == "f" else np.int64)
    else:
        raise IndexMapError("index map object has neither 'values' nor 'data'")
    return flat.reshape(shape) if shape else flat


def _inflate(data: bytes, size: int) -> bytes:
    """zlib-decompress at most `size` bytes (a map declares its shape, so nothing bigger is ever expanded)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, size)
    if inflater.unconsumed_tail or len(out) != size:
        raise IndexMapError(f"compressed map does not expand to its declared {size} bytes")
    return out


def max_abs_difference(encoder: np.ndarray, decoder: np.ndarray) -> float:
    """The largest |encoder - decoder| of two maps of one shape (y_hat of a symbol-exact cell)."""
    if encoder.shape != decoder.shape:
        raise IndexMapError(f"maps differ in shape: {encoder.shape} vs {decoder.shape}")
    return float(np.abs(encoder - decoder).max()) if encoder.size else 0.0


def first_mismatch(
    encoder_levels: np.ndarray,
    decoder_levels: np.ndarray,
    encoder_values: np.ndarray | None = None,
    decoder_values: np.ndarray | None = None,
) -> FirstMismatch | None:
    """The first element (C order) where the scale levels, or the latent values when given, differ."""
    if encoder_levels.shape != decoder_levels.shape:
        raise IndexMapError(f"index maps differ in shape: {encoder_levels.shape} vs {decoder_levels.shape}")
    differs = encoder_levels.reshape(-1) != decoder_levels.reshape(-1)
    have_values = (
        encoder_values is not None
        and decoder_values is not None
        and encoder_values.shape == decoder_values.shape == encoder_levels.shape
    )
    if have_values:
        differs |= encoder_values.reshape(-1) != decoder_values.reshape(-1)
    hits = np.flatnonzero(differs)
    if hits.size == 0:
        return None
    flat = int(hits[0])
    channel, y, x = _coordinate(flat, encoder_levels.shape)
    return FirstMismatch(
        flat_index=flat,
        channel=channel,
        y=y,
        x=x,
        encoder_level=int(encoder_levels.reshape(-1)[flat]),
        decoder_level=int(decoder_levels.reshape(-1)[flat]),
        encoder_value=int(encoder_values.reshape(-1)[flat]) if have_values else None,
        decoder_value=int(decoder_values.reshape(-1)[flat]) if have_values else None,
    )


def _coordinate(flat: int, shape: tuple[int, ...]) -> tuple[int | None, int | None, int | None]:
    """(channel, y, x) of a flat index in a (..., C, H, W) latent; leading batch axes are ignored."""
    if len(shape) < 3:
        return None, None, None
    channel, y, x = np.unravel_index(flat, shape)[-3:]
    return int(channel), int(y), int(x)
