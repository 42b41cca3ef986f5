"""Bundled image sets, synthesised deterministically so they need no data files and every run sees the same
pixels. They are small on purpose: emulated targets (qemu) must finish a whole matrix within minutes."""

from collections.abc import Callable

import numpy as np

ImageMaker = Callable[[], np.ndarray]


def _gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    red = x * 255 // max(width - 1, 1)
    green = y * 255 // max(height - 1, 1)
    blue = (x + y) * 255 // max(width + height - 2, 1)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def _checker_noise(height: int, width: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    checker = ((y // 8 + x // 8) % 2) * 160 + 40
    noise = np.random.default_rng(seed).integers(-24, 25, size=(height, width, 3))
    return np.clip(checker[..., None] + noise, 0, 255).astype(np.uint8)


def _waves(height: int, width: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(0.02, 0.2), rng.uniform(0.02, 0.2), rng.uniform(0, np.pi)
        channels.append(
            127.5 + 100 * np.sin(fy * y + fx * x + phase) + rng.normal(0, 6, size=(height, width))
        )
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


IMAGE_SETS: dict[str, dict[str, ImageMaker]] = {
    "tiny": {
        "gradient-64x64": lambda: _gradient(64, 64),
        "checker-64x48": lambda: _checker_noise(48, 64, seed=1),
        "waves-48x64": lambda: _waves(64, 48, seed=2),
    },
    "small": {
        "gradient-128x96": lambda: _gradient(96, 128),
        "checker-128x128": lambda: _checker_noise(128, 128, seed=3),
        "waves-96x128": lambda: _waves(128, 96, seed=4),
        "waves-160x120": lambda: _waves(120, 160, seed=5),
    },
}


def set_names() -> list[str]:
    return sorted(IMAGE_SETS)


def make_set(name: str) -> dict[str, np.ndarray]:
    """The images of a bundled set by name; KeyError for an unknown set."""
    return {image_name: make() for image_name, make in IMAGE_SETS[name].items()}


def known_answer_image() -> np.ndarray:
    """The fixed image of the workers' known-answer health check."""
    return _waves(32, 48, seed=7)
