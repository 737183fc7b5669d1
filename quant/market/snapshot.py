"""The KRX trading day so far: session-time checks and a deterministic intraday path.

:func:`session_fraction` validates a snapshot time (``at``, timezone-aware, within the regular
session 09:00–15:30 KST of ``day``) and says how much of the session has passed.
:func:`intraday_path` gives, for whole arrays of daily bars, the day so far at that fraction
along a path that starts at the bar's open and ends exactly at the bar: used by the simulated
market for instruments, indices and ETFs alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import numpy.typing as npt

from quant.calendar import check_aware, check_date
from quant.errors import ValidationError

__all__ = [
    "KRX_OPEN",
    "KST",
    "SESSION_MINUTES",
    "intraday_path",
    "session_fraction",
    "volume_fraction",
]

FloatArray = npt.NDArray[np.float64]

#: Korea Standard Time (UTC+9, no daylight saving).
KST = timezone(timedelta(hours=9), "KST")
#: KRX regular session open (KST).
KRX_OPEN = time(9, 0)
#: Minutes in the regular session, 09:00–15:30 KST.
SESSION_MINUTES = 390.0

# U-shaped intraday volume: intensity 1 + b cos(2 pi tau), heavy at the open and the close.
_VOLUME_U = 0.6


def session_fraction(day: date, at: datetime) -> float:
    """The share (0–1) of ``day``'s regular session (09:00–15:30 KST) passed at ``at``;
    1.0 at or after 15:30 KST on ``day`` (the day's final bar).

    Raises:
        quant.errors.ValidationError: ``day`` not a plain date, ``at`` naive, ``at`` not on
            ``day`` in KST, or before 09:00 KST (the session has not opened).
    """
    check_date(day, "day")
    check_aware(at, "at")
    local = at.astimezone(KST)
    if local.date() != day:
        raise ValidationError(
            f"at {at.isoformat()} is {local.date().isoformat()} in KST, not the session day "
            f"{day.isoformat()}",
            field="at",
            value=at,
        )
    opened = datetime.combine(day, KRX_OPEN, tzinfo=KST)
    if local < opened:
        raise ValidationError(
            f"at {at.isoformat()} is before the 09:00 KST open of {day.isoformat()}",
            field="at",
            value=at,
        )
    minutes = (local - opened).total_seconds() / 60.0
    return min(1.0, minutes / SESSION_MINUTES)


def volume_fraction(tau: float) -> float:
    """Share of the day's volume traded by session fraction ``tau`` (0–1): a U-shaped
    profile, ``tau + b sin(2 pi tau) / (2 pi)`` with b = 0.6 — increasing, 0 at the open and
    exactly 1 at the close."""
    if tau >= 1.0:
        return 1.0
    if tau <= 0.0:
        return 0.0
    return tau + _VOLUME_U * math.sin(2.0 * math.pi * tau) / (2.0 * math.pi)


def intraday_path(
    tau: float,
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    u1: FloatArray,
    u2: FloatArray,
    rounder: Callable[[FloatArray], FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The day so far at session fraction ``tau`` for each bar: ``(open, high, low, last)``.

    Each bar's path is piecewise linear through four points: the open at 0, the first extreme
    at ``t1``, the second at ``t2``, the close at 1 (``0 < t1 < t2 < 1`` from the uniform
    draws ``u1``/``u2``). An up day (close >= open) visits the low first, a down day the high
    first. So the path starts exactly at the open, its running high/low never leave the bar's
    high/low, reach them when passed, and at ``tau = 1`` the result is exactly the bar
    (``last == close``). ``rounder`` (e.g. to a KRX tick) rounds the last price between the
    points, which is then kept within the bar's low/high; the bar's own prices are used
    unrounded (they are already on their tick).
    """
    t1 = 0.05 + 0.45 * u1
    t2 = t1 + (0.95 - t1) * (0.15 + 0.8 * u2)
    up = close >= open_
    first = np.where(up, low, high)
    second = np.where(up, high, low)
    if tau >= 1.0:
        return open_.copy(), high.copy(), low.copy(), close.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        last = np.where(
            tau <= t1,
            open_ + (first - open_) * (tau / t1),
            np.where(
                tau <= t2,
                first + (second - first) * ((tau - t1) / (t2 - t1)),
                second + (close - second) * ((tau - t2) / (1.0 - t2)),
            ),
        )
    if rounder is not None:
        last = np.clip(rounder(last), low, high)
    passed_first = tau >= t1
    passed_second = tau >= t2
    visited_high = np.where(
        up, np.where(passed_second, high, -np.inf), np.where(passed_first, high, -np.inf)
    )
    visited_low = np.where(
        up, np.where(passed_first, low, np.inf), np.where(passed_second, low, np.inf)
    )
    run_high = np.maximum(np.maximum(open_, last), visited_high)
    run_low = np.minimum(np.minimum(open_, last), visited_low)
    return open_.copy(), run_high, run_low, last
