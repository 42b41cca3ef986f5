"""Pull mode: a worker that calls out to the coordinator, claims tasks, renews their leases, posts results.

    bitmatch worker --target T --coordinator URL --token COORDINATOR_TOKEN

For devices nobody can call: a phone, a board behind NAT, a CI runner. The worker registers with its target
and fingerprint, long-polls for a task, fetches what it needs by digest (the codec archive, the image or
the bitstream), runs it on the same compute process the HTTP front uses (worker/execute.py), renews the
lease while it works and posts the same result JSON an HTTP worker would answer. Its first task is the
known-answer test. It needs no inbound port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

from worker.execute import ApiError, CodecStore, call, decode_header, decode_image, encode_header, result_body
from worker.supervisor import ComputeSupervisor

log = logging.getLogger("bitmatch.worker.pull")
RETRY_S = 5.0


class CoordinatorGone(Exception):
    """The coordinator refuses this worker for good (quarantined, or the token is wrong)."""


class PullWorker:
    def __init__(
        self,
        coordinator: str,
        token: str,
        name: str,
        target: str,
        supervisor: ComputeSupervisor,
        store: CodecStore,
    ) -> None:
        self.coordinator, self.name, self.target = coordinator.rstrip("/"), name, target
        self.headers = {"Authorization": f"Bearer {token}"}
        self.supervisor, self.store = supervisor, store
        self.device_id: int | None = None
        self.wait_s, self.lease_s = 20.0, 30.0

    async def run(self) -> None:
        await self.supervisor.start()
        timeout = httpx.Timeout(120.0, connect=10.0)
        async with httpx.AsyncClient(
            base_url=self.coordinator, headers=self.headers, timeout=timeout
        ) as client:
            while True:
                try:
                    if self.device_id is None:
                        await self._register(client)
                    task = await self._claim(client)
                    if task is not None:
                        await self._handle(client, task)
                except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                    log.warning("coordinator %s: %s; again in %g s", self.coordinator, exc, RETRY_S)
                    await asyncio.sleep(RETRY_S)

    async def _register(self, client: httpx.AsyncClient) -> None:
        body = {"name": self.name, "target": self.target, "fingerprint": self.supervisor.fingerprint}
        response = await client.post("/api/workers/pull", json=body)
        _refused(response)
        response.raise_for_status()
        device = response.json()
        self.device_id, self.wait_s, self.lease_s = (
            device["id"],
            device["wait_seconds"],
            device["lease_seconds"],
        )
        log.info("registered with %s as device %s (%s)", self.coordinator, self.device_id, device["status"])

    async def _claim(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        response = await client.post(
            f"/api/workers/{self.device_id}/claim", params={"wait": self.wait_s}, timeout=self.wait_s + 60
        )
        if response.status_code == 404:  # the coordinator forgot us (a new database): register again
            self.device_id = None
            return None
        _refused(response)
        response.raise_for_status()
        return None if response.status_code == 204 else response.json()

    async def _handle(self, client: httpx.AsyncClient, task: dict[str, Any]) -> None:
        await self._ensure_codec(client, task["codec"], task["archive"])
        if task["kind"] == "check":
            task["_bitstream"] = await self._blob(client, task["bitstream"])
            task["_image"] = await self._blob(client, task["image"])
        if task["kind"] == "check":
            try:
                body = await self._known_answer(task)
            except ApiError as exc:  # it cannot even run the test: the coordinator quarantines it
                log.error("known-answer test failed to run: %s", exc.detail)
                body = {"decode": {}, "encode": {}, "self_decode": {}}
            response = await client.post(f"/api/workers/{self.device_id}/known-answer", json=body)
            response.raise_for_status()
            log.info(
                "known-answer test: %s (%s)", response.json()["status"], response.json()["health_detail"]
            )
            return
        renewing = asyncio.create_task(self._renew(client, task))
        try:
            body = {"lease": task["lease"], **await self._run(client, task)}
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        path = f"/api/workers/{self.device_id}/tasks/{task['kind']}/{task['id']}/result"
        response = await client.post(path, json=body)
        if response.status_code == 409:
            log.info("%s %s: %s", task["kind"], task["id"], response.json().get("detail"))
            return
        response.raise_for_status()

    async def _run(self, client: httpx.AsyncClient, task: dict[str, Any]) -> dict[str, Any]:
        """{"result": ...} or {"error": {"status", "error", "detail"}}: what the HTTP front would answer."""
        payload = await self._blob(client, task["payload"])
        started = time.perf_counter()
        try:
            if task["kind"] == "encode":
                image = await asyncio.to_thread(decode_image, payload)
                header, data = encode_header(self.store, task["codec"], image, True, True), image.tobytes()
            else:
                foreign = bool(task.get("allow_foreign"))
                header, data = decode_header(self.store, task["codec"], True, True, foreign), payload
            reply = await call(self.supervisor, header, data)
            result = await result_body(
                self.target, task["codec"], reply, started, self.supervisor.fingerprint
            )
            return {"result": result.model_dump(mode="json", exclude_none=True)}
        except ApiError as exc:
            return {"error": {"status": exc.status, "error": exc.code, "detail": exc.detail}}

    async def _renew(self, client: httpx.AsyncClient, task: dict[str, Any]) -> None:
        path = f"/api/workers/{self.device_id}/tasks/{task['kind']}/{task['id']}/renew"
        while True:
            await asyncio.sleep(self.lease_s / 3)
            with contextlib.suppress(httpx.TransportError):
                response = await client.post(path, json={"lease": task["lease"]})
                if response.status_code == 409:  # gone to another device: the result will be refused
                    return

    async def _known_answer(self, task: dict[str, Any]) -> dict[str, Any]:
        """Decode the recorded bitstream, encode the image, decode that bitstream: the three hash sets."""
        digest = task["codec"]
        recorded, png = task["_bitstream"], task["_image"]
        image = await asyncio.to_thread(decode_image, png)
        decoded = await call(self.supervisor, decode_header(self.store, digest, False, False), recorded)
        encoded = await call(
            self.supervisor, encode_header(self.store, digest, image, False, False), image.tobytes()
        )
        own = await call(
            self.supervisor, decode_header(self.store, digest, False, False), encoded.blobs["bitstream"]
        )
        return {
            "decode": decoded.header["stage_hashes"],
            "encode": encoded.header["stage_hashes"],
            "self_decode": own.header["stage_hashes"],
        }

    async def _ensure_codec(self, client: httpx.AsyncClient, digest: str, archive_sha: str) -> None:
        if not self.store.has(digest):
            archive = await self._blob(client, archive_sha)
            await asyncio.to_thread(self.store.put, digest, archive)

    async def _blob(self, client: httpx.AsyncClient, digest: str) -> bytes:
        response = await client.get(f"/api/blobs/{digest}")
        response.raise_for_status()
        return response.content


def _refused(response: httpx.Response) -> None:
    if response.status_code in (401, 403, 409):
        detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else ""
        raise CoordinatorGone(f"the coordinator refuses this worker ({response.status_code}): {detail}")
