"""Track-record KPIs over closed signal outcomes (``docs/domain.md`` §9).

Each KPI is computed from the *net* returns (fractions, after costs and tax) of closed
outcomes, in the order they closed (exit date, then signal id):

- ``count``: closed outcomes; ``wins``: net return > 0 (0 is not a win);
- ``win_rate`` = wins / count;
- ``mean`` and ``median`` net return;
- ``profit_factor`` = sum of positive net returns / |sum of negative ones| (``None`` without a
  loss: infinite, or undefined without any trade);
- ``expectancy`` = win rate × mean win − loss rate × mean |loss| (per trade; equal to the mean
  net return, written as traders read it);
- ``max_consecutive_losses``: the longest run of net returns < 0 in exit order (a break-even
  trade is neither a win nor a loss; the definitions of :mod:`quant.backtest.trade_kpis`, so
  the walk-forward backtest and the track record compare).

Open, pending, expired and void outcomes are counted per group (``open``, ``pending``,
``expired``, ``void``) but never enter the return KPIs. Groups: by ``strategy``, ``grade``,
``market``, ``gate`` (colour; ``unknown`` when the signal has none) or ``month`` (of the exit
date for closed outcomes, else of the signal date).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quant.errors import ValidationError

#: What a track record can be grouped by.
GROUPS: tuple[str, ...] = ("strategy", "grade", "market", "gate", "month")
_OTHER_STATES = ("open", "pending", "expired", "void")


@dataclass(frozen=True)
class Record:
    """One followed signal as the KPIs see it."""

    signal_id: int
    strategy: str
    trade_date: dt.date
    state: str
    net_return: float | None = None
    exit_date: dt.date | None = None
    grade: str | None = None
    market: str | None = None
    gate: str | None = None

    def key(self, by: str) -> str:
        """The group of this record under ``by`` (one of :data:`GROUPS`)."""
        if by == "month":
            day = self.exit_date if self.state == "closed" and self.exit_date else self.trade_date
            return f"{day:%Y-%m}"
        value = getattr(self, by)
        return str(value) if value else "unknown"


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one group (see the module docstring); returns are fractions."""

    count: int
    wins: int
    win_rate: float | None
    mean: float | None
    median: float | None
    profit_factor: float | None
    expectancy: float | None
    max_consecutive_losses: int
    open: int = 0
    pending: int = 0
    expired: int = 0
    void: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def kpis(returns: Sequence[float], *, others: dict[str, int] | None = None) -> Kpis:
    """The KPIs of closed trades' net ``returns`` in exit order; ``others`` counts the
    outcomes in other states (``open``, ``pending``, ``expired``, ``void``).

    Raises:
        quant.errors.ValidationError: a return that is not a finite number > −1.
    """
    for r in returns:
        if not isinstance(r, int | float) or not -1.0 <= r < float("inf") or r != r:
            raise ValidationError(f"net return {r!r} is not a finite fraction >= -1", value=r)
    n = len(returns)
    wins = [r for r in returns if r > 0]
    losses = [r for r in returns if r <= 0]
    gain = sum(wins)
    loss = -sum(r for r in losses if r < 0)
    streak = longest = 0
    for r in returns:
        streak = streak + 1 if r < 0 else 0
        longest = max(longest, streak)
    expectancy = None
    if n:
        mean_win = gain / len(wins) if wins else 0.0
        mean_loss = -sum(losses) / len(losses) if losses else 0.0
        expectancy = len(wins) / n * mean_win - len(losses) / n * mean_loss
    counts = {
        k: int(v) for k, v in (others or {}).items() if k in ("open", "pending", "expired", "void")
    }
    return Kpis(
        count=n,
        wins=len(wins),
        win_rate=len(wins) / n if n else None,
        mean=sum(returns) / n if n else None,
        median=statistics.median(returns) if n else None,
        profit_factor=gain / loss if loss > 0 else None,
        expectancy=expectancy,
        max_consecutive_losses=longest,
        **counts,
    )


def summarize(records: Iterable[Record], by: str | None = None) -> dict[str, Kpis]:
    """KPIs of ``records`` in one group ``"all"`` (``by`` ``None``) or per group of ``by``,
    groups sorted by name.

    Raises:
        quant.errors.ValidationError: ``by`` not one of :data:`GROUPS`.
    """
    if by is not None and by not in GROUPS:
        raise ValidationError(
            f"cannot group a track record by {by!r} (one of: {', '.join(GROUPS)})",
            field="by",
            value=by,
        )
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault("all" if by is None else record.key(by), []).append(record)
    out = {}
    for name in sorted(groups):
        members = groups[name]
        closed = sorted(
            (r for r in members if r.state == "closed" and r.net_return is not None),
            key=lambda r: (r.exit_date or r.trade_date, r.signal_id),
        )
        others: dict[str, int] = {}
        for r in members:
            if r.state != "closed":
                others[r.state] = others.get(r.state, 0) + 1
        out[name] = kpis(
            [float(r.net_return) for r in closed if r.net_return is not None], others=others
        )
    return out


__all__ = ["GROUPS", "Kpis", "Record", "kpis", "summarize"]
