"""Selecting the parts of an :class:`~quant.ai.models.AnalysisRequest` an analyzer may use.

Shared by the prompt (what Gemini sees) and the offline rules, so both judge the same inputs:
nothing dated after the trade date (look-ahead in a backtest), news deduplicated by title and
ordered newest first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from quant.ai._text import KST, clean_text, kst_date, to_date
from quant.ai.models import AnalysisRequest, NewsInput

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=KST) if moment.tzinfo is None else moment


def usable_news(request: AnalysisRequest) -> list[NewsInput]:
    """The request's news, newest first (undated items last, in input order), without items
    published after the trade date (KST), without items whose title and summary are both
    empty, and with one item per title (the newest; compared case-insensitively after
    cleaning)."""
    dated: list[tuple[int, float, int, NewsInput]] = []
    for index, item in enumerate(request.news):
        if item.published_at is not None and kst_date(item.published_at) > request.trade_date:
            continue
        if not clean_text(item.title) and not clean_text(item.summary):
            continue
        if item.published_at is None:
            dated.append((1, 0.0, index, item))
        else:
            age = -(_aware(item.published_at) - _EPOCH).total_seconds()
            dated.append((0, age, index, item))
    dated.sort(key=lambda row: row[:3])
    seen: set[str] = set()
    result: list[NewsInput] = []
    for *_, item in dated:
        key = clean_text(item.title).casefold() or "summary:" + clean_text(item.summary, 200)
        if key in seen:
            continue
        seen.add(key)
        result.append(item)
    return result


def usable_rows(rows: Sequence[Mapping[str, Any]], trade_date: dt.date) -> list[Mapping[str, Any]]:
    """``rows`` (candles or flows, oldest first) without those dated after ``trade_date``.

    Rows whose ``date`` cannot be parsed are kept where they stand.
    """
    kept: list[Mapping[str, Any]] = []
    for row in rows:
        day = to_date(row.get("date"))
        if day is not None and day > trade_date:
            continue
        kept.append(row)
    return kept
