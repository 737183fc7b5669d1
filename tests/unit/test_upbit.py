"""UpbitSource against a local HTTP server that speaks Upbit's REST format (no internet).

The JSON under ``tests/fixtures/upbit`` is written by hand in the documented response format
(docs.upbit.com candle and market references); its numbers are made up, not recorded prices.
Longer histories for the paging tests are generated below in the same format.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest

from quant.errors import (
    NotFound,
    PermanentError,
    RateLimited,
    ServiceUnavailable,
    TransientError,
    ValidationError,
)
from quant.market.base import IntradaySource, MarketDataSource
from quant.market.types import DAILY_CANDLE_COLUMNS, INTRADAY_CANDLE_COLUMNS, Market
from quant.market.upbit import (
    EXHAUSTED_PAUSE,
    UpbitBanned,
    UpbitProtocolError,
    UpbitSource,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "upbit"
KST = timezone(timedelta(hours=9))
FLOAT_COLUMNS = ("open", "high", "low", "close", "volume", "traded_value")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- the local Upbit ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=list)  # bytes/str sent as is, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names


class FakeUpbit:
    """Scripted replies (a queue, then an optional reply repeated forever, or a responder
    function); records every request it receives."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.requests: list[Seen] = []
        self._queue: deque[Reply] = deque()
        self._forever: Reply | None = None
        self._responder: Callable[[Seen], Reply] | None = None
        self._lock = threading.Lock()

    def script(self, *replies: Reply, then: Reply | None = None) -> None:
        self._queue.extend(replies)
        self._forever = then

    def respond_with(self, responder: Callable[[Seen], Reply]) -> None:
        self._responder = responder

    def handle(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            if self._queue:
                return self._queue.popleft()
            if self._responder is not None:
                return self._responder(seen)
            if self._forever is not None:
                return self._forever
        return Reply(599, {"error": {"name": "test", "message": "unscripted request"}})


@pytest.fixture
def upbit() -> Iterator[FakeUpbit]:
    holder: dict[str, FakeUpbit] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = holder["fake"].handle(Seen(url.path, query, headers))
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.payload()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    holder["fake"] = FakeUpbit(f"http://{host!s}:{port}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield holder["fake"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Recorder:
    """Stands in for time.sleep and for an acquire hook: records, never sleeps."""

    def __init__(self, fake: FakeUpbit | None = None) -> None:
        self.pauses: list[float] = []
        self.requests_seen_at_pause: list[int] = []
        self.acquired = 0
        self._fake = fake

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if self._fake is not None:
            self.requests_seen_at_pause.append(len(self._fake.requests))

    def acquire(self) -> None:
        self.acquired += 1


@pytest.fixture
def rec(upbit: FakeUpbit) -> Recorder:
    return Recorder(upbit)


@pytest.fixture
def source(upbit: FakeUpbit, rec: Recorder) -> Iterator[UpbitSource]:
    with UpbitSource(
        base_url=upbit.base_url, pause=rec.pause, acquire=rec.acquire, timeout=5.0
    ) as src:
        yield src


# --- Upbit-format candles --------------------------------------------------------------------


def day_candle(market: str, day: date, i: int) -> dict[str, Any]:
    close = 50_000_000.0 + 1_000.0 * i
    return {
        "market": market,
        "candle_date_time_utc": f"{day.isoformat()}T00:00:00",
        "candle_date_time_kst": f"{day.isoformat()}T09:00:00",
        "opening_price": close - 500.0,
        "high_price": close + 2_000.0,
        "low_price": close - 3_000.0,
        "trade_price": close,
        "timestamp": int(datetime(day.year, day.month, day.day, 23, 59, tzinfo=UTC).timestamp())
        * 1000,
        "candle_acc_trade_price": close * (10.0 + i),
        "candle_acc_trade_volume": 10.0 + i,
        "prev_closing_price": close - 1_000.0,
        "change_price": 1_000.0,
        "change_rate": 0.00002,
    }


def history(market: str, first: date, days: int) -> list[dict[str, Any]]:
    """``days`` consecutive daily candles from ``first``, newest first (as Upbit answers)."""
    return [day_candle(market, first + timedelta(days=i), i) for i in reversed(range(days))]


def upbit_paging(
    candles: list[dict[str, Any]], *, inclusive: bool = False
) -> Callable[[Seen], Reply]:
    """Answers candle requests like Upbit: at most ``count`` bars starting before ``to``
    (exclusive; UTC), newest first; the newest bars when ``to`` is absent. ``inclusive``
    also returns a bar starting exactly at ``to`` (a server that deviates from the docs)."""

    def respond(seen: Seen) -> Reply:
        count = int(seen.query["count"])
        rows = [c for c in candles if c["market"] == seen.query["market"]]
        if "to" in seen.query:
            to = datetime.strptime(seen.query["to"], "%Y-%m-%dT%H:%M:%SZ")
            rows = [
                c
                for c in rows
                if (start := datetime.fromisoformat(c["candle_date_time_utc"])) < to  # both UTC
                or (inclusive and start == to)
            ]
        return Reply(body=rows[:count], headers={"Remaining-Req": "group=candles; min=600; sec=9"})

    return respond


# --- interface and listing -------------------------------------------------------------------


def test_implements_both_interfaces(source: UpbitSource):
    assert isinstance(source, MarketDataSource)
    assert isinstance(source, IntradaySource)
    assert source.name == "upbit"
    assert source.simulated is False


def test_list_instruments_keeps_krw_markets(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(body=fixture("market_all.json")))

    instruments = source.list_instruments(date(2024, 3, 5))

    assert [i.ticker for i in instruments] == ["KRW-ADA", "KRW-BTC", "KRW-ETH", "KRW-XRP"]
    by_ticker = {i.ticker: i for i in instruments}
    assert by_ticker["KRW-BTC"].name == "비트코인"
    assert by_ticker["KRW-XRP"].name == "XRP"  # empty korean_name falls back to english_name
    assert {i.market for i in instruments} == {Market.UPBIT}
    assert {i.currency for i in instruments} == {"KRW"}
    assert len(upbit.requests) == 1
    assert upbit.requests[0].path == "/v1/market/all"
    assert upbit.requests[0].query == {"isDetails": "false"}


def test_list_instruments_other_market_makes_no_request(source: UpbitSource, upbit: FakeUpbit):
    assert source.list_instruments(date(2024, 3, 5), Market.KOSPI) == []
    assert upbit.requests == []


def test_listing_entry_without_market_code_is_protocol_error(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(body=[{"market": "KRW-BTC"}, {"korean_name": "무명"}]))
    with pytest.raises(UpbitProtocolError, match=r"/v1/market/all.*entry #1") as info:
        source.list_instruments(date(2024, 3, 5))
    assert info.value.endpoint == "/v1/market/all"


# --- daily candles ---------------------------------------------------------------------------


def test_one_page_maps_fields_and_filters_dates(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(body=fixture("days_krw_btc.json")))

    frame = source.daily_candles(date(2024, 3, 4), date(2024, 3, 5), tickers=["KRW-BTC"])

    assert tuple(frame.columns) == DAILY_CANDLE_COLUMNS
    assert list(frame["trade_date"]) == [date(2024, 3, 4), date(2024, 3, 5)]
    assert (frame["market"] == "UPBIT").all()
    assert (frame["ticker"] == "KRW-BTC").all()
    for column in FLOAT_COLUMNS:
        assert frame[column].dtype == "float64", column
    last = frame.iloc[1]
    assert (last["open"], last["high"], last["low"], last["close"]) == (
        95_120_000.0,
        97_300_000.0,
        88_000_000.0,
        91_456_000.0,
    )
    assert last["volume"] == pytest.approx(11034.56789012)
    assert last["traded_value"] == pytest.approx(1023456789012.3456)
    # one request: the page reached back past start; ``to`` = the day after end, 00:00 UTC
    assert len(upbit.requests) == 1
    seen = upbit.requests[0]
    assert seen.path == "/v1/candles/days"
    assert seen.query == {"market": "KRW-BTC", "count": "200", "to": "2024-03-06T00:00:00Z"}


def test_paging_across_three_pages(source: UpbitSource, upbit: FakeUpbit):
    first = date(2022, 1, 1)
    upbit.respond_with(upbit_paging(history("KRW-BTC", first, 450)))
    start, end = first + timedelta(days=10), first + timedelta(days=440)

    frame = source.daily_candles(start, end, tickers=["KRW-BTC"])

    tos = [seen.query.get("to") for seen in upbit.requests]
    assert tos == [
        f"{(end + timedelta(days=1)).isoformat()}T00:00:00Z",  # bars of days 241..440
        f"{(first + timedelta(days=241)).isoformat()}T00:00:00Z",  # days 41..240
        f"{(first + timedelta(days=41)).isoformat()}T00:00:00Z",  # days 0..40: start covered
    ]
    expected = [first + timedelta(days=i) for i in range(10, 441)]
    assert list(frame["trade_date"]) == expected
    assert frame["close"].tolist() == [50_000_000.0 + 1_000.0 * i for i in range(10, 441)]
    assert frame["volume"].tolist() == [10.0 + i for i in range(10, 441)]


def test_bar_at_to_is_not_duplicated(source: UpbitSource, upbit: FakeUpbit):
    first = date(2022, 1, 1)
    upbit.respond_with(upbit_paging(history("KRW-BTC", first, 450), inclusive=True))
    start, end = first + timedelta(days=10), first + timedelta(days=440)

    frame = source.daily_candles(start, end, tickers=["KRW-BTC"])

    assert list(frame["trade_date"]) == [first + timedelta(days=i) for i in range(10, 441)]
    assert len(upbit.requests) == 3


def test_history_shorter_than_range_stops_at_empty_page(source: UpbitSource, upbit: FakeUpbit):
    first = date(2023, 1, 1)
    upbit.respond_with(upbit_paging(history("KRW-NEW", first, 250)))

    frame = source.daily_candles(date(2022, 6, 1), date(2023, 12, 31), tickers=["KRW-NEW"])

    assert len(frame) == 250
    assert frame["trade_date"].iloc[0] == first
    assert len(upbit.requests) == 3  # 200 bars, 50 bars, then an empty page: no more history
    assert upbit.requests[-1].query["to"] == "2023-01-01T00:00:00Z"


def test_every_market_when_tickers_is_none(source: UpbitSource, upbit: FakeUpbit):
    listing = Reply(body=fixture("market_all.json"))
    candles = [
        c
        for market in ("KRW-ADA", "KRW-BTC", "KRW-ETH", "KRW-XRP")
        for c in history(market, date(2024, 1, 1), 5)
    ]
    upbit.script(listing)
    upbit.respond_with(upbit_paging(candles))

    frame = source.daily_candles(date(2024, 1, 2), date(2024, 1, 4))

    assert frame["ticker"].tolist() == [
        t for t in ("KRW-ADA", "KRW-BTC", "KRW-ETH", "KRW-XRP") for _ in range(3)
    ]
    assert (
        frame.groupby("ticker")["trade_date"].apply(list).tolist()
        == [[date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]] * 4
    )
    assert [s.path for s in upbit.requests] == ["/v1/market/all"] + ["/v1/candles/days"] * 4


def test_empty_answer_is_an_empty_frame(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(body=[]))

    frame = source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])

    assert frame.empty
    assert tuple(frame.columns) == DAILY_CANDLE_COLUMNS
    assert frame["close"].dtype == "float64"
    assert len(upbit.requests) == 1


