"""Running one encode or decode on the compute process, shared by the HTTP front and the pull loop.

`call` sends a request to the target's compute process (worker/supervisor.py) and turns every failure into an
`ApiError` with the status the HTTP front answers; `result_body` turns a reply into the JSON result the
coordinator reads, the same whether it travels back as an HTTP response or as a pull worker's posted result.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from codec.errors import ImageError
from codec.images import decode_png, encode_png
from codec.package import extract_archive
from worker.contract import MAP_NAMES, DecodeResult, EncodeResult
from worker.contract.fingerprint import fingerprint_sha256
from worker.supervisor import (
    ComputeDied,
    ComputeError,
    ComputeSupervisor,
    ComputeTimeout,
    ComputeUnavailable,
    QueueFull,
)

DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
CATEGORY_STATUS = {
    "bitstream": 422,
    "image": 422,
    "package": 422,
    "codec": 422,
    "request": 400,
    "resource": 507,
}
COMPUTE_ERROR_STATUS = {QueueFull: 503, ComputeUnavailable: 503, ComputeTimeout: 504, ComputeDied: 502}
FORENSIC_MAPS = MAP_NAMES
MAP_DTYPES = frozenset({"int32", "float32"})
RECON_PNG_LEVEL = 1  # zlib level of returned reconstructions: they are compared by pixel hash, not bytes


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class CodecStore:
    """Codec packages on disk, one verified directory per digest under `<cache_dir>/codecs/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest

    def has(self, digest: str) -> bool:
        return (self.path(digest) / "manifest.json").is_file()

    def digests(self) -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if DIGEST_PATTERN.fullmatch(p.name) and self.has(p.name)
        )

    def put(self, digest: str, archive: bytes) -> None:
        """Verify and unpack an archive into a scratch directory, then move it into place atomically."""
        scratch = Path(tempfile.mkdtemp(prefix=".upload-", dir=self.root))
        try:
            extract_archive(archive, scratch / "package", expected_digest=digest)
            with contextlib.suppress(OSError):  # a concurrent upload of the same digest won the race
                (scratch / "package").rename(self.path(digest))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def decode_image(data: bytes) -> np.ndarray:
    try:
        return decode_png(data)
    except ImageError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


async def call(supervisor: ComputeSupervisor, header: dict[str, Any], payload: bytes) -> Any:
    try:
        reply = await supervisor.call(header, payload)
    except ComputeError as exc:
        raise ApiError(COMPUTE_ERROR_STATUS.get(type(exc), 500), exc.code, str(exc)) from None
    if not reply.header.get("ok"):
        category = reply.header.get("category")
        if category == "resource":  # an allocation failed: the process may hold half-built state
            supervisor.recycle()
        status = CATEGORY_STATUS.get(category, 500)
        raise ApiError(
            status, str(reply.header.get("error", "internal-error")), str(reply.header.get("detail", ""))
        )
    return reply


async def result_body(
    target: str, digest: str, reply: Any, started: float, fingerprint: dict[str, Any] | None = None
) -> EncodeResult | DecodeResult:
    """The compute process's reply as the result contract (worker/contract/results.py)."""
    header, blobs = reply.header, reply.blobs
    body: dict[str, Any] = {
        "codec": digest,
        "target": target,
        "height": header["height"],
        "width": header["width"],
        "stage_hashes": header["stage_hashes"],
        "metrics": header["metrics"],
        "timings": header["timings"],
        "fingerprint_sha256": fingerprint_sha256(fingerprint) if fingerprint else None,
    }
    if header.get("partial"):  # a forensic decode that stopped in the y section: its maps so far
        body.update(partial=True, decode_error=header["decode_error"])
    if header.get("foreign_codec"):
        body["foreign_codec"] = header["foreign_codec"]
    if "bitstream" in blobs:
        body["bitstream"] = base64.b64encode(blobs["bitstream"]).decode("ascii")
        body["bitstream_sha256"] = hashlib.sha256(blobs["bitstream"]).hexdigest()
        body["bitstream_bytes"] = len(blobs["bitstream"])
    if "recon" in blobs:
        recon = np.frombuffer(blobs["recon"], dtype=np.uint8).reshape(header["recon_shape"])
        png = await asyncio.to_thread(encode_png, recon, RECON_PNG_LEVEL)
        body["recon_png"] = base64.b64encode(png).decode("ascii")
    for name in FORENSIC_MAPS:
        if name in blobs:
            dtype = header.get(f"{name}_dtype", "int32")
            if dtype not in MAP_DTYPES:
                raise ApiError(500, "internal-error", f"the compute process sent {name} as {dtype}")
            body[name] = {
                "shape": header[f"{name}_shape"],
                "dtype": dtype,
                "byteorder": "little",
                "compression": "zlib",
                "data": base64.b64encode(blobs[name]).decode("ascii"),
            }
    if "maps_omitted" in header:
        body["maps_omitted"] = header["maps_omitted"]
    body["timings"]["request_total"] = (time.perf_counter() - started) * 1e3
    return EncodeResult(**body) if "bitstream" in body else DecodeResult(**body)


def encode_header(
    store: CodecStore, digest: str, image: np.ndarray, recon: bool, maps: bool
) -> dict[str, Any]:
    return {
        "op": "encode",
        "codec": digest,
        "codec_path": str(store.path(digest)),
        "shape": list(image.shape),
        "return_recon": recon,
        "return_index_map": maps,
    }


def decode_header(
    store: CodecStore, digest: str, recon: bool, maps: bool, allow_foreign: bool = False
) -> dict[str, Any]:
    """`allow_foreign`: decode a bitstream another package wrote (codec-version compatibility)."""
    return {
        "op": "decode",
        "codec": digest,
        "codec_path": str(store.path(digest)),
        "return_recon": recon,
        "return_index_map": maps,
        "allow_foreign": allow_foreign,
    }
