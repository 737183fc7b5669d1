"""A SIMULATED Upbit-like KRW crypto market, 24/7: generated candles, NOT real market data.

:class:`SimulatedCrypto` implements :class:`quant.market.base.MarketDataSource` (listing, daily
candles) and :class:`quant.market.base.IntradaySource` (minute candles) in the shape of
:class:`quant.market.upbit.UpbitSource`, so crypto collection, screens and backtests can run
without network access. Every number is produced by a random model; the tickers are real Upbit
market codes (``KRW-BTC`` …) but the prices, volumes and traded values are made up, and the
names are labelled simulated ("시뮬 비트코인"). Reports built on it must say so (``simulated``
is ``True``).

Output shape (as Upbit's): ``market`` ``"UPBIT"``; ``ticker`` a KRW market code; a daily bar
covers 00:00–24:00 UTC (09:00–09:00 KST) and its ``trade_date`` is that UTC date; an intraday
bar's ``ts`` is its start as a timezone-aware UTC timestamp, bars of ``Nm`` start at whole
multiples of N minutes after 00:00 UTC; prices are float64 KRW per coin, ``volume`` float64
coins (8 decimals, like Upbit), ``traded_value`` float64 KRW. Prices are NOT rounded to Upbit's
tick table (it changed in 2024-01, 2024-10 and 2025-07 and is set per market); they are plain
positive floats.

The model, from ``epoch`` (00:00 UTC of its date) on:

* **Daily anchors.** Per ticker a daily log-price walk: a common market factor with
  persistent (AR(1)) log volatility, to which each coin is exposed with a beta, plus
  idiosyncratic noise (10 % of days at 2.2x scale), rare jumps (0.2 % of coin-days, 6–25 %)
  and a weak pull (0.25 %/day) toward the coin's reference price, which is also its price at
  ``epoch``. Weekends (UTC) are calmer (0.75x volatility, 0.7x activity). This walk is the only
  part simulated sequentially; it costs ~O(days x tickers), is computed once per instance in
  blocks of 512 days and cached.
* **Hours.** Within each UTC day a Brownian bridge from the day's open anchor to its close
  anchor, sampled at the 25 hour boundaries, with hourly variances following an intraday
  activity profile (busiest at 00:00 UTC = 09:00 KST and 12:00–16:00 UTC, quietest
  18:00–22:00 UTC) times log-normal noise.
* **Minutes.** Within each hour a bridge between the hour's anchors at the 61 minute
  boundaries, with exponentially distributed minute variances and logistic steps, so minute
  returns are fat-tailed. A minute bar opens at one boundary and closes at the next; its high
  and low are draws of the maximum and minimum of a Brownian bridge between them. Volume per
  minute: a per-coin level, the day's activity (persistent, higher on big-move days), the hour
  profile, the minute's variance share plus exponential noise, and a boost for large moves.
  Traded value = volume x (open + high + low + close) / 4, so its ratio to volume lies within
  the bar's range.
* **Quiet minutes.** A minute with no trades has no bar (as on Upbit); the chance is
  ``exp(-expected trades)``, so it happens only for thinly traded coins in quiet hours.
* **Every coarser bar is the aggregate of its 1-minute bars**: first present open, maximum
  high, minimum low, last present close, summed volume and traded value. A daily bar is the
  aggregate of its UTC day. Bars whose minutes all lack trades are absent. The path is
  continuous: a bar opens exactly where the previous minute closed (so a day opens at the
  previous day's close unless its first minute had no trades).

Determinism and range independence: every random number of a day's minute path comes from one
stream seeded by ``(seed, ticker, date)`` and every number of the daily walk from streams
seeded by ``(seed, block)`` (market) and ``(seed, ticker, block)``. A bar is therefore a pure
function of ``(seed, epoch, ticker, interval, start)``: identical whatever range, interval mix
or ticker subset was requested, and the same for a ticker whatever other tickers the instance
carries. Only whole days are generated (at most 1,440 minutes per ticker-day), never the
minutes since ``epoch``. (Bit-for-bit reproducibility across NumPy releases is not promised by
NumPy and therefore not by this module.)

The simulation has no clock: bars after the present are generated like any other (callers
bound their ranges by the present, as the collectors do). Days before ``epoch`` and from
``epoch`` + :data:`MAX_SIMULATED_DAYS` on have no bars.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from quant.calendar import check_aware, check_date, check_range
from quant.errors import NotFound, PermanentError, ValidationError
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INTRADAY_CANDLE_COLUMNS,
    INTRADAY_INTERVALS,
    Instrument,
    ListingStatus,
    Market,
    selects,
)

__all__ = [
    "DEFAULT_CRYPTO_TICKERS",
    "MAX_INTRADAY_BARS",
    "MAX_SIMULATED_DAYS",
    "SimulatedCrypto",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

#: Days after ``epoch`` that carry bars (100 years); later days have none.
MAX_SIMULATED_DAYS = 36_525
#: Most bars one intraday request may cover (ticker-days x bars per day, an upper bound on
#: the rows); a larger request is refused rather than filling memory.
MAX_INTRADAY_BARS = 10_000_000

_MINUTES = 1_440  # minutes per UTC day
_HOURS = 24
_MINUTE_NS = 60_000_000_000
_INTERVAL_MINUTES: dict[str, int] = {
    interval: int(interval[:-1]) for interval in INTRADAY_INTERVALS
}
_TICKER = re.compile(r"KRW-[A-Z0-9]{1,15}")
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2150, 1, 1, tzinfo=UTC))

# Stream tags: the first entropy word after the seed, so no two kinds of stream coincide.
_TAG_MARKET = 0x43525950_4D4B54  # market factor, per block of days
_TAG_WALK = 0x43525950_574C4B  # a coin's daily walk, per block of days
_TAG_DAY = 0x43525950_444159  # a coin's minute path, per day
_TAG_COIN = 0x43525950_434F49  # parameters of a coin not in the built-in table
_COUNTER_ONE = (1).to_bytes(8, "little")  # SFC64's counter word when a day's stream starts

# --- daily walk ---------------------------------------------------------------------------------
_BLOCK_DAYS = 512
_MKT_LOG_VOL = math.log(0.028)  # typical daily volatility of the crypto market factor
_MKT_VOL_PERSIST = 0.97
_MKT_VOL_SHOCK = 0.09  # stationary s.d. of the log volatility ~0.37
_HEAVY_P = 0.10
_HEAVY_RATIO = 2.2
_CALM_SCALE = 1.0 / math.sqrt(1.0 - _HEAVY_P + _HEAVY_P * _HEAVY_RATIO**2)  # unit variance
_HEAVY_SCALE = _HEAVY_RATIO * _CALM_SCALE
_JUMP_P = 0.002
_JUMP_MIN, _JUMP_SPAN = 0.06, 0.19  # jump sizes 6..25 % (log)
_REVERSION = 0.0025  # daily pull of the log price toward the reference price
_WEEKEND_VOL = 0.75
_WEEKEND_ACTIVITY = 0.7
_ACTIVITY_PERSIST = 0.8
_ACTIVITY_SHOCK = 0.35 * math.sqrt(1.0 - 0.8**2)  # stationary s.d. of log activity 0.35

# --- intraday -----------------------------------------------------------------------------------
# Relative activity per UTC hour (volume and variance): 00 UTC = 09 KST is the daily reset,
# 12–16 UTC the Korean evening and the US open, 18–22 UTC the Korean small hours.
_HOUR_PROFILE_RAW = np.array(
    [
        *(1.60, 1.30, 1.15, 1.00, 0.95, 0.90, 0.95, 1.00, 1.00, 0.95, 0.95, 1.05),
        *(1.25, 1.35, 1.45, 1.35, 1.15, 0.90, 0.70, 0.60, 0.55, 0.60, 0.70, 0.95),
    ],
    dtype=np.float64,
)
_HOUR_PROFILE: FloatArray = _HOUR_PROFILE_RAW / _HOUR_PROFILE_RAW.mean()
_MINUTE_PROFILE: FloatArray = np.repeat(_HOUR_PROFILE, 60)
_HOUR_NOISE = 0.35  # log-normal s.d. of an hour's variance weight
_VOLUME_DECIMALS = 8
_MIN_VOLUME = 1e-8
_AVG_TRADE_KRW = 300_000.0  # sets the expected trades per minute, hence quiet minutes

# Layout of a ticker-day's uniform draws (32-bit, in (0, 1)): six blocks of one per minute,
# then the uniforms of the 48 Box-Muller normals of the hours (weights and bridge steps).
_U_WEIGHT, _U_STEP, _U_UP, _U_DOWN, _U_VOLUME, _U_QUIET = (k * _MINUTES for k in range(6))
_U_NORMAL = 6 * _MINUTES
_N_UNIFORMS = _U_NORMAL + 2 * _HOURS
_LOGISTIC_UNIT = math.sqrt(3.0) / math.pi  # scales a standard logistic draw to unit variance
_CHUNK = 64  # ticker-days generated per vectorized batch

_COLUMNS = ("open", "high", "low", "close", "volume", "traded_value")


@dataclass(frozen=True, slots=True)
class _CoinSpec:
    korean: str  # shown as "시뮬 <korean>"
    price: float  # reference price (KRW), the price at ``epoch``
    beta: float  # exposure to the market factor
    idio: float  # idiosyncratic daily volatility
    value: float  # typical daily traded value (KRW)


# Built-in coins: plausible KRW price levels and Upbit-like relative liquidity (made up).
_TABLE: dict[str, _CoinSpec] = {
    "KRW-ADA": _CoinSpec("에이다", 600.0, 1.25, 0.025, 4e10),
    "KRW-APT": _CoinSpec("앱토스", 12_000.0, 1.35, 0.035, 8e9),
    "KRW-ATOM": _CoinSpec("코스모스", 10_000.0, 1.2, 0.03, 5e9),
    "KRW-AVAX": _CoinSpec("아발란체", 40_000.0, 1.35, 0.03, 2e10),
    "KRW-BCH": _CoinSpec("비트코인캐시", 500_000.0, 1.1, 0.022, 2e10),
    "KRW-BTC": _CoinSpec("비트코인", 60_000_000.0, 1.0, 0.006, 3e11),
    "KRW-DOGE": _CoinSpec("도지코인", 200.0, 1.4, 0.035, 1.5e11),
    "KRW-DOT": _CoinSpec("폴카닷", 8_000.0, 1.2, 0.025, 1e10),
    "KRW-ETC": _CoinSpec("이더리움클래식", 30_000.0, 1.15, 0.025, 1.5e10),
    "KRW-ETH": _CoinSpec("이더리움", 3_000_000.0, 1.15, 0.012, 1.5e11),
    "KRW-HBAR": _CoinSpec("헤데라", 100.0, 1.3, 0.035, 3e10),
    "KRW-LINK": _CoinSpec("체인링크", 18_000.0, 1.25, 0.028, 1.5e10),
    "KRW-NEAR": _CoinSpec("니어프로토콜", 6_000.0, 1.3, 0.032, 1e10),
    "KRW-SAND": _CoinSpec("샌드박스", 500.0, 1.3, 0.035, 5e9),
    "KRW-SHIB": _CoinSpec("시바이누", 0.025, 1.4, 0.04, 2e10),
    "KRW-SOL": _CoinSpec("솔라나", 150_000.0, 1.3, 0.025, 1e11),
    "KRW-SUI": _CoinSpec("수이", 3_000.0, 1.4, 0.04, 5e10),
    "KRW-TRX": _CoinSpec("트론", 180.0, 0.8, 0.02, 1.5e10),
    "KRW-XLM": _CoinSpec("스텔라루멘", 150.0, 1.2, 0.03, 2e10),
    "KRW-XRP": _CoinSpec("엑스알피(리플)", 800.0, 1.2, 0.03, 4e11),
}

#: The tickers an instance carries when none are given: 20 well-known Upbit KRW markets.
DEFAULT_CRYPTO_TICKERS: tuple[str, ...] = tuple(sorted(_TABLE))


@dataclass(frozen=True, slots=True)
class _Universe:
    """Per-coin constants, arrays in ticker order."""

    instruments: tuple[Instrument, ...]
    keys: tuple[int, ...]  # 64-bit stream keys derived from the ticker text
    log_ref: FloatArray  # log reference price
    beta: FloatArray
    idio: FloatArray
    base_volume: FloatArray  # coins per minute at the reference price and unit activity
    trade_rate: FloatArray  # expected trades per minute at unit activity


@dataclass(frozen=True, slots=True)
class _Bars:
    """Bars of a batch of ticker-days, each array ``(batch, bars per day)``; ``present`` is
    false where nothing traded (the other arrays hold zeros or meaningless values there)."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    traded_value: FloatArray
    present: BoolArray


