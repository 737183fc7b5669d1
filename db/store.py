"""Idempotent bulk writes of market data: every write is an upsert on the business key.

A row whose values are unchanged is not rewritten (the ``ON CONFLICT … DO UPDATE`` carries a
``WHERE … IS DISTINCT FROM`` guard), so re-running a collection leaves the table untouched —
not even ``updated_at`` moves. Works on PostgreSQL and SQLite.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import (
    Table,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.bulk import copy_upsert, sqlite_upsert
from db.models import DailyCandle, DataRejection, Instrument, IntradayCandle, InvestorFlow
from quant.errors import ServiceUnavailable, ValidationError
from quant.market.quality import Rejection, flag_daily_candles
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INTRADAY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
)
from quant.market.types import Instrument as InstrumentRecord

#: Rows per INSERT statement: below SQLite's and PostgreSQL's bound-parameter limits.
BATCH_ROWS = 1_000


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """What an upsert did: rows new, rows whose values changed, rows already identical."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def as_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


def insert_for(session: Session, table: Table) -> Any:
    """A dialect-specific INSERT for ``table`` (PostgreSQL or SQLite), which has
    ``on_conflict_do_update``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts are implemented for postgresql and sqlite, not {dialect}")


def upsert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
    compare: Sequence[str],
) -> UpsertCounts:
    """Insert ``rows`` into ``table``; on a conflict of ``key``, update the ``compare`` columns
    only where at least one differs. Keys must be unique within ``rows``.

    Raises:
        quant.errors.ValidationError: ``rows`` repeats a key.
    """
    if not rows:
        return UpsertCounts()
    keys = [tuple(r[k] for k in key) for r in rows]
    if len(set(keys)) != len(keys):
        raise ValidationError(
            f"duplicate {'/'.join(key)} in a batch for {table.name}", field=",".join(key)
        )
    key_cols = [table.c[k] for k in key]
    insert = insert_for(session, table)
    excluded = insert.excluded
    upsert = insert.on_conflict_do_update(
        index_elements=list(key),
        set_={**{c: excluded[c] for c in compare}, "updated_at": func.now()},
        where=or_(*(table.c[c].is_distinct_from(excluded[c]) for c in compare)),
    )
    # The upsert runs as an executemany, which SQLAlchemy batches into multi-row INSERTs
    # ("insertmanyvalues", compiled once) and through which RETURNING yields exactly the rows
    # inserted or updated; rows the WHERE guard skipped are not returned.
    if session.get_bind().dialect.name == "postgresql":
        # xmax = 0 marks a freshly inserted row version: the split between inserted and updated
        # comes from the same statement, exact even while another worker writes the same keys.
        upsert = upsert.returning(literal_column("(xmax = 0)"))
        total = UpsertCounts()
        for start in range(0, len(rows), BATCH_ROWS):
            batch = list(rows[start : start + BATCH_ROWS])
            flags = session.execute(upsert, batch).scalars().all()
            inserted = sum(1 for f in flags if f)
            total = total + UpsertCounts(inserted, len(flags) - inserted, len(batch) - len(flags))
        return total
    # SQLite: count the existing keys first. Exact, because the embedded engine begins every
    # transaction IMMEDIATE, so no other writer can interleave.
    upsert = upsert.returning(key_cols[0])
    count_existing = (
        select(func.count())
        .select_from(table)
        .where(tuple_(*key_cols).in_(bindparam("keys", expanding=True)))
    )
    total = UpsertCounts()
    for start in range(0, len(rows), BATCH_ROWS):
        batch = list(rows[start : start + BATCH_ROWS])
        existing = session.execute(
            count_existing, {"keys": keys[start : start + BATCH_ROWS]}
        ).scalar_one()
        affected = len(session.execute(upsert, batch).all())
        inserted = len(batch) - existing
        total = total + UpsertCounts(
            inserted, affected - inserted, existing - (affected - inserted)
        )
    return total


def upsert_instruments(
    session: Session,
    instruments: Iterable[InstrumentRecord],
    *,
    source: str,
    refresh: bool = True,
) -> dict[tuple[str, str], int]:
    """Upsert instruments by (market, ticker); return their ids keyed by (market, ticker).

    ``refresh=False`` only inserts the missing ones and leaves existing rows untouched (a
    collection of old sessions must not put back old names or a delisted status)."""
    rows = [
        {
            "market": i.market.value,
            "ticker": i.ticker,
            "name": i.name,
            "currency": i.currency,
            "listing_status": i.listing_status.value,
            "source": source,
        }
        for i in instruments
    ]
    if refresh:
        upsert_rows(
            session,
            Instrument.__table__,  # type: ignore[arg-type]
            rows,
            key=("market", "ticker"),
            compare=("name", "currency", "listing_status", "source"),
        )
    else:
        known = instrument_ids(session, {(r["market"], r["ticker"]) for r in rows})
        new = [r for r in rows if (r["market"], r["ticker"]) not in known]
        if not new:
            return known  # the usual case of a collection: every instrument is there
        insert = insert_for(session, Instrument.__table__)  # type: ignore[arg-type]
        session.execute(insert.on_conflict_do_nothing(index_elements=["market", "ticker"]), new)
    return instrument_ids(session, {(r["market"], r["ticker"]) for r in rows})


def instrument_ids(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids of the given (market, ticker) pairs that exist: one query per market (a market's
    whole listing when many of its tickers are asked for, cheaper than matching pairs)."""
    by_market: dict[str, set[str]] = {}
    for market, ticker in keys:
        by_market.setdefault(market, set()).add(ticker)
    found: dict[tuple[str, str], int] = {}
    for market, tickers in by_market.items():
        query = select(Instrument.ticker, Instrument.id).where(Instrument.market == market)
        if len(tickers) <= BATCH_ROWS // 10:
            query = query.where(Instrument.ticker.in_(sorted(tickers)))
        for ticker, ident in session.execute(query):
            if ticker in tickers:
                found[(market, ticker)] = int(ident)
    return found


