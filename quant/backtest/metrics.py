"""Performance metrics of a backtest: returns, risk, drawdown and trade statistics.

Pure numpy (no pandas in the computations, no Celery, no database, no environment reads).

**Units.** Every return-like value is a *fraction*, never a percent: ``0.0123`` is +1.23 %, a
drawdown of ``-0.183`` is -18.3 %. Ratios (Sharpe, Sortino, Calmar, profit factor) are plain
numbers. Trade P&L and expectancy are in the account currency (KRW for KRX, the quote
currency for crypto). Durations are whole calendar days.

**Formulas** (daily returns ``r``, ``N`` observations, equity ``E = ∏(1 + r)`` from 1.0,
``P = periods_per_year``: 252 for KRX daily bars, 365 for crypto). Checked against quantstats
0.0.86 and empyrical-reloaded 0.7.1 (see ``tests/unit/test_backtest_metrics.py``):

* total return ``E_N - 1`` (``qs.stats.comp``, ``ep.cum_returns_final``);
* CAGR ``(1 + TR)^(P / N) - 1`` (``qs.stats.cagr(periods=P)``, ``ep.annual_return``);
* volatility ``std(r, ddof=1)·√P`` (``qs.stats.volatility``, ``ep.annual_volatility``);
* Sharpe (rf = 0) ``mean(r) / std(r, ddof=1)·√P`` (``qs.stats.sharpe``, ``ep.sharpe_ratio``);
* Sortino ``mean(r) / √(mean(min(r, 0)²))·√P``, the downside mean taken over all ``N``
  (``qs.stats.sortino``, ``ep.sortino_ratio``);
* max drawdown ``min(E / cummax(E) - 1)`` with a baseline equity of 1.0 before the first
  observation, so a loss on day one counts (``qs.stats.max_drawdown``, ``ep.max_drawdown``);
  its duration as ``qs.stats.drawdown_details(...)['days']`` (see :class:`Drawdown`);
* Calmar ``CAGR / |max drawdown|`` (``qs.stats.calmar``);
* per period: win rate ``#(r > 0) / #(r ≠ 0)`` (``qs.stats.win_rate``), profit factor
  ``Σr⁺ / |Σr⁻|`` (``qs.stats.profit_factor``), exposure ``#(r ≠ 0) / N`` rounded *up* to a
  whole percent (``qs.stats.exposure``);
* per trade (vectorbt ``pf.trades``): win rate ``#(pnl > 0) / #trades``, profit factor
  ``Σpnl⁺ / |Σpnl⁻|``, expectancy ``WR·avg_win - (1 - WR)·|avg_loss|`` (a break-even trade
  counts in ``1 - WR``; a missing average is 0), trade count.

**Degenerate inputs** (where the references disagree, the choice is stated):

* fewer than two returns: volatility, Sharpe and Sortino are NaN (empyrical; quantstats
  returns a Sortino for a single observation);
* zero dispersion (all returns equal): volatility 0.0; Sharpe ``±inf`` for a non-zero mean,
  NaN for a zero mean (empyrical; quantstats agrees when pandas' std comes out exactly 0);
* no negative return: Sortino ``+inf`` for a positive mean, NaN when every return is 0
  (empyrical; quantstats returns NaN for ``+inf``);
* no drawdown: Calmar ``+inf`` for a positive CAGR, NaN for a zero CAGR (quantstats raises
  ``ZeroDivisionError``);
* no non-zero return: per-period win rate and profit factor are NaN (quantstats returns 0.0);
  no losing period/trade with at least one winner: profit factor ``+inf``;
* exposure uses an exact integer ceiling: 7 active days of 25 is 0.28 (quantstats computes
  ``ceil(7 / 25 * 100)`` in floating point, gets ``ceil(28.000000000000004)`` and says 0.29).

Raises (every public function): :class:`MetricsInputError` (a ``ValueError`` and a
:class:`quant.errors.ValidationError`) for a bad input; the message names the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError

__all__ = [
    "Drawdown",
    "FloatArray",
    "Metrics",
    "MetricsInputError",
    "compute_metrics",
    "drawdown_series",
    "max_drawdown",
    "returns_from_equity",
]

FloatArray = npt.NDArray[np.float64]
DayArray = npt.NDArray[np.datetime64]

_ONE_DAY: Final = np.timedelta64(1, "D")


class MetricsInputError(ValidationError, ValueError):
    """A metrics input that cannot be used (wrong shape or type, non-finite, out of range).

    Both a :class:`ValueError` (for plain callers) and a :class:`quant.errors.ValidationError`
    (so workers treat it as permanent: retrying the same input fails the same way).
    """


# ------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest drawdown of an equity curve.

    ``depth`` is a negative fraction (``-0.183`` = -18.3 %), 0.0 when equity never fell below
    its running peak (then every date is None and ``days`` is 0).

    Dates follow ``qs.stats.drawdown_details``, except ``end``:

    * ``start``: the first observation *below* the peak (not the peak day itself);
    * ``trough``: the observation with the lowest equity (the first, on a tie);
    * ``end``: the recovery day, the first observation back at or above the peak; None if the
      drawdown is not recovered by the last observation. (quantstats' ``end`` column is the
      last observation still under water, i.e. the one before this.)
    * ``days``: calendar days under water, ``(last day under water - start).days + 1``, which
      is quantstats' ``days``. For a recovered drawdown the last day under water is the
      observation before ``end``; for an unrecovered one it is the last observation (as
      quantstats, which closes an open drawdown at the end of the series).
    """

    depth: float
    start: np.datetime64 | None
    trough: np.datetime64 | None
    end: np.datetime64 | None
    days: int


