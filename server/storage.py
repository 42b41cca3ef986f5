"""Content-addressed blobs on disk: every bitstream, image, reconstruction and package archive, once.

A blob lives at `root/ab/cd/abcdef…` named by the SHA-256 of its bytes. Writes go to a temporary file in the
same directory and are renamed into place, so a crash never leaves a partial blob under a valid name.
"""

import hashlib
import os
import re
import tempfile
from pathlib import Path

_DIGEST = re.compile(r"[0-9a-f]{64}")


class BlobNotFound(KeyError):
    pass


def is_digest(text: str) -> bool:
    return bool(_DIGEST.fullmatch(text))


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(digest)
        if final.exists():
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def exists(self, digest: str) -> bool:
        return is_digest(digest) and self.path(digest).is_file()

    def get(self, digest: str) -> bytes:
        if not self.exists(digest):
            raise BlobNotFound(digest)
        return self.path(digest).read_bytes()
