"""Training photographs and the bundled test set, reproduced from the package registries.

Sources (natural photographs only; the abstract renders of these packages are left out):

- Debian `mate-backgrounds` (nature/*), `lomiri-wallpapers-16.04` and `lomiri-wallpapers-20.04`, fetched with
  `apt-get download NAME=VERSION` and unpacked with `dpkg -x`;
- the images bundled in the scikit-image wheel (`pip download --no-deps scikit-image==VERSION`).

Every photograph is assigned once (codec/train/sources.py) to either the training set or the held-out test
set. The wallpapers are camera JPEGs: images are downscaled by at least `MIN_JPEG_FACTOR` with Pillow's
Lanczos filter, which averages the 8x8 block artefacts away. Test images are shrunk to `TEST_LONG_SIDE`
pixels on the long side and written as PNG to data/testset/ with manifest.json (source package and version,
original path, licence, copyright); a demo subset of `DEMO_SIZE` images is derived from four of them.
Training images are cut into `CROP` x `CROP` crops cached as one uint8 array.

Three more sets, each with its manifest:

- data/calibration/: eight training photographs (never test ones), 256 x 160, half of them the whole scene
  and half a close-up at Kodak scale; the integer h_s of every package is calibrated on these.
- data/heldout/: photographs from a source used neither for training nor for calibration, KDE's Plasma
  wallpapers (`plasma-workspace-wallpapers`), prepared like the test set; the calibration is judged here.
- data/kodak/: eight Kodak-size (768 x 512) photographs from the held-out sources (the test photographs'
  originals where they are large enough, and KDE's), for the cross-device runs at the size where float
  drift shows.

The sets are written into a source checkout's data/ (or under `BITMATCH_IMAGE_SETS_DIR`), never into an
installed wheel (`codec.resources.image_set_to_write`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from codec.resources import image_set_to_write
from codec.train.sources import (
    CALIBRATION,
    DEMO,
    HELDOUT,
    KODAK,
    PHOTOS,
    Photo,
    fetch_sources,
    package_version,
    photo_named,
)

MIN_JPEG_FACTOR = 3.0  # downscale of JPEG sources, enough to remove their block artefacts
TRAIN_SHORT_SIDE = 512  # training images are shrunk until the short side is at most this
TEST_LONG_SIDE = 256  # test images: long side in pixels (the demo runs them under emulation)
DEMO_SIZE = (96, 64)  # width, height of the demo images
CROP = 128
CROP_STRIDE = 64
# Each training image is also cut at these further downscales: the small test images are dense (a few
# hundred pixels for a whole scene), and the codec must see that density as well as smoother close-ups.
EXTRA_SCALES = (1.0, 1.5, 2.25, 3.0)
CROPS_FILE = "crops.npy"
WEIGHTS_FILE = "crop_weights.npy"  # sampling probability of each crop

CALIBRATION_SIZE = (256, 160)  # width, height
KODAK_SIZE = (768, 512)


# --- image preparation ------------------------------------------------------------------------------------


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def downscale(image: Image.Image, factor: float) -> Image.Image:
    """Shrink by `factor` (>= 1) with Lanczos; factor 1 returns the image unchanged."""
    if factor <= 1.0:
        return image
    size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _min_factor(path: str) -> float:
    return MIN_JPEG_FACTOR if path.lower().endswith(".jpg") else 1.0


def test_image(image: Image.Image, path: str) -> Image.Image:
    factor = max(_min_factor(path), max(image.size) / TEST_LONG_SIDE)
    return downscale(image, factor)


def demo_image(image: Image.Image) -> Image.Image:
    """Centre crop to the demo aspect ratio, then shrink to DEMO_SIZE."""
    width, height = DEMO_SIZE
    scale = min(image.width / width, image.height / height)
    crop_w, crop_h = round(width * scale), round(height * scale)
    left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h)).resize(DEMO_SIZE, Image.Resampling.LANCZOS)


def training_image(image: Image.Image, path: str) -> Image.Image:
    factor = max(_min_factor(path), min(image.size) / TRAIN_SHORT_SIDE)
    return downscale(image, factor)


def crops(image: np.ndarray, size: int = CROP, stride: int = CROP_STRIDE) -> np.ndarray:
    """All size x size crops on a stride grid (the last row/column aligned to the border)."""
    height, width = image.shape[:2]
    if height < size or width < size:
        return np.zeros((0, size, size, 3), np.uint8)
    tops = sorted({*range(0, height - size + 1, stride), height - size})
    lefts = sorted({*range(0, width - size + 1, stride), width - size})
    return np.stack([image[t : t + size, s : s + size] for t in tops for s in lefts])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_testset(roots: dict[str, Path], out_dir: Path | None = None) -> dict:
    """Write the test PNGs, the demo PNGs and manifest.json (into data/testset by default); returns the
    manifest."""
    out_dir = out_dir or image_set_to_write("testset")
    for stale in [*out_dir.glob("*.png"), *out_dir.glob("demo/*.png")]:  # README.md stays
        stale.unlink()
    (out_dir / "demo").mkdir(parents=True, exist_ok=True)
    entries, demo_entries = [], []
    for photo in (p for p in PHOTOS if p.test):
        original = load_rgb(roots[photo.package] / photo.path)
        small = test_image(original, photo.path)
        small.save(out_dir / f"{photo.name}.png", optimize=True)
        entries.append(_entry(photo, f"{photo.name}.png", original, small, out_dir))
        if photo.name in DEMO:
            demo_image(small).save(out_dir / "demo" / f"{photo.name}.png", optimize=True)
            demo_entries.append(
                {
                    "file": f"demo/{photo.name}.png",
                    "from": f"{photo.name}.png",
                    "width": DEMO_SIZE[0],
                    "height": DEMO_SIZE[1],
                    "sha256": _sha256(out_dir / "demo" / f"{photo.name}.png"),
                }
            )
    manifest = {
        "description": "bitmatch held-out test set: natural photographs never used in training, downscaled "
        "with Lanczos (JPEG sources by at least 3x) and stored as 8-bit RGB PNG",
        "reproduce": "python -m codec.train data",
        "images": entries,
        "demo": demo_entries,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _entry(photo: Photo, file: str, original: Image.Image, small: Image.Image, out_dir: Path) -> dict:
    return {
        "file": file,
        "width": small.width,
        "height": small.height,
        "sha256": _sha256(out_dir / file),
        "source_package": photo.package,
        "source_version": package_version(photo.package),
        "source_kind": "pypi wheel" if photo.package == "scikit-image" else "debian",
        "original_file": "/" + photo.path if photo.package != "scikit-image" else photo.path,
        "original_size": [original.width, original.height],
        "licence": photo.licence,
        "copyright": photo.copyright,
    }


def centre_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Shrink (Lanczos) until `size` just fits, then cut it from the centre."""
    width, height = size
    scale = min(image.width / width, image.height / height)
    if scale < 1:
        raise ValueError(f"image of {image.size} is smaller than {size}")
    shrunk = downscale(image, scale)
    left, top = (shrunk.width - width) // 2, (shrunk.height - height) // 2
    return shrunk.crop((left, top, left + width, top + height))


