"""Trading costs: the dated sell-side securities transaction tax and the per-side costs every
return in quantbeat pays (the track record, paper portfolios and backtests charge the same).

The tax table is data with its dates (``docs/domain.md`` §8; the Ministry of Economy and
Finance's schedule, the 2026 rise announced 2025-12-01). A rate applies to sells whose *trade
date* is on or after its ``start`` until the next row of the same market. Rates are fractions
of the sell notional (0.0020 = 0.20 %), the 0.15 % rural special tax on KOSPI included.
Crypto markets pay no transaction tax.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from quant.errors import ValidationError


@dataclass(frozen=True)
class TaxRate:
    """The sell-side tax of ``market`` from ``start`` (a trade date) on: ``rate`` as a fraction
    of the sell notional."""

    market: str
    start: dt.date
    rate: float


#: Sell-side transaction tax by market and trade date: §8 from 2023; the earlier steps of the
#: same schedule (0.30 % until the 2019-06-03 cut to 0.25 %, 0.23 % from 2021) so that stored
#: history back to 2000 can be costed too. KONEX is not in §8; its rate is KRX's published
#: 0.10 %.
SELL_TAX: tuple[TaxRate, ...] = (
    TaxRate("KOSPI", dt.date(2000, 1, 1), 0.0030),
    TaxRate("KOSPI", dt.date(2019, 6, 3), 0.0025),
    TaxRate("KOSPI", dt.date(2021, 1, 1), 0.0023),
    TaxRate("KOSPI", dt.date(2023, 1, 1), 0.0020),
    TaxRate("KOSPI", dt.date(2024, 1, 1), 0.0018),
    TaxRate("KOSPI", dt.date(2025, 1, 1), 0.0015),
    TaxRate("KOSPI", dt.date(2026, 1, 1), 0.0020),
    TaxRate("KOSDAQ", dt.date(2000, 1, 1), 0.0030),
    TaxRate("KOSDAQ", dt.date(2019, 6, 3), 0.0025),
    TaxRate("KOSDAQ", dt.date(2021, 1, 1), 0.0023),
    TaxRate("KOSDAQ", dt.date(2023, 1, 1), 0.0020),
    TaxRate("KOSDAQ", dt.date(2024, 1, 1), 0.0018),
    TaxRate("KOSDAQ", dt.date(2025, 1, 1), 0.0015),
    TaxRate("KOSDAQ", dt.date(2026, 1, 1), 0.0020),
    TaxRate("KONEX", dt.date(2000, 1, 1), 0.0010),
)

#: Markets that pay no transaction tax (crypto exchanges).
UNTAXED_MARKETS: frozenset[str] = frozenset({"UPBIT", "CRYPTO"})


@dataclass(frozen=True)
class TaxTable:
    """A dated tax table (:data:`SELL_TAX` by default) with lookups by market and trade date."""

    rates: tuple[TaxRate, ...] = SELL_TAX
    untaxed: frozenset[str] = UNTAXED_MARKETS
    _by_market: dict[str, tuple[list[dt.date], list[float]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_market: dict[str, list[TaxRate]] = {}
        for row in self.rates:
            if not 0.0 <= row.rate < 0.1:
                raise ValidationError(
                    f"tax rate {row.rate!r} of {row.market} from {row.start} is not a fraction "
                    "in [0, 0.1)",
                    field="rate",
                    value=row.rate,
                )
            by_market.setdefault(row.market, []).append(row)
        index = {}
        for market, rows in by_market.items():
            rows.sort(key=lambda r: r.start)
            index[market] = ([r.start for r in rows], [r.rate for r in rows])
        object.__setattr__(self, "_by_market", index)

    @property
    def markets(self) -> tuple[str, ...]:
        """The markets the table has rates for."""
        return tuple(sorted(self._by_market))

    def rate(self, market: str, trade_date: dt.date) -> float:
        """The sell tax on ``trade_date`` in ``market`` (fraction of the sell notional).

        Raises:
            quant.errors.ValidationError: ``market`` is unknown to the table (and not untaxed),
                or ``trade_date`` is before its first dated rate — a silent 0 would overstate
                every return.
        """
        if market in self.untaxed:
            return 0.0
        found = self._by_market.get(market)
        if found is None:
            raise ValidationError(
                f"no sell-tax rate for market {market!r} (known: {', '.join(self.markets)})",
                field="market",
                value=market,
            )
        starts, rates = found
        i = bisect.bisect_right(starts, trade_date) - 1
        if i < 0:
            raise ValidationError(
                f"no sell-tax rate for {market} on {trade_date}: the table starts {starts[0]}",
                field="trade_date",
                value=trade_date,
            )
        return rates[i]

    def changes(self, market: str) -> Iterable[tuple[dt.date, float]]:
        """``(start, rate)`` of each dated rate of ``market``, oldest first."""
        starts, rates = self._by_market.get(market, ([], []))
        return zip(starts, rates, strict=True)


#: The default table, built once.
DEFAULT_TAX = TaxTable()


def sell_tax_rate(market: str, trade_date: dt.date, table: TaxTable = DEFAULT_TAX) -> float:
    """The sell-side transaction tax of ``market`` on ``trade_date``; see :meth:`TaxTable.rate`."""
    return table.rate(market, trade_date)


@dataclass(frozen=True)
class Costs:
    """What one round trip pays, as fractions of the notional.

    ``commission`` per side (brokerage; 0.015 % is typical in Korea), ``slippage`` per side
    (buys fill at ``price·(1+s)``, sells at ``price·(1−s)``), and the dated sell tax from
    ``tax`` on the sell notional.
    """

    commission: float = 0.00015
    slippage: float = 0.0005
    tax: TaxTable = DEFAULT_TAX

    def __post_init__(self) -> None:
        for name in ("commission", "slippage"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.05:
                raise ValidationError(
                    f"{name} {value!r} is not a fraction in [0, 0.05)", field=name, value=value
                )

    def buy_fill(self, price: float) -> float:
        """The price a buy at ``price`` fills at (slippage paid)."""
        return price * (1.0 + self.slippage)

    def sell_fill(self, price: float) -> float:
        """The price a sell at ``price`` fills at (slippage paid)."""
        return price * (1.0 - self.slippage)

    def net_return(
        self, entry: float, exit_: float, market: str, exit_date: dt.date
    ) -> tuple[float, float]:
        """``(net, cost)`` of buying at ``entry`` and selling at ``exit_`` (quoted prices):
        the return after slippage, commission on both sides and the sell tax of ``exit_date``,
        and the difference to the gross return ``exit_/entry − 1``.

        Raises:
            quant.errors.ValidationError: a non-positive price, or no tax rate (see
                :meth:`TaxTable.rate`).
        """
        if not (entry > 0 and exit_ > 0):
            raise ValidationError(
                f"prices must be positive (entry {entry!r}, exit {exit_!r})", value=(entry, exit_)
            )
        paid = self.buy_fill(entry) * (1.0 + self.commission)
        received = self.sell_fill(exit_) * (
            1.0 - self.commission - self.tax.rate(market, exit_date)
        )
        net = received / paid - 1.0
        return net, (exit_ / entry - 1.0) - net
