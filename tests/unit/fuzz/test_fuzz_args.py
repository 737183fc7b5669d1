"""Fuzzing task-argument parsing: :mod:`quantbeat.services.args`, the other parsers tasks
call before any work (strategy, dataset, top, timeout, grace, nightly days), the command
line's time options (:mod:`quantbeat.infra.timespec`) and indicator requests
(:class:`quant.indicators.IndicatorRequest`, the batch of ``quantbeat.indicators.compute_batch``).

The contract: each parser returns a value of its documented type or raises
:class:`quant.errors.ValidationError` naming the argument (``field``) — never another
exception type (the worker would dead-letter it as ``unexpected_error`` instead of
``validation_error``), never a hang.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from quant.errors import ValidationError
from quant.indicators import INDICATORS, IndicatorRequest
from quant.indicators.registry import canonical_params
from quant.market.types import INTRADAY_INTERVALS, Market
from quantbeat.infra import timespec
from quantbeat.services import args
from quantbeat.services.ai import analysis_strategy, analysis_top
from quantbeat.services.collect import parse_dataset
from quantbeat.services.health import check_timeout
from quantbeat.services.reaper import parse_grace
from quantbeat.services.strategies import scan_strategy
from tests.unit.fuzz.common import fuzz

# --------------------------------------------------------------------------- values

#: Text that looks like what the parsers expect, nearly (edge dates, zones, offsets).
_NEAR_MISS = st.sampled_from(
    [
        "2026-11-20",
        " 2026-11-20 ",
        "2026-11-20T00:00:00+00:00",
        "0001-01-01",
        "0001-01-01T00:00:00+23:59",  # before year 1 in UTC
        "9999-12-31T23:59:59-23:59",  # after year 9999 in UTC
        "9999-12-31T23:59:59.999999+00:00",
        "0001-01-01T00:00:00-00:01",
        "2026-02-30",
        "20261120",
        "2026-W47-5",
        "2026-11-20T25:00",
        "2026-11-20\x00",
        "٢٠٢٦-١١-٢٠",
        "KOSPI",
        "kosdaq",
        " KOSPI ",
        "코스피",
        "UPBIT",
        "ß",
        "60m",
        "1d",
        "candles",
        "vcp",
        "closing-bet",
        "Closing_Bet",
        "90s",
        "1h",
        "0s",
        "1" * 5000 + "s",  # more digits than int() reads
        "9" * 30 + "d",
        "١٥m",  # Arabic-Indic digits match \d
        "inf",
        "nan",
        "",
        " ",
        "\x00",
        "\ud800",
        "x" * 100_000,
    ]
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**400), 2**63, 1e308]),
    st.text(max_size=30),
    _NEAR_MISS,
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(timezones=st.none() | st.timezones()),
)
#: JSON-like values (and a few Python ones a direct caller could pass), nested.
values = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=8,
)


def _contract(parse: Callable[[], Any], field: str | None) -> Any:
    """Run ``parse``: its result, or ``None`` after a ValidationError that names ``field``
    (when given). Any other exception fails the test."""
    try:
        return parse()
    except ValidationError as exc:
        error = exc
    if field is not None:
        assert error.field is not None, error
        assert error.field.startswith(field), (error.field, field)
    assert str(error)
    return None


# --------------------------------------------------------------------------- task arguments


@fuzz(max_examples=300)
@given(value=values)
@example(value="0001-01-01T00:00:00+23:59")
@example(value="9999-12-31T23:59:59-23:59")
@example(value=10**400)
def test_argument_parsers_accept_or_raise_validation_error(value: object) -> None:
    day = _contract(lambda: args.parse_date(value, field="start"), "start")
    assert day is None or (isinstance(day, dt.date) and not isinstance(day, dt.datetime))
    if value is not None:
        day = _contract(lambda: args.parse_trade_date(value), "trade_date")
        assert day is None or isinstance(day, dt.date)
    moment = _contract(lambda: args.parse_moment(value, field="end"), "end")
    assert moment is None or (
        isinstance(moment, dt.datetime) and moment.utcoffset() == dt.timedelta(0)
    )
    markets = _contract(lambda: args.parse_krx_markets(value), "market")
    assert markets is None or all(isinstance(m, Market) for m in markets)
    interval = _contract(lambda: args.parse_interval(value), "interval")
    assert interval is None or interval in INTRADAY_INTERVALS
    tickers = _contract(lambda: args.parse_tickers(value), "tickers")
    assert tickers is None or all(isinstance(t, str) and t for t in tickers)
    _contract(lambda: parse_dataset(value), "dataset")
    _contract(lambda: scan_strategy(value), "strategy")
    _contract(lambda: analysis_strategy(value), "strategy")
    if value is not None:
        top = _contract(lambda: analysis_top(value), "top")
        assert top is None or 0 <= top <= 200
        grace = _contract(lambda: parse_grace(value), "grace")
        assert grace is None or (math.isfinite(grace) and grace >= 0)
    timeout = _contract(lambda: check_timeout(value), "timeout")
    assert timeout is None or 0 < timeout <= 120


@fuzz(max_examples=300)
@given(value=st.one_of(st.text(max_size=40), _NEAR_MISS))
@example(value="1" * 5000 + "s")
@example(value="0001-01-01T00:00:00+23:59")
def test_time_options_accept_or_raise_validation_error(value: str) -> None:
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    span = _contract(lambda: timespec.parse_duration(value, option="--older-than"), "--older-than")
    assert span is None or span > dt.timedelta(0)
    since = _contract(lambda: timespec.parse_since(value, option="--since", now=now), "--since")
    assert since is None or since.utcoffset() == dt.timedelta(0)


# --------------------------------------------------------------------------- indicator requests

_indicator = st.one_of(st.sampled_from(sorted(INDICATORS)), values)
_param_value = st.one_of(
    st.integers(min_value=-3, max_value=300),
    st.floats(min_value=-5, max_value=500),
    st.sampled_from(["close", "open", "volume", "hlc3", "bogus", 10**400, 1e308, math.nan]),
    values,
)


@st.composite
def requests(draw: st.DrawFn) -> object:
    """An indicator request's JSON form, mostly well-shaped, with bad fields mixed in."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    name = draw(_indicator)
    known = INDICATORS[name].params if isinstance(name, str) and name in INDICATORS else ()
    params = draw(
        st.one_of(
            st.dictionaries(
                st.one_of(
                    st.sampled_from([p.name for p in known] or ["period"]), st.text(max_size=6)
                ),
                _param_value,
                max_size=4,
            ),
            values,
        )
    )
    request: dict[str, object] = {
        "instrument": draw(
            st.one_of(
                st.sampled_from(["KOSPI:005930", "005930", "UPBIT:KRW-BTC", "x:1", ":", "KOSPI:"]),
                values,
            )
        ),
        "indicator": name,
        "params": params,
    }
    for key, strategy in (
        ("interval", st.one_of(st.sampled_from(["1d", "60m", "1m", "2h"]), values)),
        ("start", st.one_of(_NEAR_MISS, values)),
        ("end", st.one_of(_NEAR_MISS, values)),
        ("limit", st.one_of(st.integers(-2, 6000), values)),
        ("bogus", values),
    ):
        if draw(st.integers(0, 3)) == 0:
            request[key] = draw(strategy)
    return request


