"""The compute process and its framing: a real `python -m worker.compute` spoken to over pipes."""

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from codec.images import decode_png
from codec.package import extract_archive
from codec.stages import STAGES
from worker.protocol import (
    PREFIX,
    ProtocolError,
    pack_blobs,
    read_frame,
    unpack_blobs,
    write_frame,
)


def test_frames_round_trip_and_end_cleanly():
    stream = io.BytesIO()
    write_frame(stream, {"op": "encode", "id": 1}, b"\x00\x01payload")
    write_frame(stream, {"op": "ping", "id": 2})
    stream.seek(0)
    assert read_frame(stream) == ({"op": "encode", "id": 1}, b"\x00\x01payload")
    assert read_frame(stream) == ({"op": "ping", "id": 2}, b"")
    assert read_frame(stream) is None


@pytest.mark.parametrize(
    "data",
    [
        PREFIX.pack(0, 0),  # empty header
        PREFIX.pack(2**31, 0),  # header length beyond the cap
        PREFIX.pack(4, 0) + b"[1]\n",  # header not an object
        PREFIX.pack(2, 0) + b"\xff\xfe",  # header not UTF-8
        PREFIX.pack(2, 10) + b"{}" + b"short",  # payload cut short
        PREFIX.pack(2, 0)[:5],  # prefix cut short
    ],
)
def test_malformed_frames_are_protocol_errors(data):
    with pytest.raises(ProtocolError):
        read_frame(io.BytesIO(data))


def test_blobs_pack_and_refuse_spans_outside_the_payload():
    index, payload = pack_blobs({"a": b"xyz", "b": b"", "c": b"12"})
    assert unpack_blobs(index, payload) == {"a": b"xyz", "b": b"", "c": b"12"}
    with pytest.raises(ProtocolError):
        unpack_blobs({"a": [2, 5]}, payload)
    with pytest.raises(ProtocolError):
        unpack_blobs({"a": "0:3"}, payload)


