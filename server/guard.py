"""The request guard, in front of every route: credentials before bodies, bodies capped before parsing.

- A write (any method but GET, HEAD and OPTIONS) under /api needs the bearer token, checked from the
  headers before a byte of the body is read: an unauthenticated 30 MB body costs nothing.
- Upload routes (codec archives, images, a pull worker's results) stream into their handler, which caps them
  at the upload limit (dependencies.py `read_body`); every other body is JSON, capped at `max_json_bytes`,
  buffered here and refused when it is nested deeper than `MAX_JSON_DEPTH`.
- Every response carries basic security headers and every HTML page a Content-Security-Policy that allows
  only the coordinator's own origin. The API docs (Swagger UI, ReDoc: fastapi-offline's local assets) get a
  policy of their own: their one inline script allowed by its SHA-256, computed from the page as served.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from server.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
UPLOAD_PATHS = re.compile(
    r"^/api/(codecs(/[0-9a-f]{64})?|images(/[0-9a-f]{64})?|workers/\d+/tasks/\w+/\d+/result)$"
)
MAX_JSON_DEPTH = 64
INLINE_CHECK_BYTES = 64 * 2**10  # larger bodies are scanned in a thread, off the event loop
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
PAGE_POLICY = (
    b"content-security-policy",
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
)
DOC_PATHS = ("/docs", "/redoc")
# Swagger UI and ReDoc set inline styles from their scripts, and ReDoc runs its search in a blob: worker.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'"
)
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        send = _with_docs_policy(send) if path.startswith(DOC_PATHS) else _with_headers(send)
        if scope["method"] in READ_METHODS or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not self._authorized(headers.get(b"authorization", b"")):
            await _answer(
                send, 401, "unauthorized", "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")]
            )
            return
        if UPLOAD_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)  # streamed and capped by the handler
            return
        body = await _read_capped(receive, headers, self.settings.max_json_bytes)
        if body is None:
            await _answer(send, 413, "too-large", f"body over the {self.settings.max_json_bytes}-byte cap")
            return
        deep = await asyncio.to_thread(_too_deep, body) if len(body) > INLINE_CHECK_BYTES else _too_deep(body)
        if deep:
            await _answer(send, 400, "bad-request", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            return
        await self.app(scope, _replay(body), send)

    def _authorized(self, given: bytes) -> bool:
        expected = self.settings.token
        return bool(expected) and hmac.compare_digest(given, f"Bearer {expected}".encode())


async def _read_capped(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes | None:
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _too_deep(body: bytes) -> bool:
    """Nesting deeper than MAX_JSON_DEPTH, counted over brackets outside strings (a scan, not a parse)."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), *SECURITY_HEADERS]
            if _is_html(headers):
                headers.append(PAGE_POLICY)
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _with_docs_policy(send: Send) -> Send:
    """Holds an HTML docs page until its body is complete (a few kB), then sends it with a policy that
    allows exactly its inline scripts; anything else passes through `_with_headers`."""
    plain = _with_headers(send)
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and _is_html(message.get("headers", [])):
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await plain(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        headers = [*start.get("headers", []), *SECURITY_HEADERS, _docs_policy(body)]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _docs_policy(body: bytes) -> tuple[bytes, bytes]:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(body)
    )
    return (b"content-security-policy", DOCS_POLICY.format(hashes=hashes).encode())


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    return content_type.startswith(b"text/html")


async def _answer(
    send: Send, status: int, code: str, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
