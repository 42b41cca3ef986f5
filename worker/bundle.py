"""The repro bundle of one cell: reading one back from its zip or its extracted directory (the names are
the contract's, worker/contract/bundle_layout.py).

The coordinator writes it (server/dashboard/repro.py); `bitmatch replay` (worker/replay.py) reads it. It is
one folder, `bitmatch-job<J>-cell<C>/`, holding:

    cell.json                the cell as the coordinator serves it: both sides' targets, statuses, stage
                             hashes, fingerprints and the SHA-256 of their reconstructions and bitstream
    codec.tar                the package that encoded (and, unless decoder-codec.tar is there, decoded)
    decoder-codec.tar        a compatibility cell's decoding package (another release's digest)
    bits.bmc                 the encoder's bitstream
    image.png                the source image
    encoder-recon.png        the encoder's reconstruction, as it returned it
    decoder-recon.png        the decoder's reconstruction
    encoder-fingerprint.json, decoder-fingerprint.json, replay.sh, README.txt
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codec.errors import CodecError
from worker.contract.bundle_layout import (
    BITSTREAM_NAME,
    CELL_FILE,
    DECODER_PACKAGE_NAME,
    IMAGE_NAME,
    PACKAGE_NAME,
    PAYLOAD_NAMES,
    RECON_NAMES,
    bundle_name,
)

__all__ = [  # the layout's names, for the replay that reads the payload (worker/replay.py)
    "BITSTREAM_NAME",
    "CELL_FILE",
    "DECODER_PACKAGE_NAME",
    "IMAGE_NAME",
    "PACKAGE_NAME",
    "PAYLOAD_NAMES",
    "RECON_NAMES",
    "Bundle",
    "BundleError",
    "bundle_name",
    "load_bundle",
]
MAX_MEMBER_BYTES = 512 * 2**20  # far above any package a coordinator accepts


class BundleError(CodecError):
    """A path that is not a readable repro bundle."""

    code = "bad-bundle"


@dataclass(frozen=True)
class Bundle:
    path: Path  # what was given: the zip or the directory
    name: str  # the bundle's folder name, bitmatch-job<J>-cell<C>
    cell: dict[str, Any]
    files: dict[str, bytes]  # the payload files present, by name

    def side(self, side: str) -> dict[str, Any] | None:
        """The recorded task of one side ("encoder" or "decoder"), or None when it never ran."""
        return self.cell.get("encode" if side == "encoder" else "decode")


def load_bundle(path: Path) -> Bundle:
    """A bundle from its zip or its directory (the folder itself or the one holding it)."""
    if path.is_dir():
        name, files = _read_directory(path)
    elif zipfile.is_zipfile(path):
        name, files = _read_zip(path)
    else:
        raise BundleError(f"{path} is not a repro bundle (a .zip from the dashboard or its extracted folder)")
    try:
        cell = json.loads(files.pop(CELL_FILE))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: {CELL_FILE} is not JSON: {exc}") from None
    if not isinstance(cell, dict) or not {"codec", "encode", "decode"} <= set(cell):
        raise BundleError(f"{path}: {CELL_FILE} is not a cell record")
    return Bundle(path, name, cell, files)


def _read_directory(path: Path) -> tuple[str, dict[str, bytes]]:
    if (path / CELL_FILE).is_file():
        folders = [path]
    else:
        folders = sorted(p.parent for p in path.glob(f"*/{CELL_FILE}"))
    if len(folders) != 1:
        found = "no" if not folders else "more than one"
        raise BundleError(f"{path} is not a repro bundle: {found} {CELL_FILE} in it")
    folder = folders[0]
    files = {}
    for name in (CELL_FILE, *PAYLOAD_NAMES):
        member = folder / name
        if member.is_file():
            _check_size(path, name, member.stat().st_size)
            files[name] = member.read_bytes()
    return folder.name, files


def _read_zip(path: Path) -> tuple[str, dict[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as archive:
            cells = [m for m in archive.infolist() if m.filename.rsplit("/", 1)[-1] == CELL_FILE]
            if len(cells) != 1:
                raise BundleError(f"{path} is not a repro bundle: {len(cells)} {CELL_FILE} files in it")
            prefix = cells[0].filename[: -len(CELL_FILE)]
            files = {}
            for name in (CELL_FILE, *PAYLOAD_NAMES):
                try:
                    member = archive.getinfo(prefix + name)
                except KeyError:
                    continue
                _check_size(path, name, member.file_size)
                files[name] = archive.read(member)  # read by name, never extracted: no path escapes
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(f"{path}: unreadable zip: {exc}") from None
    return prefix.rstrip("/").rsplit("/", 1)[-1] or path.stem, files


def _check_size(path: Path, name: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise BundleError(f"{path}: {name} is {size} bytes, over the {MAX_MEMBER_BYTES} a bundle may hold")
