"""Who may call the API, and how often.

A request presents its API key as ``Authorization: Bearer qb_…`` or ``X-API-Key: qb_…`` (the
dashboard keeps it in an HttpOnly cookie after its sign-in form). :func:`require` makes a
route need a scope: without a key 401, with a key lacking the scope 403, each with the reason.

Each key may make ``rate_per_minute`` requests a minute (its own, else
``QUANTBEAT_API_RATE_PER_MINUTE``), counted in Redis so every API process on every host shares
the budget (in-process on the embedded database): a GCRA that lets a tenth of the minute's
budget through at once and then paces; over it, 429 with ``Retry-After`` in whole seconds.

Open mode (``QUANTBEAT_API_OPEN``, for the newcomer's dashboard on the embedded database)
serves requests without a key as the principal ``open`` with the scopes ``read`` and ``run``
(never ``admin``) — only when the API listens on a loopback address, ``QUANTBEAT_ENV`` is not
production, and the request itself comes from this host to a loopback host name (its client
address and its ``Host`` header: a DNS-rebinding page that names another host gets 401).

Cross-site requests. A credential the browser sends by itself — the dashboard's cookie, or
open mode — does not authorize a state-changing request (POST, DELETE …) that another site
started: ``Sec-Fetch-Site`` other than ``same-origin``/``none``, or an ``Origin`` whose host is
not the request's ``Host``, is refused (403). Keys sent in headers are not affected (a page
cannot set them cross-site without CORS, which lists its own origins).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

import redis
import structlog
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from quantbeat.api.problems import ApiProblem
from quantbeat.services.api_keys import KeyRefused, Principal, authenticate

log = structlog.get_logger(__name__)

COOKIE = "qb_key"
OPEN = Principal(
    key_id=0, name="open", prefix="open", scopes=frozenset({"read", "run"}), rate_per_minute=None
)
#: Methods that change nothing (a browser may send them cross-site freely).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class CrossSite(KeyRefused):
    """A state-changing request another site started, carrying only a credential the browser
    adds by itself (cookie, open mode): refused with 403."""


# KEYS[1] = the key's theoretical arrival time; ARGV[1] = interval (s), ARGV[2] = burst
# tolerance (s). Returns "0" when allowed, else the seconds to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return tostring(allow_at - now)
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now + 1) * 1000))
return "0"
"""


