"""Message templates: one event rendered for one channel in one language.

:func:`render` picks the template of the event's payload, builds the message as lines of
styled segments, and writes them in the channel's markup:

- ``telegram``: HTML (``<b>``, ``<i>``, ``<code>``), cut to 4096;
- ``slack``: mrkdwn (``*bold*``, ``_italic_``, a backtick code span), cut to 3000;
- ``discord``: markdown (``**bold**``, ``*italic*``, a backtick code span), cut to 2000;
- ``email``: plain-text parts plus ``html``, a small HTML document with the same lines;
- ``webhook`` and ``file``: plain text.

The closing-bet list shows every signal of the payload (the publisher chose them and a
subscription's filters may have narrowed them); other strategies' ranked lists show the best
``top``. Inside a code span (instrument codes, task names and ids, dataset and subscription
names) Discord and Slack show text literally, so there a backtick becomes ``ˋ`` and an ``@`` is
still followed by a zero-width space instead of being backslash-escaped.

Every text that is not ours (instrument and strategy names, reasons, news and AI summaries,
error messages, portfolio and subscription names, gate colours) is escaped for the channel
(:mod:`quant.notify.markup`) after control characters, line breaks and bidirectional overrides
are replaced by spaces, so no payload can add markup, mentions, links or lines. The parts are
then cut to :data:`quant.notify.rendered.PART_LIMITS` (:func:`quant.notify.markup.chunk`).

A simulated event (``envelope.simulated``) says so first: its ``subject``, the first line of
its first part, ``plain`` and ``html`` start with ``[모의 데이터 SIMULATED]`` (ko) or
``[SIMULATED]`` (en).

Numbers: prices in KRW with thousands separators (``12,345원`` / ``KRW 12,345``; decimals only
below 100), fractions as percentages with a sign (``+3.2%``), a missing value as ``–``.

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from quant.errors import ValidationError
from quant.notify.events import (
    AnalysisCompleted,
    BacktestFinished,
    CryptoSignal,
    CryptoVolatility,
    DailySummary,
    DataStale,
    Envelope,
    GateChanged,
    JobDeadLettered,
    NotifyTest,
    OpsAlert,
    PositionClosed,
    PositionOpened,
    SignalItem,
    SignalsPublished,
)
from quant.notify.markup import (
    Markup,
    chunk,
    escape_discord,
    escape_html,
    escape_slack,
    escape_telegram_html,
)
from quant.notify.rendered import CHANNELS, LANGUAGES, PART_LIMITS, Rendered

__all__ = [
    "CLOSING_BET",
    "MARKUP",
    "SIMULATED_LABELS",
    "format_krw",
    "format_number",
    "format_pct",
    "format_quantity",
    "render",
]

#: The strategy whose signals are shown as the closing-bet list (the others as a ranked list).
CLOSING_BET = "closing_bet"

#: The label every message of simulated data starts with.
SIMULATED_LABELS: dict[str, str] = {"ko": "[모의 데이터 SIMULATED]", "en": "[SIMULATED]"}

#: How each channel's parts are written (and cut, see :func:`quant.notify.markup.chunk`).
MARKUP: dict[str, Markup] = {
    "telegram": "html",
    "slack": "mrkdwn",
    "discord": "markdown",
    "email": "text",
    "webhook": "text",
    "file": "text",
}

MISSING = "–"

#: Longest shown text of each kind, in characters (longer is cut with "…").
NEWS_CHARS = 200
SUMMARY_CHARS = 200
REASON_CHARS = 80
REASONS_SHOWN = 3
ERROR_CHARS = 300
NAME_CHARS = 60
SUBJECT_CHARS = 200


# ------------------------------------------------------------------------------------------
# Numbers


def _finite(value: float | int | None) -> float | None:
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v


def format_number(value: float | int | None, digits: int = 2) -> str:
    """``value`` with thousands separators and ``digits`` decimals; ``–`` for None or NaN,
    ``∞``/``-∞`` for infinities."""
    v = _finite(value)
    if v is None:
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:,.{digits}f}"


def format_krw(value: float | int | None, language: str = "ko", *, sign: bool = False) -> str:
    """A KRW amount: ``12,345원`` (ko) or ``KRW 12,345`` (en); whole won from 100 up, at most
    two decimals below (``99.5원``); with ``sign`` a ``+`` before gains (``+35,500원``).
    ``–`` for None or NaN."""
    v = _finite(value)
    if v is None:
        return MISSING
    if math.isinf(v):
        text = "∞" if v > 0 else "-∞"
    elif abs(v) >= 100:
        text = f"{round(v):+,}" if sign else f"{round(v):,}"
    else:
        v = round(v, 2) or 0.0
        text = (f"{v:+,.2f}" if sign else f"{v:,.2f}").rstrip("0").rstrip(".")
    return f"{text}원" if language == "ko" else f"KRW {text}"


def format_pct(value: float | int | None, *, sign: bool = True, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.032`` → ``+3.2%`` (``3.2%`` without ``sign``); ``–``
    for None or NaN, ``∞`` for infinities; a value that rounds to zero shows no sign."""
    v = _finite(value)
    if v is None:
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    scaled = round(v * 100, digits) or 0.0
    if scaled == 0:
        return f"{0:.{digits}f}%"
    return f"{scaled:+,.{digits}f}%" if sign else f"{scaled:,.{digits}f}%"


