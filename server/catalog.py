"""Codec packages and images: verified once on upload, stored by digest, referred to by digest ever after."""

import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from codec.errors import ImageError, PackageError
from codec.images import decode_png, encode_png
from codec.imagesets import make_set
from codec.package import canonical_json, extract_archive
from codec.stages import manifest_family
from server.db import Database
from server.models import Codec, Image
from server.storage import BlobStore


def codec_label(manifest: dict[str, Any], digest: str) -> str:
    """The manifest's name, else family, precision and digest: `int16-1a2b3c4d` for the hyperprior,
    `lowcomplexity-int16-full-...` (or `lowcomplexity-nocontext-...`, one CDF per channel) for paper 001's."""
    name = manifest.get("name")
    if isinstance(name, str) and name:
        return name
    parts = [str(manifest.get("precision", "codec")), digest[:8]]
    family = manifest_family(manifest)
    if family is not None and family != "hyperprior":
        contexts = manifest.get("contexts")
        single = isinstance(contexts, dict) and contexts.get("contexts") == 1
        parts.insert(0, f"{family}-nocontext" if single else family)
    return "-".join(parts)


def architecture_key(manifest: dict[str, Any]) -> str:
    """A short stable name for the network architecture, shared by the precisions of one model family."""
    architecture = manifest.get("architecture")
    if isinstance(architecture, str):
        return architecture[:64]
    return hashlib.sha256(canonical_json(architecture)).hexdigest()[:12]


def add_codec(
    db: Database, store: BlobStore, packages_dir: Path, archive: bytes, expected_digest: str | None = None
) -> tuple[Codec, bool]:
    """Verify and store a package archive; returns (row, created). Raises PackageError when it is bad."""
    packages_dir.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(dir=packages_dir, prefix=".incoming-"))
    try:
        package = extract_archive(archive, incoming, expected_digest)
        if not (packages_dir / package.digest).exists():
            with contextlib.suppress(OSError):  # a concurrent upload of the same package got there first
                incoming.rename(packages_dir / package.digest)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    manifest = package.manifest
    row = Codec(
        digest=package.digest,
        name=codec_label(manifest, package.digest),
        precision=str(manifest.get("precision", "")),
        architecture=architecture_key(manifest),
        manifest=manifest,
        archive_sha256=store.put(archive),
        size=len(archive),
    )
    return _insert_once(db, Codec, row)


def _insert_once(db: Database, model: type, row: Codec | Image) -> tuple[Codec | Image, bool]:
    """(the stored row, True) after inserting `row`, or (the row already there, False): race-free, since
    two first uploads of one digest meet at its unique key and the loser reads the winner's row."""
    digest = row.digest
    with db.session() as session:
        existing = session.scalar(select(model).where(model.digest == digest))
        if existing is not None:
            return existing, False
    try:
        with db.session() as session:
            session.add(row)
            session.flush()
            return row, True
    except IntegrityError:
        with db.session() as session:
            return session.scalar(select(model).where(model.digest == digest)), False


def add_image(
    db: Database, store: BlobStore, data: bytes, name: str | None = None, image_set: str | None = None
) -> tuple[Image, bool]:
    """Validate and store a PNG (the digest is the SHA-256 of its bytes). Raises ImageError when it is bad."""
    pixels = decode_png(data)
    digest = hashlib.sha256(data).hexdigest()
    store.put(data)
    row = Image(
        digest=digest,
        name=name or digest[:12],
        image_set=image_set,
        height=int(pixels.shape[0]),
        width=int(pixels.shape[1]),
        size=len(data),
    )
    return _insert_once(db, Image, row)


def ensure_image_set(db: Database, store: BlobStore, set_name: str) -> list[str]:
    """Store a bundled set's images (idempotent); returns their digests in set order. KeyError if unknown."""
    digests = []
    for image_name, pixels in make_set(set_name).items():
        row, _ = add_image(db, store, encode_png(pixels), name=image_name, image_set=set_name)
        digests.append(row.digest)
    return digests


__all__ = ["ImageError", "PackageError", "add_codec", "add_image", "ensure_image_set"]