def test_market_that_is_no_market_is_rejected(source: UpbitSource, upbit: FakeUpbit):
    with pytest.raises(ValidationError) as info:
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), ["KRW-BTC"])  # type: ignore[arg-type]
    assert info.value.field == "market"
    assert upbit.requests == []


def test_other_market_gives_empty_frame_without_request(source: UpbitSource, upbit: FakeUpbit):
    frame = source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), market=Market.KOSDAQ)
    assert frame.empty
    assert tuple(frame.columns) == DAILY_CANDLE_COLUMNS
    assert upbit.requests == []


def test_range_reaching_today_sends_no_to(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(body=[]))
    today = datetime.now(UTC).date()
    source.daily_candles(today - timedelta(days=3), today + timedelta(days=2), tickers=["KRW-BTC"])
    assert "to" not in upbit.requests[0].query


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": date(2024, 3, 6), "end": date(2024, 3, 5)}, "start"),
        ({"start": datetime(2024, 3, 1), "end": date(2024, 3, 5)}, "start"),
        ({"tickers": "KRW-BTC"}, "tickers"),
        ({"tickers": ["BTC-ETH"]}, "tickers"),
        ({"tickers": ["KRW-"]}, "tickers"),
    ],
)
def test_bad_daily_arguments(source: UpbitSource, upbit: FakeUpbit, kwargs, field):
    args: dict[str, Any] = {"start": date(2024, 3, 1), "end": date(2024, 3, 5)} | kwargs
    with pytest.raises(ValidationError) as info:
        source.daily_candles(**args)
    assert info.value.field == field
    assert upbit.requests == []


