"""Images: PNG, uploaded once, named by the SHA-256 of their bytes."""

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from codec.errors import ImageError
from server.catalog import add_image
from server.dependencies import AppDep, DigestPath, ImageDep, SessionDep, WriteAccess, read_body
from server.models import Image
from server.schemas.base import errors
from server.schemas.catalog import ImageRecord
from server.state import AppState

router = APIRouter(prefix="/api/images", tags=["images"], responses=errors(422))
UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}
STORED = {200: {"model": ImageRecord, "description": "already stored"}, **errors(400, 401, 413)}
Name = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.post(
    "",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    response_model=ImageRecord,
    responses=STORED,
)
async def post_image(request: Request, app: AppDep, name: Name = None) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), name, None)


@router.put(
    "/{digest}",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    response_model=ImageRecord,
    responses=STORED,
)
async def put_image(digest: DigestPath, request: Request, app: AppDep, name: Name = None) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), name, digest)


def _store(app: AppState, data: bytes, name: str | None, digest: str | None) -> JSONResponse:
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise HTTPException(422, "body does not hash to the digest in the path")
    try:
        row, created = add_image(app.db, app.store, data, name)
    except ImageError as exc:
        raise HTTPException(422, f"bad image: {exc}") from None
    return JSONResponse(ImageRecord.of(row).model_dump(), status_code=201 if created else 200)


@router.get("")
def list_images(session: SessionDep) -> list[ImageRecord]:
    return [ImageRecord.of(i) for i in session.scalars(select(Image).order_by(Image.id))]


@router.get("/{digest}", responses=errors(404))
def get_image(image: ImageDep) -> ImageRecord:
    return ImageRecord.of(image)
