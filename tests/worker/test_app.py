"""The worker's HTTP API against a real `bitmatch worker --target cpu` process on loopback."""

import base64
import concurrent.futures
import shlex
import struct
import sys
import time
import zlib

import httpx
import numpy as np
import pytest

from codec.images import decode_png
from codec.stages import STAGES
from tests.token_files import token_file

MAX_BODY_MB = 1
BITSTREAM_ERRORS = {
    "bad-magic",
    "unsupported-version",
    "wrong-codec",
    "truncated",
    "crc-mismatch",
    "symbol-out-of-range",
    "bad-length",
    "corrupt-stream",
    "bitstream-error",
}


@pytest.fixture(scope="module")
def worker(harness, packages, tmp_path_factory):
    process = harness.WorkerProcess("cpu", tmp_path_factory.mktemp("app"), "--max-body-mb", str(MAX_BODY_MB))
    process.wait_ready()
    for digest, archive in packages.values():
        assert process.upload(archive, digest).status_code == 201
    yield process
    process.stop()


@pytest.fixture(scope="module")
def int16_encoded(worker, packages, png) -> dict:
    digest, _ = packages["int16"]
    response = worker.client.post(
        "/v1/encode",
        params={"codec": digest, "return_recon": "true", "return_index_map": "true"},
        content=png,
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str | set[str] | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    if code is not None:
        assert body["error"] in ({code} if isinstance(code, str) else code), body
    return body


def test_healthz_needs_no_token(worker):
    assert httpx.get(f"{worker.url}/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}, {"Authorization": "Bearer"}],
)
@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1/info"),
        ("GET", "/v1/status"),
        ("GET", "/v1/codecs"),
        ("PUT", "/v1/codecs/" + "0" * 64),
        ("POST", "/v1/encode"),
        ("POST", "/v1/decode?codec=" + "0" * 64),
    ],
)
def test_every_v1_call_needs_the_bearer_token(worker, headers, method, path):
    response = httpx.request(method, worker.url + path, headers=headers, content=b"x")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_info_is_the_fingerprint_of_the_compute_process(worker):
    info = worker.client.get("/v1/info").json()
    assert info["target"] == "cpu" and info["emulator"] is None and info["gpu"] is None
    for key in ("arch", "cpu_model", "cpu_flags", "os", "python", "numpy", "onnxruntime", "providers"):
        assert info[key], key
    replay = {"target": "cpu", "runtime": "ort-cpu", "cpu": None, "threads_env": info["threads_env"]}
    assert info["replay"] == replay  # what a repro bundle says of this side (server/dashboard/repro.py)
    status = worker.client.get("/v1/status").json()
    assert status["compute_running"] and status["compute_pid"] not in (None, worker.process.pid)


def test_packages_are_cached_by_digest(worker, packages):
    digest, archive = packages["int16"]
    again = worker.upload(archive, digest)
    assert (again.status_code, again.json()) == (200, {"digest": digest, "cached": True})
    assert sorted(worker.client.get("/v1/codecs").json()["codecs"]) == sorted(d for d, _ in packages.values())
    assert worker.client.get(f"/v1/codecs/{digest}").json() == {"digest": digest, "cached": True}
    assert_error(worker.client.get("/v1/codecs/" + "1" * 64), 404, "unknown-codec")


def test_an_upload_under_the_wrong_digest_is_refused_and_not_kept(worker, packages):
    _, archive = packages["int16"]
    wrong = "ab" * 32
    assert_error(worker.upload(archive, wrong), 422, "bad-package")
    assert wrong not in worker.client.get("/v1/codecs").json()["codecs"]
    for malformed in ("xyz", "AB" * 32, "0" * 63):
        assert_error(worker.upload(archive, malformed), 400, "bad-digest")


def test_a_garbage_archive_is_refused(worker):
    assert_error(worker.upload(b"\x00garbage" * 100, "cd" * 32), 422, "bad-package")


def test_oversized_bodies_get_413(worker, packages):
    too_big = bytes(int(1.5 * MAX_BODY_MB * 2**20))
    assert_error(worker.upload(too_big, "ef" * 32), 413, "too-large")
    digest, _ = packages["int16"]
    for op in ("encode", "decode"):
        response = worker.client.post(f"/v1/{op}", params={"codec": digest}, content=too_big)
        assert_error(response, 413, "too-large")
    assert worker.alive()


def test_encode_returns_hashes_metrics_bitstream_recon_and_index_map(int16_encoded, png):
    body = int16_encoded
    assert set(body["stage_hashes"]) == set(STAGES)
    assert body["metrics"]["bpp"] > 0 and body["metrics"]["psnr"] > 0
    assert body["timings"]["compute_total"] > 0 and body["timings"]["request_total"] > 0
    image = decode_png(png)
    assert (body["height"], body["width"]) == image.shape[:2]
    bitstream = base64.b64decode(body["bitstream"])
    assert bitstream[:4] == b"BMC\x1a"
    recon = decode_png(base64.b64decode(body["recon_png"]))
    assert recon.shape == image.shape
    index_map = body["index_map"]
    assert (index_map["dtype"], index_map["byteorder"]) == ("int32", "little")
    assert index_map["compression"] == "zlib"
    levels = np.frombuffer(zlib.decompress(base64.b64decode(index_map["data"])), "<i4")
    assert levels.size == int(np.prod(index_map["shape"])) and levels.min() >= 0


