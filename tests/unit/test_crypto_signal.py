"""The hourly crypto signal's pure parts (issue 23): timeframe views, the offline rules, the
Gemini answer schema and the outcome of a signal."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pydantic
import pytest

from quant.crypto.signal import (
    MIN_BARS,
    RULE_MAX,
    CryptoDecision,
    SignalInput,
    build_prompt,
    offline_decision,
    outcome,
    view,
)
from quant.errors import ValidationError

AT = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)


def _closes(step: float, n: int = 120, start: float = 5e7) -> np.ndarray:
    """A trend that gathers pace in price (so its MACD histogram has the trend's sign)."""
    t = np.arange(n)
    return start * (1 + step * (t + t**2 / 60))


def _inputs(step: float, *, unusual: bool | None = False, only_hourly: bool = False) -> SignalInput:
    views = {i: view(i, _closes(step)) for i in ("60m", "240m", "1d")}
    if only_hourly:
        views["240m"] = views["1d"] = None
    hourly = views["60m"]
    assert hourly is not None
    return SignalInput("KRW-BTC", AT, hourly.close, views, 0.4, 1.1, unusual)


def test_a_view_needs_enough_bars_and_labels_the_trend() -> None:
    assert view("60m", _closes(0.001, MIN_BARS - 1)) is None
    up = view("60m", _closes(0.001))
    down = view("240m", _closes(-0.001))
    assert up is not None
    assert down is not None
    assert (up.trend, down.trend) == ("up", "down")
    assert up.close > up.sma20 > up.sma50
    closes = _closes(0.001)
    assert up.change == pytest.approx(closes[-1] / closes[-25] - 1)
    assert up.macd_hist > 0
    assert down.macd_hist < 0


def test_a_view_refuses_bad_input_by_name() -> None:
    with pytest.raises(ValidationError) as caught:
        view("15m", _closes(0.001))
    assert caught.value.field == "interval"
    bad = _closes(0.001)
    bad[10] = -1.0
    with pytest.raises(ValidationError, match="not a positive price"):
        view("60m", bad)


def test_the_rules_buy_an_uptrend_and_sell_a_downtrend() -> None:
    buy = offline_decision(_inputs(0.002))
    sell = offline_decision(_inputs(-0.002))
    assert buy.action == "BUY"
    assert sell.action == "SELL"
    assert 0.5 < buy.confidence <= 0.9
    assert buy.reasons[0].startswith("Rule score +")
    assert any("60m: trend up" in r for r in buy.reasons)


def test_an_unusual_hour_turns_a_buy_into_hold_but_not_a_sell() -> None:
    held = offline_decision(_inputs(0.002, unusual=True))
    assert held.action == "HOLD"
    assert "unusual volatility" in held.risk_flags
    assert offline_decision(_inputs(-0.002, unusual=True)).action == "SELL"


def test_missing_timeframes_are_flagged_and_weaken_the_vote() -> None:
    decision = offline_decision(_inputs(0.002, only_hourly=True))
    assert {"240m history short", "1d history short"} <= set(decision.risk_flags)
    # the hourly view alone (weight 1 of RULE_MAX) cannot reach the BUY threshold
    assert 1.5 / RULE_MAX < 0.4
    assert decision.action == "HOLD"


def test_the_gemini_schema_refuses_what_it_does_not_describe() -> None:
    ok = CryptoDecision.model_validate_json(
        '{"action": "SELL", "confidence": 0.7, "reasons": ["falling"], "risk_flags": []}'
    )
    assert ok.action == "SELL"
    for bad in (
        '{"action": "SHORT", "confidence": 0.7, "reasons": ["x"], "risk_flags": []}',
        '{"action": "BUY", "confidence": 1.5, "reasons": ["x"], "risk_flags": []}',
        '{"action": "BUY", "confidence": 0.5, "reasons": [], "risk_flags": []}',
        '{"action": "BUY", "confidence": 0.5, "reasons": ["x"], "risk_flags": [], "extra": 1}',
        '{"action": "BUY", "confidence": 0.5, "reasons": ["' + "x" * 201 + '"], "risk_flags": []}',
    ):
        with pytest.raises(pydantic.ValidationError):
            CryptoDecision.model_validate_json(bad)
    schema = CryptoDecision.model_json_schema()
    assert schema["properties"]["action"]["enum"] == ["BUY", "SELL", "HOLD"]


def test_the_prompt_carries_the_figures_and_is_deterministic() -> None:
    inputs = _inputs(0.002)
    prompt = build_prompt(inputs)
    assert prompt == build_prompt(inputs)
    assert "KRW-BTC" in prompt
    assert '"move_sigma": 0.4' in prompt
    assert "crypto-signal-v1" in prompt


def test_outcomes_are_signed_by_the_action_and_complete_after_a_day() -> None:
    times = [AT + dt.timedelta(hours=h) for h in range(1, 25)]
    closes = [100.0 * (1 + 0.01 * h) for h in range(1, 25)]
    buy = outcome("BUY", 100.0, AT, times, closes)
    assert buy.returns[1] == pytest.approx(0.01)
    assert buy.returns[4] == pytest.approx(0.04)
    assert buy.returns[24] == pytest.approx(0.24)
    assert buy.complete
    sell = outcome("SELL", 100.0, AT, times[:4], closes[:4])
    assert sell.edges[1] == pytest.approx(-0.01)
    assert sell.returns[24] is None
    assert not sell.complete
    hold = outcome("HOLD", 100.0, AT, times, closes)
    assert hold.edges == {1: None, 4: None, 24: None}
    with pytest.raises(ValidationError):
        outcome("BUY", 0.0, AT, times, closes)
