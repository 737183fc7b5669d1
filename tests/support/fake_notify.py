"""Local servers that speak the notification providers' documented formats (docs/domain.md
section 11, the providers' API references) and record every message they receive, for the
notification tests and benchmarks. No internet.

HTTP fakes (:class:`FakeTelegram`, :class:`FakeSlack`, :class:`FakeDiscord`,
:class:`WebhookReceiver`) are ``ThreadingHTTPServer``\\ s on ``127.0.0.1``, port 0, serving from
a thread between :meth:`~_FakeHttp.start` and :meth:`~_FakeHttp.stop` (or in a ``with``
block); ``.url`` is their base URL. Each keeps, under one lock:

* ``received``: every request, in arrival order, as a :class:`Received` (arrival time by the
  server's clock, target — chat id, webhook name —, text, the status it was answered with);
* ``accepted``: the 2xx answers the server finished writing — what the provider delivered.
  A client killed while its request is held (:meth:`~_FakeHttp.hold`) may never read the
  answer, yet the message was delivered: that is how a duplicate arises;
* ``violations``: requests that broke the provider's rate limits (answered 429), so a test or
  benchmark can prove a sender never exceeds them. Limits count the requests that got past
  them, over sliding windows shortened by ``tolerance`` seconds (network jitter).

Switches: ``storm(n, retry_after)`` answers the next ``n`` requests 429 in the provider's
format; ``outage(status, n)`` answers the next ``n`` with a 5xx; ``fail(status, n)`` with any
status; ``hold()`` keeps every later request waiting before its answer until ``release()``.
:meth:`~_FakeHttp.wait_received` / :meth:`~_FakeHttp.wait_accepted` wait on a condition (no
sleeping).

:class:`SmtpServer` is aiosmtpd with STARTTLS or implicit TLS (a self-signed certificate made
by :func:`self_signed_cert`), AUTH LOGIN/PLAIN for one user, and ``reject(stage, code, n)``
to answer RCPT or DATA with 451 (transient) or 550 (permanent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import html
import json
import logging
import math
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self, cast
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from standardwebhooks import Webhook, WebhookVerificationError

#: The example bot token of Telegram's documentation (core.telegram.org/bots/api).
TELEGRAM_TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
#: How long a held request waits for :meth:`_FakeHttp.release` at most, in seconds.
HOLD_LIMIT = 120.0


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it. ``at``: ``time.time()`` at arrival; ``target``: the
    chat id (Telegram), the webhook's name (Slack, Discord) or the ``webhook-id``
    (receiver); ``text``: the message text, when the body had one; ``status``: the answer."""

    at: float
    target: str | None
    text: str | None
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = ""


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-able, or str/bytes sent as text
    headers: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    text: str | None = None
    parsed: Any = None