def test_decode_reproduces_the_encoders_stages(worker, packages, int16_encoded):
    digest, _ = packages["int16"]
    params = {"codec": digest, "return_recon": "true", "return_index_map": "true"}
    response = worker.client.post(
        "/v1/decode", content=base64.b64decode(int16_encoded["bitstream"]), params=params
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stage_hashes"] == int16_encoded["stage_hashes"]
    assert (
        decode_png(base64.b64decode(body["recon_png"])).tobytes()
        == decode_png(base64.b64decode(int16_encoded["recon_png"])).tobytes()
    )
    assert body["index_map"] == int16_encoded["index_map"]
    assert "bitstream" not in body


def damaged(bitstream: bytes, how: str) -> bytes:
    data = bytearray(bitstream)
    if how == "truncated":
        return bytes(data[: len(data) * 2 // 3])
    if how == "flipped":
        data[len(data) // 2] ^= 0x10
        return bytes(data)
    return b"\x89PNG definitely not a bitstream" * 3


@pytest.mark.parametrize("how", ["garbage", "truncated", "flipped"])
def test_a_damaged_bitstream_gets_its_typed_error_as_json(worker, packages, int16_encoded, how):
    digest, _ = packages["int16"]
    data = damaged(base64.b64decode(int16_encoded["bitstream"]), how)
    response = worker.client.post("/v1/decode", params={"codec": digest}, content=data)
    assert_error(response, 422, BITSTREAM_ERRORS)
    assert worker.alive()


def test_a_bitstream_of_another_codec_is_wrong_codec(worker, packages, int16_encoded):
    float_digest, _ = packages["float"]
    data = base64.b64decode(int16_encoded["bitstream"])
    assert_error(
        worker.client.post("/v1/decode", params={"codec": float_digest}, content=data), 422, "wrong-codec"
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming a size, with no pixel data after it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        png_header_only(70_000, 70_000),
        png_header_only(16, 16),
    ],
)
def test_a_garbage_image_is_a_400(worker, packages, body):
    digest, _ = packages["int16"]
    assert_error(worker.client.post("/v1/encode", params={"codec": digest}, content=body), 400, "bad-image")


def test_malformed_requests_get_4xx_json(worker, packages, png):
    digest, _ = packages["int16"]
    client = worker.client
    assert_error(client.post("/v1/encode", content=png), 400, "bad-request")
    assert_error(client.post("/v1/encode", params={"codec": "nothex"}, content=png), 400, "bad-digest")
    assert_error(client.post("/v1/encode", params={"codec": "2" * 64}, content=png), 404, "unknown-codec")
    assert_error(
        client.post("/v1/encode", params={"codec": digest, "return_recon": "perhaps"}, content=png),
        400,
        "bad-request",
    )
    assert_error(client.get("/v1/nowhere"), 404, "not-found")
    assert_error(client.delete("/v1/encode"), 405, "method-not-allowed")


def test_the_worker_keeps_serving_after_bad_requests(worker, packages, png, int16_encoded):
    digest, _ = packages["int16"]
    response = worker.client.post("/v1/encode", params={"codec": digest}, content=png)
    assert response.status_code == 200
    assert response.json()["stage_hashes"] == int16_encoded["stage_hashes"]
    assert worker.client.get("/v1/status").json()["starts"] == 1  # no bad request restarted the codec


# A compute process that answers decodes at once, except "hang" (never answers) and "die" (exits).
STUB_COMPUTE = """
import os, sys, time
from worker.protocol import read_frame, write_frame
out = os.fdopen(os.dup(1), "wb")
write_frame(out, {"op": "hello", "ok": True, "fingerprint": {"target": "stub", "arch": "none"}})
while (frame := read_frame(sys.stdin.buffer)) is not None:
    header, payload = frame
    if payload == b"hang":
        time.sleep(3600)
    if payload == b"die":
        os._exit(3)
    write_frame(out, {"id": header["id"], "ok": True, "height": 1, "width": 1, "stage_hashes": {},
                      "metrics": {}, "timings": {}, "blobs": {}})
"""


@pytest.fixture
def stub_worker(harness, packages, tmp_path):
    stub = tmp_path / "stub_compute.py"
    stub.write_text(STUB_COMPUTE)
    command = shlex.join([sys.executable, str(stub)])
    process = harness.WorkerProcess(
        "cpu", tmp_path, "--queue", "1", "--timeout", "10", "--compute-command", command
    )
    process.wait_ready()
    digest, archive = packages["int16"]
    assert process.upload(archive, digest).status_code == 201
    yield process, digest
    process.stop()


@pytest.mark.slow
def test_full_queue_503_timeout_504_and_crash_502_each_restart_the_compute_process(stub_worker):
    worker, digest = stub_worker

    def decode(payload: bytes) -> httpx.Response:
        return worker.client.post("/v1/decode", params={"codec": digest}, content=payload)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        hanging = pool.submit(decode, b"hang")
        while worker.client.get("/v1/status").json()["pending"] < 1:
            time.sleep(0.05)
        assert_error(decode(b"ok"), 503, "queue-full")
        assert_error(hanging.result(), 504, "timeout")
    assert decode(b"ok").status_code == 200
    assert_error(decode(b"die"), 502, "compute-died")
    assert decode(b"ok").status_code == 200
    status = worker.client.get("/v1/status").json()
    assert (status["timeouts"], status["deaths"], status["starts"]) == (1, 1, 3)
    assert worker.alive()


def test_a_worker_whose_compute_process_cannot_start_exits_with_the_reason(harness, tmp_path):
    process = harness.WorkerProcess("cpu", tmp_path, "--compute-command", "false")
    try:
        assert process.process.wait(timeout=120) != 0
        assert "did not start" in process.log()
    finally:
        process.stop()


def test_an_unknown_target_is_refused_before_anything_starts(harness, tmp_path):
    result = harness.run_bitmatch_worker(
        "--target", "pdp-11", "--token-file", token_file("t"), "--cache-dir", str(tmp_path)
    )
    assert result.returncode == 2 and "unknown target 'pdp-11'" in result.stderr
