"""JPEG and WebP points of a job's images (codec/anchors.py), measured once per image and kept in the data
directory: a pure function of the image's bytes and the Pillow version, so a cache, never a record.

A curve's anchors are the means, quality by quality, over the images of that curve.
"""

import json
import os
import tempfile
from pathlib import Path
from statistics import fmean

import PIL

from codec.anchors import QUALITIES, rate_psnr_sweep
from codec.images import decode_png
from codec.vocabulary import Anchor
from server.storage import BlobStore, is_digest

Point = tuple[float, float]


class AnchorCache:
    def __init__(self, directory: Path, store: BlobStore) -> None:
        self.directory, self.store = Path(directory), store

    def curves(self, image_digests: list[str]) -> dict[Anchor, list[Point]]:
        """(bpp, PSNR) per quality, averaged over the images; measures the images not measured yet.
        Raises BlobNotFound for an image the store lacks."""
        sweeps = [self.sweep(digest) for digest in sorted(set(image_digests))]
        if not sweeps:
            return {}
        return {
            anchor: [
                (fmean(s[anchor][i]["bpp"] for s in sweeps), fmean(s[anchor][i]["psnr"] for s in sweeps))
                for i in range(len(QUALITIES))
            ]
            for anchor in Anchor
        }

    def sweep(self, digest: str) -> dict[Anchor, list[dict[str, float]]]:
        cached = self._read(digest)
        if cached is not None:
            return cached
        image = decode_png(self.store.get(digest))
        sweep = {anchor: rate_psnr_sweep(image, anchor) for anchor in Anchor}
        self._write(digest, sweep)
        return sweep

    def _path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
        return self.directory / f"{digest}.json"

    def _read(self, digest: str) -> dict[Anchor, list[dict[str, float]]] | None:
        try:
            document = json.loads(self._path(digest).read_text())
        except (OSError, ValueError):
            return None  # absent or damaged: measured again
        if document.get("pillow") != PIL.__version__ or document.get("qualities") != list(QUALITIES):
            return None
        return {anchor: document[anchor] for anchor in Anchor}

    def _write(self, digest: str, sweep: dict[Anchor, list[dict[str, float]]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        document = {"pillow": PIL.__version__, "qualities": list(QUALITIES), **sweep}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as stream:
                json.dump(document, stream)
            os.replace(tmp, self._path(digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