def format_quantity(value: float | int | None) -> str:
    """A share or coin quantity: whole numbers with separators (``1,200``), fractions with up
    to 8 decimals (``0.015``); ``–`` for None or NaN."""
    v = _finite(value)
    if v is None:
        return MISSING
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:,.8f}".rstrip("0").rstrip(".")


# ------------------------------------------------------------------------------------------
# Labels

_LABELS: dict[str, tuple[str, str]] = {
    "preliminary": ("장중 잠정 (15:10)", "buy-window (preliminary)"),
    "final": ("장마감 확정", "final"),
    "gate": ("게이트", "Gate"),
    "candidates": ("후보 {n}개", "{n} candidates"),
    "shown": ("상위 {n}개 표시", "top {n} shown"),
    "no_signals": ("신호 없음", "no signals"),
    "not_tradeable": (
        "⚠️ 15:20 이후 결정 — 오늘은 매매할 수 없습니다",
        "⚠️ decided after 15:20 — not tradeable today",
    ),
    "entry": ("진입", "entry"),
    "stop": ("손절", "stop"),
    "target": ("목표", "target"),
    "score": ("점수", "score"),
    "grade": ("등급", "grade"),
    "reasons": ("근거", "reasons"),
    "more": ("외 {n}개", "+{n} more"),
    "news": ("뉴스", "news"),
    "gate_changed": ("마켓 게이트 변경", "Market Gate changed"),
    "as_of": ("기준", "as of"),
    "previous_as_of": ("이전 기준", "previous as of"),
    "reason": ("사유", "reason"),
    "analysis_completed": ("AI 분석 완료", "AI analysis completed"),
    "provider": ("제공자", "provider"),
    "analysed": ("분석 {n}종목", "{n} analysed"),
    "failed_n": ("실패 {n}", "{n} failed"),
    "no_picks": ("추천 종목 없음", "no picks"),
    "backtest_finished": ("백테스트 종료", "Backtest finished"),
    "state_completed": ("완료", "completed"),
    "state_failed": ("실패", "failed"),
    "state_cancelled": ("취소", "cancelled"),
    "period": ("기간", "period"),
    "run": ("실행 #{n}", "run {n}"),
    "total_return": ("총수익률", "total return"),
    "cagr": ("CAGR", "CAGR"),
    "sharpe": ("샤프", "Sharpe"),
    "mdd": ("MDD", "MDD"),
    "win_rate": ("승률", "win rate"),
    "trades": ("거래", "trades"),
    "error": ("오류", "error"),
    "position_opened": ("포지션 진입", "Position opened"),
    "position_closed": ("포지션 청산", "Position closed"),
    "portfolio": ("포트폴리오", "portfolio"),
    "strategy": ("전략", "strategy"),
    "quantity": ("{q}주", "{q} shares"),
    "amount": ("금액", "value"),
    "pnl": ("손익", "P&L"),
    "job_dead_lettered": ("⚠️ 작업 실패 (데드레터)", "⚠️ Job dead-lettered"),
    "task": ("작업", "task"),
    "task_id": ("ID", "id"),
    "error_type": ("오류 유형", "error type"),
    "attempts": ("시도 {n}회", "{n} attempts"),
    "dead_letter": ("데드레터 #{n}", "dead letter #{n}"),
    "data_stale": ("⚠️ 데이터 지연", "⚠️ Data stale"),
    "latest": ("최신", "latest"),
    "expected": ("기대", "expected"),
    "lag": ("지연 {n}거래일", "{n} sessions behind"),
    "crypto_volatility": ("⚡ 변동성 경보", "⚡ Volatility alert"),
    "crypto_signal": ("🪙 코인 신호", "🪙 Crypto signal"),
    "action_BUY": ("매수", "BUY"),
    "action_SELL": ("매도", "SELL"),
    "action_HOLD": ("관망", "HOLD"),
    "confidence": ("신뢰도", "confidence"),
    "risks": ("위험", "risks"),
    "decided_by": ("판단", "by"),
    "hour_move": ("1시간 변동", "1-hour move"),
    "realized_vol": ("실현 변동성", "realized volatility"),
    "sigma_threshold": ("기준 {v}σ", "threshold {v}σ"),
    "ops_alert_firing": ("🚨 운영 경보", "🚨 Alert"),
    "ops_alert_resolved": ("✅ 경보 해제", "✅ Resolved"),
    "severity": ("심각도", "severity"),
    "runbook": ("런북", "runbook"),
    "since": ("시작", "since"),
    "daily_summary": ("일일 요약", "Daily summary"),
    "new_signals": ("신규 신호", "new signals"),
    "none": ("없음", "none"),
    "open_signals": ("진행 중 신호 {n}개", "{n} open signals"),
    "closed_today": ("오늘 청산 {n}개", "{n} closed today"),
    "average": ("평균 {v}", "average {v}"),
    "kpis": ("전략별 성과", "Track record by strategy"),
    "closed_n": ("청산 {n}", "{n} closed"),
    "avg_return": ("평균", "avg"),
    "profit_factor": ("PF", "PF"),
    "portfolios": ("페이퍼 포트폴리오", "Paper portfolios"),
    "equity": ("평가금", "equity"),
    "day": ("일간", "day"),
    "total": ("누적", "total"),
    "positions_n": ("보유 {n}", "{n} open"),
    "notify_test": ("알림 테스트", "Notification test"),
    "subscription": ("구독", "subscription"),
    "test_body": (
        "이 메시지가 보이면 구독이 대상에 도달합니다.",
        "If you can read this, the subscription reaches its target.",
    ),
}

