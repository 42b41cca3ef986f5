"""What the demo and `bitmatch matrix` run: the shipped (or seeded random) int16 and float packages and the
images (a bundled set, a directory of PNGs, or the demo photographs), uploaded to the coordinator."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bitmatch.console import Console
from bitmatch.paths import demo_images_manifest, package_cache_dir, trained_packages_dir
from codec.vocabulary import Precision
from server.client import CoordinatorClient

PRECISIONS = (Precision.INT16, Precision.FLOAT)
DEMO_RATE_POINT = "q2"
RANDOM_SEED = 7


def trained_packages() -> dict[str, Path] | None:
    """One rate point of the trained packages (packages/PRECISION/qN): q2 when every precision has it (the
    float twin's q2 is the one whose cross-device failures the demo shows), else the first common one."""
    shipped = trained_packages_dir()
    if shipped is None:
        return None
    found: dict[str, set[str]] = {
        precision: {p.parent.name for p in (shipped / precision).glob("q*/manifest.json")}
        for precision in PRECISIONS
    }
    common = sorted(set.intersection(*found.values()))
    if not common:
        return None
    point = DEMO_RATE_POINT if DEMO_RATE_POINT in common else common[0]
    return {precision: shipped / precision / point for precision in PRECISIONS}


def random_packages(channels: tuple[int, int], console: Console) -> dict[str, Path]:
    """Seeded random packages (`bitmatch codec build-random`), built once and cached."""
    from codec.build import build_random
    from codec.package import CodecPackage

    n, m = channels
    paths = {}
    for precision in PRECISIONS:
        path = package_cache_dir() / f"random-{precision}-n{n}-m{m}-seed{RANDOM_SEED}"
        try:
            CodecPackage.load(path)
        except Exception:  # absent or damaged: build it again
            console.say(f"  building the seeded random {precision} package ...")
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            build_random(scratch, precision, n, m, RANDOM_SEED)
            if path.exists():
                shutil.rmtree(path)
            scratch.rename(path)
        paths[precision] = path
    return paths


def demo_images() -> list[tuple[str, bytes]] | None:
    """The photo demo subset (data/testset, manifest "demo"), or None when it is not there."""
    manifest_path = demo_images_manifest()
    if manifest_path is None:
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    entries = manifest.get("demo") or []
    images = []
    for entry in entries:
        path = manifest_path.parent / entry["file"]
        if not path.is_file():
            return None
        images.append((Path(entry["file"]).stem, path.read_bytes()))
    return images or None


def upload_codecs(client: CoordinatorClient, packages: dict[str, Path], console: Console) -> list[str]:
    codecs = []
    for path in packages.values():
        row = client.upload_codec(path)
        codecs.append(row["digest"])
        console.say(f"  codec {row['name']} ({row['precision']}, {path})")
    return codecs


def upload_images(client: CoordinatorClient, images: str, console: Console) -> str | list[str]:
    if Path(images).is_dir():
        photos = [(path.stem, path.read_bytes()) for path in sorted(Path(images).glob("*.png"))]
        digests = [client.upload_image(png, name=name)["digest"] for name, png in photos]
        console.say(f"  images: {len(digests)} PNGs of {images}")
        return digests
    photos = demo_images() if images == "auto" else None
    if photos is None:
        image_set = "tiny" if images == "auto" else images
        console.say(f"  images: bundled synthetic set {image_set!r}")
        return image_set
    digests = [client.upload_image(png, name=name)["digest"] for name, png in photos]
    console.say(f"  images: {len(digests)} photos, the demo subset of {demo_images_manifest().parent}")
    return digests
