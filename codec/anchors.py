"""The classic anchors of every RD comparison, through Pillow: JPEG (4:2:0 subsampling, optimised Huffman
tables) and WebP (lossy, method 6), at a fixed sweep of quality settings.

`bitmatch codec eval` measures the shipped evidence with these, and the coordinator draws a job's rate
families against them on the job's own images.
"""

import io

import numpy as np
from PIL import Image

from codec.metrics import bpp, psnr
from codec.vocabulary import Anchor

QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)


def roundtrip(image: np.ndarray, anchor: Anchor, quality: int) -> tuple[int, np.ndarray]:
    """(file size in bytes, decoded RGB image) of one uint8 HxWx3 image at one quality."""
    buffer = io.BytesIO()
    if anchor is Anchor.JPEG:
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=2, optimize=True)
    else:
        Image.fromarray(image).save(buffer, "WEBP", quality=quality, method=6)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return len(buffer.getvalue()), np.asarray(decoded.convert("RGB"))


def rate_psnr_sweep(image: np.ndarray, anchor: Anchor) -> list[dict[str, float]]:
    """[{"quality", "bpp", "psnr"}] of one image at every quality of QUALITIES."""
    points = []
    for quality in QUALITIES:
        size, recon = roundtrip(image, anchor, quality)
        points.append({"quality": quality, "bpp": bpp(size, *image.shape[:2]), "psnr": psnr(image, recon)})
    return points
