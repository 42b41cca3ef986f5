"""The coordinator's side of the worker HTTP API: the server never imports worker code.

Failures are sorted into the categories the scheduler acts on differently:
transport (connection refused/reset, the worker died: retry with backoff, then another worker), busy (503:
retry),
timeout (its own verdict), rejected (a typed 4xx JSON error from the codec: a result, not an outage).
"""

import base64
import functools
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from worker.contract import DecodeResult, EncodeResult, parse_result


class WorkerCallError(Exception):
    kind = "error"

    def __init__(self, detail: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.kind
        self.status = status


class TransportError(WorkerCallError):
    kind = "transport"


class WorkerBusy(WorkerCallError):
    kind = "busy"


class WorkerTimeout(WorkerCallError):
    kind = "timeout"


class WorkerRejected(WorkerCallError):
    """A 4xx answer with the worker's JSON error code (e.g. a typed bitstream error)."""

    kind = "rejected"


class WorkerFailed(WorkerCallError):
    """A 5xx answer or a response the coordinator cannot read."""

    kind = "failed"


@dataclass
class CodecResult:
    """An encode or decode answer (worker/contract/results.py), validated, with its binary fields decoded."""

    model: EncodeResult | DecodeResult
    raw: dict[str, Any]  # the model as JSON: what the recorder stores and the maps are read from
    stage_hashes: dict[str, str]
    bitstream: bytes | None
    recon_png: bytes | None
    timings: dict[str, Any]
    metrics: dict[str, Any]

    @classmethod
    def from_json(cls, body: Any, kind: str | None = None) -> "CodecResult":
        """Validate a result JSON against the contract (`WorkerFailed` when it breaks it)."""
        if not isinstance(body, dict):
            raise WorkerFailed("the result is not a JSON object")
        kind = kind or ("encode" if "bitstream" in body else "decode")
        try:
            model = parse_result(kind, body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first.get("loc", ()))) or "result"
            raise WorkerFailed(f"the {kind} result breaks the contract at {where}: {first['msg']}") from None
        return cls.from_model(model)

    @classmethod
    def from_model(cls, model: EncodeResult | DecodeResult) -> "CodecResult":
        raw = model.model_dump(mode="json", exclude_none=True)
        bitstream = _b64(model.bitstream, "bitstream") if isinstance(model, EncodeResult) else None
        return cls(
            model=model,
            raw=raw,
            stage_hashes=dict(raw["stage_hashes"]),
            bitstream=bitstream,
            recon_png=_b64(model.recon_png, "recon_png"),
            timings=dict(model.timings),
            metrics=model.metrics.model_dump(),
        )


def _b64(value: str | None, name: str) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise WorkerFailed(f"field {name!r} is not valid base64: {exc}") from None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context (httpx's default, certifi's CA bundle) for every worker client: loading the bundle
    costs more CPU than a task's dispatch, and a coordinator makes a client per device and registration."""
    return httpx.create_ssl_context()


class WorkerClient:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            verify=_tls_context(),
        )
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def healthz(self) -> dict[str, Any]:
        return await self._call("GET", "/healthz")

    async def info(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/info")

    async def put_codec(self, digest: str, archive: bytes) -> dict[str, Any]:
        return await self._call(
            "PUT",
            f"/v1/codecs/{digest}",
            content=archive,
            headers={"Content-Type": "application/octet-stream"},
        )

    async def encode(
        self, digest: str, png: bytes, *, recon: bool = True, index_map: bool = False
    ) -> CodecResult:
        params = {"codec": digest, "return_recon": _flag(recon), "return_index_map": _flag(index_map)}
        body = await self._call(
            "POST",
            "/v1/encode",
            url=self._url("/v1/encode", params),
            content=png,
            headers={"Content-Type": "image/png"},
        )
        return CodecResult.from_json(body, "encode")

    async def decode(
        self,
        digest: str,
        bitstream: bytes,
        *,
        recon: bool = True,
        index_map: bool = False,
        allow_foreign: bool = False,
    ) -> CodecResult:
        params = {"codec": digest, "return_recon": _flag(recon), "return_index_map": _flag(index_map)}
        if allow_foreign:
            params["allow_foreign"] = "true"
        body = await self._call(
            "POST",
            "/v1/decode",
            url=self._url("/v1/decode", params),
            content=bitstream,
            headers={"Content-Type": "application/octet-stream"},
        )
        return CodecResult.from_json(body, "decode")

    def _url(self, path: str, params: dict[str, str]) -> httpx.URL:
        """The absolute URL of a call with its query, built by httpx once per path and parameters (building it
        costs about as much CPU as the rest of the request)."""
        key = (path, tuple(params.items()))
        found = self._urls.get(key)
        if found is None:
            found = self._urls[key] = self._client.build_request("GET", path, params=params).url
        return found

    async def _call(
        self, method: str, path: str, url: httpx.URL | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(method, url or path, **kwargs)
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise TransportError(f"connect timeout to {self.url}") from None
            raise WorkerTimeout(f"{method} {path} timed out: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        return _parse(response, f"{method} {path}")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _parse(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        code, detail = _error_fields(body, response)
        if response.status_code == 503:
            raise WorkerBusy(f"{what}: worker busy: {detail}", code=code, status=503)
        if response.status_code == 504:
            raise WorkerTimeout(f"{what}: compute timed out: {detail}", code="timeout", status=504)
        if response.status_code == 502:  # the compute process died and is being restarted
            raise TransportError(f"{what}: compute process died: {detail}", code=code, status=502)
        error = WorkerRejected if response.status_code < 500 else WorkerFailed
        raise error(f"{what}: {response.status_code} {detail}", code=code, status=response.status_code)
    if not isinstance(body, dict):
        raise WorkerFailed(f"{what}: answer is not a JSON object", status=response.status_code)
    return body


def _error_fields(body: Any, response: httpx.Response) -> tuple[str, str]:
    if isinstance(body, dict):
        code = body.get("error")
        detail = body.get("detail")
        code = str(code) if code else f"http-{response.status_code}"
        return code, str(detail if detail is not None else body)
    return f"http-{response.status_code}", response.text[:500]