_STRATEGY_NAMES: dict[str, tuple[str, str]] = {
    "closing_bet": ("종가베팅", "closing bet"),
    "vcp": ("VCP", "VCP"),
}

_GATE_EMOJI = {"GREEN": "🟢", "YELLOW": "🟡", "RED": "🔴", "UNKNOWN": "⚪"}


@dataclass(frozen=True)
class _Lang:
    language: str

    def __call__(self, key: str, **values: object) -> str:
        ko, en = _LABELS[key]
        text = ko if self.language == "ko" else en
        return text.format(**values) if values else text

    def krw(self, value: float | int | None, *, sign: bool = False) -> str:
        return format_krw(value, self.language, sign=sign)

    def strategy(self, name: str) -> str:
        known = _STRATEGY_NAMES.get(name)
        if known is None:
            return _clean(name, NAME_CHARS)
        return known[0] if self.language == "ko" else known[1]

    def phase(self, phase: str) -> str:
        return self("preliminary") if phase == "preliminary" else self("final")


# ------------------------------------------------------------------------------------------
# Segments: a message is lines of (style, text); the style says how the channel shows it.

_PLAIN, _BOLD, _ITALIC, _CODE, _RAW = "", "b", "i", "code", "raw"
_Seg = tuple[str, str]
_Line = list[_Seg]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


def _clean(value: object, limit: int | None = None) -> str:
    """A supplied value as one line of text: control characters, line breaks and
    bidirectional overrides become spaces, runs of spaces one space; longer than ``limit``
    characters is cut with "…"."""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", str(value))).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _t(text: str) -> _Seg:
    return (_PLAIN, text)


def _b(text: str) -> _Seg:
    return (_BOLD, text)


def _i(text: str) -> _Seg:
    return (_ITALIC, text)


def _c(text: str) -> _Seg:
    return (_CODE, text)


@dataclass(frozen=True)
class _Style:
    escape: Callable[[str], str]
    code_escape: Callable[[str], str]
    wraps: dict[str, tuple[str, str]]


def _discord_code(s: str) -> str:
    # No escapes inside a code span: a backslash would show. Keep the span closed and
    # mentions dead.
    return s.replace("`", "ˋ").replace("@", "@\u200b")


