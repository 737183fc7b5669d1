"""A SIMULATED KRX market: generated prices, volumes and investor flows, NOT real market data.

:class:`SimulatedMarket` implements :class:`quant.market.base.MarketDataSource` so that the
screeners, backtests and workers can run end to end without network access or KRX credentials.
Every number it returns is produced by a random model; tickers and names are made up (names
start with "시뮬", short for 시뮬레이션, "simulation") and may collide with real KRX codes only by
accident. Reports built on it must say so (``simulated`` is ``True``).

The model, per session and instrument (all vectorized across the universe):

* a common market factor with slowly varying volatility (volatility clustering), to which each
  instrument is exposed with a beta in 0.5–1.5;
* fat-tailed idiosyncratic noise (logistic shocks, 12 % of days at double scale), rare news jumps
  (0.2 % of instrument-days: +8..+33 % or -8..-28 %), a small drift and a weak pull back toward
  each instrument's trend line;
* KRX rules: the close moves at most ±30 % from the previous close (limits rounded inward to the
  tick) and every price sits on a KRX tick (2023 table); a rare multi-day trading halt keeps
  open = high = low = close = previous close with zero volume;
* volume: a per-instrument level (log-normal), a persistent AR(1) component and a multiplier that
  grows with the size of the day's move;
* investor flows: persistent "stances" of foreign and institutional investors plus a component
  that follows the day's return; individuals take the other side.

Determinism: for a given ``(seed, universe_size, calendar, epoch)`` the output is a pure function
of the session. The simulation always runs forward from ``epoch`` with one random stream per
session seeded from ``(seed, session ordinal)``, so the bar of an instrument on a day is identical
whatever range or ticker subset was requested. (Bit-for-bit reproducibility across NumPy
releases is not promised by NumPy and therefore not by this module.)
"""

from __future__ import annotations

import bisect
import math
import threading
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from quant.calendar import TradingCalendar, check_date, check_range, krx_approximate_calendar
from quant.errors import NotFound, ValidationError
from quant.market.snapshot import intraday_path, session_fraction, volume_fraction
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
    KRX_INDICES,
    REFERENCE_BAR_COLUMNS,
    SNAPSHOT_COLUMNS,
    USDKRW,
    Instrument,
    ListingStatus,
    Market,
    ReferenceKind,
    ReferenceSeries,
)

__all__ = ["MAX_UNIVERSE_SIZE", "SimulatedMarket"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]

#: Largest universe :class:`SimulatedMarket` accepts.
MAX_UNIVERSE_SIZE = 20_000

# --- KRX tick sizes (2023 rules): price < bound uses the tick at the same position ----------
_TICK_BOUNDS = np.array([2_000, 5_000, 20_000, 50_000, 200_000, 500_000], dtype=np.float64)
_TICK_SIZES = np.array([1, 5, 10, 50, 100, 500, 1_000], dtype=np.float64)

# --- universe ---------------------------------------------------------------------------------
_KOSPI_SHARE = 0.38
# Tag for the universe's random stream. It exceeds every date ordinal (date.max is 3,652,059), so
# the universe stream never coincides with a session stream seeded from (seed, ordinal).
_UNIVERSE_TAG = 0x51424E54
_KOSPI_FIRST_CODE = 20  # KOSPI codes: 000020 upward in steps of 10–30 (at most 228,000 for 7,600)
_KOSDAQ_FIRST_CODE = 300_080  # KOSDAQ codes: 300080 upward in steps of 10–50 (< 1,000,000)
_NAME_PARTS = (
    "전자",
    "화학",
    "바이오",
    "제약",
    "금융",
    "건설",
    "에너지",
    "소재",
    "반도체",
    "통신",
    "식품",
    "중공업",
    "게임즈",
    "로직스",
    "테크",
    "홀딩스",
)

# --- market factor ----------------------------------------------------------------------------
_MKT_VOL = 0.009  # typical daily volatility of the market factor
_MKT_LOG_VOL = math.log(_MKT_VOL)
_MKT_VOL_PERSIST = 0.97  # AR(1) coefficient of the log market volatility
_MKT_VOL_SHOCK = 0.08  # its innovation s.d. (stationary s.d. of log vol ~0.33)
_MKT_DRIFT = 0.0002  # daily drift of the market factor

# --- idiosyncratic returns --------------------------------------------------------------------
_LOGISTIC_UNIT = math.sqrt(3.0) / math.pi  # scales a standard logistic draw to unit variance
_HEAVY_CENTRE, _HEAVY_HALF_WIDTH = 0.46, 0.06  # event draws in 0.40..0.52: a "heavy" day (12 %)
_HEAVY_RATIO = 2.0  # heavy days have twice the scale; mixture below keeps unit variance
_CALM_SCALE = 1.0 / math.sqrt(1.0 - 0.12 + 0.12 * _HEAVY_RATIO**2)
_HEAVY_SCALE = _HEAVY_RATIO * _CALM_SCALE
_JUMP_P = 0.002  # event draw >= 1 - p: a news jump
_JUMP_UP_SHARE = 0.55
_MEAN_REVERSION = 0.002  # daily pull of log price toward the instrument's trend line
# Rounding to a tick moves a price by at most 0.25 % when it is >= 200 KRW, so a log move below
# this cannot leave the +-30 % band after rounding; larger moves (and tiny prices) are clipped
# to the exact limits.
_LIMIT_CHECK_MOVE = 0.18
_LIMIT_CHECK_PRICE = 200.0
_LOGIT_EPS = 1e-12  # keeps the logit finite when a uniform draw is exactly 0

# --- halts -------------------------------------------------------------------------------------
_HALT_START_P = 0.0002  # event draw < p starts a halt (disjoint from heavy and jump ranges)
_HALT_CONTINUE_P = 0.6  # a halted instrument stays halted with this probability; ~0.05 % overall

# --- volume and flows -------------------------------------------------------------------------
_SQRT12 = math.sqrt(12.0)  # scales a centred uniform draw to unit variance
_VOLUME_PERSIST = 0.7
_VOLUME_LOG_SD = 0.35  # stationary s.d. of the AR(1) log-volume component
_VOLUME_MOVE = 0.45  # volume multiplier exp(0.45 * min(|move in sigmas|, 8))
_STANCE_PERSIST = 0.85

# --- bar shape --------------------------------------------------------------------------------
_GAP_SHARE = 0.3  # share of the day's log move already in the opening gap
_GAP_NOISE = 0.25  # plus noise of this many daily sigmas
_WICK = 0.6  # wicks beyond open/close: exponential with mean 0.6 daily sigmas

