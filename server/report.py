"""The static HTML report of one job: a single self-contained file (CSS and RD charts inline, no scripts, no
link or asset outside the file) with the verdict matrices, the BD-rate table and every cell, for `bitmatch
demo` and the CI runs to leave behind. It outlives the coordinator: a matrix cell links to the cell's row in
the file, never to the dashboard."""

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from server.dashboard import render as views
from server.db import Database
from server.models import Job


def render_report(session: Session, job_id: int) -> str:
    """The report as HTML text. KeyError when the job does not exist."""
    job = session.get(Job, job_id)
    if job is None:
        raise KeyError(f"no job {job_id}")
    view = views.job_view(session, job)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return views.render(
        "report.html",
        **view,
        link_base=None,  # cells link to their rows in this file (server/dashboard/templates/_macros.html)
        inline_css=True,
        generated=generated,
        refresh=None,
        section="",
    )


def write_report(db: Database | str, job_id: int, out_path: str | Path) -> Path:
    """Render job `job_id` from `db` (a Database or a database URL) into `out_path`; returns the path."""
    database = Database(db) if isinstance(db, str) else db
    try:
        with database.session() as session:
            html = render_report(session, job_id)
    finally:
        if database is not db:
            database.dispose()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
