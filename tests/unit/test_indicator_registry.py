"""The indicator registry (parameters, canonical keys, compute, describe) and the validated
indicator request (IndicatorRequest.parse / create)."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.indicators import custom, standard
from quant.indicators.candles import COLUMNS, Candles
from quant.indicators.registry import (
    INDICATORS,
    canonical_params,
    compute,
    describe,
    params_key,
    spec,
)
from quant.indicators.request import DEFAULT_LIMIT, INTERVALS, MAX_BARS, IndicatorRequest

ALL = [
    "sma",
    "ema",
    "rsi",
    "macd",
    "bbands",
    "atr",
    "obv",
    "high_low",
    "rs_raw",
    "volume_profile",
]


def _candles(n: int = 320, seed: int = 4) -> Candles:
    rng = np.random.default_rng(seed)
    close = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    high = close * (1 + np.abs(rng.normal(0, 0.01, n)))
    low = close * (1 - np.abs(rng.normal(0, 0.01, n)))
    volume = rng.integers(0, 1_000_000, n).astype(float)
    close[[40, 41, 200]] = math.nan  # missing bars
    return Candles.from_columns(
        np.datetime64("2024-01-02", "D") + np.arange(n),
        unit="D",
        open=close,
        high=high,
        low=low,
        close=close,
        volume=volume,
        traded_value=close * volume,
    )


# ---------------------------------------------------------------------------------------------
# canonical_params / params_key
# ---------------------------------------------------------------------------------------------


def test_the_registry_holds_every_indicator():
    assert list(INDICATORS) == ALL
    for name in ALL:
        assert spec(name).name == name


@pytest.mark.parametrize("bad", ["RSI", "nope", "", None, 3, ["rsi"]])
def test_an_unknown_indicator_is_rejected_listing_the_known_ones(bad):
    with pytest.raises(ValidationError) as caught:
        spec(bad)
    assert caught.value.field == "indicator"
    for name in ALL:
        assert name in str(caught.value)
    with pytest.raises(ValidationError):
        canonical_params(bad, {})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sma", {"period": 20, "source": "close"}),
        ("ema", {"period": 20, "source": "close"}),
        ("rsi", {"period": 14}),
        ("macd", {"fast": 12, "slow": 26, "signal": 9}),
        ("bbands", {"period": 20, "stddev": 2.0}),
        ("atr", {"period": 14}),
        ("obv", {}),
        ("high_low", {"window": 252, "min_periods": 0}),
        ("rs_raw", {}),
        ("volume_profile", {"window": 60, "bins": 24, "value_area": 0.7}),
    ],
)
def test_defaults_are_filled_in(name, expected):
    assert canonical_params(name, None) == expected
    got = canonical_params(name, {})
    assert got == expected
    assert list(got) == list(expected)  # the spec's order
    for key, value in got.items():
        assert type(value) is type(expected[key])


def test_given_values_replace_defaults_and_come_back_in_spec_order():
    got = canonical_params("macd", {"signal": 5, "slow": 35, "fast": 5})
    assert got == {"fast": 5, "slow": 35, "signal": 5}
    assert list(got) == ["fast", "slow", "signal"]
    assert canonical_params("sma", {"source": "volume", "period": 5}) == {
        "period": 5,
        "source": "volume",
    }


def test_integral_floats_become_ints_and_ints_become_floats():
    got = canonical_params("rsi", {"period": 14.0})
    assert got == {"period": 14}
    assert type(got["period"]) is int
    assert type(canonical_params("rsi", {"period": np.int64(9)})["period"]) is int
    got = canonical_params("bbands", {"stddev": 3})
    assert got["stddev"] == 3.0
    assert type(got["stddev"]) is float


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("rsi", {"period": 14.5}, "params.period"),
        ("rsi", {"period": "14"}, "params.period"),
        ("rsi", {"period": True}, "params.period"),
        ("rsi", {"period": None}, "params.period"),
        ("rsi", {"period": math.nan}, "params.period"),
        ("rsi", {"period": 1}, "params.period"),
        ("sma", {"period": 0}, "params.period"),
        ("sma", {"period": 5_001}, "params.period"),
        ("sma", {"source": "adj_close"}, "params.source"),
        ("sma", {"source": 3}, "params.source"),
        ("ema", {"period": -1}, "params.period"),
        ("macd", {"signal": 0}, "params.signal"),
        ("macd", {"fast": 1}, "params.fast"),
        ("bbands", {"period": 1}, "params.period"),
        ("bbands", {"stddev": 0}, "params.stddev"),
        ("bbands", {"stddev": 10.01}, "params.stddev"),
        ("bbands", {"stddev": "2"}, "params.stddev"),
        ("bbands", {"stddev": math.inf}, "params.stddev"),
        ("atr", {"period": 0}, "params.period"),
        ("high_low", {"window": 0}, "params.window"),
        ("high_low", {"min_periods": -1}, "params.min_periods"),
        ("volume_profile", {"bins": 1}, "params.bins"),
        ("volume_profile", {"bins": 1_001}, "params.bins"),
        ("volume_profile", {"value_area": 0.0}, "params.value_area"),
        ("volume_profile", {"value_area": 1.01}, "params.value_area"),
        ("volume_profile", {"window": 1}, "params.window"),
    ],
)
def test_a_bad_value_is_rejected_naming_the_parameter(name, params, field):
    with pytest.raises(ValidationError) as caught:
        canonical_params(name, params)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sma", {"period": 1}),
        ("sma", {"period": 5_000}),
        ("rsi", {"period": 2}),
        ("bbands", {"stddev": 10.0}),
        ("bbands", {"stddev": 0.001}),
        ("volume_profile", {"value_area": 1.0, "bins": 1_000}),
        ("high_low", {"window": 5, "min_periods": 5}),
        ("macd", {"fast": 2, "slow": 3, "signal": 1}),
    ],
)
def test_values_at_the_bounds_are_accepted(name, params):
    got = canonical_params(name, params)
    for key, value in params.items():
        assert got[key] == value


@pytest.mark.parametrize(("name", "known"), [("rsi", "period"), ("obv", "none")])
def test_an_unknown_parameter_is_rejected_listing_the_known_ones(name, known):
    with pytest.raises(ValidationError) as caught:
        canonical_params(name, {"periode": 14})
    assert caught.value.field == "params.periode"
    assert caught.value.value == 14
    assert f"(parameters: {known})" in str(caught.value)
    with pytest.raises(ValidationError, match="period, source") as caught:
        canonical_params("sma", {"window": 5, "period": 5})
    assert caught.value.field == "params.window"


@pytest.mark.parametrize("bad", [[("period", 14)], "period=14", 14])
def test_params_that_are_not_an_object_are_rejected(bad):
    with pytest.raises(ValidationError) as caught:
        canonical_params("rsi", bad)
    assert caught.value.field == "params"


@pytest.mark.parametrize(("fast", "slow"), [(26, 26), (30, 26)])
def test_macd_fast_must_be_below_slow(fast, slow):
    with pytest.raises(ValidationError, match="below") as caught:
        canonical_params("macd", {"fast": fast, "slow": slow}, where="requests[0].params")
    assert caught.value.field == "requests[0].params.fast"
    # Also when only one side is given and the default is on the other.
    with pytest.raises(ValidationError):
        canonical_params("macd", {"fast": 26})
    with pytest.raises(ValidationError):
        canonical_params("macd", {"slow": 12})


def test_high_low_min_periods_must_not_exceed_window():
    with pytest.raises(ValidationError, match="must not exceed") as caught:
        canonical_params("high_low", {"window": 20, "min_periods": 21})
    assert caught.value.field == "params.min_periods"
    with pytest.raises(ValidationError):
        canonical_params("high_low", {"min_periods": 253})  # default window 252
    assert canonical_params("high_low", {"min_periods": 252})["min_periods"] == 252


def test_the_where_prefix_names_the_field():
    with pytest.raises(ValidationError) as caught:
        canonical_params("rsi", {"period": 0}, where="requests[3].params")
    assert caught.value.field == "requests[3].params.period"
    with pytest.raises(ValidationError) as caught:
        canonical_params("rsi", {"x": 0}, where="requests[3].params")
    assert caught.value.field == "requests[3].params.x"


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("bbands", {"stddev": 2, "period": 20}, {}),
        ("bbands", {"period": 20, "stddev": 2.0}, None),
        ("bbands", {"stddev": 2.0}, {"period": 20.0}),
        ("macd", {"signal": 9, "slow": 26, "fast": 12}, {"fast": 12}),
        ("rsi", {"period": 14.0}, {"period": np.int64(14)}),
        ("sma", {"source": "close", "period": 20}, {}),
        ("volume_profile", {"value_area": 0.7, "bins": 24, "window": 60}, {}),
    ],
)
def test_params_key_ignores_order_and_spelled_out_defaults(name, a, b):
    assert params_key(canonical_params(name, a)) == params_key(canonical_params(name, b))


def test_params_key_format_and_that_it_tells_values_apart():
    assert params_key(canonical_params("bbands", {})) == "period=20,stddev=2.0"
    assert params_key(canonical_params("sma", {"source": "volume"})) == (
        "period=20,source='volume'"
    )
    assert params_key(canonical_params("obv", {})) == ""
    variants: list[dict[str, object]] = [{}, {"period": 21}, {"stddev": 2.5}, {"stddev": 1}]
    keys = {params_key(canonical_params("bbands", p)) for p in variants}
    assert len(keys) == len(variants)


# ---------------------------------------------------------------------------------------------
# compute / describe
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_compute_returns_every_output_with_the_candles_length(name):
    candles = _candles()
    out = compute(name, candles)
    assert list(out) == list(INDICATORS[name].outputs)
    for values in out.values():
        assert isinstance(values, np.ndarray)
        assert values.dtype == np.float64
        assert values.shape == (len(candles),)
        assert not np.isnan(values).all()  # 320 bars is past every default warm-up


@pytest.mark.parametrize("name", ALL)
def test_compute_on_no_candles_gives_empty_outputs(name):
    out = compute(name, Candles.empty())
    assert list(out) == list(INDICATORS[name].outputs)
    for values in out.values():
        assert values.shape == (0,)


def _same(a: object, b: object) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_compute_passes_the_parameters_and_columns_through():
    c = _candles()
    _same(compute("sma", c, {"period": 7})["sma"], standard.sma(c.close, 7))
    _same(compute("ema", c, {"period": 7, "source": "volume"})["ema"], standard.ema(c.volume, 7))
    _same(compute("rsi", c, {"period": 9})["rsi"], standard.rsi(c.close, 9))
    got = compute("macd", c, {"fast": 5, "slow": 35, "signal": 4})
    want = standard.macd(c.close, 5, 35, 4)
    _same(got["macd"], want.macd)
    _same(got["signal"], want.signal)
    _same(got["hist"], want.hist)
    got = compute("bbands", c, {"period": 10, "stddev": 1.5})
    want_b = standard.bbands(c.close, 10, 1.5)
    _same(got["upper"], want_b.upper)
    _same(got["middle"], want_b.middle)
    _same(got["lower"], want_b.lower)
    _same(compute("atr", c, {"period": 5})["atr"], standard.atr(c.high, c.low, c.close, 5))
    _same(compute("obv", c)["obv"], standard.obv(c.close, c.volume))
    got = compute("high_low", c, {"window": 30, "min_periods": 10})
    hi, lo = custom.rolling_high_low(c.high, c.low, window=30, min_periods=10)
    _same(got["high"], hi)
    _same(got["low"], lo)
    # min_periods 0 means "the whole window".
    got = compute("high_low", c, {"window": 30})
    hi, lo = custom.rolling_high_low(c.high, c.low, window=30)
    _same(got["high"], hi)
    assert np.isnan(got["high"][:29]).all()
    _same(compute("rs_raw", c)["rs_raw"], custom.rs_raw(c.close))
    got = compute("volume_profile", c, {"window": 20, "bins": 10, "value_area": 0.6})
    poc, vah, val = custom.rolling_volume_profile(
        c.high, c.low, c.volume, window=20, bins=10, value_area=0.6
    )
    _same(got["poc"], poc)
    _same(got["vah"], vah)
    _same(got["val"], val)


def test_compute_validates_parameters():
    with pytest.raises(ValidationError) as caught:
        compute("rsi", _candles(), {"period": 0})
    assert caught.value.field == "params.period"
    with pytest.raises(ValidationError) as caught:
        compute("nope", _candles())
    assert caught.value.field == "indicator"


def test_describe_lists_every_indicator_with_its_parameters():
    described = describe()
    assert [d["name"] for d in described] == ALL
    json.dumps(described)  # plain JSON
    for entry in described:
        s = INDICATORS[entry["name"]]
        assert entry["outputs"] == list(s.outputs)
        assert entry["description"]
        assert [p["name"] for p in entry["params"]] == [p.name for p in s.params]
        defaults = {p["name"]: p["default"] for p in entry["params"]}
        assert canonical_params(entry["name"], defaults) == canonical_params(entry["name"], {})
        for p in entry["params"]:
            assert p["type"] in ("int", "float", "str")
            if p["type"] == "str":
                assert p["choices"] == list(COLUMNS)
                assert "minimum" not in p
            else:
                assert p["minimum"] <= p["default"] <= p["maximum"]
                assert "choices" not in p
    rsi_entry = next(d for d in described if d["name"] == "rsi")
    assert rsi_entry["params"] == [
        {"name": "period", "type": "int", "default": 14, "minimum": 2, "maximum": 5_000}
    ]


# ---------------------------------------------------------------------------------------------
# IndicatorRequest
# ---------------------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "instrument": "KOSPI:005930",
    "indicator": "rsi",
    "params": {"period": 14},
    "interval": "1d",
    "start": "2026-01-05",
    "end": "2026-11-20",
    "limit": 250,
}


def test_parse_a_good_request():
    r = IndicatorRequest.parse(json.loads(json.dumps(GOOD)))
    assert r.instrument == "KOSPI:005930"
    assert r.market == "KOSPI"
    assert r.ticker == "005930"
    assert r.indicator == "rsi"
    assert r.params == {"period": 14}
    assert r.interval == "1d"
    assert r.start == dt.date(2026, 1, 5)
    assert r.end == dt.date(2026, 11, 20)
    assert r.limit == 250
    assert r.range_key == "2026-01-05..2026-11-20#250"
    assert r.params_key == "period=14"
    assert r.dedup_key == ("KOSPI:005930", "1d", "2026-01-05..2026-11-20#250", "rsi", "period=14")
    assert IndicatorRequest.parse(r.to_json()) == r


def test_parse_defaults():
    r = IndicatorRequest.parse({"instrument": "005930", "indicator": "bbands"})
    assert r.instrument == "005930"
    assert r.market is None
    assert r.params == {"period": 20, "stddev": 2.0}
    assert r.interval == "1d"
    assert (r.start, r.end, r.limit) == (None, None, DEFAULT_LIMIT)
    assert r.range_key == f"*..*#{DEFAULT_LIMIT}"
    assert IndicatorRequest.create("005930", "bbands") == r


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("kospi:005930", "KOSPI:005930"),
        ("  Kosdaq:091990 ", "KOSDAQ:091990"),
        ("upbit:krw-btc", "UPBIT:KRW-BTC"),
        ("us:brk.b", "US:BRK.B"),
        ("aapl", "AAPL"),
    ],
)
def test_the_instrument_is_canonicalized(given, canonical):
    r = IndicatorRequest.create(given, "rsi")
    assert r.instrument == canonical


def _bad(field: str, value: object) -> dict[str, Any]:
    return {**GOOD, field: value}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_bad("instrument", ""), "request.instrument"),
        (_bad("instrument", "   "), "request.instrument"),
        (_bad("instrument", None), "request.instrument"),
        (_bad("instrument", 5930), "request.instrument"),
        (_bad("instrument", "KOSPI:005 930"), "request.instrument"),
        (_bad("instrument", "KOSPI:"), "request.instrument"),
        (_bad("instrument", ":005930"), "request.instrument"),
        (_bad("instrument", "NYSE:AAPL"), "request.instrument"),
        (_bad("instrument", "KOSPI:005930:X"), "request.instrument"),
        (_bad("instrument", "KOSPI:" + "9" * 33), "request.instrument"),
        (_bad("indicator", "supertrend"), "request.indicator"),
        (_bad("indicator", None), "request.indicator"),
        ({k: v for k, v in GOOD.items() if k != "indicator"}, "request.indicator"),
        ({k: v for k, v in GOOD.items() if k != "instrument"}, "request.instrument"),
        (_bad("params", {"period": 0}), "request.params.period"),
        (_bad("params", {"span": 3}), "request.params.span"),
        (_bad("params", [14]), "request.params"),
        (_bad("interval", "2h"), "request.interval"),
        (_bad("interval", None), "request.interval"),
        (_bad("interval", "1D"), "request.interval"),
        ({**GOOD, "start": "2026-11-21", "end": "2026-11-20"}, "request.start"),
        (_bad("start", "2026-13-05"), "request.start"),
        (_bad("start", "yesterday"), "request.start"),
        (_bad("start", 20260105), "request.start"),
        (_bad("end", "2026-11-20T15:30:00"), "request.end"),
        (_bad("end", dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)), "request.end"),
        (_bad("limit", 0), "request.limit"),
        (_bad("limit", MAX_BARS + 1), "request.limit"),
        (_bad("limit", -5), "request.limit"),
        (_bad("limit", 10.5), "request.limit"),
        (_bad("limit", "100"), "request.limit"),
        (_bad("limit", None), "request.limit"),
        (_bad("limits", 100), "request.limits"),
        (_bad("ticker", "005930"), "request.ticker"),
    ],
)
def test_every_bad_field_is_named(data, field):
    with pytest.raises(ValidationError) as caught:
        IndicatorRequest.parse(data)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**GOOD, "interval": "5m", "start": None, "end": "2026-11-20T15:30:00"}, "request.end"),
        ({**GOOD, "interval": "5m", "start": None, "end": "2026-11-20"}, "request.end"),
        (
            {**GOOD, "interval": "5m", "start": dt.date(2026, 11, 20), "end": None},
            "request.start",
        ),
        (
            {**GOOD, "interval": "60m", "start": None, "end": dt.datetime(2026, 11, 20, 15)},
            "request.end",
        ),
        (
            {
                **GOOD,
                "interval": "1m",
                "start": "2026-11-20T10:00:00+09:00",
                "end": "2026-11-20T00:59:00+00:00",
            },
            "request.start",
        ),
    ],
)
def test_intraday_ranges_need_zone_aware_date_times(data, field):
    with pytest.raises(ValidationError) as caught:
        IndicatorRequest.parse(data)
    assert caught.value.field == field


def test_intraday_ranges_are_stored_in_utc():
    seoul = IndicatorRequest.create(
        "KOSPI:005930",
        "rsi",
        interval="5m",
        start="2026-11-20T09:00:00+09:00",
        end="2026-11-20T15:30+09:00",
        limit=100,
    )
    utc = IndicatorRequest.create(
        "KOSPI:005930",
        "rsi",
        interval="5m",
        start=dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC),
        end="2026-11-20T06:30:00Z",
        limit=100,
    )
    assert seoul.start == dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
    assert seoul.range_key == "2026-11-20T00:00:00+00:00..2026-11-20T06:30:00+00:00#100"
    assert seoul.dedup_key == utc.dedup_key
    assert IndicatorRequest.parse(seoul.to_json()) == seoul


def test_every_interval_is_accepted():
    assert INTERVALS[0] == "1d"
    for interval in INTERVALS:
        r = IndicatorRequest.create("UPBIT:KRW-BTC", "obv", interval=interval)
        assert r.interval == interval


def test_limits_at_the_bounds_and_integral_floats():
    assert IndicatorRequest.create("005930", "rsi", limit=1).limit == 1
    assert IndicatorRequest.create("005930", "rsi", limit=MAX_BARS).limit == MAX_BARS
    r = IndicatorRequest.parse({**GOOD, "limit": 300.0})
    assert r.limit == 300
    assert type(r.limit) is int


def test_start_equal_to_end_is_a_one_day_range():
    r = IndicatorRequest.parse({**GOOD, "start": "2026-11-20", "end": dt.date(2026, 11, 20)})
    assert r.range_key == "2026-11-20..2026-11-20#250"


def test_the_where_prefix_is_honoured():
    with pytest.raises(ValidationError) as caught:
        IndicatorRequest.parse(_bad("params", {"period": 1}), where="requests[3]")
    assert caught.value.field == "requests[3].params.period"
    assert "requests[3].params.period" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        IndicatorRequest.parse(_bad("limit", 0), where="requests[3]")
    assert caught.value.field == "requests[3].limit"
    with pytest.raises(ValidationError) as caught:
        IndicatorRequest.parse(_bad("indicator", "nope"), where="requests[3]")
    assert caught.value.field == "requests[3].indicator"
    with pytest.raises(ValidationError) as caught:
        IndicatorRequest.parse(["not", "an", "object"], where="requests[3]")
    assert caught.value.field == "requests[3]"


def test_an_unknown_top_level_field_is_rejected_listing_the_fields():
    with pytest.raises(ValidationError) as caught:
        IndicatorRequest.parse({**GOOD, "period": 14})
    assert caught.value.field == "request.period"
    for name in ("instrument", "indicator", "params", "interval", "start", "end", "limit"):
        assert name in str(caught.value)


def test_dedup_key_ignores_param_order_defaults_and_spelling():
    a = IndicatorRequest.parse(
        {**GOOD, "indicator": "bbands", "params": {"stddev": 2, "period": 20}}
    )
    b = IndicatorRequest.parse({**GOOD, "indicator": "bbands", "params": {}})
    c = IndicatorRequest.parse(
        {
            **GOOD,
            "instrument": "kospi:005930",
            "indicator": "bbands",
            "params": None,
            "start": dt.date(2026, 1, 5),
            "limit": 250.0,
        }
    )
    assert a.dedup_key == b.dedup_key == c.dedup_key
    assert a == b == c
    # ...but every part that changes the values changes the key.
    variants = [
        {**GOOD, "indicator": "bbands", "params": {"stddev": 2.5}},
        {**GOOD, "indicator": "sma"},
        {**GOOD, "indicator": "bbands", "instrument": "KOSDAQ:005930"},
        {**GOOD, "indicator": "bbands", "instrument": "005930"},
        {**GOOD, "indicator": "bbands", "end": "2026-11-19"},
        {**GOOD, "indicator": "bbands", "start": None},
        {**GOOD, "indicator": "bbands", "limit": 251},
        {**GOOD, "indicator": "bbands", "interval": "60m", "start": None, "end": None},
    ]
    keys = {IndicatorRequest.parse(v).dedup_key for v in variants}
    assert len(keys) == len(variants)
    assert a.dedup_key not in keys
