"""The simulated Upbit-like crypto market: labelling, Upbit's frame shape, determinism, range
independence, aggregation consistency, OHLC invariants, filters and argument errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

import quant.market.simulated_crypto as simulated_crypto
from quant.errors import NotFound, PermanentError, ValidationError
from quant.market import (
    DAILY_CANDLE_COLUMNS,
    INTRADAY_CANDLE_COLUMNS,
    INTRADAY_INTERVALS,
    IntradaySource,
    ListingStatus,
    Market,
    MarketDataSource,
)
from quant.market.quality import check_daily_candles, check_intraday_candles
from quant.market.simulated_crypto import (
    DEFAULT_CRYPTO_TICKERS,
    MAX_INTRADAY_BARS,
    MAX_SIMULATED_DAYS,
    SimulatedCrypto,
)
from quant.market.upbit import UpbitSource

KST = timezone(timedelta(hours=9))
DAY = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday; ATOM and SAND have quiet minutes then
THIN = ["KRW-ATOM", "KRW-BTC", "KRW-SAND"]
PRICES = ["open", "high", "low", "close"]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture(scope="module")
def crypto() -> SimulatedCrypto:
    return SimulatedCrypto(seed=7)


@pytest.fixture(scope="module")
def minutes(crypto: SimulatedCrypto) -> pd.DataFrame:
    """Two days of 1-minute bars of every default ticker."""
    return crypto.intraday_candles(DAY, DAY + timedelta(days=2), "1m")


def aggregate(frame: pd.DataFrame, key: pd.Series) -> pd.DataFrame:
    """Bars aggregated per (ticker, key), computed independently of the implementation."""
    grouped = frame.groupby([frame["ticker"], key], sort=True)
    return pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "traded_value": grouped["traded_value"].sum(),
        }
    )


def assert_same_bars(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Prices exactly equal (they are the same floats); sums equal up to summation order."""
    assert list(actual.index) == list(expected.index)
    for column in PRICES:
        assert (actual[column].to_numpy() == expected[column].to_numpy()).all(), column
    for column in ("volume", "traded_value"):
        np.testing.assert_allclose(actual[column], expected[column], rtol=1e-12, atol=0)


def rows_at(frame: pd.DataFrame, column: str, values: Any) -> pd.DataFrame:
    return frame[frame[column].isin(values)].reset_index(drop=True)


# -- labelling and universe ----------------------------------------------------------------------


def test_is_a_labelled_simulated_source(crypto: SimulatedCrypto) -> None:
    assert isinstance(crypto, MarketDataSource)
    assert isinstance(crypto, IntradaySource)
    assert crypto.name == "simulated"
    assert crypto.simulated is True
    assert "SIMULATED" in (SimulatedCrypto.__doc__ or "")
    assert "SIMULATED" in (simulated_crypto.__doc__ or "")


def test_default_universe_is_twenty_labelled_upbit_krw_markets(crypto: SimulatedCrypto) -> None:
    instruments = crypto.list_instruments(date(2024, 6, 3))
    tickers = [i.ticker for i in instruments]
    assert tickers == sorted(tickers) == list(DEFAULT_CRYPTO_TICKERS) == list(crypto.tickers)
    assert len(tickers) == 20
    assert {"KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE"} <= set(tickers)
    assert all(t.startswith("KRW-") and t[4:].isalnum() and t[4:].isupper() for t in tickers)
    assert {i.market for i in instruments} == {Market.UPBIT}
    assert all(i.currency == "KRW" for i in instruments)
    assert all(i.listing_status is ListingStatus.LISTED for i in instruments)
    assert all(i.name.startswith("시뮬 ") for i in instruments)
    assert len({i.name for i in instruments}) == 20
    assert crypto.list_instruments(date(2019, 1, 1)) == instruments
    assert crypto.list_instruments(date(2024, 6, 3), Market.UPBIT) == instruments
    assert crypto.list_instruments(date(2024, 6, 3), "upbit") == instruments  # type: ignore[arg-type]
    assert crypto.list_instruments(date(2024, 6, 3), Market.KOSPI) == []