def _with_ids(
    frame: pd.DataFrame,
    columns: Sequence[str],
    ids: Mapping[tuple[str, str], int],
    *,
    source: str,
    what: str,
) -> pd.DataFrame:
    """``frame`` (with ``columns``) with ``market``/``ticker`` replaced by ``instrument_id`` and
    a ``source`` column added.

    Raises:
        quant.errors.ValidationError: a column is missing, or a row names an instrument that
            is not in ``ids`` (callers reject those rows first, see quant.market.quality).
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(f"{what} frame lacks columns {missing}", field="columns")
    lookup = pd.DataFrame(
        [(m, t, i) for (m, t), i in ids.items()], columns=["market", "ticker", "instrument_id"]
    )
    merged = frame[list(columns)].merge(lookup, on=["market", "ticker"], how="left")
    unknown = merged["instrument_id"].isna()
    if unknown.any():
        sample = ", ".join(
            f"{m}:{t}"
            for m, t in merged.loc[unknown, ["market", "ticker"]]
            .head(5)
            .itertuples(index=False, name=None)
        )
        raise ValidationError(
            f"{what} for {int(unknown.sum())} row(s) whose instrument is not in the "
            f"instruments table: {sample}",
            field="ticker",
        )
    value_cols = [c for c in columns if c not in ("market", "ticker")]
    out = merged[["instrument_id", *value_cols]].copy()
    out["instrument_id"] = out["instrument_id"].astype("int64")
    out["source"] = source
    return out


def upsert_frame(
    session: Session,
    table: Table,
    frame: pd.DataFrame,
    *,
    key: Sequence[str],
    compare: Sequence[str],
) -> UpsertCounts:
    """Upsert a frame whose columns are ``key`` + ``compare``: through COPY and a temporary
    table on PostgreSQL (:func:`db.bulk.copy_upsert`), through one sqlite3 ``executemany`` on
    SQLite (:func:`db.bulk.sqlite_upsert`). Same guarantees either way."""
    if session.get_bind().dialect.name == "postgresql":
        return UpsertCounts(*copy_upsert(session, table, frame, key=key, compare=compare))
    return UpsertCounts(*sqlite_upsert(session, table, frame, key=key, compare=compare))


def upsert_daily_candles(
    session: Session,
    frame: pd.DataFrame,
    ids: Mapping[tuple[str, str], int],
    *,
    source: str,
) -> UpsertCounts:
    """Upsert a frame with :data:`DAILY_CANDLE_COLUMNS` by (instrument, trade date), with
    quality flags (zero volume, a move beyond the KRX limit — judged against the stored
    previous close for each ticker's first row) so doubtful bars are never stored as clean."""
    rows = _with_ids(frame, DAILY_CANDLE_COLUMNS, ids, source=source, what="daily candles")
    if not frame.empty:
        # Each ticker's first date (sort + drop_duplicates: a groupby min over date objects
        # would run in Python per group).
        first_rows = frame.sort_values("trade_date").drop_duplicates(["market", "ticker"])
        firsts = {
            (str(m), str(t)): d
            for m, t, d in first_rows[["market", "ticker", "trade_date"]].itertuples(
                index=False, name=None
            )
        }
        previous = previous_closes(session, ids, firsts)
        rows["quality_flags"] = flag_daily_candles(
            frame.reset_index(drop=True), previous
        ).to_numpy()
    else:
        rows["quality_flags"] = pd.Series(dtype=object)
    return upsert_frame(
        session,
        DailyCandle.__table__,  # type: ignore[arg-type]
        rows,
        key=("instrument_id", "trade_date"),
        compare=(
            "open",
            "high",
            "low",
            "close",
            "volume",
            "traded_value",
            "source",
            "quality_flags",
        ),
    )


def previous_closes(
    session: Session,
    ids: Mapping[tuple[str, str], int],
    firsts: Mapping[tuple[str, str], dt.date],
) -> dict[tuple[str, str], float]:
    """Per (market, ticker) in ``firsts``: the latest stored close strictly before that
    instrument's own first date. One query per distinct first date (a collection batch has
    one; an import chunk a few)."""
    by_first: dict[dt.date, list[int]] = {}
    for key, day in firsts.items():
        if key in ids:
            by_first.setdefault(day, []).append(ids[key])
    by_id = {ident: key for key, ident in ids.items()}
    out: dict[tuple[str, str], float] = {}
    for first, idents in by_first.items():
        for start in range(0, len(idents), BATCH_ROWS):
            chunk = idents[start : start + BATCH_ROWS]
            last = (
                select(DailyCandle.instrument_id, func.max(DailyCandle.trade_date).label("day"))
                .where(DailyCandle.trade_date < first, DailyCandle.instrument_id.in_(chunk))
                .group_by(DailyCandle.instrument_id)
                .subquery()
            )
            rows = session.execute(
                select(DailyCandle.instrument_id, DailyCandle.close).join(
                    last,
                    (DailyCandle.instrument_id == last.c.instrument_id)
                    & (DailyCandle.trade_date == last.c.day),
                )
            )
            out.update({by_id[int(ident)]: float(close) for ident, close in rows})
    return out


def upsert_investor_flows(
    session: Session,
    frame: pd.DataFrame,
    ids: Mapping[tuple[str, str], int],
    *,
    source: str,
) -> UpsertCounts:
    """Upsert a frame with :data:`INVESTOR_FLOW_COLUMNS` by (instrument, trade date)."""
    rows = _with_ids(frame, INVESTOR_FLOW_COLUMNS, ids, source=source, what="investor flows")
    compare = tuple(c for c in INVESTOR_FLOW_COLUMNS if c not in ("market", "ticker", "trade_date"))
    return upsert_frame(
        session,
        InvestorFlow.__table__,  # type: ignore[arg-type]
        rows,
        key=("instrument_id", "trade_date"),
        compare=(*compare, "source"),
    )


def upsert_intraday_candles(
    session: Session,
    frame: pd.DataFrame,
    ids: Mapping[tuple[str, str], int],
    *,
    source: str,
) -> UpsertCounts:
    """Upsert a frame with :data:`INTRADAY_CANDLE_COLUMNS` by (instrument, interval, ts)."""
    rows = _with_ids(frame, INTRADAY_CANDLE_COLUMNS, ids, source=source, what="intraday candles")
    return upsert_frame(
        session,
        IntradayCandle.__table__,  # type: ignore[arg-type]
        rows,
        key=("instrument_id", "interval", "ts"),
        compare=("open", "high", "low", "close", "volume", "traded_value", "source"),
    )


def latest_intraday_ts(
    session: Session, instrument_ids: Sequence[int], interval: str
) -> dict[int, dt.datetime]:
    """The start of the latest stored ``interval`` bar per instrument (absent: none stored)."""
    if not instrument_ids:
        return {}
    rows = session.execute(
        select(IntradayCandle.instrument_id, func.max(IntradayCandle.ts))
        .where(
            IntradayCandle.interval == interval,
            IntradayCandle.instrument_id.in_(list(instrument_ids)),
        )
        .group_by(IntradayCandle.instrument_id)
    )
    out: dict[int, dt.datetime] = {}
    for ident, ts in rows:
        out[int(ident)] = ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)
    return out


