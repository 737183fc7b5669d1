"""A local HTTP server speaking enough of the Gemini REST API for tests, with scriptable
failures and a request log (the server's clock is the judge of the request rate).

Endpoints
---------
``POST /{version}/models/{model}:generateContent``
    What google-genai calls (3.4.0 with an API key: ``/v1/models/{model}:generateContent``;
    any version segment is accepted). Answers per the current script (below) with Gemini's JSON:
    ``{"candidates":[{"content":{"parts":[{"text":"<json>"}],"role":"model"},
    "finishReason":"STOP","index":0}],"usageMetadata":{...},"modelVersion":model}``, or a
    Google-style error body ``{"error":{"code":429,"message":"...","status":"..."}}``.
``GET /_log``
    ``{"count": n, "requests": [entry, ...]}``; ``?since=SEQ`` only entries with a larger
    ``seq``; ``?bodies=1`` includes each request's JSON body. An entry:
    ``{"seq", "t_monotonic", "t_wall", "method", "path", "model", "api_key", "status",
    "mode"}`` (``t_monotonic`` is this server process's ``time.monotonic()`` at arrival,
    ``t_wall`` its ``time.time()``; ``status`` is what was — or, for a client that timed out,
    would have been — sent).
``DELETE /_log``
    Clears the log.
``POST /_script``
    Replaces the behaviour; body ``{"queue": [step, ...], "default": step}`` (both optional:
    queue ``[]``, default ``{"mode": "ok"}``) or a single step. Answers ``{"ok": true}``.
``GET /_script``
    The current script (remaining queue and default).
``POST /_reset``
    Clears the log and restores the default script (``ok`` forever).
``GET /_health``
    ``{"ok": true}``.

Script steps (JSON objects; the helper functions below build them)
-----------------------------------------------------------------
Each ``generateContent`` request takes the next step from ``queue``; when the queue is empty,
``default`` answers (and keeps answering). Every step may carry ``"delay": seconds`` (sleep
before answering — longer than the client's timeout makes it time out).

* ``{"mode": "ok", "analysis": {...}, "usage": {"promptTokenCount": …}}`` — a valid Analysis
  (overridable fields); usage defaults to len(prompt)//4, len(text)//4 and their sum. With
  ``"answer": {...}`` instead, exactly that object (an answer of another schema).
* ``{"mode": "status", "status": 429, "retry_after": 2, "message": "…", "google_status": …}``
  — an error with a Google-style body; ``Retry-After`` header when ``retry_after`` is set.
* ``{"mode": "malformed"}`` — HTTP 200, the text part is not JSON.
* ``{"mode": "schema_violation", "field": "news_score", "value": 7}`` — HTTP 200, valid JSON
  that breaks the schema.
* ``{"mode": "blocked", "finish_reason": "SAFETY"}`` — a candidate without content.
* ``{"mode": "prompt_blocked", "block_reason": "SAFETY"}`` — no candidate, promptFeedback.
* ``{"mode": "storm", "first": K, "probability": p, "seed": s, "retry_after": 2}`` — 429 with
  ``Retry-After`` for the first ``K`` requests answered by this step (counted from when the
  script was set), then with probability ``p`` (a ``random.Random(seed)`` drawn once per
  request, in arrival order), otherwise ``ok``.
* ``{"mode": "raw", "status": 200, "headers": {...}, "body": "text or JSON"}`` — anything.

Command line (serves until SIGTERM/SIGINT)::

    python -m tests.support.fake_gemini --port 8765 --mode storm --first 5 --retry-after 2 \
        --log-file /tmp/gemini-log.json

prints one JSON line ``{"base_url": "http://127.0.0.1:8765", "pid": …}`` on stdout when
listening, and on SIGTERM/SIGINT writes the log (as ``GET /_log?bodies=0``) to ``--log-file``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

_GENERATE = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent$")

#: Google's status names and default messages for the error codes the fake produces.
GOOGLE_STATUS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "models/unknown is not found for API version v1"),
    408: ("DEADLINE_EXCEEDED", "Request timed out."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred."),
    502: ("UNAVAILABLE", "Bad gateway."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}

#: What ``ok`` answers unless the step overrides fields.
DEFAULT_ANALYSIS: dict[str, Any] = {
    "sentiment": 0.6,
    "catalyst": "Fake: a supply contract announced on the trade date (fake Gemini).",
    "risk_flags": ["fake response"],
    "confidence": 0.7,
    "news_score": 2,
}

MODES = (
    "ok",
    "status",
    "malformed",
    "schema_violation",
    "blocked",
    "prompt_blocked",
    "storm",
    "raw",
)


# -- step builders -------------------------------------------------------------------------


def ok(
    delay: float = 0.0,
    usage: Mapping[str, int] | None = None,
    answer: Mapping[str, Any] | None = None,
    **analysis: Any,
) -> dict[str, Any]:
    """A valid answer; keyword arguments override fields of :data:`DEFAULT_ANALYSIS`, or
    ``answer`` is the whole JSON object (another schema)."""
    step: dict[str, Any] = {"mode": "ok", "analysis": analysis, "delay": delay}
    if answer is not None:
        step["answer"] = dict(answer)
    if usage is not None:
        step["usage"] = dict(usage)
    return step


def status(
    code: int,
    retry_after: float | None = None,
    *,
    message: str | None = None,
    google_status: str | None = None,
    details: list[Any] | None = None,
    delay: float = 0.0,
) -> dict[str, Any]:
    """An HTTP error ``code`` with a Google-style error body (and ``Retry-After`` if given)."""
    step: dict[str, Any] = {"mode": "status", "status": code, "delay": delay}
    if retry_after is not None:
        step["retry_after"] = retry_after
    if message is not None:
        step["message"] = message
    if google_status is not None:
        step["google_status"] = google_status
    if details is not None:
        step["details"] = details
    return step


def malformed(
    text: str = '{"sentiment": 0.5, "catalyst": "unterminated', delay: float = 0.0
) -> dict[str, Any]:
    """HTTP 200 whose text part is not JSON."""
    return {"mode": "malformed", "text": text, "delay": delay}


def schema_violation(
    field: str = "news_score", value: Any = 7, delay: float = 0.0
) -> dict[str, Any]:
    """HTTP 200 with valid JSON whose ``field`` is ``value`` (default news_score 7)."""
    return {"mode": "schema_violation", "field": field, "value": value, "delay": delay}


def blocked(finish_reason: str = "SAFETY", delay: float = 0.0) -> dict[str, Any]:
    """A candidate with no content and ``finishReason`` (SAFETY, RECITATION, …)."""
    return {"mode": "blocked", "finish_reason": finish_reason, "delay": delay}


def prompt_blocked(block_reason: str = "SAFETY") -> dict[str, Any]:
    """No candidates at all; ``promptFeedback.blockReason`` says why."""
    return {"mode": "prompt_blocked", "block_reason": block_reason}


def storm(
    first: int = 0,
    probability: float = 0.0,
    seed: int = 0,
    retry_after: float | None = 2.0,
    delay: float = 0.0,
) -> dict[str, Any]:
    """429 for the first ``first`` requests, then with probability ``probability``, else ok."""
    step: dict[str, Any] = {
        "mode": "storm",
        "first": first,
        "probability": probability,
        "seed": seed,
        "delay": delay,
    }
    if retry_after is not None:
        step["retry_after"] = retry_after
    return step


def raw(code: int, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Exactly this status, body (text, or JSON-encoded when not a string) and headers."""
    return {"mode": "raw", "status": code, "body": body, "headers": dict(headers or {})}


