"""API keys' scope rules and the per-key rate limiter's shape (no services: the in-process
limiter the embedded profile uses; the Redis one is tested in tests/integration/test_api.py)."""

from __future__ import annotations

import pytest

from quant.errors import ValidationError
from quantbeat.api.security import KeyRateLimiter
from quantbeat.services.api_keys import (
    KeyRefused,
    authenticate,
    check_scopes,
    effective_scopes,
    hash_key,
)


def test_scopes_are_checked_and_imply_the_lesser_ones() -> None:
    assert check_scopes([" Run", "read", "run"]) == ["read", "run"]
    with pytest.raises(ValidationError, match="unknown scope 'write'") as err:
        check_scopes(["read", "write"])
    assert err.value.field == "scopes"
    assert err.value.value == "write"
    with pytest.raises(ValidationError, match="at least one"):
        check_scopes([" "])
    assert effective_scopes(["admin"]) == {"admin", "run", "read"}
    assert effective_scopes(["run"]) == {"run", "read"}
    assert effective_scopes(["read"]) == {"read"}


@pytest.mark.parametrize(
    "token", ["", "qb_", "qb_XYZ_" + "a" * 40, "qb_0123456789_short", "Bearer x"]
)
def test_malformed_keys_are_refused_without_a_database(token: str) -> None:
    with pytest.raises(KeyRefused, match="malformed API key"):
        authenticate(token)


def test_the_hash_is_sha256_hex_and_never_the_key() -> None:
    token = "qb_0123456789_" + "k" * 48
    digest = hash_key(token)
    assert len(digest) == 64
    assert token not in digest
    assert hash_key(token) == digest


def test_a_budget_lets_a_tenth_through_at_once_then_paces() -> None:
    limiter = KeyRateLimiter("memory://")
    assert KeyRateLimiter.shape(600) == pytest.approx((0.1, 5.9))
    granted = [limiter.hit("k", 600) == 0 for _ in range(61)]
    assert granted.count(True) == 60  # the burst of 60 (a tenth of 600), then refused
    wait = limiter.hit("k", 600)
    assert 0 < wait <= 0.1 + 1e-6
    assert limiter.hit("other", 600) == 0  # budgets are per key
    # A budget under ten a minute still lets one request through.
    assert KeyRateLimiter.shape(6) == pytest.approx((10.0, 0.0))
    assert limiter.hit("slow", 6) == 0
    assert limiter.hit("slow", 6) == pytest.approx(10.0, abs=0.1)