class ComputeProcess:
    def __init__(self, harness, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.compute", *args],
            cwd=harness.ROOT,
            env=harness.subprocess_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.next_id = 0
        self.hello = read_frame(self.process.stdout)[0]

    def call(self, header: dict, payload: bytes = b"") -> tuple[dict, dict[str, bytes]]:
        self.next_id += 1
        write_frame(self.process.stdin, {**header, "id": self.next_id}, payload)
        reply, data = read_frame(self.process.stdout)
        assert reply["id"] == self.next_id
        return reply, unpack_blobs(reply.get("blobs") or {}, data)

    def close(self) -> int:
        self.process.stdin.close()
        code = self.process.wait(timeout=60)
        self.process.stdout.close()
        return code


@pytest.fixture(scope="module")
def unpacked(packages, tmp_path_factory) -> dict[str, Path]:
    """The packages as directories, the way the worker's cache holds them: {digest: path}."""
    root = tmp_path_factory.mktemp("unpacked")
    for digest, archive in packages.values():
        extract_archive(archive, root / digest, expected_digest=digest)
    return {digest: root / digest for digest, _ in packages.values()}


@pytest.fixture(scope="module")
def compute(harness):
    process = ComputeProcess(harness, "--target", "cpu", "--runtime", "ort-cpu")
    yield process
    assert process.close() == 0


def test_hello_carries_the_fingerprint_of_the_process(compute):
    assert compute.hello["op"] == "hello" and compute.hello["ok"]
    assert "codec_import_error" not in compute.hello
    fp = compute.hello["fingerprint"]
    for key in (
        "target",
        "arch",
        "cpu_model",
        "cpu_flags",
        "os",
        "python",
        "numpy",
        "onnxruntime",
        "providers",
        "gpu",
        "emulator",
    ):
        assert key in fp, key
    assert fp["target"] == "cpu" and fp["emulator"] is None and fp["gpu"] is None
    assert (
        fp["arch"]
        == subprocess.run(
            [sys.executable, "-c", "import platform; print(platform.machine())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert "CPUExecutionProvider" in fp["providers"]


def test_bad_requests_get_typed_errors_and_the_process_keeps_serving(compute):
    reply, _ = compute.call({"op": "launch-missiles"})
    assert (reply["ok"], reply["error"], reply["category"]) == (False, "bad-request", "request")
    reply, _ = compute.call(
        {"op": "encode", "codec": "0" * 64, "codec_path": "/nonexistent", "shape": [2, 2, 3]}, b"\x00" * 5
    )
    assert (reply["error"], reply["category"]) == ("bad-request", "request")
    reply, _ = compute.call(
        {"op": "decode", "codec": "0" * 64, "codec_path": "/nonexistent/package"}, b"garbage"
    )
    assert (reply["ok"], reply["error"], reply["category"]) == (False, "bad-package", "package")
    assert compute.call({"op": "ping"})[0] == {"id": compute.next_id, "ok": True}


def test_encode_and_decode_in_the_compute_process(compute, packages, unpacked, png):
    digest, _ = packages["int16"]
    package_dir = unpacked[digest]
    image = decode_png(png)
    common = {"codec": digest, "codec_path": str(package_dir), "return_recon": True, "return_index_map": True}
    enc, enc_blobs = compute.call({"op": "encode", "shape": list(image.shape), **common}, image.tobytes())
    assert enc["ok"], enc
    assert set(enc["stage_hashes"]) == set(STAGES)
    assert enc["metrics"]["bpp"] > 0 and (enc["height"], enc["width"]) == image.shape[:2]
    assert np.frombuffer(enc_blobs["recon"], np.uint8).size == image.size
    levels = np.frombuffer(zlib.decompress(enc_blobs["index_map"]), "<i4").reshape(enc["index_map_shape"])
    assert levels.min() >= 0

    dec, dec_blobs = compute.call({"op": "decode", **common}, enc_blobs["bitstream"])
    assert dec["ok"], dec
    assert dec["stage_hashes"] == enc["stage_hashes"]
    assert dec_blobs["recon"] == enc_blobs["recon"] and dec_blobs["index_map"] == enc_blobs["index_map"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_a_damaged_bitstream_is_a_typed_bitstream_error(compute, packages, unpacked, png, damage):
    digest, _ = packages["int16"]
    common = {"codec": digest, "codec_path": str(unpacked[digest])}
    image = decode_png(png)
    _, blobs = compute.call({"op": "encode", "shape": list(image.shape), **common}, image.tobytes())
    data = bytearray(blobs["bitstream"])
    if damage == "garbage":
        data = bytearray(b"not a bitstream at all")
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x40
    reply, _ = compute.call({"op": "decode", **common}, bytes(data))
    assert reply["ok"] is False and reply["category"] == "bitstream", reply
    assert compute.call({"op": "ping"})[0]["ok"]


def test_a_garbled_stream_ends_the_process_with_a_protocol_error(harness):
    process = ComputeProcess(harness)
    process.process.stdin.write(struct.pack("<IQ", 3, 0) + b"{{{")
    process.process.stdin.flush()
    reply, _ = read_frame(process.process.stdout)
    assert reply["error"] == "protocol-error"
    assert process.close() == 0


NOISY_COMPUTE = """
import os
import worker.fingerprint as fingerprint
from worker.compute import main

collect = fingerprint.collect


def noisy_collect(*args, **kwargs):
    print("a library printing to stdout")
    os.write(1, b"and one writing to fd 1 directly\\n")
    return collect(*args, **kwargs)


fingerprint.collect = noisy_collect
main(["--target", "cpu"])
"""


def test_output_of_libraries_goes_to_stderr_not_into_the_frames(harness):
    process = subprocess.Popen(
        [sys.executable, "-c", NOISY_COMPUTE],
        cwd=harness.ROOT,
        env=harness.subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    hello, _ = read_frame(process.stdout)
    assert hello["op"] == "hello"
    write_frame(process.stdin, {"op": "info", "id": 1})
    reply, _ = read_frame(process.stdout)
    assert reply["ok"] and reply["fingerprint"]["target"] == "cpu"
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    assert process.stdout.read() == b""
    stderr = process.stderr.read().decode()
    assert "a library printing to stdout" in stderr and "and one writing to fd 1 directly" in stderr
    process.stdout.close()
    process.stderr.close()