# -- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One request as the fake saw it."""

    seq: int
    t_monotonic: float
    t_wall: float
    method: str
    path: str
    model: str | None
    api_key: str | None
    status: int
    mode: str
    body: Any = field(default=None, repr=False)

    def to_json(self, *, bodies: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not bodies:
            data.pop("body")
        return data

    @property
    def prompt(self) -> str | None:
        """The text of the request's first content part, when there is one."""
        try:
            return str(self.body["contents"][0]["parts"][0]["text"])
        except (KeyError, IndexError, TypeError):
            return None


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    delay: float
    mode: str


def _validate_step(step: Any) -> dict[str, Any]:
    if not isinstance(step, Mapping) or step.get("mode") not in MODES:
        raise ValueError(f"a script step must be an object with mode in {MODES}, got {step!r}")
    return dict(step)


class _Storm:
    """The mutable state of one storm step (counted from when it was installed)."""

    def __init__(self, step: Mapping[str, Any]) -> None:
        self.seen = 0
        self.rng = random.Random(int(step.get("seed", 0)))

    def rate_limited(self, step: Mapping[str, Any]) -> bool:
        self.seen += 1
        draw = self.rng.random()  # drawn for every request so the sequence depends on count only
        if self.seen <= int(step.get("first", 0)):
            return True
        return draw < float(step.get("probability", 0.0))


class FakeGeminiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None
    ) -> None:
        super().__init__((host, port), _Handler)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.required_api_key = api_key
        self.entries: list[LogEntry] = []
        self._queue: list[dict[str, Any]] = []
        self._default: dict[str, Any] = ok()
        self._storm: _Storm | None = None  # the default step's storm state
        self._seq = 0

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    # script ------------------------------------------------------------------------------

    def set_script(self, queue: list[Any] | None = None, default: Any = None) -> None:
        steps = [_validate_step(s) for s in (queue or [])]
        fallback = _validate_step(default) if default is not None else ok()
        with self.lock:
            self._queue = steps
            self._default = fallback
            self._storm = None

    def script_json(self) -> dict[str, Any]:
        with self.lock:
            return {"queue": copy.deepcopy(self._queue), "default": copy.deepcopy(self._default)}

    def clear_log(self) -> None:
        with self.lock:
            self.entries.clear()

    def log_json(self, *, since: int = 0, bodies: bool = False) -> dict[str, Any]:
        with self.lock:
            entries = [e.to_json(bodies=bodies) for e in self.entries if e.seq > since]
        return {"count": len(entries), "requests": entries}

    # answering ---------------------------------------------------------------------------

    def answer(self, path: str, model: str | None, api_key: str | None, body: Any) -> _Reply:
        arrived_mono, arrived_wall = time.monotonic(), time.time()
        with self.lock:
            storm_state: _Storm | None = None
            if model is None:
                step: dict[str, Any] = raw(404, _error_body(404, f"no route for {path}"))
            elif self.required_api_key is not None and api_key != self.required_api_key:
                step = status(400, message="API key not valid. Please pass a valid API key.")
            elif not isinstance(body, Mapping) or not body.get("contents"):
                step = status(400, message="contents is not specified")
            elif self._queue:
                step = self._queue.pop(0)
                storm_state = _Storm(step) if step["mode"] == "storm" else None
            else:
                step = self._default
                if step["mode"] == "storm" and self._storm is None:
                    self._storm = _Storm(step)
                storm_state = self._storm
            reply = self._render(step, model or "", body, storm_state)
            self._seq += 1
            self.entries.append(
                LogEntry(
                    seq=self._seq,
                    t_monotonic=arrived_mono,
                    t_wall=arrived_wall,
                    method="POST",
                    path=path,
                    model=model,
                    api_key=api_key,
                    status=reply.status,
                    mode=reply.mode,
                    body=body,
                )
            )
        return reply

    def _render(
        self, step: Mapping[str, Any], model: str, body: Any, storm_state: _Storm | None
    ) -> _Reply:
        mode = step["mode"]
        delay = float(step.get("delay", 0.0))
        if mode == "storm":
            state = storm_state or _Storm(step)
            if state.rate_limited(step):
                return self._error(429, step, delay, mode="storm-429")
            return self._ok(DEFAULT_ANALYSIS, model, body, None, delay, mode="storm-ok")
        if mode == "ok":
            # ``answer``: the whole JSON object (another schema than Analysis, e.g. the
            # crypto signal's); else the default Analysis with ``analysis`` overrides
            analysis = step.get("answer") or {**DEFAULT_ANALYSIS, **step.get("analysis", {})}
            return self._ok(analysis, model, body, step.get("usage"), delay, mode="ok")
        if mode == "status":
            return self._error(int(step["status"]), step, delay, mode=f"status-{step['status']}")
        if mode == "malformed":
            return self._text(str(step.get("text", "{not json")), model, body, delay, mode)
        if mode == "schema_violation":
            analysis = {
                **DEFAULT_ANALYSIS,
                str(step.get("field", "news_score")): step.get("value", 7),
            }
            return self._text(json.dumps(analysis, ensure_ascii=False), model, body, delay, mode)
        if mode == "blocked":
            payload = {
                "candidates": [{"finishReason": step.get("finish_reason", "SAFETY"), "index": 0}],
                "usageMetadata": {
                    "promptTokenCount": _prompt_tokens(body),
                    "totalTokenCount": _prompt_tokens(body),
                },
                "modelVersion": model,
            }
            return _Reply(200, _dump(payload), {}, delay, mode)
        if mode == "prompt_blocked":
            payload = {
                "promptFeedback": {"blockReason": step.get("block_reason", "SAFETY")},
                "usageMetadata": {
                    "promptTokenCount": _prompt_tokens(body),
                    "totalTokenCount": _prompt_tokens(body),
                },
                "modelVersion": model,
            }
            return _Reply(200, _dump(payload), {}, delay, mode)
        # raw
        content = step.get("body", "")
        data = content.encode() if isinstance(content, str) else _dump(content)
        return _Reply(
            int(step.get("status", 200)), data, dict(step.get("headers", {})), delay, mode
        )

    def _ok(
        self,
        analysis: Mapping[str, Any],
        model: str,
        body: Any,
        usage: Mapping[str, int] | None,
        delay: float,
        mode: str,
    ) -> _Reply:
        return self._text(json.dumps(analysis, ensure_ascii=False), model, body, delay, mode, usage)

    @staticmethod
    def _text(
        text: str,
        model: str,
        body: Any,
        delay: float,
        mode: str,
        usage: Mapping[str, int] | None = None,
    ) -> _Reply:
        prompt_tokens = _prompt_tokens(body)
        output_tokens = max(1, len(text) // 4)
        payload = {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": dict(usage)
            if usage is not None
            else {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": prompt_tokens + output_tokens,
            },
            "modelVersion": model,
        }
        return _Reply(200, _dump(payload), {}, delay, mode)

    @staticmethod
    def _error(code: int, step: Mapping[str, Any], delay: float, *, mode: str) -> _Reply:
        google_status, message = GOOGLE_STATUS.get(code, ("UNKNOWN", "Unknown error."))
        payload = _error_body(
            code,
            str(step.get("message", message)),
            str(step.get("google_status", google_status)),
            step.get("details"),
        )
        headers: dict[str, str] = {}
        if step.get("retry_after") is not None:
            headers["Retry-After"] = _seconds_text(step["retry_after"])
        return _Reply(code, _dump(payload), headers, delay, mode)


def _seconds_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def _error_body(
    code: int, message: str, google_status: str | None = None, details: Any = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": google_status or GOOGLE_STATUS.get(code, ("UNKNOWN", ""))[0],
    }
    if details is not None:
        error["details"] = details
    return {"error": error}


def _prompt_tokens(body: Any) -> int:
    try:
        text = "".join(str(p.get("text", "")) for c in body["contents"] for p in c["parts"])
    except (KeyError, TypeError, AttributeError):
        return 0
    return max(1, len(text) // 4)


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server: FakeGeminiServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stall)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _send(self, code: int, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True

    def _send_json(self, code: int, value: Any) -> None:
        self._send(code, _dump(value))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/_log":
            since = int(query.get("since", "0") or 0)
            bodies = query.get("bodies", "0").lower() in ("1", "true", "yes")
            self._send_json(200, self.server.log_json(since=since, bodies=bodies))
        elif url.path == "/_script":
            self._send_json(200, self.server.script_json())
        elif url.path == "/_health":
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, _error_body(404, f"no route for GET {url.path}"))

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/_log":
            self.server.clear_log()
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, _error_body(404, f"no route for DELETE {self.path}"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        data = self._read_body()
        if url.path == "/_script":
            try:
                spec = json.loads(data or b"{}")
                if isinstance(spec, Mapping) and "mode" in spec:
                    self.server.set_script(default=spec)
                elif isinstance(spec, Mapping):
                    self.server.set_script(spec.get("queue"), spec.get("default"))
                else:
                    raise ValueError("the script must be a JSON object")
            except ValueError as exc:
                self._send_json(400, _error_body(400, str(exc)))
                return
            self._send_json(200, {"ok": True})
            return
        if url.path == "/_reset":
            self.server.clear_log()
            self.server.set_script()
            self._send_json(200, {"ok": True})
            return
        match = _GENERATE.match(url.path)
        try:
            body: Any = json.loads(data) if data else None
        except ValueError:
            body = None
        reply = self.server.answer(
            url.path,
            match.group("model") if match else None,
            self.headers.get("x-goog-api-key"),
            body,
        )
        if reply.delay > 0 and self.server.stopping.wait(reply.delay):
            self.close_connection = True
            return
        self._send(reply.status, reply.body, reply.headers)


# -- in-process use ------------------------------------------------------------------------


class FakeGemini:
    """The fake in a background thread: ``with FakeGemini() as fake: ... fake.base_url``.

    ``port=0`` picks a free port. ``api_key``, when set, makes every request with another
    ``x-goog-api-key`` fail with HTTP 400 (as Google does for a bad key).
    """

    def __init__(
        self, port: int = 0, *, host: str = "127.0.0.1", api_key: str | None = None
    ) -> None:
        self.server = FakeGeminiServer(host, port, api_key=api_key)
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="fake-gemini", daemon=True
        )

    def __enter__(self) -> FakeGemini:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def script(self, *queue: Mapping[str, Any], default: Mapping[str, Any] | None = None) -> None:
        """Answer the next requests with ``queue`` (one step each), then ``default`` (ok)."""
        self.server.set_script(list(queue), default)

    @property
    def log(self) -> list[LogEntry]:
        """A snapshot of the request log (generateContent requests only)."""
        with self.server.lock:
            return list(self.server.entries)

    def clear_log(self) -> None:
        self.server.clear_log()

    def requests_in_window(self, seconds: float) -> int:
        """The largest number of requests that arrived within any ``seconds``-long window."""
        return requests_in_window([e.t_monotonic for e in self.log], seconds)


def requests_in_window(arrivals: list[float], seconds: float) -> int:
    """Max number of ``arrivals`` (seconds, any clock) in any half-open window
    ``[t, t + seconds)``."""
    times = sorted(arrivals)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def iter_log_entries(log_json: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The entries of a ``GET /_log`` answer (or a ``--log-file`` dump)."""
    yield from log_json.get("requests", [])


# -- command line --------------------------------------------------------------------------


def _step_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.mode == "ok":
        return ok(delay=args.delay)
    if args.mode == "status":
        return status(args.status, args.retry_after, delay=args.delay)
    if args.mode == "malformed":
        return malformed(delay=args.delay)
    if args.mode == "schema_violation":
        return schema_violation(delay=args.delay)
    if args.mode == "blocked":
        return blocked(delay=args.delay)
    if args.mode == "prompt_blocked":
        return prompt_blocked()
    if args.mode == "storm":
        return storm(args.first, args.probability, args.seed, args.retry_after, delay=args.delay)
    raise SystemExit(f"--mode {args.mode} needs --script-file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Gemini REST server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", choices=[m for m in MODES if m != "raw"], default="ok")
    parser.add_argument("--status", type=int, default=503, help="HTTP status for --mode status")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds")
    parser.add_argument("--first", type=int, default=0, help="storm: 429 for the first K requests")
    parser.add_argument("--probability", type=float, default=0.0, help="storm: then 429 with p")
    parser.add_argument("--seed", type=int, default=0, help="storm: RNG seed")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    parser.add_argument("--api-key", default=None, help="reject other x-goog-api-key values (400)")
    parser.add_argument(
        "--script-file", default=None, help='JSON {"queue": [...], "default": {...}}'
    )
    parser.add_argument("--log-file", default=None, help="write the request log here on exit")
    parser.add_argument("--port-file", default=None, help="write the base URL here when listening")
    args = parser.parse_args(argv)
    if args.mode == "storm" and args.retry_after is None:
        args.retry_after = 2.0

    server = FakeGeminiServer(args.host, args.port, api_key=args.api_key)
    if args.script_file:
        with open(args.script_file, encoding="utf-8") as fh:
            spec = json.load(fh)
        if "mode" in spec:
            server.set_script(default=spec)
        else:
            server.set_script(spec.get("queue"), spec.get("default"))
    else:
        server.set_script(default=_step_from_args(args))

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        with open(args.port_file, "w", encoding="utf-8") as fh:
            fh.write(server.base_url)
    print(json.dumps({"base_url": server.base_url, "pid": os.getpid()}), flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        if args.log_file:
            with open(args.log_file, "w", encoding="utf-8") as fh:
                json.dump(server.log_json(), fh, ensure_ascii=False)
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