# --- news-driven movers (closing-bet candidates) ------------------------------------------------
# Tag of each session's mover stream ("MOVE"); like _UNIVERSE_TAG it exceeds every date ordinal.
_MOVER_TAG = 0x4D4F5645
_MOVER_RATE = 0.002  # expected movers per session = rate x universe size (5 for 2,500)
_MOVER_POOL_SHARE = 0.2  # drawn among the 20 % largest instruments by base traded value
_MOVER_RISE = (0.06, 0.25)  # close / previous close - 1, uniform
_MOVER_VALUE = 5.5e10  # KRW: the day's traded value is at least 5.5e10 x exp(U(0, 2))
_MOVER_VALUE_SPREAD = 2.0
_MOVER_VOLUME = 6.0  # and at least 6 x the instrument's normal volume of the day
_MOVER_GAP = 0.35  # the opening gap carries at most 35 % of the rise
_MOVER_WICK = 0.3  # the upper wick is at most 0.3 x the body (before rounding up to a tick)

# --- reference series: indices, sector ETFs, USD/KRW ------------------------------------------
_PATH_TAG = 0x50415448  # "PATH": each session's intraday-path stream
_FX_TAG = 0x46584B52  # "FXKR": the USD/KRW stream
_SHARES_PER_DAILY_VOLUME = 200.0  # shares outstanding = 200 x base daily volume (cap weights)
_INDEX_BASE = {"1001": 2_500.0, "2001": 800.0, "1028": 330.0}  # levels at the epoch
_KOSPI200_SIZE = 200
_ETF_BASE = 10_000.0  # KRW, a sector ETF's price at the epoch
_KODEX200_PER_POINT = 100.0  # 069500 (KODEX 200) = 100 KRW per KOSPI200 point
_ETF_VALUE_SHARE = 0.02  # an ETF trades 2 % of its members' traded value
_ETF_RANDOM_MEMBERS = 30  # an ETF code without a sector mapping: 30 KOSPI names by hash
_REFERENCE_WICK = 0.5  # an index's wicks: half its members' weighted wicks
#: Name parts (see _NAME_PARTS) of each default sector ETF's members (KOSPI instruments).
_SECTOR_PARTS: dict[str, tuple[str, ...]] = {
    "091160": ("반도체",),
    "305720": ("에너지", "화학"),
    "091170": ("중공업", "로직스"),
    "102780": ("전자", "테크", "통신", "게임즈"),
    "102960": ("금융",),
    "117680": ("소재", "건설"),
    "102970": ("홀딩스",),
}
_FX_CENTRE = 1_380.0  # KRW per USD: the walk's mean
_FX_REVERSION = 0.02  # daily pull of log USD/KRW toward the centre
_FX_VOL = 0.003  # daily s.d. of log USD/KRW (stationary s.d. ~1.5 %, ~21 KRW)
_FX_BLOCK = 1024  # sessions per block of FX draws

# --- caching ----------------------------------------------------------------------------------
_CHECKPOINT_EVERY = 128  # keep the state after every 128th session
_RECENT_KEEP = 4  # plus the states at the edges of the last few requests


# Every tick bound is a multiple of 1,000 KRW, so the tick of a price is a function of
# floor(price / 1000); prices of 500,000 and above share the last entry (``mode="clip"``).
_TICK_BY_THOUSAND = _TICK_SIZES[
    np.searchsorted(_TICK_BOUNDS, np.arange(501, dtype=np.float64) * 1_000.0, side="right")
]


def _tick(price: FloatArray) -> FloatArray:
    """KRX tick size (KRW) for each price (2023 table); ``price`` must be >= 0."""
    return np.take(_TICK_BY_THOUSAND, (price / 1_000.0).astype(np.intp), mode="clip")


def _round_tick(price: FloatArray) -> FloatArray:
    """Round to the nearest tick. A tick bound is a multiple of the larger tick, so a price that
    rounds up onto a bound is still on a valid tick."""
    tick = _tick(price)
    return np.rint(price / tick) * tick


def _floor_tick(price: FloatArray) -> FloatArray:
    """Largest on-tick price <= ``price``."""
    tick = _tick(price)
    return np.floor(price / tick) * tick


def _ceil_tick(price: FloatArray) -> FloatArray:
    """Smallest on-tick price >= ``price``."""
    tick = _tick(price)
    return np.ceil(price / tick) * tick


def _limits(prev: FloatArray) -> tuple[FloatArray, FloatArray]:
    """KRX daily price limits (lower, upper) for previous closes ``prev``: 0.7 and 1.3 times the
    previous close, rounded inward to a tick. ``prev * 7 / 10`` (not ``prev * 0.7``) keeps
    exact multiples exact, so the lower limit of 1,000 is 700, not 705."""
    return _ceil_tick(prev * 7.0 / 10.0), _floor_tick(prev * 13.0 / 10.0)


@dataclass(frozen=True, slots=True)
class _Universe:
    """Per-instrument constants, all arrays in ticker order."""

    instruments: tuple[Instrument, ...]
    tickers: npt.NDArray[np.object_]
    markets: npt.NDArray[np.object_]
    log_price0: FloatArray  # log of the initial (epoch) price
    sigma: FloatArray  # typical total daily volatility
    beta: FloatArray
    level: FloatArray  # drift + mean-reversion pull toward the trend line, at position 0 ...
    level_slope: FloatArray  # ... plus this much per session position
    idio_calm: FloatArray  # logistic-draw multiplier on a calm day
    idio_heavy: FloatArray  # ... on a heavy day
    base_volume: FloatArray  # shares
    volume_innov: float
    stance_innov: float
    part: IntArray  # index into _NAME_PARTS of the name (the sector rule of the ETFs)
    shares: FloatArray  # simulated shares outstanding (index cap weights)
    mover_pool: IndexArray  # positions that can be news-driven movers (largest by value)


@dataclass(frozen=True, slots=True)
class _State:
    """Everything carried from one session to the next. Never mutated after creation, so
    checkpoints can share arrays safely."""

    position: int  # index in the session list of the last simulated session; -1 = none yet
    close: FloatArray  # on-tick closes of that session (initial prices before the first)
    log_volume: FloatArray  # AR(1) log-volume component
    stance_foreign: FloatArray  # AR(1), unit stationary variance
    stance_institution: FloatArray
    halted: BoolArray
    market_log_vol: float
    # the session's news-driven movers (positions, ascending) and their bar-shape draws
    movers: IndexArray
    mover_value: FloatArray  # KRW: floor of the day's traded value
    mover_gap: FloatArray  # uniform draws: opening gap share
    mover_wick: FloatArray  # uniform draws: upper wick share


