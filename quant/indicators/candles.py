"""A candle series as columns of NumPy arrays: what indicators read and what the cache stores.

``time`` is ``datetime64[D]`` for daily bars (the trade date) and ``datetime64[s]`` (UTC bar
start) for intraday bars, strictly increasing. Prices are in the instrument's currency,
``volume`` in shares (coins), ``traded_value`` in KRW; a missing value is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quant.errors import ValidationError
from quant.indicators._arrays import FloatArray

#: Columns of a candle series besides ``time``, in storage order.
COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "traded_value")


@dataclass(frozen=True, eq=False)
class Candles:
    """An instrument's bars in time order; every column has ``len(time)`` entries."""

    time: npt.NDArray[np.datetime64]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    traded_value: FloatArray

    def __post_init__(self) -> None:
        n = len(self.time)
        for name in COLUMNS:
            column = getattr(self, name)
            if column.dtype != np.float64 or column.ndim != 1 or len(column) != n:
                raise ValidationError(
                    f"candle column {name} must be 1-D float64 of length {n}, got "
                    f"{column.dtype} {column.shape}",
                    field=name,
                )
        if n > 1 and not (np.diff(self.time.astype(np.int64)) > 0).all():
            raise ValidationError("candle times must be strictly increasing", field="time")

    def __len__(self) -> int:
        return len(self.time)

    def column(self, name: str) -> FloatArray:
        """The column called ``name`` (one of :data:`COLUMNS`).

        Raises:
            quant.errors.ValidationError: unknown column.
        """
        if name not in COLUMNS:
            raise ValidationError(
                f"unknown candle column {name!r} (known: {', '.join(COLUMNS)})",
                field="source",
                value=name,
            )
        column: FloatArray = getattr(self, name)
        return column

    @classmethod
    def from_columns(
        cls,
        time: npt.ArrayLike,
        *,
        unit: str,
        **columns: npt.ArrayLike,
    ) -> Candles:
        """Build from array-likes; ``unit`` is ``"D"`` (daily) or ``"s"`` (intraday), a
        missing column is all NaN.

        Raises:
            quant.errors.ValidationError: unknown column or unit, lengths differ, times not
                strictly increasing.
        """
        if unit not in ("D", "s"):
            raise ValidationError(f"unit must be 'D' or 's', got {unit!r}", field="unit")
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise ValidationError(
                f"unknown candle column(s) {sorted(unknown)}", field=sorted(unknown)[0]
            )
        t = np.asarray(time, dtype=f"datetime64[{unit}]")
        n = len(t)
        arrays = {
            name: (
                np.ascontiguousarray(columns[name], dtype=np.float64)
                if name in columns
                else np.full(n, np.nan)
            )
            for name in COLUMNS
        }
        return cls(time=t, **arrays)

    @classmethod
    def empty(cls, unit: str = "D") -> Candles:
        """A series with no bars."""
        return cls.from_columns(np.array([], dtype=f"datetime64[{unit}]"), unit=unit)

    def head(self, bars: int) -> Candles:
        """The first ``bars`` bars (views, no copy): the series as it stood at bar
        ``bars - 1``. A prefix of valid candles is valid, so it is not checked again (a
        backtest takes one per scanned bar)."""
        head = object.__new__(Candles)
        object.__setattr__(head, "time", self.time[:bars])
        for name in COLUMNS:
            object.__setattr__(head, name, getattr(self, name)[:bars])
        return head

    def tail(self, bars: int) -> Candles:
        """The last ``bars`` bars (all of them when there are fewer)."""
        if bars >= len(self):
            return self
        start = len(self) - bars
        return Candles(
            time=self.time[start:],
            **{name: getattr(self, name)[start:] for name in COLUMNS},
        )


def with_partial_bar(
    candles: Candles,
    day: np.datetime64,
    bar: tuple[float, float, float, float, float, float],
) -> Candles:
    """``candles`` with the day so far (``bar``: open, high, low, last, volume, traded value)
    as its bar of ``day`` — appended after the last bar, or replacing a bar already stored
    for ``day`` — so a decision inside the session reads today's partial bar as the scan day.

    Raises:
        quant.errors.ValidationError: ``day`` is before the last bar's day.
    """
    when = np.asarray(day).astype("datetime64[D]")
    times = candles.time.astype("datetime64[D]")
    keep = len(times)
    if keep and times[-1] == when:
        keep -= 1
    elif keep and times[-1] > when:
        raise ValidationError(
            f"partial bar of {when} is before the last stored bar ({times[-1]})", field="day"
        )
    columns = {
        name: np.concatenate((getattr(candles, name)[:keep], np.array([value], dtype=np.float64)))
        for name, value in zip(COLUMNS, bar, strict=True)
    }
    time = np.concatenate((candles.time[:keep], np.array([when], dtype=candles.time.dtype)))
    return Candles(time=time, **columns)
