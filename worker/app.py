"""The worker's HTTP front (FastAPI). It runs natively; the codec runs in the target's compute process.

Endpoints (every /v1 call needs `Authorization: Bearer TOKEN`):

- `GET /healthz` -> `{"status": "ok"}` (no token).
- `GET /v1/info` -> the fingerprint reported by the compute process (worker/fingerprint.py), with its
  `replay` entry: how `bitmatch replay` reproduces this device (worker/contract/replay_setting.py).
- `GET /v1/status` -> queue depth, compute process id, start/timeout/death counters.
- `GET /v1/codecs` -> `{"codecs": [digest, ...]}`; `GET /v1/codecs/{digest}` -> 200 or 404.
- `PUT /v1/codecs/{digest}` (body: package archive) -> 201 `{"digest", "cached": false}`, or 200 with
  `"cached": true` when the package is already here. The archive is verified against the digest.
- `POST /v1/encode?codec=D` (body: PNG) and `POST /v1/decode?codec=D` (body: .bmc bitstream) -> JSON:

      {"codec": D, "target": T, "height": H, "width": W,
       "stage_hashes": {"z_hat", "scale_index", "symbols", "mean", "y_hat", "recon"},
       "metrics": {"bpp", "psnr" (encode only; null when infinite)},
       "timings": {stage: ms, ..., "compute_total": ms, "request_total": ms},
       "bitstream": base64, "bitstream_sha256": hex          (encode only)
       "recon_png": base64                                   (with return_recon=true)
       "index_map": {"shape": [...], "dtype": "int32", "byteorder": "little", "compression": "zlib",
                     "data": base64},
       "symbol_map": {... "int32" ...}, "y_hat_map": {... "float32" ...}
       "maps_omitted": reason                                (maps over the size cap are not sent)
       "partial": true, "decode_error": {"error", "detail"}  (a forensic decode, return_index_map=true,
                                                             whose y section failed: only the scale index
                                                             map it decoded with)
                                                             (with return_index_map=true: the scale index,
                                                              the coded symbol and y_hat in latent units of
                                                              every latent element, C order)}

Errors are JSON `{"error": code, "detail": text}`: 400 bad request/digest/image body, 401 missing or wrong
token, 404 unknown codec, 413 body over the cap, 422 a typed codec error (a decode failing in the entropy path
gives its `BitstreamError` code, e.g. `crc-mismatch`), 503 queue full or compute process not running, 504
timeout (the compute process is restarted), 502 compute process died (restarted), 500 an untyped codec error.
"""

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from codec.errors import CodecError
from worker.contract import DecodeResult, EncodeResult
from worker.execute import (
    DIGEST_PATTERN,
    ApiError,
    CodecStore,
    call,
    decode_header,
    decode_image,
    encode_header,
    result_body,
)
from worker.supervisor import ComputeLaunch, ComputeSupervisor, QueueFull

