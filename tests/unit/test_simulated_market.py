"""The simulated market: universe, determinism, range independence, KRX rules, flows, filters."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from quant.calendar import ContinuousCalendar, WeekdayCalendar, krx_approximate_calendar
from quant.errors import NotFound, ValidationError
from quant.market import (
    DAILY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
    ListingStatus,
    Market,
    MarketDataSource,
)
from quant.market.simulated import SimulatedMarket

KRX = krx_approximate_calendar()
SMALL_EPOCH = date(2023, 1, 2)
BIG_EPOCH = date(2024, 1, 2)


def krx_tick(price: float) -> int:
    """KRX tick size, 2023 table (written out independently of the implementation)."""
    for bound, tick in ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100)):
        if price < bound:
            return tick
    return 500 if price < 500_000 else 1_000


def on_tick(prices: pd.Series) -> pd.Series:
    ticks = prices.map(krx_tick)
    return (prices % ticks == 0) & (prices == prices.round())


def with_previous_close(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["prev_close"] = out.groupby("ticker")["close"].shift()
    return out.dropna(subset=["prev_close"])


@pytest.fixture(scope="module")
def small() -> SimulatedMarket:
    return SimulatedMarket(seed=7, universe_size=60, epoch=SMALL_EPOCH)


@pytest.fixture(scope="module")
def small_year(small: SimulatedMarket) -> pd.DataFrame:
    return small.daily_candles(date(2023, 1, 1), date(2023, 12, 31))


@pytest.fixture(scope="module")
def big() -> SimulatedMarket:
    return SimulatedMarket(seed=11, universe_size=2500, epoch=BIG_EPOCH)


@pytest.fixture(scope="module")
def big_year(big: SimulatedMarket) -> pd.DataFrame:
    """A year of bars and flows for 2,500 instruments, with previous close and log return."""
    candles = big.daily_candles(date(2024, 1, 1), date(2024, 12, 31))
    flows = big.investor_flows(date(2024, 1, 1), date(2024, 12, 31))
    assert (
        (candles[["market", "ticker", "trade_date"]] == flows[["market", "ticker", "trade_date"]])
        .all()
        .all()
    )
    merged = pd.concat([candles, flows.iloc[:, 3:]], axis=1)
    merged = with_previous_close(merged)
    merged["log_return"] = np.log(merged["close"] / merged["prev_close"])
    return merged


# -- interface and universe ------------------------------------------------------------------


def test_is_a_labelled_market_data_source(small: SimulatedMarket) -> None:
    assert isinstance(small, MarketDataSource)
    assert small.name == "simulated"
    assert small.simulated is True
    assert "SIMULATED" in (SimulatedMarket.__doc__ or "")


@pytest.mark.parametrize(
    ("size", "kospi"),
    [(1, 1), (2, 1), (3, 1), (100, 38), (2500, 950), (20_000, 7600)],
)
def test_universe_size_and_market_split(size: int, kospi: int) -> None:
    market = SimulatedMarket(seed=3, universe_size=size)
    instruments = market.list_instruments(date(2024, 6, 3))
    assert len(instruments) == size
    assert len(market.list_instruments(date(2024, 6, 3), Market.KOSPI)) == kospi
    assert len(market.list_instruments(date(2024, 6, 3), Market.KOSDAQ)) == size - kospi
    tickers = [i.ticker for i in instruments]
    assert len(set(tickers)) == size
    assert tickers == sorted(tickers)
    assert all(len(t) == 6 and t.isdigit() for t in tickers)
    assert len({i.name for i in instruments}) == size
    assert all("시뮬" in i.name for i in instruments)
    assert all(i.currency == "KRW" for i in instruments)
    assert all(i.listing_status is ListingStatus.LISTED for i in instruments)
    assert {i.market for i in instruments} <= {Market.KOSPI, Market.KOSDAQ}


def test_kospi_and_kosdaq_codes_use_separate_ranges() -> None:
    market = SimulatedMarket(seed=5, universe_size=20_000)
    kospi = [i.ticker for i in market.list_instruments(date(2024, 1, 2), Market.KOSPI)]
    kosdaq = [i.ticker for i in market.list_instruments(date(2024, 1, 2), Market.KOSDAQ)]
    assert kospi[0] == "000020"
    assert max(kospi) < min(kosdaq)


def test_universe_is_deterministic_and_date_independent() -> None:
    a = SimulatedMarket(seed=9, universe_size=300)
    b = SimulatedMarket(seed=9, universe_size=300)
    assert a.list_instruments(date(2019, 1, 2)) == b.list_instruments(date(2030, 5, 6))
    assert a.list_instruments(date(2000, 1, 4)) == a.list_instruments(date(2024, 1, 2))
    assert a.list_instruments(date(2024, 1, 2), Market.UPBIT) == []


# -- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({"universe_size": 0}, "universe_size", "0"),
        ({"universe_size": 20_001}, "universe_size", "20001"),
        ({"universe_size": -5}, "universe_size", "-5"),
        ({"universe_size": 2.5}, "universe_size", "2.5"),
        ({"seed": -1}, "seed", "-1"),
        ({"seed": True}, "seed", "True"),
        ({"seed": "42"}, "seed", "'42'"),
        ({"epoch": datetime(2018, 1, 2, 9)}, "epoch", "datetime"),
        ({"calendar": "KRX"}, "calendar", "str"),
    ],
)
def test_constructor_validation_names_the_value(
    kwargs: dict[str, Any], field: str, shown: str
) -> None:
    with pytest.raises(ValidationError) as info:
        SimulatedMarket(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)
    assert shown in str(info.value)


def test_reversed_range_is_rejected(small: SimulatedMarket) -> None:
    for method in (small.daily_candles, small.investor_flows):
        with pytest.raises(ValidationError, match="2023-03-02 is after end 2023-03-01"):
            method(date(2023, 3, 2), date(2023, 3, 1))


def test_datetimes_are_rejected(small: SimulatedMarket) -> None:
    with pytest.raises(ValidationError, match="start"):
        small.daily_candles(datetime(2023, 3, 2, 15), date(2023, 3, 3))


# -- frame shape -------------------------------------------------------------------------------


def test_candle_frame_shape_and_types(small: SimulatedMarket, small_year: pd.DataFrame) -> None:
    frame = small_year
    assert tuple(frame.columns) == DAILY_CANDLE_COLUMNS
    assert isinstance(frame.index, pd.RangeIndex)
    assert frame.index[0] == 0
    for column in ("open", "high", "low", "close", "volume", "traded_value"):
        assert frame[column].dtype == np.float64, column
    assert all(type(d) is date for d in frame["trade_date"])
    sessions = KRX.sessions(date(2023, 1, 1), date(2023, 12, 31))
    assert len(frame) == 60 * len(sessions)
    assert set(frame["trade_date"]) == set(sessions)
    ordered = frame.sort_values(["ticker", "trade_date"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, ordered)
    markets = {i.ticker: i.market.value for i in small.list_instruments(date(2023, 1, 2))}
    assert (frame["ticker"].map(markets) == frame["market"]).all()


def test_flow_frame_shape_and_types(small: SimulatedMarket) -> None:
    flows = small.investor_flows(date(2023, 5, 1), date(2023, 6, 30))
    assert tuple(flows.columns) == INVESTOR_FLOW_COLUMNS
    assert isinstance(flows.index, pd.RangeIndex)
    for column in INVESTOR_FLOW_COLUMNS[3:]:
        assert flows[column].dtype == np.int64, column
    assert all(type(d) is date for d in flows["trade_date"])
    candles = small.daily_candles(date(2023, 5, 1), date(2023, 6, 30))
    pd.testing.assert_frame_equal(
        flows[["market", "ticker", "trade_date"]], candles[["market", "ticker", "trade_date"]]
    )


@pytest.mark.parametrize("method", ["daily_candles", "investor_flows"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2022, 1, 3), date(2022, 12, 30)),  # entirely before the epoch
        (date(2023, 1, 1), date(2023, 1, 1)),  # a holiday
        (date(2023, 1, 7), date(2023, 1, 8)),  # a weekend
    ],
)
def test_empty_requests_give_empty_frames(
    small: SimulatedMarket, method: str, start: date, end: date
) -> None:
    frame = getattr(small, method)(start, end)
    expected = DAILY_CANDLE_COLUMNS if method == "daily_candles" else INVESTOR_FLOW_COLUMNS
    assert frame.empty
    assert tuple(frame.columns) == expected
    numeric = np.int64 if method == "investor_flows" else np.float64
    assert all(frame[c].dtype == numeric for c in expected[3:])


def test_range_spanning_the_epoch_starts_at_the_first_session() -> None:
    market = SimulatedMarket(seed=1, universe_size=5, epoch=date(2023, 1, 1))  # a holiday
    frame = market.daily_candles(date(2022, 12, 1), date(2023, 1, 10))
    assert min(frame["trade_date"]) == date(2023, 1, 2)
    assert len(frame) == 5 * 7


def test_future_dates_are_simulated(small: SimulatedMarket) -> None:
    frame = small.daily_candles(date(2031, 3, 3), date(2031, 3, 7))
    assert len(frame) == 60 * 5


def test_calendar_is_respected() -> None:
    weekdays = SimulatedMarket(
        seed=1, universe_size=4, calendar=WeekdayCalendar(), epoch=SMALL_EPOCH
    )
    frame = weekdays.daily_candles(date(2023, 1, 1), date(2023, 1, 31))
    assert all(d.weekday() < 5 for d in frame["trade_date"])
    assert date(2023, 1, 2) in set(frame["trade_date"])
    crypto = SimulatedMarket(
        seed=1, universe_size=4, calendar=ContinuousCalendar(), epoch=SMALL_EPOCH
    )
    frame = crypto.daily_candles(date(2023, 1, 1), date(2023, 1, 31))
    assert len(set(frame["trade_date"])) == 30  # Jan 2..31


# -- determinism and range independence --------------------------------------------------------


@pytest.mark.parametrize("method", ["daily_candles", "investor_flows"])
def test_same_seed_same_data(method: str) -> None:
    a = SimulatedMarket(seed=21, universe_size=40, epoch=SMALL_EPOCH)
    b = SimulatedMarket(seed=21, universe_size=40, epoch=SMALL_EPOCH)
    pd.testing.assert_frame_equal(
        getattr(a, method)(date(2023, 3, 1), date(2023, 4, 28)),
        getattr(b, method)(date(2023, 3, 1), date(2023, 4, 28)),
        check_exact=True,
    )


def test_different_seeds_differ() -> None:
    args: dict[str, Any] = {"universe_size": 40, "epoch": SMALL_EPOCH}
    a = SimulatedMarket(seed=1, **args).daily_candles(date(2023, 6, 1), date(2023, 6, 30))
    b = SimulatedMarket(seed=2, **args).daily_candles(date(2023, 6, 1), date(2023, 6, 30))
    assert len(a) == len(b)
    assert (a["close"].to_numpy() != b["close"].to_numpy()).mean() > 0.9
    fa = SimulatedMarket(seed=1, **args).investor_flows(date(2023, 6, 1), date(2023, 6, 30))
    fb = SimulatedMarket(seed=2, **args).investor_flows(date(2023, 6, 1), date(2023, 6, 30))
    assert (fa["foreign_net_shares"].to_numpy() != fb["foreign_net_shares"].to_numpy()).mean() > 0.5


def rows_on(frame: pd.DataFrame, d: date) -> pd.DataFrame:
    return frame[frame["trade_date"] == d].reset_index(drop=True)


@pytest.mark.parametrize("method", ["daily_candles", "investor_flows"])
@pytest.mark.parametrize("d", [date(2023, 1, 2), date(2023, 7, 14), date(2024, 3, 5)])
def test_bar_does_not_depend_on_requested_range(method: str, d: date) -> None:
    def fresh() -> SimulatedMarket:
        return SimulatedMarket(seed=5, universe_size=50, epoch=SMALL_EPOCH)

    reference = rows_on(getattr(fresh(), method)(d, d), d)
    assert len(reference) == 50
    ranges = [
        (d - timedelta(days=300), d + timedelta(days=5)),
        (d - timedelta(days=3), d + timedelta(days=40)),
        (date(2000, 1, 1), d),
    ]
    for start, end in ranges:
        got = rows_on(getattr(fresh(), method)(start, end), d)
        pd.testing.assert_frame_equal(got, reference, check_exact=True)

    # one instance, requests in an order that exercises the state checkpoints
    warm = fresh()
    for start, end in [(d + timedelta(days=200), d + timedelta(days=210)), (d, d), *ranges]:
        frame = getattr(warm, method)(start, end)
        if start <= d <= end:
            pd.testing.assert_frame_equal(rows_on(frame, d), reference, check_exact=True)


def test_cached_instance_matches_one_long_request() -> None:
    """Single days asked in a scrambled order (hitting the instance's state checkpoints from
    both sides) equal the rows of one long request made on a fresh instance."""
    args: dict[str, Any] = {"seed": 8, "universe_size": 20, "epoch": SMALL_EPOCH}
    sessions = KRX.sessions(SMALL_EPOCH, date(2024, 12, 31))
    full = SimulatedMarket(**args).daily_candles(sessions[0], sessions[-1])
    flows = SimulatedMarket(**args).investor_flows(sessions[0], sessions[-1])
    rng = np.random.default_rng(0)
    picks = [*rng.choice(len(sessions), size=40, replace=False), 0, 126, 127, 128, 255, 256]
    warm = SimulatedMarket(**args)
    for i in picks:
        d = sessions[int(i)]
        pd.testing.assert_frame_equal(
            warm.daily_candles(d, d), rows_on(full, d), check_exact=True, obj=str(d)
        )
        pd.testing.assert_frame_equal(
            warm.investor_flows(d, d), rows_on(flows, d), check_exact=True, obj=str(d)
        )


@pytest.mark.parametrize("method", ["daily_candles", "investor_flows"])
def test_bar_does_not_depend_on_ticker_or_market_filter(method: str) -> None:
    market = SimulatedMarket(seed=5, universe_size=50, epoch=SMALL_EPOCH)
    start, end = date(2023, 9, 1), date(2023, 9, 29)
    full = getattr(SimulatedMarket(seed=5, universe_size=50, epoch=SMALL_EPOCH), method)(start, end)
    tickers = sorted(full["ticker"].unique())
    picked = [tickers[7], tickers[3], tickers[40]]
    subset = getattr(market, method)(start, end, tickers=picked)
    expected = full[full["ticker"].isin(picked)].reset_index(drop=True)
    pd.testing.assert_frame_equal(subset, expected, check_exact=True)
    kosdaq = getattr(market, method)(start, end, market=Market.KOSDAQ)
    expected = full[full["market"] == "KOSDAQ"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kosdaq, expected, check_exact=True)


# -- KRX rules on the bars -----------------------------------------------------------------------


def test_ohlc_is_consistent_and_on_ticks(small_year: pd.DataFrame) -> None:
    f = small_year
    assert (f[["open", "high", "low", "close"]] > 0).all().all()
    assert (f["low"] <= np.minimum(f["open"], f["close"])).all()
    assert (np.maximum(f["open"], f["close"]) <= f["high"]).all()
    for column in ("open", "high", "low", "close"):
        bad = f.loc[~on_tick(f[column]), ["ticker", "trade_date", column]]
        assert bad.empty, bad.head()
    assert (f["volume"] == f["volume"].round()).all()
    assert (f["volume"] >= 0).all()


def test_ohlc_is_consistent_and_on_ticks_in_a_large_universe(big_year: pd.DataFrame) -> None:
    f = big_year
    assert (f["low"] <= np.minimum(f["open"], f["close"])).all()
    assert (np.maximum(f["open"], f["close"]) <= f["high"]).all()
    assert (f["low"] > 0).all()
    for column in ("open", "high", "low", "close"):
        assert on_tick(f[column]).all(), column


@pytest.mark.parametrize("which", ["small", "big"])
def test_daily_price_limit(which: str, small_year: pd.DataFrame, big_year: pd.DataFrame) -> None:
    f = with_previous_close(small_year) if which == "small" else big_year
    for column in ("open", "high", "low", "close"):
        ratio = f[column] / f["prev_close"]
        assert ratio.max() <= 1.3 + 1e-12, column
        assert ratio.min() >= 0.7 - 1e-12, column


def test_limit_moves_happen_and_sit_on_the_limit_price(big_year: pd.DataFrame) -> None:
    f = big_year
    upper = (f["prev_close"] * 13 / 10).map(lambda p: p // krx_tick(p) * krx_tick(p))
    hits = f[f["close"] == upper]
    assert len(hits) > 5  # 상한가 days exist (news jumps), and they are exactly on the limit
    assert ((f["close"] / f["prev_close"]).loc[hits.index] > 1.29).all()


def test_first_bar_respects_the_limit_against_the_previous_request(small: SimulatedMarket) -> None:
    a = small.daily_candles(date(2023, 6, 30), date(2023, 6, 30))
    b = small.daily_candles(date(2023, 7, 3), date(2023, 7, 3))
    ratio = b["close"].to_numpy() / a["close"].to_numpy()
    assert (ratio <= 1.3 + 1e-12).all()
    assert (ratio >= 0.7 - 1e-12).all()


def test_halts_look_like_halts(big_year: pd.DataFrame) -> None:
    f = big_year
    halted = f[f["volume"] == 0]
    share = len(halted) / len(f)
    assert 0.0001 < share < 0.002, share
    for column in ("open", "high", "low", "close"):
        assert (halted[column] == halted["prev_close"]).all(), column
    assert (halted["traded_value"] == 0).all()
    for column in INVESTOR_FLOW_COLUMNS[3:]:
        assert (halted[column] == 0).all(), column
    assert (f.loc[f["volume"] > 0, "volume"] >= 1).all()


def test_traded_value_uses_a_price_inside_the_bar(big_year: pd.DataFrame) -> None:
    f = big_year[big_year["volume"] > 0]
    price = f["traded_value"] / f["volume"]
    assert (price >= f["low"] * (1 - 1e-12)).all()
    assert (price <= f["high"] * (1 + 1e-12)).all()


# -- investor flows ------------------------------------------------------------------------------


def test_flows_sum_rule_and_size(big_year: pd.DataFrame) -> None:
    f = big_year
    groups = f["foreign_net_shares"] + f["institution_net_shares"] + f["individual_net_shares"]
    other = -groups
    assert (other.abs() <= 0.03 * f["volume"] + 1).all()
    for column in ("foreign_net_shares", "institution_net_shares", "individual_net_shares"):
        assert (f[column].abs() <= f["volume"]).all(), column
    traded = f[f["volume"] > 0]
    assert (traded["foreign_net_shares"] != 0).mean() > 0.5
    assert (traded["individual_net_shares"] != 0).mean() > 0.5


def test_flow_krw_is_shares_times_the_bar_price(big_year: pd.DataFrame) -> None:
    f = big_year[big_year["volume"] > 0]
    price = f["traded_value"] / f["volume"]
    for group in ("foreign", "institution", "individual"):
        shares = f[f"{group}_net_shares"]
        krw = f[f"{group}_net_krw"]
        error = (krw - shares * price).abs()
        assert (error <= 1.0 + 1e-9 * krw.abs()).all(), group
        assert (np.sign(krw) == np.sign(shares)).all(), group


def test_smart_money_follows_the_day_and_individuals_oppose_it(big_year: pd.DataFrame) -> None:
    f = big_year[big_year["volume"] > 0]
    r = f["log_return"]
    assert (f["foreign_net_shares"] / f["volume"]).corr(r) > 0.2
    assert (f["institution_net_shares"] / f["volume"]).corr(r) > 0.1
    assert (f["individual_net_shares"] / f["volume"]).corr(r) < -0.2


def test_foreign_flows_persist(big_year: pd.DataFrame) -> None:
    f = big_year[big_year["volume"] > 0].copy()
    f["frac"] = f["foreign_net_shares"] / f["volume"]
    f["prev_frac"] = f.groupby("ticker")["frac"].shift()
    assert f["frac"].corr(f["prev_frac"]) > 0.1


# -- realism (loose; these catch unit or scale mistakes) ----------------------------------------


def test_volatility_prices_and_volume_are_plausible(big_year: pd.DataFrame) -> None:
    f = big_year
    vol = f.groupby("ticker")["log_return"].std()
    assert 0.01 < vol.median() < 0.05
    assert vol.quantile(0.05) > 0.005
    assert f["close"].median() > 1_000
    assert f["close"].quantile(0.99) < 5_000_000
    median_value = f["traded_value"].median()
    assert 1e8 < median_value < 1e11  # 1억 .. 1,000억 KRW a day
    assert (f["low"] < np.minimum(f["open"], f["close"])).mean() > 0.5  # lower wicks
    assert (f["high"] > np.maximum(f["open"], f["close"])).mean() > 0.5  # upper wicks
    assert (f["open"] != f["prev_close"]).mean() > 0.5  # opening gaps
    big_move = f["log_return"].abs() > 0.1
    assert f.loc[big_move, "volume"].median() > 2 * f["volume"].median()


# -- filters ------------------------------------------------------------------------------------


def test_market_filter(small: SimulatedMarket) -> None:
    start, end = date(2023, 2, 1), date(2023, 2, 28)
    for market in (Market.KOSPI, Market.KOSDAQ):
        frame = small.daily_candles(start, end, market=market)
        assert set(frame["market"]) == {market.value}
        n = len(small.list_instruments(start, market))
        assert frame["ticker"].nunique() == n
    assert small.daily_candles(start, end, market=Market.UPBIT).empty
    assert small.investor_flows(start, end, market=Market.UPBIT).empty


def test_ticker_filter(small: SimulatedMarket) -> None:
    tickers = [i.ticker for i in small.list_instruments(date(2023, 2, 1))]
    picked = [tickers[30], tickers[2], tickers[30]]
    frame = small.daily_candles(date(2023, 2, 1), date(2023, 2, 3), tickers=picked)
    assert list(frame["ticker"]) == [tickers[2]] * 3 + [tickers[30]] * 3
    assert small.daily_candles(date(2023, 2, 1), date(2023, 2, 3), tickers=[]).empty


@pytest.mark.parametrize("method", ["daily_candles", "investor_flows"])
def test_unknown_tickers_raise_not_found_naming_them(small: SimulatedMarket, method: str) -> None:
    known = small.list_instruments(date(2023, 2, 1))[0].ticker
    with pytest.raises(NotFound) as info:
        getattr(small, method)(
            date(2023, 2, 1), date(2023, 2, 3), tickers=[known, "999999", "005930"]
        )
    message = str(info.value)
    assert "999999" in message
    assert "005930" in message
    assert known not in message


def test_ticker_in_another_market_is_not_found(small: SimulatedMarket) -> None:
    kosdaq = small.list_instruments(date(2023, 2, 1), Market.KOSDAQ)[0].ticker
    with pytest.raises(NotFound, match=kosdaq):
        small.daily_candles(
            date(2023, 2, 1), date(2023, 2, 3), market=Market.KOSPI, tickers=[kosdaq]
        )


def test_a_single_string_is_not_a_ticker_list(small: SimulatedMarket) -> None:
    with pytest.raises(ValidationError, match="tickers"):
        small.daily_candles(date(2023, 2, 1), date(2023, 2, 3), tickers="000020")
