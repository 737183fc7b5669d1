"""The source factory builds what the settings name, and refuses what it cannot build."""

from __future__ import annotations

import pytest

from quant.errors import ConfigError
from quant.market.krx import KrxSource
from quant.market.simulated import SimulatedMarket
from quantbeat.settings import load_settings
from quantbeat.sources import market_source


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
        "from quantbeat.settings import load_settings\n"
        "from quantbeat.sources import market_source\n"
        "s = market_source(load_settings(market_source='krx', krx_id='me', krx_pw='pw'))\n"
        "print(type(s).__name__, 'pykrx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["KrxSource", "False"]
    assert isinstance(KrxSource, type)