def _slack_code(s: str) -> str:
    return escape_slack(s.replace("`", "ˋ"))


def _identity(s: str) -> str:
    return s


_HTML_WRAPS = {_BOLD: ("<b>", "</b>"), _ITALIC: ("<i>", "</i>"), _CODE: ("<code>", "</code>")}
_STYLES: dict[str, _Style] = {
    "telegram": _Style(escape_telegram_html, escape_telegram_html, _HTML_WRAPS),
    "slack": _Style(
        escape_slack, _slack_code, {_BOLD: ("*", "*"), _ITALIC: ("_", "_"), _CODE: ("`", "`")}
    ),
    "discord": _Style(
        escape_discord,
        _discord_code,
        {_BOLD: ("**", "**"), _ITALIC: ("*", "*"), _CODE: ("`", "`")},
    ),
    "plain": _Style(_identity, _identity, {}),
    "html": _Style(escape_html, escape_html, _HTML_WRAPS),
}


def _write(line: _Line, style: _Style) -> str:
    out: list[str] = []
    for kind, raw in line:
        if kind == _RAW:
            out.append(raw)
            continue
        text = _CONTROL.sub(" ", raw)
        if not text:
            continue
        escaped = style.code_escape(text) if kind == _CODE else style.escape(text)
        if kind in style.wraps and text.strip():
            opening, closing = style.wraps[kind]
            out.append(f"{opening}{escaped}{closing}")
        else:
            out.append(escaped)
    return "".join(out)


# ------------------------------------------------------------------------------------------
# Templates: each returns (subject, lines); the subject is plain text.

_Doc = tuple[str, list[_Line]]


def _gate(value: str | None) -> str:
    if value is None:
        return MISSING
    colour = _clean(value, 20).upper()
    return f"{_GATE_EMOJI.get(colour, '⚪')} {colour}"


def _day(value: object) -> str:
    if value is None:
        return MISSING
    iso = getattr(value, "isoformat", None)
    return _clean(iso() if callable(iso) else value)


def _score(value: float | None) -> str:
    return format_number(value, 1)


def _instrument(code: str, name: str | None) -> _Line:
    line: _Line = [_c(_clean(code, 20))]
    if name:
        line += [_t(" "), _b(_clean(name, NAME_CHARS))]
    return line


def _versus(level: float | None, entry: float | None) -> str:
    if level is None or entry is None or not entry:
        return ""
    return f" ({format_pct(level / entry - 1)})"


def _signals_header(p: SignalsPublished, lang: _Lang) -> tuple[str, list[_Line]]:
    title = f"{lang.strategy(p.strategy)} {p.trade_date.isoformat()} · {lang.phase(p.phase)}"
    counts = lang("candidates", n=f"{p.count:,}")
    lines: list[_Line] = [
        [_b(title)],
        [_t(f"{lang('gate')} {_gate(p.gate)} · {counts}")],
    ]
    if p.tradeable is False:
        lines.append([_b(lang("not_tradeable"))])
    return f"{title} — {counts}", lines


def _closing_bet(p: SignalsPublished, lang: _Lang) -> _Doc:
    subject, lines = _signals_header(p, lang)
    if len(p.signals) < p.count:
        lines[1].append(_t(f" ({lang('shown', n=len(p.signals))})"))
    if not p.signals:
        lines.append([_i(lang("no_signals"))])
    for s in p.signals:
        lines.append([])
        head: _Line = [_b(f"[{_clean(s.grade or MISSING, 4)}]"), _t(" ")]
        head += _instrument(s.code, s.name)
        if s.market:
            head.append(_t(f" ({_clean(s.market, 20)})"))
        lines.append(head)
        lines.append(_closing_bet_levels(s, lang))
        if s.reasons:
            shown = [_clean(r, REASON_CHARS) for r in s.reasons[:REASONS_SHOWN]]
            more = len(s.reasons) - len(shown)
            text = " · ".join(shown) + (f" ({lang('more', n=more)})" if more else "")
            lines.append([_t(f"{lang('reasons')}: "), _t(text)])
        if s.news:
            lines.append([_t("📰 "), _i(_clean(s.news, NEWS_CHARS))])
    return subject, lines