def oldest_latest_date(session: Session, model: Any, markets: Sequence[str]) -> dt.date | None:
    """Among the listed instruments of ``markets`` that have rows in ``model`` (a table with
    ``instrument_id`` and ``trade_date``), the oldest "latest stored date": where an
    incremental run must resume so that every instrument catches up. ``None``: no rows."""
    latest = (
        select(model.instrument_id, func.max(model.trade_date).label("last"))
        .join(Instrument, Instrument.id == model.instrument_id)
        .where(Instrument.market.in_(list(markets)), Instrument.listing_status == "listed")
        .group_by(model.instrument_id)
        .subquery()
    )
    value = session.execute(select(func.min(latest.c.last))).scalar_one_or_none()
    if value is None:
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


#: A listing that would delist more than this share of a market's listed instruments at once
#: is a provider problem (a truncated answer), not news.
MAX_DELIST_SHARE = 0.10


def mark_delisted(session: Session, market: str, *, keep: Iterable[str]) -> int:
    """Mark ``market``'s listed instruments whose tickers are not in ``keep`` as delisted;
    return how many changed.

    Raises:
        quant.errors.ServiceUnavailable: more than :data:`MAX_DELIST_SHARE` would go at once
            (the listing is probably truncated; nothing is changed).
    """
    kept = set(keep)
    rows = session.execute(
        select(Instrument.id, Instrument.ticker).where(
            Instrument.market == market, Instrument.listing_status == "listed"
        )
    ).all()
    gone = [ident for ident, ticker in rows if ticker not in kept]
    if rows and len(gone) > MAX_DELIST_SHARE * len(rows):
        raise ServiceUnavailable(
            f"{market} listing would delist {len(gone)} of {len(rows)} instruments at once; "
            "refusing a probably truncated listing"
        )
    if gone:
        session.execute(
            update(Instrument)
            .where(Instrument.id.in_(gone))
            .values(listing_status="delisted", updated_at=func.now())
        )
    return len(gone)


