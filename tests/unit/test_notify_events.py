"""Event schemas (versions upgraded on read), subscription filters and the retry policy."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from quant.errors import ValidationError
from quant.notify.events import (
    CURRENT,
    EVENT_TYPES,
    Envelope,
    GateChanged,
    SignalsPublished,
    grade_rank,
    parse,
    validate_payload,
)
from quant.notify.filters import Filters, select
from quant.notify.policy import RetryPolicy

AT = dt.datetime(2026, 12, 4, 6, 10, tzinfo=dt.UTC)


def _signals(**extra: Any) -> dict[str, Any]:
    return {
        "strategy": "closing_bet",
        "trade_date": "2026-12-04",
        "phase": "preliminary",
        "count": 3,
        "signals": [
            {"code": "005930", "market": "KOSPI", "grade": "S", "entry": 71_000.0},
            {"code": "035720", "market": "KOSDAQ", "grade": "B", "entry": 40_000.0},
            {"code": "000660", "market": "KOSPI", "grade": None, "entry": 180_000.0},
        ],
        **extra,
    }


def _envelope(type_: str, payload: dict[str, Any], version: int | None = None) -> Envelope:
    return parse(id="e-1", type=type_, version=version or CURRENT[type_], at=AT, payload=payload)


def test_every_current_type_has_a_schema_and_validate_returns_json_data() -> None:
    assert "signals.published" in EVENT_TYPES
    assert "daily.summary" in EVENT_TYPES
    data = validate_payload("signals.published", _signals())
    assert data["trade_date"] == "2026-12-04"  # JSON-ready (a string, not a date)
    assert data["signals"][0]["reasons"] == []


def test_a_bad_payload_names_the_field_and_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"signals\.published v1: payload field count"):
        validate_payload("signals.published", {**_signals(), "count": -1})
    with pytest.raises(ValidationError, match=r"unknown event type 'signal\.published'"):
        validate_payload("signal.published", {})
    with pytest.raises(ValidationError, match=r"event e-1: unknown type/version"):
        parse(id="e-1", type="gate.changed", version=9, at=AT, payload={})


def test_a_version_1_gate_event_is_read_as_the_current_version() -> None:
    """Rows written before the outbox (market_events.gate_changed) stay readable."""
    old = {"from": "GREEN", "to": "RED", "from_as_of": "2026-12-03T15:40:00+09:00",
           "score": 31.0, "reason": "USD/KRW 1,460.0 ≥ 1,450", "simulated": True}  # fmt: skip
    env = parse(id="e-2", type="gate.changed", version=1, at=AT, payload=old)
    assert env.version == CURRENT["gate.changed"] == 2
    assert isinstance(env.payload, GateChanged)
    assert (env.payload.previous, env.payload.current) == ("GREEN", "RED")
    assert env.payload.previous_as_of == "2026-12-03T15:40:00+09:00"
    assert env.payload.as_of == AT.isoformat()
    with pytest.raises(ValidationError, match=r"event e-3 \(gate.changed v1\): payload field to"):
        parse(id="e-3", type="gate.changed", version=1, at=AT, payload={"from": "GREEN"})


def test_filters_narrow_signals_to_the_grade_and_markets_asked_for() -> None:
    env = _envelope("signals.published", _signals())
    assert select(env, Filters(), subscription="s") is env
    graded = select(env, Filters(min_grade="a"), subscription="s")
    assert graded is not None
    assert [s.code for s in graded.payload.signals] == ["005930"]
    assert graded.payload.count == 3  # the count of the whole decision is kept
    kosdaq = select(env, Filters(markets=["kosdaq"]), subscription="s")
    assert kosdaq is not None
    assert [s.code for s in kosdaq.payload.signals] == ["035720"]
    assert select(env, Filters(markets=["KOSDAQ"], min_grade="S"), subscription="s") is None
    assert select(env, Filters(strategies=["vcp"]), subscription="s") is None
    assert select(env, Filters(event_types=["signals.*"]), subscription="s") is env
    assert select(env, Filters(event_types=["gate.changed"]), subscription="s") is None


def test_strategy_and_market_filters_let_events_without_them_through() -> None:
    gate = _envelope("gate.changed", {"previous": "GREEN", "current": "YELLOW"})
    assert select(gate, Filters(strategies=["vcp"], markets=["KOSPI"]), subscription="s") is gate


def test_a_test_event_reaches_only_the_subscription_it_names() -> None:
    env = _envelope("notify.test", {"subscription": "ops"})
    assert select(env, Filters(event_types=["gate.changed"]), subscription="ops") is env
    assert select(env, Filters(), subscription="other") is None


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"event_types": ["signal.published"]}, "unknown event type 'signal.published'"),
        ({"event_types": ["nothing.*"]}, "no event type starts with 'nothing.'"),
        ({"min_grade": "Z"}, "min_grade must be one of S, A, B, C"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Filters.model_validate(filters)


def test_grades_rank_s_first_and_unknown_last() -> None:
    assert [grade_rank(g) for g in ("S", "a", "B", "C", None, "X")] == [0, 1, 2, 3, 4, 4]


def test_the_retry_policy_backs_off_exponentially_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=4, base=2.0, cap=10.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.delay(1, retry_after=30.0) == 30.0
    assert not policy.exhausted(3)
    assert policy.exhausted(4)
    with pytest.raises(ValidationError, match="max_attempts must be >= 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError, match="cap must be >= base"):
        RetryPolicy(base=5.0, cap=1.0)


def test_signal_payload_defaults() -> None:
    payload = SignalsPublished.model_validate({"strategy": "vcp", "trade_date": "2026-12-04",
                                               "count": 0})  # fmt: skip
    assert payload.phase == "final"
    assert payload.signals == []
    assert payload.tradeable is None


def test_the_daily_summary_reads_the_track_records_kpi_names() -> None:
    from quant.kpi import kpis
    from quant.notify.events import DailySummary
    from quantbeat.services.announce import kpi_lines

    report = {"groups": {"vcp": kpis([0.10, -0.05, 0.01]).as_dict()}}
    (line,) = kpi_lines(report)
    assert line["closed"] == 3
    assert line["avg_return"] == pytest.approx(0.02)
    assert line["win_rate"] == pytest.approx(2 / 3)
    assert line["profit_factor"] == pytest.approx(0.11 / 0.05)
    DailySummary.model_validate({"trade_date": "2026-12-04", "kpis": [line]})  # fits the schema
