"""Where the launcher finds what a checkout ships (the trained packages in packages/, the images in data/)
and where the demo keeps its own data (the user cache, or $BITMATCH_CACHE).

The one place that knows the checkout's layout; the children the launcher starts run from PROJECT_ROOT too.
"""

import os
from pathlib import Path

import platformdirs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINED_PACKAGES = PROJECT_ROOT / "packages"
DEMO_IMAGES_MANIFEST = PROJECT_ROOT / "data" / "testset" / "manifest.json"
KODAK_DIR = PROJECT_ROOT / "data" / "kodak"


def default_data_dir() -> Path:
    override = os.environ.get("BITMATCH_CACHE")
    return (Path(override) if override else Path(platformdirs.user_cache_dir("bitmatch"))) / "demo"


def package_cache_dir() -> Path:
    return default_data_dir() / "packages"
