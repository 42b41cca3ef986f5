"""Where the launcher finds what bitmatch ships (the trained packages, the demo's images) through
codec.resources, where its children find the installed code, and where the demo keeps its own data (the user
cache, or $BITMATCH_CACHE)."""

import os
from importlib.resources import files
from pathlib import Path

import platformdirs

from codec.resources import ResourceMissing, image_set, packages_dir

INSTALL_ROOT = Path(str(files("bitmatch"))).resolve().parent  # where bitmatch/, codec/, worker/, server/ are


def trained_packages_dir() -> Path | None:
    """The shipped packages/, or None when this install has none (the demo then builds random ones)."""
    try:
        return packages_dir()
    except ResourceMissing:
        return None


def demo_images_manifest() -> Path | None:
    """data/testset's manifest, or None when the test set is not installed."""
    try:
        return image_set("testset") / "manifest.json"
    except ResourceMissing:
        return None


def kodak_dir() -> Path | None:
    try:
        return image_set("kodak")
    except ResourceMissing:
        return None


def default_data_dir() -> Path:
    override = os.environ.get("BITMATCH_CACHE")
    return (Path(override) if override else Path(platformdirs.user_cache_dir("bitmatch"))) / "demo"


def package_cache_dir() -> Path:
    return default_data_dir() / "packages"
