"""ASGI middleware of the API: request ids, access log and metrics, conditional GETs.

Pure ASGI (no ``BaseHTTPMiddleware``): nothing is buffered except the JSON bodies the ETag is
computed over, and streams (server-sent events) pass through untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quantbeat.infra.masking import mask_text
from quantbeat.infra.metrics import record_request

log = structlog.get_logger("quantbeat.api")

REQUEST_ID_HEADER = "x-request-id"
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


#: The largest request body accepted (bytes): a backtest spec or an indicator batch is a few
#: kB; anything near this is a mistake or an attack, refused before it is read into memory.
MAX_BODY = 1 << 20


class RequestContext:
    """Give every request an id (the client's ``X-Request-ID`` when it is a plain token of
    at most 64 characters that does not look like an API key, else a new one), bind it to
    every log line written while the request is served, return it in ``X-Request-ID``, say in
    ``Server-Timing`` (``app;dur=`` milliseconds) how long the server took until its answer
    started, log one access line and count the request in Prometheus by its route template.

    Also, for every request: a body over :data:`MAX_BODY` bytes is refused with 413 (by its
    ``Content-Length`` before anything is read, or once that much arrived); ``HEAD`` is
    served as ``GET`` without the body; an exception no handler answered becomes a 500
    problem carrying the request id (logged once, masked)."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.encode())
        fitting = given is not None and _GOOD_ID.match(given) and not given.startswith("qb_")
        request_id = given if fitting and given is not None else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        started_response = False
        head = scope.get("method") == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.body" and head:
                message = {**message, "body": b""}
            if message["type"] == "http.response.start":
                started_response = True
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
                length = _header(scope, b"content-length")
                if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                    await _too_large(scope, send_with_id)
                    return
                await self.app(scope, _limited(receive), send_with_id)
            except BodyTooLarge:
                if not started_response:
                    await _too_large(scope, send_with_id)
            except Exception as exc:
                log.error(
                    "api.unexpected_error",
                    path=scope.get("path"),
                    error=mask_text(f"{type(exc).__name__}: {exc}"),
                    exc_info=exc,
                )
                if not started_response:
                    await _problem(
                        scope,
                        send_with_id,
                        500,
                        "the server failed to answer this request; quote the request id "
                        "to the operator",
                        "internal-error",
                    )
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


class BodyTooLarge(Exception):
    """A request body grew past :data:`MAX_BODY` while it was read."""


def _limited(receive: Receive) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` once the body passes :data:`MAX_BODY`."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise BodyTooLarge
        return message

    return wrapped


async def _problem(scope: Scope, send: Send, status: int, detail: str, slug: str) -> None:
    """Send a problem-details answer from the middleware (no route involved)."""
    titles = {413: "Request too large", 500: "Internal error"}
    body = json.dumps(
        {
            "type": f"/problems/{slug}",
            "title": titles.get(status, "Error"),
            "status": status,
            "detail": detail,
            "instance": scope.get("path"),
            "request_id": scope.get("state", {}).get("request_id"),
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _too_large(scope: Scope, send: Send) -> None:
    await _problem(
        scope,
        send,
        413,
        f"the request body is larger than {MAX_BODY} bytes (or its Content-Length is not a number)",
        "request-too-large",
    )


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
            # Weak: gzip (outside this middleware) may send these bytes compressed.
            etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
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
    # Weak comparison (RFC 9110 §13.1.2), as If-None-Match asks for.
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag.removeprefix("W/") in tags