def test_prices_start_at_realistic_krw_levels(crypto: SimulatedCrypto) -> None:
    first = crypto.daily_candles(date(2018, 1, 1), date(2018, 1, 1)).set_index("ticker")
    assert first["trade_date"].eq(date(2018, 1, 1)).all()
    opens = first["open"]
    assert 10_000_000 <= opens["KRW-BTC"] < 100_000_000  # tens of millions
    assert 1_000_000 <= opens["KRW-ETH"] < 10_000_000
    assert 100 <= opens["KRW-XRP"] < 10_000
    assert 50 <= opens["KRW-DOGE"] < 1_000
    values = first["traded_value"]
    assert values["KRW-BTC"] > values["KRW-SAND"]


def test_other_tickers_are_accepted_and_do_not_change_the_default_ones(
    crypto: SimulatedCrypto,
) -> None:
    custom = SimulatedCrypto(seed=7, tickers=["KRW-FOO1", "KRW-BTC", "KRW-BTC"])
    assert custom.tickers == ("KRW-BTC", "KRW-FOO1")
    foo = custom.list_instruments(date(2024, 1, 1))[1]
    assert (foo.ticker, foo.name, foo.market) == ("KRW-FOO1", "시뮬 FOO1", Market.UPBIT)
    window = (DAY + timedelta(hours=5), DAY + timedelta(hours=7))
    mine = custom.intraday_candles(*window, "1m", tickers=["KRW-BTC"])
    theirs = crypto.intraday_candles(*window, "1m", tickers=["KRW-BTC"])
    pd.testing.assert_frame_equal(mine, theirs)
    foo_bars = custom.intraday_candles(*window, "5m", tickers=["KRW-FOO1"])
    assert len(foo_bars) == 24
    assert (foo_bars[PRICES] > 0).all().all()
    # a made-up coin's parameters come from its code, so another instance agrees
    again = SimulatedCrypto(seed=7, tickers=["KRW-FOO1"])
    pd.testing.assert_frame_equal(
        again.intraday_candles(*window, "5m"), foo_bars.reset_index(drop=True)
    )


# -- frame shape: exactly Upbit's ----------------------------------------------------------------


def upbit_empty_intraday() -> pd.DataFrame:
    """The real provider's frame for a market it does not serve (answered without a request)."""
    with UpbitSource() as upbit:
        return upbit.intraday_candles(utc(2024, 1, 1), utc(2024, 1, 2), "1m", market=Market.KOSPI)


def upbit_empty_daily() -> pd.DataFrame:
    with UpbitSource() as upbit:
        return upbit.daily_candles(date(2024, 1, 1), date(2024, 1, 2), market=Market.KOSPI)


def test_intraday_frame_has_upbits_columns_dtypes_and_order(minutes: pd.DataFrame) -> None:
    assert tuple(minutes.columns) == INTRADAY_CANDLE_COLUMNS
    assert minutes.dtypes.equals(upbit_empty_intraday().dtypes)
    assert str(minutes["ts"].dtype) == "datetime64[ns, UTC]"
    for column in ("open", "high", "low", "close", "volume", "traded_value"):
        assert minutes[column].dtype == np.float64, column
    assert isinstance(minutes.index, pd.RangeIndex)
    assert (minutes["market"] == "UPBIT").all()
    assert (minutes["interval"] == "1m").all()
    assert set(minutes["ticker"]) == set(DEFAULT_CRYPTO_TICKERS)
    ordered = minutes.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(minutes, ordered)
    assert not minutes.duplicated(["ticker", "ts"]).any()
    assert minutes["ts"].min() == pd.Timestamp(DAY)
    assert minutes["ts"].max() == pd.Timestamp(DAY + timedelta(days=2, minutes=-1))
    assert (minutes["ts"].dt.second == 0).all()