def _ticker_key(ticker: str) -> int:
    """A stable 64-bit key for ``ticker`` (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(ticker.encode(), digest_size=8).digest(), "big")


def _check_seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            f"seed must be an integer >= 0, got {value!r}", field="seed", value=value
        )
    return value


def _check_epoch(value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"epoch must be a timezone-aware datetime, got {value!r}", field="epoch", value=value
        )
    epoch = value.astimezone(UTC)
    if epoch != datetime(epoch.year, epoch.month, epoch.day, tzinfo=UTC):
        raise ValidationError(
            f"epoch must be 00:00 UTC (the start of an Upbit day), got {value.isoformat()}",
            field="epoch",
            value=value,
        )
    if not _EPOCH_RANGE[0] <= epoch < _EPOCH_RANGE[1]:
        raise ValidationError(
            f"epoch must be in [1970-01-01, 2150-01-01) UTC, got {value.isoformat()}",
            field="epoch",
            value=value,
        )
    return epoch


def _check_ticker_list(tickers: object, field: str) -> list[str]:
    """Sorted, de-duplicated KRW market codes; raises ValidationError naming a bad one."""
    if isinstance(tickers, str | bytes) or not isinstance(tickers, Iterable):
        raise ValidationError(
            f"{field} must be a sequence of Upbit KRW markets like 'KRW-BTC', got {tickers!r}",
            field=field,
            value=tickers,
        )
    checked: set[str] = set()
    for ticker in tickers:
        if not isinstance(ticker, str) or _TICKER.fullmatch(ticker) is None:
            raise ValidationError(
                f"{field}: {ticker!r} is not an Upbit KRW market code like 'KRW-BTC'",
                field=field,
                value=ticker,
            )
        checked.add(ticker)
    return sorted(checked)


def _ceil_minutes(delta: timedelta) -> int:
    """Smallest whole number of minutes >= ``delta``."""
    micros = delta // timedelta(microseconds=1)
    return -(-micros // 60_000_000)


def _build_universe(tickers: Sequence[str]) -> _Universe:
    instruments: list[Instrument] = []
    keys: list[int] = []
    params: list[tuple[float, float, float, float]] = []
    for ticker in tickers:
        key = _ticker_key(ticker)
        spec = _TABLE.get(ticker)
        if spec is None:
            # A coin outside the table: parameters from the ticker alone (not the seed), so
            # a ticker means the same coin in every instance.
            rng = np.random.Generator(np.random.SFC64([_TAG_COIN, key]))
            price_u, beta_u, idio_u, value_u = (float(v) for v in rng.random(4))
            spec = _CoinSpec(
                korean=ticker.removeprefix("KRW-"),
                price=math.exp(price_u * math.log(100_000.0)),  # 1 .. 100,000 KRW
                beta=1.0 + 0.6 * beta_u,
                idio=0.02 + 0.03 * idio_u,
                value=3e9 * math.exp(value_u * math.log(10.0)),  # 3e9 .. 3e10 KRW a day
            )
        instruments.append(
            Instrument(
                market=Market.UPBIT,
                ticker=ticker,
                name=f"시뮬 {spec.korean}",
                currency="KRW",
                listing_status=ListingStatus.LISTED,
            )
        )
        keys.append(key)
        params.append((spec.price, spec.beta, spec.idio, spec.value))
    price, beta, idio, value = (
        np.array(column, dtype=np.float64) for column in zip(*params, strict=True)
    )
    return _Universe(
        instruments=tuple(instruments),
        keys=tuple(keys),
        log_ref=np.log(price),
        beta=beta,
        idio=idio,
        base_volume=value / price / _MINUTES,
        trade_rate=value / _AVG_TRADE_KRW / _MINUTES,
    )


def _bridge(start: FloatArray, end: FloatArray, var: FloatArray, z: FloatArray) -> FloatArray:
    """Bridge points between ``start`` and ``end`` (each ``(m,)``) of a random walk with
    increment variances ``var`` ``(m, k)`` and unit-variance draws ``z`` ``(m, k)``:
    ``(m, k + 1)`` points whose first and last columns are exactly ``start`` and ``end``. The
    walk is pinned by subtracting its end point in proportion to the variance elapsed; for
    Gaussian ``z`` this is the exact conditional law given both ends (a Brownian bridge)."""
    walk = np.cumsum(np.sqrt(var) * z, axis=1)
    cumvar = np.cumsum(var, axis=1)
    frac = cumvar[:, :-1] / cumvar[:, -1:]
    out = np.empty((start.shape[0], var.shape[1] + 1), dtype=np.float64)
    out[:, 0] = start
    out[:, -1] = end
    out[:, 1:-1] = (
        start[:, None] + (end - start)[:, None] * frac + (walk[:, :-1] - frac * walk[:, -1:])
    )
    return out


def _aggregate(bars: _Bars, minutes: int) -> _Bars:
    """Bars of ``minutes`` minutes from 1-minute bars (which ``minutes`` divides): first present
    open, max high, min low, last present close, summed volume and traded value."""
    if minutes == 1:
        return bars
    batch, count = bars.present.shape
    shape = (batch, count // minutes, minutes)
    present = bars.present.reshape(shape)
    first = present.argmax(axis=2)[..., None]
    last = (minutes - 1 - present[..., ::-1].argmax(axis=2))[..., None]
    return _Bars(
        open=np.take_along_axis(bars.open.reshape(shape), first, axis=2)[..., 0],
        high=np.max(bars.high.reshape(shape), axis=2, where=present, initial=-np.inf),
        low=np.min(bars.low.reshape(shape), axis=2, where=present, initial=np.inf),
        close=np.take_along_axis(bars.close.reshape(shape), last, axis=2)[..., 0],
        volume=bars.volume.reshape(shape).sum(axis=2),
        traded_value=bars.traded_value.reshape(shape).sum(axis=2),
        present=np.asarray(present.any(axis=2), dtype=np.bool_),
    )


def _day_uniforms(seed: int, keys: Sequence[int], ordinals: IntArray) -> FloatArray:
    """``(len(keys), _N_UNIFORMS)`` uniforms in (0, 1): row ``j`` from the stream of ticker key
    ``keys[j]`` on the day with ordinal ``ordinals[j]``.

    The stream is an SFC64 generator whose state words are a BLAKE2b hash of
    ``(tag, seed, key, ordinal)`` (set directly: much cheaper than a SeedSequence per
    ticker-day); each 64-bit output gives two 32-bit uniforms ``(k + 0.5) / 2**32``.
    """
    words = np.empty((len(keys), _N_UNIFORMS // 2), dtype=np.uint64)
    bits = np.random.SFC64(0)
    for j, key in enumerate(keys):
        digest = hashlib.blake2b(
            b"%d:%d:%d:%d" % (_TAG_DAY, seed, key, int(ordinals[j])), digest_size=24
        ).digest()
        bits.state = {
            "bit_generator": "SFC64",
            "state": {"state": np.frombuffer(digest + _COUNTER_ONE, dtype="<u8")},
            "has_uint32": 0,
            "uinteger": 0,
        }
        words[j] = bits.random_raw(_N_UNIFORMS // 2)
    uniform = words.view(np.uint32).astype(np.float64)
    uniform += 0.5
    uniform *= 2.0**-32
    return uniform


def _box_muller(uniform: FloatArray) -> FloatArray:
    """Standard normals from pairs of uniforms in (0, 1): ``(rows, 2k)`` -> ``(rows, 2k)``."""
    half = uniform.shape[1] // 2
    radius = np.sqrt(-2.0 * np.log(uniform[:, :half]))
    angle = (2.0 * math.pi) * uniform[:, half:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


_Grown = TypeVar("_Grown", bound=np.ndarray[Any, Any])


def _grown(array: _Grown, capacity: int) -> _Grown:
    """A copy of ``array`` with axis 1 enlarged to ``capacity``; new cells are zero."""
    shape = (array.shape[0], capacity, *array.shape[2:])
    out = np.zeros(shape, dtype=array.dtype)
    out[:, : array.shape[1]] = array
    return cast(_Grown, out)


def _intraday_frame(
    interval: str, tickers: ObjectArray, ts_ns: IntArray, values: dict[str, FloatArray]
) -> pd.DataFrame:
    rows = len(tickers)
    data: dict[str, Any] = {
        "market": pd.Series(np.full(rows, Market.UPBIT.value, dtype=object), dtype=object),
        "ticker": pd.Series(tickers, dtype=object),
        "interval": pd.Series(np.full(rows, interval, dtype=object), dtype=object),
        "ts": pd.Series(pd.to_datetime(ts_ns, unit="ns", utc=True)),
    }
    for column in _COLUMNS:
        data[column] = pd.Series(values[column], dtype="float64")
    return pd.DataFrame(data, columns=list(INTRADAY_CANDLE_COLUMNS))


def _daily_frame(
    tickers: ObjectArray, dates: list[date], values: dict[str, FloatArray]
) -> pd.DataFrame:
    rows = len(tickers)
    data: dict[str, Any] = {
        "market": pd.Series(np.full(rows, Market.UPBIT.value, dtype=object), dtype=object),
        "ticker": pd.Series(tickers, dtype=object),
        "trade_date": pd.Series(np.array(dates, dtype=object), dtype=object),
    }
    for column in _COLUMNS:
        data[column] = pd.Series(values[column], dtype="float64")
    return pd.DataFrame(data, columns=list(DAILY_CANDLE_COLUMNS))


_NO_NAMES: ObjectArray = np.empty(0, dtype=object)


def _empty_values() -> dict[str, FloatArray]:
    return {column: np.empty(0, dtype=np.float64) for column in _COLUMNS}


class SimulatedCrypto:
    """SIMULATED Upbit KRW crypto market, trading 24/7: generated candles, NOT real prices.

    ``SimulatedCrypto(seed, tickers, epoch)`` carries ``tickers`` (default
    :data:`DEFAULT_CRYPTO_TICKERS`, 20 well-known KRW markets with plausible price levels: BTC
    ~60,000,000 KRW, ETH ~3,000,000, SOL ~150,000, XRP ~800, DOGE ~200, SHIB ~0.025 …). Any
    other ``KRW-XXX`` code is accepted too and gets made-up parameters derived from the code
    (a price between 1 and 100,000 KRW). Instruments are all LISTED, currency KRW, market
    UPBIT, named "시뮬 <name>". Bars exist from ``epoch`` (default 2018-01-01 00:00 UTC, which
    must be a UTC midnight) on, for :data:`MAX_SIMULATED_DAYS` days; prices start at the
    reference prices there.

    Same arguments give identical output, and a bar does not depend on the range, interval or
    tickers it was requested with, nor on the other tickers of the instance (see the module
    docstring). Cost: the daily walk (~3,000 days for 2026 with the default epoch, a few tens
    of milliseconds) is computed once per instance; a request then generates the minute paths
    of every ticker-day it covers, whatever the interval (about 0.2 ms per ticker-day on a
    small 2-core machine: a day of 1m bars for 20 tickers ~15 ms, 30 days of 60m bars ~0.15 s,
    a year of daily bars for 20 tickers ~1.5 s). Daily bars are cached per instance once
    generated (by daily and intraday requests alike), so repeated daily requests are cheap.

    Thread safety: an internal lock serializes requests on one instance.
    """

    name: str = "simulated"
    simulated: bool = True

    def __init__(
        self,
        seed: int = 42,
        tickers: Sequence[str] | None = None,
        epoch: datetime = datetime(2018, 1, 1, tzinfo=UTC),
    ) -> None:
        """Build the universe (cheap; nothing is simulated until requested).

        Raises:
            quant.errors.ValidationError: ``seed`` is not an integer >= 0; ``tickers`` is a
                single string, empty, or holds something that is not a KRW market code like
                ``KRW-BTC``; ``epoch`` is not a timezone-aware datetime at 00:00 UTC in
                1970..2149.
        """
        self._seed = _check_seed(seed)
        self._epoch = _check_epoch(epoch)
        if tickers is None:
            chosen = list(DEFAULT_CRYPTO_TICKERS)
        else:
            chosen = _check_ticker_list(tickers, "tickers")
            if not chosen:
                raise ValidationError(
                    "tickers must name at least one market (None means the default set)",
                    field="tickers",
                    value=tickers,
                )
        self._universe = _build_universe(chosen)
        self._position_of = {t: i for i, t in enumerate(chosen)}
        self._ticker_array: ObjectArray = np.array(chosen, dtype=object)
        self._epoch_date = self._epoch.date()
        self._epoch_ns = (self._epoch - _UNIX_EPOCH) // timedelta(microseconds=1) * 1_000
        self._lock = threading.Lock()
        size = len(chosen)
        # daily walk: day d opens at log price _x_open[:, d] and closes at _x_close[:, d]
        # (arrays over days have spare capacity; only the first ``_days`` columns are valid)
        self._days = 0
        self._x_open = np.empty((size, 0), dtype=np.float64)
        self._x_close = np.empty((size, 0), dtype=np.float64)
        self._var = np.empty((size, 0), dtype=np.float64)  # the day's bridge variance
        self._activity = np.empty((size, 0), dtype=np.float64)  # the day's volume multiplier
        self._state_x = self._universe.log_ref.copy()
        self._state_log_vol = _MKT_LOG_VOL
        self._state_log_activity = np.zeros(size, dtype=np.float64)
        # cached daily bars: 0 = not generated yet, 1 = bar, 2 = no trades that day
        self._daily_state = np.zeros((size, 0), dtype=np.int8)
        self._daily_values = np.empty((size, 0, len(_COLUMNS)), dtype=np.float64)

    # -- introspection ------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def epoch(self) -> datetime:
        """Start (00:00 UTC) of the first simulated day."""
        return self._epoch

    @property
    def tickers(self) -> tuple[str, ...]:
        """The markets this instance carries, sorted."""
        return tuple(inst.ticker for inst in self._universe.instruments)

    def __repr__(self) -> str:
        return (
            f"SimulatedCrypto(seed={self._seed}, tickers={len(self._universe.instruments)}, "
            f"epoch={self._epoch.isoformat()})"
        )

    # -- MarketDataSource ---------------------------------------------------------------------

    def list_instruments(self, as_of: date, market: Market | None = None) -> list[Instrument]:
        """The simulated KRW markets, sorted by ticker; the same for every ``as_of``.

        ``market`` other than ``None``/``Market.UPBIT`` gives ``[]``.

        Raises:
            quant.errors.ValidationError: ``as_of`` is not a plain date, or ``market`` is
                not a Market (nor a market name).
        """
        check_date(as_of, "as_of")
        if not selects(market, Market.UPBIT):
            return []
        return list(self._universe.instruments)

    def daily_candles(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """SIMULATED daily bars for the UTC dates in ``[start, end]`` (both inclusive).

        Columns are :data:`~quant.market.types.DAILY_CANDLE_COLUMNS`: ``market`` ``"UPBIT"``,
        ``ticker`` (``KRW-BTC``), ``trade_date`` the UTC date of the bar's 00:00 UTC (09:00
        KST) start, ``open/high/low/close`` float64 KRW, ``volume`` float64 coins,
        ``traded_value`` float64 KRW; object dtype for the text and date columns, as
        :class:`~quant.market.upbit.UpbitSource`. Sorted by ticker then date, RangeIndex. Each
        bar is the aggregate of that day's 1-minute bars; days before ``epoch`` (or without
        any trade) have no row. ``tickers=None`` means every ticker of the instance; a
        ``market`` other than ``None``/``Market.UPBIT`` gives an empty frame.

        Raises:
            quant.errors.ValidationError: ``start``/``end`` are not plain dates, ``start`` is
                after ``end``, ``market`` is not a Market, or ``tickers`` is a single string
                or holds something that is not a KRW market code.
            quant.errors.NotFound: a ticker is not carried by this instance (all such are
                named).
        """
        check_range(start, end)
        if not selects(market, Market.UPBIT):
            return _daily_frame(_NO_NAMES, [], _empty_values())
        positions = self._select(tickers)
        first = max(0, (start - self._epoch_date).days)
        last = min(MAX_SIMULATED_DAYS - 1, (end - self._epoch_date).days)
        if first > last:
            return _daily_frame(_NO_NAMES, [], _empty_values())
        with self._lock:
            self._ensure_walk(last + 1)
            missing_coins, missing_days = np.nonzero(
                self._daily_state[positions, first : last + 1] == 0
            )
            if missing_coins.size:
                self._generate(positions[missing_coins], missing_days + first, None)
            state = self._daily_state[positions, first : last + 1]
            values = self._daily_values[positions, first : last + 1]
        coin_at, day_at = np.nonzero(state == 1)
        kept = values[coin_at, day_at]
        dates = [self._epoch_date + timedelta(days=int(d) + first) for d in day_at]
        return _daily_frame(
            self._ticker_array[positions[coin_at]],
            dates,
            {column: kept[:, k].copy() for k, column in enumerate(_COLUMNS)},
        )

    def investor_flows(
        self,
        start: date,
        end: date,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Not available, as on Upbit: crypto markets publish no investor-group flows.

        Raises:
            quant.errors.PermanentError: always (asking again cannot succeed).
        """
        raise PermanentError(
            "the simulated Upbit market has no investor flows (foreign/institution/individual "
            "net buying exists only for KRX equities)"
        )

    # -- IntradaySource -----------------------------------------------------------------------

    def intraday_candles(
        self,
        start: datetime,
        end: datetime,
        interval: str,
        market: Market | None = None,
        tickers: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """SIMULATED bars of ``interval`` that start in ``[start, end)``.

        ``interval`` is one of :data:`~quant.market.types.INTRADAY_INTERVALS` (``"1m"`` …
        ``"240m"``); bars start at whole multiples of the interval after 00:00 UTC. Columns
        are :data:`~quant.market.types.INTRADAY_CANDLE_COLUMNS`: ``ts`` the bar's start as a
        timezone-aware UTC timestamp (``datetime64[ns, UTC]``), prices float64 KRW, ``volume``
        float64 coins, ``traded_value`` float64 KRW. Sorted by ticker then ``ts``, RangeIndex.
        A bar is the aggregate of its 1-minute bars; a minute without trades has no 1-minute
        bar, and a bar all of whose minutes lack trades is absent. ``tickers``/``market`` as in
        :meth:`daily_candles`.

        Raises:
            quant.errors.ValidationError: naive datetimes, ``start >= end``, an unknown
                interval, a ``market`` that is not a Market, bad ``tickers``, or a range that
                could hold more than :data:`MAX_INTRADAY_BARS` bars.
            quant.errors.NotFound: a ticker is not carried by this instance.
        """
        start_utc = check_aware(start, "start")
        end_utc = check_aware(end, "end")
        if start_utc >= end_utc:
            raise ValidationError(
                f"start {start.isoformat()} is not before end {end.isoformat()}",
                field="start",
                value=start,
            )
        minutes = _INTERVAL_MINUTES.get(interval) if isinstance(interval, str) else None
        if minutes is None:
            raise ValidationError(
                f"unknown intraday interval {interval!r} (known: {', '.join(INTRADAY_INTERVALS)})",
                field="interval",
                value=interval,
            )
        if not selects(market, Market.UPBIT):
            return _intraday_frame(
                interval, _NO_NAMES, np.empty(0, dtype=np.int64), _empty_values()
            )
        positions = self._select(tickers)
        # bar starts, in minutes after epoch, in [lo, hi)
        lo = _ceil_minutes(start_utc - self._epoch)
        hi = _ceil_minutes(end_utc - self._epoch)
        first = max(0, lo // _MINUTES)
        last = min(MAX_SIMULATED_DAYS - 1, (hi - 1) // _MINUTES)
        if first > last:
            return _intraday_frame(
                interval, _NO_NAMES, np.empty(0, dtype=np.int64), _empty_values()
            )
        per_day = _MINUTES // minutes
        bound = positions.size * (last - first + 1) * per_day
        if bound > MAX_INTRADAY_BARS:
            raise ValidationError(
                f"{interval} bars from {start.isoformat()} to {end.isoformat()} for "
                f"{positions.size} ticker(s) would be up to {bound:,} rows, more than the "
                f"{MAX_INTRADAY_BARS:,} one request may return; ask for a shorter range",
                field="end",
                value=end,
            )
        days = np.arange(first, last + 1, dtype=np.int64)
        coins = np.repeat(positions, days.size)  # ticker-major: the frame's sort order
        day_of = np.tile(days, positions.size)
        with self._lock:
            self._ensure_walk(last + 1)
            parts = self._generate(coins, day_of, minutes)
        offsets = np.arange(per_day, dtype=np.int64) * minutes
        names: list[ObjectArray] = []
        stamps: list[IntArray] = []
        collected: dict[str, list[FloatArray]] = {column: [] for column in _COLUMNS}
        for index, bars in parts:
            start_minute = day_of[index][:, None] * _MINUTES + offsets[None, :]
            keep = bars.present & (start_minute >= lo) & (start_minute < hi)
            row_of, _ = np.nonzero(keep)
            names.append(self._ticker_array[coins[index][row_of]])
            stamps.append(self._epoch_ns + start_minute[keep] * _MINUTE_NS)
            for column in _COLUMNS:
                collected[column].append(getattr(bars, column)[keep])
        return _intraday_frame(
            interval,
            np.concatenate(names) if names else np.empty(0, dtype=object),
            np.concatenate(stamps) if stamps else np.empty(0, dtype=np.int64),
            {
                column: np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float64)
                for column, chunks in collected.items()
            },
        )

    # -- request handling ---------------------------------------------------------------------

    def _select(self, tickers: Sequence[str] | None) -> IntArray:
        """Positions (ascending, hence ticker order) of the requested tickers."""
        if tickers is None:
            return np.arange(len(self._universe.instruments), dtype=np.int64)
        wanted = _check_ticker_list(tickers, "tickers")
        missing = [t for t in wanted if t not in self._position_of]
        if missing:
            shown = ", ".join(repr(t) for t in missing[:20]) + (
                f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            )
            raise NotFound(
                f"unknown ticker(s) {shown}: not carried by the simulated Upbit market "
                f"(seed={self._seed}; it carries {len(self._position_of)} tickers, pass them "
                "as SimulatedCrypto(tickers=...) to add markets)"
            )
        return np.array([self._position_of[t] for t in wanted], dtype=np.int64)

    # -- simulation ---------------------------------------------------------------------------

    def _ensure_walk(self, days: int) -> None:
        """Extend the daily walk (whole blocks) until it covers days ``0 .. days - 1``."""
        while self._days < days:
            self._walk_block(self._days // _BLOCK_DAYS)

    def _walk_block(self, block: int) -> None:
        """Simulate the next block of ``_BLOCK_DAYS`` days of the daily walk for every coin."""
        u = self._universe
        size = len(u.instruments)
        length = _BLOCK_DAYS
        market_rng = np.random.Generator(np.random.SFC64([self._seed, _TAG_MARKET, block]))
        market_z = market_rng.standard_normal((2, length))
        market_u = market_rng.random(length)
        coin_z = np.empty((size, 2, length), dtype=np.float64)
        coin_u = np.empty((size, 2, length), dtype=np.float64)
        for i, key in enumerate(u.keys):
            rng = np.random.Generator(np.random.SFC64([self._seed, _TAG_WALK, key, block]))
            coin_z[i] = rng.standard_normal((2, length))
            coin_u[i] = rng.random((2, length))

        # market factor: AR(1) log volatility (sequential, scalar)
        log_vol = np.empty(length, dtype=np.float64)
        state = self._state_log_vol
        for t in range(length):
            state = (
                _MKT_LOG_VOL
                + _MKT_VOL_PERSIST * (state - _MKT_LOG_VOL)
                + _MKT_VOL_SHOCK * float(market_z[0, t])
            )
            log_vol[t] = state
        self._state_log_vol = state
        day = block * _BLOCK_DAYS + np.arange(length)
        weekday = (self._epoch_date.weekday() + day) % 7
        weekend = weekday >= 5
        week_vol = np.where(weekend, _WEEKEND_VOL, 1.0)
        market_vol = (
            np.exp(log_vol) * week_vol * np.where(market_u < _HEAVY_P, _HEAVY_SCALE, _CALM_SCALE)
        )
        market_return = market_vol * market_z[1]
        idio_scale = (
            u.idio[:, None]
            * np.sqrt(np.exp(log_vol - _MKT_LOG_VOL))[None, :]
            * week_vol[None, :]
            * np.where(coin_u[:, 0] < _HEAVY_P, _HEAVY_SCALE, _CALM_SCALE)
        )
        shock = u.beta[:, None] * market_return[None, :] + idio_scale * coin_z[:, 0]
        jump_u = coin_u[:, 1] / _JUMP_P  # uniform on [0, 1) where a jump happens
        jump = np.where(
            coin_u[:, 1] < _JUMP_P,
            np.where(jump_u < 0.5, 1.0, -1.0) * (_JUMP_MIN + _JUMP_SPAN * ((2.0 * jump_u) % 1.0)),
            0.0,
        )
        shock += jump
        variance = (u.beta[:, None] * market_vol[None, :]) ** 2 + idio_scale**2

        # log prices with a pull toward the reference price (sequential per day)
        x_open = np.empty((size, length), dtype=np.float64)
        x_close = np.empty((size, length), dtype=np.float64)
        log_activity = np.empty((size, length), dtype=np.float64)
        x = self._state_x
        la = self._state_log_activity
        for t in range(length):
            x_open[:, t] = x
            x = x + (_REVERSION * (u.log_ref - x) + shock[:, t])
            x_close[:, t] = x
            la = _ACTIVITY_PERSIST * la + _ACTIVITY_SHOCK * coin_z[:, 1, t]
            log_activity[:, t] = la
        self._state_x = x
        self._state_log_activity = la
        move = np.abs(x_close - x_open) / np.sqrt(variance)
        activity = (
            np.exp(log_activity)
            * np.where(weekend, _WEEKEND_ACTIVITY, 1.0)[None, :]
            * (0.6 + 0.4 * np.minimum(move, 6.0))
        )

        begin, end = self._days, self._days + length
        if end > self._x_open.shape[1]:
            capacity = max(end, 2 * self._x_open.shape[1])
            self._x_open = _grown(self._x_open, capacity)
            self._x_close = _grown(self._x_close, capacity)
            self._var = _grown(self._var, capacity)
            self._activity = _grown(self._activity, capacity)
            self._daily_state = _grown(self._daily_state, capacity)
            self._daily_values = _grown(self._daily_values, capacity)
        self._x_open[:, begin:end] = x_open
        self._x_close[:, begin:end] = x_close
        self._var[:, begin:end] = variance
        self._activity[:, begin:end] = activity
        self._days += length

    def _generate(
        self, coins: IntArray, days: IntArray, minutes: int | None
    ) -> list[tuple[IntArray, _Bars]]:
        """Minute paths of the ticker-days ``(coins[j], days[j])``, in batches; stores each
        day's daily bar in the cache and returns ``(indices into coins/days, bars of
        minutes)`` per batch (nothing when ``minutes`` is None). The walk must cover the days;
        the caller holds the lock."""
        out: list[tuple[IntArray, _Bars]] = []
        for begin in range(0, coins.size, _CHUNK):
            index = np.arange(begin, min(begin + _CHUNK, coins.size), dtype=np.int64)
            c, d = coins[index], days[index]
            bars = self._minute_bars(c, d)
            daily = _aggregate(bars, _MINUTES)
            self._daily_state[c, d] = np.where(daily.present[:, 0], 1, 2)
            self._daily_values[c, d] = np.stack(
                [getattr(daily, column)[:, 0] for column in _COLUMNS], axis=1
            )
            if minutes is not None:
                out.append((index, _aggregate(bars, minutes)))
        return out

    def _minute_bars(self, coins: IntArray, days: IntArray) -> _Bars:
        """The 1-minute bars ``(batch, 1440)`` of the ticker-days ``(coins[j], days[j])``.

        Every random number of a ticker-day comes from its own stream, and every operation is
        row-wise, so a row does not depend on the rest of the batch.
        """
        u = self._universe
        batch = coins.size
        uniform = _day_uniforms(
            self._seed, [u.keys[int(c)] for c in coins], self._epoch_date.toordinal() + days
        )
        normal = _box_muller(uniform[:, _U_NORMAL:])
        hour_z = normal[:, :_HOURS]
        hour_bridge_z = normal[:, _HOURS:]
        # minute steps: logistic draws scaled to unit variance (cheaper than normals and, mixed
        # with the exponential variance weights below, fat-tailed like real minute returns)
        step_u = uniform[:, _U_STEP : _U_STEP + _MINUTES].reshape(batch * _HOURS, 60)
        minute_step_z = np.log(step_u / (1.0 - step_u))
        minute_step_z *= _LOGISTIC_UNIT
        shape = (batch, _HOURS, 60)

        x_open = self._x_open[coins, days]
        x_close = self._x_close[coins, days]
        activity = self._activity[coins, days]

        # hours: variance shares from the activity profile and log-normal noise, then a bridge
        hour_weight = _HOUR_PROFILE[None, :] * np.exp(_HOUR_NOISE * hour_z)
        hour_var = self._var[coins, days][:, None] * (
            hour_weight / hour_weight.sum(axis=1, keepdims=True)
        )
        anchors = _bridge(x_open, x_close, hour_var, hour_bridge_z)  # (batch, 25)

        # minutes: exponential variance weights within each hour (so minute returns are
        # Laplace-like, fat-tailed), then a bridge per hour between its anchors
        weight = -np.log(uniform[:, _U_WEIGHT : _U_WEIGHT + _MINUTES]).reshape(shape)
        share = weight / weight.sum(axis=2, keepdims=True)
        var = (hour_var[:, :, None] * share).reshape(batch * _HOURS, 60)
        points = _bridge(
            anchors[:, :-1].reshape(-1), anchors[:, 1:].reshape(-1), var, minute_step_z
        )  # (batch * 24, 61): minute k of an hour opens at column k and closes at k + 1

        # bars: open/close on the path; high/low are Brownian-bridge extremes between them
        first, second = points[:, :-1], points[:, 1:]
        move2 = np.square(second - first)
        mid = first + second
        up = np.log(uniform[:, _U_UP : _U_UP + _MINUTES]).reshape(batch * _HOURS, 60)
        down = np.log(uniform[:, _U_DOWN : _U_DOWN + _MINUTES]).reshape(batch * _HOURS, 60)
        high_log = 0.5 * (mid + np.sqrt(move2 - 2.0 * var * up))
        low_log = 0.5 * (mid - np.sqrt(move2 - 2.0 * var * down))
        prices = np.exp(points)
        open_ = prices[:, :-1].reshape(batch, _MINUTES)
        close = prices[:, 1:].reshape(batch, _MINUTES)
        high = np.maximum(np.exp(high_log).reshape(batch, _MINUTES), open_)
        np.maximum(high, close, out=high)
        low = np.minimum(np.exp(low_log).reshape(batch, _MINUTES), open_)
        np.minimum(low, close, out=low)

        # volume: level x day activity x hour profile x (the minute's variance share + an
        # independent exponential draw) x a boost for large moves
        level = (u.base_volume[coins] * activity)[:, None] * _MINUTE_PROFILE[None, :]
        burst = 30.0 * share.reshape(batch, _MINUTES) - 0.5 * np.log(
            uniform[:, _U_VOLUME : _U_VOLUME + _MINUTES]
        )
        size_in_sigmas = np.minimum(np.sqrt(move2 / var), 6.0).reshape(batch, _MINUTES)
        volume = level * burst * (0.7 + 0.3 * size_in_sigmas)
        volume = np.maximum(np.round(volume, _VOLUME_DECIMALS), _MIN_VOLUME)

        # a minute without trades has no bar
        no_trade = np.exp(-(u.trade_rate[coins] * activity)[:, None] * _HOUR_PROFILE[None, :])
        present = (
            uniform[:, _U_QUIET : _U_QUIET + _MINUTES].reshape(shape) >= no_trade[:, :, None]
        ).reshape(batch, _MINUTES)
        volume[~present] = 0.0
        traded_value = volume * ((open_ + high + low + close) * 0.25)
        return _Bars(
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=volume,
            traded_value=traded_value,
            present=present,
        )
