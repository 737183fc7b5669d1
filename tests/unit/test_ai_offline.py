"""The offline analyzer: deterministic keyword rules, always a valid, clearly labelled Analysis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
from collections.abc import Sequence
from typing import Any

import pytest

from quant.ai import PROMPT_VERSION, Analysis, AnalysisRequest, Analyzer, NewsInput, OfflineAnalyzer
from quant.ai.offline import NEGATIVE_KEYWORDS, POSITIVE_KEYWORDS, keyword_hits

DAY = dt.date(2026, 11, 20)
OFFLINE = OfflineAnalyzer()


def news(title: str, summary: str = "", *, days_ago: int = 0, hour: int = 9) -> NewsInput:
    published = dt.datetime.combine(DAY - dt.timedelta(days=days_ago), dt.time(hour, 0))
    return NewsInput(title, summary, "연합뉴스", "https://example.com/n", published)


def flat_candles(
    n: int = 25, *, last_change: float = 0.0, last_volume: float = 1e6
) -> list[dict[str, Any]]:
    """``n`` quiet daily bars ending on DAY; the last closes ``last_change`` above the previous."""
    bars = []
    for i in range(n):
        day = DAY - dt.timedelta(days=n - 1 - i)
        bars.append(
            {
                "date": day.isoformat(),
                "open": 10_000,
                "high": 10_100,
                "low": 9_900,
                "close": 10_000,
                "volume": 1e6,
                "traded_value": 1e10,
            }
        )
    if not bars:
        return bars
    close = 10_000 * (1 + last_change)
    bars[-1] = {**bars[-1], "open": 10_000, "high": close, "close": close, "volume": last_volume}
    return bars


def request(items: Sequence[NewsInput] = (), **kwargs: Any) -> AnalysisRequest:
    base = {
        "instrument": "KOSDAQ:123456",
        "name": "테스트전자",
        "trade_date": DAY,
        "strategy": "closing_bet",
        "signal": {"score": 8, "grade": "B"},
        "candles": flat_candles(),
        "flows": [],
        "news": list(items),
    }
    return AnalysisRequest(**{**base, **kwargs})


def analysis(req: AnalysisRequest) -> Analysis:
    return OFFLINE.analyze(req).analysis


def test_outcome_is_labelled_offline():
    outcome = OFFLINE.analyze(request([news("테스트전자, 대규모 수주")]))
    assert isinstance(OFFLINE, Analyzer)
    assert (outcome.analyzer, outcome.model) == ("offline", "offline-rules-v1")
    assert (OFFLINE.name, OFFLINE.model) == ("offline", "offline-rules-v1")
    assert outcome.prompt_version == PROMPT_VERSION
    assert (outcome.prompt_tokens, outcome.output_tokens, outcome.total_tokens) == (None,) * 3
    assert outcome.latency_ms >= 0
    assert outcome.analysis.catalyst.startswith("[offline]")


def test_same_input_same_output():
    items = [news("테스트전자 흑자전환", "영업이익 개선"), news("Lawsuit filed", days_ago=1)]
    first = analysis(request(items))
    assert analysis(request(list(items))) == first
    assert analysis(request(items)) == first


def test_no_news_scores_zero():
    result = analysis(request([]))
    assert result.news_score == 0
    assert result.sentiment == 0.0
    assert result.catalyst.startswith("[offline] No news")
    assert "no news in the last 2 days" in result.risk_flags
    assert result.confidence <= 0.6


def test_stale_news_scores_zero():
    result = analysis(request([news("테스트전자 대규모 수주", days_ago=5)]))
    assert result.news_score == 0
    assert "only stale news (older than 2 days)" in result.risk_flags


def test_news_after_the_trade_date_is_ignored():
    tomorrow = NewsInput("테스트전자 수주", "", "x", "u", dt.datetime(2026, 11, 21, 8, 0))
    assert analysis(request([tomorrow])).news_score == 0


def test_a_tz_aware_timestamp_counts_by_its_kst_date():
    # 2026-11-20 16:00 UTC is 2026-11-21 01:00 KST: after the trade date, ignored.
    late = NewsInput(
        "테스트전자 수주", "", "x", "u", dt.datetime(2026, 11, 20, 16, 0, tzinfo=dt.UTC)
    )
    assert analysis(request([late])).news_score == 0
    # 2026-11-19 20:00 UTC is 2026-11-20 05:00 KST: on the trade date.
    early = NewsInput(
        "테스트전자 수주", "", "x", "u", dt.datetime(2026, 11, 19, 20, 0, tzinfo=dt.UTC)
    )
    assert analysis(request([early])).news_score == 2


def test_any_recent_neutral_news_scores_one():
    result = analysis(request([news("테스트전자, 주주총회 개최", days_ago=2)]))
    assert result.news_score == 1
    assert result.sentiment == 0.0


@pytest.mark.parametrize(
    "title",
    [
        "테스트전자, 2천억원 규모 공급계약 체결",
        "테스트전자 3분기 흑자전환",
        "테스트전자 신약 FDA 승인",
        "테스트전자 52주 신고가",
        "테스트전자 실적 개선 기대",
        "TestCo wins $2bn contract",
        "TestCo posts record quarterly revenue",
        "TestCo receives FDA approval",
        "TestCo earnings beat estimates",
    ],
)
def test_a_positive_catalyst_in_a_title_adds_a_point(title):
    result = analysis(request([news(title)]))
    assert result.news_score == 2
    assert result.sentiment > 0
    assert not any(flag.startswith("negative news") for flag in result.risk_flags)


def test_a_positive_keyword_only_in_the_summary_does_not_add_the_title_point():
    result = analysis(request([news("테스트전자 공시", "공급계약 체결")]))
    assert result.news_score == 1
    assert result.sentiment > 0


def test_three_recent_items_add_a_point():
    items = [
        news("테스트전자 수주"),
        news("테스트전자 IR 개최", hour=10),
        news("테스트전자 신제품", hour=11),
    ]
    assert analysis(request(items)).news_score == 3


def test_price_and_volume_confirmation_adds_a_point():
    strong = flat_candles(last_change=0.08, last_volume=3e6)
    assert analysis(request([news("테스트전자 수주")], candles=strong)).news_score == 3
    weak_volume = flat_candles(last_change=0.08, last_volume=1.5e6)
    assert analysis(request([news("테스트전자 수주")], candles=weak_volume)).news_score == 2
    small_move = flat_candles(last_change=0.03, last_volume=3e6)
    assert analysis(request([news("테스트전자 수주")], candles=small_move)).news_score == 2


def test_no_bar_for_the_trade_date_confirms_nothing():
    strong = flat_candles(last_change=0.08, last_volume=3e6)
    stale = [
        {**bar, "date": (DAY - dt.timedelta(days=len(strong) - i)).isoformat()}
        for i, bar in enumerate(strong)
    ]
    assert analysis(request([news("테스트전자 수주")], candles=stale)).news_score == 2


@pytest.mark.parametrize(
    ("title", "keyword"),
    [
        ("테스트전자, 500억원 규모 유상증자 결정", "유상증자"),
        ("테스트전자 전 대표 횡령 혐의", "횡령"),
        ("테스트전자 주권 거래정지", "거래정지"),
        ("테스트전자 3분기 적자 지속", "적자"),
        ("테스트전자 손해배상 소송 피소", "소송"),
        ("TestCo faces class-action lawsuit", "lawsuit"),
        ("TestCo announces secondary offering", "offering"),
        ("TestCo reports wider quarterly loss", "loss"),
    ],
)
def test_negative_news_scores_zero_and_is_flagged(title, keyword):
    result = analysis(request([news(title)]))
    assert result.news_score == 0
    assert result.sentiment < 0
    assert f"negative news: {keyword}" in result.risk_flags


def test_mixed_news_is_penalised_once():
    result = analysis(
        request([news("테스트전자 공급계약 체결"), news("테스트전자 소송 피소", hour=8)])
    )
    assert result.news_score == 1  # 1 + positive title - 1 for negative news not outweighing
    assert result.sentiment == 0.0
    assert "negative news: 소송" in result.risk_flags


def test_longest_keyword_wins():
    assert keyword_hits("공급계약 해지 공시").negative == ("공급계약 해지",)
    assert keyword_hits("공급계약 해지 공시").positive == ()
    assert keyword_hits("3분기 적자 축소").positive == ("적자 축소",)
    assert keyword_hits("3분기 적자 축소").negative == ()
    assert keyword_hits("Record loss in Q3").negative == ("record loss",)


def test_english_keywords_match_whole_words_only():
    assert keyword_hits("a glossy brochure and a recordable disc").negative == ()
    assert keyword_hits("a glossy brochure and a recordable disc").positive == ()
    assert keyword_hits("CONTRACT signed").positive == ("contract",)


def test_a_terminated_contract_is_negative():
    result = analysis(request([news("테스트전자, 공급계약 해지 공시")]))
    assert result.news_score == 0
    assert "negative news: 공급계약 해지" in result.risk_flags


def test_duplicate_headlines_count_once():
    items = [
        news("테스트전자 수주"),
        news("테스트전자 수주", hour=10),
        news("테스트전자  수주 ", hour=11),
    ]
    assert analysis(request(items)).news_score == 2  # one item, not three


def test_price_and_flow_risk_flags():
    candles = flat_candles(last_change=0.27, last_volume=3e6)
    candles[-1] = {**candles[-1], "open": 10_000, "close": 11_000, "high": 12_700}
    flows = [
        {
            "date": (DAY - dt.timedelta(days=i)).isoformat(),
            "foreign_net_krw": -1e9,
            "institution_net_krw": -2e8,
        }
        for i in range(5)
    ]
    result = analysis(request([news("테스트전자 수주")], candles=candles, flows=flows))
    assert "long upper wick (> 0.5 × body)" in result.risk_flags
    assert "foreign and institution net selling (5d)" in result.risk_flags
    limit_up = flat_candles(last_change=0.29, last_volume=3e6)
    assert (
        "price up ≥25%, near the daily limit"
        in analysis(request([news("x")], candles=limit_up)).risk_flags
    )


def test_risk_flags_are_capped_at_eight():
    items = [
        news(f"테스트전자 {word}", hour=1 + i % 12) for i, word in enumerate(NEGATIVE_KEYWORDS[:12])
    ]
    result = analysis(request(items))
    assert len(result.risk_flags) == 8
    assert result.news_score == 0


def test_confidence_never_exceeds_the_offline_cap():
    items = [
        news(f"테스트전자 {w} {w2}", hour=1 + i % 20)
        for i, (w, w2) in enumerate(itertools.pairwise(POSITIVE_KEYWORDS))
    ][:10]
    result = analysis(request(items, candles=flat_candles(last_change=0.1, last_volume=5e6)))
    assert result.news_score == 3
    assert result.confidence == 0.6


def test_random_requests_always_validate():
    rng = random.Random(7)
    vocabulary = [
        *POSITIVE_KEYWORDS,
        *NEGATIVE_KEYWORDS,
        "테스트전자",
        "공시",
        "\x00",
        "\n",
        "\u202e",
        "가" * 300,
    ]
    for _ in range(300):
        items = [
            NewsInput(
                " ".join(rng.choices(vocabulary, k=rng.randint(0, 6))),
                " ".join(rng.choices(vocabulary, k=rng.randint(0, 6))),
                rng.choice(["연합", "", "Reuters"]),
                "u",
                rng.choice([None, dt.datetime(2026, 11, rng.randint(10, 22), rng.randint(0, 23))]),
            )
            for _ in range(rng.randint(0, 15))
        ]
        candles = (
            flat_candles(
                rng.randint(0, 30),
                last_change=rng.uniform(-0.3, 0.3),
                last_volume=rng.uniform(0, 5e6),
            )
            if rng.random() < 0.8
            else []
        )
        req = request(items, candles=candles, name=rng.choice(["테스트전자", "", "x" * 500]))
        result = analysis(req)
        assert Analysis.model_validate(result.model_dump()) == result
        assert 0 <= result.news_score <= 3
        assert -1 <= result.sentiment <= 1
        assert 0 <= result.confidence <= 0.6
        assert len(result.risk_flags) <= 8
        assert all(0 < len(flag) <= 60 for flag in result.risk_flags)
        assert len(result.catalyst) <= 400
        assert result.catalyst.startswith("[offline]")
        assert analysis(dataclasses.replace(req)) == result


def test_missing_and_odd_candle_values_are_tolerated():
    candles = flat_candles()
    candles[-1] = {
        "date": DAY.isoformat(),
        "open": None,
        "high": "n/a",
        "close": float("nan"),
        "volume": None,
    }
    candles[-2] = {"date": "garbage"}
    result = analysis(request([news("테스트전자 수주")], candles=candles))
    assert result.news_score == 2