def test_daily_frame_has_upbits_columns_dtypes_and_order(crypto: SimulatedCrypto) -> None:
    frame = crypto.daily_candles(date(2024, 2, 27), date(2024, 3, 5))
    assert tuple(frame.columns) == DAILY_CANDLE_COLUMNS
    assert frame.dtypes.equals(upbit_empty_daily().dtypes)
    assert isinstance(frame.index, pd.RangeIndex)
    assert len(frame) == 20 * 8  # every day of a 24/7 market, 2024 being a leap year
    assert all(type(d) is date for d in frame["trade_date"])
    assert sorted(set(frame["trade_date"])) == [
        date(2024, 2, 27) + timedelta(days=k) for k in range(8)
    ]
    ordered = frame.sort_values(["ticker", "trade_date"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, ordered)
    assert (frame["market"] == "UPBIT").all()


@pytest.mark.parametrize("interval", INTRADAY_INTERVALS)
def test_every_interval_is_served_on_its_utc_grid(crypto: SimulatedCrypto, interval: str) -> None:
    step = int(interval[:-1])
    frame = crypto.intraday_candles(
        DAY, DAY + timedelta(days=1), interval, tickers=["KRW-BTC", "KRW-ETH"]
    )
    assert (frame["interval"] == interval).all()
    assert len(frame) == 2 * 1440 // step  # BTC and ETH trade every minute
    minute_of_day = frame["ts"].dt.hour * 60 + frame["ts"].dt.minute
    assert (minute_of_day % step == 0).all()
    assert frame.dtypes.equals(upbit_empty_intraday().dtypes)


def test_empty_answers_keep_the_frame_shape(crypto: SimulatedCrypto) -> None:
    empties = [
        crypto.intraday_candles(utc(2024, 1, 1), utc(2024, 1, 2), "5m", market=Market.KOSDAQ),
        crypto.intraday_candles(utc(2017, 1, 1), utc(2017, 12, 31), "1m"),  # before the epoch
        crypto.intraday_candles(utc(2024, 1, 1), utc(2024, 1, 2), "1m", tickers=[]),
    ]
    for frame in empties:
        assert frame.empty
        assert tuple(frame.columns) == INTRADAY_CANDLE_COLUMNS
        assert frame.dtypes.equals(upbit_empty_intraday().dtypes)
    daily = [
        crypto.daily_candles(date(2024, 1, 1), date(2024, 1, 5), market=Market.KOSPI),
        crypto.daily_candles(date(2010, 1, 1), date(2017, 12, 31)),
    ]
    for frame in daily:
        assert frame.empty
        assert tuple(frame.columns) == DAILY_CANDLE_COLUMNS
        assert frame.dtypes.equals(upbit_empty_daily().dtypes)


def test_bars_start_at_the_epoch_and_end_at_the_horizon() -> None:
    crypto = SimulatedCrypto(seed=3, tickers=["KRW-BTC"], epoch=utc(2020, 5, 1))
    daily = crypto.daily_candles(date(2020, 4, 25), date(2020, 5, 3))
    assert list(daily["trade_date"]) == [date(2020, 5, 1), date(2020, 5, 2), date(2020, 5, 3)]
    assert daily["open"].iloc[0] == pytest.approx(60_000_000.0, rel=1e-12)
    bars = crypto.intraday_candles(utc(2020, 4, 30, 20), utc(2020, 5, 1, 2), "60m")
    assert list(bars["ts"]) == [pd.Timestamp(utc(2020, 5, 1)), pd.Timestamp(utc(2020, 5, 1, 1))]
    beyond = utc(2020, 5, 1) + timedelta(days=MAX_SIMULATED_DAYS)
    assert crypto.intraday_candles(beyond, beyond + timedelta(days=1), "1m").empty
    assert crypto.daily_candles(beyond.date(), beyond.date()).empty


# -- determinism and range independence ----------------------------------------------------------


def test_same_seed_same_bars_other_seed_other_bars(crypto: SimulatedCrypto) -> None:
    window = (DAY, DAY + timedelta(hours=6))
    a = crypto.intraday_candles(*window, "1m", tickers=THIN)
    b = SimulatedCrypto(seed=7).intraday_candles(*window, "1m", tickers=THIN)
    pd.testing.assert_frame_equal(a, b)
    c = SimulatedCrypto(seed=8).intraday_candles(*window, "1m", tickers=THIN)
    merged = a.merge(c, on=["ticker", "ts"])
    assert len(merged) > 0.9 * len(a)
    assert (merged["close_x"] != merged["close_y"]).mean() > 0.99
    daily_a = crypto.daily_candles(date(2024, 3, 1), date(2024, 3, 3))
    daily_c = SimulatedCrypto(seed=8).daily_candles(date(2024, 3, 1), date(2024, 3, 3))
    assert (daily_a["close"] != daily_c["close"]).all()


def test_a_1m_bar_does_not_depend_on_the_request(minutes: pd.DataFrame) -> None:
    # a fresh instance (its own walk and caches), one ticker, a window across midnight
    fresh = SimulatedCrypto(seed=7)
    start = DAY + timedelta(hours=23, minutes=30)
    end = start + timedelta(hours=1)
    part = fresh.intraday_candles(start, end, "1m", tickers=["KRW-SAND"])
    whole = minutes[
        (minutes["ticker"] == "KRW-SAND")
        & (minutes["ts"] >= pd.Timestamp(start))
        & (minutes["ts"] < pd.Timestamp(end))
    ].reset_index(drop=True)
    assert 55 <= len(part) <= 60
    pd.testing.assert_frame_equal(part, whole)
    # unaligned bounds: bars *starting* in [start, end)
    odd = fresh.intraday_candles(
        start + timedelta(seconds=1), start + timedelta(minutes=2, seconds=1), "1m"
    )
    assert set(odd["ts"]) <= {
        pd.Timestamp(start + timedelta(minutes=1)),
        pd.Timestamp(start + timedelta(minutes=2)),
    }
    assert (odd["ts"] == pd.Timestamp(start + timedelta(minutes=1))).sum() >= 19


@pytest.mark.parametrize("interval", ["60m", "240m"])
def test_an_hourly_bar_does_not_depend_on_the_request(interval: str) -> None:
    wide = SimulatedCrypto(seed=7).intraday_candles(
        DAY - timedelta(days=3), DAY + timedelta(days=4), interval
    )
    # a far later request first, so this instance's walk was built in another order
    narrow_source = SimulatedCrypto(seed=7)
    narrow_source.daily_candles(date(2027, 1, 1), date(2027, 1, 1))
    at = DAY + timedelta(hours=12)
    narrow = narrow_source.intraday_candles(
        at - timedelta(minutes=1), at + timedelta(minutes=1), interval, tickers=["KRW-ETH"]
    )
    assert len(narrow) == 1
    expected = wide[(wide["ticker"] == "KRW-ETH") & (wide["ts"] == pd.Timestamp(at))]
    pd.testing.assert_frame_equal(narrow, expected.reset_index(drop=True))


def test_a_daily_bar_does_not_depend_on_the_request(crypto: SimulatedCrypto) -> None:
    year = crypto.daily_candles(date(2024, 1, 1), date(2024, 4, 30))
    one = SimulatedCrypto(seed=7).daily_candles(
        date(2024, 3, 4), date(2024, 3, 4), tickers=["KRW-XRP", "KRW-ADA"]
    )
    expected = year[
        (year["trade_date"] == date(2024, 3, 4)) & year["ticker"].isin(["KRW-ADA", "KRW-XRP"])
    ]
    pd.testing.assert_frame_equal(one, expected.reset_index(drop=True))
    # the cache filled by an intraday request gives the same daily bar as a fresh computation
    warmed = SimulatedCrypto(seed=7)
    warmed.intraday_candles(utc(2024, 3, 4, 10), utc(2024, 3, 4, 11), "1m")
    pd.testing.assert_frame_equal(
        warmed.daily_candles(date(2024, 3, 4), date(2024, 3, 4), tickers=["KRW-ADA", "KRW-XRP"]),
        one,
    )


def test_concurrent_requests_on_one_instance_agree_with_serial_ones() -> None:
    shared = SimulatedCrypto(seed=7, tickers=THIN)
    window = (DAY, DAY + timedelta(days=1))
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(shared.intraday_candles, *window, interval)
            for interval in ("1m", "5m", "60m", "1m")
        ] + [pool.submit(shared.daily_candles, date(2024, 3, 1), date(2024, 3, 6))]
        results = [f.result() for f in futures]
    serial = SimulatedCrypto(seed=7, tickers=THIN)
    for interval, frame in zip(("1m", "5m", "60m", "1m"), results, strict=False):
        pd.testing.assert_frame_equal(frame, serial.intraday_candles(*window, interval))
    pd.testing.assert_frame_equal(
        results[-1], serial.daily_candles(date(2024, 3, 1), date(2024, 3, 6))
    )


