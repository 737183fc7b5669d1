"""ASGI middleware of the API: request ids, access log and metrics, conditional GETs.

Pure ASGI (no ``BaseHTTPMiddleware``): nothing is buffered except the JSON bodies the ETag is
computed over, and streams (server-sent events) pass through untouched.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quantbeat.infra.metrics import record_request

log = structlog.get_logger("quantbeat.api")

REQUEST_ID_HEADER = "x-request-id"
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContext:
    """Give every request an id (the client's ``X-Request-ID`` when it is a plain token of
    at most 64 characters, else a new one), bind it to every log line written while the
    request is served, return it in ``X-Request-ID``, say in ``Server-Timing`` (``app;dur=``
    milliseconds) how long the server took until its answer started, log one access line
    and count the request in Prometheus by its route template."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = given if given and _GOOD_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                # Time the server spent before answering (ms), for clients and benchmarks.
                took = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={took:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                template = self.template(scope)
                method = scope.get("method", "GET")
                record_request(method, template, status, seconds)
                log.info(
                    "api.request",
                    method=method,
                    route=template,
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                )

    def template(self, scope: Scope) -> str:
        """The matched route's path template with its router's prefix (``unmatched``: no
        route matched)."""
        template = getattr(scope.get("route"), "path", None)
        if not template:
            return "unmatched"
        if str(scope.get("path", "")).startswith(self.prefix) and not template.startswith(
            self.prefix
        ):
            return f"{self.prefix}{template}"
        return str(template)


class ConditionalGet:
    """On successful GETs of JSON under ``prefix``: a strong ``ETag`` (SHA-256 of the body,
    before compression; one the route set itself is kept, without buffering the body),
    ``304 Not Modified`` when ``If-None-Match`` names it, and
    ``Cache-Control: private, max-age=<max_age>`` (private: answers depend on the key)
    unless the route set a ``Cache-Control`` of its own."""

    def __init__(self, app: ASGIApp, *, prefix: str, max_age: int) -> None:
        self.app = app
        self.prefix = prefix
        self.cache_control = f"private, max-age={max_age}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("GET", "HEAD")
            or not str(scope.get("path", "")).startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []
        passing = False
        not_modified = False

        async def buffered(message: Message) -> None:
            nonlocal start, passing, not_modified
            if not_modified:
                return  # 304 sent: the route's body is dropped
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                if message["status"] != 200 or not content_type.startswith(b"application/json"):
                    passing = True
                    await send(message)
                    return
                start = dict(message)
                given = dict(start.get("headers", ())).get(b"etag")
                if given is not None:  # the route made its ETag (quantbeat.api.readcache)
                    passing = True
                    headers = [(k, v) for k, v in start.get("headers", ()) if k != b"cache-control"]
                    headers.append((b"cache-control", self.cache_control))
                    if _matches(_header(scope, b"if-none-match"), given.decode("latin-1")):
                        headers = [(k, v) for k, v in headers if k != b"content-length"]
                        await send(
                            {"type": "http.response.start", "status": 304, "headers": headers}
                        )
                        await send({"type": "http.response.body", "body": b""})
                        not_modified = True
                        return
                    await send({**start, "headers": headers})
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            body = b"".join(chunks)
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            given = list(start.get("headers", ()))
            # A route that says how its answer may be cached (e.g. ``no-cache`` for a run's
            # live state) keeps its own Cache-Control.
            own = [v for k, v in given if k == b"cache-control"]
            headers = [
                (k, v) for k, v in given if k not in (b"etag", b"cache-control", b"content-length")
            ]
            headers += [
                (b"etag", etag.encode()),
                (b"cache-control", own[0] if own else self.cache_control),
            ]
            if _matches(_header(scope, b"if-none-match"), etag):
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags
