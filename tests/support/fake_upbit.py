"""A local HTTP server that speaks enough of Upbit's REST API for collection tests, and
records when every request arrived (the server's clock is the judge of the request rate).

A storm: ``throttled`` names candle requests (0-based, in arrival order) answered HTTP 429 with
``Retry-After: retry_after`` instead of bars; ``log`` holds ``(time.time(), status)`` of every
candle request, so a test can check that nothing arrived during a cooldown the server asked
for."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import zlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: The first bar the fake exchange has for every market.
HISTORY_START = dt.datetime(2026, 11, 19, tzinfo=dt.UTC)
#: The fake exchange's "now": no bar starts at or after it.
NOW = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)


def _bar(market: str, unit: int, start: dt.datetime) -> dict[str, Any]:
    seed = zlib.crc32(f"{market}:{unit}:{start.isoformat()}".encode())
    base = 1000.0 + (seed % 1000)
    kst = start + dt.timedelta(hours=9)
    return {
        "market": market,
        "candle_date_time_utc": start.strftime("%Y-%m-%dT%H:%M:%S"),
        "candle_date_time_kst": kst.strftime("%Y-%m-%dT%H:%M:%S"),
        "opening_price": base,
        "high_price": base + 5,
        "low_price": base - 5,
        "trade_price": base + 1,
        "timestamp": int(start.timestamp() * 1000) + 59_000,
        "candle_acc_trade_price": (base + 1) * 10.0,
        "candle_acc_trade_volume": 10.0,
        "unit": unit,
    }


class FakeUpbit(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, markets: list[str], *, throttled: Collection[int] = (), retry_after: int = 2
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.markets = markets
        self.throttled = frozenset(throttled)
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.arrivals: list[float] = []  # time.time() of each candle request
        self.log: list[tuple[float, int]] = []  # (time.time(), status) of each candle request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeUpbit

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Remaining-Req", "group=candles; min=1800; sec=29")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/v1/market/all":
            self._send(
                200,
                [{"market": m, "korean_name": m, "english_name": m} for m in self.server.markets],
            )
            return
        if url.path.startswith("/v1/candles/minutes/"):
            market = query.get("market", "")
            status = 200 if market in self.server.markets else 404
            with self.server.lock:
                arrived = time.time()
                if len(self.server.arrivals) in self.server.throttled:
                    status = 429
                self.server.arrivals.append(arrived)
                self.server.log.append((arrived, status))
            if status == 429:
                self._send(
                    429,
                    {"error": {"name": "too_many_requests", "message": "Too many requests"}},
                    {"Retry-After": str(self.server.retry_after)},
                )
                return
            unit = int(url.path.rsplit("/", 1)[1])
            if status == 404:
                self._send(404, {"error": {"name": "invalid_market", "message": market}})
                return
            count = min(int(query.get("count", "200")), 200)
            to = NOW
            if "to" in query:
                to = dt.datetime.fromisoformat(query["to"].replace("Z", "+00:00"))
                if to.tzinfo is None:
                    to = to.replace(tzinfo=dt.UTC)
            step = dt.timedelta(minutes=unit)
            # newest first: bars starting before `to`, aligned to the unit, not before history
            last = (
                HISTORY_START
                + ((min(to, NOW) - HISTORY_START - dt.timedelta(seconds=1)) // step) * step
            )
            bars: list[dict[str, Any]] = []
            t = last
            while t >= HISTORY_START and len(bars) < count:
                bars.append(_bar(market, unit, t))
                t -= step
            self._send(200, bars)
            return
        self._send(404, {"error": {"name": "not_found", "message": url.path}})


@contextmanager
def fake_upbit(
    markets: list[str], *, throttled: Collection[int] = (), retry_after: int = 2
) -> Iterator[FakeUpbit]:
    """The server, serving from a thread, for the ``with`` block (see the module docstring)."""
    server = FakeUpbit(markets, throttled=throttled, retry_after=retry_after)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
