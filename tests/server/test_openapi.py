"""The coordinator's /openapi.json documents what clients get: a response schema (or a declared non-JSON media
type) for every success status, tags on every route, error responses with the app's error body, and no
reference to a schema that is not there."""

import json
import re
from typing import Any

import pytest
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from server_harness import TOKEN

from server.app import create_app
from server.dashboard.router import router as dashboard_router
from server.routers import blobs, cells, codecs, exports, images, imagesets, jobs, pull, workers
from server.schemas.base import ErrorBody
from server.settings import Settings

JSON = "application/json"
API_ROUTERS = (jobs, cells, pull, workers, codecs, images, imagesets, blobs, exports)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = create_app(
        Settings(
            data_dir=tmp_path_factory.mktemp("openapi"),
            token=TOKEN,
            run_scheduler=False,
            health_interval=3600,
        )
    )
    yield app
    app.state.bitmatch.db.dispose()


@pytest.fixture(scope="module")
def spec(app) -> dict[str, Any]:
    return TestClient(app).get("/openapi.json").json()


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op) for path, ops in spec["paths"].items() for method, op in ops.items()
    ]


def test_every_success_status_says_what_the_body_is(spec):
    for name, op in operations(spec):
        successes = {status: r for status, r in op["responses"].items() if status.startswith("2")}
        assert successes, name
        for status, response in successes.items():
            if status == "204":
                continue
            content = response.get("content")
            assert content, (name, status)
            for media, body in content.items():
                if media == JSON:
                    assert body.get("schema"), (name, status, "JSON without a schema")


def test_json_successes_are_typed_not_free_form(spec):
    """A response schema names its fields (a model, or a list or map of one), never a bare object."""
    free_form = []
    for name, op in operations(spec):
        for status, response in op["responses"].items():
            schema = response.get("content", {}).get(JSON, {}).get("schema")
            bare = (
                schema is not None and schema.get("type") == "object" and "additionalProperties" not in schema
            )
            if status.startswith("2") and bare:
                free_form.append((name, status))
    assert free_form == []


def test_every_route_carries_tags(spec):
    for module in API_ROUTERS:
        assert module.router.prefix.startswith("/api/") and module.router.tags, module.__name__
        for route in module.router.routes:
            assert isinstance(route, APIRoute) and route.tags, (module.__name__, route.path)
    for route in dashboard_router.routes:
        assert isinstance(route, APIRoute) and route.tags == ["dashboard"], route.path
    for name, op in operations(spec):
        assert op.get("tags"), name


def test_errors_are_documented_with_the_error_body(spec):
    for name, op in operations(spec):
        errors = {status: r for status, r in op["responses"].items() if status[0] == "4"}
        if name not in ("GET /api/image-sets", "GET /healthz"):  # nothing to refuse
            assert errors, name
        for status, response in errors.items():
            schema = response["content"][JSON]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (name, status)


def test_every_referenced_schema_exists(spec):
    names = set(spec["components"]["schemas"])
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert referenced and referenced <= names, referenced - names


def test_error_bodies_the_app_returns_match_the_documented_model(app):
    client = TestClient(app)
    responses = [
        client.get("/api/jobs/424242"),  # 404
        client.post("/api/jobs", json={}),  # 401
        client.post("/api/jobs", json={}, headers={"Authorization": f"Bearer {TOKEN}"}),  # 422 (validation)
        client.get("/api/jobs/0"),  # 422 (path)
        client.post("/api/codecs", headers={"Authorization": f"Bearer {TOKEN}"}),  # 400 (empty body)
    ]
    assert [r.status_code for r in responses] == [404, 401, 422, 422, 400]
    for response in responses:
        ErrorBody.model_validate(response.json())


def test_the_dashboard_router_declares_html_and_file_responses():
    for route in dashboard_router.routes:
        assert not route.include_in_schema, route.path  # the API for programs is /api
        assert route.response_class in (HTMLResponse, Response), route.path
