"""Dashboard pages (HTML) and the images and bundles they link to. Kept out of the OpenAPI schema: the API
for programs is /api; these pages render the same queries for people."""

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from codec.errors import CodecError, ImageError
from codec.images import decode_png
from codec.vocabulary import Precision
from server import drift, evidence, history, queries
from server.anchors import AnchorCache
from server.dashboard import rdview
from server.dashboard import render as views
from server.dashboard.images import ErrorMap, error_map
from server.dashboard.margins import margin_histogram_png
from server.dashboard.repro import build_bundle, bundle_name, replay_commands, side_targets
from server.dependencies import AppDep, CellId, JobId, SessionDep, SettingsDep
from server.forensics import IndexMapError
from server.models import Job
from server.state import AppState
from server.storage import BlobNotFound

HTML_404 = {404: {"description": "an HTML page saying what is missing", "content": {"text/html": {}}}}
router = APIRouter(include_in_schema=False, tags=["dashboard"], responses=HTML_404)
REFRESH_SECONDS = 5
PNG_SIDES = {"source": "image_png", "encoder": "encode", "decoder": "decode"}
FINGERPRINT_VALUE_CHARS = 160
PNG = {200: {"content": {"image/png": {}}}}


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(views.render(template, **context), status_code=status_code)


def _not_found(message: str) -> HTMLResponse:
    return _page("error.html", 404, status="Not found", message=message, section="")


@router.get("/", response_class=HTMLResponse)
def jobs_page(session: SessionDep) -> HTMLResponse:
    jobs = queries.list_jobs(session, limit=200)
    return _page("jobs.html", jobs=jobs, section="jobs")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: JobId, app: AppDep, per_image: bool = False) -> HTMLResponse:
    """`?per_image=1` adds each image's RD points to the curves."""
    anchors = AnchorCache(app.settings.anchor_dir, app.store)
    with app.db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            return _not_found(f"There is no job {job_id}.")
        view = views.job_view(session, job, anchors, per_image)
    refresh = REFRESH_SECONDS if view["running"] else None
    return _page("job.html", **view, link_base="", refresh=refresh, section="jobs")


@router.get("/cells/{cell_id}", response_class=HTMLResponse)
def cell_page(cell_id: CellId, app: AppDep) -> HTMLResponse:
    cell = _cell(app, cell_id)
    if cell is None:
        return _not_found(f"There is no cell {cell_id}.")
    encode, decode = cell["encode"], cell["decode"]
    with app.db.session() as session:
        trend = history.cell_trend(session, cell_id)
    return _page(
        "cell.html",
        cell=cell,
        trend=trend.as_dict() if trend else None,
        encode=encode,
        decode=decode,
        section="jobs",
        error_map=_error_map(app, cell),
        commands=replay_commands(cell),
        side_targets=side_targets(cell),
        bundle_name=bundle_name(cell),
        fingerprint_rows=fingerprint_rows(encode, decode),
    )


