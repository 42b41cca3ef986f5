"""Enlisting the local workers: each one waited for and registered with the coordinator, all at once, and
kept only when it passes the coordinator's known-answer test."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bitmatch.console import Console
from bitmatch.fleet import Fleet, Service, wait_until
from codec.vocabulary import DeviceStatus
from server.client import CoordinatorClient
from server.knownanswer import KNOWN_ANSWER_UNAVAILABLE

WORKER_START_S = 900.0  # emulated targets start Python, numpy and onnxruntime under qemu
HEALTH_CHECK_S = 600.0


def enlist_workers(
    fleet: Fleet, client: CoordinatorClient, worker_token: str, console: Console
) -> dict[str, bool]:
    """Wait for every worker and register it, all at once: each worker has a thread that waits for it to
    answer and then registers it, and the coordinator runs their health checks (known-answer tests) side by
    side. Returns the healthy targets in the fleet's order, each mapped to whether it is emulated."""
    deadline = time.monotonic() + WORKER_START_S
    with ThreadPoolExecutor(max_workers=max(1, len(fleet.workers)), thread_name_prefix="enlist") as threads:
        futures = {
            target: threads.submit(enlist, service, target, client, worker_token, deadline, console)
            for target, service in fleet.workers.items()
        }
        devices = {target: future.result() for target, future in futures.items()}
    healthy = {
        target: bool(device.get("emulated"))
        for target, device in devices.items()
        if device is not None and device["status"] == DeviceStatus.HEALTHY
    }
    if len(healthy) < len(fleet.workers):
        console.say(
            f"  {len(healthy)} of {len(fleet.workers)} workers passed the known-answer test; "
            "only those are healthy and give verdicts"
        )
    return healthy


def enlist(
    service: Service,
    target: str,
    client: CoordinatorClient,
    worker_token: str,
    deadline: float,
    console: Console,
) -> dict[str, Any] | None:
    """Wait for one worker to answer, then register it; its device as the coordinator reports it, or None
    when the worker exited or did not come up in time."""
    up = wait_until(lambda: service.ready() or not service.alive(), max(0.0, deadline - time.monotonic()))
    if not service.alive():
        console.say(f"  {target}: worker exited (log {service.log_path}):\n{service.log_tail(6)}")
        return None
    if not up:
        console.say(f"  {target}: worker not up within {WORKER_START_S:.0f} s (log {service.log_path})")
        return None
    device = register(client, service, target, worker_token)
    console.say(f"  {target}: {device['status']} ({device.get('health_detail') or ''})")
    return device


def register(client: CoordinatorClient, service: Service, target: str, token: str) -> dict[str, Any]:
    """Register a worker; the coordinator health-checks it (known-answer test) before answering."""
    device = client.register_worker(service.url, token=token, name=f"demo-{target}", target=target)
    deadline = time.monotonic() + HEALTH_CHECK_S
    # the coordinator loads its known answer in the background at start-up; until then devices stay unchecked
    while waiting_for_known_answer(device) and time.monotonic() < deadline:
        time.sleep(1.0)
        response = client.http.post(f"/api/workers/{device['id']}/check")
        response.raise_for_status()
        device = response.json()
    return device


def waiting_for_known_answer(device: dict[str, Any]) -> bool:
    """Unchecked, and not because the known-answer test cannot run at all (then waiting is pointless)."""
    detail = device.get("health_detail") or ""
    return device["status"] == DeviceStatus.UNCHECKED and KNOWN_ANSWER_UNAVAILABLE not in detail
