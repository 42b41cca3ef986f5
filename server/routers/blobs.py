"""Raw blobs by SHA-256: images, reconstructions, bitstreams, package archives (pull workers fetch their
inputs here)."""

from fastapi import APIRouter, HTTPException, Response

from server.dependencies import DigestPath, StorageDep
from server.schemas.base import errors

router = APIRouter(prefix="/api/blobs", tags=["blobs"], responses=errors(404, 422))
BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/{digest}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": BINARY, "image/png": BINARY}}},
)
def get_blob(digest: DigestPath, store: StorageDep) -> Response:
    """Any stored blob by SHA-256: images, reconstructions, bitstreams, package archives."""
    if not store.exists(digest):
        raise HTTPException(404, f"no blob {digest}")
    data = store.get(digest)
    media = "image/png" if data.startswith(b"\x89PNG\r\n\x1a\n") else "application/octet-stream"
    return Response(data, media_type=media)