def _closing_bet_levels(s: SignalItem, lang: _Lang) -> _Line:
    return [
        _t(
            f"{lang('entry')} {lang.krw(s.entry)} · "
            f"{lang('stop')} {lang.krw(s.stop)}{_versus(s.stop, s.entry)} · "
            f"{lang('target')} {lang.krw(s.target)}{_versus(s.target, s.entry)} · "
            f"{lang('score')} {_score(s.score)}"
        )
    ]


def _ranked(p: SignalsPublished, lang: _Lang, top: int) -> _Doc:
    subject, lines = _signals_header(p, lang)
    shown = p.signals[:top]
    if len(shown) < p.count:
        lines[1].append(_t(f" ({lang('shown', n=len(shown))})"))
    if not shown:
        lines.append([_i(lang("no_signals"))])
    else:
        lines.append([])
    for rank, s in enumerate(shown, start=1):
        line: _Line = [_t(f"{rank}. "), *_instrument(s.code, s.name)]
        line.append(
            _t(f" · {lang('score')} {_score(s.score)} · {lang('entry')} {lang.krw(s.entry)}")
        )
        if s.grade:
            line.append(_t(f" · {lang('grade')} {_clean(s.grade, 4)}"))
        lines.append(line)
    return subject, lines


def _gate_changed(p: GateChanged, lang: _Lang) -> _Doc:
    change = f"{_gate(p.previous)} → {_gate(p.current)}"
    lines: list[_Line] = [[_b(lang("gate_changed")), _t(f": {change}")]]
    facts = [f"{lang('score')} {_score(p.score)}"]
    if p.as_of:
        facts.append(f"{lang('as_of')} {_clean(p.as_of, 40)}")
    if p.previous_as_of:
        facts.append(f"{lang('previous_as_of')} {_clean(p.previous_as_of, 40)}")
    lines.append([_t(" · ".join(facts))])
    if p.reason:
        lines.append([_t(f"{lang('reason')}: "), _t(_clean(p.reason, SUMMARY_CHARS))])
    return f"{lang('gate_changed')}: {change}", lines


def _analysis(p: AnalysisCompleted, lang: _Lang) -> _Doc:
    title = f"{lang('analysis_completed')} · {lang.strategy(p.strategy)} "
    title += f"{p.trade_date.isoformat()} · {lang.phase(p.phase)}"
    facts = [lang("analysed", n=p.analysed)]
    if p.failed:
        facts.append(lang("failed_n", n=p.failed))
    lines: list[_Line] = [
        [_b(title)],
        [_t(f"{lang('provider')} {_clean(p.provider or MISSING, 40)} · {' · '.join(facts)}")],
    ]
    if not p.picks:
        lines.append([_i(lang("no_picks"))])
    for rank, pick in enumerate(p.picks, start=1):
        lines.append([])
        line: _Line = [_t(f"{rank}. "), *_instrument(pick.code, pick.name)]
        if pick.recommendation:
            line += [_t(" — "), _b(_clean(pick.recommendation, 40))]
        lines.append(line)
        if pick.summary:
            lines.append([_t("↳ "), _i(_clean(pick.summary, SUMMARY_CHARS))])
    return f"{title} — {' · '.join(facts)}", lines


_BACKTEST_KPIS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("total_return", ("total_return",), "pct"),
    ("cagr", ("cagr",), "pct"),
    ("sharpe", ("sharpe",), "ratio"),
    ("mdd", ("max_drawdown", "mdd"), "pct"),
    ("win_rate", ("win_rate",), "rate"),
    ("trades", ("trades",), "count"),
)