_NO_DRAWDOWN: Final = Drawdown(depth=0.0, start=None, trough=None, end=None, days=0)

_DATE_FIELDS: Final = frozenset({"max_drawdown_start", "max_drawdown_end"})
_INT_FIELDS: Final = frozenset({"max_drawdown_days", "trades", "periods"})


@dataclass(frozen=True, slots=True)
class Metrics:
    """The metrics of one backtest (see the module docstring for formulas and edge cases).

    Fractions: ``total_return``, ``cagr``, ``volatility`` (annualized), ``max_drawdown``
    (negative), ``win_rate``, ``exposure``, ``period_win_rate``. Plain ratios: ``sharpe``,
    ``sortino``, ``calmar``, ``profit_factor``, ``period_profit_factor``. Currency:
    ``expectancy``. Counts: ``trades``, ``periods``; ``max_drawdown_days`` in calendar days.
    ``max_drawdown_start``/``max_drawdown_end`` are :class:`Drawdown` ``start``/``end`` (day
    resolution; ``end`` None while not recovered).

    ``win_rate``, ``profit_factor``, ``expectancy`` and ``trades`` are per *trade*;
    ``period_win_rate``, ``period_profit_factor`` and ``exposure`` per *period* (day).

    Empty returns give ``periods=0``, ``total_return=0.0``, ``max_drawdown=0.0``,
    ``max_drawdown_days=0``, ``exposure=0.0``, no dates, and NaN for ``cagr``,
    ``volatility``, ``sharpe``, ``sortino``, ``calmar``, ``period_win_rate`` and
    ``period_profit_factor``. No trades give ``trades=0`` and NaN ``win_rate``,
    ``profit_factor`` and ``expectancy``.
    """

    total_return: float
    cagr: float
    volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_start: np.datetime64 | None
    max_drawdown_end: np.datetime64 | None
    max_drawdown_days: int
    calmar: float
    win_rate: float
    profit_factor: float
    expectancy: float
    exposure: float
    trades: int
    period_win_rate: float
    period_profit_factor: float
    periods: int

    def as_dict(self) -> dict[str, float | int | str | None]:
        """JSON-safe dict, one key per field in declaration order.

        NaN and ±inf become None (so ``json.dumps(..., allow_nan=False)`` works), dates become
        ISO ``'YYYY-MM-DD'`` strings, counts stay ints, everything else is a Python float.
        """
        out: dict[str, float | int | str | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _DATE_FIELDS:
                out[f.name] = None if value is None else _iso_day(value)
            elif f.name in _INT_FIELDS:
                out[f.name] = int(value)
            else:
                number = float(value)
                out[f.name] = number if math.isfinite(number) else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        """Rebuild from :meth:`as_dict` output (None -> NaN for floats, so ±inf comes back NaN).

        Raises:
            MetricsInputError: a field is missing, a key is unknown, or a value has the wrong
                type (a float that is not a number, a count that is not an int, a date that is
                not ``'YYYY-MM-DD'``); the message names the key.
        """
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise MetricsInputError(
                f"metrics dict is missing {', '.join(missing)}", field=missing[0]
            )
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise MetricsInputError(
                f"metrics dict has unknown key(s) {', '.join(unknown)}", field=unknown[0]
            )
        values: dict[str, Any] = {}
        for name in names:
            raw = data[name]
            if name in _DATE_FIELDS:
                values[name] = _parse_day(raw, name)
            elif name in _INT_FIELDS:
                if isinstance(raw, bool) or not isinstance(raw, int | np.integer):
                    raise MetricsInputError(
                        f"{name} must be an int, got {raw!r}", field=name, value=raw
                    )
                values[name] = int(raw)
            elif raw is None:
                values[name] = math.nan
            elif isinstance(raw, bool) or not isinstance(raw, int | float | np.number):
                raise MetricsInputError(
                    f"{name} must be a number or None, got {raw!r}", field=name, value=raw
                )
            else:
                values[name] = float(raw)
        return cls(**values)


# ------------------------------------------------------------------------------------------
# Public functions


def returns_from_equity(equity: npt.ArrayLike, initial: float | None = None) -> FloatArray:
    """Per-period simple returns (fractions) of an equity curve (currency units).

    With ``initial`` (the capital before the first observation), the first return is
    ``equity[0] / initial - 1`` and the result has ``len(equity)`` values: this is the form
    the metrics expect (one return per observation, aligned with its time). Without it the
    first observation has no predecessor, so it is dropped: ``len(equity) - 1`` values,
    ``equity[i] / equity[i-1] - 1`` aligned with ``times[1:]`` (empty for fewer than two).

    Raises:
        MetricsInputError: ``equity`` is not a 1-D numeric sequence, holds a non-finite or
            negative value, or a value a return is divided by is 0; ``initial`` is not a
            finite number > 0. The message names the value and its index.
    """
    values = _as_float_1d(equity, "equity")
    _check_finite(values, "equity")
    _check_non_negative(values, "equity")
    if initial is not None:
        start = _positive_number(initial, "initial")
        base = np.concatenate(([start], values[:-1]))
        offset = -1
        current = values
    else:
        base = values[:-1]
        offset = 0
        current = values[1:]
    zero = np.flatnonzero(base == 0.0)
    if zero.size:
        at = int(zero[0]) + offset
        raise MetricsInputError(
            f"equity[{at}] is 0.0: the next return would divide by zero",
            field="equity",
            value=0.0,
        )
    result: FloatArray = current / base - 1.0
    return result


def drawdown_series(equity: npt.ArrayLike, *, initial: float | None = None) -> FloatArray:
    """Drawdown per observation as a fraction: ``equity / running peak - 1`` (0 at a high, <= 0).

    ``equity`` is in currency (or any positive scale). Baseline as quantstats: for a price or
    equity series the running peak starts at the first observation; pass ``initial`` (the
    capital before the first observation, 1.0 for an equity built as ``cumprod(1 + r)``) to
    start the peak there instead, which is what quantstats does for returns (it prepends a
    1.0 baseline), so a loss in the first period shows as a drawdown.

    Raises:
        MetricsInputError: ``equity`` is not a 1-D numeric sequence or holds a non-finite or
            negative value; the first peak is 0 (``equity[0]`` without ``initial``);
            ``initial`` is not a finite number > 0.
    """
    values = _as_float_1d(equity, "equity")
    _check_finite(values, "equity")
    _check_non_negative(values, "equity")
    peak = np.maximum.accumulate(values) if values.size else values.copy()
    if initial is not None:
        np.maximum(peak, _positive_number(initial, "initial"), out=peak)
    elif values.size and values[0] == 0.0:
        raise MetricsInputError(
            "equity[0] is 0.0: the running peak would be 0 (pass initial)",
            field="equity",
            value=0.0,
        )
    result: FloatArray = values / peak - 1.0
    return result


def max_drawdown(returns: npt.ArrayLike, times: npt.ArrayLike) -> Drawdown:
    """The deepest drawdown of the equity built from ``returns`` (fractions) from 1.0.

    ``times`` are the observations' datetime64 stamps (any resolution; normalised to days),
    strictly increasing, one per return. Empty returns give a 0.0 :class:`Drawdown`.

    Raises:
        MetricsInputError: bad ``returns`` (see :func:`compute_metrics`) or ``times`` (not
            datetime64, timezone-aware, NaT, not strictly increasing, length differs from
            ``returns``).
    """
    values = _as_returns(returns)
    days = _as_days(times, values.size)
    equity = _equity(values)
    return _max_drawdown(_drawdown_of(equity), days)


def compute_metrics(
    returns: npt.ArrayLike,
    times: npt.ArrayLike,
    trade_pnl: npt.ArrayLike,
    *,
    periods_per_year: int = 252,
) -> Metrics:
    """Compute every :class:`Metrics` field (formulas and edge cases: module docstring).

    Args:
        returns: per-period simple returns as fractions (``0.01`` = +1 %), finite and >= -1.
        times: datetime64 stamps of the returns (day resolution or finer, normalised to days;
            strictly increasing), the same length as ``returns``.
        trade_pnl: realized profit or loss of each closed trade in currency, finite; may be
            empty.
        periods_per_year: annualization factor, an int > 0 (252 for KRX daily, 365 crypto).

    Empty ``returns`` do not raise: see :class:`Metrics` for the values.

    Raises:
        MetricsInputError: ``returns`` or ``trade_pnl`` not a 1-D numeric sequence or holding
            a non-finite value; a return below -1 (-100 %); bad ``times`` (not datetime64,
            timezone-aware, NaT, not strictly increasing, length differs);
            ``periods_per_year`` not an int > 0. The message names the value (and its index).
    """
    values = _as_returns(returns)
    days = _as_days(times, values.size)
    pnl = _as_float_1d(trade_pnl, "trade_pnl")
    _check_finite(pnl, "trade_pnl")
    ppy = _check_periods(periods_per_year)

    n = values.size
    nan = math.nan
    equity = _equity(values)
    dd = _max_drawdown(_drawdown_of(equity), days)

    if n == 0:
        total_return = 0.0
        cagr = nan
    else:
        total_return = float(equity[-1]) - 1.0
        cagr = (1.0 + total_return) ** (ppy / n) - 1.0

    volatility, sharpe, sortino = _risk_ratios(values, ppy)

    if n == 0:
        calmar = nan
    elif dd.depth < 0.0:
        calmar = cagr / abs(dd.depth)
    else:
        calmar = math.inf if cagr > 0.0 else nan

    active = int(np.count_nonzero(values))
    period_wins = int(np.count_nonzero(values > 0.0))
    period_win_rate = period_wins / active if active else nan
    period_profit_factor = _profit_factor(values)
    # Exact ceiling to a whole percent (integer arithmetic, no float overshoot).
    exposure = -(-100 * active // n) / 100 if n else 0.0

    win_rate, profit_factor, expectancy = _trade_stats(pnl)

    return Metrics(
        total_return=total_return,
        cagr=cagr,
        volatility=volatility,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=dd.depth,
        max_drawdown_start=dd.start,
        max_drawdown_end=dd.end,
        max_drawdown_days=dd.days,
        calmar=calmar,
        win_rate=win_rate,
        profit_factor=profit_factor,
        expectancy=expectancy,
        exposure=exposure,
        trades=int(pnl.size),
        period_win_rate=period_win_rate,
        period_profit_factor=period_profit_factor,
        periods=n,
    )


# ------------------------------------------------------------------------------------------
# Computation helpers (inputs already validated)


def _equity(values: FloatArray) -> FloatArray:
    """Equity after each period, from 1.0: ``cumprod(1 + r)``."""
    return np.cumprod(values + 1.0, dtype=np.float64)


def _drawdown_of(equity: FloatArray) -> FloatArray:
    """``equity / running peak - 1`` with a 1.0 baseline before the first observation."""
    peak = np.maximum.accumulate(equity) if equity.size else equity.copy()
    np.maximum(peak, 1.0, out=peak)
    result: FloatArray = equity / peak - 1.0
    return result


def _max_drawdown(dd: FloatArray, days: DayArray) -> Drawdown:
    if dd.size == 0:
        return _NO_DRAWDOWN
    trough = int(np.argmin(dd))
    depth = float(dd[trough])
    if not depth < 0.0:
        return _NO_DRAWDOWN
    at_peak_before = np.flatnonzero(dd[:trough] >= 0.0)
    start = int(at_peak_before[-1]) + 1 if at_peak_before.size else 0
    at_peak_after = np.flatnonzero(dd[trough + 1 :] >= 0.0)
    end: np.datetime64 | None
    if at_peak_after.size:
        recovery = trough + 1 + int(at_peak_after[0])
        last_under = recovery - 1
        end = days[recovery]
    else:
        last_under = dd.size - 1
        end = None
    duration = int((days[last_under] - days[start]) // _ONE_DAY) + 1
    return Drawdown(depth=depth, start=days[start], trough=days[trough], end=end, days=duration)


def _risk_ratios(values: FloatArray, ppy: int) -> tuple[float, float, float]:
    """(annualized volatility, Sharpe, Sortino); NaN for fewer than two returns."""
    n = values.size
    if n < 2:
        return math.nan, math.nan, math.nan
    root = math.sqrt(ppy)
    mean = float(values.mean())
    # Equal values have exactly zero dispersion; np.std can leave a ~1e-18 residue.
    std = 0.0 if values.max() == values.min() else float(values.std(ddof=1))
    volatility = std * root
    if std > 0.0:
        sharpe = mean / std * root
    else:
        sharpe = math.nan if mean == 0.0 else math.copysign(math.inf, mean)
    downside_values = np.minimum(values, 0.0)
    downside = math.sqrt(float(np.dot(downside_values, downside_values)) / n)
    if downside > 0.0:
        sortino = mean / downside * root
    elif mean > 0.0:
        sortino = math.inf
    else:
        sortino = math.nan
    return volatility, sharpe, sortino


def _profit_factor(values: FloatArray) -> float:
    """``Σ positive / |Σ negative|``; inf with no negative and a positive; NaN if all 0."""
    gains = float(values[values > 0.0].sum())
    losses = -float(values[values < 0.0].sum())
    if losses > 0.0:
        return gains / losses
    return math.inf if gains > 0.0 else math.nan


def _trade_stats(pnl: FloatArray) -> tuple[float, float, float]:
    """(win rate, profit factor, expectancy) per trade, as vectorbt's ``pf.trades``."""
    count = pnl.size
    if count == 0:
        return math.nan, math.nan, math.nan
    wins = pnl[pnl > 0.0]
    losses = pnl[pnl < 0.0]
    win_rate = wins.size / count
    avg_win = float(wins.mean()) if wins.size else 0.0
    avg_loss = float(losses.mean()) if losses.size else 0.0
    expectancy = win_rate * avg_win - (1.0 - win_rate) * abs(avg_loss)
    return win_rate, _profit_factor(pnl), expectancy


# ------------------------------------------------------------------------------------------
# Validation


def _as_float_1d(values: object, name: str) -> FloatArray:
    """``values`` as a 1-D float64 array (ints and floats only; no bools, strings, None)."""
    if values is None or isinstance(values, str | bytes):
        raise MetricsInputError(
            f"{name} must be a 1-D sequence of numbers, got {values!r}", field=name, value=values
        )
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise MetricsInputError(
            f"{name} must be a 1-D sequence of numbers ({exc})", field=name
        ) from None
    if raw.ndim != 1:
        raise MetricsInputError(
            f"{name} must be one-dimensional, got shape {raw.shape}", field=name
        )
    if raw.size and raw.dtype.kind not in "iuf":
        raise MetricsInputError(
            f"{name} must hold numbers, got dtype {raw.dtype} (first value {raw[0]!r})",
            field=name,
        )
    return np.ascontiguousarray(raw, dtype=np.float64)


def _check_finite(values: FloatArray, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        at = int(bad[0])
        raise MetricsInputError(
            f"{name}[{at}] is {values[at]}: must be finite", field=name, value=float(values[at])
        )


def _check_non_negative(values: FloatArray, name: str) -> None:
    bad = np.flatnonzero(values < 0.0)
    if bad.size:
        at = int(bad[0])
        raise MetricsInputError(
            f"{name}[{at}] is {values[at]}: must be >= 0", field=name, value=float(values[at])
        )


def _as_returns(returns: npt.ArrayLike) -> FloatArray:
    values = _as_float_1d(returns, "returns")
    _check_finite(values, "returns")
    bad = np.flatnonzero(values < -1.0)
    if bad.size:
        at = int(bad[0])
        raise MetricsInputError(
            f"returns[{at}] is {values[at]}: a return below -1 (-100 %) leaves negative equity",
            field="returns",
            value=float(values[at]),
        )
    return values


def _as_days(times: npt.ArrayLike, n: int) -> DayArray:
    """``times`` as datetime64[D], checked: 1-D, no NaT, strictly increasing, length ``n``.

    Timezone-aware stamps are refused: numpy would convert them to UTC, moving a KST
    midnight to the previous day.
    """
    if times is None or isinstance(times, str | bytes):
        raise MetricsInputError(
            f"times must be a 1-D sequence of datetime64, got {times!r}", field="times"
        )
    raw = np.asarray(times)
    if raw.dtype.kind in "biufc":
        raise MetricsInputError(
            f"times must be datetime64, got dtype {raw.dtype} (numbers are ambiguous)",
            field="times",
        )
    if raw.dtype.kind == "O" and any(getattr(t, "tzinfo", None) is not None for t in raw.flat):
        raise MetricsInputError(
            "times are timezone-aware: pass naive local (exchange) times, e.g. "
            "index.tz_localize(None), so each stamp keeps its trading day",
            field="times",
        )
    if raw.dtype.kind != "M":
        try:
            raw = raw.astype("datetime64[ns]")
        except (TypeError, ValueError) as exc:
            raise MetricsInputError(
                f"times must be datetime64, got dtype {raw.dtype} ({exc})", field="times"
            ) from None
    if raw.ndim != 1:
        raise MetricsInputError(f"times must be one-dimensional, got shape {raw.shape}")
    if raw.size != n:
        raise MetricsInputError(
            f"times has {raw.size} values but returns has {n}: they must match",
            field="times",
            value=raw.size,
        )
    nat = np.flatnonzero(np.isnat(raw))
    if nat.size:
        at = int(nat[0])
        raise MetricsInputError(f"times[{at}] is NaT", field="times", value=None)
    backwards = np.flatnonzero(raw[1:] <= raw[:-1])
    if backwards.size:
        at = int(backwards[0]) + 1
        raise MetricsInputError(
            f"times[{at}] is {raw[at]}, not after times[{at - 1}] = {raw[at - 1]}: times must "
            "be strictly increasing",
            field="times",
            value=str(raw[at]),
        )
    days: DayArray = raw.astype("datetime64[D]")
    return days


def _check_periods(periods_per_year: object) -> int:
    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, int | np.integer):
        raise MetricsInputError(
            f"periods_per_year must be an int, got {periods_per_year!r}",
            field="periods_per_year",
            value=periods_per_year,
        )
    if periods_per_year <= 0:
        raise MetricsInputError(
            f"periods_per_year is {periods_per_year}: must be > 0",
            field="periods_per_year",
            value=int(periods_per_year),
        )
    return int(periods_per_year)


def _positive_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise MetricsInputError(f"{name} must be a number, got {value!r}", field=name)
    number = float(value)
    if not (math.isfinite(number) and number > 0.0):
        raise MetricsInputError(
            f"{name} is {value!r}: must be a finite number > 0", field=name, value=number
        )
    return number


def _iso_day(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value.astype("datetime64[D]"), unit="D"))


def _parse_day(raw: object, name: str) -> np.datetime64 | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise MetricsInputError(
            f"{name} must be 'YYYY-MM-DD' or None, got {raw!r}", field=name, value=raw
        )
    try:
        day = np.datetime64(raw, "D")
    except ValueError:
        raise MetricsInputError(
            f"{name} is {raw!r}: not a 'YYYY-MM-DD' date", field=name, value=raw
        ) from None
    if np.isnat(day):
        raise MetricsInputError(f"{name} is {raw!r}: not a date", field=name, value=raw)
    return day