def test_years_after_the_epoch_need_no_simulation_since_the_epoch() -> None:
    crypto = SimulatedCrypto(seed=7, tickers=["KRW-BTC"])
    late = crypto.intraday_candles(utc(2030, 7, 1, 12), utc(2030, 7, 1, 13), "1m")
    assert len(late) == 60
    assert (late[PRICES] > 0).all().all()
    assert crypto._daily_state.astype(bool).sum() == 1  # only that one day was generated


# -- aggregation consistency ---------------------------------------------------------------------


def test_thin_markets_have_minutes_without_a_bar(minutes: pd.DataFrame) -> None:
    counts = minutes.groupby("ticker").size()
    assert counts["KRW-BTC"] == 2 * 1440
    assert counts["KRW-ATOM"] < 2 * 1440
    assert counts["KRW-SAND"] < 2 * 1440
    assert counts.min() > 0.95 * 2 * 1440  # rare


@pytest.mark.parametrize("interval", [i for i in INTRADAY_INTERVALS if i != "1m"])
def test_a_bar_is_the_aggregate_of_its_1m_bars(
    crypto: SimulatedCrypto, minutes: pd.DataFrame, interval: str
) -> None:
    step = int(interval[:-1])
    bars = crypto.intraday_candles(DAY, DAY + timedelta(days=1), interval, tickers=THIN)
    day = rows_at(minutes, "ticker", THIN)
    day = day[day["ts"] < pd.Timestamp(DAY + timedelta(days=1))]
    expected = aggregate(day, day["ts"].dt.floor(f"{step}min"))
    assert_same_bars(bars.set_index(["ticker", "ts"]), expected.rename_axis(["ticker", "ts"]))


