"""Following submitted jobs to their end with their progress shown, and cancelling them (on Ctrl-C, a
timeout or a failure) so that a later coordinator on the same data directory does not resume them."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from server.client import CoordinatorClient, CoordinatorError
from server.progress import job_progress

CANCEL_WAIT_S = 15.0


def follow(client: CoordinatorClient, job_id: int, timeout: float) -> dict[str, Any]:
    """Wait for the job, showing its progress; on Ctrl-C or timeout cancel it (so that a later coordinator on
    this data directory does not resume it) and show what was done and what was cancelled."""
    shown = job_progress(job_id)
    try:
        return client.wait(job_id, on_progress=shown.update, poll=0.5, timeout=timeout)
    except (KeyboardInterrupt, TimeoutError):
        with contextlib.suppress(CoordinatorError, httpx.HTTPError, TimeoutError):
            client.cancel(job_id)
            client.wait(job_id, on_progress=shown.update, poll=0.5, timeout=CANCEL_WAIT_S)
        raise
    finally:
        shown.close()


def cancel_and_wait(client: CoordinatorClient, job_ids: list[int]) -> None:
    """Cancel the jobs and wait a little for each to end, so that a later coordinator on this data directory
    does not resume them; a job that already ended stays as it was."""
    for job_id in job_ids:
        with contextlib.suppress(CoordinatorError, httpx.HTTPError):
            client.cancel(job_id)  # 409 when it already ended
    for job_id in job_ids:
        with contextlib.suppress(CoordinatorError, httpx.HTTPError, TimeoutError):
            client.wait(job_id, poll=0.5, timeout=CANCEL_WAIT_S)