def _kpi_value(kpis: dict[str, float | int | None], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key in kpis:
            value = kpis[key]
            return None if value is None else float(value)
    return None


def _backtest(p: BacktestFinished, lang: _Lang) -> _Doc:
    state_key = f"state_{p.state}"
    state = lang(state_key) if state_key in _LABELS else _clean(p.state, 20)
    title = f"{lang('backtest_finished')} · {lang.strategy(p.strategy)} · "
    title += f"{lang('run', n=p.run_id)} · {state}"
    lines: list[_Line] = [[_b(title)]]
    if p.start is not None or p.end is not None:
        lines.append([_t(f"{lang('period')} {_day(p.start)} … {_day(p.end)}")])
    shown: list[str] = []
    for label, keys, kind in _BACKTEST_KPIS:
        value = _kpi_value(p.kpis, keys)
        if kind == "pct":
            text = format_pct(value)
        elif kind == "rate":
            text = format_pct(value, sign=False)
        elif kind == "count":
            text = format_quantity(value)
        else:
            text = format_number(value, 2)
        shown.append(f"{lang(label)} {text}")
    lines.append([_t(" · ".join(shown))])
    if p.error:
        lines.append([_t(f"{lang('error')}: "), _t(_clean(p.error, ERROR_CHARS))])
    return title, lines


def _position_lines(p: PositionOpened | PositionClosed, lang: _Lang, key: str) -> list[_Line]:
    head: _Line = [
        _b(lang(key)),
        _t(f" · {lang('portfolio')} "),
        _b(_clean(p.portfolio, NAME_CHARS)),
    ]
    trade: _Line = [*_instrument(p.code, p.name)]
    trade.append(
        _t(
            f" · {lang('quantity', q=format_quantity(p.quantity))} @ {lang.krw(p.price)}"
            f" ({lang('amount')} {lang.krw(p.quantity * p.price)})"
        )
    )
    facts = [p.trade_date.isoformat()]
    if p.strategy:
        facts.insert(0, f"{lang('strategy')} {lang.strategy(p.strategy)}")
    return [head, trade, [_t(" · ".join(facts))]]


def _position_opened(p: PositionOpened, lang: _Lang) -> _Doc:
    subject = (
        f"{lang('position_opened')} · {_clean(p.portfolio, NAME_CHARS)} · {_clean(p.code, 20)}"
    )
    if p.name:
        subject += f" {_clean(p.name, NAME_CHARS)}"
    return subject, _position_lines(p, lang, "position_opened")


def _position_closed(p: PositionClosed, lang: _Lang) -> _Doc:
    lines = _position_lines(p, lang, "position_closed")
    result = f"{lang('pnl')} {lang.krw(p.pnl, sign=True)} ({format_pct(p.return_pct)})"
    outcome: _Line = [_b(result)]
    if p.reason:
        outcome += [_t(f" · {lang('reason')} "), _t(_clean(p.reason, 80))]
    lines.insert(2, outcome)
    subject = (
        f"{lang('position_closed')} · {_clean(p.portfolio, NAME_CHARS)} · {_clean(p.code, 20)}"
    )
    if p.name:
        subject += f" {_clean(p.name, NAME_CHARS)}"
    return f"{subject} · {format_pct(p.return_pct)}", lines


def _dead_letter(p: JobDeadLettered, lang: _Lang) -> _Doc:
    task = _clean(p.task_name, 120)
    lines: list[_Line] = [
        [_b(lang("job_dead_lettered"))],
        [_t(f"{lang('task')} "), _c(task), _t(f" · {lang('task_id')} "), _c(_clean(p.task_id, 80))],
    ]
    facts = [f"{lang('error_type')} {_clean(p.error_type or MISSING, 80)}"]
    if p.attempts is not None:
        facts.append(lang("attempts", n=p.attempts))
    if p.dead_letter_id is not None:
        facts.append(lang("dead_letter", n=p.dead_letter_id))
    lines.append([_t(" · ".join(facts))])
    if p.error:
        lines.append([_t(f"{lang('error')}: "), _t(_clean(p.error, ERROR_CHARS))])
    return f"{lang('job_dead_lettered')}: {task}", lines


def _data_stale(p: DataStale, lang: _Lang) -> _Doc:
    dataset = _clean(p.dataset, 80)
    lines: list[_Line] = [
        [_b(lang("data_stale")), _t(": "), _c(dataset)],
        [
            _t(
                f"{lang('latest')} {_day(p.latest)} · {lang('expected')} {_day(p.expected)} · "
                f"{lang('lag', n=p.lag_sessions)}"
            )
        ],
    ]
    return f"{lang('data_stale')}: {dataset} ({lang('lag', n=p.lag_sessions)})", lines


def _ops_alert(p: OpsAlert, lang: _Lang) -> _Doc:
    head = lang("ops_alert_firing" if p.status == "firing" else "ops_alert_resolved")
    name = _clean(p.alertname, 120)
    lines: list[_Line] = [[_b(head), _t(": "), _c(name)]]
    if p.summary:
        lines.append([_t(_clean(p.summary, ERROR_CHARS))])
    facts = []
    if p.severity:
        facts.append(f"{lang('severity')} {_clean(p.severity, 40)}")
    if p.starts_at is not None:
        facts.append(f"{lang('since')} {p.starts_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC")
    shown = {k: v for k, v in sorted(p.labels.items()) if k not in ("alertname", "severity")}
    facts += [f"{_clean(k, 40)}={_clean(v, 80)}" for k, v in list(shown.items())[:6]]
    if facts:
        lines.append([_t(" · ".join(facts))])
    if p.description and p.status == "firing":
        lines.append([_t(_clean(p.description, ERROR_CHARS))])
    if p.runbook:
        lines.append([_t(f"{lang('runbook')}: "), _c(_clean(p.runbook, 200))])
    return f"{head}: {name}", lines


def _crypto_signal(p: CryptoSignal, lang: _Lang) -> _Doc:
    market = _clean(p.market, 64)
    hour = f"{p.at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    action = lang(f"action_{p.action}")
    lines: list[_Line] = [
        [_b(lang("crypto_signal")), _t(": "), _c(market), _t(f" · {_clean(action, 20)} · {hour}")],
        [
            _t(
                f"KRW {p.price:,.0f} · {lang('confidence')} {p.confidence:.0%} · "
                f"{lang('decided_by')} {_clean(p.analyst, 16)} ({_clean(p.model, 64)})"
            )
        ],
    ]
    for reason in p.reasons[:3]:
        lines.append([_t("· " + _clean(reason, 200))])
    if p.risk_flags:
        flags = ", ".join(_clean(f, 60) for f in p.risk_flags[:8])
        lines.append([_t(f"{lang('risks')}: {flags}")])
    return f"{lang('crypto_signal')}: {market} {_clean(action, 20)}", lines


def _crypto_volatility(p: CryptoVolatility, lang: _Lang) -> _Doc:
    market = _clean(p.market, 64)
    change = math.expm1(p.move)
    hour = f"{p.at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    lines: list[_Line] = [
        [_b(lang("crypto_volatility")), _t(": "), _c(market), _t(f" · {hour}")],
        [
            _t(
                f"{lang('hour_move')} {format_pct(change)} ({p.move_sigma:+.1f}σ) · "
                f"{lang('realized_vol')} {p.realized_sigma:.1f}σ · "
                f"{lang('sigma_threshold', v=f'{p.threshold:g}')}"
            )
        ],
        [_t(f"KRW {p.price_hour_ago:,.0f} → KRW {p.price:,.0f}")],
    ]
    return f"{lang('crypto_volatility')}: {market} {format_pct(change)}", lines