def test_investor_flows_are_refused(source: UpbitSource):
    with pytest.raises(PermanentError, match="no investor flows"):
        source.investor_flows(date(2024, 3, 1), date(2024, 3, 5))


# --- rate limits and failures ----------------------------------------------------------------


def test_remaining_req_sec_zero_pauses_before_next_request(
    source: UpbitSource, upbit: FakeUpbit, rec: Recorder
):
    upbit.script(
        Reply(body=[], headers={"Remaining-Req": "group=candles; min=600; sec=0"}),
        Reply(body=[], headers={"Remaining-Req": "group=candles; min=600; sec=3"}),
        Reply(body=[]),
    )
    source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert rec.pauses == []  # nothing waits until another request is due

    source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-ETH"])
    assert rec.pauses == [EXHAUSTED_PAUSE]
    assert rec.requests_seen_at_pause == [1]  # the pause came before the second request

    source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-XRP"])
    assert rec.pauses == [EXHAUSTED_PAUSE]  # sec=3 left: no further pause
    assert len(upbit.requests) == 3


def test_429_then_success(source: UpbitSource, upbit: FakeUpbit, rec: Recorder):
    upbit.script(
        Reply(429, {"error": {"name": "too_many_requests", "message": "Too many requests"}}),
        Reply(body=fixture("days_krw_btc.json")),
    )

    frame = source.daily_candles(date(2024, 3, 3), date(2024, 3, 5), tickers=["KRW-BTC"])

    assert len(frame) == 3
    assert len(upbit.requests) == 2
    assert upbit.requests[0].query == upbit.requests[1].query
    assert len(rec.pauses) == 1
    assert 1.0 <= rec.pauses[0] <= 2.0  # first backoff step: 1 s plus up to 1 s jitter


