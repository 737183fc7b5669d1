"""The hourly crypto signal of seeds 000/001 (issue 23): BUY, SELL or HOLD for a market from
its 60-minute, 240-minute and daily bars and the volatility check's verdict.

The inputs are summarised per timeframe (:class:`TimeframeView`): the last close, RSI(14),
SMA(20) and SMA(50), the MACD(12, 26, 9) histogram, the change over a lookback (24 hours on
60m and 240m, 7 days on daily) and a trend label — ``up`` when close > SMA20 > SMA50,
``down`` when close < SMA20 < SMA50, else ``flat``. The decision (:class:`CryptoDecision`)
comes from Gemini with structured output (its JSON schema is this model's) or, without a
key, from :func:`offline_decision`:

* each timeframe votes with its weight (60m 1, 240m 2, daily 3): the trend ±1 and the MACD
  histogram's sign ±0.5;
* an RSI(14) on 60m above 75 takes 1 away (overbought), below 25 adds 1 (oversold);
* the sum is scaled by the largest possible (``RULE_MAX``): ``≥ +0.4`` BUY, ``≤ −0.4`` SELL,
  else HOLD; confidence is ``0.5 + |scaled| / 2`` for BUY/SELL and ``1 − |scaled|`` for HOLD,
  capped at 0.9 (rules are never certain);
* an unusual hour (the volatility check) turns BUY into HOLD with the flag ``unusual
  volatility``: no entry into a spike. A SELL stands.

The outcome of a signal (:func:`outcome`) is the return of the price after it at fixed
horizons (1 h, 4 h, 24 h), signed by the action — a SELL that was followed by a fall scored
positive; HOLD has none.

Pure: arrays and values in, values out; no clock, no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from quant.errors import ValidationError
from quant.indicators.standard import macd, rsi, sma

#: The strategy name crypto signals are stored under.
STRATEGY = "crypto_ai"
#: The prompt's and rules' version, stored with every signal.
PROMPT_VERSION = "crypto-signal-v1"
#: The offline analyst's model name.
OFFLINE_MODEL = "crypto-rules-v1"
#: The timeframes a signal reads, and their weight in the offline rules.
TIMEFRAMES: dict[str, float] = {"60m": 1.0, "240m": 2.0, "1d": 3.0}
#: Bars a timeframe needs for a view (SMA50 and a settled MACD).
MIN_BARS = 60
#: Bars read per timeframe.
READ_BARS = 120
#: The change lookback per timeframe, in bars (24 h, 24 h, 7 days).
CHANGE_BARS: dict[str, int] = {"60m": 24, "240m": 6, "1d": 7}
#: The outcome horizons, in hours.
HORIZONS: tuple[int, ...] = (1, 4, 24)
#: Largest absolute offline score: each timeframe's weight × (1 + 0.5), plus the RSI's 1.
RULE_MAX = sum(w * 1.5 for w in TIMEFRAMES.values()) + 1.0
#: Scaled score a BUY or SELL needs.
RULE_THRESHOLD = 0.4
#: RSI(14) on 60m above which the market is overbought, below which oversold.
RSI_OVERBOUGHT = 75.0
RSI_OVERSOLD = 25.0

Action = Literal["BUY", "SELL", "HOLD"]


class CryptoDecision(BaseModel):
    """The structured answer of the crypto analyst, validated (unknown fields rejected).

    Its JSON schema is what Gemini is asked to follow, so the descriptions are part of the
    prompt contract: changing them calls for a new :data:`PROMPT_VERSION`."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    action: Action = Field(description="BUY, SELL or HOLD for the next hours.")
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Confidence in the action, 0 (guess) to 1 (certain).",
    )
    reasons: list[str] = Field(
        min_length=1,
        max_length=5,
        description="One to five short sentences (each at most 200 characters) giving the "
        "evidence for the action from the indicators given.",
    )
    risk_flags: list[str] = Field(
        max_length=8,
        description="Up to 8 short risk flags (each at most 60 characters), e.g. 'unusual "
        "volatility', 'overbought'; empty when none.",
    )

    def model_post_init(self, _context: Any) -> None:
        for reason in self.reasons:
            if not reason or len(reason) > 200:
                raise ValueError(f"a reason must be 1–200 characters, got {len(reason)}")
        for flag in self.risk_flags:
            if not flag or len(flag) > 60:
                raise ValueError(f"a risk flag must be 1–60 characters, got {len(flag)}")


