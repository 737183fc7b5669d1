"""The crypto volatility check of seed 001 (issue 23): is the last hour of a market unusual
against its trailing 30 days?

Two measures, both in units of ``σ``, the standard deviation (``ddof=1``) of the market's
hourly log returns over the trailing window (the hour assessed left out):

* **move** — the last hour's log return, ``ln(P_now / P_now−1h)``, from the 5-minute bars: a
  move of ``k σ`` is a ``k``-sigma hour;
* **realized** — the last hour's realized volatility, ``sqrt(Σ r²)`` over its twelve
  5-minute log returns: for a random walk its square is an unbiased estimate of the hour's
  variance, so a calm hour reads about ``1 σ`` even when it ends where it began, and a
  whipsaw hour reads high without a net move.

The hour is *unusual* when ``|move| ≥ threshold`` or ``realized ≥ threshold`` (default 3,
``QUANTBEAT_VOLATILITY_SIGMA``). Fewer than :data:`MIN_HOURLY_RETURNS` hourly returns in the
window, or a 5-minute series that does not cover the hour, give no verdict (``reason`` says
why) rather than a guess.

Pure: arrays in, a :class:`VolatilityReading` out; no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError

#: Bar end times: ``datetime64`` in UTC, or timezone-aware datetimes.
Times = npt.ArrayLike | Sequence[datetime]

#: The trailing window the hour is compared with.
WINDOW = timedelta(days=30)
#: Hourly returns the window must hold for a verdict (two days of a 24/7 market).
MIN_HOURLY_RETURNS = 48
#: The 5-minute returns of an hour.
FIVE_MINUTE_RETURNS = 12
#: The default threshold in sigmas (``QUANTBEAT_VOLATILITY_SIGMA``).
DEFAULT_SIGMA = 3.0


@dataclass(frozen=True)
class VolatilityReading:
    """The check of one market for the hour ending at ``at`` (UTC).

    ``move`` is the hour's log return and ``realized`` its realized volatility (both
    fractions); ``move_sigma`` and ``realized_sigma`` the same in units of ``hourly_sigma``,
    the trailing window's hourly standard deviation over ``hourly_returns`` returns.
    ``unusual`` is the verdict against ``threshold``; ``None`` when there is none, and then
    ``reason`` says why (the other figures may be ``None``)."""

    market: str
    at: datetime
    threshold: float
    price: float | None
    price_hour_ago: float | None
    move: float | None
    realized: float | None
    hourly_sigma: float | None
    hourly_returns: int
    move_sigma: float | None
    realized_sigma: float | None
    unusual: bool | None
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields (``at`` in ISO 8601, floats as computed)."""
        return {
            "market": self.market,
            "at": self.at.isoformat(),
            "threshold": self.threshold,
            "price": self.price,
            "price_hour_ago": self.price_hour_ago,
            "move": self.move,
            "realized": self.realized,
            "hourly_sigma": self.hourly_sigma,
            "hourly_returns": self.hourly_returns,
            "move_sigma": self.move_sigma,
            "realized_sigma": self.realized_sigma,
            "unusual": self.unusual,
            "reason": self.reason,
        }


def _times(values: Times, what: str) -> npt.NDArray[np.datetime64]:
    """UTC ``datetime64[s]`` from datetime64 values (UTC) or timezone-aware datetimes."""
    raw = np.asarray(values)
    if raw.dtype == object:
        items = list(raw.ravel())
        for k, v in enumerate(items):
            if not isinstance(v, datetime) or v.tzinfo is None:
                raise ValidationError(
                    f"{what} time at position {k} must be a timezone-aware datetime, got {v!r}",
                    field=what,
                )
        raw = np.array(
            [v.astimezone(UTC).replace(tzinfo=None) for v in items], dtype="datetime64[s]"
        )
    array = raw.astype("datetime64[s]")
    if array.ndim != 1:
        raise ValidationError(f"{what} times must be one-dimensional", field=what)
    if len(array) > 1 and not bool(np.all(np.diff(array) > np.timedelta64(0, "s"))):
        raise ValidationError(f"{what} times must be strictly increasing", field=what)
    return array


def _prices(values: npt.ArrayLike, n: int, what: str) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise ValidationError(
            f"{what} closes must match its times ({n}), got shape {array.shape}", field=what
        )
    bad = ~np.isfinite(array) | (array <= 0)
    if bool(bad.any()):
        first = int(np.flatnonzero(bad)[0])
        raise ValidationError(
            f"{what} close at position {first} is not a positive price: {array[first]!r}",
            field=what,
            value=float(array[first]),
        )
    return array