def test_429_forever_raises_rate_limited_with_retry_after(
    source: UpbitSource, upbit: FakeUpbit, rec: Recorder
):
    upbit.script(then=Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "3"}))

    with pytest.raises(RateLimited, match=r"HTTP 429.*gave up after 4 attempts") as info:
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])

    assert isinstance(info.value, TransientError)
    assert info.value.retry_after == 3.0
    assert len(upbit.requests) == 4  # max_attempts
    assert len(rec.pauses) == 3
    assert all(p >= 3.0 for p in rec.pauses)  # Retry-After is a floor under the backoff
    assert rec.pauses[2] >= 4.0  # and the backoff grows: third wait is 4 s + jitter


def test_429_without_retry_after_has_none(upbit: FakeUpbit, rec: Recorder):
    upbit.script(then=Reply(429, b""))
    src = UpbitSource(base_url=upbit.base_url, pause=rec.pause, max_attempts=2)
    with src, pytest.raises(RateLimited) as info:
        src.list_instruments(date(2024, 3, 5))
    assert info.value.retry_after is None
    assert len(upbit.requests) == 2


def test_long_retry_after_is_raised_not_waited(
    source: UpbitSource, upbit: FakeUpbit, rec: Recorder
):
    upbit.script(then=Reply(429, b"", {"Retry-After": "120"}))
    with pytest.raises(RateLimited, match="retry later") as info:
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert info.value.retry_after == 120.0
    assert len(upbit.requests) == 1
    assert rec.pauses == []


