"""Server-side images for the cell page: the amplified error map between two reconstructions."""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ErrorMap:
    png: bytes
    max_abs_diff: int
    gain: int  # the factor |enc - dec| was multiplied by before the colour map


def error_map(encoder_recon: np.ndarray, decoder_recon: np.ndarray) -> ErrorMap:
    """|enc - dec| (max over channels), scaled so the largest difference reaches full range, then coloured
    black -> red -> yellow -> white. Identical reconstructions give a black image with gain 1."""
    if encoder_recon.shape != decoder_recon.shape:
        raise ValueError(f"reconstructions differ in shape: {encoder_recon.shape} vs {decoder_recon.shape}")
    diff = np.abs(encoder_recon.astype(np.int16) - decoder_recon.astype(np.int16))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    peak = int(diff.max()) if diff.size else 0
    gain = max(1, 255 // peak) if peak else 1
    level = np.minimum(diff.astype(np.int32) * gain, 255)
    rgb = np.stack(
        [np.minimum(level * 3, 255), np.clip(level * 3 - 255, 0, 255), np.clip(level * 3 - 510, 0, 255)],
        axis=-1,
    ).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return ErrorMap(png=buffer.getvalue(), max_abs_diff=peak, gain=gain)
