"""What the encoder x decoder matrix tests share: the five local targets, provisioning them, and one matrix
run over real workers (tests/worker/test_matrix.py, test_matrix_lowcx.py)."""

import base64
import concurrent.futures

from worker.targets import get_target

TARGETS = ("cpu", "cpu-1t-noopt", "onnx-ref", "qemu-aarch64", "qemu-x86-sse")
WORKER_TIMEOUT_S = "900"


def provision(name: str) -> None:
    """Make the target runnable here (`bitmatch targets setup` does the same); a failure fails the test."""
    target = get_target(name)
    if target.check() is not None:
        target.setup()
    reason = target.check()
    assert reason is None, f"target {name} cannot run here after setup: {reason}"


def call(worker, op: str, digest: str, content: bytes) -> dict:
    """The worker's JSON answer; a decode that fails (a typed 4xx error) is an answer too."""
    response = worker.client.post(f"/v1/{op}", params={"codec": digest}, content=content)
    body = response.json()
    assert response.status_code == 200 or (op == "decode" and response.status_code == 422), (
        f"{op} on {worker.target}: {response.status_code} {response.text}\n{worker.log()}"
    )
    return body


def run_matrix(workers: dict, digest: str, png: bytes) -> tuple[dict, dict]:
    """Encode on every worker, then decode every bitstream on every worker (workers run in parallel)."""
    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        encoded = pool.map(lambda w: call(w, "encode", digest, png), workers.values())
        encodes = dict(zip(workers, encoded, strict=True))
        pairs = [(enc, dec) for enc in workers for dec in workers]
        decoded = pool.map(
            lambda p: call(workers[p[1]], "decode", digest, base64.b64decode(encodes[p[0]]["bitstream"])),
            pairs,
        )
        decodes = dict(zip(pairs, decoded, strict=True))
    return encodes, decodes