class _Limits:
    """Sliding-window limits: ``limit(key, n, period)`` says whether a request now would be
    the (n+1)-th within ``period - tolerance`` seconds, and how long until it would not."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self._times: dict[str, deque[float]] = defaultdict(deque)

    def wait(self, key: str, n: int, period: float, now: float) -> float:
        window = max(period - self.tolerance, 0.0)
        times = self._times[key]
        while times and times[0] <= now - period:
            times.popleft()
        inside = [t for t in times if t > now - window]
        if len(inside) < n:
            return 0.0
        return inside[-n] + window - now

    def note(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            self._times[key].append(now)


class _Handler(BaseHTTPRequestHandler):
    server: _FakeHttp
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # the answer leaves in one send (after end_headers and the body)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return

    def setup(self) -> None:
        super().setup()
        with self.server.cond:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.cond:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server._serve(self, "POST", raw)

    def do_GET(self) -> None:
        self.server._serve(self, "GET", b"")


class _FakeHttp(ThreadingHTTPServer):
    daemon_threads = True
    name = "fake"

    def __init__(self, *, tolerance: float = 0.05, port: int = 0) -> None:
        # port: 0 for any free one; a fixed one when workers started earlier must reach it
        # (tests/support/notify_env.py)
        super().__init__(("127.0.0.1", port), _Handler)
        self.cond = threading.Condition()
        self.received: list[Received] = []
        self.accepted: list[Received] = []
        self.violations = 0
        self.violation_log: list[tuple[float, str]] = []  # (time, limiter key)
        self.limits = _Limits(tolerance)
        self._script: deque[tuple[str, float, bool]] = deque()  # (kind, value, flag)
        self._released = threading.Event()
        self._released.set()
        self._thread: threading.Thread | None = None
        # open keep-alive connections: closed by stop(), so a client's pooled connection
        # never reaches a stopped fake (the next test's fake on the same port gets it)
        self.connections: set[socket.socket] = set()

    # -- life cycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() waits at most this long
                name=f"{self.name}-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        with self.cond:
            open_connections = list(self.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- switches ----------------------------------------------------------------------------

    def storm(self, n: int, retry_after: float = 2) -> None:
        """Answer the next ``n`` requests 429 in the provider's format."""
        with self.cond:
            self._script.extend(("storm", float(retry_after), False) for _ in range(n))

    def outage(self, status: int = 500, n: int = 1) -> None:
        """Answer the next ``n`` requests with ``status`` (a 5xx)."""
        self.fail(status, n)

    def fail(self, status: int, n: int = 1) -> None:
        """Answer the next ``n`` requests with ``status`` in the provider's error format."""
        with self.cond:
            self._script.extend(("fail", float(status), False) for _ in range(n))

    def hold(self) -> None:
        """Keep every request arriving from now on waiting before its answer (after it is
        recorded in ``received``) until :meth:`release`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_received(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` requests arrived; ``False`` on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.received) >= n, timeout)

    def wait_accepted(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` requests were answered 2xx; ``False`` on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.accepted) >= n, timeout)

    def texts(self, target: str | None = None) -> list[str]:
        """Texts of the accepted messages (for ``target`` only, when given), in order."""
        with self.cond:
            return [
                r.text
                for r in self.accepted
                if r.text is not None and (target is None or r.target == target)
            ]

    # -- serving -----------------------------------------------------------------------------

    def _next_scripted(self) -> tuple[str, float, bool] | None:
        return self._script.popleft() if self._script else None

    def _violation(self, key: str, now: float) -> None:
        self.violations += 1
        self.violation_log.append((now, key))

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        """The provider's answer; runs under ``self.cond``."""
        raise NotImplementedError

    def _serve(self, handler: _Handler, method: str, raw: bytes) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.cond:
            arrived = time.time()
            answer = self.respond(method, url.path, query, headers, raw)
            record = Received(
                at=arrived,
                target=answer.target,
                text=answer.text,
                status=answer.status,
                body=answer.parsed,
                headers=headers,
                path=url.path,
            )
            self.received.append(record)
            self.cond.notify_all()
        if not self._released.is_set():
            self._released.wait(HOLD_LIMIT)
        if isinstance(answer.body, bytes):
            data, ctype = answer.body, "application/octet-stream"
        elif isinstance(answer.body, str):
            data, ctype = answer.body.encode(), "text/plain; charset=utf-8"
        elif answer.body is None:
            data, ctype = b"", ""
        else:
            data, ctype = json.dumps(answer.body).encode(), "application/json"
        ok = 200 <= answer.status < 300
        try:
            handler.send_response(answer.status)
            if ctype:
                handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)  # buffered: nothing has left yet
            if ok:  # recorded before the answer leaves, so a client that read it finds it
                with self.cond:
                    self.accepted.append(record)
                    self.cond.notify_all()
            handler.wfile.flush()
        except OSError:  # the client went away before the answer was written
            if ok:
                with self.cond:
                    if record in self.accepted:
                        self.accepted.remove(record)
            return


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


# -- Telegram ------------------------------------------------------------------------------

