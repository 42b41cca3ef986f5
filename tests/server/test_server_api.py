"""The coordinator's REST API without workers: authentication, validation, unknown ids, upload caps."""

import hashlib

import pytest
from server_harness import TOKEN, auth

from codec.images import encode_png
from codec.imagesets import known_answer_image

DIGEST = "ab" * 32


@pytest.fixture
def client(app_factory):
    return app_factory(max_upload_bytes=64 * 1024)


def png() -> bytes:
    return encode_png(known_answer_image())


WRITES = [
    ("post", "/api/jobs", {"json": {"codecs": [DIGEST], "images": "tiny"}}),
    ("post", "/api/jobs/1/cancel", {}),
    ("post", "/api/workers", {"json": {"url": "http://127.0.0.1:9"}}),
    ("post", "/api/workers/1/heartbeat", {}),
    ("post", "/api/workers/1/check", {}),
    ("put", f"/api/codecs/{DIGEST}", {"content": b"x"}),
    ("post", "/api/codecs", {"content": b"x"}),
    ("post", "/api/images", {"content": b"x"}),
    ("put", f"/api/images/{DIGEST}", {"content": b"x"}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
def test_unauthenticated_writes_get_401(client, method, path, kwargs):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = getattr(client, method)(path, headers=headers, **kwargs)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.json()["error"] == "unauthorized"


def test_a_coordinator_without_token_refuses_every_write(app_factory):
    client = app_factory(token=None)
    response = client.post("/api/images", content=png(), headers={"Authorization": "Bearer "})
    assert response.status_code == 401


@pytest.mark.parametrize("body", [b"{", b"not json", b"[1, 2", b'{"codecs": '])
def test_malformed_json_gets_422(client, body):
    response = client.post("/api/jobs", content=body, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"codecs": [], "images": "tiny"},
        {"codecs": ["nothex"], "images": "tiny"},
        {"codecs": [DIGEST], "images": "tiny", "repeat": 0},
        {"codecs": [DIGEST], "images": "tiny", "repeat": 11},
        {"codecs": [DIGEST], "images": "tiny", "unexpected": 1},
        {"codecs": [DIGEST], "images": []},
    ],
)
def test_invalid_job_requests_get_422(client, body):
    assert client.post("/api/jobs", json=body, headers=auth()).status_code == 422


def test_job_referring_to_unknown_things_gets_422_with_a_reason(client):
    response = client.post("/api/jobs", json={"codecs": [DIGEST], "images": "no-such-set"}, headers=auth())
    assert response.status_code == 422 and "unknown image set" in response.text
    response = client.post("/api/jobs", json={"codecs": [DIGEST], "images": "tiny"}, headers=auth())
    assert response.status_code == 422 and "no healthy" in response.text  # no worker registered


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/999",
        "/api/jobs/999/cells",
        "/api/jobs/999/matrix",
        "/api/jobs/999/rd-points",
        "/api/jobs/999/bd-rates",
        "/api/jobs/999/export/json",
        "/api/cells/999",
        "/api/workers/999",
        f"/api/codecs/{DIGEST}",
        f"/api/codecs/{DIGEST}/archive",
        f"/api/images/{DIGEST}",
        f"/api/blobs/{DIGEST}",
    ],
)
def test_unknown_ids_get_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not-found"


def test_unknown_ids_in_writes_get_404(client):
    assert client.post("/api/jobs/999/cancel", headers=auth()).status_code == 404
    assert client.post("/api/workers/999/heartbeat", headers=auth()).status_code == 404


def test_out_of_range_ids_are_rejected_not_crashing(client):
    assert client.get(f"/api/jobs/{2**70}").status_code == 422
    assert client.get("/api/jobs/0").status_code == 422


def test_oversized_uploads_get_413(client):
    big = b"\0" * (64 * 1024 + 1)
    for path in ("/api/images", f"/api/codecs/{DIGEST}", "/api/codecs"):
        method = client.put if path.startswith("/api/codecs/") else client.post
        response = method(path, content=big, headers=auth())
        assert response.status_code == 413, path
        assert response.json()["error"] == "too-large"

    def chunks():  # no Content-Length: the cap must hold while streaming
        for _ in range(65):
            yield b"\0" * 1024

    assert client.post("/api/images", content=chunks(), headers=auth()).status_code == 413


def test_image_upload_is_stored_once_by_digest(client):
    data = png()
    digest = hashlib.sha256(data).hexdigest()
    first = client.post("/api/images?name=kat", content=data, headers=auth())
    assert first.status_code == 201
    assert first.json()["digest"] == digest and first.json()["width"] == 48
    assert client.post("/api/images", content=data, headers=auth()).status_code == 200
    assert client.put(f"/api/images/{digest}", content=data, headers=auth()).status_code == 200
    assert client.put(f"/api/images/{DIGEST}", content=data, headers=auth()).status_code == 422
    assert client.get(f"/api/blobs/{digest}").content == data
    assert [i["digest"] for i in client.get("/api/images").json()] == [digest]


def test_bad_images_and_packages_get_422(client):
    assert client.post("/api/images", content=b"GIF89a garbage", headers=auth()).status_code == 422
    response = client.post("/api/codecs", content=b"not a tar archive", headers=auth())
    assert response.status_code == 422 and "bad codec package" in response.text


def test_codec_upload_is_verified_against_its_digest(app_factory, packages):
    client = app_factory()
    package = packages["int16"]
    wrong = client.put(f"/api/codecs/{DIGEST}", content=package.archive, headers=auth())
    assert wrong.status_code == 422
    created = client.put(f"/api/codecs/{package.digest}", content=package.archive, headers=auth())
    assert created.status_code == 201, created.text
    assert created.json()["precision"] == "int16"
    again = client.post("/api/codecs", content=package.archive, headers=auth())
    assert again.status_code == 200 and again.json()["digest"] == package.digest
    assert client.get(f"/api/codecs/{package.digest}/archive").content == package.archive


def test_image_sets_are_listed(client):
    sets = client.get("/api/image-sets").json()
    assert "tiny" in sets and len(sets["tiny"]) >= 2


def test_worker_registration_of_an_unreachable_worker_leaves_it_offline(client):
    response = client.post(
        "/api/workers", json={"url": "http://127.0.0.1:9", "name": "nowhere"}, headers=auth()
    )
    assert response.status_code == 201
    assert response.json()["status"] == "offline"
    device_id = response.json()["id"]
    assert client.post(f"/api/workers/{device_id}/heartbeat", headers=auth()).status_code == 200
    assert client.get(f"/api/workers/{device_id}").json()["last_heartbeat"] is not None


def test_openapi_is_served(client):
    spec = client.get("/openapi.json").json()
    assert "/api/jobs" in spec["paths"] and "/api/jobs/{job_id}/export/{fmt}" in spec["paths"]


def test_a_put_without_a_digest_is_a_404_naming_the_missing_digest(client):
    response = client.put("/api/codecs/", content=b"x", headers=auth(), follow_redirects=False)
    assert response.status_code == 404
    assert "digest is missing" in response.json()["detail"]
