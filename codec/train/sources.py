"""The photographs of every bundled image set and training, the source packages they come from, and
their download (Debian packages with `apt-get download`, the scikit-image wheel with `pip download`).

Every photograph is assigned once, here, to either the training set or the held-out test set;
codec/train/data.py prepares and writes the sets from them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

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


def photo_named(name: str) -> Photo:
    return next(photo for photo in (*PHOTOS, *HELDOUT) if photo.name == name)


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
