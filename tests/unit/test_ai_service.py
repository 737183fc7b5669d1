"""The AI analysis service's argument parsing and task orchestration, without a database or a
broker: strategies come from the one registry, the task bodies only parse and delegate."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import quantbeat.services.ai as ai
import tasks.ai
from quant.errors import RateLimited, ValidationError
from quantbeat.infra.settings import reset_settings
from quantbeat.services.strategies import (
    Evaluation,
    ScanStrategy,
    Strategy,
    register,
    scan_strategy_names,
    unregister,
)
from workers.app import app

DAY = dt.date(2026, 11, 20)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("closing_bet", "closing_bet"), (" Closing-Bet ", "closing_bet"), ("VCP", "vcp")],
)
def test_analysis_strategy_names_a_registered_strategy(given: str, expected: str) -> None:
    assert ai.analysis_strategy(given) == expected


@pytest.mark.parametrize("bad", ["nope", "", 42, None])
def test_an_unknown_strategy_is_refused_naming_the_known_ones(bad: object) -> None:
    with pytest.raises(ValidationError, match="known: ") as caught:
        ai.analysis_strategy(bad)
    assert caught.value.field == "strategy"
    for name in scan_strategy_names():
        assert name in str(caught.value)


def test_a_strategy_registered_in_the_registry_can_be_analysed() -> None:
    throwaway = ScanStrategy(
        name="test_ai_throwaway",
        label="t",
        evaluator=Strategy(lambda inputs: Evaluation(candidate=False)),
    )
    register(throwaway)
    try:
        assert ai.analysis_strategy("test-ai-throwaway") == "test_ai_throwaway"
    finally:
        unregister("test_ai_throwaway")
    with pytest.raises(ValidationError):
        ai.analysis_strategy("test_ai_throwaway")


@pytest.mark.parametrize("bad", [-1, ai.MAX_TOP + 1, 2.5, "3", True])
def test_top_must_be_an_integer_in_range(bad: object) -> None:
    with pytest.raises(ValidationError, match="top must be an integer") as caught:
        ai.analysis_top(bad)
    assert caught.value.field == "top"


def test_top_defaults_to_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTBEAT_AI_TOP_N", "7")
    reset_settings()
    try:
        assert ai.analysis_top(None) == 7
        assert ai.analysis_top(0) == 0
    finally:
        monkeypatch.undo()
        reset_settings()


def test_analyze_candidates_with_nothing_to_analyse_starts_no_chord(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    announced: list[tuple[Any, ...]] = []
    monkeypatch.setattr(ai, "_announce_unanalysed", lambda *a: announced.append(a))
    result = tasks.ai.analyze_candidates.run("Closing-Bet", DAY.isoformat(), 0)
    # no analysis means no re-decision: the stored decision is announced as it is
    assert announced == [("closing_bet", DAY, "final", None)]
    assert result == {
        "strategy": "closing_bet",
        "trade_date": DAY.isoformat(),
        "phase": "final",
        "instruments": [],
        "chord": None,
    }


def test_analyze_candidates_refuses_an_unknown_strategy_before_anything_else() -> None:
    with pytest.raises(ValidationError, match="unknown strategy"):
        tasks.ai.analyze_candidates.run("momentum", DAY.isoformat(), 0)


class _Sent:
    id = "rescan-id"


def test_finishing_closing_bet_analyses_rescans_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    def send_task(name: str, **options: Any) -> _Sent:
        sent.append((name, options["kwargs"]))
        return _Sent()

    monkeypatch.setattr(app, "send_task", send_task)
    completed: list[tuple[Any, ...]] = []
    monkeypatch.setattr(ai, "_record_completed", lambda *a: completed.append(a))
    results = [{"status": "succeeded"}, {"status": "failed"}, {"status": "succeeded"}]
    summary = tasks.ai.finish.run(results, "closing_bet", DAY.isoformat())
    assert completed == [(results, "closing_bet", DAY, "final")]
    assert summary == {
        "strategy": "closing_bet",
        "trade_date": DAY.isoformat(),
        "analysed": 3,
        "succeeded": 2,
        "failed": 1,
        "rescan": "rescan-id",
    }
    assert sent == [
        ("quantbeat.scans.run", {"strategy": "closing_bet", "trade_date": "2026-11-20"})
    ]
    sent.clear()
    assert tasks.ai.finish.run(results, "vcp", DAY.isoformat())["rescan"] is None
    assert sent == []


@pytest.mark.parametrize("last", [False, True])
def test_a_transient_error_is_recorded_as_failed_only_on_the_last_attempt(
    monkeypatch: pytest.MonkeyPatch, last: bool
) -> None:
    recorded: list[tuple[Any, ...]] = []

    def throttled(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RateLimited("429 from the provider")

    def record(*args: Any) -> dict[str, Any]:
        recorded.append(args)
        return {}

    monkeypatch.setattr(ai, "analyze", throttled)
    monkeypatch.setattr(ai, "record_failure", record)
    with pytest.raises(RateLimited):
        ai.analyze_attempt("KOSPI:005930", DAY, "vcp", attempt=4, last=last)
    if last:
        ((instrument, day, strategy, _analyzer, error, attempt),) = recorded
        assert (instrument, day, strategy, attempt) == ("KOSPI:005930", DAY, "vcp", 4)
        assert error.startswith("retries exhausted: ")
    else:
        assert recorded == []
