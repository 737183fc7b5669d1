"""AI news analysis records: the request, the validated structured answer, the outcome."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

#: Longest accepted ``Analysis.catalyst``, in characters.
CATALYST_MAX_CHARS = 400
#: Most ``Analysis.risk_flags`` accepted.
RISK_FLAGS_MAX = 8
#: Longest accepted risk flag, in characters.
RISK_FLAG_MAX_CHARS = 60

RiskFlag = Annotated[str, Field(min_length=1, max_length=RISK_FLAG_MAX_CHARS)]


class Analysis(BaseModel):
    """The structured answer of an analyzer, validated (unknown fields are rejected).

    This model's JSON schema (``Analysis.model_json_schema()``) is what Gemini is asked to
    follow, so the field descriptions are part of the prompt contract: changing them changes
    the request and calls for a new :data:`quant.ai.PROMPT_VERSION`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    sentiment: float = Field(
        ge=-1.0,
        le=1.0,
        allow_inf_nan=False,
        description="Net tone of the recent news for the stock: -1 very negative, 0 neutral, "
        "1 very positive.",
    )
    catalyst: str = Field(
        max_length=CATALYST_MAX_CHARS,
        description="One sentence naming the main fresh catalyst (or stating there is none).",
    )
    risk_flags: list[RiskFlag] = Field(
        max_length=RISK_FLAGS_MAX,
        description="Up to 8 short risk flags (each at most 60 characters), e.g. 'rights "
        "offering', 'lawsuit', 'stale news'; empty when none.",
    )
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Confidence in this analysis, 0 (guess) to 1 (certain).",
    )
    news_score: int = Field(
        ge=0,
        le=3,
        description="Closing-price-betting news score: 0 no relevant or only negative news; "
        "1 some relevant news; 2 a clear positive catalyst; 3 a strong, fresh (today or "
        "yesterday) catalyst confirmed by several items.",
    )


@dataclass(frozen=True)
class NewsInput:
    """One news item about the instrument.

    ``published_at`` is the publication time; a naive datetime is taken to be KST. ``None``
    means unknown.
    """

    title: str
    summary: str
    source: str
    url: str
    published_at: dt.datetime | None = None


@dataclass(frozen=True)
class AnalysisRequest:
    """Everything an analyzer looks at for one instrument on one trade date.

    * ``instrument`` — ``"MARKET:CODE"``, e.g. ``"KOSPI:005930"``; ``name`` — the company name
      (Korean allowed).
    * ``strategy`` — the signal's strategy (``"closing_bet"`` or ``"vcp"``).
    * ``signal`` — the scan's verdict: ``score``, ``grade``, ``entry_price`` (KRW or quote
      currency), ``status``, ``reasons`` (list of sentences), ``inputs`` (dict). JSON-like values.
    * ``candles`` — recent daily bars, oldest first: ``date`` (ISO string), ``open``, ``high``,
      ``low``, ``close`` (price), ``volume`` (shares/units), ``traded_value`` (KRW).
    * ``flows`` — recent days, oldest first: ``date``, ``foreign_net_krw``,
      ``institution_net_krw`` (KRW; ``None`` when unknown).
    * ``news`` — news items in any order.

    Candles, flows and news dated after ``trade_date`` are ignored by the analyzers (they would
    be look-ahead in a backtest).
    """

    instrument: str
    name: str
    trade_date: dt.date
    strategy: str
    signal: Mapping[str, Any] = field(default_factory=dict)
    candles: Sequence[Mapping[str, Any]] = ()
    flows: Sequence[Mapping[str, Any]] = ()
    news: Sequence[NewsInput] = ()


@dataclass(frozen=True)
class AnalysisOutcome:
    """An :class:`Analysis` with its provenance.

    ``analyzer`` is ``"gemini"`` or ``"offline"``; ``model`` the Gemini model name or
    ``"offline-rules-v1"``; token counts are ``None`` when unknown (always for offline);
    ``latency_ms`` is the wall time of the analysis in milliseconds.
    """

    analysis: Analysis
    analyzer: str
    model: str
    prompt_version: str
    prompt_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    latency_ms: float


@runtime_checkable
class Analyzer(Protocol):
    """Something that turns an :class:`AnalysisRequest` into an :class:`AnalysisOutcome`.

    ``analyze`` raises only :mod:`quant.errors` exceptions: a
    :class:`~quant.errors.TransientError` when a later retry may succeed, a
    :class:`~quant.errors.PermanentError` otherwise.
    """

    name: str
    model: str

    def analyze(self, request: AnalysisRequest) -> AnalysisOutcome: ...