@fuzz(max_examples=500)
@given(request=requests())
@example(
    request={
        "instrument": "KOSPI:005930",
        "indicator": "sma",
        "interval": "60m",
        "start": "0001-01-01T00:00:00+23:59",
    }
)
@example(
    request={"instrument": "KOSPI:005930", "indicator": "bbands", "params": {"stddev": 10**400}}
)
def test_indicator_requests_parse_or_raise_validation_error(request: object) -> None:
    parsed = _contract(lambda: IndicatorRequest.parse(request, where="requests[0]"), "requests[0]")
    if parsed is None:
        return
    assert isinstance(parsed, IndicatorRequest)
    assert 1 <= parsed.limit <= 5_000
    # A parsed request survives its own JSON form and has a stable cache key.
    again = IndicatorRequest.parse(parsed.to_json())
    assert again.dedup_key == parsed.dedup_key


@fuzz(max_examples=200)
@given(name=st.sampled_from(sorted(INDICATORS)), params=values)
def test_indicator_parameters_validate_or_raise_validation_error(name: str, params: Any) -> None:
    checked = _contract(lambda: canonical_params(name, params, where="params"), "params")
    if checked is not None:
        assert set(checked) == {p.name for p in INDICATORS[name].params}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        # Regressions found by the tests above (each raised something other than ValidationError).
        (lambda: args.parse_moment("0001-01-01T00:00:00+23:59", field="start"), "start"),
        (lambda: args.parse_moment("9999-12-31T23:59:59-23:59", field="end"), "end"),
        (lambda: timespec.parse_duration("1" * 5000 + "s", option="--older-than"), "--older-than"),
        (lambda: timespec.parse_since("1" * 5000 + "s", option="--since"), "--since"),
        (lambda: timespec.parse_since("0001-01-01T00:00:00+23:59", option="--since"), "--since"),
        (
            lambda: IndicatorRequest.parse(
                {
                    "instrument": "KOSPI:005930",
                    "indicator": "sma",
                    "interval": "60m",
                    "end": "0001-01-01T00:00:00+23:59",
                }
            ),
            "request.end",
        ),
        (
            lambda: IndicatorRequest.parse(
                {"instrument": "KOSPI:005930", "indicator": "bbands", "params": {"stddev": 10**400}}
            ),
            "request.params.stddev",
        ),
        (lambda: parse_grace(10**400), "grace"),
        (lambda: parse_grace(10**5000), "grace"),
    ],
)
def test_regressions_raise_validation_error_naming_the_argument(
    call: Callable[[], object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        call()
    assert caught.value.field == field
