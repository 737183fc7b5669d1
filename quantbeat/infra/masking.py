"""Masking of secrets, keys and balances before anything is logged or stored.

Two entry points, after seed 001's ``mask_sensitive``:

* :func:`mask_text` rewrites free text: ``key=value`` / ``"key": value`` pairs whose key looks
  sensitive, passwords inside URLs (``redis://:pw@host``), and bearer tokens.
* :func:`mask_value` walks JSON-like structures (dicts, lists, tuples) and masks the values of
  sensitive keys wholesale, and any string through :func:`mask_text`.

Both are pure and never raise on odd input; masking is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

#: Key names (case-insensitive, ``-``/``_`` agnostic) whose values are secret: any key containing
#: one of these parts ...
SENSITIVE_KEY_PARTS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "credential",
    "cookie",
    "balance",
    "prompt",
)
#: ... or equal to one of these (account balances per currency, as in seed 001, and short names
#: that would match too much as substrings) ...
SENSITIVE_KEYS_EXACT = frozenset({"pw", "pwd", "auth", "krw", "btc", "sessionid", "session_id"})
#: ... or ending in one of these.
SENSITIVE_KEY_SUFFIXES: tuple[str, ...] = ("_pw", "_pwd", "_auth", "_balance")

#: Keys that contain a sensitive part but are not secret (counts, names of things).
_ALLOWED_KEYS = frozenset(
    {
        "auth_type",
        "session_id_count",
        "tokens_in",
        "tokens_out",
        "token_count",
        "prompt_version",
        "prompt_tokens",
    }
)

# Any ``key: value`` / ``key=value`` pair, optionally quoted; the value ends at a quote, comma,
# brace or space. Whether it is masked is decided by is_sensitive_key, not by the pattern.
_PAIR = re.compile(
    r"""(?x)
    (?P<key>["']?[A-Za-z_][\w.-]*["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<value>"[^"]*"|'[^']*'|[^\s,;&}\]]+)
    """
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# Google API keys have a recognisable shape; mask them wherever they appear.
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_-]{35}")


def _norm(key: str) -> str:
    return key.strip("\"'").lower().replace("-", "_")


def is_sensitive_key(key: str) -> bool:
    """True when a mapping key names a secret, credential or balance."""
    k = _norm(key)
    if k in _ALLOWED_KEYS:
        return False
    return (
        k in SENSITIVE_KEYS_EXACT
        or k.endswith(SENSITIVE_KEY_SUFFIXES)
        or any(part in k for part in SENSITIVE_KEY_PARTS)
    )


def _mask_pair(match: re.Match[str]) -> str:
    key = match.group("key")
    if not is_sensitive_key(key):
        return match.group(0)
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{key}{match.group('sep')}{quote}{MASK}{quote}"


def mask_text(text: str) -> str:
    """Return ``text`` with secrets, keys, URL passwords and balances replaced by ``***``."""
    if not text:
        return text
    out = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    out = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
    out = _GOOGLE_KEY.sub(MASK, out)
    return _PAIR.sub(_mask_pair, out)


def mask_value(value: Any) -> Any:
    """Return a copy of a JSON-like value with sensitive entries masked.

    Mappings keep their keys; the value of a sensitive key becomes ``"***"`` whatever its type
    (``None`` stays ``None`` so absence is still visible). Strings go through :func:`mask_text`.
    Other scalars are returned unchanged.
    """
    if isinstance(value, Mapping):
        masked: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_sensitive_key(key) and item is not None:
                masked[key] = MASK
            else:
                masked[key] = mask_value(item)
        return masked
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value
