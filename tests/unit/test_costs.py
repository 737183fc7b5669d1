"""The dated sell-tax table and round-trip costs (quant/costs.py, domain notes §8)."""

from __future__ import annotations

import datetime as dt

import pytest

from quant.costs import Costs, TaxRate, TaxTable, sell_tax_rate
from quant.errors import ValidationError

D = dt.date


@pytest.mark.parametrize(
    ("market", "day", "rate"),
    [
        ("KOSPI", D(2019, 5, 31), 0.0030),
        ("KOSPI", D(2019, 6, 3), 0.0025),
        ("KOSDAQ", D(2022, 12, 30), 0.0023),
        ("KOSPI", D(2023, 1, 2), 0.0020),
        ("KOSDAQ", D(2024, 6, 28), 0.0018),
        ("KOSPI", D(2025, 12, 30), 0.0015),
        ("KOSPI", D(2026, 1, 2), 0.0020),  # the 2026 rise (announced 2025-12-01)
        ("KOSDAQ", D(2026, 1, 2), 0.0020),
        ("KONEX", D(2026, 1, 2), 0.0010),
        ("UPBIT", D(2026, 1, 2), 0.0),
    ],
)
def test_the_rate_of_the_trade_date(market, day, rate):
    assert sell_tax_rate(market, day) == rate


def test_unknown_markets_and_dates_before_the_table_are_refused_by_name():
    with pytest.raises(ValidationError, match="no sell-tax rate for market 'NYSE'"):
        sell_tax_rate("NYSE", D(2026, 1, 2))
    with pytest.raises(ValidationError, match="KOSPI on 1999-12-31: the table starts 2000-01-01"):
        sell_tax_rate("KOSPI", D(1999, 12, 31))
    with pytest.raises(ValidationError, match=r"tax rate 0\.5 "):
        TaxTable((TaxRate("KOSPI", D(2026, 1, 1), 0.5),))


def test_a_round_trip_pays_slippage_commission_and_the_tax_of_the_exit_date():
    costs = Costs(commission=0.00015, slippage=0.0005)
    net, cost = costs.net_return(10_000.0, 10_500.0, "KOSPI", D(2026, 1, 2))
    paid = 10_000 * 1.0005 * 1.00015
    received = 10_500 * 0.9995 * (1 - 0.00015 - 0.0020)
    assert net == pytest.approx(received / paid - 1)
    assert cost == pytest.approx(0.05 - net)
    earlier, _ = costs.net_return(10_000.0, 10_500.0, "KOSPI", D(2025, 12, 30))
    assert earlier - net == pytest.approx(10_500 * 0.9995 * 0.0005 / paid)
    with pytest.raises(ValidationError, match="prices must be positive"):
        costs.net_return(0.0, 1.0, "KOSPI", D(2026, 1, 2))