def test_a_daily_bar_is_the_aggregate_of_its_utc_days_bars(
    crypto: SimulatedCrypto, minutes: pd.DataFrame
) -> None:
    daily = crypto.daily_candles(DAY.date(), DAY.date() + timedelta(days=1))
    expected = aggregate(minutes, minutes["ts"].dt.date)
    assert_same_bars(
        daily.set_index(["ticker", "trade_date"]), expected.rename_axis(["ticker", "trade_date"])
    )
    four_hours = crypto.intraday_candles(DAY, DAY + timedelta(days=2), "240m")
    assert_same_bars(
        daily.set_index(["ticker", "trade_date"]),
        aggregate(four_hours, four_hours["ts"].dt.date).rename_axis(["ticker", "trade_date"]),
    )


def test_the_price_path_is_continuous(crypto: SimulatedCrypto, minutes: pd.DataFrame) -> None:
    btc = minutes[minutes["ticker"] == "KRW-BTC"]
    assert (btc["open"].to_numpy()[1:] == btc["close"].to_numpy()[:-1]).all()
    daily = crypto.daily_candles(date(2024, 1, 1), date(2024, 1, 31), tickers=["KRW-BTC"])
    assert (daily["open"].to_numpy()[1:] == daily["close"].to_numpy()[:-1]).all()


# -- values --------------------------------------------------------------------------------------


def assert_valid_bars(frame: pd.DataFrame) -> None:
    values = frame[[*PRICES, "volume", "traded_value"]].to_numpy()
    assert np.isfinite(values).all()
    assert (frame["low"] > 0).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["volume"] > 0).all()
    vwap = frame["traded_value"] / frame["volume"]
    assert (vwap >= frame["low"] * (1 - 1e-12)).all()
    assert (vwap <= frame["high"] * (1 + 1e-12)).all()


def test_minute_bars_are_valid_and_pass_the_quality_checks(minutes: pd.DataFrame) -> None:
    assert_valid_bars(minutes)
    assert (minutes["high"] > minutes["low"]).mean() > 0.99  # real wicks, not flat bars
    volume = minutes["volume"].to_numpy()
    assert (np.round(volume, 8) == volume).all()  # 8 decimals, like Upbit
    good, rejected = check_intraday_candles(minutes)
    assert rejected == []
    assert len(good) == len(minutes)