@dataclass(frozen=True, slots=True)
class _Bars:
    """One session's output for the selected instruments."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    traded_value: FloatArray
    foreign_net_shares: IntArray
    institution_net_shares: IntArray
    individual_net_shares: IntArray
    foreign_net_krw: IntArray
    institution_net_krw: IntArray
    individual_net_krw: IntArray


_CANDLE_FIELDS = ("open", "high", "low", "close", "volume", "traded_value")
_FLOW_FIELDS = (
    "foreign_net_shares",
    "institution_net_shares",
    "individual_net_shares",
    "foreign_net_krw",
    "institution_net_krw",
    "individual_net_krw",
)


def _check_int(value: object, field: str, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{field} must be an integer, got {value!r}", field=field, value=value
        )
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValidationError(f"{field} must be {bounds}, got {value}", field=field, value=value)
    return value


def _build_universe(seed: int, size: int) -> _Universe:
    rng = np.random.default_rng([seed, _UNIVERSE_TAG])
    n_kospi = min(size, max(1, round(size * _KOSPI_SHARE)))
    n_kosdaq = size - n_kospi

    kospi_steps = rng.choice(np.array([10, 20, 30]), size=n_kospi, p=[0.5, 0.3, 0.2])
    kosdaq_steps = rng.choice(np.array([10, 20, 30, 40, 50]), size=n_kosdaq)
    kospi_codes = _KOSPI_FIRST_CODE + np.cumsum(kospi_steps) - kospi_steps[:1].sum()
    kosdaq_codes = _KOSDAQ_FIRST_CODE + np.cumsum(kosdaq_steps) - kosdaq_steps[:1].sum()
    codes = np.concatenate([kospi_codes, kosdaq_codes])
    is_kospi = np.arange(size) < n_kospi

    log_price0 = rng.uniform(math.log(1_000.0), math.log(500_000.0), size)
    sigma = np.exp(
        np.where(
            is_kospi,
            rng.uniform(math.log(0.012), math.log(0.032), size),
            rng.uniform(math.log(0.018), math.log(0.045), size),
        )
    )
    beta = rng.uniform(0.5, 1.5, size)
    drift = rng.normal(0.0001, 0.00015, size)
    idio_sd = np.sqrt(np.maximum(sigma**2 - (beta * _MKT_VOL) ** 2, (0.4 * sigma) ** 2))
    base_value = np.exp(
        np.where(is_kospi, math.log(4e9), math.log(1.5e9)) + rng.normal(0.0, 1.2, size)
    )
    base_volume = np.maximum(100.0, base_value / np.exp(log_price0))
    part = rng.integers(0, len(_NAME_PARTS), size)

    instruments = tuple(
        Instrument(
            market=Market.KOSPI if kospi else Market.KOSDAQ,
            ticker=f"{int(code):06d}",
            name=f"시뮬{_NAME_PARTS[int(p)]} {i + 1:04d}",
            currency="KRW",
            listing_status=ListingStatus.LISTED,
        )
        for i, (code, kospi, p) in enumerate(zip(codes, is_kospi, part, strict=True))
    )
    tickers = np.array([inst.ticker for inst in instruments], dtype=object)
    value = base_volume * np.exp(log_price0)
    pool_size = max(1, round(size * _MOVER_POOL_SHARE))
    mover_pool = np.sort(np.argsort(-value, kind="stable")[:pool_size]).astype(np.intp)
    if np.any(tickers[1:] <= tickers[:-1]):  # pragma: no cover - guards the code ranges above
        raise AssertionError("simulated tickers are not strictly increasing")
    return _Universe(
        instruments=instruments,
        tickers=tickers,
        markets=np.array([inst.market.value for inst in instruments], dtype=object),
        log_price0=log_price0,
        sigma=sigma,
        beta=beta,
        level=drift + _MEAN_REVERSION * log_price0,
        level_slope=_MEAN_REVERSION * drift,
        idio_calm=idio_sd * _LOGISTIC_UNIT * _CALM_SCALE,
        idio_heavy=idio_sd * _LOGISTIC_UNIT * _HEAVY_SCALE,
        base_volume=base_volume,
        volume_innov=_VOLUME_LOG_SD * math.sqrt(1.0 - _VOLUME_PERSIST**2) * _SQRT12,
        stance_innov=math.sqrt(1.0 - _STANCE_PERSIST**2) * _SQRT12,
        part=part.astype(np.int64),
        shares=base_volume * _SHARES_PER_DAILY_VOLUME,
        mover_pool=mover_pool,
    )


def _initial_state(seed: int, universe: _Universe) -> _State:
    # A stream of its own (not the universe's), so adding universe parameters later does not
    # shift the initial state.
    rng = np.random.default_rng([seed, _UNIVERSE_TAG, 1])
    size = len(universe.instruments)
    return _State(
        position=-1,
        close=_round_tick(np.exp(universe.log_price0)),
        log_volume=rng.normal(0.0, _VOLUME_LOG_SD, size),
        stance_foreign=rng.standard_normal(size),
        stance_institution=rng.standard_normal(size),
        halted=np.zeros(size, dtype=np.bool_),
        market_log_vol=_MKT_LOG_VOL,
        movers=np.empty(0, dtype=np.intp),
        mover_value=np.empty(0),
        mover_gap=np.empty(0),
        mover_wick=np.empty(0),
    )


class SimulatedMarket:
    """SIMULATED KOSPI/KOSDAQ data source: generated numbers, NOT real prices or flows.

    ``SimulatedMarket(seed, universe_size, calendar, epoch)`` lists ``universe_size`` made-up
    instruments (about 38 % KOSPI, the rest KOSDAQ; 6-digit tickers; names starting with "시뮬";
    KRW; all listed) and generates daily bars and investor flows for every session of
    ``calendar`` (default :func:`quant.calendar.krx_approximate_calendar`) from ``epoch`` on.
    Requests for days before ``epoch`` return empty frames; days after today are allowed.

    Same arguments give identical output, and a bar does not depend on the range or tickers it
    was requested with (see the module docstring). Runtime: the first request near 2026 with
    the default epoch simulates ~2,100 sessions for the whole universe (a few tenths of a second
    for 2,500 instruments); the instance keeps checkpoints of the simulation state, so later
    requests only simulate from the nearest earlier checkpoint.

    It also implements :class:`quant.market.base.ReferenceDataSource` (KOSPI, KOSDAQ and
    KOSPI200 indices and sector ETFs built from the universe, a USD/KRW walk) and
    :class:`quant.market.base.SnapshotSource` (intraday paths ending exactly at the daily bar),
    and plants a few news-driven movers per session (:meth:`movers`), the closing-bet
    candidates; see the README's "The simulated market".

    Thread safety: an internal lock serializes requests on one instance; use one instance per
    thread for parallel simulation.
    """

    name: str = "simulated"
    simulated: bool = True

    def __init__(
        self,
        seed: int = 42,
        universe_size: int = 2500,
        calendar: TradingCalendar | None = None,
        epoch: date = date(2018, 1, 2),
    ) -> None:
        """Build the universe (cheap; no bars are simulated until requested).

        Raises:
            quant.errors.ValidationError: ``seed`` is not an integer >= 0, ``universe_size`` is
                not an integer in 1..20,000, ``calendar`` is not a TradingCalendar, or
                ``epoch`` is not a plain date.
        """
        self._seed = _check_int(seed, "seed", 0, None)
        self._size = _check_int(universe_size, "universe_size", 1, MAX_UNIVERSE_SIZE)
        self._epoch = check_date(epoch, "epoch")
        if calendar is None:
            calendar = krx_approximate_calendar()
        elif not isinstance(calendar, TradingCalendar):
            raise ValidationError(
                f"calendar must implement TradingCalendar, got {type(calendar).__name__}",
                field="calendar",
                value=calendar,
            )
        self._calendar: TradingCalendar = calendar
        self._universe = _build_universe(self._seed, self._size)
        self._position_of = {inst.ticker: i for i, inst in enumerate(self._universe.instruments)}
        # every session in [epoch, through]; positions in this list index the checkpoints
        self._sessions: list[date] = []
        self._sessions_through = date.min
        self._lock = threading.Lock()  # guards the session list and the checkpoints
        self._checkpoints: dict[int, _State] = {-1: _initial_state(self._seed, self._universe)}
        self._recent: deque[int] = deque()
        self._fx_cache: FloatArray = np.empty((0, 4))  # USD/KRW (open, high, low, close)

    # -- introspection ------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def universe_size(self) -> int:
        return self._size

    @property
    def calendar(self) -> TradingCalendar:
        return self._calendar

    @property
    def epoch(self) -> date:
        """First day of the simulation; the first bar is on the first session on or after it."""
        return self._epoch

    def __repr__(self) -> str:
        return (
            f"SimulatedMarket(seed={self._seed}, universe_size={self._size}, "
            f"calendar={self._calendar.name!r}, epoch={self._epoch.isoformat()})"
        )

    # -- MarketDataSource ---------------------------------------------------------------------

    def list_instruments(self, as_of: date, market: Market | None = None) -> list[Instrument]:
        """The simulated universe, in ticker order; the same for every ``as_of``.

        ``market`` keeps only that market (a market the simulation does not carry, such as
        UPBIT, gives an empty list).

        Raises:
            quant.errors.ValidationError: ``as_of`` is not a plain date.
        """
        check_date(as_of, "as_of")
        return [
            inst for inst in self._universe.instruments if market is None or inst.market == market
        ]

    def daily_candles(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """SIMULATED daily bars for the sessions in ``[start, end]`` (both inclusive).

        Columns are :data:`~quant.market.types.DAILY_CANDLE_COLUMNS`: ``market``/``ticker`` str,
        ``trade_date`` :class:`datetime.date`, ``open/high/low/close`` float64 KRW on KRX ticks,
        ``volume`` float64 shares (0 on a halted day), ``traded_value`` float64 KRW (volume x
        the typical price (high + low + close) / 3). Sorted by ticker then date, RangeIndex.
        Every selected instrument has a row on every session from ``epoch`` on.

        Raises:
            quant.errors.ValidationError: ``start``/``end`` are not plain dates, ``start`` is
                after ``end``, or ``tickers`` is a single string.
            quant.errors.NotFound: a ticker is not in the universe (or not in ``market``).
        """
        return self._frame(start, end, market, tickers, DAILY_CANDLE_COLUMNS, _CANDLE_FIELDS)

    def investor_flows(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """SIMULATED net buying per investor group, same rows as :meth:`daily_candles`.

        Columns are :data:`~quant.market.types.INVESTOR_FLOW_COLUMNS`: ``*_net_shares`` int64
        shares, ``*_net_krw`` int64 KRW (shares x the bar's typical price, rounded). Foreign
        and institutional flows are persistent and rise with the day's return, individuals
        take the other side; the implied "other" group, ``-(foreign + institution +
        individual)``, is at most 3 % of the day's volume. A halted day has all zeros.

        Raises:
            quant.errors.ValidationError: as :meth:`daily_candles`.
            quant.errors.NotFound: as :meth:`daily_candles`.
        """
        return self._frame(start, end, market, tickers, INVESTOR_FLOW_COLUMNS, _FLOW_FIELDS)

    # -- news-driven movers ---------------------------------------------------------------------

    def movers(self, day: date) -> list[Instrument]:
        """The instruments with a SIMULATED news-driven surge on session ``day`` (the
        closing-bet candidates the simulation plants; see the README), in ticker order. Empty
        when ``day`` is not a session or precedes the epoch.

        Raises:
            quant.errors.ValidationError: ``day`` is not a plain date.
        """
        check_date(day, "day")
        with self._lock:
            state = self._state_on(day)
        if state is None:
            return []
        return [self._universe.instruments[int(i)] for i in state.movers]

    def _state_on(self, day: date) -> _State | None:
        """The simulation state after session ``day`` (lock held), None for a non-session."""
        if day < self._epoch:
            return None
        sessions = self._session_list(day)
        position = bisect.bisect_left(sessions, day)
        if position >= len(sessions) or sessions[position] != day:
            return None
        self._simulate(day, day, np.empty(0, dtype=np.intp))
        return self._checkpoints[position]

    # -- ReferenceDataSource ------------------------------------------------------------------

    def reference_bars(
        self, start: date, end: date, series: Sequence[ReferenceSeries]
    ) -> pd.DataFrame:
        """SIMULATED daily bars of KRX indices, sector ETFs and USD/KRW built from the
        simulated universe (README, "The simulated market"), for the sessions in ``[start,
        end]`` from the epoch on, with :data:`~quant.market.types.REFERENCE_BAR_COLUMNS`
        sorted by code then date. Indices are in points (2 decimals), ETFs in KRW on 1/5-KRW
        ticks, USD/KRW in KRW per USD (2 decimals, volume/value NaN). Indices: volume/value =
        the members' sums; ETFs: 2 % of their members' traded value.

        Raises:
            quant.errors.ValidationError: bad dates, ``start > end``, ``series`` not a sequence
                of ReferenceSeries.
            quant.errors.NotFound: an INDEX code not in :data:`KRX_INDICES`, an FX code other
                than :data:`USDKRW`, an ETF code that is not six characters.
        """
        check_range(start, end)
        wanted = self._check_series(series)
        parts: list[pd.DataFrame] = []
        equity = [s for s in wanted if s.kind is not ReferenceKind.FX]
        if equity:
            everyone = np.arange(self._size, dtype=np.intp)
            with self._lock:
                sessions, bars = self._simulate(start, end, everyone)
            if bars:
                stacked = {f: np.stack([getattr(b, f) for b in bars]) for f in _CANDLE_FIELDS}
                for item in equity:
                    parts.append(self._reference_frame(item, sessions, stacked))
        if any(s.kind is ReferenceKind.FX for s in wanted):
            parts.append(self._fx_frame(start, end))
        return _reference_combine(parts)

    def _check_series(self, series: Sequence[ReferenceSeries]) -> list[ReferenceSeries]:
        if isinstance(series, str | ReferenceSeries) or not isinstance(series, Sequence):
            raise ValidationError(
                f"series must be a sequence of ReferenceSeries, got {series!r}",
                field="series",
                value=series,
            )
        out: list[ReferenceSeries] = []
        for item in series:
            if not isinstance(item, ReferenceSeries):
                raise ValidationError(
                    f"series entry {item!r} is not a ReferenceSeries", field="series", value=item
                )
            known = (
                item.code in KRX_INDICES
                if item.kind is ReferenceKind.INDEX
                else item.code == USDKRW
                if item.kind is ReferenceKind.FX
                else len(item.code) == 6 and item.code.isalnum()
            )
            if not known:
                raise NotFound(
                    f"the simulated market has no {item.kind.value} series {item.code!r} "
                    f"(indices {sorted(KRX_INDICES)}, FX {USDKRW!r}, ETFs: six-character codes)"
                )
            out.append(item)
        return list({(s.code, s.kind): s for s in out}.values())

    def _members(self, item: ReferenceSeries) -> tuple[BoolArray, float, float]:
        """Members of an index or ETF, its level at the epoch and its price scale (points or
        KRW per unit of the cap-weighted level)."""
        u = self._universe
        kospi = u.markets == Market.KOSPI.value
        code = item.code
        if item.kind is ReferenceKind.INDEX:
            if code == "1001":
                return kospi, _INDEX_BASE[code], 1.0
            if code == "2001":
                return ~kospi, _INDEX_BASE[code], 1.0
            return self._kospi200(), _INDEX_BASE[code], 1.0
        if code == "069500":
            return self._kospi200(), _INDEX_BASE["1028"], _KODEX200_PER_POINT
        parts = _SECTOR_PARTS.get(code)
        members = np.zeros(self._size, dtype=np.bool_)
        if parts is not None:
            chosen = [_NAME_PARTS.index(p) for p in parts]
            members = kospi & np.isin(u.part, chosen)
        if not members.any():
            pool = np.flatnonzero(kospi)
            rng = np.random.default_rng([self._seed, _UNIVERSE_TAG, 2, zlib.crc32(code.encode())])
            take = min(_ETF_RANDOM_MEMBERS, pool.size)
            members[rng.choice(pool, size=take, replace=False)] = True
        return members, _ETF_BASE, 1.0

    def _kospi200(self) -> BoolArray:
        """The 200 largest KOSPI instruments by simulated market cap at the epoch (fixed)."""
        u = self._universe
        kospi = np.flatnonzero(u.markets == Market.KOSPI.value)
        cap0 = u.shares[kospi] * self._checkpoints[-1].close[kospi]
        top = kospi[np.argsort(-cap0, kind="stable")[:_KOSPI200_SIZE]]
        members = np.zeros(self._size, dtype=np.bool_)
        members[top] = True
        return members

    def _reference_frame(
        self, item: ReferenceSeries, sessions: list[date], bars: dict[str, FloatArray]
    ) -> pd.DataFrame:
        """One index or ETF: a cap-weighted level (fixed simulated shares) scaled to its
        epoch base; open/close the members' weighted opens/closes, wicks half theirs."""
        members, base, per_point = self._members(item)
        u = self._universe
        weights = np.where(members, u.shares, 0.0)
        divisor = float(weights @ self._checkpoints[-1].close) / base
        level = {f: bars[f] @ weights / divisor for f in ("open", "high", "low", "close")}
        o, c = level["open"], level["close"]
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        h = top + _REFERENCE_WICK * (level["high"] - top)
        lo = bottom - _REFERENCE_WICK * (bottom - level["low"])
        member_volume = bars["volume"] @ members.astype(np.float64)
        member_value = bars["traded_value"] @ members.astype(np.float64)
        if item.kind is ReferenceKind.INDEX:
            o, h, lo, c = (np.round(x, 2) for x in (o, h, lo, c))
            volume, value = member_volume, member_value
        else:
            o, h, lo, c = (_etf_round(x * per_point) for x in (o, h, lo, c))
            h = np.maximum(h, np.maximum(o, c))
            lo = np.minimum(lo, np.minimum(o, c))
            typical = (h + lo + c) / 3.0
            volume = np.rint(_ETF_VALUE_SHARE * member_value / typical)
            value = volume * typical
        return _reference_rows(item.code, sessions, o, h, lo, c, volume, value)

    def _fx_frame(self, start: date, end: date) -> pd.DataFrame:
        """USD/KRW bars of the sessions in ``[start, end]`` (see :meth:`_fx_path`)."""
        if end < self._epoch:
            return _reference_rows(USDKRW, [], *(np.empty(0) for _ in range(6)))
        with self._lock:
            sessions = self._session_list(end)
            first = bisect.bisect_left(sessions, start)
            last = bisect.bisect_right(sessions, end) - 1
            path = self._fx_path(last + 1)
        days = sessions[first : last + 1]
        o, h, lo, c = (path[first : last + 1, k] for k in range(4))
        nan = np.full(len(days), np.nan)
        return _reference_rows(USDKRW, days, o, h, lo, c, nan, nan.copy())

    def _fx_path(self, count: int) -> FloatArray:
        """USD/KRW (open, high, low, close) of the first ``count`` sessions (lock held):
        log rate mean-reverting (2 %/session) to 1,380 with 0.3 % daily shocks, from 1,380 at
        the epoch; draws in blocks of 1,024 sessions from ``(seed, _FX_TAG, block)`` streams,
        so a session's bar never depends on the range requested."""
        cached = self._fx_cache
        if cached.shape[0] >= count:
            return cached
        rows = [tuple(r) for r in cached]
        log_close = math.log(rows[-1][3]) if rows else math.log(_FX_CENTRE)
        centre = math.log(_FX_CENTRE)
        block_draws: FloatArray = np.empty((0, 4))
        for position in range(len(rows), count):
            block, offset = divmod(position, _FX_BLOCK)
            if offset == 0 or block_draws.shape[0] == 0:
                rng = np.random.default_rng([self._seed, _FX_TAG, block])
                block_draws = rng.standard_normal((_FX_BLOCK, 4))
            z = block_draws[offset]
            move = _FX_REVERSION * (centre - log_close) + _FX_VOL * float(z[0])
            log_open = log_close + 0.3 * move + 0.3 * _FX_VOL * float(z[1])
            log_close = log_close + move
            top, bottom = max(log_open, log_close), min(log_open, log_close)
            o, c = round(math.exp(log_open), 2), round(math.exp(log_close), 2)
            h = max(o, c, round(math.exp(top + 0.6 * _FX_VOL * abs(float(z[2]))), 2))
            lo = min(o, c, round(math.exp(bottom - 0.6 * _FX_VOL * abs(float(z[3]))), 2))
            log_close = math.log(c)
            rows.append((o, h, lo, c))
        path = np.array(rows, dtype=np.float64).reshape(-1, 4)
        self._fx_cache = path
        return path

    # -- SnapshotSource -----------------------------------------------------------------------

    def market_snapshot(
        self, day: date, at: datetime, market: Market | None = None
    ) -> pd.DataFrame:
        """SIMULATED day so far of every instrument (of ``market``) as of ``at``: a
        deterministic intraday path per instrument (:func:`quant.market.snapshot.intraday_path`,
        prices on KRX ticks) that starts at the day's open at 09:00 and ends exactly at the
        day's bar at 15:30; cumulative volume follows a U-shaped profile
        (:func:`~quant.market.snapshot.volume_fraction`, floored to whole shares) and value the
        same share of the day's traded value. :data:`~quant.market.types.SNAPSHOT_COLUMNS`,
        sorted by ticker; empty before the epoch.

        Raises:
            quant.errors.ValidationError: ``at`` naive, not on ``day`` (KST), before 09:00
                KST, or ``day`` not a session of the calendar.
        """
        tau = self._snapshot_fraction(day, at)
        candles = self.daily_candles(day, day, market=market)
        selection = np.array([self._position_of[t] for t in candles["ticker"]], dtype=np.intp)
        rng = np.random.Generator(np.random.SFC64([self._seed, day.toordinal(), _PATH_TAG]))
        u1, u2 = rng.random((2, self._size))[:, selection]
        o, h, lo, c = (
            candles[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close")
        )
        o, h, lo, last = intraday_path(tau, o, h, lo, c, u1, u2, _round_tick)
        share = volume_fraction(tau)
        volume = candles["volume"].to_numpy(dtype=np.float64)
        value = candles["traded_value"].to_numpy(dtype=np.float64)
        return _snapshot_rows(
            list(candles["ticker"]), o, h, lo, last,
            volume if share >= 1.0 else np.floor(volume * share),
            value if share >= 1.0 else value * share,
        )  # fmt: skip

    def index_snapshot(self, day: date, at: datetime, codes: Sequence[str]) -> pd.DataFrame:
        """SIMULATED day so far of reference series ``codes`` (index codes of
        :data:`KRX_INDICES`, six-character ETF codes, :data:`USDKRW`), built like
        :meth:`market_snapshot` from :meth:`reference_bars` of ``day`` (index prices to 2
        decimals); ``ticker`` holds the code.

        Raises:
            quant.errors.ValidationError: as :meth:`market_snapshot`, or ``codes`` a string.
            quant.errors.NotFound: an unknown code.
        """
        tau = self._snapshot_fraction(day, at)
        if isinstance(codes, str):
            raise ValidationError(
                f"codes must be a sequence of codes, not the single string {codes!r}",
                field="codes",
                value=codes,
            )
        series = [_series_for(code) for code in codes]
        bars = self.reference_bars(day, day, series)
        columns = {k: bars[k].to_numpy(dtype=np.float64) for k in REFERENCE_BAR_COLUMNS[2:]}
        draws = np.array(
            [
                np.random.default_rng(
                    [self._seed, day.toordinal(), _PATH_TAG, zlib.crc32(str(code).encode())]
                ).random(2)
                for code in bars["code"]
            ]
        ).reshape(-1, 2)
        o, h, lo, last = intraday_path(
            tau, columns["open"], columns["high"], columns["low"], columns["close"],
            draws[:, 0], draws[:, 1], _reference_round,
        )  # fmt: skip
        share = volume_fraction(tau)
        return _snapshot_rows(
            list(bars["code"]), o, h, lo, last,
            columns["volume"] if share >= 1.0 else np.floor(columns["volume"] * share),
            columns["value"] if share >= 1.0 else columns["value"] * share,
        )  # fmt: skip

    def _snapshot_fraction(self, day: date, at: datetime) -> float:
        tau = session_fraction(day, at)
        if not self._calendar.is_session(day):
            raise ValidationError(
                f"{day.isoformat()} is not a session of {self._calendar.name}",
                field="day",
                value=day,
            )
        return tau

    # -- request handling ---------------------------------------------------------------------

    def _select(self, market: Market | None, tickers: Sequence[str] | None) -> IndexArray:
        """Positions (ascending, hence ticker order) of the requested instruments."""
        instruments = self._universe.instruments
        if tickers is None:
            return np.array(
                [
                    i
                    for i, inst in enumerate(instruments)
                    if market is None or inst.market == market
                ],
                dtype=np.intp,
            )
        if isinstance(tickers, str):
            raise ValidationError(
                f"tickers must be a sequence of tickers, not the single string {tickers!r}",
                field="tickers",
                value=tickers,
            )
        wanted = set(tickers)
        positions: list[int] = []
        missing: list[str] = []
        for ticker in wanted:
            position = self._position_of.get(ticker)
            if position is None or (market is not None and instruments[position].market != market):
                missing.append(repr(ticker))
            else:
                positions.append(position)
        if missing:
            missing.sort()
            shown = ", ".join(missing[:20]) + (
                f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            )
            where = f"{market.value} of " if market is not None else ""
            raise NotFound(
                f"unknown ticker(s) {shown}: not in the {where}simulated universe "
                f"(seed={self._seed}, universe_size={self._size})"
            )
        return np.array(sorted(positions), dtype=np.intp)

    def _frame(
        self,
        start: date,
        end: date,
        market: Market | None,
        tickers: Sequence[str] | None,
        columns: tuple[str, ...],
        fields: tuple[str, ...],
    ) -> pd.DataFrame:
        check_range(start, end)
        selection = self._select(market, tickers)
        with self._lock:
            sessions, bars = self._simulate(start, end, selection)
        n_days, n_inst = len(sessions), selection.size
        universe = self._universe
        data: dict[str, Any] = {
            "market": pd.array(np.repeat(universe.markets[selection], n_days), dtype="str"),
            "ticker": pd.array(np.repeat(universe.tickers[selection], n_days), dtype="str"),
            "trade_date": np.tile(np.array(sessions, dtype=object), n_inst),
        }
        for column, field in zip(columns[3:], fields, strict=True):
            if bars:
                # rows are sessions, columns instruments; transpose to get ticker-major order
                values = np.stack([getattr(b, field) for b in bars]).T.reshape(-1)
            else:
                dtype = np.int64 if field.endswith(("_shares", "_krw")) else np.float64
                values = np.empty(0, dtype=dtype)
            data[column] = values
        return pd.DataFrame(data, columns=list(columns))

    # -- simulation ---------------------------------------------------------------------------

    def _session_list(self, end: date) -> list[date]:
        """Sessions from ``epoch`` through at least ``end``. The list is only ever extended (a
        year at a time), so positions in it stay valid."""
        if end > self._sessions_through:
            horizon = date.fromordinal(min(end.toordinal() + 366, date.max.toordinal()))
            self._sessions = self._calendar.sessions(self._epoch, horizon)
            self._sessions_through = horizon
        return self._sessions

    def _simulate(
        self, start: date, end: date, selection: IndexArray
    ) -> tuple[list[date], list[_Bars]]:
        if end < self._epoch:
            return [], []
        sessions = self._session_list(end)
        first = bisect.bisect_left(sessions, start)
        last = bisect.bisect_right(sessions, end) - 1
        if first > last:
            return [], []

        base = max(k for k in self._checkpoints if k < first)
        state = self._checkpoints[base]
        out: list[_Bars] = []
        while state.position < last:
            position = state.position + 1
            wanted = position >= first
            state, bars = self._advance(state, sessions[position], selection if wanted else None)
            if (position + 1) % _CHECKPOINT_EVERY == 0:
                self._checkpoints[position] = state
            elif position == first - 1:
                self._remember(state)
            if bars is not None:
                out.append(bars)
        self._remember(state)
        return sessions[first : last + 1], out

    def _remember(self, state: _State) -> None:
        """Keep ``state`` as a recent checkpoint, evicting the oldest recent one."""
        if state.position in self._checkpoints:
            return
        self._checkpoints[state.position] = state
        self._recent.append(state.position)
        while len(self._recent) > _RECENT_KEEP:
            self._checkpoints.pop(self._recent.popleft(), None)

    def _advance(
        self, state: _State, session: date, selection: IndexArray | None
    ) -> tuple[_State, _Bars | None]:
        """Simulate ``session`` (the one after ``state.position``) for the whole universe.

        The state draws come first from the session's stream and are always made; the draws
        that only shape the output follow them, so skipping them (``selection is None``) does
        not change the state. This runs once per session from ``epoch`` on, so it is written
        for speed: few whole-universe array operations, rare cases handled on index subsets.
        """
        u = self._universe
        size = self._size
        position = state.position + 1
        rng = np.random.Generator(np.random.SFC64([self._seed, session.toordinal()]))
        market_shock = rng.standard_normal(2)
        event, idio_u, volume_u, foreign_u, institution_u = rng.random((5, size))

        # market factor with AR(1) log volatility
        market_log_vol = (
            _MKT_LOG_VOL
            + _MKT_VOL_PERSIST * (state.market_log_vol - _MKT_LOG_VOL)
            + _MKT_VOL_SHOCK * float(market_shock[0])
        )
        market_vol = math.exp(market_log_vol)
        market_return = _MKT_DRIFT + market_vol * float(market_shock[1])
        vol_scale = math.sqrt(market_vol / _MKT_VOL)

        # instrument log returns: drift and pull toward the trend line, market, fat-tailed noise
        prev = state.close
        logit = np.log((idio_u + _LOGIT_EPS) / (1.0 + _LOGIT_EPS - idio_u))
        heavy = np.abs(event - _HEAVY_CENTRE) < _HEAVY_HALF_WIDTH
        log_return = (
            u.level
            + u.level_slope * position
            - _MEAN_REVERSION * np.log(prev)
            + u.beta * market_return
            + (vol_scale * logit) * np.where(heavy, u.idio_heavy, u.idio_calm)
        )
        jumps = np.flatnonzero(event >= 1.0 - _JUMP_P)
        if jumps.size:
            v = (event[jumps] - (1.0 - _JUMP_P)) / _JUMP_P  # uniform on [0, 1)
            up = v < _JUMP_UP_SHARE
            size_up = 0.08 + 0.25 * (v / _JUMP_UP_SHARE)
            size_down = 0.08 + 0.20 * ((v - _JUMP_UP_SHARE) / (1.0 - _JUMP_UP_SHARE))
            log_return[jumps] += np.where(up, np.log1p(size_up), np.log1p(-size_down))

        # close on a tick and within the KRX limits; a halt keeps the previous close
        close = _round_tick(prev * np.exp(log_return))
        near_limit = np.flatnonzero(
            (np.abs(log_return) > _LIMIT_CHECK_MOVE) | (prev < _LIMIT_CHECK_PRICE)
        )
        if near_limit.size:
            lower, upper = _limits(prev[near_limit])
            close[near_limit] = np.clip(close[near_limit], lower, upper)
        halted = event < _HALT_START_P
        if state.halted.any():
            halted |= state.halted & (event < _HALT_CONTINUE_P)
        halted_at = np.flatnonzero(halted)
        if halted_at.size:
            close[halted_at] = prev[halted_at]
        movers, rise, mover_value, mover_gap, mover_wick = self._movers(session, halted)
        if movers.size:
            lower, upper = _limits(prev[movers])
            close[movers] = np.clip(_round_tick(prev[movers] * (1.0 + rise)), lower, upper)

        new_state = _State(
            position=position,
            close=close,
            log_volume=_VOLUME_PERSIST * state.log_volume + u.volume_innov * (volume_u - 0.5),
            stance_foreign=_STANCE_PERSIST * state.stance_foreign
            + u.stance_innov * (foreign_u - 0.5),
            stance_institution=_STANCE_PERSIST * state.stance_institution
            + u.stance_innov * (institution_u - 0.5),
            halted=halted,
            market_log_vol=market_log_vol,
            movers=movers,
            mover_value=mover_value,
            mover_gap=mover_gap,
            mover_wick=mover_wick,
        )
        if selection is None:
            return new_state, None
        return new_state, self._bars(rng, state, new_state, vol_scale, selection)

    def _movers(
        self, session: date, halted: BoolArray
    ) -> tuple[IndexArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """The session's news-driven movers from their own stream (seeded by ``(seed, session,
        _MOVER_TAG)``, so the main stream and every other instrument are untouched): a Poisson
        number (mean ``_MOVER_RATE`` x universe size) drawn without replacement from the mover
        pool, minus halted ones; returns positions (ascending), rises, traded-value floors and
        the two bar-shape draws."""
        u = self._universe
        rng = np.random.Generator(np.random.SFC64([self._seed, session.toordinal(), _MOVER_TAG]))
        count = min(int(rng.poisson(_MOVER_RATE * self._size)), u.mover_pool.size)
        chosen = np.sort(rng.choice(u.mover_pool, size=count, replace=False)).astype(np.intp)
        rise = rng.uniform(*_MOVER_RISE, size=count)
        value = _MOVER_VALUE * np.exp(_MOVER_VALUE_SPREAD * rng.random(count))
        gap, wick = rng.random((2, count))
        keep = ~halted[chosen]
        return chosen[keep], rise[keep], value[keep], gap[keep], wick[keep]

    def _bars(
        self,
        rng: np.random.Generator,
        state: _State,
        new_state: _State,
        vol_scale: float,
        selection: IndexArray,
    ) -> _Bars:
        """The selected instruments' bars and flows for the session ``new_state`` closed.

        ``rng`` must be the session's stream right after the state draws.
        """
        u = self._universe
        gap_u, high_u, low_u, foreign_u, institution_u, other_u = rng.random((6, self._size))[
            :, selection
        ]
        prev = state.close[selection]
        close = new_state.close[selection]
        halted = new_state.halted[selection]
        lower, upper = _limits(prev)
        sigma = u.sigma[selection] * vol_scale
        move = np.log(close / prev)

        # opening gap carries part of the day's move; wicks are exponential beyond open/close
        gap = _GAP_SHARE * move + _GAP_NOISE * _SQRT12 * sigma * (gap_u - 0.5)
        open_ = np.clip(_round_tick(prev * np.exp(gap)), lower, upper)
        top = np.maximum(open_, close)
        bottom = np.minimum(open_, close)
        high = np.maximum(
            top, np.minimum(upper, _ceil_tick(top * np.exp(-_WICK * sigma * np.log1p(-high_u))))
        )
        low = np.minimum(
            bottom,
            np.maximum(lower, _floor_tick(bottom * np.exp(_WICK * sigma * np.log1p(-low_u)))),
        )

        z = move / sigma  # the day's move in (current) daily sigmas
        volume = np.maximum(
            1.0,
            np.rint(
                u.base_volume[selection]
                * np.exp(
                    new_state.log_volume[selection] + _VOLUME_MOVE * np.minimum(np.abs(z), 8.0)
                )
            ),
        )
        open_ = np.where(halted, prev, open_)
        high = np.where(halted, prev, high)
        low = np.where(halted, prev, low)
        volume = np.where(halted, 0.0, volume)
        if new_state.movers.size:
            self._shape_movers(
                new_state, selection, prev, close, sigma, low_u, open_, high, low, volume
            )
        typical = (high + low + close) / 3.0

        # investor flows as fractions of the day's volume
        zc = np.clip(z, -4.0, 4.0)
        foreign_frac = np.clip(
            0.025 * new_state.stance_foreign[selection]
            + 0.02 * zc
            + 0.03 * _SQRT12 * (foreign_u - 0.5),
            -0.3,
            0.3,
        )
        institution_frac = np.clip(
            0.02 * new_state.stance_institution[selection]
            + 0.012 * zc
            + 0.025 * _SQRT12 * (institution_u - 0.5),
            -0.3,
            0.3,
        )
        other_frac = 0.03 * (2.0 * other_u - 1.0) ** 3  # within +-3 %, mostly near zero
        foreign = np.rint(foreign_frac * volume).astype(np.int64)
        institution = np.rint(institution_frac * volume).astype(np.int64)
        individual = -(foreign + institution + np.rint(other_frac * volume).astype(np.int64))

        return _Bars(
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=volume,
            traded_value=volume * typical,
            foreign_net_shares=foreign,
            institution_net_shares=institution,
            individual_net_shares=individual,
            foreign_net_krw=np.rint(foreign * typical).astype(np.int64),
            institution_net_krw=np.rint(institution * typical).astype(np.int64),
            individual_net_krw=np.rint(individual * typical).astype(np.int64),
        )

    def _shape_movers(
        self,
        new_state: _State,
        selection: IndexArray,
        prev: FloatArray,
        close: FloatArray,
        sigma: FloatArray,
        low_u: FloatArray,
        open_: FloatArray,
        high: FloatArray,
        low: FloatArray,
        volume: FloatArray,
    ) -> None:
        """Give the selected movers a news-driven surge bar, in place: a small opening gap (at
        most 35 % of the rise), a strong close near the high (upper wick at most 0.3 x the
        body, rounded up to a tick), the usual lower wick below the open, and a volume of at
        least 6 x the day's normal volume and at least the mover's traded-value floor."""
        movers = new_state.movers
        wanted = np.isin(movers, selection)
        if not wanted.any():
            return
        at = np.searchsorted(selection, movers[wanted])
        p, c = prev[at], close[at]
        lower, upper = _limits(p)
        gap = _MOVER_GAP * new_state.mover_gap[wanted] * np.log(c / p)
        o = np.minimum(np.clip(_round_tick(p * np.exp(gap)), lower, upper), c)
        body = c - o
        h = np.clip(_ceil_tick(c + _MOVER_WICK * new_state.mover_wick[wanted] * body), c, upper)
        lo = np.minimum(
            o, np.maximum(lower, _floor_tick(o * np.exp(_WICK * sigma[at] * np.log1p(-low_u[at]))))
        )
        u = self._universe
        normal = u.base_volume[movers[wanted]] * np.exp(new_state.log_volume[movers[wanted]])
        typical = (h + lo + c) / 3.0
        floor_volume = np.ceil(new_state.mover_value[wanted] / typical)
        open_[at], high[at], low[at] = o, h, lo
        volume[at] = np.maximum(
            volume[at], np.maximum(np.rint(_MOVER_VOLUME * normal), floor_volume)
        )


def _etf_round(price: FloatArray) -> FloatArray:
    """ETF prices on their tick: 1 KRW below 2,000 KRW, 5 KRW from 2,000 KRW."""
    tick = np.where(price < 2_000.0, 1.0, 5.0)
    return np.rint(price / tick) * tick


def _reference_round(price: FloatArray) -> FloatArray:
    """Index points to 2 decimals (also right for USD/KRW); ETF-sized prices to their tick."""
    return np.where(price >= 5_000.0, _etf_round(price), np.round(price, 2))


def _series_for(code: str) -> ReferenceSeries:
    """The ReferenceSeries a snapshot code names: an index, USD/KRW, else an ETF."""
    if code in KRX_INDICES:
        return ReferenceSeries(code, ReferenceKind.INDEX, KRX_INDICES[code])
    if code == USDKRW:
        return ReferenceSeries(code, ReferenceKind.FX, "USD/KRW")
    return ReferenceSeries(str(code), ReferenceKind.ETF, str(code))


def _reference_rows(
    code: str,
    days: Sequence[date],
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    volume: FloatArray,
    value: FloatArray,
) -> pd.DataFrame:
    n = len(days)
    data: dict[str, Any] = {
        "code": pd.array([code] * n, dtype="str"),
        "trade_date": np.array(list(days), dtype=object),
    }
    for column, values in zip(REFERENCE_BAR_COLUMNS[2:], (o, h, lo, c, volume, value), strict=True):
        data[column] = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(data, columns=list(REFERENCE_BAR_COLUMNS))


def _reference_combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _reference_rows("", [], *(np.empty(0) for _ in range(6)))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["code", "trade_date"], kind="stable").reset_index(drop=True)


def _snapshot_rows(
    tickers: list[str],
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    last: FloatArray,
    volume: FloatArray,
    value: FloatArray,
) -> pd.DataFrame:
    data: dict[str, Any] = {"ticker": pd.array(tickers, dtype="str")}
    for column, values in zip(SNAPSHOT_COLUMNS[1:], (o, h, lo, last, volume, value), strict=True):
        data[column] = np.asarray(values, dtype=np.float64)
    frame = pd.DataFrame(data, columns=list(SNAPSHOT_COLUMNS))
    return frame.sort_values("ticker", kind="stable").reset_index(drop=True)