def kodak_image(image: Image.Image, path: str) -> Image.Image:
    """768 x 512 from the centre, shrunk by at least the JPEG factor."""
    factor = max(_min_factor(path), min(image.width / KODAK_SIZE[0], image.height / KODAK_SIZE[1]))
    return centre_crop(downscale(image, factor), KODAK_SIZE)


def calibration_image(image: Image.Image, path: str, close_up: bool) -> Image.Image:
    """The whole scene shrunk to just cover 256 x 160, or a 256 x 160 window of its Kodak-size version."""
    base = kodak_image(image, path) if close_up else downscale(image, _min_factor(path))
    return centre_crop(base, CALIBRATION_SIZE)


def _write_set(out_dir: Path, description: str, items: list[tuple[Photo, Image.Image, Image.Image]]) -> dict:
    """PNGs and manifest.json of one image set (README.md stays)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.png"):
        stale.unlink()
    entries = []
    for photo, original, image in items:
        image.save(out_dir / f"{photo.name}.png", optimize=True)
        entries.append(_entry(photo, f"{photo.name}.png", original, image, out_dir))
    manifest = {"description": description, "reproduce": "python -m codec.train data", "images": entries}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def write_extra_sets(roots: dict[str, Path]) -> None:
    """data/calibration/, data/heldout/ and data/kodak/ (see the module docstring)."""

    def original(photo: Photo) -> Image.Image:
        return load_rgb(roots[photo.package] / photo.path)

    calibration = [
        (p, o, calibration_image(o, p.path, close_up))
        for name, close_up in CALIBRATION
        for p in [photo_named(name)]
        for o in [original(p)]
    ]
    _write_set(
        image_set_to_write("calibration"),
        "calibration images of the integer h_s: training photographs (never test "
        "ones), whole scenes and Kodak-scale close-ups, 256 x 160",
        calibration,
    )
    heldout = [(p, o, test_image(o, p.path)) for p in HELDOUT for o in [original(p)]]
    _write_set(
        image_set_to_write("heldout"),
        "held-out photographs from a source used neither for training nor for "
        "calibration (KDE Plasma wallpapers), prepared like data/testset",
        heldout,
    )
    kodak = [
        (p, o, kodak_image(o, p.path)) for name in KODAK for p in [photo_named(name)] for o in [original(p)]
    ]
    _write_set(
        image_set_to_write("kodak"),
        "Kodak-size (768 x 512) photographs from the held-out sources, never used in training or calibration",
        kodak,
    )


def load_image_set(directory: Path) -> list[np.ndarray]:
    """The images of a set's manifest.json, in its order (or every PNG of a directory without one)."""
    from codec.images import load_png

    directory = Path(directory)
    manifest = directory / "manifest.json"
    if manifest.exists():
        files = [entry["file"] for entry in json.loads(manifest.read_text())["images"]]
    else:
        files = sorted(path.name for path in directory.glob("*.png"))
    return [load_png(directory / file) for file in files]