#: Tags Telegram's HTML parse mode accepts (core.telegram.org/bots/api#html-style), and the
#: attributes each may carry.
TELEGRAM_TAGS: dict[str, frozenset[str]] = {
    "b": frozenset(),
    "strong": frozenset(),
    "i": frozenset(),
    "em": frozenset(),
    "u": frozenset(),
    "ins": frozenset(),
    "s": frozenset(),
    "strike": frozenset(),
    "del": frozenset(),
    "tg-spoiler": frozenset(),
    "span": frozenset({"class"}),  # class="tg-spoiler" only
    "a": frozenset({"href"}),
    "code": frozenset({"class"}),  # class="language-…" inside <pre>
    "pre": frozenset(),
    "blockquote": frozenset({"expandable"}),
    "tg-emoji": frozenset({"emoji-id"}),
}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^<>]*)?)\s*>")
_ATTR = re.compile(r"\s*([A-Za-z-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")


def telegram_html_error(text: str) -> str | None:
    """Why Telegram would refuse ``text`` in HTML parse mode (``None`` when it parses): only
    the tags of :data:`TELEGRAM_TAGS` with their attributes, balanced; ``<`` and ``&`` only
    as part of a tag or an entity (``&lt;`` ``&gt;`` ``&amp;`` ``&quot;`` or numeric)."""
    stack: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "<":
            match = _TAG.match(text, pos)
            if match is None:
                return f"unsupported start tag at byte offset {pos}"
            closing, name, attrs = match.group(1), match.group(2).lower(), match.group(3)
            if name not in TELEGRAM_TAGS:
                return f'unsupported start tag "{name}" at byte offset {pos}'
            if closing:
                if attrs.strip():
                    return f'unexpected attributes in end tag "{name}" at byte offset {pos}'
                if not stack or stack[-1] != name:
                    return (
                        f'unmatched end tag at byte offset {pos}, expected "</{stack[-1]}>"'
                        if stack
                        else f'unexpected end tag "{name}" at byte offset {pos}'
                    )
                stack.pop()
            else:
                problem = _attrs_error(name, attrs)
                if problem:
                    return f"{problem} at byte offset {pos}"
                stack.append(name)
            pos = match.end()
        elif char == "&":
            match = _ENTITY.match(text, pos)
            if match is None:
                return f"unsupported entity or bare '&' at byte offset {pos}"
            pos = match.end()
        else:
            pos += 1
    if stack:
        return f'can\'t find end tag corresponding to start tag "{stack[-1]}"'
    return None


def _attrs_error(tag: str, attrs: str) -> str | None:
    allowed = TELEGRAM_TAGS[tag]
    found: dict[str, str] = {}
    rest = attrs
    while rest.strip():
        match = _ATTR.match(rest)
        if match is None or not match.group(0):
            return f'can\'t parse attributes of tag "{tag}"'
        value = match.group(2) or ""
        found[match.group(1).lower()] = html.unescape(value.strip("\"'"))
        rest = rest[match.end() :]
    for name in found:
        if name not in allowed:
            return f'unsupported attribute "{name}" of tag "{tag}"'
    if tag == "a" and not found.get("href"):
        return 'tag "a" must have an href'
    if tag == "span" and found.get("class") != "tg-spoiler":
        return 'tag "span" must have class "tg-spoiler"'
    if tag == "code" and "class" in found and not found["class"].startswith("language-"):
        return 'tag "code" may only have class "language-…"'
    return None


