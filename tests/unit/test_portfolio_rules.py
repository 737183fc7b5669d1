"""Paper-portfolio rules (quant/portfolio.py): the sizer of domain notes §10 on hand-computed
cases, one day of the book, and the invariants over a simulated year of outcomes."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest

from quant.costs import DEFAULT_TAX
from quant.errors import ValidationError
from quant.portfolio import Candidate, Exit, PortfolioRules, Position, size, step_day

RULES = PortfolioRules()
EQUITY = 100_000_000.0
DAY = dt.date(2026, 3, 3)


def tax(market: str, day: dt.date) -> float:
    return DEFAULT_TAX.rate(market, day)


@pytest.mark.parametrize(
    ("grade", "gate", "stop", "cash", "expected"),
    [
        # R = 0.5% of 100M = 500,000; S weighs 1.5; 3% stop: 25M / fill 10,005 = 2498.75
        ("S", "GREEN", None, EQUITY, 2498),
        # YELLOW halves the risk: 12.5M / 10,005 = 1249.38
        ("S", "YELLOW", None, EQUITY, 1249),
        # no gate computed: sized as UNKNOWN (half)
        ("S", None, None, EQUITY, 1249),
        # the signal's own stop: 8% away, Strong weighs 1.0: 6.25M / 10,005 = 624.69
        ("Strong", "GREEN", 9_200.0, EQUITY, 624),
        # a 0.1% stop would be 500M: capped at 50% of equity, 50M / 10,005 = 4997.5
        ("A", "GREEN", 9_990.0, EQUITY, 4997),
        # the cash left: 1M / (10,005 × 1.00015) = 99.94
        ("A", "GREEN", None, 1_000_000.0, 99),
    ],
)
def test_the_sizer_matches_hand_computed_quantities(grade, gate, stop, cash, expected):
    quantity, why = size(
        RULES, equity=EQUITY, cash=cash, price=10_000.0, stop=stop, grade=grade, gate=gate
    )
    assert (quantity, why) == (expected, None)


@pytest.mark.parametrize(
    ("grade", "gate", "reason"),
    [
        ("C", "GREEN", "grade C has sizer weight 0"),
        (None, "GREEN", "grade none has sizer weight 0"),
        ("S", "RED", "gate RED: no new entries"),
    ],
)
def test_no_size_says_why(grade, gate, reason):
    assert size(
        RULES, equity=EQUITY, cash=EQUITY, price=10_000.0, stop=None, grade=grade, gate=gate
    ) == (0, reason)


def test_bad_rules_and_prices_are_refused_by_name():
    with pytest.raises(ValidationError, match=r"risk_per_trade=0\.5"):
        PortfolioRules(risk_per_trade=0.5)
    with pytest.raises(ValidationError, match=r"max_positions=0 "):
        PortfolioRules(max_positions=0)
    with pytest.raises(ValidationError, match=r"portfolio p1: unknown rule.*risk"):
        PortfolioRules.from_json({"risk": 0.01}, where="portfolio p1")
    with pytest.raises(ValidationError, match="entry price 0"):
        size(RULES, equity=EQUITY, cash=EQUITY, price=0.0, stop=None, grade="S", gate="GREEN")
    assert PortfolioRules.from_json(RULES.to_json()) == RULES


def candidate(signal_id: int, **kw: object) -> Candidate:
    values: dict[str, object] = {
        "signal_id": signal_id,
        "instrument_id": 100 + signal_id,
        "market": "KOSPI",
        "strategy": "closing_bet",
        "grade": "S",
        "score": 10.0,
        "gate": "GREEN",
        "entry_price": 10_000.0,
    }
    values.update(kw)
    return Candidate(**values)  # type: ignore[arg-type]


def test_a_day_buys_sells_pays_the_dated_tax_and_marks():
    # Day 1: buy signal 1 (S, GREEN): 2498 shares at 10,005 plus 0.015% commission.
    first = step_day(
        RULES, DAY, cash=EQUITY, positions=[], previous_equity=EQUITY, week_realized=0.0,
        exits={}, candidates=[candidate(1)], closes={101: 10_200.0}, tax_rate=tax,
    )  # fmt: skip
    cost = 2498 * 10_005.0 * 1.00015
    assert [o.state for o in first.orders] == ["filled"]
    assert first.cash == pytest.approx(EQUITY - cost)
    assert first.market_value == pytest.approx(2498 * 10_200.0)
    assert first.equity == pytest.approx(first.cash + first.market_value)
    # Day 2: the outcome exits at 10,500: fill 10,494.75, commission and the 2026 tax (0.20%).
    second = step_day(
        RULES, DAY + dt.timedelta(days=1), cash=first.cash, positions=first.positions,
        previous_equity=first.equity, week_realized=0.0,
        exits={1: Exit(1, 10_500.0, "take_profit")}, candidates=[], closes={}, tax_rate=tax,
    )  # fmt: skip
    notional = 2498 * 10_500.0 * (1 - 0.0005)
    proceeds = notional * (1 - 0.00015 - 0.0020)
    assert second.realized == pytest.approx(proceeds - cost)
    (sell,) = second.orders
    assert (sell.side, sell.reason) == ("sell", "take_profit")
    assert sell.tax == pytest.approx(notional * 0.0020)
    assert second.positions == ()
    assert second.equity == pytest.approx(second.cash)
    assert second.cash == pytest.approx(EQUITY - cost + proceeds)


def test_the_same_sale_in_2025_pays_the_lower_tax():
    held = Position(1, 101, "KOSDAQ", 100, dt.date(2025, 12, 29), 10_005.0, 1e6, None, 1e4)
    day = step_day(
        RULES, dt.date(2025, 12, 30), cash=0.0, positions=[held], previous_equity=1e6,
        week_realized=0.0, exits={1: Exit(1, 10_000.0, "time_exit")}, candidates=[],
        closes={}, tax_rate=tax,
    )  # fmt: skip
    assert day.orders[0].tax == pytest.approx(100 * 10_000.0 * (1 - 0.0005) * 0.0015)


def test_gate_loss_limits_slots_and_pause_refuse_entries_with_their_reason():
    red = step_day(
        RULES, DAY, cash=EQUITY, positions=[], previous_equity=EQUITY, week_realized=0.0,
        exits={}, candidates=[candidate(1, gate="RED")], closes={}, tax_rate=tax,
    )  # fmt: skip
    assert red.orders[0].reason == "gate RED: no new entries"
    # a realized loss of 2R (1,000,000) earlier this week blocks the rest of the week (4R)
    weekly = step_day(
        RULES, DAY, cash=EQUITY, positions=[], previous_equity=EQUITY,
        week_realized=-2_000_000.0, exits={}, candidates=[candidate(1)], closes={}, tax_rate=tax,
    )  # fmt: skip
    assert (weekly.blocked or "").startswith("weekly loss limit")
    assert weekly.orders[0].state == "rejected"
    # today's exits lose 2R: no entry today
    loser = Position(9, 109, "KOSPI", 1000, DAY, 10_000.0, 10_001_500.0, None, 10_000.0)
    daily = step_day(
        RULES, DAY, cash=0.0, positions=[loser], previous_equity=EQUITY, week_realized=0.0,
        exits={9: Exit(9, 8_900.0, "stop_loss")}, candidates=[candidate(1)], closes={},
        tax_rate=tax,
    )  # fmt: skip
    assert daily.realized < -1_000_000
    assert (daily.blocked or "").startswith("daily loss limit")
    small = PortfolioRules(max_positions=1)
    slots = step_day(
        small, DAY, cash=EQUITY, positions=[], previous_equity=EQUITY, week_realized=0.0,
        exits={}, candidates=[candidate(1, grade="A"), candidate(2, grade="S")], closes={},
        tax_rate=tax,
    )  # fmt: skip
    # the better grade goes first; the second finds the slots full
    assert [(o.signal_id, o.state) for o in slots.orders] == [(2, "filled"), (1, "rejected")]
    assert slots.orders[1].reason == "max positions (1) held"
    paused = step_day(
        RULES, DAY, cash=EQUITY, positions=[], previous_equity=EQUITY, week_realized=0.0,
        exits={}, candidates=[candidate(1)], closes={}, tax_rate=tax, accepting=False,
    )  # fmt: skip
    assert paused.orders[0].reason == "portfolio paused: no new entries"


def test_a_year_of_simulated_outcomes_keeps_every_invariant():
    """SIMULATED: 250 sessions of random-walk closes for 40 instruments and random signals
    that enter and exit; every day equity = cash + marked positions, every position comes
    from a signal, cash never goes negative."""
    rng = random.Random(7)
    sessions = [dt.date(2026, 1, 2) + dt.timedelta(days=i) for i in range(365)]
    sessions = [d for d in sessions if d.weekday() < 5][:250]
    prices = {i: 10_000.0 for i in range(40)}
    planned_exit: dict[int, tuple[int, float]] = {}  # signal -> (session index, price)
    cash, equity, week_realized = EQUITY, EQUITY, 0.0
    positions: tuple[Position, ...] = ()
    next_signal, signals_seen = 1, set()
    for n, day in enumerate(sessions):
        for i in prices:
            prices[i] *= math.exp(rng.gauss(0.0, 0.02))
        if n and day.isocalendar()[1] != sessions[n - 1].isocalendar()[1]:
            week_realized = 0.0
        exits = {
            sid: Exit(sid, price, "time_exit")
            for sid, (at, price) in planned_exit.items()
            if at == n
        }
        cands = []
        for _ in range(rng.randint(0, 4)):
            inst = rng.randrange(40)
            sid = next_signal
            next_signal += 1
            signals_seen.add(sid)
            planned_exit[sid] = (n + rng.randint(1, 5), prices[inst] * rng.uniform(0.9, 1.1))
            cands.append(
                Candidate(sid, inst, rng.choice(["KOSPI", "KOSDAQ"]), "closing_bet",
                          rng.choice(["S", "A", "B", "C"]), rng.uniform(0, 20),
                          rng.choice(["GREEN", "YELLOW", "RED", None]), prices[inst])
            )  # fmt: skip
        day_result = step_day(
            RULES, day, cash=cash, positions=positions, previous_equity=equity,
            week_realized=week_realized, exits=exits, candidates=cands,
            closes={i: p for i, p in prices.items() if rng.random() > 0.02}, tax_rate=tax,
        )  # fmt: skip
        assert day_result.equity == pytest.approx(
            day_result.cash + sum(p.quantity * p.last_price for p in day_result.positions)
        )
        assert day_result.cash >= 0
        assert all(p.signal_id in signals_seen for p in day_result.positions)
        assert len(day_result.positions) <= RULES.max_positions
        cash, positions, equity = day_result.cash, day_result.positions, day_result.equity
        week_realized += day_result.realized
    assert equity != EQUITY  # it traded
