"""Calibration images for the integer h_s: a directory of PNGs, cut to one common size, and its name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec.errors import ImageError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / "data" / "calibration"
MIN_SIDE = 64


def images(directory: Path | None) -> tuple[list[np.ndarray], str]:
    """The images (centre-cropped to the smallest common height and width) and how to name the set."""
    from codec.train.data import load_image_set

    directory = Path(directory) if directory is not None else DEFAULT_DIR
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
    name = "data/calibration" if directory.resolve() == DEFAULT_DIR.resolve() else directory.name
    return [_centre(image, height, width) for image in loaded], name


def _centre(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])
