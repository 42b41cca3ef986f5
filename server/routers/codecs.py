"""Codec packages: uploaded once as an archive, verified against their digest, referred to by digest."""

import asyncio

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from codec.errors import PackageError
from server.catalog import add_codec
from server.dependencies import AppDep, CodecDep, DigestPath, SessionDep, StorageDep, WriteAccess, read_body
from server.models import Codec
from server.schemas.base import errors
from server.schemas.catalog import CodecRecord
from server.state import AppState

router = APIRouter(prefix="/api/codecs", tags=["codecs"], responses=errors(422))
UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
STORED = {200: {"model": CodecRecord, "description": "already stored"}, **errors(400, 401, 413)}


@router.put("/", include_in_schema=False, dependencies=[WriteAccess])
def put_codec_without_digest() -> None:
    # Without this, an empty $DIGEST in a script would get a silent redirect that looks like success.
    raise HTTPException(404, "PUT /api/codecs/{digest}: the digest is missing from the URL (empty variable?)")


@router.put(
    "/{digest}",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    response_model=CodecRecord,
    responses=STORED,
)
async def put_codec(digest: DigestPath, request: Request, app: AppDep) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), digest)


@router.post(
    "",
    dependencies=[WriteAccess],
    openapi_extra=UPLOAD,
    status_code=201,
    response_model=CodecRecord,
    responses=STORED,
)
async def post_codec(request: Request, app: AppDep) -> JSONResponse:
    return await asyncio.to_thread(_store, app, await read_body(request), None)


def _store(app: AppState, archive: bytes, digest: str | None) -> JSONResponse:
    try:
        row, created = add_codec(app.db, app.store, app.packages_dir, archive, digest)
    except PackageError as exc:
        raise HTTPException(422, f"bad codec package: {exc}") from None
    return JSONResponse(CodecRecord.of(row).model_dump(), status_code=201 if created else 200)


@router.get("")
def list_codecs(session: SessionDep) -> list[CodecRecord]:
    return [CodecRecord.of(c) for c in session.scalars(select(Codec).order_by(Codec.id))]


@router.get("/{digest}", responses=errors(404))
def get_codec(codec: CodecDep) -> CodecRecord:
    return CodecRecord.of(codec)


@router.get(
    "/{digest}/archive",
    response_class=Response,
    responses={
        200: {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}},
        **errors(404),
    },
)
def get_codec_archive(codec: CodecDep, store: StorageDep) -> Response:
    return Response(
        store.get(codec.archive_sha256),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{codec.digest}.bmpkg"'},
    )