class FakeTelegram(_FakeHttp):
    """The Bot API's ``sendMessage`` (``POST /bot<token>/sendMessage``, JSON).

    Known ``tokens`` (else 401 Unauthorized) and ``chats`` (else 400 chat not found; a chat
    id is a number as a string, or ``@name``); :meth:`blocked` chats answer 403. The text must
    be non-empty, at most 4096 characters (counted before entity parsing: stricter than
    Telegram, which counts after) and, with ``parse_mode: HTML``, valid Telegram HTML
    (:func:`telegram_html_error`). Limits (core.telegram.org/bots/faq): 1 message/s per chat,
    20/min per group or channel (ids starting with ``-``, ``@names``), 30/s per bot; a request
    over one is answered 429 with ``parameters.retry_after`` (whole seconds) and counted in
    ``violations``. ``message_id`` counts up from 1.
    """

    name = "fake-telegram"

    def __init__(
        self,
        tokens: Iterable[str] = (TELEGRAM_TOKEN,),
        chats: Iterable[str | int] = ("12345", "-100123", "@quantbeat_alerts"),
        *,
        tolerance: float = 0.05,
        port: int = 0,
    ) -> None:
        super().__init__(tolerance=tolerance, port=port)
        self.tokens = set(tokens)
        self.chats = {str(c) for c in chats}
        self.blocked_chats: set[str] = set()
        self.message_id = 0

    def add_chat(self, chat: str | int) -> None:
        with self.cond:
            self.chats.add(str(chat))

    def blocked(self, chat: str | int) -> None:
        """The user of ``chat`` blocked the bot: 403 from now on."""
        with self.cond:
            self.blocked_chats.add(str(chat))

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return body

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        match = re.fullmatch(r"/bot([^/]+)/sendMessage", path)
        data = _json_body(raw)
        chat = str(data.get("chat_id")) if isinstance(data, dict) and "chat_id" in data else None
        text = data.get("text") if isinstance(data, dict) else None
        text = text if isinstance(text, str) else None

        def answer(status: int, body: Any, **extra: Any) -> Answer:
            return Answer(status, body, target=chat, text=text, parsed=data, **extra)

        if match is None or method != "POST":
            return answer(404, self._error(404, "Not Found"))
        scripted = self._next_scripted()
        if scripted is not None:
            kind, value, _ = scripted
            if kind == "storm":
                seconds = math.ceil(value)
                return answer(
                    429,
                    self._error(
                        429, f"Too Many Requests: retry after {seconds}", retry_after=seconds
                    ),
                )
            status = int(value)
            return answer(status, self._error(status, _reason(status)))
        token = match.group(1)
        if token not in self.tokens:
            return answer(401, self._error(401, "Unauthorized"))
        if not isinstance(data, dict):
            return answer(400, self._error(400, "Bad Request: can't parse JSON"))
        if chat is None:
            return answer(400, self._error(400, "Bad Request: chat_id is empty"))
        if chat not in self.chats:
            return answer(400, self._error(400, "Bad Request: chat not found"))
        if chat in self.blocked_chats:
            return answer(403, self._error(403, "Forbidden: bot was blocked by the user"))
        if text is None or not text.strip():
            return answer(400, self._error(400, "Bad Request: message text is empty"))
        if len(text) > 4096:
            return answer(400, self._error(400, "Bad Request: message is too long"))
        mode = data.get("parse_mode")
        if mode == "HTML":
            problem = telegram_html_error(text)
            if problem is not None:
                return answer(
                    400, self._error(400, f"Bad Request: can't parse entities: {problem}")
                )
        elif mode not in (None, "", "MarkdownV2", "Markdown"):
            return answer(400, self._error(400, f"Bad Request: unsupported parse_mode {mode}"))
        now = time.time()
        group = chat.startswith(("-", "@"))
        limits = [(f"bot:{token}", 30, 1.0), (f"chat:{chat}", 1, 1.0)]
        if group:
            limits.append((f"group:{chat}", 20, 60.0))
        for key, n, period in limits:
            wait = self.limits.wait(key, n, period, now)
            if wait > 0:
                self._violation(key, now)
                seconds = max(1, math.ceil(wait))
                return answer(
                    429,
                    self._error(
                        429, f"Too Many Requests: retry after {seconds}", retry_after=seconds
                    ),
                )
        self.limits.note((key for key, _, _ in limits), now)
        self.message_id += 1
        result = {
            "message_id": self.message_id,
            "date": int(now),
            "chat": {"id": chat, "type": "supergroup" if group else "private"},
            "text": text,
        }
        return answer(200, {"ok": True, "result": result})


