"""The coordinator's FastAPI application factory.

Start-up: migrate the database (Alembic, programmatic), load workers from the config file, prepare the
known-answer test, then in the background health-check every worker and only after that start the scheduler,
which resumes any job a previous coordinator left unfinished.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.dashboard.router import router as dashboard_router
from server.db import Database
from server.devices import OFFLINE, UNCHECKED, DevicePool, load_workers_config
from server.guard import RequestGuard
from server.knownanswer import health_package, load_known_answer
from server.routers import blobs, cells, codecs, exports, images, imagesets, jobs, pull, workers
from server.scheduler import Scheduler
from server.settings import Settings
from server.state import AppState
from server.storage import BlobStore

log = logging.getLogger("bitmatch.server")

ERROR_CODES = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    422: "invalid",
}


def build_state(settings: Settings) -> AppState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    store = BlobStore(settings.blob_dir)
    pool = DevicePool(db, settings)
    if settings.workers_config is not None:
        for spec in load_workers_config(settings.workers_config):
            pool.upsert(spec, source="config")
    return AppState(
        settings=settings, db=db, store=store, pool=pool, scheduler=Scheduler(db, store, pool, settings)
    )


def create_app(settings: Settings) -> FastAPI:
    state = build_state(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        background = asyncio.create_task(_health_then_schedule(state), name="bitmatch-health")
        try:
            yield
        finally:
            background.cancel()
            await asyncio.gather(background, return_exceptions=True)
            await state.scheduler.stop()
            await state.pool.aclose()
            state.db.dispose()

    # Swagger UI (/docs) and ReDoc (/redoc) from fastapi-offline's bundled assets, not a CDN: the docs work
    # on a machine without network. No validator badge: it would load an image from swagger.io.
    app = FastAPIOffline(
        title="bitmatch coordinator",
        version="0.1.0",
        lifespan=lifespan,
        description="Cross-device interoperability jobs for learned image codecs.",
        redirect_slashes=False,  # a wrong path is a 404 with its reason, never a redirect posing as success
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.bitmatch = state
    app.add_middleware(RequestGuard, settings=settings)
    for module in (jobs, cells, pull, workers, codecs, images, imagesets, blobs, exports):
        app.include_router(module.router)
    app.include_router(dashboard_router)
    _install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def _health_then_schedule(state: AppState) -> None:
    settings = state.settings
    await _load_known_answer(state)
    try:
        await state.pool.check_all()
    except Exception:  # the periodic checks below try again; the scheduler must start regardless
        log.exception("first health check failed")
    if settings.run_scheduler:
        await state.scheduler.start()
    loop = asyncio.get_running_loop()
    next_full_check = loop.time() + settings.health_interval
    while True:
        await asyncio.sleep(min(settings.offline_recheck_interval, settings.health_interval))
        full = loop.time() >= next_full_check
        try:  # every device now and then; offline ones often, so a restarted worker comes back quickly
            await state.pool.check_all(None if full else (OFFLINE, UNCHECKED))
        except Exception:
            log.exception("periodic health check failed")
        if full:
            next_full_check = loop.time() + settings.health_interval


async def _load_known_answer(state: AppState) -> None:
    """The known-answer test every device passes before it is healthy; a health package that cannot be
    used leaves every device unchecked, with the reason."""
    pool, cache_dir = state.pool, state.settings.data_dir / "known-answers"
    pool.known_answer_loading = True
    try:
        package = await asyncio.to_thread(health_package, state.settings.health_package, cache_dir)
        pool.known_answer = await asyncio.to_thread(load_known_answer, package, cache_dir)
    except Exception as exc:  # the reason is shown on every device instead of hiding the missing check
        pool.known_answer_problem = f"health package unusable: {type(exc).__name__}: {exc}"
        log.error(pool.known_answer_problem)
    finally:
        pool.known_answer_loading = False


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = ERROR_CODES.get(exc.status_code, "http-error")
        return JSONResponse(
            {"error": code, "detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RecursionError)
    async def too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        return JSONResponse({"error": "bad-request", "detail": "input nested too deeply"}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid", "detail": errors}, status_code=422)