def write_crops(roots: dict[str, Path], cache_dir: Path) -> Path:
    """Cut every training photograph into crops; stored as uint8 [K, CROP, CROP, 3] in cache_dir."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts, weights = [], []
    for photo in (p for p in PHOTOS if not p.test):
        image = training_image(load_rgb(roots[photo.package] / photo.path), photo.path)
        for extra in EXTRA_SCALES:
            cut = crops(np.asarray(downscale(image, extra)))
            parts.append(cut)
            weights.append(np.full(len(cut), extra * extra))  # every scale gets the same share of pixels
    out = cache_dir / CROPS_FILE
    np.save(out, np.concatenate(parts))
    weights = np.concatenate(weights)
    np.save(cache_dir / WEIGHTS_FILE, weights / weights.sum())
    return out


def prepare(work_dir: Path | None, cache_dir: Path, testset_dir: Path | None = None) -> tuple[dict, Path]:
    """Fetch the sources (into work_dir or a temporary directory), write the test set and the crops."""
    with tempfile.TemporaryDirectory() as tmp:
        roots = fetch_sources(Path(work_dir) if work_dir else Path(tmp))
        manifest = write_testset(roots, testset_dir)
        write_extra_sets(roots)
        return manifest, write_crops(roots, cache_dir)


def load_crops(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(crops uint8 [K, CROP, CROP, 3], sampling probabilities [K])."""
    return np.load(Path(cache_dir) / CROPS_FILE), np.load(Path(cache_dir) / WEIGHTS_FILE)
