"""Deterministic, network-free news analysis: keyword rules over the same inputs Gemini sees.

Used when no Gemini key is configured, when the daily Gemini budget is spent, and in tests.
Its answers are clearly labelled: ``analyzer="offline"``, ``model="offline-rules-v1"`` and a
catalyst text starting with ``"[offline]"``.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quant.ai._inputs import usable_news, usable_rows
from quant.ai._text import clean_text, kst_date, number, to_date, truncate
from quant.ai.models import (
    CATALYST_MAX_CHARS,
    RISK_FLAG_MAX_CHARS,
    RISK_FLAGS_MAX,
    Analysis,
    AnalysisOutcome,
    AnalysisRequest,
    NewsInput,
)
from quant.ai.prompt import PROMPT_VERSION, TITLE_MAX_CHARS

OFFLINE_MODEL = "offline-rules-v1"

#: News published this many calendar days before the trade date (KST) or later is "recent".
RECENT_DAYS = 2
#: Highest confidence the offline rules ever claim.
MAX_CONFIDENCE = 0.6

#: Words and phrases of a positive catalyst (Korean matched as substrings, English as words).
POSITIVE_KEYWORDS: tuple[str, ...] = (
    # Korean
    "수주", "공급계약", "계약 체결", "계약", "흑자전환", "흑자 전환", "흑자", "실적 개선",
    "호실적", "어닝 서프라이즈", "사상 최대", "최대 실적", "신고가", "승인", "허가", "특허",
    "기술이전", "기술 수출", "임상 성공", "자사주 매입", "자사주 소각", "배당 확대", "적자 축소",
    "목표가 상향", "상향",
    # English
    "contract", "contracts", "order win", "wins order", "record", "record high",
    "approval", "approved", "earnings beat", "beats estimates", "beat estimates",
    "turnaround", "upgrade", "upgraded", "patent", "buyback", "partnership", "narrower loss",
)  # fmt: skip

#: Words and phrases of negative news; each match also becomes a risk flag.
NEGATIVE_KEYWORDS: tuple[str, ...] = (
    # Korean
    "유상증자", "소송", "적자", "적자전환", "적자 전환", "횡령", "배임", "거래정지", "매매정지",
    "상장폐지", "관리종목", "감자", "불성실공시", "전환사채", "계약 해지", "계약해지",
    "공급계약 해지", "공급계약해지", "수주 취소", "승인 취소", "허가 취소", "실적 악화",
    "어닝 쇼크", "목표가 하향", "하향", "리콜", "압수수색",
    # English
    "lawsuit", "lawsuits", "offering", "offerings", "loss", "losses", "record loss",
    "net loss", "delisting", "delisted", "trading halt", "halted", "fraud", "embezzlement",
    "recall", "downgrade", "downgraded", "investigation", "probe", "dilution", "default",
    "bankruptcy", "earnings miss", "misses estimates", "contract termination",
    "contract terminated", "contract cancelled",
)  # fmt: skip

_ASCII_WORD = re.compile(r"^[a-z0-9 .-]+$")


def _keyword_pattern() -> re.Pattern[str]:
    """One alternation over both lists, longest first: at any position the longest keyword
    wins ("계약 해지" over "계약", "적자 축소" over "적자", "record loss" over "record")."""
    words = sorted({*POSITIVE_KEYWORDS, *NEGATIVE_KEYWORDS}, key=lambda w: (-len(w), w))
    parts = []
    for word in words:
        escaped = re.escape(word.casefold())
        if _ASCII_WORD.match(word):
            escaped = rf"(?<![a-z0-9]){escaped}(?![a-z0-9])"
        parts.append(escaped)
    return re.compile("|".join(parts))


_PATTERN = _keyword_pattern()
_POSITIVE = frozenset(w.casefold() for w in POSITIVE_KEYWORDS)
_NEGATIVE = frozenset(w.casefold() for w in NEGATIVE_KEYWORDS)


@dataclass(frozen=True)
class _Hits:
    positive: tuple[str, ...]
    negative: tuple[str, ...]


def keyword_hits(text: str) -> _Hits:
    """Distinct positive and negative keywords in ``text``, in order of first appearance.

    Matching is case-insensitive on cleaned text, non-overlapping, leftmost-longest.
    """
    positive: dict[str, None] = {}
    negative: dict[str, None] = {}
    for match in _PATTERN.finditer(clean_text(text).casefold()):
        word = match.group(0)
        if word in _NEGATIVE:
            negative[word] = None
        elif word in _POSITIVE:
            positive[word] = None
    return _Hits(tuple(positive), tuple(negative))


@dataclass(frozen=True)
class _Price:
    change: float | None  # close / previous close - 1 on the trade-date bar
    volume_ratio: float | None  # volume / mean of up to 20 previous traded bars
    upper_wick_ratio: float | None  # upper wick / body


def _price(candles: Sequence[Mapping[str, Any]], trade_date: dt.date) -> _Price:
    if len(candles) < 2:
        return _Price(None, None, None)
    last = candles[-1]
    day = to_date(last.get("date"))
    if day is not None and day != trade_date:  # no bar for the trade date: nothing to confirm
        return _Price(None, None, None)
    close, prev = number(last.get("close")), number(candles[-2].get("close"))
    change = close / prev - 1.0 if close is not None and prev else None
    volume = number(last.get("volume"))
    history = [number(c.get("volume")) for c in candles[-21:-1]]
    traded = [v for v in history if v is not None and v > 0]
    ratio = (
        volume / (sum(traded) / len(traded)) if volume is not None and len(traded) >= 5 else None
    )
    open_, high = number(last.get("open")), number(last.get("high"))
    wick: float | None = None
    if open_ is not None and high is not None and close is not None:
        body = abs(close - open_)
        upper = high - max(open_, close)
        wick = upper / body if body > 0 else (0.0 if upper <= 0 else float("inf"))
    return _Price(change, ratio, wick)


def _net_selling(flows: Sequence[Mapping[str, Any]]) -> bool:
    """Foreign and institutional investors both net sellers over the last 5 known days."""
    recent = list(flows)[-5:]
    foreign = [number(f.get("foreign_net_krw")) for f in recent]
    institution = [number(f.get("institution_net_krw")) for f in recent]
    known_f = [x for x in foreign if x is not None]
    known_i = [x for x in institution if x is not None]
    return len(known_f) >= 3 and len(known_i) >= 3 and sum(known_f) < 0 and sum(known_i) < 0


def _is_recent(item: NewsInput, trade_date: dt.date) -> bool:
    if item.published_at is None:  # undated items are taken as current: they came for this day
        return True
    return (trade_date - kst_date(item.published_at)).days <= RECENT_DAYS


def _join(words: Iterable[str]) -> str:
    listed = ", ".join(words)
    return listed or "none"


class OfflineAnalyzer:
    """Keyword rules standing in for Gemini; deterministic (same request → same analysis),
    no network, no clock in the analysis (only ``latency_ms`` is measured).

    Inputs are selected exactly as for the prompt: nothing dated after the trade date, news
    deduplicated by title. Rules:

    * **Recent news** — items published within :data:`RECENT_DAYS` (2) calendar days before
      the trade date (KST), or undated. Each item's title and summary are scanned for
      :data:`POSITIVE_KEYWORDS` and :data:`NEGATIVE_KEYWORDS` (Korean as substrings, English
      as whole words, case-insensitive, leftmost-longest so "계약 해지" is negative rather
      than "계약" positive). ``P`` / ``N`` = the number of distinct positive / negative
      keywords per item, summed over the items.
    * **news_score** — 0 without recent news. Otherwise ``1`` + 1 if any recent *title* has a
      positive keyword + 1 if there are ≥ 3 recent items or strong price/volume confirmation
      (the trade-date bar is up ≥ 5% on the previous close with volume ≥ 2 × the mean of up to
      20 previous traded bars, at least 5 of them) − 1 if there is negative news (``N > 0``)
      or − 2 if it outweighs the positive (``N > P``); clipped to 0…3. Only-negative news thus
      scores 0, matching "0 = no/negative news" (``domain.md`` §3).
    * **sentiment** — ``(P − N) / (P + N + 1)``, within (−1, 1); 0 without recent news.
    * **confidence** — 0.2, + 0.1 with recent news, + 0.05 per keyword hit (at most + 0.2),
      + 0.1 when the price/volume check could be made; never above :data:`MAX_CONFIDENCE`
      (0.6): keyword rules are a weak signal.
    * **risk_flags** (≤ 8, each ≤ 60 characters, in this order): "no news in the last 2 days"
      or "only stale news (older than 2 days)"; "negative news: <keyword>" per negative
      keyword (newest items first); "price up ≥25%, near the daily limit"; "long upper wick
      (> 0.5 × body)"; "foreign and institution net selling (5d)" when both 5-day flow sums
      (≥ 3 known days each) are negative.
    * **catalyst** — ``"[offline] "`` + the count of recent items, the newest headline and the
      keywords found; ≤ 400 characters.

    ``analyze`` raises nothing for a well-typed request.
    """

    name: str = "offline"
    model: str = OFFLINE_MODEL

    def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        """Analyse ``request`` by the rules above; ``latency_ms`` in milliseconds, no tokens."""
        started = time.perf_counter()
        analysis = self.analysis(request)
        return AnalysisOutcome(
            analysis=analysis,
            analyzer=self.name,
            model=self.model,
            prompt_version=PROMPT_VERSION,
            prompt_tokens=None,
            output_tokens=None,
            total_tokens=None,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )

    def analysis(self, request: AnalysisRequest) -> Analysis:
        """Only the :class:`Analysis` of :meth:`analyze` (a pure function of ``request``)."""
        news = usable_news(request)
        recent = [item for item in news if _is_recent(item, request.trade_date)]
        candles = usable_rows(request.candles, request.trade_date)
        flows = usable_rows(request.flows, request.trade_date)
        price = _price(candles, request.trade_date)

        hits = [keyword_hits(f"{item.title} / {item.summary}") for item in recent]
        n_pos = sum(len(h.positive) for h in hits)
        n_neg = sum(len(h.negative) for h in hits)
        title_positive = any(keyword_hits(item.title).positive for item in recent)
        price_confirmed = (
            price.change is not None
            and price.volume_ratio is not None
            and price.change >= 0.05
            and price.volume_ratio >= 2.0
        )

        if recent:
            penalty = 0 if n_neg == 0 else (1 if n_neg <= n_pos else 2)
            confirm = len(recent) >= 3 or price_confirmed
            score = 1 + int(title_positive) + int(confirm) - penalty
            news_score = max(0, min(3, score))
            sentiment = round((n_pos - n_neg) / (n_pos + n_neg + 1), 4)
        else:
            news_score = 0
            sentiment = 0.0

        confidence = 0.2 + (0.1 if recent else 0.0) + min(0.2, 0.05 * (n_pos + n_neg))
        if price.change is not None and price.volume_ratio is not None:
            confidence += 0.1
        confidence = round(min(MAX_CONFIDENCE, confidence), 4)

        flags: list[str] = []
        if not recent:
            flags.append(
                "only stale news (older than 2 days)" if news else "no news in the last 2 days"
            )
        negatives: dict[str, None] = {}
        for h in hits:
            negatives.update(dict.fromkeys(h.negative))
        flags.extend(f"negative news: {word}" for word in negatives)
        if price.change is not None and price.change >= 0.25:
            flags.append("price up ≥25%, near the daily limit")
        if price.upper_wick_ratio is not None and price.upper_wick_ratio > 0.5:
            flags.append("long upper wick (> 0.5 × body)")
        if _net_selling(flows):
            flags.append("foreign and institution net selling (5d)")
        risk_flags = [truncate(f, RISK_FLAG_MAX_CHARS) for f in flags][:RISK_FLAGS_MAX]

        name = clean_text(request.name, 80) or clean_text(request.instrument, 40)
        if recent:
            positives: dict[str, None] = {}
            for h in hits:
                positives.update(dict.fromkeys(h.positive))
            headline = clean_text(recent[0].title, TITLE_MAX_CHARS) or clean_text(
                recent[0].summary, TITLE_MAX_CHARS
            )
            text = (
                f"[offline] {len(recent)} recent news item(s) on {name}; newest: "
                f'"{headline}"; positive keywords: {_join(positives)}; negative keywords: '
                f"{_join(negatives)}."
            )
        elif news:
            text = (
                f"[offline] Only news older than {RECENT_DAYS} days on {name} before "
                f"{request.trade_date.isoformat()}; no fresh catalyst identified."
            )
        else:
            text = (
                f"[offline] No news on {name} in the {RECENT_DAYS} days up to "
                f"{request.trade_date.isoformat()}; no catalyst identified."
            )
        return Analysis(
            sentiment=sentiment,
            catalyst=truncate(text, CATALYST_MAX_CHARS),
            risk_flags=risk_flags,
            confidence=confidence,
            news_score=news_score,
        )
