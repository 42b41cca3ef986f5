"""Per-job exports: JSON, CSV and JUnit XML."""

from typing import Literal

from fastapi import APIRouter, HTTPException, Response

from server import exports
from server.api import AppDep, JobId
from server.models import Job

router = APIRouter(prefix="/api/jobs", tags=["exports"])

FORMATS = {
    "json": (exports.to_json, "application/json", "json"),
    "csv": (exports.to_csv, "text/csv; charset=utf-8", "csv"),
    "junit": (exports.to_junit, "application/xml", "xml"),
}


@router.get(
    "/{job_id}/export/{fmt}",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/csv": {}, "application/xml": {}}}},
)
def export_job(job_id: JobId, fmt: Literal["json", "csv", "junit"], app: AppDep) -> Response:
    render, media, suffix = FORMATS[fmt]
    with app.db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        text = render(session, job)
    return Response(
        text,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="bitmatch-job-{job_id}.{suffix}"'},
    )
