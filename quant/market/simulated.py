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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from quant.calendar import TradingCalendar, check_date, check_range, krx_approximate_calendar
from quant.errors import NotFound, ValidationError
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
    Instrument,
    ListingStatus,
    Market,
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
        )
        if selection is None:
            return new_state, None
        return new_state, self._bars(rng, state, new_state, vol_scale, selection)

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
