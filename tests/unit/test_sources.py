"""The source factory builds what the settings name, and refuses what it cannot build."""

from __future__ import annotations

import pytest

from quant.errors import ConfigError
from quant.market.krx import KrxSource
from quant.market.simulated import SimulatedMarket
from quantbeat.infra.settings import load_settings
from quantbeat.infra.sources import market_source


def test_simulated_by_default():
    assert isinstance(market_source(load_settings()), SimulatedMarket)


def test_krx_needs_credentials():
    with pytest.raises(ConfigError, match="QUANTBEAT_KRX_ID"):
        market_source(load_settings(market_source="krx", krx_id=None, krx_pw=None))


def test_krx_with_credentials_builds_without_importing_pykrx():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from quantbeat.infra.settings import load_settings\n"
        "from quantbeat.infra.sources import market_source\n"
        "s = market_source(load_settings(market_source='krx', krx_id='me', krx_pw='pw'))\n"
        "print(type(s).__name__, 'pykrx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["KrxSource", "False"]
    assert isinstance(KrxSource, type)


def test_a_429_from_upbit_starts_the_shared_cooldown_at_once():
    """The crypto source reports each 429 to the provider's limiter, so every worker pauses,
    not only the request that was refused (here: a Retry-After too long to wait in place)."""
    import datetime as dt
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from quant.errors import RateLimited
    from quantbeat.infra.sources import crypto_source, upbit_limiter

    class Throttling(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(429)
            self.send_header("Retry-After", "30")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = load_settings(
            crypto_source="upbit",
            upbit_base_url=f"http://127.0.0.1:{server.server_address[1]}",
            redis_url="memory://",
            provider_rates={"upbit": 7.25},  # a limiter of this test's own
        )
        source = crypto_source(settings)
        with pytest.raises(RateLimited, match="HTTP 429"):
            source.list_instruments(dt.date(2026, 11, 20))
    finally:
        server.shutdown()
        server.server_close()
    limiter = upbit_limiter(settings)
    assert limiter is not None
    with pytest.raises(RateLimited, match="cooling down") as info:
        limiter.acquire()
    assert 29.0 < (info.value.retry_after or 0) <= 30.0