def test_418_is_a_ban_and_never_retried(source: UpbitSource, upbit: FakeUpbit, rec: Recorder):
    ban = {"error": {"name": "418", "message": "IP 차단 중입니다. 남은 차단 시간: 300초"}}
    upbit.script(Reply(418, ban, {"Retry-After": "300"}), then=Reply(body=[]))

    with pytest.raises(UpbitBanned) as info:
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC", "KRW-ETH"])

    assert isinstance(info.value, PermanentError)
    assert "남은 차단 시간: 300초" in str(info.value)
    assert "HTTP 418" in str(info.value)
    assert info.value.banned_for == 300.0
    assert len(upbit.requests) == 1  # not retried, and no further market was asked for
    assert rec.pauses == []


def test_500_then_success(source: UpbitSource, upbit: FakeUpbit, rec: Recorder):
    upbit.script(Reply(500, b"<html>Internal Server Error</html>"), Reply(body=[]))

    frame = source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])

    assert frame.empty
    assert len(upbit.requests) == 2
    assert len(rec.pauses) == 1


def test_500_forever_raises_service_unavailable(
    source: UpbitSource, upbit: FakeUpbit, rec: Recorder
):
    upbit.script(then=Reply(503, {"error": {"name": "server_error", "message": "maintenance"}}))

    with pytest.raises(ServiceUnavailable, match=r"HTTP 503.*maintenance.*after 4 attempts"):
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])

    assert len(upbit.requests) == 4
    assert len(rec.pauses) == 3
    assert rec.pauses == sorted(rec.pauses)  # exponential: 1+j, 2+j, 4+j with j < 1


def test_timeout_is_retried_then_service_unavailable(upbit: FakeUpbit, rec: Recorder):
    upbit.script(then=Reply(body=[], delay=1.0))
    src = UpbitSource(base_url=upbit.base_url, pause=rec.pause, max_attempts=2, timeout=0.2)
    with src, pytest.raises(ServiceUnavailable, match="timed out"):
        src.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert len(upbit.requests) == 2
    assert len(rec.pauses) == 1


def test_connection_refused_is_service_unavailable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rec = Recorder()
    src = UpbitSource(
        base_url=f"http://127.0.0.1:{port}", pause=rec.pause, acquire=rec.acquire, max_attempts=3
    )
    with src, pytest.raises(ServiceUnavailable, match="ConnectError"):
        src.list_instruments(date(2024, 3, 5))
    assert rec.acquired == 3
    assert len(rec.pauses) == 2


def test_malformed_json_is_protocol_error_not_retried(
    source: UpbitSource, upbit: FakeUpbit, rec: Recorder
):
    upbit.script(Reply(body=b'[{"market": "KRW-BTC", "candle_date_'), then=Reply(body=[]))

    with pytest.raises(UpbitProtocolError, match=r"/v1/candles/days.*not JSON") as info:
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])

    assert info.value.endpoint == "/v1/candles/days"
    assert len(upbit.requests) == 1
    assert rec.pauses == []


def test_dict_instead_of_list_is_protocol_error(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(body={"market": "KRW-BTC", "trade_price": 1.0}), then=Reply(body=[]))
    with pytest.raises(UpbitProtocolError, match=r"'KRW-BTC'.*expected a JSON list.*dict"):
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert len(upbit.requests) == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"trade_price": None}, "trade_price"),
        ({"candle_acc_trade_volume": "12.5"}, "candle_acc_trade_volume"),
        ({"candle_date_time_kst": "yesterday"}, "candle_date_time_kst"),
        ({"market": "KRW-ETH"}, "market 'KRW-ETH'"),
    ],
)
def test_bad_candle_field_is_protocol_error(source: UpbitSource, upbit: FakeUpbit, change, named):
    candles = fixture("days_krw_btc.json")
    candles[1].update(change)
    upbit.script(Reply(body=candles))
    with pytest.raises(UpbitProtocolError, match="candle #1") as info:
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert named in str(info.value)


