"""API keys of the HTTP API: created, listed, revoked and checked.

A key looks like ``qb_<prefix>_<secret>``: ``prefix`` (10 lowercase hex characters) is public
and finds the key's row; ``secret`` is 36 random bytes (288 bits, URL-safe base64) and only
the whole key's SHA-256 (hex) is stored — a key with this much entropy needs no slow password
hash, and a stolen table gives nobody a usable key. The key is shown once, by :func:`create`.

Scopes: ``read`` (every GET), ``run`` (submit and cancel backtests, which implies ``read``) and
``admin`` (jobs, dead letters and everything else). A revoked or expired key is refused with the
reason; :func:`authenticate` caches a checked key for :data:`CACHE_SECONDS`, so a revocation is
in force on every API process within that many seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select, update

from db.engine import session_scope
from db.models import ApiKey
from db.store import as_utc
from quant.errors import NotFound, PermanentError, ValidationError

log = structlog.get_logger(__name__)

#: Scopes a key may hold, each including the ones after it.
SCOPES = ("admin", "run", "read")
_IMPLIES = {"admin": {"admin", "run", "read"}, "run": {"run", "read"}, "read": {"read"}}
_TOKEN = re.compile(r"^qb_(?P<prefix>[0-9a-f]{10})_(?P<secret>[A-Za-z0-9_-]{32,64})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Seconds a checked key stays trusted without reading its row again.
CACHE_SECONDS = 5.0
#: Seconds between two ``last_used_at`` writes of one key.
TOUCH_SECONDS = 60.0


class KeyRefused(PermanentError):
    """The presented key cannot be used; ``reason`` says why (shown to the client)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the key's id, name and public prefix (rate budgets are kept
    under it), its effective scopes, its rate (per minute, ``None``: the setting's)."""

    key_id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    rate_per_minute: int | None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_key(token: str) -> str:
    """The stored form of ``token``: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: Iterable[str], *, field: str = "scopes") -> list[str]:
    """``scopes`` as a sorted list, each known.

    Raises:
        quant.errors.ValidationError: empty, or a scope that is not read, run or admin.
    """
    wanted = sorted({str(s).strip().lower() for s in scopes if str(s).strip()})
    if not wanted:
        raise ValidationError(f"{field}: give at least one of read, run, admin", field=field)
    unknown = [s for s in wanted if s not in _IMPLIES]
    if unknown:
        raise ValidationError(
            f"{field}: unknown scope {unknown[0]!r} (read, run or admin)",
            field=field,
            value=unknown[0],
        )
    return wanted


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes ``scopes`` grant, implied ones included (admin ⊃ run ⊃ read)."""
    out: set[str] = set()
    for scope in scopes:
        out |= _IMPLIES.get(str(scope), set())
    return frozenset(out)


def _describe(row: ApiKey, now: dt.datetime) -> dict[str, Any]:
    expires = as_utc(row.expires_at) if row.expires_at else None
    revoked = as_utc(row.revoked_at) if row.revoked_at else None
    state = "revoked" if revoked else "expired" if expires and expires <= now else "active"
    return {
        "name": row.name,
        "prefix": row.prefix,
        "scopes": list(row.scopes or []),
        "rate_per_minute": row.rate_per_minute,
        "state": state,
        "created_at": as_utc(row.created_at).isoformat() if row.created_at else None,
        "expires_at": expires.isoformat() if expires else None,
        "revoked_at": revoked.isoformat() if revoked else None,
        "last_used_at": as_utc(row.last_used_at).isoformat() if row.last_used_at else None,
    }


def create(
    name: str,
    scopes: Iterable[str],
    *,
    rate_per_minute: int | None = None,
    expires_days: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new key named ``name``: ``(the key, its description)``. The key is not stored and
    cannot be shown again.

    Raises:
        quant.errors.ValidationError: a bad name, scope, rate (≥ 1) or expiry (> 0 days), or
            a name already taken.
    """
    if not _NAME.match(name or ""):
        raise ValidationError(
            f"name: {name!r} is not a key name (1-64 letters, digits, '_', '.', '-')",
            field="name",
            value=name,
        )
    wanted = check_scopes(scopes)
    if rate_per_minute is not None and rate_per_minute < 1:
        raise ValidationError(
            f"rate: {rate_per_minute!r} is not a rate (requests per minute ≥ 1)",
            field="rate",
            value=rate_per_minute,
        )
    if expires_days is not None and not expires_days > 0:
        raise ValidationError(
            f"expires: {expires_days!r} is not a number of days > 0",
            field="expires",
            value=expires_days,
        )
    prefix = secrets.token_hex(5)
    token = f"qb_{prefix}_{secrets.token_urlsafe(36)}"
    now = _utcnow()
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=hash_key(token),
        scopes=wanted,
        rate_per_minute=rate_per_minute,
        expires_at=now + dt.timedelta(days=expires_days) if expires_days else None,
        created_at=now,
        updated_at=now,
    )
    with session_scope() as session:
        if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise ValidationError(
                f"name: a key named {name!r} exists already", field="name", value=name
            )
        session.add(row)
        session.flush()
        return token, _describe(row, now)


def list_keys() -> list[dict[str, Any]]:
    """Every key (revoked and expired ones included), oldest first — never the key itself."""
    now = _utcnow()
    with session_scope() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.id)).all()
        return [_describe(r, now) for r in rows]


def revoke(name: str) -> dict[str, Any]:
    """Revoke the key ``name`` (kept, refused from now on; again: no change).

    Raises:
        quant.errors.NotFound: no key has that name.
    """
    now = _utcnow()
    with session_scope() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.name == name))
        if row is None:
            raise NotFound(f"no API key named {name!r} (see quantbeat api-key list)")
        if row.revoked_at is None:
            row.revoked_at = now
            row.updated_at = now
        described = _describe(row, now)
    forget_cache()
    return described


# --- checking a presented key -----------------------------------------------------------------
_cache: dict[str, tuple[float, Principal | KeyRefused]] = {}
_touched: dict[str, float] = {}
_lock = threading.Lock()


def forget_cache() -> None:
    """Drop every cached check (this process)."""
    with _lock:
        _cache.clear()


def authenticate(token: str) -> Principal:
    """The principal ``token`` stands for.

    Raises:
        KeyRefused: malformed, unknown, revoked or expired (the reason says which; never
            echoes the key).
    """
    match = _TOKEN.match(token or "")
    if match is None:
        raise KeyRefused("malformed API key (expected qb_<prefix>_<secret>)")
    digest = hash_key(token)
    now_m = time.monotonic()
    with _lock:
        hit = _cache.get(digest)
    if hit is not None and now_m - hit[0] < CACHE_SECONDS:
        found = hit[1]
    else:
        found = _check(match["prefix"], digest)
        with _lock:
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[digest] = (now_m, found)
    if isinstance(found, KeyRefused):
        raise found
    _touch(found, now_m)
    return found


def _check(prefix: str, digest: str) -> Principal | KeyRefused:
    now = _utcnow()
    with session_scope() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return KeyRefused("unknown API key")
        if row.revoked_at is not None:
            return KeyRefused(f"API key {row.name!r} was revoked")
        if row.expires_at is not None and as_utc(row.expires_at) <= now:
            return KeyRefused(
                f"API key {row.name!r} expired at {as_utc(row.expires_at):%Y-%m-%d %H:%M} UTC"
            )
        return Principal(
            key_id=row.id,
            name=row.name,
            prefix=row.prefix,
            scopes=effective_scopes(row.scopes or []),
            rate_per_minute=row.rate_per_minute,
        )


def _touch(principal: Principal, now_m: float) -> None:
    """Record when the key was last used, at most every :data:`TOUCH_SECONDS` per process
    (per key prefix: unique, unlike an id a truncated table hands out again); never fails the
    request."""
    with _lock:
        last = _touched.get(principal.prefix)
        if last is not None and now_m - last < TOUCH_SECONDS:
            return
        _touched[principal.prefix] = now_m
    key_id = principal.key_id
    try:
        with session_scope() as session:
            session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=_utcnow())
            )
    except Exception as exc:  # a missed usage stamp must not refuse the request
        log.warning("api_key.touch_failed", error=f"{type(exc).__name__}: {exc}")