def ensure_instruments(
    session: Session, market: str, tickers: Iterable[str], *, source: str
) -> dict[tuple[str, str], int]:
    """Ids of ``(market, ticker)`` instruments, inserting the missing ones with the ticker as a
    provisional name. Existing rows are left exactly as they are (a listing refresh owns
    names and status)."""
    wanted = sorted(set(tickers))
    table = Instrument.__table__
    rows = [
        {"market": market, "ticker": t, "name": t, "currency": "KRW", "source": source}
        for t in wanted
    ]
    if rows:
        stmt = insert_for(session, table).on_conflict_do_nothing(  # type: ignore[arg-type]
            index_elements=["market", "ticker"]
        )
        session.execute(stmt, rows)
    return instrument_ids(session, ((market, t) for t in wanted))


def record_rejections(
    session: Session, rejections: Iterable[Rejection], *, source: str, seen_at: dt.datetime
) -> int:
    """Record rejected rows; a row already recorded for the same reason counts another
    occurrence. Returns how many rejections were given."""
    table = DataRejection.__table__
    rows = [
        {
            "fingerprint": (
                f"{r.dataset}:{source}:{r.market}:{r.ticker}:"
                f"{r.trade_date.isoformat() if r.trade_date else '-'}:{r.reason}"
            )[:255],
            "dataset": r.dataset,
            "source": source,
            "market": r.market[:16],
            "ticker": r.ticker[:32],
            "trade_date": r.trade_date,
            "reason": r.reason,
            "detail": r.detail,
            "payload": r.values,
            "occurrences": 1,
            "first_seen": seen_at,
            "last_seen": seen_at,
        }
        for r in rejections
    ]
    if not rows:
        return 0
    # One statement per fingerprint at most: duplicates within a batch are merged first.
    merged = {row["fingerprint"]: row for row in rows}
    stmt = insert_for(session, table)  # type: ignore[arg-type]
    stmt = stmt.on_conflict_do_update(
        index_elements=["fingerprint"],
        set_={
            "occurrences": table.c.occurrences + 1,
            "last_seen": stmt.excluded.last_seen,
            "detail": stmt.excluded.detail,
            "payload": stmt.excluded.payload,
            "updated_at": func.now(),
        },
    )
    session.execute(stmt, list(merged.values()))
    return len(rows)