@dataclass(frozen=True)
class TimeframeView:
    """One timeframe's summary at the signal's hour (prices in KRW, ``change`` a fraction
    over :data:`CHANGE_BARS` bars)."""

    interval: str
    bars: int
    close: float
    rsi14: float
    sma20: float
    sma50: float
    macd_hist: float
    change: float
    trend: Literal["up", "down", "flat"]


@dataclass(frozen=True)
class SignalInput:
    """What a crypto signal is decided from: the market, the hour (UTC, the end of the last
    closed hourly bar), the price (the last 60m close), a view per timeframe (``None`` where
    too few bars are stored) and the volatility check's reading of the hour (``unusual``
    ``None`` when it gave no verdict)."""

    market: str
    at: dt.datetime
    price: float
    views: Mapping[str, TimeframeView | None]
    move_sigma: float | None
    realized_sigma: float | None
    unusual: bool | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the signal's stored ``inputs``."""
        return {
            "market": self.market,
            "at": self.at.isoformat(),
            "price": self.price,
            "views": {k: None if v is None else asdict(v) for k, v in self.views.items()},
            "volatility": {
                "move_sigma": self.move_sigma,
                "realized_sigma": self.realized_sigma,
                "unusual": self.unusual,
            },
        }


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValidationError(f"{what} is not a finite number: {value!r}", field=what)
    return value


def view(interval: str, closes: npt.ArrayLike) -> TimeframeView | None:
    """The summary of ``closes`` (oldest first, KRW) on ``interval``; ``None`` when fewer
    than :data:`MIN_BARS` bars are given.

    Raises:
        quant.errors.ValidationError: an unknown interval, or a close that is not a positive
            finite price.
    """
    if interval not in TIMEFRAMES:
        raise ValidationError(
            f"unknown signal timeframe {interval!r} (known: {', '.join(TIMEFRAMES)})",
            field="interval",
            value=interval,
        )
    c = np.asarray(closes, dtype=np.float64)
    if len(c) and not (np.isfinite(c).all() and (c > 0).all()):
        bad = c[~(np.isfinite(c) & (c > 0))][0]
        raise ValidationError(
            f"a {interval} close is not a positive price: {bad!r}", field="close", value=bad
        )
    if len(c) < MIN_BARS:
        return None
    fast, slow = sma(c, 20)[-1], sma(c, 50)[-1]
    last = float(c[-1])
    trend: Literal["up", "down", "flat"] = (
        "up" if last > fast > slow else "down" if last < fast < slow else "flat"
    )
    back = CHANGE_BARS[interval]
    return TimeframeView(
        interval=interval,
        bars=len(c),
        close=last,
        rsi14=_finite(float(rsi(c, 14)[-1]), "rsi14"),
        sma20=_finite(float(fast), "sma20"),
        sma50=_finite(float(slow), "sma50"),
        macd_hist=_finite(float(macd(c).hist[-1]), "macd_hist"),
        change=last / float(c[-1 - back]) - 1.0,
        trend=trend,
    )