def assess(
    market: str,
    at: datetime,
    *,
    hourly_ends: Times,
    hourly_closes: npt.ArrayLike,
    five_minute_ends: Times,
    five_minute_closes: npt.ArrayLike,
    threshold: float = DEFAULT_SIGMA,
) -> VolatilityReading:
    """Assess the hour ending at ``at`` (timezone-aware; compared in UTC) for ``market``.

    ``hourly_ends``/``hourly_closes``: closed 60-minute bars by their end time (a bar
    starting at 10:00 ends at 11:00), ascending; the returns of the hours ending in
    ``(at − 1h − WINDOW, at − 1h]`` make the baseline (720 in 30 days; consecutive bars
    only: a missing hour breaks a return). Times are ``datetime64`` in UTC or timezone-aware
    datetimes.
    ``five_minute_ends``/``five_minute_closes``: closed 5-minute bars by their end time,
    ascending; the bars ending at ``at − 1h`` and at ``at`` give the move, the thirteen
    ending every five minutes from ``at − 1h`` to ``at`` the realized volatility.

    Raises:
        quant.errors.ValidationError: ``threshold`` not a positive finite number, ``at``
            naive, times not strictly increasing, closes not matching their times or not
            positive finite prices (the bad position and value named).
    """
    if not isinstance(threshold, int | float) or not math.isfinite(threshold) or threshold <= 0:
        raise ValidationError(
            f"threshold must be a positive number of sigmas, got {threshold!r}",
            field="threshold",
            value=threshold,
        )
    if at.tzinfo is None:
        raise ValidationError(f"at must be timezone-aware, got {at!r}", field="at")
    end = np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "s")
    hour = np.timedelta64(3600, "s")
    h_times = _times(hourly_ends, "hourly")
    h_closes = _prices(hourly_closes, len(h_times), "hourly")
    f_times = _times(five_minute_ends, "five_minute")
    f_closes = _prices(five_minute_closes, len(f_times), "five_minute")

    # returns of the hours ending in (at − 1h − WINDOW, at − 1h]: their bars, and the bar
    # before the first of them
    span = np.timedelta64(int(WINDOW.total_seconds()), "s")
    window = (h_times > end - 2 * hour - span) & (h_times <= end - hour)
    wt, wc = h_times[window], h_closes[window]
    consecutive = np.diff(wt) == hour
    returns = np.diff(np.log(wc))[consecutive]
    sigma = float(np.std(returns, ddof=1)) if len(returns) >= 2 else None

    grid = end - hour + np.arange(FIVE_MINUTE_RETURNS + 1) * np.timedelta64(300, "s")
    found = np.searchsorted(f_times, grid)
    present = (found < len(f_times)) & (f_times[np.minimum(found, len(f_times) - 1)] == grid)
    closes = f_closes[found[present]] if bool(present.all()) else None

    base = VolatilityReading(
        market=market,
        at=at,
        threshold=float(threshold),
        price=None if closes is None else float(closes[-1]),
        price_hour_ago=None if closes is None else float(closes[0]),
        move=None,
        realized=None,
        hourly_sigma=sigma,
        hourly_returns=len(returns),
        move_sigma=None,
        realized_sigma=None,
        unusual=None,
    )
    if closes is None:
        missing = int((~present).sum())
        return replace(base, reason=f"{missing} of the hour's 13 five-minute closes are missing")
    logs = np.log(closes)
    move = float(logs[-1] - logs[0])
    realized = float(math.sqrt(float(np.sum(np.diff(logs) ** 2))))
    base = replace(base, move=move, realized=realized)
    if len(returns) < MIN_HOURLY_RETURNS:
        return replace(
            base,
            reason=f"{len(returns)} hourly returns in the trailing 30 days, "
            f"{MIN_HOURLY_RETURNS} needed",
        )
    if not sigma:
        return replace(base, reason="the trailing hourly returns do not vary")
    move_sigma = move / sigma
    realized_sigma = realized / sigma
    return replace(
        base,
        move_sigma=move_sigma,
        realized_sigma=realized_sigma,
        unusual=bool(abs(move_sigma) >= threshold or realized_sigma >= threshold),
    )
