"""Scan runs and their signals: start and finish a run, replace a scan's signals for the
instruments it covered, read the flows a scan needs; read the latest runs and pages of
signals (the API).

Re-running a scan for a day replaces its signals: for the instruments a run covered, signals
that no longer qualify are deleted and the rest upserted on ``(trade_date, strategy,
instrument_id)``; nothing is duplicated and instruments the run did not reach keep theirs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.bulk import copy_out, sqlite_matrix
from db.candles import SQLITE_DAYS
from db.models import DailyCandle, Instrument, InvestorFlow, ScanRun, Signal
from db.store import UpsertCounts, upsert_rows
from quant.errors import NotFound

#: Flow columns as stored (see :class:`db.models.InvestorFlow`).
FLOW_COLUMNS: tuple[str, ...] = (
    "foreign_net_krw",
    "institution_net_krw",
    "individual_net_krw",
    "foreign_net_shares",
    "institution_net_shares",
    "individual_net_shares",
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def start_run(
    session: Session,
    *,
    strategy: str,
    trade_date: dt.date,
    params: Mapping[str, Any],
    total: int,
    chunks: int,
    data_version: str | None,
) -> int:
    """Record a scan run as ``running``; returns its id."""
    run = ScanRun(
        strategy=strategy,
        trade_date=trade_date,
        state="running",
        params=dict(params),
        total=total,
        scanned=0,
        failed=0,
        candidates=0,
        chunks=chunks,
        chunks_failed=0,
        data_version=data_version,
        started_at=_now(),
    )
    session.add(run)
    session.flush()
    return int(run.id)


def add_chunk_result(
    session: Session,
    run_id: int,
    *,
    scanned: int,
    failed: int,
    candidates: int,
    chunk_error: str | None = None,
) -> None:
    """Add one chunk's coverage to its run (atomically: chunks finish concurrently). A chunk
    that failed as a whole passes its ``chunk_error``: it counts in ``chunks_failed`` and the
    first such error is kept."""
    values: dict[str, Any] = {
        "scanned": ScanRun.scanned + scanned,
        "failed": ScanRun.failed + failed,
        "candidates": ScanRun.candidates + candidates,
    }
    if chunk_error is not None:
        values["chunks_failed"] = ScanRun.chunks_failed + 1
        values["error"] = func.coalesce(ScanRun.error, chunk_error[:2000])
    session.execute(update(ScanRun).where(ScanRun.id == run_id).values(**values))


def get_run(session: Session, run_id: int) -> ScanRun:
    """The scan run ``run_id``.

    Raises:
        quant.errors.NotFound: no such run.
    """
    run = session.get(ScanRun, run_id)
    if run is None:
        raise NotFound(f"no scan run {run_id}")
    return run


def list_runs(session: Session, *, strategy: str | None = None, limit: int = 20) -> list[ScanRun]:
    """The newest scan runs first (by start), optionally of one strategy."""
    query = select(ScanRun).order_by(ScanRun.started_at.desc(), ScanRun.id.desc()).limit(limit)
    if strategy is not None:
        query = query.where(ScanRun.strategy == strategy)
    return list(session.execute(query).scalars())


def run_state(session: Session, run_id: int) -> str | None:
    """The state of scan run ``run_id`` (``None``: no such run)."""
    run = session.get(ScanRun, run_id)
    return None if run is None else run.state


def finish_run(
    session: Session,
    run_id: int,
    *,
    state: str,
    chunks_failed: int = 0,
    error: str | None = None,
) -> ScanRun:
    """Mark a run ``completed`` or ``failed`` with its duration; returns the row."""
    run = session.get(ScanRun, run_id)
    if run is None:
        raise LookupError(f"no scan run {run_id}")
    now = _now()
    started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=dt.UTC)
    run.state = state
    run.chunks_failed = max(run.chunks_failed, chunks_failed)
    run.error = error if error is not None else run.error
    run.finished_at = now
    run.duration_ms = (now - started).total_seconds() * 1000.0
    session.flush()
    return run


def replace_signals(
    session: Session,
    *,
    trade_date: dt.date,
    strategy: str,
    covered: Sequence[int],
    rows: Sequence[Mapping[str, Any]],
    source: str = "scan",
    phase: str = "final",
) -> UpsertCounts:
    """Make the signals of ``strategy`` on ``trade_date`` for the ``covered`` instruments
    exactly ``rows`` (each with ``instrument_id``, ``score``, ``grade``, ``entry_price``,
    ``status``, ``reasons``, ``inputs`` and optionally ``gate``, the Market Gate colour at the
    decision, and ``volume_ratio``, the scan day's volume over its mean) — of ``phase``
    (``final`` or ``preliminary``; the other phase's rows are left alone): stale ones are
    deleted, the rest upserted."""
    keep = {int(r["instrument_id"]) for r in rows}
    gone = [int(i) for i in covered if int(i) not in keep]
    if gone:
        session.execute(
            delete(Signal).where(
                Signal.trade_date == trade_date,
                Signal.strategy == strategy,
                Signal.phase == phase,
                Signal.instrument_id.in_(gone),
            )
        )
    table = Signal.__table__
    full = [
        {
            "trade_date": trade_date,
            "strategy": strategy,
            "instrument_id": int(r["instrument_id"]),
            "score": r.get("score"),
            "grade": r.get("grade"),
            "entry_price": r.get("entry_price"),
            "status": r.get("status"),
            "reasons": r.get("reasons"),
            "inputs": r.get("inputs"),
            "source": source,
            "gate": r.get("gate"),
            "volume_ratio": r.get("volume_ratio"),
            "phase": phase,
        }
        for r in rows
    ]
    return upsert_rows(
        session,
        table,  # type: ignore[arg-type]
        full,
        key=("trade_date", "strategy", "phase", "instrument_id"),
        compare=(
            "score",
            "grade",
            "entry_price",
            "status",
            "reasons",
            "inputs",
            "source",
            "gate",
            "volume_ratio",
        ),
    )


def load_flows(
    session: Session,
    times: Mapping[int, np.ndarray],
) -> dict[int, dict[str, np.ndarray]]:
    """Flows aligned to each instrument's candle dates (``times``: id → ``datetime64[D]``
    array): ``{id: {column: float64 array}}``, NaN where a day has no (or an unknown)
    figure."""
    if not times:
        return {}
    first = min(t[0] for t in times.values() if len(t)).astype(dt.date)
    last = max(t[-1] for t in times.values() if len(t)).astype(dt.date)
    ids_asked = sorted(int(i) for i in times)
    if session.get_bind().dialect.name == "postgresql":
        figures = ", ".join(f"COALESCE(f.{c}::float8, 'NaN'::float8)" for c in FLOW_COLUMNS)
        columns = copy_out(
            session,
            f"SELECT f.instrument_id, f.trade_date, {figures} FROM investor_flows f "  # noqa: S608
            "WHERE f.instrument_id = ANY(%(ids)s) AND f.trade_date BETWEEN %(first)s "
            "AND %(last)s ORDER BY f.instrument_id, f.trade_date",
            {"ids": ids_asked, "first": first, "last": last},
            ("int8", "date", *("float8",) * len(FLOW_COLUMNS)),
        )
        ids, days = columns[0], columns[1]
        values = np.column_stack(columns[2:]) if len(ids) else np.empty((0, len(FLOW_COLUMNS)))
    else:
        matrix = sqlite_matrix(
            session,
            f"SELECT instrument_id, {SQLITE_DAYS.format('trade_date')}, "  # noqa: S608
            f"{', '.join(FLOW_COLUMNS)} FROM investor_flows WHERE instrument_id IN "
            f"({', '.join('?' * len(ids_asked))}) AND trade_date BETWEEN ? AND ? "
            "ORDER BY instrument_id, trade_date",
            [*ids_asked, first.isoformat(), last.isoformat()],
            2 + len(FLOW_COLUMNS),
        )
        ids = matrix[:, 0].astype(np.int64)
        days = matrix[:, 1].astype(np.int64).astype("datetime64[D]")
        values = matrix[:, 2:]
    out: dict[int, dict[str, np.ndarray]] = {}
    if len(ids):
        cuts = np.flatnonzero(np.diff(ids)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(ids)]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            ident = int(ids[a])
            wanted = times.get(ident)
            if wanted is None:
                continue
            matrix = np.full((len(wanted), len(FLOW_COLUMNS)), np.nan)
            pos = np.searchsorted(days[a:b], wanted)
            pos = np.minimum(pos, b - a - 1)
            hit = days[a:b][pos] == wanted
            matrix[hit] = values[a:b][pos[hit]]
            out[ident] = {c: matrix[:, k].copy() for k, c in enumerate(FLOW_COLUMNS)}
    for ident, wanted in times.items():
        if ident not in out:
            out[ident] = {c: np.full(len(wanted), np.nan) for c in FLOW_COLUMNS}
    return out


def data_version(session: Session, trade_date: dt.date) -> str:
    """The data a scan of ``trade_date`` reads, as text: candle and flow row counts of the
    day and their newest write (``candles=2500@2026-11-20T06:41:02Z;flows=…``)."""
    parts = []
    for name, model in (("candles", DailyCandle), ("flows", InvestorFlow)):
        count, newest = session.execute(
            select(func.count(), func.max(model.updated_at)).where(model.trade_date == trade_date)
        ).one()
        stamp = newest.strftime("%Y-%m-%dT%H:%M:%S") if newest is not None else "-"
        parts.append(f"{name}={count}@{stamp}")
    return ";".join(parts)[:64]


# --- reading runs and signals (the API) --------------------------------------------------
def _run_phase_column() -> Any:
    """A run's phase in SQL: ``params.phase`` (the buy-window decision writes
    ``preliminary``), ``final`` when absent (the evening scans write none)."""
    return func.coalesce(ScanRun.params["phase"].as_string(), "final")


def run_phase(run: ScanRun) -> str:
    """The phase a run decided: ``preliminary`` (the buy window) or ``final``."""
    params = run.params if isinstance(run.params, dict) else {}
    return str(params.get("phase") or "final")


def latest_completed_run(
    session: Session,
    strategy: str,
    *,
    trade_date: dt.date | None = None,
    phase: str | None = None,
) -> ScanRun | None:
    """The newest completed run of ``strategy`` (of ``trade_date`` and of ``phase`` when
    given): the latest trade date, then the latest started."""
    query = select(ScanRun).where(ScanRun.strategy == strategy, ScanRun.state == "completed")
    if trade_date is not None:
        query = query.where(ScanRun.trade_date == trade_date)
    if phase is not None:
        query = query.where(_run_phase_column() == phase)
    query = query.order_by(
        ScanRun.trade_date.desc(), ScanRun.started_at.desc(), ScanRun.id.desc()
    ).limit(1)
    return session.execute(query).scalar_one_or_none()


def run_days(
    session: Session, strategy: str, *, limit: int, trade_date: dt.date | None = None
) -> list[tuple[dt.date, list[str]]]:
    """The ``limit`` latest trade dates (``trade_date`` alone when given) holding a completed
    run of ``strategy``, newest first, each with the phases decided that day (sorted)."""
    days_query = (
        select(ScanRun.trade_date)
        .where(ScanRun.strategy == strategy, ScanRun.state == "completed")
        .group_by(ScanRun.trade_date)
        .order_by(ScanRun.trade_date.desc())
        .limit(limit)
    )
    if trade_date is not None:
        days_query = days_query.where(ScanRun.trade_date == trade_date)
    days = days_query.subquery()
    phase = _run_phase_column()
    rows = session.execute(
        select(ScanRun.trade_date, phase)
        .where(
            ScanRun.strategy == strategy,
            ScanRun.state == "completed",
            ScanRun.trade_date.in_(select(days.c.trade_date)),
        )
        .group_by(ScanRun.trade_date, phase)
    ).all()
    found: dict[dt.date, set[str]] = {}
    for day, name in rows:
        found.setdefault(day, set()).add(str(name))
    return [(day, sorted(found[day])) for day in sorted(found, reverse=True)]


def signal_page(
    session: Session,
    *,
    after: tuple[dt.date, int] | None,
    limit: int,
    trade_date: dt.date | None = None,
    strategy: str | None = None,
    grade: str | None = None,
    market: str | None = None,
    phase: str | None = None,
) -> list[tuple[Signal, Instrument]]:
    """Up to ``limit`` signals (with their instrument) matching the filters, newest first:
    by trade date, then id, both descending — starting after the key ``after``
    (``(trade_date, id)`` of the previous page's last signal), so pages never overlap or
    skip a row however the table grows meanwhile."""
    query = select(Signal, Instrument).join(Instrument, Instrument.id == Signal.instrument_id)
    if trade_date is not None:
        query = query.where(Signal.trade_date == trade_date)
    if strategy is not None:
        query = query.where(Signal.strategy == strategy)
    if grade is not None:
        query = query.where(Signal.grade == grade)
    if market is not None:
        query = query.where(Instrument.market == market)
    if phase is not None:
        query = query.where(Signal.phase == phase)
    if after is not None:
        day, ident = after
        query = query.where(
            or_(Signal.trade_date < day, and_(Signal.trade_date == day, Signal.id < ident))
        )
    query = query.order_by(Signal.trade_date.desc(), Signal.id.desc()).limit(limit)
    return [(s, i) for s, i in session.execute(query).all()]


def signal_with_instrument(session: Session, signal_id: int) -> tuple[Signal, Instrument] | None:
    """Signal ``signal_id`` with its instrument (``None``: no such signal)."""
    row = session.execute(
        select(Signal, Instrument)
        .join(Instrument, Instrument.id == Signal.instrument_id)
        .where(Signal.id == signal_id)
    ).first()
    return None if row is None else (row[0], row[1])
