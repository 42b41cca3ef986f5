"""A small synchronous client of the coordinator's REST API, for `bitmatch demo` and scripts.

Every method is one HTTP call (except `wait`, which polls); errors raise `CoordinatorError` with the server's
JSON error code and detail.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from codec.vocabulary import JobStatus


class CoordinatorError(Exception):
    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


FINAL_JOB_STATES = tuple(status for status in JobStatus if not status.is_active)


class CoordinatorClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "CoordinatorClient":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": f"http-{response.status_code}", "detail": response.text[:500]}
            raise CoordinatorError(response.status_code, body.get("error", ""), body.get("detail"))
        return response.json()

    # --- inputs -------------------------------------------------------------------------------------------

    def upload_codec_archive(self, archive: bytes) -> dict[str, Any]:
        return self._json("POST", "/api/codecs", content=archive)

    def upload_codec(self, package_path: str | Path) -> dict[str, Any]:
        """Upload a package directory or archive (a directory is archived deterministically first)."""
        from codec.package import CodecPackage, archive_bytes

        return self.upload_codec_archive(archive_bytes(CodecPackage.load(package_path)))

    def upload_image(self, png: bytes, name: str | None = None) -> dict[str, Any]:
        return self._json("POST", "/api/images", content=png, params={"name": name} if name else None)

    def register_worker(
        self, url: str, token: str | None = None, name: str | None = None, target: str | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in {"url": url, "token": token, "name": name, "target": target}.items() if v}
        return self._json("POST", "/api/workers", json=body)

    def workers(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/workers")

    # --- jobs ---------------------------------------------------------------------------------------------

    def submit(
        self,
        codecs: list[str],
        images: str | list[str],
        encoders: list[str] | None = None,
        decoders: list[str] | None = None,
        repeat: int = 1,
        *,
        series: str | None = None,
        label: str | None = None,
        decode_with: dict[str, str] | None = None,
    ) -> int:
        body: dict[str, Any] = {
            "codecs": codecs,
            "images": images,
            "encoders": encoders or ["*"],
            "decoders": decoders or ["*"],
            "repeat": repeat,
        }
        extra = {"series": series, "label": label, "decode_with": decode_with}
        body.update({key: value for key, value in extra.items() if value})
        return self._json("POST", "/api/jobs", json=body)["id"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"/api/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"/api/jobs/{job_id}/cancel")

    def wait(
        self,
        job_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; `on_progress` gets each summary. Raises TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            summary = self.job(job_id)
            if on_progress is not None:
                on_progress(summary)
            if summary["status"] in FINAL_JOB_STATES:
                return summary
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {summary['status']} after {timeout} s")
            time.sleep(poll)

    def matrix(self, job_id: int) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/jobs/{job_id}/matrix")

    def cells(self, job_id: int) -> list[dict[str, Any]]:
        return self._json("GET", f"/api/jobs/{job_id}/cells")

    def export(self, job_id: int, fmt: str) -> str:
        response = self.http.get(f"/api/jobs/{job_id}/export/{fmt}")
        response.raise_for_status()
        return response.text