def _reason(status: int) -> str:
    return {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(
        status, f"Error {status}"
    )


# -- Slack and Discord webhooks ------------------------------------------------------------


class _Hooks(_FakeHttp):
    """Webhooks registered by :meth:`new_hook` (each a name and a secret path)."""

    def __init__(self, *, tolerance: float, port: int = 0) -> None:
        super().__init__(tolerance=tolerance, port=port)
        self.hooks: dict[str, str] = {}  # path -> name
        self.archived: set[str] = set()  # names

    def _path(self, name: str) -> str:
        raise NotImplementedError

    def new_hook(self, name: str | None = None) -> str:
        """Register a webhook; returns its full URL (the secret)."""
        with self.cond:
            name = name or f"hook{len(self.hooks) + 1}"
            path = self._path(name)
            self.hooks[path] = name
        return self.url + path

    def add_hook(self, path: str, name: str) -> str:
        """Register a webhook at a known ``path`` (a URL the workers were configured with);
        returns its full URL."""
        with self.cond:
            self.hooks[path] = name
        return self.url + path

    def archive(self, name: str) -> None:
        """The webhook's channel was archived (Slack 410) or the webhook deleted (Discord
        404)."""
        with self.cond:
            self.archived.add(name)


class FakeSlack(_Hooks):
    """Slack incoming webhooks (``POST /services/T…/B…/<token>``, JSON ``text``/``blocks``;
    answers ``ok``). Unknown webhook → 404 ``no_service``; archived → 410
    ``channel_is_archived``; :meth:`prohibit` → 403 ``action_prohibited``; not JSON, or
    neither ``text`` nor ``blocks`` → 400 ``invalid_payload``; a section text over 3000
    characters → 400 ``invalid_blocks``. More than ``rate`` (n, seconds) per webhook (default
    1 per second) → 429 ``Retry-After`` and a violation; :meth:`storm` → 429 with
    ``Retry-After``."""

    name = "fake-slack"

    def __init__(
        self, *, rate: tuple[int, float] = (1, 1.0), tolerance: float = 0.05, port: int = 0
    ) -> None:
        super().__init__(tolerance=tolerance, port=port)
        self.rate = rate
        self.prohibited: set[str] = set()

    def _path(self, name: str) -> str:
        return f"/services/T0FAKE/B{name}/{secrets.token_urlsafe(18)}"

    def prohibit(self, name: str) -> None:
        with self.cond:
            self.prohibited.add(name)

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        name = self.hooks.get(path)
        data = _json_body(raw)
        text = data.get("text") if isinstance(data, dict) else None
        text = text if isinstance(text, str) else None

        def answer(status: int, body: str, **extra: Any) -> Answer:
            return Answer(status, body, target=name, text=text, parsed=data, **extra)

        scripted = self._next_scripted()
        if scripted is not None:
            kind, value, _ = scripted
            if kind == "storm":
                return answer(429, "rate_limited", headers={"Retry-After": _num(value)})
            return answer(int(value), "internal_error" if value >= 500 else "error")
        if name is None or method != "POST":
            return answer(404, "no_service")
        if name in self.archived:
            return answer(410, "channel_is_archived")
        if name in self.prohibited:
            return answer(403, "action_prohibited")
        if not isinstance(data, dict) or not (text or data.get("blocks")):
            return answer(400, "invalid_payload")
        for block in data.get("blocks") or []:
            section = block.get("text") if isinstance(block, dict) else None
            if isinstance(section, dict) and len(str(section.get("text", ""))) > 3000:
                return answer(400, "invalid_blocks")
        now = time.time()
        n, period = self.rate
        wait = self.limits.wait(name, n, period, now)
        if wait > 0:
            self._violation(name, now)
            return answer(429, "rate_limited", headers={"Retry-After": str(math.ceil(wait))})
        self.limits.note([name], now)
        return answer(200, "ok")


class FakeDiscord(_Hooks):
    """Discord webhooks (``POST /api/webhooks/<id>/<token>[?wait=true]``, JSON ``content``
    ≤ 2000 characters). ``wait=true`` → 200 with the message object (``id`` a snowflake
    string), else 204. Unknown id or archived (deleted) → 404 Unknown Webhook (10015); a wrong
    token → 401 Invalid Webhook Token (50027); content over 2000 → 400 Invalid Form Body
    (50035); empty → 400 Cannot send an empty message (50006). More than ``rate`` (n, seconds)
    per webhook (default 5 per 2 s, Discord's webhook bucket) → 429 and a violation;
    :meth:`storm` → 429 JSON ``{"retry_after", "global"}`` (``global_`` switch) with
    ``Retry-After`` and ``X-RateLimit-Scope``."""

    name = "fake-discord"

    def __init__(
        self, *, rate: tuple[int, float] = (5, 2.0), tolerance: float = 0.05, port: int = 0
    ) -> None:
        super().__init__(tolerance=tolerance, port=port)
        self.rate = rate
        self.ids: dict[str, str] = {}  # webhook id -> name
        self.global_storm = False
        self.message_id = 1_100_000_000_000_000_000

    def _path(self, name: str) -> str:
        hook_id = str(1_000_000_000_000_000_000 + len(self.ids) + 1)
        self.ids[hook_id] = name
        return f"/api/webhooks/{hook_id}/{secrets.token_urlsafe(48)}"

    def add_hook(self, path: str, name: str) -> str:
        match = re.fullmatch(r"/api/webhooks/([0-9]+)/([^/]+)", path)
        if match is None:
            raise ValueError(f"not a Discord webhook path: {path!r}")
        with self.cond:
            self.ids[match.group(1)] = name
        return super().add_hook(path, name)

    def storm(self, n: int, retry_after: float = 2, *, global_: bool = False) -> None:
        with self.cond:
            self._script.extend(("storm", float(retry_after), global_) for _ in range(n))

    @staticmethod
    def _error(code: int, message: str, **extra: Any) -> dict[str, Any]:
        return {"message": message, "code": code, **extra}

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        match = re.fullmatch(r"/api/webhooks/([0-9]+)/([^/]+)", path)
        name = self.ids.get(match.group(1)) if match else None
        data = _json_body(raw)
        content = data.get("content") if isinstance(data, dict) else None
        content = content if isinstance(content, str) else None

        def answer(status: int, body: Any, **extra: Any) -> Answer:
            return Answer(status, body, target=name, text=content, parsed=data, **extra)

        scripted = self._next_scripted()
        if scripted is not None:
            kind, value, is_global = scripted
            if kind == "storm":
                return answer(
                    429,
                    {
                        "message": "You are being rate limited.",
                        "retry_after": value,
                        "global": is_global,
                    },
                    headers={
                        "Retry-After": str(math.ceil(value)),
                        "X-RateLimit-Scope": "global" if is_global else "user",
                    },
                )
            return answer(int(value), self._error(0, _reason(int(value))))
        if match is None or name is None or method != "POST" or name in self.archived:
            return answer(404, self._error(10015, "Unknown Webhook"))
        if path not in self.hooks:
            return answer(401, self._error(50027, "Invalid Webhook Token"))
        if not isinstance(data, dict):
            return answer(400, self._error(50109, "The request body contains invalid JSON."))
        if content is not None and len(content) > 2000:
            errors = {
                "content": {
                    "_errors": [
                        {
                            "code": "BASE_TYPE_MAX_LENGTH",
                            "message": "Must be 2000 or fewer in length.",
                        }
                    ]
                }
            }
            return answer(400, self._error(50035, "Invalid Form Body", errors=errors))
        if not (content and content.strip()) and not data.get("embeds"):
            return answer(400, self._error(50006, "Cannot send an empty message"))
        now = time.time()
        n, period = self.rate
        wait = self.limits.wait(name, n, period, now)
        bucket = {"X-RateLimit-Limit": str(n), "X-RateLimit-Bucket": f"fake-{name}"}
        if wait > 0:
            self._violation(name, now)
            return answer(
                429,
                {"message": "You are being rate limited.", "retry_after": wait, "global": False},
                headers={
                    **bucket,
                    "Retry-After": str(math.ceil(wait)),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{wait:.3f}",
                    "X-RateLimit-Scope": "user",
                },
            )
        self.limits.note([name], now)
        if query.get("wait") != "true":
            return answer(204, None, headers=bucket)
        self.message_id += 1
        message = {
            "id": str(self.message_id),
            "type": 0,
            "content": content or "",
            "channel_id": "1200000000000000000",
            "webhook_id": match.group(1),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now)),
        }
        return answer(200, message, headers=bucket)


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


