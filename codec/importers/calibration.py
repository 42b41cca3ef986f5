"""Calibration images for the integer h_s: a directory of PNGs, cut to one common size, and its name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec.errors import ImageError
from codec.resources import ResourceMissing, image_set

BUNDLED = "calibration"  # data/calibration
MIN_SIDE = 64


def images(directory: Path | None) -> tuple[list[np.ndarray], str]:
    """The images (centre-cropped to the smallest common height and width) and how to name the set."""
    from codec.train.data import load_image_set

    directory = Path(directory) if directory is not None else image_set(BUNDLED)
    if not directory.is_dir():
        raise ImageError(f"calibration directory not found: {directory}")
    loaded = load_image_set(directory)
    if not loaded:
        raise ImageError(f"no PNG images in the calibration directory {directory}")
    height = min(image.shape[0] for image in loaded)
    width = min(image.shape[1] for image in loaded)
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"calibration images must be at least {MIN_SIDE} x {MIN_SIDE} pixels; "
            f"{directory} has one of {width} x {height}"
        )
    return [_centre(image, height, width) for image in loaded], _set_name(directory)


def _set_name(directory: Path) -> str:
    """data/calibration for the bundled set (wherever it is installed), else the directory's own name."""
    try:
        bundled = image_set(BUNDLED)
    except ResourceMissing:
        return directory.name
    return f"data/{BUNDLED}" if directory.resolve() == bundled.resolve() else directory.name


def _centre(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])
