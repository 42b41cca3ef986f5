"""Property-based API testing with schemathesis against /openapi.json: no request may produce a 5xx.

Runs twice: without credentials (every write must stop at 401) and with the bearer token (requests reach the
handlers). Registration with a token is left out: it would make the coordinator contact arbitrary generated
URLs; its validation is covered in test_server_api.py.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from server.app import create_app
from server.settings import Settings

TOKEN = "schemathesis-token"
DATA_DIR = Path(tempfile.mkdtemp(prefix="bitmatch-schemathesis-"))
APP = create_app(Settings(data_dir=DATA_DIR, token=TOKEN, max_upload_bytes=256 * 1024, health_interval=3600))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
FEW_EXAMPLES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@pytest.fixture(scope="module", autouse=True)
def _remove_data_dir():
    yield
    APP.state.bitmatch.db.dispose()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@schema.parametrize()
@FEW_EXAMPLES
def test_no_server_error_without_credentials(case):
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
    if case.method.upper() in ("POST", "PUT") and case.path != "/api/jobs/{job_id}/export/{fmt}":
        assert response.status_code in (400, 401, 404, 405, 413, 422), (case.method, case.formatted_path)


@schema.parametrize()
@FEW_EXAMPLES
def test_no_server_error_with_credentials(case):
    if case.method.upper() == "POST" and case.path == "/api/workers":
        return
    response = case.call(headers={**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
