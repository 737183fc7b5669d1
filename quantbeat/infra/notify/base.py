"""What every notification sender shares: the target a subscription resolves to, the error
and result of one send, the sender protocol, the settings senders read, and the HTTP plumbing
(one ``httpx.Client`` per process, status classification, secret scrubbing).

Secrets. A Telegram bot token sits in the request path, a Slack or Discord webhook URL *is*
the credential, a generic webhook's signing secret signs every body. None of them may reach a
:class:`SendError`, a log line or a rate-limiter name:

* senders build every error with :func:`scrub` over the secrets they hold and raise it
  ``from None`` (httpx exceptions carry the request URL, so they are never chained);
* httpx logs each request's URL at INFO (``HTTP Request: POST https://…/bot<token>/…``);
  while a sender sends, :data:`_REDACT_HTTPX` makes a filter on the ``httpx`` logger replace
  every URL in those records by its scheme and host;
* limiter names use :func:`secret_hash`, a short SHA-256 of the secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from quant.errors import QuantbeatError
from quant.notify.events import Envelope
from quant.notify.rendered import PART_LIMITS, Rendered
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.masking import mask_text

Scope = Literal["target", "global"]
SmtpSecurity = Literal["starttls", "tls", "none"]

#: Length of :func:`secret_hash` (hex digits of SHA-256).
SECRET_HASH_LEN = 12
#: Provider answers quoted in a :class:`SendError` reason are cut to this many characters.
REASON_BODY_LIMIT = 200
#: What :func:`scrub` puts in place of a secret.
REDACTED = "[redacted]"
#: HTTP statuses that may pass when tried again (429 and every 5xx are transient as well).
TRANSIENT_4XX = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class Target:
    """What a subscription resolves to at send time.

    ``address``: Telegram chat id (``"-100123"``, ``"12345"`` or ``"@channel"``); e-mail
    comma-separated recipients; webhook the URL; file a path (relative to
    :attr:`NotifySettings.file_dir` unless absolute); Slack/Discord ``None``.
    ``secret``: Telegram bot token; Slack/Discord the full webhook URL; webhook the signing
    secret (``whsec_<base64>``); e-mail and file ``None``.
    """

    channel: str
    address: str | None = None
    secret: str | None = field(default=None, repr=False)


class SendError(QuantbeatError):
    """One send failed. Raised by every sender; its message is :attr:`reason`, which never
    holds a secret (bot token, webhook URL, signing secret, SMTP password).

    Attributes:
        permanent: ``True`` when trying again cannot help (HTTP 400/401/403/404/410 and other
            4xx but 408/409/425/429, Telegram "chat not found"/"bot was blocked", Slack
            ``channel_is_archived``/``no_service``, SMTP 5xx, a malformed target).
        retry_after: seconds the provider asked us to wait (Telegram
            ``parameters.retry_after``, Slack/HTTP ``Retry-After``, Discord ``retry_after``),
            else ``None``.
        status: the HTTP status or SMTP reply code, when there was one.
        reason: short, human, safe to store and show
            (``telegram 400: Bad Request: chat not found``).
        scope: for a 429, which limiter to cool down: ``"target"`` (this chat or webhook) or
            ``"global"`` (the whole bot; Discord ``global: true``).
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        status: int | None = None,
        scope: Scope = "target",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status
        self.scope: Scope = scope

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickling (multiprocessing, Celery's pickle) rebuilds with the keyword attributes
        return (
            _rebuild_send_error,
            (self.reason, self.permanent, self.retry_after, self.status, self.scope),
        )

    def __repr__(self) -> str:
        return (
            f"SendError({self.reason!r}, permanent={self.permanent}, "
            f"retry_after={self.retry_after}, status={self.status}, scope={self.scope!r})"
        )


def _rebuild_send_error(
    reason: str, permanent: bool, retry_after: float | None, status: int | None, scope: Scope
) -> SendError:
    return SendError(
        reason, permanent=permanent, retry_after=retry_after, status=status, scope=scope
    )


@dataclass(frozen=True)
class Sent:
    """One send succeeded. ``provider_ref``: the provider's id of what it stored (Telegram
    ``message_id``, Discord message id, the e-mail's ``Message-ID``, the ``webhook-id``), or
    ``None`` when the provider gives none (Slack) or nothing was sent (a no-op part)."""

    provider_ref: str | None


@dataclass(frozen=True, kw_only=True)
class NotifySettings:
    """What senders need from the settings (the dispatcher fills it from
    ``quantbeat.infra.settings``; keyword arguments only). ``timeout`` in seconds for HTTP
    and SMTP; ``smtp_security`` ``"none"`` only for local tests; ``smtp_ca_file`` a PEM bundle
    to trust instead of the system's roots (tests' self-signed certificates); ``smtp_rate`` in
    messages per second; ``file_dir`` where relative file targets go."""

    telegram_api_url: str = "https://api.telegram.org"
    timeout: float = 10.0
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: SmtpSecurity = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str = "quantbeat@localhost"
    smtp_ca_file: str | None = None
    smtp_rate: float = 5.0
    file_dir: str


class Sender(Protocol):
    """Sends one rendered part to one target."""

    def send(self, part: str, *, index: int, rendered: Rendered, envelope: Envelope) -> Sent:
        """Send ``part`` (``rendered.parts[index]``) of ``envelope``'s message.

        Raises:
            SendError: the provider refused or could not be reached (see its attributes).
        """
        ...

    def rate_keys(self) -> list[tuple[str, float]]:
        """Limiter names and their rates (messages per second) every send must acquire.
        Names hold no secret (:func:`secret_hash` stands in for tokens and URLs)."""
        ...


class HookSender:
    """What the webhook senders (Slack, Discord) share: the webhook URL is the secret —
    checked (https, except to a loopback host), kept out of names and errors — one HTTP
    client, and one limiter per webhook at :attr:`rate` messages per second."""

    #: The channel's name (``slack``, ``discord``): limiter names and messages.
    channel = "webhook"
    #: Messages per second per webhook.
    rate = 1.0

    def __init__(
        self, *, url: str, settings: NotifySettings, client: httpx.Client | None = None
    ) -> None:
        """Raises:
        SendError: permanent, the URL is not https (its scheme and host are named)."""
        self._parsed = check_url(
            url, what=f"{self.channel} webhook URL", https_only=True, secret=True
        )
        self._client = client if client is not None else http_client(settings.timeout)
        self._hash = secret_hash(url)
        self._secrets = url_secrets(url)

    def rate_keys(self) -> list[tuple[str, float]]:
        """One limiter per webhook (no secret in its name)."""
        return [(f"{self.channel}:{self._hash}", self.rate)]


def check_part(channel: str, part: str, *, index: int, envelope: Envelope) -> None:
    """Refuse, before any request, a part the channel cannot take: empty, or longer than
    :data:`quant.notify.rendered.PART_LIMITS` (characters).

    Raises:
        SendError: permanent, naming the channel, the part, the event and the length.
    """
    limit = PART_LIMITS[channel]
    if not part.strip() or len(part) > limit:
        raise SendError(
            f"{channel}: part {index} of event {envelope.id} has {len(part)} characters "
            f"(1..{limit} allowed)",
            permanent=True,
        )


def secret_hash(secret: str) -> str:
    """A short, stable stand-in for a secret in names: the first :data:`SECRET_HASH_LEN`
    hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:SECRET_HASH_LEN]


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each (non-empty) secret replaced by
    :data:`REDACTED`; longer secrets first, so a URL holding a token is redacted whole."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def short(text: str, limit: int = REASON_BODY_LIMIT) -> str:
    """``text`` on one line, cut to ``limit`` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def is_transient_status(status: int) -> bool:
    """Whether an HTTP error status may pass when tried again: 408, 409, 425, 429, 5xx.
    Other 4xx and unfollowed 3xx redirects are permanent."""
    return status in TRANSIENT_4XX or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """An HTTP ``Retry-After`` in seconds (the delta-seconds form; an HTTP date or garbage
    gives ``None``)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response body as a JSON object, or ``{}`` when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def is_loopback(host: str | None) -> bool:
    """``localhost`` or a loopback IP address."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, what: str, https_only: bool, secret: bool) -> httpx.URL:
    """Parse a target URL: ``http(s)`` with a host; with ``https_only``, plain ``http`` only
    to a loopback host (local tests). The error names the bad value — or, when the URL is a
    secret, only its scheme and host.

    Raises:
        SendError: permanent, the URL is malformed.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError:
        host, parts = None, None
    shown = f"{what} (scheme/host {_scheme_host(url)})" if secret else f"{what} {mask_text(url)!r}"
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise SendError(f"{shown} is not an http(s) URL with a host", permanent=True)
    if https_only and parts.scheme != "https" and not is_loopback(host):
        raise SendError(f"{shown} must use https (it carries a credential)", permanent=True)
    try:
        return httpx.URL(url)
    except httpx.InvalidURL:
        raise SendError(f"{shown} is not a valid URL", permanent=True) from None


def url_secrets(url: str) -> list[str]:
    """What of a credential URL :func:`scrub` must hide: the URL, its path and query, and its
    last path segment (a webhook's token) — a provider may echo any of them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [url, parts.path, parts.query, parts.path.rstrip("/").rpartition("/")[2]]
    return [item for item in found if len(item) >= 8]


def _scheme_host(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme or '?'}://{parts.hostname or '?'}"
    except ValueError:
        return "?"


# -- the process's HTTP client --------------------------------------------------------------

_clients: dict[float, httpx.Client] = {}
_clients_lock = threading.Lock()


@after_fork
def forget_clients() -> None:
    """Drop the parent's clients in a forked child (their pooled sockets are the parent's;
    they are not closed, only forgotten)."""
    with _clients_lock:
        _clients.clear()


def http_client(timeout: float) -> httpx.Client:
    """The process's ``httpx.Client`` for ``timeout`` seconds (connect, read, write, pool).
    It follows no redirect (a redirect would resend a credential elsewhere) and ignores proxy
    environment variables, as quantbeat's other clients do."""
    with _clients_lock:
        client = _clients.get(timeout)
        if client is None:
            client = httpx.Client(
                timeout=httpx.Timeout(timeout),
                trust_env=False,
                follow_redirects=False,
                headers={"User-Agent": "quantbeat-notify/1"},
            )
            _clients[timeout] = client
        return client


# -- keeping URLs (and the tokens in them) out of httpx's log records ------------------------

_REDACT_HTTPX: ContextVar[bool] = ContextVar("quantbeat_notify_redact_httpx", default=False)


class _RedactUrls(logging.Filter):
    """On the ``httpx`` logger: while a notify sender sends (:func:`redacting`), every URL in
    a record's arguments becomes ``scheme://host/[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _REDACT_HTTPX.get() and isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        return True


def _redact_arg(arg: object) -> object:
    if isinstance(arg, httpx.URL):
        return f"{arg.scheme}://{arg.host}/{REDACTED}"
    if isinstance(arg, str) and "://" in arg:
        return f"{_scheme_host(arg)}/{REDACTED}"
    return arg


_HTTPX_FILTER = _RedactUrls()
if _HTTPX_FILTER not in logging.getLogger("httpx").filters:
    logging.getLogger("httpx").addFilter(_HTTPX_FILTER)


@contextmanager
def redacting() -> Iterator[None]:
    """Within the block (this thread or task), httpx log records show no URL path."""
    token = _REDACT_HTTPX.set(True)
    try:
        yield
    finally:
        _REDACT_HTTPX.reset(token)


def post_json(
    client: httpx.Client,
    url: httpx.URL | str,
    *,
    what: str,
    secrets: Iterable[str | None],
    json_body: object | None = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """POST and return the response (whatever its status). ``what`` names the provider in
    errors (``telegram``).

    Raises:
        SendError: transient, on a timeout or transport error; its reason names the error
            type and a scrubbed message, never the URL.
    """
    secret_list = list(secrets)
    try:
        with redacting():
            return client.post(url, json=json_body, content=content, headers=headers, params=params)
    except httpx.TimeoutException as exc:
        reason = f"{what}: timed out ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        detail = scrub(str(exc), [*secret_list, str(url)])
        reason = f"{what}: {type(exc).__name__}: {short(detail)}"
    raise SendError(scrub(reason, secret_list), permanent=False)