# -- Standard Webhooks receiver -------------------------------------------------------------


def new_webhook_secret() -> str:
    """A random Standard Webhooks secret, ``whsec_<base64 of 24 bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class WebhookReceiver(_FakeHttp):
    """An endpoint verifying Standard Webhooks signatures with
    ``standardwebhooks.Webhook(secret).verify(body, headers)`` (which also refuses timestamps
    more than five minutes off). A verified delivery is answered 200 and recorded in
    ``deliveries`` (its parsed body), and de-duplicated by ``webhook-id``: ``unique`` and
    ``duplicates`` count them. A bad or missing signature is answered 401 and recorded in
    ``rejected`` (the reason). Scripted answers (:meth:`storm` → 429 with ``Retry-After``,
    :meth:`outage`, :meth:`fail`) come before verification and count as neither."""

    name = "fake-webhook"

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret or new_webhook_secret()
        self._verifier = Webhook(self.secret)
        self.deliveries: list[Any] = []
        self.rejected: list[str] = []
        self.ids: set[str] = set()
        self.unique = 0
        self.duplicates = 0

    @property
    def hook_url(self) -> str:
        return self.url + "/hook"

    def respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Answer:
        msg_id = headers.get("webhook-id")
        scripted = self._next_scripted()
        if scripted is not None:
            kind, value, _ = scripted
            if kind == "storm":
                return Answer(429, "slow down", headers={"Retry-After": _num(value)}, target=msg_id)
            return Answer(int(value), f"error {int(value)}", target=msg_id)
        if method != "POST":
            return Answer(405, "method not allowed", target=msg_id)
        try:
            parsed = self._verifier.verify(raw, headers)
        except WebhookVerificationError as exc:
            self.rejected.append(str(exc))
            return Answer(401, f"invalid signature: {exc}", target=msg_id)
        if not headers.get("content-type", "").startswith("application/json"):
            self.rejected.append("content-type is not application/json")
            return Answer(415, "expected application/json", target=msg_id)
        assert msg_id is not None  # verify() demands it
        if msg_id in self.ids:
            self.duplicates += 1
        else:
            self.ids.add(msg_id)
            self.unique += 1
        self.deliveries.append(parsed)
        text = parsed.get("text") if isinstance(parsed, dict) else None
        return Answer(200, "ok", target=msg_id, text=text, parsed=parsed)


# -- SMTP ----------------------------------------------------------------------------------


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``127.0.0.1`` and ``localhost`` (its own CA: trust
    ``cert`` as the CA file) and its key, written to ``directory``; returns (cert, key).
    Uses the ``openssl`` command, or the ``cryptography`` package when there is none."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout", str(key), "-out", str(cert),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert, key
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    public = private.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


def _not_login_data_notice(record: logging.LogRecord) -> bool:
    """aiosmtpd 1.4 warns about its own deprecated ``Session.login_data`` on every successful
    AUTH (it sets it itself); drop that line, keep the rest of ``mail.log``."""
    return "Session.login_data is deprecated" not in record.getMessage()


if _not_login_data_notice not in logging.getLogger("mail.log").filters:
    logging.getLogger("mail.log").addFilter(_not_login_data_notice)


class _PortZeroController(Controller):
    """aiosmtpd's threaded controller on port 0: the bound port is read back before the
    controller's own start-up probe connects to it."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = cast("asyncio.Server", self.server).sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """A real SMTP server (aiosmtpd) on ``127.0.0.1``, recording what it accepts.

    ``security``: ``"starttls"`` (STARTTLS offered and required before MAIL; AUTH only after
    it, and required when ``user`` is set), ``"tls"`` (implicit TLS from the first byte) or
    ``"none"``. The certificate is self-signed (:func:`self_signed_cert`, in ``directory`` or
    a temporary folder): trust ``ca_file``. With ``user``/``password``, AUTH LOGIN and PLAIN
    accept that pair (``logins`` records successes, ``auth_failures`` counts failures).

    ``messages`` are the accepted messages (``email.message_from_bytes`` with the default
    policy), ``envelopes`` their (MAIL FROM, RCPT TOs). :meth:`reject` answers the next
    ``n`` RCPT or DATA commands with ``code`` (451: transient, 550: permanent).
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        security: Literal["starttls", "tls", "none"] = "starttls",
        user: str | None = "quantbeat",
        password: str | None = "smtp-test-password",
        port: int = 0,
    ) -> None:
        self.security = security
        self.user = user
        self.password = password
        self.cond = threading.Condition()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str | None, list[str]]] = []
        self.logins: list[str] = []
        self.auth_failures = 0
        self._rejects: dict[str, deque[int]] = {"rcpt": deque(), "data": deque()}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file: str | None = None
        context: ssl.SSLContext | None = None
        if security != "none":
            if directory is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="fake-smtp-")
                directory = self._tmp.name
            cert, key = self_signed_cert(Path(directory))
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            self.ca_file = str(cert)
        kwargs: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": port,
            "server_hostname": "fake-smtp.localhost",
            "ready_timeout": 10.0,
        }
        if user is not None:
            kwargs["authenticator"] = self._authenticate
            # STARTTLS: AUTH only on the encrypted channel, and required. Implicit TLS is
            # encrypted from the start (aiosmtpd cannot tell, so it must not demand STARTTLS).
            kwargs["auth_require_tls"] = security == "starttls"
            kwargs["auth_required"] = security == "starttls"
        if security == "starttls":
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = True
        elif security == "tls":
            kwargs["ssl_context"] = context
        self._controller = _PortZeroController(_SmtpHandler(self), **kwargs)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.security == "tls" else "smtp"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop(no_assert=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reject(self, stage: Literal["rcpt", "data"], code: int, n: int = 1) -> None:
        """Answer the next ``n`` ``stage`` commands with ``code``."""
        with self.cond:
            self._rejects[stage].extend([code] * n)

    def wait_messages(self, n: int, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def _take(self, stage: str) -> int | None:
        with self.cond:
            queue = self._rejects[stage]
            return queue.popleft() if queue else None

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.user is not None
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == (self.password or "")
        )
        with self.cond:
            if ok:
                self.logins.append(auth_data.login.decode())
            else:
                self.auth_failures += 1
        return AuthResult(success=ok, handled=False)


_REPLIES = {
    451: "451 4.3.0 Temporary failure, try again later",
    550: "550 5.1.1 Mailbox unavailable",
}


class _SmtpHandler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        code = self.owner._take("rcpt")
        if code is not None:
            return _REPLIES.get(code, f"{code} rejected by the fake")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        code = self.owner._take("data")
        if code is not None:
            return _REPLIES.get(code, f"{code} rejected by the fake")
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.owner.cond:
            self.owner.messages.append(message)
            self.owner.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.owner.cond.notify_all()
        return "250 Message accepted for delivery"
