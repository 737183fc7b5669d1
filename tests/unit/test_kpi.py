"""Track-record KPIs (quant.kpi) on hand tables."""

from __future__ import annotations

import datetime as dt

import pytest

from quant.errors import ValidationError
from quant.kpi import Record, kpis, summarize

D = dt.date


def test_kpis_of_a_hand_table() -> None:
    # +4 %, −2 %, −1 %, 0 %, +3 %, −3 %: wins 2 of 6 (0 is no win)
    out = kpis([0.04, -0.02, -0.01, 0.0, 0.03, -0.03])
    assert (out.count, out.wins) == (6, 2)
    assert out.win_rate == pytest.approx(2 / 6)
    assert out.mean == pytest.approx(0.01 / 6)
    assert out.median == pytest.approx(-0.005)  # (−0.01 + 0.0) / 2
    assert out.profit_factor == pytest.approx(0.07 / 0.06)
    # 2/6 × 3.5 % − 4/6 × 1.5 % = 0.01/6
    assert out.expectancy == pytest.approx(2 / 6 * 0.035 - 4 / 6 * 0.015)
    assert out.max_consecutive_losses == 2  # −2 %, −1 % (the 0 % between breaks the run)


def test_kpis_edge_cases() -> None:
    empty = kpis([])
    assert (empty.count, empty.win_rate, empty.mean, empty.profit_factor) == (0, None, None, None)
    assert empty.max_consecutive_losses == 0
    no_loss = kpis([0.01, 0.02])
    assert (no_loss.profit_factor, no_loss.win_rate, no_loss.max_consecutive_losses) == (
        None,
        1.0,
        0,
    )
    with pytest.raises(ValidationError, match="nan"):
        kpis([float("nan")])


def _r(i: int, strategy: str, state: str, net: float | None, exit_: D | None, **kw: str) -> Record:
    return Record(i, strategy, D(2026, 1, 5), state, net, exit_, **kw)


RECORDS = [
    _r(1, "vcp", "closed", 0.10, D(2026, 2, 10), grade="Strong", market="KOSPI", gate="GREEN"),
    _r(2, "vcp", "closed", -0.05, D(2026, 1, 20), grade="Good", market="KOSDAQ", gate="RED"),
    _r(3, "closing_bet", "closed", 0.02, D(2026, 1, 6), grade="S", market="KOSPI"),
    _r(4, "closing_bet", "closed", -0.03, D(2026, 1, 7), grade="A", market="KOSPI", gate="GREEN"),
    _r(5, "closing_bet", "open", None, None, grade="S", market="KOSDAQ"),
    _r(6, "vcp", "expired", None, None, grade="Good", market="KOSPI"),
    _r(7, "vcp", "void", None, None, market="KOSPI"),
]


def test_summaries_by_each_group() -> None:
    everything = summarize(RECORDS)["all"]
    assert (everything.count, everything.wins, everything.open, everything.expired) == (4, 2, 1, 1)
    assert everything.void == 1
    # exit order: +2 % (01-06), −3 % (01-07), −5 % (01-20), +10 % (02-10)
    assert everything.max_consecutive_losses == 2
    assert everything.profit_factor == pytest.approx(0.12 / 0.08)

    by_strategy = summarize(RECORDS, "strategy")
    assert list(by_strategy) == ["closing_bet", "vcp"]
    assert by_strategy["vcp"].mean == pytest.approx(0.025)
    assert (by_strategy["closing_bet"].count, by_strategy["closing_bet"].open) == (2, 1)

    by_gate = summarize(RECORDS, "gate")
    assert list(by_gate) == ["GREEN", "RED", "unknown"]
    assert by_gate["GREEN"].median == pytest.approx(0.035)
    assert by_gate["unknown"].count == 1

    by_month = summarize(RECORDS, "month")  # closed by exit month, others by signal month
    assert {k: (v.count, v.open + v.expired + v.void) for k, v in by_month.items()} == {
        "2026-01": (3, 3),
        "2026-02": (1, 0),
    }
    assert set(summarize(RECORDS, "grade")) == {"A", "Good", "S", "Strong", "unknown"}
    assert summarize(RECORDS, "market")["KOSDAQ"].win_rate == 0.0
    with pytest.raises(ValidationError, match="weekday"):
        summarize(RECORDS, "weekday")
