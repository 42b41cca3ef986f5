"""Where the shipped codec packages (packages/) and image sets (data/NAME) are found, in one place.

Each lookup tries, in order: the explicit setting (`BITMATCH_PACKAGES_DIR`, `BITMATCH_IMAGE_SETS_DIR`; when
set it is the only place looked at), the copy the wheel ships as package data under `codec/_shipped/`
(pyproject.toml maps packages/ and data/{calibration,kodak,testset} there), and a source checkout (the
directory holding codec/ also holds pyproject.toml, packages/ and data/). Anything else raises
`ResourceMissing`, naming the setting and where to get the files: never a path that does not exist.
`BITMATCH_DATA_DIR` is not used for this: it is the coordinator's own data directory (server/serve.py).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from codec.errors import CodecError

PACKAGES_SETTING = "BITMATCH_PACKAGES_DIR"
IMAGE_SETS_SETTING = "BITMATCH_IMAGE_SETS_DIR"
# What the wheel ships of data/ (pyproject.toml's package-data); heldout/ is only in a clone.
WHEEL_IMAGE_SETS = ("calibration", "kodak", "testset")
FETCH_HINT = "clone the bitmatch repository, which holds them as packages/ and data/ at its root"


class ResourceMissing(CodecError):
    """A shipped codec package or image set is not where the settings, the wheel or a checkout put it."""

    code = "resource-missing"


def packages_dir() -> Path:
    """The directory of the shipped codec packages (packages/: FAMILY/qN/ and rd.json)."""
    return _find("packages", PACKAGES_SETTING, "", "the shipped codec packages (packages/)")


def shipped_package(name: str) -> Path:
    """One shipped codec package, by its path under packages/ (e.g. "int16/q2")."""
    path = packages_dir() / name
    if not (path / "manifest.json").is_file():
        raise ResourceMissing(f"no shipped codec package {name} (no manifest.json in {path})")
    return path


def image_set(name: str) -> Path:
    """One bundled image set, data/NAME (calibration, heldout, kodak, testset)."""
    return _find("data", IMAGE_SETS_SETTING, name, f"the image set data/{name}")


def image_set_to_write(name: str) -> Path:
    """Where `python -m codec.train data` writes the image set data/NAME: under the setting, else in the
    source checkout; never into an installed wheel. The directory need not exist yet."""
    configured = os.environ.get(IMAGE_SETS_SETTING)
    if configured:
        return Path(configured) / name
    checkout = _checkout_root()
    if checkout is None:
        raise ResourceMissing(
            f"data/{name} is rebuilt into a source checkout: set {IMAGE_SETS_SETTING} to the directory "
            f"to write into, or run from a checkout ({FETCH_HINT})"
        )
    return checkout / "data" / name


def shipped_relative(path: Path) -> str:
    """PATH as packages/... or data/... when it lies in a checkout or in the wheel's shipped data (so a
    committed report names no machine's paths), else in full."""
    path = Path(path).resolve()
    for root in _shipped_roots():
        if path.is_relative_to(root.resolve()):
            return str(path.relative_to(root.resolve()))
    return str(path)


def _find(top: str, setting: str, name: str, what: str) -> Path:
    configured = os.environ.get(setting)
    if configured:
        path = Path(configured) / name
        if not path.is_dir():
            raise ResourceMissing(f"{what} is not in {path} ({setting}={configured})")
        return path
    for root in _shipped_roots():
        path = root / top / name
        if path.is_dir():
            return path
    shipped = " (the wheel ships data/ " + ", ".join(WHEEL_IMAGE_SETS) + ")" if top == "data" else ""
    raise ResourceMissing(
        f"{what} is not installed{shipped}: set {setting} to a directory holding it, or {FETCH_HINT}"
    )


def _shipped_roots() -> list[Path]:
    """The wheel's package data directory, and the source checkout when this code runs from one."""
    roots = [_codec_dir() / "_shipped"]
    checkout = _checkout_root()
    if checkout is not None:
        roots.append(checkout)
    return roots


def _checkout_root() -> Path | None:
    """The source tree codec/ was imported from: it holds pyproject.toml (an installed one never does)."""
    root = _codec_dir().parent
    return root if (root / "pyproject.toml").is_file() else None


def _codec_dir() -> Path:
    # An unzipped install (the only kind pip makes) gives a real directory; a zip import would not.
    return Path(str(files("codec")))
