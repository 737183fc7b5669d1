"""News items and AI analyses in the database.

News is stored once per key (the normalized URL's hash): a second fetch of the same article
adds nothing, and only its new instrument mentions. Analyses are cached per ``(instrument,
trade_date, model, prompt_version)``: a succeeded row is the cache; a failed row records why
and is replaced when a later attempt succeeds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from db.models import AiAnalysis, Instrument, NewsItem, NewsMention
from db.store import as_utc, insert_for


def store_news(
    session: Session,
    items: Sequence[Any],
    instrument_ids: Mapping[str, int],
    *,
    simulated: bool = False,
) -> dict[str, int]:
    """Store :class:`quant.news.NewsItem` s and their mentions (``instrument_ids``: "MARKET:
    TICKER" → id; unknown instruments are ignored). Returns ``{"items", "new", "mentions"}``:
    items offered, items new to the table, mention rows added."""
    if not items:
        return {"items": 0, "new": 0, "mentions": 0}
    unique = {item.key: item for item in items}
    table: Table = NewsItem.__table__  # type: ignore[assignment]
    rows = [
        {
            "key": key,
            "source": item.source[:64],
            "url": item.url,
            "title": item.title,
            "summary": item.summary,
            "published_at": item.published_at,
            "simulated": simulated,
        }
        for key, item in unique.items()
    ]
    stmt = insert_for(session, table).on_conflict_do_nothing(index_elements=["key"])
    result = session.execute(stmt.returning(table.c.key), rows)
    new = len(result.all())
    ids = dict(
        session.execute(
            select(NewsItem.key, NewsItem.id).where(NewsItem.key.in_(list(unique)))
        ).all()
    )
    mentions = [
        {"news_id": ids[key], "instrument_id": instrument_ids[name]}
        for key, item in unique.items()
        for name in set(item.instruments)
        if name in instrument_ids and key in ids
    ]
    added = 0
    if mentions:
        mention_table: Table = NewsMention.__table__  # type: ignore[assignment]
        stmt = insert_for(session, mention_table).on_conflict_do_nothing(
            index_elements=["news_id", "instrument_id"]
        )
        added = len(session.execute(stmt.returning(mention_table.c.news_id), mentions).all())
    return {"items": len(items), "new": new, "mentions": added}


def news_for(
    session: Session, instrument_id: int, *, since: dt.datetime, until: dt.datetime
) -> list[NewsItem]:
    """News mentioning the instrument published in ``[since, until]`` (UTC), newest first;
    undated items are included when they were stored in that range."""
    rows = session.execute(
        select(NewsItem)
        .join(NewsMention, NewsMention.news_id == NewsItem.id)
        .where(NewsMention.instrument_id == instrument_id)
        .where(
            ((NewsItem.published_at >= since) & (NewsItem.published_at <= until))
            | (
                NewsItem.published_at.is_(None)
                & (NewsItem.created_at >= since)
                & (NewsItem.created_at <= until)
            )
        )
        .order_by(NewsItem.published_at.desc(), NewsItem.id.desc())
        .limit(20)
    ).scalars()
    return list(rows)


def cached_analysis(
    session: Session, instrument_id: int, trade_date: dt.date, model: str, prompt_version: str
) -> AiAnalysis | None:
    """The stored analysis for the cache key, succeeded or failed (``None``: never tried)."""
    return session.execute(
        select(AiAnalysis).where(
            AiAnalysis.instrument_id == instrument_id,
            AiAnalysis.trade_date == trade_date,
            AiAnalysis.model == model,
            AiAnalysis.prompt_version == prompt_version,
        )
    ).scalar_one_or_none()


def save_analysis(session: Session, values: Mapping[str, Any]) -> None:
    """Insert or replace the analysis of ``values``' cache key, except that a failure never
    replaces a success (a late failed retry must not erase a stored result)."""
    table: Table = AiAnalysis.__table__  # type: ignore[assignment]
    insert = insert_for(session, table)
    columns = [k for k in values if k not in ("instrument_id", "trade_date", "model",
                                              "prompt_version")]  # fmt: skip
    stmt = insert.values(**values).on_conflict_do_update(
        index_elements=["instrument_id", "trade_date", "model", "prompt_version"],
        set_={c: insert.excluded[c] for c in columns},
        where=(table.c.status != "succeeded") | (insert.excluded.status == "succeeded"),
    )
    session.execute(stmt)


def news_scores(
    session: Session, trade_date: dt.date, instrument_ids: Sequence[int]
) -> dict[int, int]:
    """The news score (0–3) of each instrument's succeeded analysis of ``trade_date`` (the
    most recent when several models or prompt versions analysed it)."""
    if not instrument_ids:
        return {}
    rows = session.execute(
        select(AiAnalysis.instrument_id, AiAnalysis.news_score)
        .where(
            AiAnalysis.trade_date == trade_date,
            AiAnalysis.status == "succeeded",
            AiAnalysis.instrument_id.in_(list(instrument_ids)),
            AiAnalysis.news_score.is_not(None),
        )
        .order_by(AiAnalysis.updated_at, AiAnalysis.id)
    ).all()
    return {int(i): int(score) for i, score in rows if score is not None}


# --- reads for reports (the HTTP API) ---------------------------------------------------------
def latest_analysis_date(
    session: Session, *, strategy: str | None = None, instrument_id: int | None = None
) -> dt.date | None:
    """The latest trading day any analysis is stored for (of ``strategy`` / of
    ``instrument_id`` when given), ``None`` when there is none."""
    stmt = select(func.max(AiAnalysis.trade_date))
    if strategy is not None:
        stmt = stmt.where(AiAnalysis.strategy == strategy)
    if instrument_id is not None:
        stmt = stmt.where(AiAnalysis.instrument_id == instrument_id)
    found = session.execute(stmt).scalar()
    return _as_date(found)


def list_analyses(
    session: Session,
    trade_date: dt.date,
    *,
    strategy: str | None = None,
    instrument_id: int | None = None,
    limit: int | None = None,
) -> list[tuple[AiAnalysis, Instrument]]:
    """The analyses stored for ``trade_date`` (of ``strategy`` / ``instrument_id`` when
    given) with their instruments: highest news score first (unscored last), then by
    instrument and row id; at most ``limit`` (``None``: all)."""
    stmt = (
        select(AiAnalysis, Instrument)
        .join(Instrument, Instrument.id == AiAnalysis.instrument_id)
        .where(AiAnalysis.trade_date == trade_date)
    )
    if strategy is not None:
        stmt = stmt.where(AiAnalysis.strategy == strategy)
    if instrument_id is not None:
        stmt = stmt.where(AiAnalysis.instrument_id == instrument_id)
    stmt = stmt.order_by(
        AiAnalysis.news_score.desc().nulls_last(),
        Instrument.market,
        Instrument.ticker,
        AiAnalysis.id,
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(a, i) for a, i in session.execute(stmt).all()]


def latest_news_time(session: Session) -> dt.datetime | None:
    """When the newest stored news item was published (stored, for an undated one)."""
    found = session.execute(
        select(func.max(func.coalesce(NewsItem.published_at, NewsItem.created_at)))
    ).scalar()
    if isinstance(found, str):  # SQLite hands max() over an expression back as text
        found = dt.datetime.fromisoformat(found)
    return None if found is None else as_utc(found)


def list_news(
    session: Session, *, since: dt.datetime, until: dt.datetime, limit: int | None = None
) -> list[NewsItem]:
    """News published in ``[since, until)`` (UTC; an undated item by when it was stored),
    newest first, at most ``limit`` (``None``: all)."""
    moment = func.coalesce(NewsItem.published_at, NewsItem.created_at)
    stmt = (
        select(NewsItem)
        .where(moment >= since, moment < until)
        .order_by(moment.desc(), NewsItem.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.execute(stmt).scalars())


def news_mentions(session: Session, news_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per news item id: the instruments it mentions (``MARKET:TICKER``, sorted)."""
    if not news_ids:
        return {}
    rows = session.execute(
        select(NewsMention.news_id, Instrument.market, Instrument.ticker)
        .join(Instrument, Instrument.id == NewsMention.instrument_id)
        .where(NewsMention.news_id.in_(list(news_ids)))
        .order_by(NewsMention.news_id, Instrument.market, Instrument.ticker)
    ).all()
    out: dict[int, list[str]] = {int(i): [] for i in news_ids}
    for news_id, market, ticker in rows:
        out[int(news_id)].append(f"{market}:{ticker}")
    return out


def _as_date(value: object) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
