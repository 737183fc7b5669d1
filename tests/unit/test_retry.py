from __future__ import annotations

import random
import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from quant.errors import PermanentError, ServiceUnavailable, TransientError
from workers.retry import as_transient, backoff_delay


@pytest.mark.parametrize("retries", range(0, 12))
def test_backoff_grows_exponentially_within_jitter_and_never_exceeds_cap(retries: int):
    rng = random.Random(retries)
    draws = [backoff_delay(retries, base=2.0, cap=600.0, rng=rng) for _ in range(200)]
    step = min(600.0, 2.0 * 2**retries)
    assert min(draws) >= step / 2
    assert max(draws) <= step
    assert len(set(draws)) > 100  # jittered, not a constant


def test_retry_after_is_a_floor_but_the_cap_still_holds():
    rng = random.Random(1)
    assert backoff_delay(0, base=2.0, cap=600.0, retry_after=30.0, rng=rng) == 30.0
    assert backoff_delay(0, base=2.0, cap=600.0, retry_after=5000.0, rng=rng) == 600.0


def test_negative_retries_rejected():
    with pytest.raises(ValueError, match="-1"):
        backoff_delay(-1, base=1.0, cap=10.0)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TransientError("x"), True),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked")), True),
        (OperationalError("SELECT", {}, sqlite3.OperationalError('near "(": syntax error')), False),
        (PermanentError("x"), False),
        (ValueError("bug"), False),
        (KeyError("bug"), False),
    ],
)
def test_as_transient_classifies(exc: BaseException, transient: bool):
    mapped = as_transient(exc)
    assert (mapped is not None) is transient
    if transient and not isinstance(exc, TransientError):
        assert isinstance(mapped, ServiceUnavailable)