def test_daily_bars_are_valid_and_pass_the_quality_checks(crypto: SimulatedCrypto) -> None:
    daily = crypto.daily_candles(date(2024, 1, 1), date(2024, 4, 30))
    assert_valid_bars(daily)
    good, rejected = check_daily_candles(daily)
    assert rejected == []
    assert len(good) == len(daily) == 20 * 121
    returns = np.log(daily["close"]).groupby(daily["ticker"]).diff().dropna()
    assert 0.01 < returns.std() < 0.10  # crypto-like daily volatility
    assert (daily["high"] / daily["low"]).median() > 1.01


def test_activity_follows_the_korean_day(crypto: SimulatedCrypto) -> None:
    hourly = crypto.intraday_candles(utc(2024, 3, 4), utc(2024, 3, 18), "60m")
    by_hour = hourly.groupby(hourly["ts"].dt.hour)["traded_value"].sum()
    assert by_hour[0] > 1.5 * by_hour[20]  # 09:00 KST reset vs 05:00 KST
    assert by_hour[14] > 1.5 * by_hour[20]  # 23:00 KST, the US open


def test_timezones_other_than_utc_are_converted(crypto: SimulatedCrypto) -> None:
    in_kst = crypto.intraday_candles(
        datetime(2024, 3, 4, 9, tzinfo=KST), datetime(2024, 3, 4, 10, tzinfo=KST), "15m"
    )
    in_utc = crypto.intraday_candles(utc(2024, 3, 4), utc(2024, 3, 4, 1), "15m")
    pd.testing.assert_frame_equal(in_kst, in_utc)
    kst_epoch = SimulatedCrypto(seed=7, epoch=datetime(2018, 1, 1, 9, tzinfo=KST))
    assert kst_epoch.epoch == utc(2018, 1, 1)


# -- filters -------------------------------------------------------------------------------------


def test_ticker_and_market_filters(crypto: SimulatedCrypto) -> None:
    frame = crypto.intraday_candles(
        DAY, DAY + timedelta(hours=1), "30m", tickers=("KRW-XRP", "KRW-BTC", "KRW-XRP")
    )
    assert list(frame["ticker"]) == ["KRW-BTC", "KRW-BTC", "KRW-XRP", "KRW-XRP"]
    named = crypto.intraday_candles(
        DAY, DAY + timedelta(hours=1), "30m", market=Market.UPBIT, tickers=["KRW-XRP"]
    )
    pd.testing.assert_frame_equal(named, rows_at(frame, "ticker", ["KRW-XRP"]))
    daily = crypto.daily_candles(
        date(2024, 3, 4),
        date(2024, 3, 5),
        market="UPBIT",  # type: ignore[arg-type]
        tickers=["KRW-SOL"],
    )
    assert list(daily["ticker"]) == ["KRW-SOL", "KRW-SOL"]


# -- errors --------------------------------------------------------------------------------------


def test_naive_datetimes_are_refused(crypto: SimulatedCrypto) -> None:
    with pytest.raises(ValidationError, match=r"start must be a timezone-aware.*2024, 3, 4") as e:
        crypto.intraday_candles(datetime(2024, 3, 4), utc(2024, 3, 5), "1m")
    assert e.value.field == "start"
    with pytest.raises(ValidationError, match=r"end must be a timezone-aware") as e:
        crypto.intraday_candles(utc(2024, 3, 4), datetime(2024, 3, 5), "1m")
    assert e.value.field == "end"
    with pytest.raises(ValidationError, match=r"start must be a timezone-aware.*'2024-03-04'"):
        crypto.intraday_candles("2024-03-04", utc(2024, 3, 5), "1m")  # type: ignore[arg-type]


@pytest.mark.parametrize("end", [utc(2024, 3, 4, 12), utc(2024, 3, 4, 11)])
def test_start_must_be_before_end(crypto: SimulatedCrypto, end: datetime) -> None:
    with pytest.raises(ValidationError, match=r"start 2024-03-04T12:00:00\+00:00 is not before"):
        crypto.intraday_candles(utc(2024, 3, 4, 12), end, "1m")


@pytest.mark.parametrize("interval", ["2m", "1h", "", "60", 60, None])
def test_unknown_intervals_are_refused(crypto: SimulatedCrypto, interval: Any) -> None:
    with pytest.raises(ValidationError, match=r"unknown intraday interval") as e:
        crypto.intraday_candles(utc(2024, 3, 4), utc(2024, 3, 5), interval)
    assert repr(interval) in str(e.value)
    assert "240m" in str(e.value)
    assert e.value.field == "interval"