@router.get("/cells/{cell_id}/error-map.png", response_class=Response, responses=PNG)
def error_map_png(cell_id: CellId, app: AppDep) -> Response:
    cell = _cell(app, cell_id)
    result = _error_map(app, cell) if cell else None
    if result is None:
        return _not_found(f"Cell {cell_id} has no pair of reconstructions to compare.")
    return Response(result.png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.get("/cells/{cell_id}/margins.png", response_class=Response, responses=PNG)
def margins_png(cell_id: CellId, app: AppDep) -> Response:
    cell = _cell(app, cell_id)
    data = _margins(app, cell) if cell else None
    if data is None:
        return _not_found(f"Cell {cell_id} has no raw h_s outputs on both sides to compare.")
    return Response(
        margin_histogram_png(*data), media_type="image/png", headers={"Cache-Control": "max-age=3600"}
    )


@router.get("/cells/{cell_id}/{side}.png", response_class=Response, responses=PNG)
def side_png(cell_id: CellId, side: str, app: AppDep) -> Response:
    cell = _cell(app, cell_id)
    if cell is None or side not in PNG_SIDES:
        return _not_found(f"No image {side!r} for cell {cell_id}.")
    digest = _png_digest(cell, side)
    try:
        data = app.store.get(digest) if digest else None
    except BlobNotFound:
        data = None
    if data is None:
        return _not_found(f"The {side} image of cell {cell_id} is not stored.")
    return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=86400"})


@router.get(
    "/cells/{cell_id}/repro.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def repro_bundle(cell_id: CellId, app: AppDep) -> Response:
    cell = _cell(app, cell_id)
    if cell is None:
        return _not_found(f"There is no cell {cell_id}.")
    return Response(
        build_bundle(cell, app.store),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{bundle_name(cell)}.zip"'},
    )


@router.get("/devices", response_class=HTMLResponse)
def devices_page(session: SessionDep) -> HTMLResponse:
    devices = queries.list_devices(session)
    return _page("devices.html", devices=devices, section="devices")


@router.get("/rd", response_class=HTMLResponse)
def evidence_page(settings: SettingsDep) -> HTMLResponse:
    """The shipped RD evidence (`--rd-evidence`, packages/rd.json by default): curves and BD-rates."""
    path = settings.rd_evidence
    try:
        report = evidence.load(path)
    except evidence.EvidenceError as exc:
        status = 404 if not Path(path).exists() else 500
        return _page("error.html", status, status="No RD evidence", message=str(exc), section="rd")
    return _page("evidence.html", **rdview.evidence_view(report), source=str(path), section="rd")


@router.get("/dashboard.css", response_class=Response, responses={200: {"content": {"text/css": {}}}})
def stylesheet() -> Response:
    return Response(
        views.CSS_PATH.read_text(), media_type="text/css", headers={"Cache-Control": "max-age=300"}
    )


def _cell(app: AppState, cell_id: int) -> dict[str, Any] | None:
    with app.db.session() as session:
        return queries.cell_detail(session, cell_id)


def _png_digest(cell: dict[str, Any], side: str) -> str | None:
    key = PNG_SIDES[side]
    if key == "image_png":
        return cell.get("image_png")
    return (cell.get(key) or {}).get("recon")


def _error_map(app: AppState, cell: dict[str, Any]) -> ErrorMap | None:
    encoder_digest, decoder_digest = _png_digest(cell, "encoder"), _png_digest(cell, "decoder")
    if not (encoder_digest and decoder_digest):
        return None
    try:
        return error_map(decode_png(app.store.get(encoder_digest)), decode_png(app.store.get(decoder_digest)))
    except (BlobNotFound, ImageError, ValueError):
        return None


def _margins(app: AppState, cell: dict[str, Any]) -> tuple[Any, Any] | None:
    """(margins, drift) in ULPs of a float cell, from both sides' stored maps."""
    if cell.get("precision") != Precision.FLOAT:
        return None
    try:
        head = drift.codec_head(str(app.store.root), cell["codec_archive"])
        maps = [
            drift.maps_json(app.store.get(side["maps"])) if side and side.get("maps") else None
            for side in (cell["encode"], cell["decode"])
        ]
        return drift.margin_histogram_data(head, drift.Sides(maps[0], maps[1], None, None, None))
    except (BlobNotFound, CodecError, IndexMapError, ValueError, KeyError):
        return None


def fingerprint_rows(encode: dict[str, Any] | None, decode: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Both sides' fingerprints field by field, with the fields that differ marked."""
    left = (encode or {}).get("fingerprint") or {}
    right = (decode or {}).get("fingerprint") or {}
    rows = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        rows.append({"key": key, "encoder": _show(a), "decoder": _show(b), "differs": a != b})
    return rows


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= FINGERPRINT_VALUE_CHARS else text[:FINGERPRINT_VALUE_CHARS] + "…"