log = logging.getLogger("bitmatch.worker")
# Past the cap the rest of a body is read and dropped (up to this much more), so that the client, still
# sending, receives the 413 instead of a reset connection.
DRAIN_LIMIT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class WorkerSettings:
    target: str
    token: str
    cache_dir: Path
    launch: ComputeLaunch
    max_body_bytes: int = 256 * 2**20
    queue_size: int = 8
    timeout_s: float = 300.0
    startup_timeout_s: float = 900.0


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def create_app(settings: WorkerSettings) -> FastAPI:
    supervisor = ComputeSupervisor(
        settings.launch, settings.timeout_s, settings.queue_size, settings.startup_timeout_s
    )
    store = CodecStore(settings.cache_dir / "codecs")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await supervisor.start()
        try:
            yield
        finally:
            await supervisor.stop()

    app = FastAPI(title="bitmatch worker", version="1", lifespan=lifespan)
    app.state.settings, app.state.supervisor, app.state.store = settings, supervisor, store
    _install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(_v1_router(settings, supervisor, store))
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.detail, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return error_response(400, "bad-request", details or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal-error", f"{type(exc).__name__}: {exc}")


def _v1_router(settings: WorkerSettings, supervisor: ComputeSupervisor, store: CodecStore) -> APIRouter:
    expected = f"Bearer {settings.token}".encode()

    async def require_token(request: Request) -> None:
        given = request.headers.get("authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    @router.get("/info")
    async def info() -> dict[str, Any]:
        if supervisor.fingerprint is None:
            raise ApiError(503, "compute-unavailable", "the compute process has not started")
        return supervisor.fingerprint

    @router.get("/status")
    async def status() -> dict[str, Any]:
        return {"target": settings.target, **supervisor.status()}

    @router.get("/codecs")
    async def list_codecs() -> dict[str, list[str]]:
        return {"codecs": store.digests()}

    @router.get("/codecs/{digest}")
    async def get_codec(digest: str) -> dict[str, Any]:
        _known_codec(store, digest)
        return {"digest": digest, "cached": True}

    @router.put("/codecs/{digest}")
    async def put_codec(digest: str, request: Request) -> JSONResponse:
        _check_digest(digest)
        archive = await read_body(request, settings.max_body_bytes)
        if store.has(digest):
            return JSONResponse({"digest": digest, "cached": True}, status_code=200)
        try:
            await asyncio.to_thread(store.put, digest, archive)
        except CodecError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        return JSONResponse({"digest": digest, "cached": False}, status_code=201)

    @router.post("/encode", response_model_exclude_none=True)
    async def encode(
        request: Request, codec: str | None = None, return_recon: bool = False, return_index_map: bool = False
    ) -> EncodeResult:
        started = time.perf_counter()
        digest = _known_codec(store, codec)
        _refuse_if_full(supervisor)
        image = await asyncio.to_thread(decode_image, await read_body(request, settings.max_body_bytes))
        header = encode_header(store, digest, image, return_recon, return_index_map)
        reply = await call(supervisor, header, image.tobytes())
        return await result_body(settings.target, digest, reply, started, supervisor.fingerprint)

    @router.post("/decode", response_model_exclude_none=True)
    async def decode(
        request: Request,
        codec: str | None = None,
        return_recon: bool = False,
        return_index_map: bool = False,
        allow_foreign: bool = False,
    ) -> DecodeResult:
        started = time.perf_counter()
        digest = _known_codec(store, codec)
        _refuse_if_full(supervisor)
        bitstream = await read_body(request, settings.max_body_bytes)
        header = decode_header(store, digest, return_recon, return_index_map, allow_foreign)
        reply = await call(supervisor, header, bitstream)
        return await result_body(settings.target, digest, reply, started, supervisor.fingerprint)

    return router


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 when it exceeds `limit` bytes (checked as it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad-request", f"invalid Content-Length {declared!r}")
        if int(declared) > limit + DRAIN_LIMIT_BYTES:
            raise ApiError(413, "too-large", f"body of {declared} bytes exceeds the cap of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit + DRAIN_LIMIT_BYTES:
            break
    if size > limit:
        raise ApiError(413, "too-large", f"body exceeds the cap of {limit} bytes")
    return b"".join(chunks)


def _check_digest(digest: str | None) -> str:
    if digest is None:
        raise ApiError(400, "bad-request", "query parameter 'codec' (the package digest) is required")
    if not DIGEST_PATTERN.fullmatch(digest):
        raise ApiError(400, "bad-digest", "a codec digest is 64 lower-case hex characters")
    return digest


def _known_codec(store: CodecStore, digest: str | None) -> str:
    digest = _check_digest(digest)
    if not store.has(digest):
        raise ApiError(404, "unknown-codec", f"codec {digest} is not cached here; PUT /v1/codecs/{digest}")
    return digest


def _refuse_if_full(supervisor: ComputeSupervisor) -> None:
    if supervisor.full:
        raise ApiError(503, QueueFull.code, f"queue full ({supervisor.queue_size} requests)")