def test_unknown_tickers_are_not_found_and_named(crypto: SimulatedCrypto) -> None:
    with pytest.raises(NotFound, match=r"'KRW-NOPE', 'KRW-ZZZ'"):
        crypto.intraday_candles(
            utc(2024, 3, 4), utc(2024, 3, 5), "1m", tickers=["KRW-BTC", "KRW-ZZZ", "KRW-NOPE"]
        )
    with pytest.raises(NotFound, match=r"'KRW-NOPE'"):
        crypto.daily_candles(date(2024, 3, 4), date(2024, 3, 5), tickers=["KRW-NOPE"])


@pytest.mark.parametrize(
    ("tickers", "shown"),
    [("KRW-BTC", "'KRW-BTC'"), (["BTC"], "'BTC'"), (["krw-btc"], "'krw-btc'"), ([7], "7")],
)
def test_malformed_tickers_are_refused(crypto: SimulatedCrypto, tickers: Any, shown: str) -> None:
    with pytest.raises(ValidationError, match=shown) as e:
        crypto.intraday_candles(utc(2024, 3, 4), utc(2024, 3, 5), "1m", tickers=tickers)
    assert e.value.field == "tickers"
    with pytest.raises(ValidationError, match=shown):
        crypto.daily_candles(date(2024, 3, 4), date(2024, 3, 5), tickers=tickers)


def test_bad_markets_and_dates_are_refused(crypto: SimulatedCrypto) -> None:
    with pytest.raises(ValidationError, match=r"market must be .* got 5"):
        crypto.daily_candles(date(2024, 3, 4), date(2024, 3, 5), market=5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"unknown market 'BINANCE'"):
        crypto.intraday_candles(utc(2024, 3, 4), utc(2024, 3, 5), "1m", market="BINANCE")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"start 2024-03-05 is after end 2024-03-04"):
        crypto.daily_candles(date(2024, 3, 5), date(2024, 3, 4))
    with pytest.raises(ValidationError, match=r"start must be a datetime.date"):
        crypto.daily_candles(utc(2024, 3, 4), date(2024, 3, 5))
    with pytest.raises(ValidationError, match=r"as_of must be a datetime.date"):
        crypto.list_instruments("2024-03-04")  # type: ignore[arg-type]


def test_oversized_intraday_requests_are_refused(crypto: SimulatedCrypto) -> None:
    days = MAX_INTRADAY_BARS // (20 * 1440) + 1
    with pytest.raises(ValidationError, match=r"1m bars from .* would be up to") as e:
        crypto.intraday_candles(utc(2024, 1, 1), utc(2024, 1, 1) + timedelta(days=days), "1m")
    assert e.value.field == "end"


def test_investor_flows_do_not_exist(crypto: SimulatedCrypto) -> None:
    with pytest.raises(PermanentError, match=r"no investor flows"):
        crypto.investor_flows(date(2024, 3, 4), date(2024, 3, 5))


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"seed": -1}, "seed", "-1"),
        ({"seed": True}, "seed", "True"),
        ({"seed": "42"}, "seed", "'42'"),
        ({"tickers": "KRW-BTC"}, "tickers", "'KRW-BTC'"),
        ({"tickers": []}, "tickers", "at least one"),
        ({"tickers": ["KRW-BTC", "USDT-BTC"]}, "tickers", "'USDT-BTC'"),
        ({"epoch": datetime(2018, 1, 1)}, "epoch", "timezone-aware"),
        ({"epoch": date(2018, 1, 1)}, "epoch", "timezone-aware"),
        ({"epoch": utc(2018, 1, 1, 9)}, "epoch", "00:00 UTC.*2018-01-01T09:00:00"),
        ({"epoch": utc(1960, 1, 1)}, "epoch", "1960-01-01"),
    ],
)
def test_bad_constructor_arguments_are_refused(
    kwargs: dict[str, Any], field: str, shown: str
) -> None:
    with pytest.raises(ValidationError, match=shown) as e:
        SimulatedCrypto(**kwargs)
    assert e.value.field == field
