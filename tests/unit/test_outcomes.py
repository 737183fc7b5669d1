"""Signal outcome rules (quant.outcomes) against hand-computed candle tables, one per exit
reason of each plan, freqtrade style: each table lists the sessions' bars, the expected
state, reason, prices, returns and excursions are written out by hand.

Costs: commission 0.015 % and slippage 0.05 % a side; the sell tax of KOSPI/KOSDAQ is
0.15 % in 2025 and 0.20 % from 2026-01-01. So a round trip from ``e`` to ``x`` sold on a
2025 date nets ``x·0.9995·(1 − 0.00015 − 0.0015) / (e·1.0005·1.00015) − 1``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import pytest

from quant.costs import Costs, TaxRate, TaxTable
from quant.errors import ValidationError
from quant.outcomes import (
    Bars,
    ClosingBetRules,
    GenericRules,
    Morning,
    Rules,
    SignalView,
    VcpRules,
    rules_version,
)
from quant.outcomes import (
    follow as _follow,
)

D = dt.date
#: Any-typed, so tables compare with pytest.approx without casts.
follow: Any = _follow
BUY = 1.0005 * 1.00015  # slippage, commission


def net_2025(entry: float, exit_: float) -> float:
    return exit_ * 0.9995 * (1 - 0.00015 - 0.0015) / (entry * BUY) - 1


def net_2026(entry: float, exit_: float) -> float:
    return exit_ * 0.9995 * (1 - 0.00015 - 0.0020) / (entry * BUY) - 1


def bars(rows: Sequence[Any]) -> Bars:
    """A table of (date, open, high, low, close, volume); (date, None) is a session without
    a bar for the instrument."""
    sessions = [r[0] for r in rows]
    data = {r[0]: r[1:] for r in rows if r[1] is not None}
    return Bars.from_rows(sessions, data)


def bet(day: D, entry: float, *, phase: str = "final", market: str = "KOSPI", **kw: Any) -> Any:
    return SignalView(
        signal_id=1, strategy="closing_bet", trade_date=day, entry_price=entry,
        market=market, phase=phase, **kw,
    )  # fmt: skip


# ---------------------------------------------------------------------------- closing bet

DAY0, DAY1 = D(2025, 11, 3), D(2025, 11, 4)


def _bet(o: float, h: float, lo: float, c: float, **kw: Any) -> Any:
    table = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, o, h, lo, c, 1e6)])
    return follow(bet(DAY0, 10000), table, through=DAY1, **kw)


def test_closing_bet_gap_up_takes_profit_at_the_open() -> None:
    out = _bet(10300, 10600, 10200, 10500)  # opens +3.00 %
    assert (out.state, out.reason, out.exit_price, out.exit_date) == (
        "closed",
        "gap_up",
        10300,
        DAY1,
    )
    assert out.gross_return == pytest.approx(0.03)
    assert out.net_return == pytest.approx(net_2025(10000, 10300))
    assert out.costs == pytest.approx(0.03 - net_2025(10000, 10300))
    assert (out.mfe, out.mae) == (pytest.approx(0.03), 0.0)  # an open exit sees the open only
    assert out.sessions_held == 2
    assert (out.entry_date, out.entry_price) == (DAY0, 10000)


def test_closing_bet_gap_down_stops_at_the_open() -> None:
    out = _bet(9800, 9900, 9500, 9600)  # opens −2.00 %
    assert (out.state, out.reason, out.exit_price) == ("closed", "gap_down", 9800)
    assert out.net_return == pytest.approx(net_2025(10000, 9800))
    assert (out.mfe, out.mae) == (0.0, pytest.approx(-0.02))


def test_closing_bet_gap_through_the_stop_fills_at_the_open() -> None:
    # opens −4 %, below the −3 % stop: filled at the open, worse than the stop
    out = _bet(9600, 9700, 9400, 9500)
    assert (out.reason, out.exit_price) == ("gap_down", 9600)
    assert out.net_return == pytest.approx(net_2025(10000, 9600))
    # with a gap-down rule wider than the stop, it is the stop that fills at the open
    wide = Rules(closing_bet=ClosingBetRules(gap_down=0.05))
    out = _bet(9600, 9700, 9400, 9500, rules=wide)
    assert (out.reason, out.exit_price) == ("stop_loss", 9600)
    assert out.note == "opened through the stop: filled at the open"


def test_closing_bet_stop_loss_intraday() -> None:
    out = _bet(10100, 10200, 9690, 9800)
    assert (out.reason, out.exit_price) == ("stop_loss", 9700)
    assert out.gross_return == pytest.approx(-0.03)
    assert out.net_return == pytest.approx(net_2025(10000, 9700))
    assert (out.mfe, out.mae) == (pytest.approx(0.02), pytest.approx(-0.031))


def test_closing_bet_stop_first_when_both_are_touched() -> None:
    out = _bet(10100, 10600, 9600, 10400)
    assert (out.reason, out.exit_price) == ("stop_loss", 9700)
    assert "stop counts first" in (out.note or "")


def test_closing_bet_take_profit_intraday() -> None:
    out = _bet(10100, 10550, 10000, 10200)
    assert (out.reason, out.exit_price) == ("take_profit", 10500)
    assert out.net_return == pytest.approx(net_2025(10000, 10500))
    assert (out.mfe, out.mae) == (pytest.approx(0.055), 0.0)


def test_closing_bet_out_at_the_close_without_snapshots() -> None:
    out = _bet(10100, 10300, 9900, 10150)
    assert (out.reason, out.exit_price) == ("session_close", 10150)
    assert out.net_return == pytest.approx(net_2025(10000, 10150))
    assert (out.mfe, out.mae) == (pytest.approx(0.03), pytest.approx(-0.01))


def test_closing_bet_out_at_ten_with_the_morning_snapshot() -> None:
    # the day so far at 10:00 decides: the afternoon's +6 % high is never seen
    morning = {DAY1: Morning(open=10100, high=10200, low=9950, last=10120)}
    out = _bet(10100, 10700, 9950, 10600, mornings=morning)
    assert (out.reason, out.exit_price) == ("time_exit", 10120)
    assert out.net_return == pytest.approx(net_2025(10000, 10120))
    assert (out.mfe, out.mae) == (pytest.approx(0.02), pytest.approx(-0.005))
    # a 10:00 day so far that touched the target takes profit
    morning = {DAY1: Morning(open=10100, high=10520, low=9950, last=10400)}
    assert _bet(10100, 10700, 9950, 10600, mornings=morning).reason == "take_profit"


def test_closing_bet_preliminary_enters_at_the_decision_price() -> None:
    table = bars([(DAY0, 9800, 10300, 9700, 10200, 1e6), (DAY1, 10150, 10300, 10000, 10100, 1e6)])
    out = follow(bet(DAY0, 10050, phase="preliminary"), table, through=DAY1)
    assert (out.entry_price, out.reason, out.exit_price) == (10050, "session_close", 10100)
    assert out.net_return == pytest.approx(net_2025(10050, 10100))


def test_closing_bet_open_until_the_next_session_is_read() -> None:
    table = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, 10100, 10300, 9900, 10150, 1e6)])
    out = follow(bet(DAY0, 10000), table, through=DAY0)
    assert (out.state, out.entry_date, out.sessions_held, out.exit_date) == ("open", DAY0, 1, None)
    assert (out.evaluated_through, out.net_return) == (DAY0, None)
    # the signal's own session not read yet: pending
    assert follow(bet(DAY1, 10000), table, through=DAY0).state == "pending"


def test_closing_bet_halted_next_session_is_void() -> None:
    day2 = D(2025, 11, 5)
    table = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, None),
                  (day2, 10000, 10100, 9900, 10000, 1e6)])  # fmt: skip
    # while the missing bar is the newest session read, it may just not be collected yet
    out = follow(bet(DAY0, 10000), table, through=DAY1)
    assert (out.state, out.evaluated_through, out.sessions_held) == ("open", DAY0, 1)
    out = follow(bet(DAY0, 10000), table, through=day2)
    assert (out.state, out.reason, out.exit_price, out.net_return) == ("void", "halted", None, None)
    assert "no bar on 2025-11-04" in (out.note or "")
    # a bar without volume (the flat bar of a halted day) is a halt too
    table = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, 10000, 10000, 10000, 10000, 0)])
    out = follow(bet(DAY0, 10000), table, through=DAY1)
    assert (out.reason, out.note) == ("halted", "a bar without volume on 2025-11-04 while open "
                                      "(trading halted?): the exit is unknown")  # fmt: skip


def test_closing_bet_delisted_is_void() -> None:
    table = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, None)])
    out = follow(bet(DAY0, 10000, listing_status="delisted"), table, through=DAY1)
    assert (out.state, out.reason) == ("void", "delisted")
    assert (out.entry_price, out.exit_price) == (10000, None)
    # delisted with no later session read yet: no bar will come either
    out = follow(bet(DAY0, 10000, listing_status="delisted"), table, through=DAY0)
    assert (out.state, out.reason) == ("void", "delisted")


def test_closing_bet_tax_change_on_2026_01_01() -> None:
    """The same trade sold on 2025-12-30 pays 0.15 %, on 2026-01-02 (the next KRX session
    after 2025-12-30) 0.20 %."""
    old = bars([(D(2025, 12, 29), 9900, 10000, 9800, 10000, 1e6),
                (D(2025, 12, 30), 10100, 10300, 9900, 10200, 1e6)])  # fmt: skip
    new = bars([(D(2025, 12, 30), 9900, 10000, 9800, 10000, 1e6),
                (D(2026, 1, 2), 10100, 10300, 9900, 10200, 1e6)])  # fmt: skip
    a = follow(bet(D(2025, 12, 29), 10000), old, through=D(2025, 12, 30))
    b = follow(bet(D(2025, 12, 30), 10000), new, through=D(2026, 1, 2))
    assert a.gross_return == b.gross_return == pytest.approx(0.02)
    assert a.net_return == pytest.approx(net_2025(10000, 10200))
    assert b.net_return == pytest.approx(net_2026(10000, 10200))
    assert b.costs - a.costs == pytest.approx(10200 * 0.9995 * 0.0005 / (10000 * BUY))
    # KOSDAQ has the same dates; crypto pays no tax
    c = follow(bet(D(2025, 12, 30), 10000, market="UPBIT"), new, through=D(2026, 1, 2))
    assert c.net_return == pytest.approx(10200 * 0.9995 * (1 - 0.00015) / (10000 * BUY) - 1)


def test_no_entry_price_is_void() -> None:
    table = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, 10100, 10300, 9900, 10150, 1e6)])
    out = follow(bet(DAY0, math.nan), table, through=DAY1)
    assert (out.state, out.reason) == ("void", "no_entry_price")


# ------------------------------------------------------------------------------------ VCP


FIRST = D(2025, 6, 2)


def _sessions(n: int, first: D = FIRST) -> list[D]:
    days: list[D] = []
    day = first
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


#: 50 quiet sessions of history: close 100, volume 1,000 (mean 1,000).
HISTORY = 50


def vcp_table(after: Sequence[Any]) -> tuple[Bars, list[D]]:
    days = _sessions(HISTORY + len(after))
    rows: list[Any] = [(d, 100, 101, 99, 100, 1000) for d in days[:HISTORY]]
    for d, bar in zip(days[HISTORY:], after, strict=True):
        rows.append((d, None) if bar is None else (d, *bar))
    return bars(rows), days


def vcp(day: D, *, breakout: bool, pivot: float = 105, stop: float = 97, **kw: Any) -> Any:
    return SignalView(
        signal_id=7, strategy="vcp", trade_date=day, entry_price=pivot, market="KOSDAQ",
        status="breakout" if breakout else "forming",
        inputs={"pivot": pivot, "stop": stop, "breakout": breakout}, **kw,
    )  # fmt: skip


def test_vcp_breakout_day_entry_and_stop_loss() -> None:
    # day 0 is the stored breakout (close 106 > pivot 105); the plan's stop 98 is within 8 %
    table, days = vcp_table([(104, 107, 103, 106, 3000), (106, 107, 104, 105, 1200),
                             (104, 105, 96, 98, 1500)])  # fmt: skip
    out = follow(vcp(days[HISTORY], breakout=True, stop=98), table, through=days[-1])
    assert (out.state, out.reason, out.entry_price, out.exit_price) == (
        "closed", "stop_loss", 106, 98,
    )  # fmt: skip
    assert (out.entry_date, out.exit_date, out.sessions_held) == (days[50], days[52], 3)
    assert out.net_return == pytest.approx(net_2025(106, 98))
    assert (out.mfe, out.mae) == (pytest.approx(107 / 106 - 1), pytest.approx(96 / 106 - 1))


def test_vcp_gap_through_the_stop_fills_at_the_open() -> None:
    table, days = vcp_table([(104, 107, 103, 106, 3000), (95, 96, 90, 92, 5000)])
    out = follow(vcp(days[HISTORY], breakout=True), table, through=days[-1])
    # the stop: max(plan 97, 106 × 0.92 = 97.52); the open 95 is below it
    assert (out.reason, out.exit_price) == ("stop_loss", 95)
    assert out.net_return == pytest.approx(net_2025(106, 95))
    assert out.mae == pytest.approx(95 / 106 - 1)


def test_vcp_stop_is_capped_at_eight_percent() -> None:
    # plan stop 90 is 15 % below the entry 106: the stop is 106 × 0.92 = 97.52
    table, days = vcp_table([(104, 107, 103, 106, 3000), (100, 101, 97, 99, 1000)])
    out = follow(vcp(days[HISTORY], breakout=True, stop=90), table, through=days[-1])
    assert (out.reason, out.exit_price) == ("stop_loss", pytest.approx(97.52))


def test_vcp_pending_confirmed_later_then_trend_exit() -> None:
    # forming on day 0; day 1 closes above the pivot on 1.2× volume (not confirmed);
    # day 2 closes 106 on 2,000 (mean of the last 50 traded bars incl. today:
    # (48·1000 + 1200 + 2000) / 50 = 1,024, so 1.95×): entry 106
    after = [(100, 102, 99, 101, 1000), (104, 106, 103, 105.5, 1200),
             (105, 107, 104, 106, 2000), (106, 108, 105, 107, 1500),
             (106, 106.5, 98, 99, 1500), (98.5, 99, 98, 98.5, 1000)]  # fmt: skip
    table, days = vcp_table(after)
    signal = vcp(days[HISTORY], breakout=False)
    out = follow(signal, table, through=days[HISTORY + 1])
    assert (out.state, out.entry_date) == ("pending", None)
    out = follow(signal, table, through=days[HISTORY + 2])
    assert (out.state, out.entry_date, out.entry_price) == ("open", days[52], 106)
    out = follow(signal, table, through=days[-1])
    # day 4 closes 99 < SMA50 (the last 50 closes: 44 × 100 + 101 + 105.5 + 106 + 107 + 99
    # + 100 ... ≈ 100.4): sold at day 5's open
    assert (out.state, out.reason, out.exit_price, out.exit_date) == (
        "closed", "trend_exit", 98.5, days[55],
    )  # fmt: skip
    assert out.sessions_held == 4
    assert out.net_return == pytest.approx(net_2025(106, 98.5))


def test_vcp_expires_without_confirmation() -> None:
    after = [(100, 101, 99, 100, 1000)] * 22
    table, days = vcp_table(after)
    signal = vcp(days[HISTORY], breakout=False)
    assert follow(signal, table, through=days[HISTORY + 20]).state == "pending"
    out = follow(signal, table, through=days[HISTORY + 21])
    assert (out.state, out.reason) == ("expired", "no_breakout")


def test_vcp_expires_below_the_stop_or_extended() -> None:
    table, days = vcp_table([(100, 101, 99, 100, 1000), (98, 98, 95, 96, 1500)])
    out = follow(vcp(days[HISTORY], breakout=False), table, through=days[-1])
    assert (out.state, out.reason) == ("expired", "below_stop")
    table, days = vcp_table([(104, 111, 103, 110.5, 3000)])  # +5.2 % above the pivot
    out = follow(vcp(days[HISTORY], breakout=True), table, through=days[-1])
    assert (out.state, out.reason) == ("expired", "extended")


def test_vcp_max_hold() -> None:
    rules = Rules(vcp=VcpRules(max_hold=3))
    after = [(104, 107, 103, 106, 3000), (106, 108, 105, 107, 1000),
             (107, 109, 106, 108, 1000), (108, 110, 107, 109, 1000)]  # fmt: skip
    table, days = vcp_table(after)
    out = follow(vcp(days[HISTORY], breakout=True), table, through=days[-1], rules=rules)
    assert (out.reason, out.exit_date, out.exit_price, out.sessions_held) == (
        "max_hold", days[52], 108, 3,
    )  # fmt: skip


def test_vcp_halt_and_delisting_while_open() -> None:
    table, days = vcp_table([(104, 107, 103, 106, 3000), (106, 108, 105, 107, 1000), None,
                             (107, 109, 106, 108, 1000)])  # fmt: skip
    out = follow(vcp(days[HISTORY], breakout=True), table, through=days[-1])
    assert (out.state, out.reason, out.exit_date) == ("void", "halted", days[52])
    assert out.mfe == pytest.approx(108 / 106 - 1)
    table, days = vcp_table([(104, 107, 103, 106, 3000), (106, 108, 105, 107, 1000), None, None])
    out = follow(vcp(days[HISTORY], breakout=True, listing_status="delisted"), table,
                 through=days[-1])  # fmt: skip
    assert (out.state, out.reason) == ("void", "delisted")
    assert "no traded bar from" in (out.note or "")


# -------------------------------------------------------------------------------- generic


def legacy(day: D, entry: float | None) -> Any:
    return SignalView(signal_id=9, strategy="legacy", trade_date=day, entry_price=entry,
                      market="KOSPI")  # fmt: skip


def test_generic_stop_and_max_hold() -> None:
    days = _sessions(7)
    rows = [(days[0], 1000, 1010, 990, 1000, 1e5)] + [
        (d, 1000, 1020, 980, 1005, 1e5) for d in days[1:]
    ]
    out = follow(legacy(days[0], 1000), bars(rows), through=days[-1])
    assert (out.reason, out.exit_date, out.exit_price, out.sessions_held) == (
        "max_hold", days[5], 1005, 6,
    )  # fmt: skip
    rows[2] = (days[2], 960, 970, 920, 950, 1e5)
    out = follow(legacy(days[0], 1000), bars(rows), through=days[-1])
    assert (out.reason, out.exit_price) == ("stop_loss", pytest.approx(930))
    rows[2] = (days[2], 910, 970, 900, 950, 1e5)  # opens through the stop 930
    out = follow(legacy(days[0], 1000), bars(rows), through=days[-1])
    assert (out.reason, out.exit_price) == ("stop_loss", 910)
    # no entry price: the signal session's close
    out = follow(legacy(days[0], None), bars(rows), through=days[1])
    assert (out.state, out.entry_price) == ("open", 1000)


# ---------------------------------------------------------------------------- versioning


def test_rules_versions_change_with_thresholds_and_costs() -> None:
    base = Rules()
    assert base.version("closing_bet").startswith("closing_bet-v1.")
    assert base.version("vcp").startswith("vcp-v1.")
    assert base.version("anything") == base.version("legacy")
    assert base.version("anything").startswith("generic-v1.")
    assert len(base.version("closing_bet")) <= 32
    assert Rules().version("vcp") == base.version("vcp")
    assert Rules(vcp=VcpRules(max_hold=40)).version("vcp") != base.version("vcp")
    assert Rules(costs=Costs(commission=0.0003)).version("vcp") != base.version("vcp")
    assert rules_version(GenericRules(), Costs()) == base.version("legacy")


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValidationError, match="gap_up"):
        ClosingBetRules(gap_up=-0.03)
    with pytest.raises(ValidationError, match="time_exit"):
        ClosingBetRules(time_exit="ten")
    with pytest.raises(ValidationError, match="max_hold"):
        VcpRules(max_hold=0)


def test_a_finished_outcome_does_not_change_when_later_sessions_are_read() -> None:
    """Evaluated through the session that decided it, so a later update rewrites nothing."""
    later = D(2025, 11, 5)
    table = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, 10100, 10550, 10000, 10200, 1e6),
                  (later, 10000, 10100, 9900, 10000, 1e6)])  # fmt: skip
    first = follow(bet(DAY0, 10000), table, through=DAY1)
    assert first == follow(bet(DAY0, 10000), table, through=later)
    assert first.evaluated_through == DAY1
    gone = bars([(DAY0, 9800, 10050, 9700, 10000, 1e6), (DAY1, None), (later, None)])
    signal = bet(DAY0, 10000, listing_status="delisted")
    assert follow(signal, gone, through=DAY1) == follow(signal, gone, through=later)


def test_an_exit_without_a_tax_rate_is_void_with_its_gross_return() -> None:
    # a dated table that starts 2023-01-01: an exit on 2022-12-29 has no known tax
    short = Rules(costs=Costs(tax=TaxTable(rates=(TaxRate("KOSPI", D(2023, 1, 1), 0.002),))))
    table = bars([(D(2022, 12, 28), 9900, 10000, 9800, 10000, 1e6),
                  (D(2022, 12, 29), 10100, 10300, 9900, 10200, 1e6)])  # fmt: skip
    out = follow(bet(D(2022, 12, 28), 10000), table, through=D(2022, 12, 29), rules=short)
    assert (out.state, out.reason, out.exit_price, out.net_return) == (
        "void",
        "no_costs",
        10200,
        None,
    )
    assert out.gross_return == pytest.approx(0.02)
    assert "no sell-tax rate for KOSPI on 2022-12-29" in out.note
