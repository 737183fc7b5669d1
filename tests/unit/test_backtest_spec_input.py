"""What a backtest spec may hold before anything touches a store: text PostgreSQL can store
(no NUL, no lone surrogate, no non-finite number in its JSON), bounded strings and a start a
warm-up can reach (:class:`quantbeat.services.backtests.BacktestSpec`,
:func:`db.store.unstorable_at`). Pure: no services."""

from __future__ import annotations

import math
from typing import Any

import pytest

from db.store import unstorable_at
from quant.errors import ValidationError
from quantbeat.services.backtests import idempotent_run_id, parse_spec

SPEC = {
    "strategy": "sma_crossover",
    "instruments": ["KOSPI:005930"],
    "start": "2026-01-05",
    "end": "2026-11-20",
}


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("fine", None),
        ({"a": ["x", {"b": 1.5}]}, None),
        ("a\x00b", ""),
        (["ok", "bad\x00"], "1"),
        ({"a": {"b": ["x", "\ud800"]}}, "a.b.1"),
        ({"a\x00": 1}, ""),
        ({"p": {"k\x00": 1}}, "p"),
        ({"p": math.nan}, "p"),
        ({"p": [1.0, math.inf]}, "p.1"),
    ],
)
def test_unstorable_at_names_the_first_place_postgresql_refuses(value: Any, where: str | None):
    assert unstorable_at(value) == where


def test_unstorable_at_prefixes_the_given_path():
    assert unstorable_at(["x", "y\x00"], "instruments") == "instruments.1"


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"instruments": ["KOSPI:00\x000"]}, "instruments", "instruments.0 holds a NUL"),
        ({"label": "a\ud800"}, "label", "valid string"),  # pydantic refuses it itself
        ({"params": {"x": "a\ud800"}}, "params", "params.x holds"),
        ({"params": {"fast": math.inf}}, "params", "params.fast holds"),
        ({"execution": {"f\x00": 1}}, "execution", "execution holds"),
        ({"initial_cash": math.inf}, "initial_cash", "finite number"),
        ({"start": "1899-12-31"}, "start", "greater than or equal to 1900-01-01"),
        ({"instruments": ["X" * 65]}, "instruments.0", "at most 64 characters"),
        ({"instruments": [""]}, "instruments.0", "at least 1 character"),
    ],
)
def test_a_spec_with_unstorable_or_unbounded_input_is_refused_naming_the_field(
    change: dict[str, Any], field: str, says: str
):
    with pytest.raises(ValidationError) as info:
        parse_spec({**SPEC, **change})
    assert info.value.field == field
    assert says in str(info.value)


def test_a_long_input_is_shown_shortened_in_the_message():
    with pytest.raises(ValidationError) as info:
        parse_spec({**SPEC, "instruments": "X" * 5_000})
    assert len(str(info.value)) < 400


def test_an_idempotency_key_stands_for_one_run_per_owner():
    first = idempotent_run_id("api-key:1", "nightly-1")
    assert first == idempotent_run_id("api-key:1", "nightly-1")
    assert len(first) == 32
    assert first != idempotent_run_id("api-key:2", "nightly-1")
    assert first != idempotent_run_id("api-key:1", "nightly-2")


def test_a_run_is_annualized_by_its_calendar_and_never_mixes_them():
    from quantbeat.services.backtests import periods_per_year

    assert periods_per_year(["UPBIT:KRW-BTC", "UPBIT:KRW-ETH"]) == 365
    assert periods_per_year(["KOSPI:005930", "KOSDAQ:035720"]) == 252
    with pytest.raises(ValidationError, match="either 24/7 crypto markets or KRX") as caught:
        periods_per_year(["KOSPI:005930", "UPBIT:KRW-BTC"])
    assert caught.value.field == "instruments"
    assert caught.value.value == ["UPBIT:KRW-BTC"]