def test_page_that_does_not_move_back_is_protocol_error(source: UpbitSource, upbit: FakeUpbit):
    same = history("KRW-BTC", date(2024, 3, 1), 5)
    upbit.script(then=Reply(body=same))  # ignores ``to``: would loop forever
    with pytest.raises(UpbitProtocolError, match="did not page back"):
        source.daily_candles(date(2024, 1, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert len(upbit.requests) == 2


def test_404_is_not_found_naming_the_market(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(404, {"error": {"name": 404, "message": "Code not found"}}))
    with pytest.raises(NotFound, match=r"market 'KRW-NOPE'.*Code not found"):
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-NOPE"])
    assert len(upbit.requests) == 1


def test_400_is_validation_error_naming_the_market(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(400, {"error": {"name": "validation_error", "message": "bad market"}}))
    with pytest.raises(ValidationError, match=r"'KRW-B@D'.*HTTP 400.*bad market") as info:
        source.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-B@D"])
    assert info.value.field == "market"
    assert info.value.value == "KRW-B@D"
    assert len(upbit.requests) == 1


# --- hooks and headers -----------------------------------------------------------------------


def test_acquire_is_called_once_per_request(source: UpbitSource, upbit: FakeUpbit, rec: Recorder):
    first = date(2022, 1, 1)
    upbit.script(Reply(502, b"bad gateway"))
    upbit.respond_with(upbit_paging(history("KRW-BTC", first, 450)))

    source.daily_candles(
        first + timedelta(days=10), first + timedelta(days=440), tickers=["KRW-BTC"]
    )

    assert len(upbit.requests) == 4  # one 502, then three pages
    assert rec.acquired == 4


def test_acquire_refusal_propagates_unretried(upbit: FakeUpbit, rec: Recorder):
    calls = 0

    def refuse() -> None:
        nonlocal calls
        calls += 1
        raise RateLimited("global Upbit budget spent", retry_after=0.5)

    src = UpbitSource(base_url=upbit.base_url, pause=rec.pause, acquire=refuse)
    with src, pytest.raises(RateLimited, match="global Upbit budget") as info:
        src.list_instruments(date(2024, 3, 5))
    assert info.value.retry_after == 0.5
    assert calls == 1
    assert upbit.requests == []
    assert rec.pauses == []


def test_every_429_reaches_the_throttled_hook_before_the_wait(upbit: FakeUpbit, rec: Recorder):
    upbit.script(
        Reply(429, b"", {"Retry-After": "2"}),
        Reply(429, b""),
        Reply(body=fixture("days_krw_btc.json")),
    )
    reported: list[tuple[float | None, int]] = []  # (Retry-After, pauses so far)

    def throttled(retry_after: float | None) -> None:
        reported.append((retry_after, len(rec.pauses)))

    src = UpbitSource(base_url=upbit.base_url, pause=rec.pause, throttled=throttled)
    with src:
        frame = src.daily_candles(date(2024, 3, 3), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert len(frame) == 3
    # each 429 is reported as it arrives, before the source waits to retry it
    assert reported == [(2.0, 0), (None, 1)]


def test_a_refusing_throttled_hook_propagates_unretried(upbit: FakeUpbit, rec: Recorder):
    upbit.script(then=Reply(429, b"", {"Retry-After": "1"}))

    def throttled(retry_after: float | None) -> None:
        raise ConnectionError("the cooldown store is down")

    src = UpbitSource(base_url=upbit.base_url, pause=rec.pause, throttled=throttled)
    with src, pytest.raises(ConnectionError, match="cooldown store"):
        src.list_instruments(date(2024, 3, 5))
    assert len(upbit.requests) == 1
    assert rec.pauses == []


def test_no_origin_header_even_if_the_client_sets_one(upbit: FakeUpbit, rec: Recorder):
    upbit.respond_with(upbit_paging(history("KRW-BTC", date(2022, 1, 1), 450)))
    client = httpx.Client(headers={"Origin": "https://example.com"})
    try:
        src = UpbitSource(client, upbit.base_url, pause=rec.pause)
        src.daily_candles(date(2022, 1, 5), date(2023, 3, 1), tickers=["KRW-BTC"])
        src.close()  # a caller's client stays open
        assert not client.is_closed
    finally:
        client.close()
    assert len(upbit.requests) == 3
    assert all("origin" not in seen.headers for seen in upbit.requests)
    assert all(seen.headers.get("accept") == "application/json" for seen in upbit.requests)


# --- intraday --------------------------------------------------------------------------------


def test_intraday_minutes_mapping_and_utc_ts(source: UpbitSource, upbit: FakeUpbit):
    upbit.script(Reply(body=fixture("minutes1_krw_btc.json")))
    start = datetime(2024, 3, 5, 10, 0, tzinfo=UTC) - timedelta(hours=9)  # 10:00 KST
    end = datetime(2024, 3, 5, 1, 3, tzinfo=UTC)

    frame = source.intraday_candles(start, end, "1m", tickers=["KRW-BTC"])

    assert tuple(frame.columns) == INTRADAY_CANDLE_COLUMNS
    assert str(frame["ts"].dt.tz) == "UTC"
    # 00:59 is before start, 01:01 had no trades (no bar), 01:03 is end (exclusive)
    assert frame["ts"].tolist() == [
        pd.Timestamp("2024-03-05T01:00:00", tz="UTC"),
        pd.Timestamp("2024-03-05T01:02:00", tz="UTC"),
    ]
    assert (frame["interval"] == "1m").all()
    assert (frame["market"] == "UPBIT").all()
    row = frame.iloc[1]
    assert (row["open"], row["high"], row["low"], row["close"]) == (
        95_210_000.0,
        95_330_000.0,
        95_200_000.0,
        95_300_000.0,
    )
    assert row["volume"] == pytest.approx(5.00012)
    assert row["traded_value"] == pytest.approx(476250000.5)
    for column in FLOAT_COLUMNS:
        assert frame[column].dtype == "float64", column
    assert len(upbit.requests) == 1
    assert upbit.requests[0].path == "/v1/candles/minutes/1"
    assert upbit.requests[0].query == {
        "market": "KRW-BTC",
        "count": "200",
        "to": "2024-03-05T01:03:00Z",
    }


def test_intraday_paging_uses_unit_path_and_oldest_utc_start(source: UpbitSource, upbit: FakeUpbit):
    base = datetime(2024, 3, 5, 0, 0)
    bars = [
        {
            "market": "KRW-ETH",
            "candle_date_time_utc": (base + timedelta(minutes=15 * i)).isoformat(),
            "candle_date_time_kst": (base + timedelta(minutes=15 * i, hours=9)).isoformat(),
            "opening_price": 5_000_000.0 + i,
            "high_price": 5_000_100.0 + i,
            "low_price": 4_999_900.0 + i,
            "trade_price": 5_000_050.0 + i,
            "timestamp": 0,
            "candle_acc_trade_price": 1e8 + i,
            "candle_acc_trade_volume": 20.0 + i,
            "unit": 15,
        }
        for i in reversed(range(300))
    ]
    upbit.respond_with(upbit_paging(bars))
    # end given in KST, 0.5 ms after a bar start: the ``to`` sent is its UTC equivalent rounded
    # up to a whole second, and the bar starting 0.5 ms before end is kept
    end = datetime(2024, 3, 8, 9, 0, 0, 500, tzinfo=KST)
    start = datetime(2024, 3, 5, 0, 30, tzinfo=UTC)

    frame = source.intraday_candles(start, end, "15m", tickers=["KRW-ETH"])

    assert [s.path for s in upbit.requests] == ["/v1/candles/minutes/15"] * 2
    assert [s.query["to"] for s in upbit.requests] == [
        "2024-03-08T00:00:01Z",
        (base + timedelta(minutes=15 * 89)).strftime("%Y-%m-%dT%H:%M:%SZ"),  # bars 89..288
    ]
    expected = [pd.Timestamp(base + timedelta(minutes=15 * i), tz="UTC") for i in range(2, 289)]
    assert frame["ts"].tolist() == expected
    assert frame["volume"].tolist() == [20.0 + i for i in range(2, 289)]


@pytest.mark.parametrize(
    ("start", "end", "interval", "field"),
    [
        (datetime(2024, 3, 5, 1, 0), datetime(2024, 3, 5, 2, 0, tzinfo=UTC), "1m", "start"),
        (datetime(2024, 3, 5, 1, 0, tzinfo=UTC), datetime(2024, 3, 5, 2, 0), "1m", "end"),
        (
            datetime(2024, 3, 5, 2, 0, tzinfo=UTC),
            datetime(2024, 3, 5, 2, 0, tzinfo=UTC),
            "1m",
            "start",
        ),
        (
            datetime(2024, 3, 5, 1, 0, tzinfo=UTC),
            datetime(2024, 3, 5, 2, 0, tzinfo=UTC),
            "2m",
            "interval",
        ),
        (
            datetime(2024, 3, 5, 1, 0, tzinfo=UTC),
            datetime(2024, 3, 5, 2, 0, tzinfo=UTC),
            "1d",
            "interval",
        ),
    ],
)
def test_bad_intraday_arguments(source: UpbitSource, upbit: FakeUpbit, start, end, interval, field):
    with pytest.raises(ValidationError) as info:
        source.intraday_candles(start, end, interval, tickers=["KRW-BTC"])
    assert info.value.field == field
    assert upbit.requests == []


# --- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_attempts": 0}, "max_attempts"), ({"timeout": 0.0}, "timeout")],
)
def test_bad_constructor_arguments(kwargs, field):
    with pytest.raises(ValidationError) as info:
        UpbitSource(**kwargs)
    assert info.value.field == field


# --- live ------------------------------------------------------------------------------------


@pytest.mark.live
def test_live_krw_btc_last_five_days():
    end = datetime.now(UTC).date()
    start = end - timedelta(days=4)
    with UpbitSource() as src:
        frame = src.daily_candles(start, end, tickers=["KRW-BTC"])
    assert tuple(frame.columns) == DAILY_CANDLE_COLUMNS
    assert 4 <= len(frame) <= 5  # today's bar may not exist in the first moments of the day
    assert frame["trade_date"].between(start, end).all()
    assert frame["trade_date"].is_monotonic_increasing
    assert (frame["low"] > 0).all()
    assert (frame["high"] >= frame[["open", "close", "low"]].max(axis=1)).all()
    assert (frame["traded_value"] > 0).all()


# --- bounded retries and explicit timeouts (issue 16) ------------------------------------------


def test_max_elapsed_stops_retries_before_the_next_wait_would_pass_it(
    upbit: FakeUpbit, rec: Recorder
):
    upbit.script(then=Reply(503, {"error": {"message": "down"}}))
    # The first backoff wait is 1-2 s: with 0.5 s allowed no second attempt may start.
    with (
        UpbitSource(
            base_url=upbit.base_url, pause=rec.pause, max_attempts=10, max_elapsed=0.5
        ) as src,
        pytest.raises(ServiceUnavailable, match=r"gave up after 1 attempt in"),
    ):
        src.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert len(upbit.requests) == 1
    assert rec.pauses == []


def test_without_max_elapsed_max_attempts_alone_bounds_the_retries(upbit: FakeUpbit, rec: Recorder):
    upbit.script(then=Reply(503, {"error": {"message": "down"}}))
    with (
        UpbitSource(base_url=upbit.base_url, pause=rec.pause, max_attempts=3) as src,
        pytest.raises(ServiceUnavailable, match=r"gave up after 3 attempts"),
    ):
        src.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
    assert len(upbit.requests) == 3


def test_a_silent_server_times_out_within_the_request_timeout(rec: Recorder):
    with socket.socket() as silent:  # accepts (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with UpbitSource(
            base_url=f"http://127.0.0.1:{port}",
            pause=rec.pause,
            timeout=0.3,
            max_elapsed=0.3,
        ) as src:
            started = time.monotonic()
            with pytest.raises(ServiceUnavailable, match=r"timed out after 0.3 s"):
                src.daily_candles(date(2024, 3, 1), date(2024, 3, 5), tickers=["KRW-BTC"])
            assert time.monotonic() - started < 10  # generous: the bound is ~0.3 s


def test_the_source_s_own_client_has_explicit_timeouts():
    with UpbitSource(timeout=7.0) as src:
        assert src._client.timeout == httpx.Timeout(7.0)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "5"])
def test_max_elapsed_must_be_a_positive_number(bad: Any):
    with pytest.raises(ValidationError, match="max_elapsed"):
        UpbitSource(max_elapsed=bad)