class KeyRateLimiter:
    """Per-key request budgets (GCRA): shared through Redis, or in this process when
    ``redis_url`` is ``memory://``. Fails open (logs once) if Redis cannot be reached: a
    limiter outage must not take the API down."""

    def __init__(self, redis_url: str) -> None:
        self._local: dict[str, float] | None = None
        self._lock = threading.Lock()
        self._client: Any = None
        self._script: Any = None
        self._warned = False
        if redis_url.startswith("memory://"):
            self._local = {}
        else:
            self._client = redis.Redis.from_url(
                redis_url, socket_timeout=2, socket_connect_timeout=2
            )
            self._script = self._client.register_script(_GCRA)

    @staticmethod
    def shape(rate_per_minute: int) -> tuple[float, float]:
        """``(interval, tolerance)`` in seconds of a budget of ``rate_per_minute``: a tenth of
        the minute's budget may arrive at once."""
        interval = 60.0 / rate_per_minute
        burst = max(1, rate_per_minute // 10)
        return interval, interval * (burst - 1)

    def hit(self, key: str, rate_per_minute: int) -> float:
        """Spend one request of ``key``'s budget: 0 when allowed, else the seconds until one
        is (nothing spent)."""
        interval, tolerance = self.shape(rate_per_minute)
        if self._local is not None:
            now = time.monotonic()
            with self._lock:
                tat = max(self._local.get(key, 0.0), now)
                if now < tat - tolerance:
                    return tat - tolerance - now
                self._local[key] = tat + interval
                return 0.0
        try:
            return float(
                self._script(keys=[f"quantbeat:api:rate:{key}"], args=[interval, tolerance])
            )
        except redis.RedisError as exc:
            if not self._warned:
                self._warned = True
                log.warning("api.rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
            return 0.0


def presented_key(request: Request) -> tuple[str | None, str]:
    """The API key the request carries and where: ``(key, "header")`` (Authorization
    Bearer, X-API-Key), ``(key, "cookie")`` (the dashboard's), or ``(None, "")``."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), "header"
    header = request.headers.get("x-api-key")
    if header:
        return header.strip(), "header"
    cookie = request.cookies.get(COOKIE)
    return (cookie, "cookie") if cookie else (None, "")


def _hostname(netloc: str) -> str:
    """The host of ``host[:port]`` (brackets of an IPv6 literal dropped), lower case."""
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def is_cross_site(request: Request) -> bool:
    """Whether another site started ``request``: its ``Sec-Fetch-Site`` says so, or its
    ``Origin`` (``null`` included) is not the host the request was sent to."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def is_local_request(request: Request) -> bool:
    """Whether ``request`` comes from this host (loopback client) and names a loopback host
    (its ``Host`` header: ``localhost``, ``127.0.0.1``, ``[::1]``, any port)."""
    client = request.client.host if request.client else ""
    try:
        local_client = ipaddress.ip_address(client).is_loopback
    except ValueError:
        local_client = False
    return local_client and _hostname(request.headers.get("host", "")) in _LOOPBACK_NAMES


def principal_of(request: Request) -> Principal | None:
    """The principal of ``request`` (``None``: no key presented, and not open or not a local
    request).

    Raises:
        KeyRefused: a key was presented and is malformed, unknown, revoked or expired.
        CrossSite: a state-changing request another site started, authorized only by the
            cookie or open mode.
    """
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token, source = presented_key(request)
    ambient = source == "cookie" or (token is None and request.app.state.open)
    if ambient and request.method not in SAFE_METHODS and is_cross_site(request):
        raise CrossSite(
            f"a {request.method} started by another site is refused: send the API key in a "
            "header, or use the dashboard's own form"
        )
    if token is not None:
        principal: Principal | None = authenticate(token)
    else:
        principal = OPEN if request.app.state.open and is_local_request(request) else None
    request.state.principal = principal
    return principal


#: How a client presents its key, for the OpenAPI document (``securitySchemes``: either one
#: on every operation). The key is read by :func:`presented_key`, which also takes the
#: dashboard's cookie; these only declare the two headers.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="Authorization: Bearer qb_… (an API key: quantbeat api-key create)",
    auto_error=False,
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKey",
    description="X-API-Key: qb_… (the same key, in a header of its own)",
    auto_error=False,
)


def require(scope: str) -> Callable[..., Principal]:
    """A dependency: the request's principal, which must hold ``scope``; its rate spent.

    Raises (as problems): 401 without a usable key, 403 without the scope, 429 over the
    key's rate (``Retry-After``).
    """

    def dependency(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
        _header: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    ) -> Principal:
        try:
            principal = principal_of(request)
        except CrossSite as exc:
            raise ApiProblem(403, exc.reason, slug="cross-site") from None
        except KeyRefused as exc:
            raise ApiProblem(
                401,
                exc.reason,
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="quantbeat"'},
            ) from None
        if principal is None:
            raise ApiProblem(
                401,
                "an API key is required: send it in the Authorization header (Bearer "
                "scheme) or in X-API-Key (create one with quantbeat api-key create)",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="quantbeat"'},
            )
        if not principal.allows(scope):
            raise ApiProblem(
                403,
                f"API key {principal.name!r} lacks the scope {scope!r} this needs "
                f"(it has {', '.join(sorted(principal.scopes))})",
                slug="forbidden",
            )
        if not getattr(request.state, "rate_spent", False):
            request.state.rate_spent = True
            rate = principal.rate_per_minute or request.app.state.settings.api_rate_per_minute
            wait = request.app.state.limiter.hit(principal.prefix, rate)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                raise ApiProblem(
                    429,
                    f"API key {principal.name!r} is over its rate of {rate} requests a minute; "
                    f"retry in {retry} s",
                    slug="rate-limited",
                    headers={"Retry-After": str(retry)},
                )
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require("read"))]
Runner = Annotated[Principal, Depends(require("run"))]
Admin = Annotated[Principal, Depends(require("admin"))]
