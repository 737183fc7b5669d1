"""The hourly crypto signal (issue 23): collect, summarise, decide, store, announce, follow.

Every hour (beat ``crypto-signal-hourly``) :func:`generate_signals`, for each market of
``QUANTBEAT_CRYPTO_SIGNAL_MARKETS``:

1. collects what it reads through the crypto collectors — 60-minute bars (the volatility
   check's 30 days), 240-minute bars (:data:`quant.crypto.signal.READ_BARS` of them) and
   daily bars (UTC days, into ``daily_candles``);
2. summarises each timeframe (:func:`quant.crypto.signal.view`) and reads the volatility
   check of the hour;
3. asks Gemini for a :class:`~quant.crypto.signal.CryptoDecision` (structured output) under
   the shared Gemini quota — or, without a key, applies the offline rules. A Gemini answer
   that cannot be used (rejected request, invalid output) or a spent daily quota falls back
   to the offline rules with a risk flag saying so, so every hour has its signal; a
   throttled or unreachable Gemini raises (the task retries after 1, 2, 4 s);
4. stores it in ``crypto_signals`` once per market and hour (a second run of the hour finds
   it and asks nobody again) and announces a BUY or SELL as a ``crypto.signal`` event
   (HOLD is stored, not announced);
5. follows the stored signals: the return 1 h, 4 h and 24 h after each, filled in as the
   bars arrive (the crypto track record; :func:`track_record` sums it up).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import structlog
from sqlalchemy import select

from db.candles import load_candles
from db.crypto import hourly_closes, insert_signal, signal_at, unfollowed_signals
from db.engine import session_scope
from db.models import CryptoSignal, Instrument
from db.store import instrument_ids
from quant.ai.errors import AiRequestRejected, InvalidAiOutput
from quant.crypto.signal import (
    HORIZONS,
    OFFLINE_MODEL,
    PROMPT_VERSION,
    READ_BARS,
    STRATEGY,
    CryptoDecision,
    SignalInput,
    build_prompt,
    offline_decision,
    outcome,
    view,
)
from quant.errors import RateLimited, ServiceUnavailable, ValidationError
from quant.market.types import Market
from quantbeat.infra.ai_quota import QuotaExhausted
from quantbeat.infra.ratelimit import WaitTooLong
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import crypto_source
from quantbeat.services import notify
from quantbeat.services.ai import analyzer_for, limiter
from quantbeat.services.collect import collect_crypto, collect_crypto_daily, floor_to_interval
from quantbeat.services.crypto import collect_hour, read_hour

log = structlog.get_logger("quantbeat.services.crypto_signals")

_HOUR = dt.timedelta(hours=1)


def generate_signals(
    at: dt.datetime | None = None, markets: list[str] | None = None, *, analyzer: Any = None
) -> dict[str, Any]:
    """Decide, store and announce the signal of each of ``markets`` (default
    ``QUANTBEAT_CRYPTO_SIGNAL_MARKETS``) for the hour ending at ``at`` floored to the hour
    (default: now), then follow the stored signals (see the module docstring).

    Returns ``{"at", "source", "simulated", "analyst", "signals": {market: {"action",
    "confidence", "new", …}}, "followed", "collected"}``; a market without enough hourly bars
    gets ``{"action": None, "reason"}``.

    Raises:
        quant.errors.ValidationError: ``at`` naive.
        quant.errors.RateLimited, quant.errors.ServiceUnavailable: a provider (Upbit,
            Gemini) pushed back or did not answer — transient, retried.
    """
    settings = get_settings()
    if at is not None and at.tzinfo is None:
        raise ValidationError(f"at must be timezone-aware, got {at!r}", field="at")
    when = floor_to_interval(at or dt.datetime.now(dt.UTC), 60)
    wanted = list(markets or settings.crypto_signal_markets)
    source = crypto_source(settings)
    chosen = analyzer or analyzer_for(settings)

    collected = collect_hour(wanted, when)
    collected["240m"] = collect_crypto(
        "240m",
        start=floor_to_interval(when - READ_BARS * 4 * _HOUR, 240),
        end=floor_to_interval(when, 240),
        tickers=wanted,
    )["candles"]
    last_day = (when - dt.timedelta(days=1)).date()  # the last closed UTC day
    collected["1d"] = collect_crypto_daily(
        last_day - dt.timedelta(days=READ_BARS), last_day, tickers=wanted
    )["candles"]

    signals: dict[str, dict[str, Any]] = {}
    for market in wanted:
        signals[market] = _decide_one(market, when, chosen, settings, source.simulated)
    followed = follow_signals(when)
    return {
        "at": when.isoformat(),
        "source": source.name,
        "simulated": source.simulated,
        "analyst": getattr(chosen, "name", "offline"),
        "signals": signals,
        "followed": followed,
        "collected": collected,
    }


def _decide_one(
    market: str, when: dt.datetime, chosen: Any, settings: Any, simulated: bool
) -> dict[str, Any]:
    with session_scope() as session:
        ident = instrument_ids(session, [(Market.UPBIT.value, market)]).get(
            (Market.UPBIT.value, market)
        )
        if ident is None:
            return {"action": None, "reason": f"{market} has no stored bars"}
        stored = signal_at(session, ident, STRATEGY, when)
        if stored is not None:
            return _summary(stored, new=False)
        inputs = _inputs(session, ident, market, when, settings.volatility_sigma)
    if inputs is None:
        return {"action": None, "reason": f"fewer than 60 hourly bars of {market} before {when}"}
    decision, analyst, model = _ask(chosen, inputs)
    row = {
        "instrument_id": ident,
        "strategy": STRATEGY,
        "at": when,
        "action": decision.action,
        "confidence": decision.confidence,
        "price": inputs.price,
        "reasons": list(decision.reasons),
        "risk_flags": list(decision.risk_flags),
        "inputs": inputs.as_dict(),
        "analyst": analyst,
        "model": model,
        "prompt_version": PROMPT_VERSION,
        "simulated": simulated,
    }
    with session_scope() as session:
        new_id = insert_signal(session, row)
        stored = signal_at(session, ident, STRATEGY, when)
        assert stored is not None
        if new_id is not None and decision.action in ("BUY", "SELL"):
            notify.record(
                session,
                "crypto.signal",
                key=f"crypto.signal:{market}:{when.isoformat()}",
                payload={
                    "market": market,
                    "at": when.isoformat(),
                    "action": decision.action,
                    "confidence": decision.confidence,
                    "price": inputs.price,
                    "reasons": list(decision.reasons)[:3],
                    "risk_flags": list(decision.risk_flags),
                    "analyst": analyst,
                    "model": model,
                },
                at=when,
                simulated=simulated,
            )
        result = _summary(stored, new=new_id is not None)
    log.info("crypto.signal", market=market, at=when.isoformat(), action=decision.action,
             confidence=decision.confidence, analyst=analyst, new=new_id is not None)  # fmt: skip
    return result


def _inputs(
    session: Any, ident: int, market: str, when: dt.datetime, sigma: float
) -> SignalInput | None:
    """The figures of ``market`` at ``when`` from its stored bars; ``None`` without the
    hourly view (every decision needs it)."""
    views = {}
    for interval in ("60m", "240m", "1d"):
        if interval == "1d":
            end: dt.date | dt.datetime = (when - dt.timedelta(days=1)).date()
        else:
            step = dt.timedelta(minutes=int(interval[:-1]))
            end = floor_to_interval(when, int(interval[:-1])) - step
        candles = load_candles(session, ident, interval, end=end, limit=READ_BARS)
        views[interval] = view(interval, np.asarray(candles.close, dtype=np.float64))
    hourly = views["60m"]
    if hourly is None:
        return None
    reading = read_hour(session, ident, market, when, sigma)
    return SignalInput(
        market=market,
        at=when,
        price=hourly.close,
        views=views,
        move_sigma=reading.move_sigma,
        realized_sigma=reading.realized_sigma,
        unusual=reading.unusual,
    )


def _ask(chosen: Any, inputs: SignalInput) -> tuple[CryptoDecision, str, str]:
    """The decision for ``inputs``, who made it (``gemini``/``offline``) and the model."""
    if getattr(chosen, "name", "offline") == "offline":
        return offline_decision(inputs), "offline", OFFLINE_MODEL
    try:
        chosen.prepare()
        limiter().acquire()
        decision, _usage, _latency = chosen.generate(build_prompt(inputs), CryptoDecision)
    except QuotaExhausted as exc:
        return _fallback(inputs, "gemini quota spent", str(exc))
    except WaitTooLong:
        raise  # a running cooldown or a full minute: the task retries
    except (RateLimited, ServiceUnavailable) as exc:
        # Gemini pushed back or did not answer: every worker waits (the shared cooldown, as
        # for the news analyses), then the task's retry asks again
        limiter().cooldown(exc.retry_after or get_settings().ai_cooldown)
        raise
    except (AiRequestRejected, InvalidAiOutput) as exc:
        return _fallback(inputs, "gemini answer unusable", str(exc))
    return decision, "gemini", str(chosen.model)


def _fallback(inputs: SignalInput, flag: str, why: str) -> tuple[CryptoDecision, str, str]:
    log.warning("crypto.signal_fallback", market=inputs.market, reason=flag, error=why[:200])
    base = offline_decision(inputs)
    decided = base.model_copy(update={"risk_flags": [flag, *base.risk_flags][:8]})
    return decided, "offline", OFFLINE_MODEL


def _summary(row: CryptoSignal, *, new: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action,
        "confidence": row.confidence,
        "price": row.price,
        "analyst": row.analyst,
        "model": row.model,
        "risk_flags": list(row.risk_flags or []),
        "reasons": list(row.reasons or []),
        "new": new,
    }


def follow_signals(now: dt.datetime) -> int:
    """Fill in the returns of the signals still followed from the hourly bars stored up to
    ``now``; a signal whose last horizon has passed is finished (``followed_at``). Returns
    the signals updated."""
    updated = 0
    with session_scope() as session:
        for row in unfollowed_signals(session, now - _HOUR + dt.timedelta(seconds=1)):
            at = row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)
            times, closes = hourly_closes(
                session, row.instrument_id, at, min(now, at + dt.timedelta(hours=HORIZONS[-1]))
            )
            result = outcome(row.action, row.price, at, times, closes)
            values = {f"return_{h}h": result.returns[h] for h in HORIZONS}
            changed = any(getattr(row, k) != v for k, v in values.items() if v is not None)
            for k, v in values.items():
                if v is not None:
                    setattr(row, k, v)
            if result.complete or now >= at + dt.timedelta(hours=HORIZONS[-1] + 24):
                row.followed_at = now
                changed = True
            updated += changed
    return updated


def recent_signals(limit: int = 24) -> list[dict[str, Any]]:
    """The newest ``limit`` stored signals (any market), newest first, with their returns
    since (``None`` while not reached)."""
    with session_scope() as session:
        rows = session.execute(
            select(CryptoSignal, Instrument.ticker)
            .join(Instrument, Instrument.id == CryptoSignal.instrument_id)
            .order_by(CryptoSignal.at.desc(), CryptoSignal.id.desc())
            .limit(limit)
        ).all()
        return [
            {
                "market": ticker,
                "at": s.at.isoformat(),
                "action": s.action,
                "confidence": s.confidence,
                "price": s.price,
                "analyst": s.analyst,
                "model": s.model,
                "return_1h": s.return_1h,
                "return_4h": s.return_4h,
                "return_24h": s.return_24h,
                "simulated": s.simulated,
            }
            for s, ticker in rows
        ]


def track_record(strategy: str = STRATEGY) -> dict[str, Any]:
    """The crypto track record: per action, the signals, and for BUY/SELL at each horizon
    the count, hit rate (edge > 0) and mean edge (the return signed by the action).
    SIMULATED rows are counted like any other; ``simulated`` says whether any is."""
    with session_scope() as session:
        rows = session.execute(
            select(CryptoSignal, Instrument.ticker)
            .join(Instrument, Instrument.id == CryptoSignal.instrument_id)
            .where(CryptoSignal.strategy == strategy)
        ).all()
    by_action: dict[str, dict[str, Any]] = {}
    simulated = False
    for row, _ticker in rows:
        simulated |= bool(row.simulated)
        entry = by_action.setdefault(row.action, {"signals": 0, "horizons": {}})
        entry["signals"] += 1
        sign = {"BUY": 1.0, "SELL": -1.0}.get(row.action)
        if sign is None:
            continue
        for h in HORIZONS:
            r = getattr(row, f"return_{h}h")
            if r is None:
                continue
            stats = entry["horizons"].setdefault(f"{h}h", {"count": 0, "hits": 0, "edge": 0.0})
            stats["count"] += 1
            stats["hits"] += sign * r > 0
            stats["edge"] += sign * r
    for entry in by_action.values():
        for stats in entry["horizons"].values():
            n = stats["count"]
            stats["hit_rate"] = stats.pop("hits") / n
            stats["mean_edge"] = stats.pop("edge") / n
    return {"strategy": strategy, "simulated": simulated, "actions": by_action}
