"""Codec packages: uploaded once as an archive, verified against their digest, referred to by digest."""

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from codec.errors import PackageError
from server import queries
from server.api import AppDep, DigestPath, WriteAccess, read_body
from server.catalog import add_codec
from server.models import Codec

router = APIRouter(prefix="/api/codecs", tags=["codecs"])
UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put("/", include_in_schema=False, dependencies=[WriteAccess])
def put_codec_without_digest() -> None:
    # Without this, an empty $DIGEST in a script would get a silent redirect that looks like success.
    raise HTTPException(404, "PUT /api/codecs/{digest}: the digest is missing from the URL (empty variable?)")


@router.put(
    "/{digest}",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    responses={200: {"description": "already stored"}},
)
async def put_codec(digest: DigestPath, request: Request, app: AppDep) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), digest)


@router.post(
    "",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    responses={200: {"description": "already stored"}},
)
async def post_codec(request: Request, app: AppDep) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), None)


def _store(app, archive: bytes, digest: str | None) -> JSONResponse:
    try:
        row, created = add_codec(app.db, app.store, app.packages_dir, archive, digest)
    except PackageError as exc:
        raise HTTPException(422, f"bad codec package: {exc}") from None
    return JSONResponse(queries.codec_dict(row), status_code=201 if created else 200)


@router.get("")
def list_codecs(app: AppDep) -> list[dict[str, Any]]:
    with app.db.session() as session:
        return [queries.codec_dict(c) for c in session.scalars(select(Codec).order_by(Codec.id))]


@router.get("/{digest}")
def get_codec(digest: DigestPath, app: AppDep) -> dict[str, Any]:
    return queries.codec_dict(_codec(app, digest))


@router.get(
    "/{digest}/archive", response_class=Response, responses={200: {"content": {"application/x-tar": {}}}}
)
def get_codec_archive(digest: DigestPath, app: AppDep) -> Response:
    codec = _codec(app, digest)
    return Response(
        app.store.get(codec.archive_sha256),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{digest}.bmpkg"'},
    )


def _codec(app, digest: str) -> Codec:
    with app.db.session() as session:
        codec = session.scalar(select(Codec).where(Codec.digest == digest))
    if codec is None:
        raise HTTPException(404, f"no codec {digest}")
    return codec