def offline_decision(inputs: SignalInput) -> CryptoDecision:
    """The rules of the module docstring (no key, or Gemini unreachable by choice)."""
    score = 0.0
    reasons: list[str] = []
    flags: list[str] = []
    for interval, weight in TIMEFRAMES.items():
        v = inputs.views.get(interval)
        if v is None:
            flags.append(f"{interval} history short")
            continue
        trend = {"up": 1.0, "down": -1.0, "flat": 0.0}[v.trend]
        momentum = 0.5 if v.macd_hist > 0 else -0.5 if v.macd_hist < 0 else 0.0
        score += weight * (trend + momentum)
        reasons.append(
            f"{interval}: trend {v.trend} (close {v.close:,.0f} vs SMA20 {v.sma20:,.0f}, "
            f"SMA50 {v.sma50:,.0f}), MACD histogram {'positive' if v.macd_hist > 0 else 'negative' if v.macd_hist < 0 else 'flat'}, "  # noqa: E501
            f"RSI {v.rsi14:.0f}, change {v.change:+.1%}."
        )
    hourly = inputs.views.get("60m")
    if hourly is not None and hourly.rsi14 > RSI_OVERBOUGHT:
        score -= 1.0
        flags.append("overbought")
    elif hourly is not None and hourly.rsi14 < RSI_OVERSOLD:
        score += 1.0
        flags.append("oversold")
    scaled = score / RULE_MAX
    action: Action = (
        "BUY" if scaled >= RULE_THRESHOLD else "SELL" if scaled <= -RULE_THRESHOLD else "HOLD"
    )
    if inputs.unusual:
        flags.append("unusual volatility")
        if action == "BUY":
            action = "HOLD"
            reasons.append("No entry in an unusual hour: the volatility check flagged it.")
    confidence = 0.5 + abs(scaled) / 2 if action != "HOLD" else 1.0 - abs(scaled)
    reasons.insert(
        0, f"Rule score {scaled:+.2f} (BUY ≥ +{RULE_THRESHOLD}, SELL ≤ -{RULE_THRESHOLD})."
    )
    return CryptoDecision(
        action=action,
        confidence=round(min(0.9, max(0.0, confidence)), 4),
        reasons=[r[:200] for r in reasons[:5]],
        risk_flags=flags[:8],
    )


def build_prompt(inputs: SignalInput) -> str:
    """The Gemini prompt for ``inputs``: the task, the figures as JSON, the answer's rules.
    Deterministic for the same inputs (a cache key could hash it)."""
    figures = json.dumps(inputs.as_dict(), ensure_ascii=False, sort_keys=True)
    return (
        "You are a cautious crypto market analyst. Decide BUY, SELL or HOLD for the spot "
        f"market {inputs.market} for the next few hours, from the indicator summary below "
        "(60-minute, 240-minute and daily bars: close, RSI(14), SMA(20), SMA(50), MACD "
        "histogram, change over 24 hours or 7 days, trend) and the volatility check of the "
        "last hour (in sigmas of the trailing 30 days' hourly returns).\n"
        "Use only these figures; do not invent news. Prefer HOLD when the timeframes "
        "disagree. Flag risks such as unusual volatility, overbought or oversold RSI, or a "
        "short history.\n"
        f"Prompt version: {PROMPT_VERSION}.\n"
        f"Figures: {figures}\n"
        "Answer with JSON only, following the given schema."
    )


@dataclass(frozen=True)
class Outcome:
    """Where the price went after a signal: the return at each horizon (``None`` while not
    reached or when no bar closed then) and the action-signed ``edge`` of each (BUY: the
    return, SELL: its negative, HOLD: ``None``); ``complete`` once the last horizon is in."""

    returns: dict[int, float | None]
    edges: dict[int, float | None]
    complete: bool


def outcome(
    action: str,
    price: float,
    at: dt.datetime,
    closes_at: Sequence[dt.datetime],
    closes: Sequence[float],
) -> Outcome:
    """The outcome of a signal decided at ``at`` (UTC) at ``price`` from the hourly bar
    closes after it (``closes_at`` the bars' end times, ascending).

    Raises:
        quant.errors.ValidationError: ``price`` not positive, or a close not positive.
    """
    if not (math.isfinite(price) and price > 0):
        raise ValidationError(f"signal price must be positive, got {price!r}", field="price")
    by_time: dict[dt.datetime, float] = {}
    for when, close in zip(closes_at, closes, strict=True):
        if not (math.isfinite(close) and close > 0):
            raise ValidationError(
                f"an hourly close after the signal is not a positive price: {close!r}",
                field="close",
                value=close,
            )
        by_time[when] = float(close)
    returns: dict[int, float | None] = {}
    edges: dict[int, float | None] = {}
    for hours in HORIZONS:
        found = by_time.get(at + dt.timedelta(hours=hours))
        r = None if found is None else found / price - 1.0
        returns[hours] = r
        sign = {"BUY": 1.0, "SELL": -1.0}.get(action)
        edges[hours] = None if r is None or sign is None else sign * r
    last = at + dt.timedelta(hours=HORIZONS[-1])
    reached = any(when >= last for when in closes_at)
    return Outcome(returns=returns, edges=edges, complete=reached)
