"""The routers' dependencies: a request's session is committed before the scheduler is woken, a row a path
names that is not there is one 404 with one message, and a part of the app can be replaced in a test."""

import pytest
from fastapi.testclient import TestClient
from server_harness import TOKEN

from server.app import create_app
from server.dependencies import get_scheduler
from server.models import Job
from server.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, token=TOKEN, run_scheduler=False, health_interval=3600))
    yield app
    app.dependency_overrides.clear()
    app.state.bitmatch.db.dispose()


def add_job(app, status: str) -> int:
    with app.state.bitmatch.db.session() as session:
        job = Job(
            status=status,
            request={},
            codec_digests=[],
            image_digests=[],
            encoder_targets=[],
            decoder_targets=[],
        )
        session.add(job)
        session.flush()
        return job.id


def job_status(app, job_id: int) -> str:
    with app.state.bitmatch.db.session() as session:
        return session.get(Job, job_id).status


class WatchingScheduler:
    """Records what another connection sees of the job at the moment the scheduler is woken."""

    def __init__(self, app, job_id: int) -> None:
        self.app, self.job_id, self.seen = app, job_id, []

    def wake(self) -> None:
        self.seen.append(job_status(self.app, self.job_id))


def test_a_cancel_is_committed_before_the_scheduler_is_woken(app):
    job_id = add_job(app, "running")
    scheduler = WatchingScheduler(app, job_id)
    app.dependency_overrides[get_scheduler] = lambda: scheduler
    response = TestClient(app).post(f"/api/jobs/{job_id}/cancel", headers=AUTH)
    assert response.status_code == 202 and response.json()["status"] == "cancelling"
    assert scheduler.seen == ["cancelling"]


def test_a_refused_cancel_writes_nothing_and_wakes_nobody(app):
    job_id = add_job(app, "done")
    scheduler = WatchingScheduler(app, job_id)
    app.dependency_overrides[get_scheduler] = lambda: scheduler
    response = TestClient(app).post(f"/api/jobs/{job_id}/cancel", headers=AUTH)
    assert response.status_code == 409 and response.json()["detail"] == f"job {job_id} is already done"
    assert job_status(app, job_id) == "done" and scheduler.seen == []


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/jobs/7", "no job 7"),
        ("/api/jobs/7/matrix", "no job 7"),
        ("/api/jobs/7/export/csv", "no job 7"),
        ("/api/cells/7", "no cell 7"),
        ("/api/cells/7/history", "no cell 7"),
        ("/api/workers/7", "no worker 7"),
        ("/api/codecs/" + "a" * 64, "no codec " + "a" * 64),
        ("/api/codecs/" + "a" * 64 + "/archive", "no codec " + "a" * 64),
        ("/api/images/" + "b" * 64, "no image " + "b" * 64),
        ("/api/blobs/" + "c" * 64, "no blob " + "c" * 64),
    ],
)
def test_a_missing_row_is_one_404_with_one_message(app, path, detail):
    response = TestClient(app).get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "not-found", "detail": detail}


def test_a_bad_export_format_is_refused_before_the_job_is_looked_up(app):
    assert TestClient(app).get("/api/jobs/7/export/pdf").status_code == 422