def _daily_summary(p: DailySummary, lang: _Lang) -> _Doc:
    title = f"{lang('daily_summary')} {p.trade_date.isoformat()}"
    lines: list[_Line] = [[_b(title)], [_t(f"{lang('gate')} {_gate(p.gate)}")]]
    if p.new_signals:
        new = " · ".join(f"{lang.strategy(k)} {v:,}" for k, v in p.new_signals.items())
    else:
        new = lang("none")
    lines.append([_t(f"{lang('new_signals')}: "), _t(new)])
    closed = lang("closed_today", n=f"{p.closed_today:,}")
    if p.closed_today:
        closed += f" ({lang('average', v=format_pct(p.closed_today_avg_return))})"
    lines.append([_t(f"{lang('open_signals', n=f'{p.open_signals:,}')} · {closed}")])
    if p.kpis:
        lines += [[], [_b(lang("kpis"))]]
        for k in p.kpis:
            lines.append(
                [
                    _t(f"{lang.strategy(k.strategy)}: "),
                    _t(
                        f"{lang('closed_n', n=f'{k.closed:,}')} · "
                        f"{lang('win_rate')} {format_pct(k.win_rate, sign=False)} · "
                        f"{lang('avg_return')} {format_pct(k.avg_return)} · "
                        f"{lang('profit_factor')} {format_number(k.profit_factor, 2)}"
                    ),
                ]
            )
    if p.portfolios:
        lines += [[], [_b(lang("portfolios"))]]
        for pf in p.portfolios:
            lines.append(
                [
                    _t(f"{_clean(pf.name, NAME_CHARS)}: "),
                    _t(
                        f"{lang('equity')} {lang.krw(pf.equity)} · "
                        f"{lang('day')} {format_pct(pf.day_return)} · "
                        f"{lang('total')} {format_pct(pf.total_return)} · "
                        f"{lang('positions_n', n=pf.open_positions)}"
                    ),
                ]
            )
    return f"{title} — {lang('gate')} {_gate(p.gate)}", lines


