"""Images (PNG, uploaded once, named by the SHA-256 of their bytes), bundled image sets, and raw blobs."""

import asyncio
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from codec.errors import ImageError
from codec.imagesets import IMAGE_SETS
from server import queries
from server.api import AppDep, DigestPath, WriteAccess, read_body
from server.catalog import add_image
from server.models import Image

router = APIRouter(prefix="/api", tags=["images"])
UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}
Name = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.post(
    "/images",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    responses={200: {"description": "already stored"}},
)
async def post_image(request: Request, app: AppDep, name: Name = None) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), name, None)


@router.put(
    "/images/{digest}",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    responses={200: {"description": "already stored"}},
)
async def put_image(digest: DigestPath, request: Request, app: AppDep, name: Name = None) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), name, digest)


def _store(app, data: bytes, name: str | None, digest: str | None) -> JSONResponse:
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise HTTPException(422, "body does not hash to the digest in the path")
    try:
        row, created = add_image(app.db, app.store, data, name)
    except ImageError as exc:
        raise HTTPException(422, f"bad image: {exc}") from None
    return JSONResponse(queries.image_dict(row), status_code=201 if created else 200)


@router.get("/images")
def list_images(app: AppDep) -> list[dict[str, Any]]:
    with app.db.session() as session:
        return [queries.image_dict(i) for i in session.scalars(select(Image).order_by(Image.id))]


@router.get("/images/{digest}")
def get_image(digest: DigestPath, app: AppDep) -> dict[str, Any]:
    with app.db.session() as session:
        image = session.scalar(select(Image).where(Image.digest == digest))
        if image is None:
            raise HTTPException(404, f"no image {digest}")
        return queries.image_dict(image)


@router.get("/image-sets")
def list_image_sets() -> dict[str, list[str]]:
    return {name: sorted(images) for name, images in IMAGE_SETS.items()}


@router.get(
    "/blobs/{digest}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}, "image/png": {}}}},
)
def get_blob(digest: DigestPath, app: AppDep) -> Response:
    """Any stored blob by SHA-256: images, reconstructions, bitstreams, package archives."""
    if not app.store.exists(digest):
        raise HTTPException(404, f"no blob {digest}")
    data = app.store.get(digest)
    media = "image/png" if data.startswith(b"\x89PNG\r\n\x1a\n") else "application/octet-stream"
    return Response(data, media_type=media)
