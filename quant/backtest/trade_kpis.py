"""A backtest's closed trades in the track record's KPI terms (issue 18: expected vs realized).

The live track record (signal outcomes) reports, per strategy: count, win rate, mean and
median net return, profit factor, expectancy and max consecutive losses, all of *per-trade net
returns* (fractions after fees, slippage and the sell tax). :func:`trade_kpis` computes the
same figures from a backtest's closed trades, so the nightly walk-forward backtest (what the
rules should have earned) can be put beside the track record (what the signals did earn).

Definitions (``r`` the net returns of the closed trades, in exit order; fractions, 0.012 =
+1.2 %):

* ``count`` = len(r); ``wins`` = #(r > 0); ``win_rate`` = wins / count (a break-even trade
  is not a win);
* ``mean_net_return``, ``median_net_return`` of r;
* ``profit_factor`` = Σ r⁺ / |Σ r⁻| (``inf`` with gains and no loss, NaN with neither);
* ``expectancy`` = win_rate · mean(r⁺) − (1 − win_rate) · |mean(r≤0)|, which equals mean(r):
  the expected net return of one trade;
* ``max_consecutive_losses``: the longest run of r < 0 in exit order.

With no closed trade every ratio is ``None`` (JSON-safe) and the counts are 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError

#: The KPI names, in the order reports show them.
KPI_NAMES: tuple[str, ...] = (
    "count",
    "wins",
    "win_rate",
    "mean_net_return",
    "median_net_return",
    "profit_factor",
    "expectancy",
    "max_consecutive_losses",
)


def _json_number(value: float) -> float | None:
    """NaN → None (JSON has no NaN)."""
    return None if math.isnan(value) else value


def trade_kpis(net_returns: npt.ArrayLike) -> dict[str, Any]:
    """The KPIs of the module docstring for ``net_returns`` (closed trades' net returns as
    fractions, in exit order). ``profit_factor`` is ``None`` when undefined and the string
    ``"inf"`` is never produced: a run with gains and no loss reports ``None`` and
    ``no_losses`` True.

    Raises:
        quant.errors.ValidationError: a non-finite or non-1-D input (naming it).
    """
    r = np.asarray(net_returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValidationError(
            f"net returns must be one-dimensional, got shape {r.shape}", field="net_returns"
        )
    if not np.isfinite(r).all():
        bad = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ValidationError(
            f"net return of trade {bad} is not finite ({r[bad]!r})",
            field="net_returns",
            value=bad,
        )
    n = len(r)
    if n == 0:
        return {
            "count": 0,
            "wins": 0,
            "win_rate": None,
            "mean_net_return": None,
            "median_net_return": None,
            "profit_factor": None,
            "no_losses": False,
            "expectancy": None,
            "max_consecutive_losses": 0,
        }
    gains = r[r > 0]
    losses = r[r < 0]
    wins = len(gains)
    win_rate = wins / n
    not_wins = r[r <= 0]
    avg_win = float(gains.mean()) if wins else 0.0
    avg_other = float(np.abs(not_wins).mean()) if len(not_wins) else 0.0
    expectancy = win_rate * avg_win - (1.0 - win_rate) * avg_other
    loss_sum = float(-losses.sum())
    profit_factor = float(gains.sum()) / loss_sum if loss_sum > 0 else math.nan
    longest = run = 0
    for value in r:
        run = run + 1 if value < 0 else 0
        longest = max(longest, run)
    return {
        "count": n,
        "wins": wins,
        "win_rate": win_rate,
        "mean_net_return": float(r.mean()),
        "median_net_return": float(np.median(r)),
        "profit_factor": _json_number(profit_factor),
        "no_losses": bool(loss_sum == 0 and wins > 0),
        "expectancy": expectancy,
        "max_consecutive_losses": longest,
    }
