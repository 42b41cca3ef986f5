"""Training photographs and the bundled test set, reproduced from the package registries.

Sources (natural photographs only; the abstract renders of these packages are left out):

- Debian `mate-backgrounds` (nature/*), `lomiri-wallpapers-16.04` and `lomiri-wallpapers-20.04`, fetched with
  `apt-get download NAME=VERSION` and unpacked with `dpkg -x`;
- the images bundled in the scikit-image wheel (`pip download --no-deps scikit-image==VERSION`).

Every photograph is assigned once, here, to either the training set or the held-out test set. The wallpapers
are camera JPEGs: images are downscaled by at least `MIN_JPEG_FACTOR` with Pillow's Lanczos filter, which
averages the 8x8 block artefacts away. Test images are shrunk to `TEST_LONG_SIDE` pixels on the long side and
written as PNG to data/testset/ with manifest.json (source package and version, original path, licence,
copyright); a demo subset of `DEMO_SIZE` images is derived from four of them. Training images are cut into
`CROP` x `CROP` crops cached as one uint8 array.

Three more sets, each with its manifest:

- data/calibration/: eight training photographs (never test ones), 256 x 160, half of them the whole scene
  and half a close-up at Kodak scale; the integer h_s of every package is calibrated on these.
- data/heldout/: photographs from a source used neither for training nor for calibration, KDE's Plasma
  wallpapers (`plasma-workspace-wallpapers`), prepared like the test set; the calibration is judged here.
- data/kodak/: eight Kodak-size (768 x 512) photographs from the held-out sources (the test photographs'
  originals where they are large enough, and KDE's), for the cross-device runs at the size where float
  drift shows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

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

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTSET_DIR = REPO_ROOT / "data" / "testset"

DEBIAN = {  # package -> version (Debian bookworm)
    "mate-backgrounds": "1.26.0-1",
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "lomiri-wallpapers-20.04": "20.04.0-2",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
}
SKIMAGE_VERSION = "0.26.0"
_MATE = "usr/share/backgrounds/mate/nature/"
_LOMIRI = "usr/share/backgrounds/"
_SKIMAGE = "skimage/data/"
_KDE = "usr/share/wallpapers/"
_GPL = "GPL-2+"
CALIBRATION_DIR = REPO_ROOT / "data" / "calibration"
HELDOUT_DIR = REPO_ROOT / "data" / "heldout"
KODAK_DIR = REPO_ROOT / "data" / "kodak"
CALIBRATION_SIZE = (256, 160)  # width, height
KODAK_SIZE = (768, 512)


@dataclass(frozen=True)
class Photo:
    name: str  # short name used for the output files
    package: str  # Debian package or "scikit-image"
    path: str  # path inside the package
    licence: str
    copyright: str
    test: bool  # held out: never used in training


PHOTOS: tuple[Photo, ...] = (
    # --- held-out test set (12) ---
    Photo(
        "astronaut",
        "scikit-image",
        _SKIMAGE + "astronaut.png",
        "public-domain",
        "NASA (Eileen Collins), no known copyright restrictions",
        True,
    ),
    Photo("chelsea", "scikit-image", _SKIMAGE + "chelsea.png", "CC0-1.0", "Stefan van der Walt", True),
    Photo("coffee", "scikit-image", _SKIMAGE + "coffee.png", "CC0-1.0", "Rachel Michetti", True),
    Photo("retina", "scikit-image", _SKIMAGE + "retina.jpg", "CC0-1.0", "Mikael Haggstrom", True),
    Photo("garden", "mate-backgrounds", _MATE + "Garden.jpg", _GPL, "2008 Charles Barbin", True),
    Photo("ladybird", "mate-backgrounds", _MATE + "LadyBird.jpg", _GPL, "2008 Charles Barbin", True),
    Photo("storm", "mate-backgrounds", _MATE + "Storm.jpg", _GPL, "2008 Sergey Nazarov", True),
    Photo("dune", "mate-backgrounds", _MATE + "Dune.jpg", _GPL, "2007 Marco Cogoni, 2008 Hylke Bons", True),
    Photo(
        "life",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "life_by_Aitzol_Berasategi.jpg",
        "CC-BY-4.0",
        "2018 Aitzol Berasategi",
        True,
    ),
    Photo(
        "picos",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "CC-BY-4.0",
        "2018 Aitzol Berasategi",
        True,
    ),
    Photo(
        "kleiber",
        "lomiri-wallpapers-20.04",
        _LOMIRI + "Kleiber_by_Lukas_Baubkus.jpg",
        "CC-BY-SA-3.0",
        "2021 Lukas Baubkus",
        True,
    ),
    Photo(
        "brushes",
        "lomiri-wallpapers-16.04",
        _LOMIRI + "Picture_1A_by_freespace.jpg",
        "CC-BY-4.0",
        "2018 Trevor 'Freespace'",
        True,
    ),
    # --- training set (21) ---
    Photo("rocket", "scikit-image", _SKIMAGE + "rocket.jpg", "public-domain", "SpaceX", False),
    Photo("hubble", "scikit-image", _SKIMAGE + "hubble_deep_field.jpg", "public-domain", "NASA", False),
    Photo(
        "ihc", "scikit-image", _SKIMAGE + "ihc.png", "public-domain", "no known copyright restrictions", False
    ),
    *(
        Photo(
            stem.lower(),
            "mate-backgrounds",
            f"{_MATE}{stem}.jpg",
            _GPL,
            "see the package's copyright file",
            False,
        )
        for stem in (
            "Aqua",
            "Blinds",
            "FreshFlower",
            "GreenMeadow",
            "RainDrops",
            "TwoWings",
            "Wood",
            "YellowFlower",
        )
    ),
    *(
        Photo(
            stem.split("_by_")[0].lower(),
            "lomiri-wallpapers-16.04",
            f"{_LOMIRI}{stem}.jpg",
            licence,
            "see the package's copyright file",
            False,
        )
        for stem, licence in (
            ("Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0"),
            ("Dragonfly_by_Bolly", "CC-BY-SA-4.0"),
            ("Picture_0B_by_freespace", "CC-BY-4.0"),
            ("Wine_by_Jakkub_Mede", "CC-BY-4.0"),
            ("aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0"),
            ("free_by_Peter_Nerlich", "CC-BY-SA-4.0"),
            ("friends_by_Aitzol_Berasategi", "CC-BY-4.0"),
            ("greentock_by_Peter_Nerlich", "CC-BY-SA-4.0"),
            ("seeding_by_Clements_Engelhardt", "CC0-1.0"),
            ("sunset_by_Aitzol_Berasategi", "CC-BY-4.0"),
        )
    ),
)
DEMO = ("astronaut", "coffee", "garden", "picos")

# KDE Plasma's photographic wallpapers (the rest of the package is renders), 2560 x 1600 camera JPEGs.
HELDOUT: tuple[Photo, ...] = tuple(
    Photo(
        stem.lower(),
        "plasma-workspace-wallpapers",
        f"{_KDE}{stem}/contents/images/2560x1600.jpg",
        _GPL,
        "2014 KDE Visual Design Group",
        True,
    )
    for stem in (
        "BytheWater",
        "ColdRipple",
        "ColorfulCups",
        "DarkestHour",
        "EveningGlow",
        "FallenLeaf",
        "Grey",
        "Kite",
        "OneStandsOut",
        "Path",
        "summer_1am",
    )
)
# (photograph, close-up): whole scenes at test-set density, and 256 x 160 windows at Kodak scale.
CALIBRATION = (
    ("aqua", False),
    ("bridge", False),
    ("wine", False),
    ("seeding", False),
    ("twowings", True),
    ("dragonfly", True),
    ("free", True),
    ("sunset", True),
)
KODAK = ("garden", "ladybird", "life", "picos", "kleiber", "eveningglow", "path", "fallenleaf")


def package_version(package: str) -> str:
    return SKIMAGE_VERSION if package == "scikit-image" else DEBIAN[package]


# --- fetching ---------------------------------------------------------------------------------------------


def fetch_sources(work_dir: Path) -> dict[str, Path]:
    """Download and unpack every source package into work_dir/x/NAME; returns package -> root directory."""
    work_dir.mkdir(parents=True, exist_ok=True)
    roots = {}
    for package, version in DEBIAN.items():
        root = work_dir / "x" / package
        if not root.exists():
            subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=work_dir, check=True)
            (deb,) = work_dir.glob(f"{package}_*.deb")
            partial = root.with_name(root.name + ".partial")  # a failed unpack must not look finished
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
            partial.rename(root)
        roots[package] = root
    root = work_dir / "x" / "scikit-image"
    if not root.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--dest",
                str(work_dir),
                f"scikit-image=={SKIMAGE_VERSION}",
            ],
            check=True,
        )
        (wheel,) = work_dir.glob(f"scikit_image-{SKIMAGE_VERSION}-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if name.startswith(_SKIMAGE)]
            archive.extractall(root, members)
    roots["scikit-image"] = root
    return roots


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


def write_testset(roots: dict[str, Path], out_dir: Path = TESTSET_DIR) -> dict:
    """Write the test PNGs, the demo PNGs and manifest.json; returns the manifest."""
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


def _photo(name: str) -> Photo:
    return next(photo for photo in (*PHOTOS, *HELDOUT) if photo.name == name)


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
        for p in [_photo(name)]
        for o in [original(p)]
    ]
    _write_set(
        CALIBRATION_DIR,
        "calibration images of the integer h_s: training photographs (never test "
        "ones), whole scenes and Kodak-scale close-ups, 256 x 160",
        calibration,
    )
    heldout = [(p, o, test_image(o, p.path)) for p in HELDOUT for o in [original(p)]]
    _write_set(
        HELDOUT_DIR,
        "held-out photographs from a source used neither for training nor for "
        "calibration (KDE Plasma wallpapers), prepared like data/testset",
        heldout,
    )
    kodak = [(p, o, kodak_image(o, p.path)) for name in KODAK for p in [_photo(name)] for o in [original(p)]]
    _write_set(
        KODAK_DIR,
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


def prepare(work_dir: Path | None, cache_dir: Path, testset_dir: Path = TESTSET_DIR) -> tuple[dict, Path]:
    """Fetch the sources (into work_dir or a temporary directory), write the test set and the crops."""
    with tempfile.TemporaryDirectory() as tmp:
        roots = fetch_sources(Path(work_dir) if work_dir else Path(tmp))
        manifest = write_testset(roots, testset_dir)
        write_extra_sets(roots)
        return manifest, write_crops(roots, cache_dir)


def load_crops(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(crops uint8 [K, CROP, CROP, 3], sampling probabilities [K])."""
    return np.load(Path(cache_dir) / CROPS_FILE), np.load(Path(cache_dir) / WEIGHTS_FILE)