def _notify_test(p: NotifyTest, lang: _Lang) -> _Doc:
    subscription = _clean(p.subscription, NAME_CHARS)
    lines: list[_Line] = [
        [_b(lang("notify_test")), _t(f" · {lang('subscription')} "), _c(subscription)],
        [_t(lang("test_body"))],
    ]
    if p.note:
        lines.append([_i(_clean(p.note, SUMMARY_CHARS))])
    return f"{lang('notify_test')} · {subscription}", lines


def _document(envelope: Envelope, lang: _Lang, top: int) -> _Doc:
    p = envelope.payload
    if isinstance(p, SignalsPublished):
        return _closing_bet(p, lang) if p.strategy == CLOSING_BET else _ranked(p, lang, top)
    if isinstance(p, GateChanged):
        return _gate_changed(p, lang)
    if isinstance(p, AnalysisCompleted):
        return _analysis(p, lang)
    if isinstance(p, BacktestFinished):
        return _backtest(p, lang)
    if isinstance(p, PositionClosed):  # before PositionOpened, which it extends
        return _position_closed(p, lang)
    if isinstance(p, PositionOpened):
        return _position_opened(p, lang)
    if isinstance(p, JobDeadLettered):
        return _dead_letter(p, lang)
    if isinstance(p, DataStale):
        return _data_stale(p, lang)
    if isinstance(p, OpsAlert):
        return _ops_alert(p, lang)
    if isinstance(p, CryptoVolatility):
        return _crypto_volatility(p, lang)
    if isinstance(p, CryptoSignal):
        return _crypto_signal(p, lang)
    if isinstance(p, DailySummary):
        return _daily_summary(p, lang)
    if isinstance(p, NotifyTest):
        return _notify_test(p, lang)
    raise ValidationError(
        f"event {envelope.id}: no message template for {envelope.type!r} "
        f"(payload {type(p).__name__})",
        field="type",
        value=envelope.type,
    )


def _html_document(subject: str, body: list[str], language: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{language}">\n<head><meta charset="utf-8">'
        f"<title>{escape_html(subject)}</title></head>\n"
        '<body style="font-family: sans-serif; line-height: 1.5">\n'
        + "<br>\n".join(body)
        + "\n</body>\n</html>\n"
    )


def render(envelope: Envelope, *, channel: str, language: str = "ko", top: int = 10) -> Rendered:
    """``envelope`` as ``channel`` shows it in ``language`` (``ko`` or ``en``).

    ``signals.published`` of :data:`CLOSING_BET` is the closing-bet list (every signal of the
    payload, each with grade, entry, stop, target, score, a few reasons and the news); of any
    other strategy the ranked list of its best ``top`` signals. Every other event type has its
    own template. ``parts`` are cut to ``PART_LIMITS[channel]``; ``html`` is set for
    ``email`` only.

    Raises:
        quant.errors.ValidationError: an unknown ``channel`` (``field="channel"``) or
            ``language`` (``field="language"``), ``top`` below 1 (``field="top"``), or a
            payload without a template (``field="type"``).
    """
    if channel not in CHANNELS:
        raise ValidationError(
            f"unknown notification channel {channel!r} (known: {', '.join(CHANNELS)})",
            field="channel",
            value=channel,
        )
    if language not in LANGUAGES:
        raise ValidationError(
            f"unknown message language {language!r} (known: {', '.join(LANGUAGES)})",
            field="language",
            value=language,
        )
    if top < 1:
        raise ValidationError(f"top must be at least 1, got {top}", field="top", value=top)
    lang = _Lang(language)
    subject, lines = _document(envelope, lang, top)
    subject = _clean(subject, SUBJECT_CHARS)
    if envelope.simulated:
        label = SIMULATED_LABELS[language]
        subject = f"{label} {subject}"
        lines = [[(_RAW, f"{label} "), *lines[0]], *lines[1:]]
    plain = [_write(line, _STYLES["plain"]) for line in lines]
    if channel in ("telegram", "slack", "discord"):
        written = [_write(line, _STYLES[channel]) for line in lines]
    else:
        written = plain
    parts = chunk(written, PART_LIMITS[channel], markup=MARKUP[channel])
    html_body = None
    if channel == "email":
        html_body = _html_document(
            subject, [_write(line, _STYLES["html"]) for line in lines], language
        )
    return Rendered(
        channel=channel,
        language=language,
        subject=subject,
        parts=parts,
        plain="\n".join(plain),
        html=html_body,
    )
