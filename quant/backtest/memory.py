"""How much memory a backtest needs, estimated before anything is loaded.

A run holds every column of every instrument over its whole span at once: arrays of shape
``(bars, instruments)``. Its memory therefore grows with ``bars × instruments`` (the
*cells*), and a spec with few instruments over decades can need as much as one with
thousands over a year. :func:`estimate_backtest_bytes` adds up the two peaks of a run (bytes):

* **loading** (``quantbeat.services.backtests.load_market``): each instrument's candles
  (:class:`quant.indicators.Candles`: a ``datetime64`` time and 6 float64 columns) are held
  while the 6 aligned ``float64`` columns are filled, plus the database rows of one chunk of
  instruments in flight as Python objects (:data:`ROW_BYTES` a row); a strategy that reads
  investor flows holds the same again for its 6 flow columns;
* **running**: the aligned market (6 float64 columns) and flows, the signal builder's
  arrays at their peak (``signal_bytes_per_cell``, declared by each strategy and measured in
  ``tests/unit/test_backtest_memory.py``), the simulation's per-cell arrays and per-bar
  temporaries.

The estimate is an upper bound for the arrays (sessions are bounded by calendar days or
weekdays, a missing bar still takes its cell) and an approximation for Python objects; the
Python interpreter, libraries and the result's trade rows come on top.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from quant.errors import ValidationError

#: Bytes of one float64 / datetime64 value.
F8 = 8
#: Aligned market columns (open, high, low, close, volume, traded value), float64 each.
MARKET_COLUMNS = 6
#: Investor-flow columns a flows-aware strategy loads (quant.scans.inputs.FLOW_COLUMNS).
FLOW_COLUMNS = 6
#: Arrays of one instrument's loaded candles (time + the 6 market columns).
CANDLE_ARRAYS = 7
#: One database row in flight as Python objects (SQLAlchemy row, int, date, 6 floats, and
#: the per-column tuples built from them); measured about 550, rounded up.
ROW_BYTES = 640
#: The simulation's arrays per cell: per-instrument account equity (float64) and the trade
#: buffers, which grow with the entries (a signal on every 8th cell or fewer).
SIMULATION_BYTES_PER_CELL = 16
#: Per-bar temporaries of the builders and the simulation (one instrument's columns copied,
#: its indicator series, the equity and in-market series).
PER_BAR_BYTES = 128
#: Markets whose sessions are weekdays (KRX): at most 5 a week. Any other market is bounded
#: by calendar days (crypto trades every day).
WEEKDAY_MARKETS = frozenset({"KOSPI", "KOSDAQ", "KONEX"})


@dataclass(frozen=True)
class MemoryEstimate:
    """A backtest's estimated memory (bytes) for ``bars`` × ``instruments`` cells."""

    bars: int
    instruments: int
    loading: int
    market: int
    flows: int
    running: int

    @property
    def cells(self) -> int:
        return self.bars * self.instruments

    @property
    def peak(self) -> int:
        """The larger of the loading and the running peak (bytes)."""
        return max(self.loading, self.running)


def max_sessions(first: dt.date, last: dt.date, markets: Iterable[str]) -> int:
    """An upper bound on the daily sessions in ``[first, last]`` of instruments on
    ``markets``: weekdays when every market is a KRX one, else calendar days.

    Raises:
        quant.errors.ValidationError: ``last`` before ``first``.
    """
    if last < first:
        raise ValidationError(f"range end {last} is before its start {first}", field="end")
    days = (last - first).days + 1
    if not all(m.upper() in WEEKDAY_MARKETS for m in markets):
        return days
    weeks, rest = divmod(days, 7)
    weekday = first.weekday()
    extra = sum(1 for i in range(rest) if (weekday + i) % 7 < 5)
    return weeks * 5 + extra


def estimate_backtest_bytes(
    bars: int,
    instruments: int,
    *,
    signal_bytes_per_cell: int,
    flows: bool,
    load_chunk: int,
) -> MemoryEstimate:
    """The memory a run over ``bars`` sessions of ``instruments`` needs (see the module
    docstring): ``signal_bytes_per_cell`` is the strategy's builder peak per cell, ``flows``
    whether it loads investor flows, ``load_chunk`` the instruments read per query.

    Raises:
        quant.errors.ValidationError: a negative count or a ``load_chunk`` below 1.
    """
    for name, value in (("bars", bars), ("instruments", instruments),
                        ("signal_bytes_per_cell", signal_bytes_per_cell)):  # fmt: skip
        if value < 0:
            raise ValidationError(f"{name} must be >= 0, got {value}", field=name, value=value)
    if load_chunk < 1:
        raise ValidationError(f"load_chunk must be >= 1, got {load_chunk}", field="load_chunk")
    cells = bars * instruments
    market = cells * MARKET_COLUMNS * F8
    flow_bytes = cells * FLOW_COLUMNS * F8 if flows else 0
    in_flight = min(instruments, load_chunk) * bars * ROW_BYTES
    # candles per instrument + aligned columns (+ per-instrument flows + aligned flows)
    loading = cells * CANDLE_ARRAYS * F8 + market + 2 * flow_bytes + in_flight
    running = (
        market
        + flow_bytes
        + cells * (signal_bytes_per_cell + SIMULATION_BYTES_PER_CELL)
        + bars * PER_BAR_BYTES
    )
    return MemoryEstimate(bars, instruments, loading, market, flow_bytes, running)


def human_bytes(n: int | float) -> str:
    """``n`` bytes as ``1.5 GiB``, ``300.0 MiB``, ``12.0 KiB`` or ``512 B``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable (GiB returns)