def stored_dates(
    session: Session, model: Any, markets: Sequence[str], start: dt.date, end: dt.date
) -> dict[tuple[str, str], list[dt.date]]:
    """Per listed instrument of ``markets``: the dates in ``[start, end]`` that ``model`` (a
    table with ``instrument_id`` and ``trade_date``) has rows for (an empty list for none)."""
    out: dict[tuple[str, str], list[dt.date]] = {
        (m, t): []
        for m, t in session.execute(
            select(Instrument.market, Instrument.ticker).where(
                Instrument.market.in_(list(markets)), Instrument.listing_status == "listed"
            )
        )
    }
    rows = session.execute(
        select(Instrument.market, Instrument.ticker, model.trade_date)
        .join(Instrument, Instrument.id == model.instrument_id)
        .where(
            Instrument.market.in_(list(markets)),
            Instrument.listing_status == "listed",
            model.trade_date.between(start, end),
        )
    )
    for market, ticker, day in rows:
        out[(market, ticker)].append(
            day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))
        )
    return out


def stored_bar_starts(
    session: Session, market: str, interval: str, start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str], list[dt.datetime]]:
    """Per listed instrument of ``market``: the starts (aware UTC) of its stored ``interval``
    bars in ``[start, end]`` (an empty list for none)."""
    out: dict[tuple[str, str], list[dt.datetime]] = {
        (m, t): []
        for m, t in session.execute(
            select(Instrument.market, Instrument.ticker).where(
                Instrument.market == market, Instrument.listing_status == "listed"
            )
        )
    }
    rows = session.execute(
        select(Instrument.market, Instrument.ticker, IntradayCandle.ts)
        .join(Instrument, Instrument.id == IntradayCandle.instrument_id)
        .where(
            Instrument.market == market,
            Instrument.listing_status == "listed",
            IntradayCandle.interval == interval,
            IntradayCandle.ts.between(start, end),
        )
    )
    for m, t, ts in rows:
        out[(m, t)].append(ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC))
    return out


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def storable(value: Any) -> Any:
    """``value`` with every string (dict keys included, at any depth) that PostgreSQL cannot
    store escaped: NUL becomes the six characters ``\\u0000``, a lone surrogate ``\\udXXX``.
    Lists and tuples come back as lists, other values unchanged; linear in the size of
    ``value``. Strings without such characters are returned as they are."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(_escape, value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def unstorable_at(value: Any, path: str = "") -> str | None:
    """Where in ``value`` the first item is that PostgreSQL cannot store in a text or JSON
    column: a string holding NUL or a lone surrogate (dict keys included, at any depth) or a
    NaN or infinite float (JSON has none). A dotted path under ``path`` (list items by
    index: ``instruments.3``; a bad key: the mapping's own path); ``None`` when everything
    can be stored."""
    if isinstance(value, str):
        return path if _UNSTORABLE.search(value) else None
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _UNSTORABLE.search(key):
                return path  # the key itself: the mapping holding it is named
            found = unstorable_at(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = unstorable_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time as an aware datetime: SQLite hands times back naive, and quantbeat
    stores them in UTC (PostgreSQL returns them aware already)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def to_store(value: dt.datetime) -> dt.datetime:
    """An aware time as quantbeat stores and compares it: in UTC. SQLite keeps a datetime's
    clock reading and drops its zone, so a 15:30 KST written as is would read back as
    15:30 UTC; PostgreSQL converts by itself, and UTC is right for both.

    Raises:
        ValueError: ``value`` is naive (its zone would be a guess).
    """
    if value.tzinfo is None:
        raise ValueError(f"a naive time cannot be stored: {value.isoformat()}")
    return value.astimezone(dt.UTC)


def iso_utc(value: dt.date | dt.datetime | None) -> str | None:
    """A stored day or time as ISO 8601 text for a JSON answer: a date as ``YYYY-MM-DD``; a
    time as UTC with its offset (``2026-06-30T06:10:00+00:00``) — a naive one (SQLite) is
    read as UTC (:func:`as_utc`), an aware one converted; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return as_utc(value).astimezone(dt.UTC).isoformat()
    return value.isoformat()
