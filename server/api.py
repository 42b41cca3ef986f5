"""Small HTTP helpers shared by the routers: the write token, size-capped bodies, typed JSON errors."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from server.state import AppState

MAX_ID = 2**63 - 1
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
DeviceId = Annotated[int, Path(ge=1, le=MAX_ID)]
CellId = Annotated[int, Path(ge=1, le=MAX_ID)]
DigestPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256")]


def state(request: Request) -> AppState:
    return request.app.state.bitmatch


def require_token(request: Request) -> None:
    """Writes need `Authorization: Bearer TOKEN`; a coordinator started without a token refuses them all."""
    expected = state(request).settings.token
    given = request.headers.get("authorization", "")
    if not expected or not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


WriteAccess = Depends(require_token)
AppDep = Annotated[AppState, Depends(state)]


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it exceeds the upload cap (declared or actual size)."""
    limit = state(request).settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes exceeds the {limit}-byte upload cap")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body exceeds the {limit}-byte upload cap")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise HTTPException(400, "empty body")
    return body
