"""The daily precompute of the scan indicators: the service behind
``quantbeat.indicators.precompute`` (a step of the ``quantbeat.pipeline.krx_close`` pipeline).

It joins two capabilities, hence its own module: the indicator cache
(:mod:`quantbeat.services.indicators`, which fills it) and the scans' universe RS ratings
(:mod:`quantbeat.services.scans`, which read them), so neither imports the other the wrong way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from db.candles import universe
from db.engine import session_scope
from quant.indicators import SCAN_BARS
from quantbeat.services.indicators import service
from quantbeat.services.scans import store_universe_ratings, universe_name


def precompute_universe(trade_date: dt.date, markets: Sequence[str]) -> dict[str, Any]:
    """Compute the scan indicators (:data:`quant.indicators.SCAN_SET`) over the last
    :data:`quant.indicators.SCAN_BARS` daily bars up to ``trade_date`` for every listed
    instrument of ``markets`` (KRX market names), store them in the cache where the scans
    look, and store the market set's RS ratings of the day.

    Returns ``{"trade_date", "markets", "instruments", "with_bars", "indicators", "series",
    "failed", "stored", "cache", "seconds", "rs_ratings"}`` (``rs_ratings``: whether the
    ratings were stored; not when the cache was unavailable or changed meanwhile).
    """
    names = list(markets)
    svc = service()
    # read before the candles are loaded, so ratings from candles replaced meanwhile are refused
    (generation,) = svc.cache.generations([universe_name(names)])
    with session_scope() as session:
        members = universe(session, names)
    raw: dict[str, float] = {}
    summary = svc.precompute(members, end=trade_date, bars=SCAN_BARS, rs_raw_last=raw)
    ratings = store_universe_ratings(svc.cache, names, trade_date, raw, generation)
    return {
        "trade_date": trade_date.isoformat(),
        "markets": names,
        **summary,
        "rs_ratings": ratings,
    }
