"""Message templates (quant.notify.messages): every event type renders on every channel in
both languages within the part limits, simulated data says so first, supplied text is escaped
for each markup, long lists are cut into balanced parts, and the labels and numbers read as
the issue asks."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from quant.errors import ValidationError
from quant.notify.events import CURRENT, EVENT_TYPES, Envelope, parse
from quant.notify.markup import escape_discord, escape_slack, escape_telegram_html, text_width
from quant.notify.messages import (
    ERROR_CHARS,
    NEWS_CHARS,
    SIMULATED_LABELS,
    format_krw,
    format_number,
    format_pct,
    format_quantity,
    render,
)
from quant.notify.rendered import CHANNELS, LANGUAGES, PART_LIMITS
from tests.support.telegram_html import telegram_text

AT = dt.datetime(2026, 11, 20, 6, 10, tzinfo=dt.UTC)
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _samples(text: str = "text") -> dict[str, dict[str, Any]]:
    """One payload per event type; every supplied string field holds ``text`` + its name (so
    a test can find each one in the output)."""

    def s(field: str) -> str:
        return f"{text} {field}"

    return {
        "signals.published": {
            "strategy": "closing_bet",
            "trade_date": "2026-11-20",
            "phase": "final",
            "gate": s("gate"),
            "count": 3,
            "signals": [
                {
                    "code": s("code"),
                    "name": s("name"),
                    "market": s("market"),
                    "grade": "S",
                    "score": 14,
                    "entry": 71000,
                    "stop": 68870,
                    "target": 74550,
                    "reasons": [s("reason1"), s("reason2")],
                    "news": s("news"),
                }
            ],
        },
        "gate.changed": {
            "previous": s("previous"),
            "current": "GREEN",
            "as_of": s("as_of"),
            "previous_as_of": s("prev_as_of"),
            "score": 72.5,
            "reason": s("reason"),
        },
        "analysis.completed": {
            "strategy": s("strategy"),
            "trade_date": "2026-11-20",
            "provider": s("provider"),
            "analysed": 12,
            "failed": 1,
            "picks": [
                {
                    "code": s("code"),
                    "name": s("name"),
                    "recommendation": s("recommendation"),
                    "summary": s("summary"),
                }
            ],
        },
        "backtest.finished": {
            "run_id": "bt-42",
            "strategy": s("strategy"),
            "state": "failed",
            "start": "2024-01-02",
            "end": "2026-11-20",
            "kpis": {
                "total_return": 0.1234,
                "cagr": 0.051,
                "sharpe": 1.234,
                "max_drawdown": -0.082,
                "win_rate": 0.55,
                "trades": 120,
            },
            "error": s("error"),
        },
        "position.opened": {
            "portfolio": s("portfolio"),
            "code": s("code"),
            "name": s("name"),
            "strategy": s("strategy"),
            "quantity": 10,
            "price": 71000,
            "trade_date": "2026-11-20",
        },
        "position.closed": {
            "portfolio": s("portfolio"),
            "code": s("code"),
            "name": s("name"),
            "strategy": s("strategy"),
            "quantity": 10,
            "price": 74550,
            "trade_date": "2026-11-21",
            "pnl": 35500,
            "return_pct": 0.05,
            "reason": s("reason"),
        },
        "job.dead_lettered": {
            "task_name": s("task_name"),
            "task_id": s("task_id"),
            "error_type": s("error_type"),
            "error": s("error"),
            "attempts": 5,
            "dead_letter_id": 17,
        },
        "data.stale": {
            "dataset": s("dataset"),
            "latest": "2026-11-18",
            "expected": "2026-11-20",
            "lag_sessions": 2,
        },
        "ops.alert": {
            "alertname": s("alertname"),
            "status": "firing",
            "severity": s("severity"),
            "summary": s("summary"),
            "description": s("description"),
            "runbook": "docs/runbooks/incidents.md#worker-down",
            "labels": {"instance": s("instance"), "job": "quantbeat-worker-io"},
            "starts_at": "2026-11-20T06:30:00Z",
        },
        "crypto.volatility": {
            "market": s("market"),
            "at": "2026-11-20T06:00:00Z",
            "threshold": 3,
            "move": 0.0487,
            "move_sigma": 5.21,
            "realized_sigma": 2.4,
            "price": 151_234_000,
            "price_hour_ago": 144_040_000,
        },
        "crypto.signal": {
            "market": s("market"),
            "at": "2026-11-20T06:00:00Z",
            "action": "SELL",
            "confidence": 0.72,
            "price": 151_234_000,
            "reasons": [s("reason")],
            "risk_flags": [s("flag")],
            "analyst": "offline",
            "model": s("model"),
        },
        "daily.summary": {
            "trade_date": "2026-11-20",
            "gate": s("gate"),
            "new_signals": {s("strategy_new"): 5, "vcp": 3},
            "open_signals": 12,
            "closed_today": 4,
            "closed_today_avg_return": 0.012,
            "kpis": [
                {
                    "strategy": s("strategy_kpi"),
                    "closed": 120,
                    "win_rate": 0.55,
                    "avg_return": 0.008,
                    "profit_factor": 1.45,
                },
            ],
            "portfolios": [
                {
                    "name": s("portfolio"),
                    "equity": 10234000,
                    "day_return": 0.003,
                    "total_return": 0.023,
                    "open_positions": 3,
                },
            ],
        },
        "notify.test": {"subscription": s("subscription"), "note": s("note")},
    }


def _envelope(event_type: str, payload: dict[str, Any], *, simulated: bool = False) -> Envelope:
    return parse(
        id="0b5e1d7e-3f6a-4c1e-9a3b-000000000001",
        type=event_type,
        version=CURRENT[event_type],
        at=AT,
        payload=payload,
        trade_date=dt.date(2026, 11, 20),
        simulated=simulated,
    )


def _supplied(payload: Any) -> list[str]:
    """Every string of ``payload`` that a provider or user supplied (the sample marks them)."""
    if isinstance(payload, str):
        return [payload] if payload.startswith(("text ", "<i>")) else []
    if isinstance(payload, dict):
        return [v for k, item in payload.items() for v in _supplied(k) + _supplied(item)]
    if isinstance(payload, list):
        return [v for item in payload for v in _supplied(item)]
    return []


def _vcp(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "strategy": "vcp",
        "trade_date": "2026-11-20",
        "gate": "YELLOW",
        "count": n,
        "signals": [
            {"code": f"{k:06d}", "name": f"Stock {k}", "score": 90 - k / 10, "entry": 1000 + k}
            for k in range(1, n + 1)
        ],
        **extra,
    }


def test_the_samples_cover_every_event_type():
    assert set(_samples()) == set(EVENT_TYPES)


# ------------------------------------------------------------------------------------------
# Every type × channel × language


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_renders_on_every_channel(event_type, channel, language):
    payload = _samples()[event_type]
    r = render(_envelope(event_type, payload), channel=channel, language=language)
    assert (r.channel, r.language) == (channel, language)
    assert r.parts
    assert all(p.strip() for p in r.parts)
    assert all(text_width(p) <= PART_LIMITS[channel] for p in r.parts)
    assert r.subject.strip()
    assert "\n" not in r.subject
    everything = r.subject + "".join(r.parts) + r.plain + (r.html or "")
    assert "SIMULATED" not in everything
    assert "모의" not in everything
    assert (r.html is not None) == (channel == "email")
    if channel == "telegram":
        for part in r.parts:
            telegram_text(part)
    if channel in ("email", "webhook", "file"):
        assert "\n".join(r.parts) == r.plain
    # every supplied value is shown (the gate and codes as given, upper-cased for the gate)
    for value in _supplied(payload):
        assert value in r.plain or value.upper() in r.plain, value


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_simulated_data_says_so_first(event_type, channel, language):
    r = render(
        _envelope(event_type, _samples()[event_type], simulated=True),
        channel=channel,
        language=language,
    )
    label = SIMULATED_LABELS[language]
    assert r.subject.startswith(f"{label} ")
    assert r.parts[0].split("\n", 1)[0].startswith(f"{label} ")
    assert r.plain.startswith(f"{label} ")
    if r.html is not None:
        body = r.html.split("<body", 1)[1].split(">", 1)[1]
        assert body.lstrip().startswith(f"{label} ")


def test_the_simulated_label_is_on_the_first_part_of_a_long_list():
    payload = _samples()["signals.published"]
    payload["signals"] = payload["signals"] * 150
    r = render(_envelope("signals.published", payload, simulated=True), channel="discord")
    assert len(r.parts) > 1
    assert r.parts[0].startswith(SIMULATED_LABELS["ko"])


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_korean_labels_in_ko_and_english_in_en(event_type):
    payload = _samples()[event_type]  # ASCII only: any Hangul in en is an untranslated label
    for channel in ("telegram", "email"):
        ko = render(_envelope(event_type, payload), channel=channel, language="ko")
        en = render(_envelope(event_type, payload), channel=channel, language="en")
        assert HANGUL.search(ko.plain)
        assert HANGUL.search(ko.subject)
        assert not HANGUL.search(en.plain + en.subject + "".join(en.parts) + (en.html or ""))


# ------------------------------------------------------------------------------------------
# Escaping

EVIL = '<script>&"*_[x](y)@everyone'


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_supplied_text_is_escaped_for_each_markup(event_type):
    payload = _samples(EVIL)[event_type]
    env = _envelope(event_type, payload)
    tg = "\n".join(render(env, channel="telegram").parts)
    telegram_text(tg)  # strict: only b/i/u/s/code/pre/a, balanced, nothing unescaped
    assert "<script>" not in tg
    assert "<SCRIPT>" not in tg
    assert escape_telegram_html('<script>&"*_') in tg

    slack = "\n".join(render(env, channel="slack").parts)
    assert "<" not in slack
    assert ">" not in slack
    assert escape_slack("<script>&") in slack
    assert not re.search(r"&(?!(?:amp|lt|gt);)", slack)

    discord = "\n".join(render(env, channel="discord").parts)
    # escaped, or literal inside a code span (identifiers: codes, task names, datasets)
    assert escape_discord('<script>&"*_[x](y)') in discord or '`<script>&"*_[x](y)' in discord
    assert "@everyone" not in discord
    assert "@EVERYONE" not in discord
    outside_code = re.sub(r"`[^`]*`", "", discord)  # a code span shows its text literally
    assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", outside_code)  # no masked link
    assert not re.search(r"(?<!\\)<", outside_code)

    mail = render(env, channel="email")
    assert mail.html is not None
    assert "<script>" not in mail.html.lower()
    assert "&lt;script&gt;&amp;&quot;*_" in mail.html
    # plain text is not markup: the value is shown as given
    assert '<script>&"*_' in mail.plain or '<SCRIPT>&"*_' in mail.plain
    assert "\n".join(render(env, channel="file").parts) == mail.plain


def test_line_breaks_and_control_characters_in_supplied_text_cannot_add_lines():
    payload = _samples()["notify.test"]
    payload["note"] = "first\n<b>second</b>\r\x00\u202eevil\u2028x"
    r = render(_envelope("notify.test", payload), channel="telegram", language="en")
    assert r.parts[0].split("\n")[-1] == "<i>first &lt;b&gt;second&lt;/b&gt; evil x</i>"


# ------------------------------------------------------------------------------------------
# The closing-bet list


def _closing_bet(n: int = 2, **extra: Any) -> dict[str, Any]:
    signals = [
        {
            "code": "005930",
            "name": "삼성전자",
            "market": "KOSPI",
            "grade": "S",
            "score": 14,
            "entry": 71000,
            "stop": 68870,
            "target": 74550,
            "reasons": ["거래대금 1.2조", "52주 신고가", "외국인·기관 순매수", "거래량 5.1배"],
            "news": "삼성전자, HBM4 양산 공급 계약 — " + "가" * 300,
        },
        {"code": "000660", "name": None, "grade": None, "entry": 55.5},
    ]
    return {
        "strategy": "closing_bet",
        "trade_date": "2026-11-20",
        "phase": "final",
        "gate": "GREEN",
        "count": n,
        "signals": signals[:n],
        **extra,
    }


def test_golden_shape_of_a_telegram_closing_bet_message():
    r = render(_envelope("signals.published", _closing_bet()), channel="telegram")
    assert len(r.parts) == 1
    lines = r.parts[0].split("\n")
    assert lines[0] == "<b>종가베팅 2026-11-20 · 장마감 확정</b>"
    assert lines[1] == "게이트 🟢 GREEN · 후보 2개"
    assert lines[2] == ""
    assert lines[3] == "<b>[S]</b> <code>005930</code> <b>삼성전자</b> (KOSPI)"
    assert lines[4] == "진입 71,000원 · 손절 68,870원 (-3.0%) · 목표 74,550원 (+5.0%) · 점수 14.0"
    assert lines[5] == "근거: 거래대금 1.2조 · 52주 신고가 · 외국인·기관 순매수 (외 1개)"
    assert lines[6].startswith("📰 <i>삼성전자, HBM4 양산 공급 계약 — 가가")
    assert lines[6].endswith("…</i>")
    assert len(telegram_text(lines[6])) == len("📰 ") + NEWS_CHARS
    assert lines[7:] == [
        "",
        "<b>[–]</b> <code>000660</code>",
        "진입 55.5원 · 손절 – · 목표 – · 점수 –",
    ]
    assert r.subject == "종가베팅 2026-11-20 · 장마감 확정 — 후보 2개"


def test_closing_bet_phases_and_the_not_tradeable_warning():
    pre = _closing_bet(phase="preliminary", tradeable=False, count=7)
    ko = render(_envelope("signals.published", pre), channel="telegram").parts[0].split("\n")
    assert ko[0] == "<b>종가베팅 2026-11-20 · 장중 잠정 (15:10)</b>"
    assert ko[1] == "게이트 🟢 GREEN · 후보 7개 (상위 2개 표시)"
    assert ko[2] == "<b>⚠️ 15:20 이후 결정 — 오늘은 매매할 수 없습니다</b>"
    en = render(_envelope("signals.published", pre), channel="slack", language="en").plain
    assert en.split("\n")[:3] == [
        "closing bet 2026-11-20 · buy-window (preliminary)",
        "Gate 🟢 GREEN · 7 candidates (top 2 shown)",
        "⚠️ decided after 15:20 — not tradeable today",
    ]
    assert "entry KRW 71,000 · stop KRW 68,870 (-3.0%) · target KRW 74,550 (+5.0%)" in en
    for tradeable in (True, None):
        ok = render(_envelope("signals.published", _closing_bet(tradeable=tradeable)),
                    channel="file", language="en")  # fmt: skip
        assert "15:20" not in ok.plain


def test_no_signals_says_so():
    r = render(_envelope("signals.published", _closing_bet(0)), channel="file", language="en")
    assert r.plain.split("\n") == [
        "closing bet 2026-11-20 · final",
        "Gate 🟢 GREEN · 0 candidates",
        "no signals",
    ]


@pytest.mark.parametrize("channel", ["telegram", "slack", "discord"])
def test_a_long_closing_bet_list_is_cut_into_balanced_parts(channel):
    payload = _closing_bet()
    payload["signals"] = [
        {
            "code": f"{k:06d}",
            "name": f"<종목> & {k}",
            "grade": "SABC"[k % 4],
            "score": k / 10,
            "entry": 10000 + k,
            "stop": 9700 + k,
            "target": 10500 + k,
            "reasons": [f"이유 {k}-{j} " + "매우 긴 설명 " * 20 for j in range(6)],
            "news": "뉴스 " * 200,
        }
        for k in range(200)
    ]
    payload["count"] = 200
    env = _envelope("signals.published", payload)
    r = render(env, channel=channel)
    limit = PART_LIMITS[channel]
    assert len(r.parts) > 5
    assert all(text_width(p) <= limit for p in r.parts)
    # each Telegram part is strict and balanced on its own
    shown = [telegram_text(p) for p in r.parts] if channel == "telegram" else list(r.parts)
    # every signal is there, in order
    text = "\n".join(shown)
    positions = [text.find(f"{k:06d}") for k in range(200)]
    assert all(p >= 0 for p in positions)
    assert positions == sorted(positions)
    if channel == "telegram":
        # no line was cut: the parts hold exactly the message's lines (blank ones aside)
        whole = render(env, channel="file").plain
        lines = [line for part in shown for line in part.split("\n") if line]
        assert lines == [line for line in whole.split("\n") if line]


def test_a_long_closing_bet_list_keeps_every_line_whole():
    payload = _closing_bet()
    payload["signals"] = payload["signals"][:1] * 200
    tg = render(_envelope("signals.published", payload), channel="telegram")
    plain = render(_envelope("signals.published", payload), channel="file")
    # the Telegram parts hold the same lines as the plain text, none cut: every non-blank line
    # of the parts, shown, is a line of the plain message
    shown = [line for p in tg.parts for line in telegram_text(p).split("\n") if line]
    assert shown == [line for line in plain.plain.split("\n") if line]


# ------------------------------------------------------------------------------------------
# The ranked (VCP) list


def test_top_limits_the_ranked_list():
    r = render(_envelope("signals.published", _vcp(30)), channel="telegram", top=5)
    lines = r.parts[0].split("\n")
    assert lines[0] == "<b>VCP 2026-11-20 · 장마감 확정</b>"
    assert lines[1] == "게이트 🟡 YELLOW · 후보 30개 (상위 5개 표시)"
    ranked = [line for line in lines if re.match(r"\d+\. ", line)]
    assert [line.split(".")[0] for line in ranked] == ["1", "2", "3", "4", "5"]
    assert ranked[0] == "1. <code>000001</code> <b>Stock 1</b> · 점수 89.9 · 진입 1,001원"
    assert "000006" not in r.plain
    assert len(render(_envelope("signals.published", _vcp(30)), channel="file").plain
               .split("\n")) == 3 + 10  # fmt: skip
    en = render(_envelope("signals.published", _vcp(3)), channel="file", language="en", top=5)
    assert en.plain.split("\n")[-3:-2] == ["1. 000001 Stock 1 · score 89.9 · entry KRW 1,001"]
    assert "shown" not in en.plain  # all three candidates are listed


# ------------------------------------------------------------------------------------------
# The other templates, in English plain text


def _plain(event_type: str, payload: dict[str, Any], language: str = "en") -> list[str]:
    return render(_envelope(event_type, payload), channel="file", language=language).plain.split(
        "\n"
    )


def test_gate_changed_shows_the_colours_and_reads_version_1():
    lines = _plain(
        "gate.changed", {"previous": "RED", "current": "YELLOW", "score": 50, "reason": "fx"}
    )
    assert lines == ["Market Gate changed: 🔴 RED → 🟡 YELLOW", "score 50.0", "reason: fx"]
    v1 = parse(id="e", type="gate.changed", version=1, at=AT,
               payload={"from": "GREEN", "to": "UNKNOWN", "score": None})  # fmt: skip
    r = render(v1, channel="file")
    assert r.plain.split("\n")[:2] == [
        "마켓 게이트 변경: 🟢 GREEN → ⚪ UNKNOWN",
        "점수 – · 기준 2026-11-20T06:10:00+00:00",
    ]


def test_backtest_kpis_are_percentages():
    lines = _plain("backtest.finished", _samples()["backtest.finished"])
    assert lines[0] == "Backtest finished · text strategy · run bt-42 · failed"
    assert lines[1] == "period 2024-01-02 … 2026-11-20"
    assert lines[2] == (
        "total return +12.3% · CAGR +5.1% · Sharpe 1.23 · MDD -8.2% · win rate 55.0% · trades 120"
    )
    missing = _plain(
        "backtest.finished", {"run_id": "bt-1", "strategy": "vcp", "state": "completed"}
    )
    assert missing[1] == "total return – · CAGR – · Sharpe – · MDD – · win rate – · trades –"


def test_positions():
    opened = _plain("position.opened", _samples()["position.opened"], "ko")
    assert opened[1] == "text code text name · 10주 @ 71,000원 (금액 710,000원)"
    closed = _plain("position.closed", _samples()["position.closed"])
    assert closed[0] == "Position closed · portfolio text portfolio"
    assert closed[2] == "P&L KRW +35,500 (+5.0%) · reason text reason"
    assert closed[3] == "strategy text strategy · 2026-11-21"


def test_a_dead_letter_error_is_truncated():
    payload = _samples()["job.dead_lettered"]
    payload["error"] = "ValueError: " + "x" * 5000
    lines = _plain("job.dead_lettered", payload)
    assert lines[1] == "task text task_name · id text task_id"
    assert lines[2] == "error type text error_type · 5 attempts · dead letter #17"
    assert lines[3].startswith("error: ValueError: xxx")
    assert lines[3].endswith("…")
    assert len(lines[3]) == len("error: ") + ERROR_CHARS


def test_ops_alert_firing_and_resolved():
    firing = _plain("ops.alert", _samples()["ops.alert"])
    assert firing[0] == "🚨 Alert: text alertname"
    assert firing[1] == "text summary"
    assert firing[2] == (
        "severity text severity · since 2026-11-20 06:30 UTC · instance=text instance · "
        "job=quantbeat-worker-io"
    )
    assert firing[3] == "text description"
    assert firing[4] == "runbook: docs/runbooks/incidents.md#worker-down"
    resolved = _plain("ops.alert", {**_samples()["ops.alert"], "status": "resolved"}, "ko")
    assert resolved[0] == "✅ 경보 해제: text alertname"
    assert "text description" not in resolved  # a resolved alert needs no explanation


def test_crypto_volatility_in_both_languages():
    en = _plain("crypto.volatility", _samples()["crypto.volatility"])
    assert en == [
        "⚡ Volatility alert: text market · 2026-11-20 06:00 UTC",
        "1-hour move +5.0% (+5.2σ) · realized volatility 2.4σ · threshold 3σ",
        "KRW 144,040,000 → KRW 151,234,000",
    ]
    ko = _plain("crypto.volatility", {**_samples()["crypto.volatility"], "move": -0.05}, "ko")
    assert ko[0] == "⚡ 변동성 경보: text market · 2026-11-20 06:00 UTC"
    assert ko[1].startswith("1시간 변동 -4.9% (+5.2σ) · 실현 변동성 2.4σ · 기준 3σ")


def test_crypto_signal_in_both_languages():
    en = _plain("crypto.signal", _samples()["crypto.signal"])
    assert en == [
        "🪙 Crypto signal: text market · SELL · 2026-11-20 06:00 UTC",
        "KRW 151,234,000 · confidence 72% · by offline (text model)",
        "· text reason",
        "risks: text flag",
    ]
    ko = _plain("crypto.signal", {**_samples()["crypto.signal"], "action": "BUY"}, "ko")
    assert ko[0] == "🪙 코인 신호: text market · 매수 · 2026-11-20 06:00 UTC"
    assert ko[1] == "KRW 151,234,000 · 신뢰도 72% · 판단 offline (text model)"


def test_data_stale_and_daily_summary_and_test():
    assert _plain("data.stale", _samples()["data.stale"])[1] == (
        "latest 2026-11-18 · expected 2026-11-20 · 2 sessions behind"
    )
    summary = _plain("daily.summary", _samples()["daily.summary"], "ko")
    assert summary[:4] == [
        "일일 요약 2026-11-20",
        "게이트 ⚪ TEXT GATE",
        "신규 신호: text strategy_new 5 · VCP 3",
        "진행 중 신호 12개 · 오늘 청산 4개 (평균 +1.2%)",
    ]
    assert "text strategy_kpi: 청산 120 · 승률 55.0% · 평균 +0.8% · PF 1.45" in summary
    assert "text portfolio: 평가금 10,234,000원 · 일간 +0.3% · 누적 +2.3% · 보유 3" in summary
    test = _plain("notify.test", _samples()["notify.test"])
    assert test[0] == "Notification test · subscription text subscription"


# ------------------------------------------------------------------------------------------
# Numbers and errors


@pytest.mark.parametrize(
    ("value", "ko", "en"),
    [
        (12345, "12,345원", "KRW 12,345"),
        (12345.6, "12,346원", "KRW 12,346"),
        (100, "100원", "KRW 100"),
        (99.5, "99.5원", "KRW 99.5"),
        (0.123, "0.12원", "KRW 0.12"),
        (-1234567, "-1,234,567원", "KRW -1,234,567"),
        (None, "–", "–"),
        (float("nan"), "–", "–"),
    ],
)
def test_format_krw(value, ko, en):
    assert format_krw(value, "ko") == ko
    assert format_krw(value, "en") == en


def test_format_signed_numbers():
    assert format_krw(35500, sign=True) == "+35,500원"
    assert format_krw(-35500, "en", sign=True) == "KRW -35,500"
    assert format_pct(0.032) == "+3.2%"
    assert format_pct(-0.0824) == "-8.2%"
    assert format_pct(0.55, sign=False) == "55.0%"
    assert format_pct(-0.00001) == "0.0%"
    assert format_pct(12.345) == "+1,234.5%"
    assert format_pct(None) == "–"
    assert format_pct(float("inf")) == "∞"
    assert format_number(1.456) == "1.46"
    assert format_number(float("inf")) == "∞"
    assert format_number(None) == "–"
    assert format_quantity(1200.0) == "1,200"
    assert format_quantity(0.015) == "0.015"


def test_unknown_channel_language_or_top_is_a_validation_error():
    env = _envelope("notify.test", _samples()["notify.test"])
    with pytest.raises(ValidationError) as bad_channel:
        render(env, channel="sms")
    assert (bad_channel.value.field, bad_channel.value.value) == ("channel", "sms")
    with pytest.raises(ValidationError) as bad_language:
        render(env, channel="telegram", language="ja")
    assert (bad_language.value.field, bad_language.value.value) == ("language", "ja")
    with pytest.raises(ValidationError) as bad_top:
        render(env, channel="telegram", top=0)
    assert bad_top.value.field == "top"
