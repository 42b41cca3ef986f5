"""Per-job exports: JSON, CSV and JUnit XML."""

from typing import Literal

from fastapi import APIRouter, Response

from server import exports
from server.dependencies import JobId, SessionDep, job_or_404
from server.schemas.base import errors
from server.schemas.jobs import JobExport

router = APIRouter(prefix="/api/jobs", tags=["exports"], responses=errors(404, 422))

FORMATS = {
    "json": (exports.to_json, "application/json", "json"),
    "csv": (exports.to_csv, "text/csv; charset=utf-8", "csv"),
    "junit": (exports.to_junit, "application/xml", "xml"),
}
TEXT = {"schema": {"type": "string"}}


@router.get(
    "/{job_id}/export/{fmt}",
    response_class=Response,
    responses={
        200: {
            "model": JobExport,
            "description": "the job as a download: JSON (everything), CSV (a row per cell), JUnit XML",
            "content": {"text/csv": TEXT, "application/xml": TEXT},
        }
    },
)
def export_job(job_id: JobId, fmt: Literal["json", "csv", "junit"], session: SessionDep) -> Response:
    # The job is looked up here, not by a JobDep: that would answer 404 before `fmt` is validated (422).
    job = job_or_404(session, job_id)
    render, media, suffix = FORMATS[fmt]
    return Response(
        render(session, job),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="bitmatch-job-{job.id}.{suffix}"'},
    )
