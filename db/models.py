"""Typed ORM models. Business keys carry unique constraints so every write can be an upsert.

Units: prices are in the instrument's currency per share, ``volume`` and ``*_shares`` count
shares (coins for crypto), ``traded_value`` and ``*_krw`` are Korean won. Timestamps are
timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Constraint names are deterministic, so migrations can name what they alter and drop.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON on every dialect, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")
#: 64-bit ids on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class OhlcvMixin:
    """A bar's prices (instrument currency), volume (shares/coins), traded value (KRW) and the
    provider it came from."""

    open: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    close: Mapped[float] = mapped_column(Double)
    volume: Mapped[float] = mapped_column(Double)
    traded_value: Mapped[float] = mapped_column(Double)
    source: Mapped[str] = mapped_column(String(32))


class Instrument(TimestampMixin, Base):
    """A tradable instrument; ``(market, ticker)`` is its business key."""

    __tablename__ = "instruments"
    __table_args__ = (UniqueConstraint("market", "ticker"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    market: Mapped[str] = mapped_column(String(16))
    ticker: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(8), default="KRW")
    listing_status: Mapped[str] = mapped_column(String(16), default="listed")
    source: Mapped[str] = mapped_column(String(32))

    daily_candles: Mapped[list[DailyCandle]] = relationship(back_populates="instrument")


class DailyCandle(OhlcvMixin, TimestampMixin, Base):
    """One daily bar; unique per instrument and trade date."""

    __tablename__ = "daily_candles"
    __table_args__ = (
        UniqueConstraint("instrument_id", "trade_date"),
        Index("ix_daily_candles_trade_date", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    trade_date: Mapped[dt.date] = mapped_column(Date)

    #: Comma-separated doubts about an otherwise valid bar (``zero_volume``, ``limit_move``;
    #: see quant.market.quality.flag_daily_candles); NULL for a clean bar.
    quality_flags: Mapped[str | None] = mapped_column(String(64))

    #: KRW; ``NULL`` when the source did not give it (the original system's
    #: ``daily_prices.csv`` has no traded-value column): unknown, never 0.
    traded_value: Mapped[float | None] = mapped_column(Double, nullable=True)  # type: ignore[assignment]

    instrument: Mapped[Instrument] = relationship(back_populates="daily_candles")


class CandleMonth(Base):
    """One instrument's daily bars of one calendar month, packed (migration 0023): a cache of
    ``daily_candles`` for bulk reads (:func:`db.candles.read_daily_bars` on PostgreSQL).

    ``packed`` is ``bars`` records of :data:`db.candle_months.RECORD` in date order, written
    only by :func:`db.candle_months.pack`. Valid in a snapshot when no
    :class:`CandleMonthStale` entry for it is visible there. No foreign key (see the
    migration). SQLite never reads or writes it."""

    __tablename__ = "candle_months"

    instrument_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The first day of the month.
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    bars: Mapped[int] = mapped_column(Integer)
    packed: Mapped[bytes] = mapped_column(LargeBinary)
    packed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class CandleMonthStale(Base):
    """A month of an instrument's daily bars written since it was packed (or never packed),
    appended by the triggers on ``daily_candles`` in the writer's transaction: an append-only
    log (repeats allowed, so no writer waits for another), consumed by
    :func:`db.candle_months.pack`."""

    __tablename__ = "candle_months_stale"
    __table_args__ = (
        Index("ix_candle_months_stale_instrument_id_month", "instrument_id", "month"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(BigId)
    month: Mapped[dt.date] = mapped_column(Date)


class CandleMonthPacks(Base):
    """One row: how many packs of candle months committed so far (``generation``; each
    :func:`db.candle_months.pack_batch` and each ``TRUNCATE`` of ``daily_candles`` adds one
    in its transaction). A read compares it before and after its statements."""

    __tablename__ = "candle_months_packs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


class IntradayCandle(OhlcvMixin, TimestampMixin, Base):
    """One intraday bar; unique per instrument, interval (``1m``, ``5m``, ``60m`` …) and start."""

    __tablename__ = "intraday_candles"
    __table_args__ = (UniqueConstraint("instrument_id", "interval", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    interval: Mapped[str] = mapped_column(String(8))
    ts: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class InvestorFlow(TimestampMixin, Base):
    """Net buying per investor group for one instrument and day, in shares and in KRW.

    Providers give all six figures; a migrated legacy file may hold one unit only, and the
    figures it lacks stay NULL (unknown) rather than being invented."""

    __tablename__ = "investor_flows"
    __table_args__ = (
        UniqueConstraint("instrument_id", "trade_date"),
        Index("ix_investor_flows_trade_date", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    trade_date: Mapped[dt.date] = mapped_column(Date)
    foreign_net_shares: Mapped[int | None] = mapped_column(BigInteger)
    institution_net_shares: Mapped[int | None] = mapped_column(BigInteger)
    individual_net_shares: Mapped[int | None] = mapped_column(BigInteger)
    foreign_net_krw: Mapped[int | None] = mapped_column(BigInteger)
    institution_net_krw: Mapped[int | None] = mapped_column(BigInteger)
    individual_net_krw: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(32))


class JobRun(TimestampMixin, Base):
    """The history of one Celery task id: every execution (first run, retry, redelivery)
    increments ``attempts`` and updates the timings of the latest one.

    ``args``/``kwargs`` are stored masked. ``state`` is one of :data:`JOB_STATES`.
    """

    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("task_id"),
        Index("ix_job_runs_task_name_started_at", "task_name", "started_at"),
        Index("ix_job_runs_state", "state"),
        # the history's pages, newest first (migration 0020)
        Index("ix_job_runs_started_at_id", "started_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64))
    task_name: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str | None] = mapped_column(String(32))
    args: Mapped[Any] = mapped_column(JSONType)
    kwargs: Mapped[Any] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSONType)


class JobAttempt(Base):
    """One execution of a task id (issue 16): ``job_runs`` keeps the latest execution of a
    task id, this table every one of them — first run, retries, redeliveries after a lost
    worker, skipped duplicate deliveries — so the execution that produced a result stays
    visible after a later delivery. ``attempt`` is 1-based (``job_runs.attempts`` when the
    execution started); ``state`` as in :data:`JOB_STATES`; ``result`` the execution's small
    result summary (masked), as in ``job_runs.result``.
    """

    __tablename__ = "job_attempts"
    __table_args__ = (
        UniqueConstraint("task_id", "attempt"),
        Index("ix_job_attempts_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSONType)


class WorkerHeartbeat(Base):
    """A worker's heartbeat (issue 16): its main process upserts this row every
    ``QUANTBEAT_HEARTBEAT_INTERVAL`` seconds (:mod:`workers.heartbeat`). ``seen_at`` is the
    database's clock at the last beat; ``incarnation`` a random id of this run of the worker
    process (a restart under the same name and pid is another one); ``started_at`` when this
    incarnation started (the worker's clock, like ``job_runs.started_at``; kept while the
    incarnation beats); ``stopped_at`` is set by a
    warm shutdown once its pool finished its tasks (``NULL`` while it runs or when it died).
    """

    __tablename__ = "worker_heartbeats"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    incarnation: Mapped[str] = mapped_column(String(32))
    pool: Mapped[str | None] = mapped_column(String(32))
    queues: Mapped[Any] = mapped_column(JSONType)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


JOB_STATES: tuple[str, ...] = (
    "started",
    "retrying",
    "succeeded",
    "failed",
    "timed_out",
    "ignored",
    "requeued",
    "duplicate",
    "lost",
    "cancelled",
)


class DeadLetter(TimestampMixin, Base):
    """A message that will not be processed without an operator: its masked payload and why.

    ``fingerprint`` (the task id, or a hash of an undecodable body) makes repeated failures of
    the same message one row, counted in ``occurrences`` with first and last sighting.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("fingerprint"),
        Index("ix_dead_letters_last_seen", "last_seen"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(128))
    task_id: Mapped[str | None] = mapped_column(String(64))
    task_name: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[Any] = mapped_column(JSONType)
    reason: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    replayed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The task id of the latest replay (``quantbeat dlq replay``), and how many there were.
    replayed_task_id: Mapped[str | None] = mapped_column(String(64))
    replays: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class BeatSlot(Base):
    """One scheduled firing of a beat entry that a task has claimed.

    ``(entry, scheduled_for)`` is unique: a second beat (or a duplicate tick) sending the same
    entry for the same scheduled time produces a message whose execution finds the slot taken
    and does nothing. ``scheduled_for`` is the schedule's due time (UTC, whole seconds), not
    the moment the message was sent.
    """

    __tablename__ = "beat_slots"
    __table_args__ = (
        UniqueConstraint("entry", "scheduled_for"),
        Index("ix_beat_slots_claimed_at", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry: Mapped[str] = mapped_column(String(200))
    scheduled_for: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    task_name: Mapped[str] = mapped_column(String(200))
    task_id: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class OutboxMessage(Base):
    """A task message committed with the business row it belongs to (transactional outbox).

    The row is written in the same transaction as the record it publishes (a backtest run), so
    a committed run always has a message waiting; the client publishes it right after the
    commit and sets ``published_at``, and the reaper's housekeeping publishes any row still
    unpublished after a grace period (the client died or the broker was down). ``task_id`` is
    unique, and consumers are idempotent for it: publishing twice is harmless.

    ``args``/``kwargs`` are stored as sent (tasks never take secrets as arguments).
    """

    __tablename__ = "task_outbox"
    __table_args__ = (
        UniqueConstraint("task_id"),
        Index("ix_task_outbox_published_at_created_at", "published_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64))
    task_name: Mapped[str] = mapped_column(String(200))
    args: Mapped[Any] = mapped_column(JSONType)
    kwargs: Mapped[Any] = mapped_column(JSONType)
    options: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class StoredSetting(TimestampMixin, Base):
    """An operator setting kept in the database (strategy parameters, schedule switches).

    ``value`` is any JSON value; ``key`` is dotted (``strategy.vcp``, ``schedule.krx-close``).
    Read through :mod:`quantbeat.services.settings_store`, which caches them in-process.
    """

    __tablename__ = "stored_settings"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class DataRejection(TimestampMixin, Base):
    """A provider row that was not stored because it cannot be a fact (see
    :mod:`quant.market.quality`), with the reason and the row as received.

    ``fingerprint`` (dataset, source, market, ticker, date, reason) makes a re-run that meets
    the same bad row count another occurrence instead of adding a row.
    """

    __tablename__ = "data_rejections"
    __table_args__ = (
        UniqueConstraint("fingerprint"),
        Index("ix_data_rejections_dataset_trade_date", "dataset", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(255))
    dataset: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    market: Mapped[str] = mapped_column(String(16))
    ticker: Mapped[str] = mapped_column(String(32))
    trade_date: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    payload: Mapped[Any] = mapped_column(JSONType)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


#: JSON where Python ``None`` is SQL ``NULL`` (not the JSON ``null``), on every dialect.
NullableJSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

#: States of an :class:`ImportRun`.
IMPORT_RUN_STATES: tuple[str, ...] = ("running", "succeeded", "failed")


class ImportRun(TimestampMixin, Base):
    """One run of ``quantbeat import csv``: which file, what it held, and what became of its rows.

    Not unique per file: every import is a run (the imported data itself is idempotent).
    ``rows_read = inserted + updated + unchanged + rejected`` holds for every finished run (the
    importer checks it); ``blank_lines`` are not rows. ``kind``, ``encoding`` and
    ``file_sha256`` are ``None`` when the file could not be read that far. ``status`` is one of
    :data:`IMPORT_RUN_STATES`; ``error`` says why a run failed. A dry run (``dry_run``) rolled
    back every write except this row.
    """

    __tablename__ = "import_runs"
    __table_args__ = (Index("ix_import_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(32))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    encoding: Mapped[str | None] = mapped_column(String(32))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    inserted: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[int] = mapped_column(BigInteger, default=0)
    unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    blank_lines: Mapped[int] = mapped_column(BigInteger, default=0)
    reject_file: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[Any] = mapped_column(JSONType)


class Signal(TimestampMixin, Base):
    """A trading signal: one per trading date, strategy, phase and instrument.

    ``score`` is in the strategy's points, ``entry_price`` in the instrument's currency per
    share; ``reasons`` (a JSON list of sentences) and ``inputs`` (a JSON object of the values
    used) are ``NULL`` when unknown. ``source`` says where the row came from (``csv_import``
    for signals migrated from the earlier system, whose rows without a strategy get
    ``legacy``).
    """

    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("trade_date", "strategy", "phase", "instrument_id"),
        Index("ix_signals_trade_date", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trade_date: Mapped[dt.date] = mapped_column(Date)
    strategy: Mapped[str] = mapped_column(String(32))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    score: Mapped[float | None] = mapped_column(Double)
    #: S/A/B/C (closing bet), Textbook … Weak (VCP), or a legacy grade.
    grade: Mapped[str | None] = mapped_column(String(16))
    entry_price: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str | None] = mapped_column(String(32))
    reasons: Mapped[Any | None] = mapped_column(NullableJSONType)
    inputs: Mapped[Any | None] = mapped_column(NullableJSONType)
    source: Mapped[str] = mapped_column(String(32))
    #: The Market Gate's colour when the signal was decided (GREEN/YELLOW/RED/UNKNOWN;
    #: ``NULL``: no gate had been computed for the session).
    gate: Mapped[str | None] = mapped_column(String(8))
    #: ``final`` (decided on the day's final bar and flows) or ``preliminary`` (decided in the
    #: buy window from the day so far); both are kept, one row each.
    phase: Mapped[str] = mapped_column(String(16), server_default=text("'final'"))
    #: The day's volume over its 50-session mean (VCP; ``NULL`` when not computed): a close
    #: above the pivot needs ``breakout_volume`` (1.5×) to be a confirmed breakout.
    volume_ratio: Mapped[float | None] = mapped_column(Double)


class ScanRun(TimestampMixin, Base):
    """One run of a universe scan (``strategy`` on ``trade_date``): its parameters, what it
    covered and how long it took.

    ``state`` is ``running``, ``completed`` or ``failed``. Coverage counts instruments:
    ``total`` in the universe, ``scanned`` (evaluated), ``failed`` (their evaluation raised, or
    their chunk failed for good), ``candidates`` (signals written). ``data_version`` names the
    data the scan read (the newest candle/flow write of the day), so two runs can be compared.
    """

    __tablename__ = "scan_runs"
    __table_args__ = (Index("ix_scan_runs_trade_date_strategy", "trade_date", "strategy"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(32))
    trade_date: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[Any] = mapped_column(JSONType)
    total: Mapped[int] = mapped_column(Integer, default=0)
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    candidates: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    chunks_failed: Mapped[int] = mapped_column(Integer, default=0)
    data_version: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)


class BacktestRun(TimestampMixin, Base):
    """One backtest run: what was asked (``spec``), on which data, how it went, its metrics.

    ``id`` is the run id handed to the client (a UUID4 hex). ``state``: ``queued`` →
    ``running`` → ``completed`` | ``failed`` | ``cancelled`` | ``timed_out``. ``attempts``
    counts executions (a redelivery after a killed worker is the second); only the attempt
    that still owns the run may store its result, once. ``metrics`` are the domain-notes §5
    figures (fractions, JSON-safe); ``summary`` holds counts, final equity and notes. Live
    progress is in Redis; ``done``/``total`` here are the last recorded figures.
    """

    __tablename__ = "backtest_runs"
    __table_args__ = (
        Index("ix_backtest_runs_state", "state"),
        Index("ix_backtest_runs_submitted_at", "submitted_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(32))
    spec: Mapped[Any] = mapped_column(JSONType)
    origin: Mapped[str] = mapped_column(String(16), default="api")
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    data_version: Mapped[str | None] = mapped_column(String(128))
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Double)
    metrics: Mapped[Any | None] = mapped_column(JSONType)
    summary: Mapped[Any | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)


class BacktestTrade(Base):
    """One exit of a backtest run (a partial exit is its own row; an open position at the
    end has no exit date and reason ``open``). Prices are fill prices in the instrument's
    currency, ``pnl`` and ``fees`` in the same currency, ``return_pct`` a fraction."""

    __tablename__ = "backtest_trades"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("backtest_runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(40))
    entry_date: Mapped[dt.date] = mapped_column(Date)
    exit_date: Mapped[dt.date | None] = mapped_column(Date)
    entry_price: Mapped[float] = mapped_column(Double)
    exit_price: Mapped[float] = mapped_column(Double)
    quantity: Mapped[float] = mapped_column(Double)
    fees: Mapped[float] = mapped_column(Double)
    pnl: Mapped[float] = mapped_column(Double)
    return_pct: Mapped[float | None] = mapped_column(Double)
    exit_reason: Mapped[str] = mapped_column(String(16))


class BacktestEquity(Base):
    """The daily equity curve of a backtest run: portfolio value at each session's close
    (currency units) and how many positions were open."""

    __tablename__ = "backtest_equity"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("backtest_runs.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    equity: Mapped[float] = mapped_column(Double)
    positions: Mapped[int] = mapped_column(Integer, default=0)


class NewsItem(TimestampMixin, Base):
    """A news item, stored once per ``key`` (sha256 of its normalized URL, see
    :attr:`quant.news.NewsItem.key`). ``published_at`` is UTC (``NULL`` when the feed gave no
    date); ``simulated`` marks items of the simulated news source."""

    __tablename__ = "news_items"
    __table_args__ = (UniqueConstraint("key"), Index("ix_news_items_published_at", "published_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)


class NewsMention(Base):
    """Which instruments a news item mentions."""

    __tablename__ = "news_mentions"
    __table_args__ = (Index("ix_news_mentions_instrument_id", "instrument_id"),)

    news_id: Mapped[int] = mapped_column(
        ForeignKey("news_items.id", ondelete="CASCADE"), primary_key=True
    )
    instrument_id: Mapped[int] = mapped_column(
        ForeignKey("instruments.id", ondelete="CASCADE"), primary_key=True
    )


class AiAnalysis(TimestampMixin, Base):
    """One AI analysis of an instrument's signal and news on a trading day, cached per
    ``(instrument, trade_date, model, prompt_version)``.

    ``status`` is ``succeeded`` or ``failed`` (``error`` says why: rejected request, invalid
    output, retries or quota exhausted). ``analyzer`` is ``gemini`` or ``offline`` (rule-based,
    no network). ``sentiment`` −1…1, ``confidence`` 0…1, ``news_score`` 0…3; token counts as
    the provider reported them (``NULL`` offline).
    """

    __tablename__ = "ai_analyses"
    __table_args__ = (
        UniqueConstraint("instrument_id", "trade_date", "model", "prompt_version"),
        Index("ix_ai_analyses_trade_date", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    trade_date: Mapped[dt.date] = mapped_column(Date)
    strategy: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    prompt_version: Mapped[str] = mapped_column(String(48))
    analyzer: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    sentiment: Mapped[float | None] = mapped_column(Double)
    confidence: Mapped[float | None] = mapped_column(Double)
    news_score: Mapped[int | None] = mapped_column(Integer)
    catalyst: Mapped[str | None] = mapped_column(Text)
    risk_flags: Mapped[Any | None] = mapped_column(NullableJSONType)
    news_count: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    #: The analysis's own recommendation when it gives one (``BUY``/``HOLD``/``SELL``; the
    #: original system's analyses, migrated by ``quantbeat import original``); ``NULL`` otherwise.
    recommendation: Mapped[str | None] = mapped_column(String(8))
    #: Anything else the analysis carried that has no column (a JSON object), ``NULL`` if none.
    details: Mapped[Any | None] = mapped_column(NullableJSONType)


class ReferenceSeriesRow(TimestampMixin, Base):
    """A series the market is read against (Market Gate inputs): a KRX index, a sector ETF or
    USD/KRW. ``code`` is its business key (``1001``, ``069500``, ``USDKRW``); ``kind`` is
    ``index``, ``etf`` or ``fx``."""

    __tablename__ = "reference_series"
    __table_args__ = (UniqueConstraint("code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(8), default="KRW")
    source: Mapped[str] = mapped_column(String(32))
    #: Whether the bars come from a simulated source (every report then says so).
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)


class ReferenceBar(TimestampMixin, Base):
    """One daily bar of a reference series; unique per series and trade date. Prices in
    points (index), KRW (ETF) or KRW per USD; ``volume`` (shares) and ``value`` (KRW) are
    ``NULL`` where the provider has none (an exchange rate)."""

    __tablename__ = "reference_bars"
    __table_args__ = (
        UniqueConstraint("series_id", "trade_date"),
        Index("ix_reference_bars_trade_date", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("reference_series.id", ondelete="CASCADE"))
    trade_date: Mapped[dt.date] = mapped_column(Date)
    open: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    close: Mapped[float] = mapped_column(Double)
    volume: Mapped[float | None] = mapped_column(Double)
    value: Mapped[float | None] = mapped_column(Double)
    source: Mapped[str] = mapped_column(String(32))


class MarketGateRow(TimestampMixin, Base):
    """The Market Gate of a session as of a moment (domain notes §7): its colour (``GREEN``,
    ``YELLOW``, ``RED`` or ``UNKNOWN``), score (0–100, ``NULL`` when unknown), the reason, the
    USD/KRW rate, every component's score and readings, the sector ranking, KODEX 200's
    status and the parameters used — what produced it, kept with it. ``(trade_date, as_of)``
    is unique: recomputing the same moment replaces it."""

    __tablename__ = "market_gates"
    __table_args__ = (
        UniqueConstraint("trade_date", "as_of"),
        Index("ix_market_gates_as_of", "as_of"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trade_date: Mapped[dt.date] = mapped_column(Date)
    as_of: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    phase: Mapped[str] = mapped_column(String(16))
    color: Mapped[str] = mapped_column(String(8))
    score: Mapped[float | None] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(Text)
    usdkrw: Mapped[float | None] = mapped_column(Double)
    fx_warning: Mapped[bool] = mapped_column(Boolean, default=False)
    components: Mapped[Any] = mapped_column(JSONType)
    sectors: Mapped[Any] = mapped_column(JSONType)
    kodex_status: Mapped[str | None] = mapped_column(String(16))
    params: Mapped[Any] = mapped_column(JSONType)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)


class Event(Base):
    """A domain event in the outbox (the notifications issue): written in the same transaction
    as what caused it, then fanned out to the subscriptions that match it
    (``notification_deliveries``) by the dispatcher.

    ``event_id`` is a UUID (the Standard Webhooks ``webhook-id``); ``key`` is the business key,
    unique, so recording the same happening twice (a re-run) keeps one event; ``type`` and
    ``version`` name the payload's schema (:mod:`quant.notify.events`); ``at`` is when it
    happened; ``fanned_out_at`` is ``NULL`` until the dispatcher has created its deliveries.
    (Before migration 0017 this table was ``market_events`` with ``kind``.)"""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("key"),
        UniqueConstraint("event_id"),
        Index("ix_events_at", "at"),
        Index("ix_events_type_at", "type", "at"),
        Index(
            "ix_events_unfanned",
            "id",
            postgresql_where=text("fanned_out_at IS NULL"),
            sqlite_where=text("fanned_out_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(48))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    trade_date: Mapped[dt.date | None] = mapped_column(Date)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[Any] = mapped_column(JSONType)
    simulated: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    fanned_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class NotificationSubscription(TimestampMixin, Base):
    """Who is told what: a ``channel`` (``telegram``, ``slack``, ``discord``, ``email``,
    ``webhook``, ``file``), its ``target`` (a chat id, recipients, a URL or a path — never a
    secret), ``secret_ref`` (the name of a secret in ``QUANTBEAT_NOTIFY_SECRETS``: a bot token,
    a webhook URL, a signing secret; the secret itself is never stored here), ``filters``
    (:class:`quant.notify.filters.Filters` as JSON) and ``language`` (``ko``/``en``).

    A permanent delivery failure (a 403, an archived channel, a missing secret) disables the
    subscription with ``disabled_reason``. A lease (``notification_leases``, ``sub:<id>``)
    makes one dispatcher at a time deliver its messages, in event order."""

    __tablename__ = "notification_subscriptions"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(500))
    secret_ref: Mapped[str | None] = mapped_column(String(64))
    filters: Mapped[Any] = mapped_column(JSONType)
    language: Mapped[str] = mapped_column(String(2), server_default=text("'ko'"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class NotificationDelivery(TimestampMixin, Base):
    """The delivery ledger: one row per (event, subscription).

    ``state``: ``pending`` (due at ``next_attempt_at``), ``sending`` (an attempt is in flight,
    or its dispatcher died during it: the provider may or may not have the message),
    ``sent`` (every part confirmed), ``failed`` (permanent error or attempts exhausted:
    ``last_error``). ``parts_sent`` counts the parts the provider confirmed, so a retry
    resumes after them; ``in_doubt`` counts attempts found ``sending`` by a later dispatcher
    (resent: at least once); ``unconfirmed_ms`` is how long the last part's acceptance stayed
    unrecorded (the provider's answer to our UPDATE)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        Index("ix_notification_deliveries_queue", "subscription_id", "state", "event_id"),
        Index("ix_notification_deliveries_state_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("notification_subscriptions.id", ondelete="CASCADE")
    )
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    parts_sent: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    parts_total: Mapped[int | None] = mapped_column(Integer)
    in_doubt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    sending_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    unconfirmed_ms: Mapped[float | None] = mapped_column(Double)
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)


class NotificationLease(Base):
    """A named lease (``fanout``, ``sub:<subscription id>``): held by ``owner`` until
    ``until``; an expired lease (its holder died) is taken by the next caller."""

    __tablename__ = "notification_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class IntradaySnapshot(Base):
    """The day so far of an instrument or a reference series (an index) at ``taken_at``:
    open, high, low, the last price as ``close``, cumulative volume (shares) and value (KRW).
    Snapshots are history: the day's final bar replaces none of them. Exactly one of
    ``instrument_id`` and ``series_id`` is set; each is unique with ``taken_at``."""

    __tablename__ = "intraday_snapshots"
    __table_args__ = (
        UniqueConstraint("instrument_id", "taken_at"),
        UniqueConstraint("series_id", "taken_at"),
        Index("ix_intraday_snapshots_trade_date_taken_at", "trade_date", "taken_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trade_date: Mapped[dt.date] = mapped_column(Date)
    taken_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    instrument_id: Mapped[int | None] = mapped_column(
        ForeignKey("instruments.id", ondelete="CASCADE")
    )
    series_id: Mapped[int | None] = mapped_column(
        ForeignKey("reference_series.id", ondelete="CASCADE")
    )
    open: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    close: Mapped[float] = mapped_column(Double)
    volume: Mapped[float | None] = mapped_column(Double)
    value: Mapped[float | None] = mapped_column(Double)
    source: Mapped[str] = mapped_column(String(32))
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)


class SignalOutcome(Base):
    """Where a stored signal went (the track record, domain notes §9): followed on the bars
    (and snapshots) after it under its strategy's exit plan, versioned as ``rules``.

    ``state`` is ``pending`` (not entered yet), ``open``, ``closed`` (``reason``: the exit
    rule that fired), ``expired`` (never triggered) or ``void`` (halted, delisted: ``note``
    says why). Prices are quoted prices in the instrument's currency; returns and excursions
    are fractions of the entry price: ``gross_return`` before costs, ``net_return`` after
    commission, slippage and the dated sell tax (``costs`` = gross − net), ``mfe``/``mae`` the
    best and worst excursion while open. ``sessions_held`` counts trading sessions (entry
    session included). ``evaluated_through`` is the last session whose bar was read; one row
    per signal, rewritten only when a value changes.

    Every signal has its row from the moment it is stored: a trigger on ``signals``
    (migration 0021; :data:`OUTCOME_BIRTH_DDL` for ``create_all``) writes an unfollowed row —
    ``rules`` :data:`UNFOLLOWED_RULES`, ``state`` ``pending`` — that the track record's next
    update replaces, so its work list is an index read of this table.
    """

    __tablename__ = "signal_outcomes"
    __table_args__ = (
        Index("ix_signal_outcomes_state", "state"),
        Index("ix_signal_outcomes_rules", "rules"),
    )

    signal_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("signals.id", ondelete="CASCADE"), primary_key=True
    )
    rules: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    entry_date: Mapped[dt.date | None] = mapped_column(Date)
    entry_price: Mapped[float | None] = mapped_column(Double)
    exit_date: Mapped[dt.date | None] = mapped_column(Date)
    exit_price: Mapped[float | None] = mapped_column(Double)
    gross_return: Mapped[float | None] = mapped_column(Double)
    net_return: Mapped[float | None] = mapped_column(Double)
    costs: Mapped[float | None] = mapped_column(Double)
    mfe: Mapped[float | None] = mapped_column(Double)
    mae: Mapped[float | None] = mapped_column(Double)
    sessions_held: Mapped[int | None] = mapped_column(Integer)
    evaluated_through: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class Portfolio(TimestampMixin, Base):
    """A named paper portfolio (seed 004 Task 3.3): starting ``capital`` (KRW) from
    ``start_date``, and the ``rules`` it trades by (strategies and grades it takes, the
    sizer of domain notes §10, maximum positions, the gate rule, fees, slippage, tax) as
    JSON. ``state`` is ``active`` or ``paused`` (no new entries)."""

    __tablename__ = "portfolios"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    capital: Mapped[float] = mapped_column(Double)
    start_date: Mapped[dt.date] = mapped_column(Date)
    rules: Mapped[Any] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(16), server_default=text("'active'"))


class PortfolioOrder(Base):
    """A paper order of a portfolio for a signal: ``side`` ``buy`` or ``sell`` (one each per
    signal at most), ``quantity`` in shares, ``state`` ``filled`` or ``rejected`` (``reason``
    names the rule: gate, loss limit, cash, max positions, zero size …)."""

    __tablename__ = "portfolio_orders"
    __table_args__ = (
        UniqueConstraint("portfolio_id", "signal_id", "side"),
        Index("ix_portfolio_orders_portfolio_id_trade_date", "portfolio_id", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"))
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"))
    trade_date: Mapped[dt.date] = mapped_column(Date)
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class PortfolioFill(Base):
    """The fill of a filled order: ``price`` the fill price (slippage included), ``fees`` the
    commission and ``tax`` the sell tax, both in KRW."""

    __tablename__ = "portfolio_fills"
    __table_args__ = (UniqueConstraint("order_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("portfolio_orders.id", ondelete="CASCADE"))
    trade_date: Mapped[dt.date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Double)
    fees: Mapped[float] = mapped_column(Double)
    tax: Mapped[float] = mapped_column(Double)


class PortfolioPosition(Base):
    """A paper position opened from a signal (never without it): ``quantity`` shares bought at
    ``entry_price`` (fill) on ``opened_on``, ``stop`` the stop it was sized on; closed on
    ``closed_on`` at ``exit_price`` (fill) for ``exit_reason``, ``realized_pnl`` in KRW after
    every cost. ``last_price`` is the close it was last marked at."""

    __tablename__ = "portfolio_positions"
    __table_args__ = (
        UniqueConstraint("portfolio_id", "signal_id"),
        Index("ix_portfolio_positions_portfolio_id_state", "portfolio_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"))
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    opened_on: Mapped[dt.date] = mapped_column(Date)
    entry_price: Mapped[float] = mapped_column(Double)
    stop: Mapped[float | None] = mapped_column(Double)
    last_price: Mapped[float | None] = mapped_column(Double)
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    exit_price: Mapped[float | None] = mapped_column(Double)
    exit_reason: Mapped[str | None] = mapped_column(String(32))
    realized_pnl: Mapped[float | None] = mapped_column(Double)


class PortfolioDay(Base):
    """A portfolio's end of day: ``cash`` + ``market_value`` (open positions marked at the
    day's close) = ``equity``; ``pnl`` the day's change of equity, ``realized`` the P&L of the
    day's exits, all KRW. ``blocked`` names why new entries were refused that day (gate,
    daily/weekly loss limit), ``NULL`` when none was. Written in one transaction per
    portfolio-day."""

    __tablename__ = "portfolio_days"

    portfolio_id: Mapped[int] = mapped_column(
        ForeignKey("portfolios.id", ondelete="CASCADE"), primary_key=True
    )
    trade_date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    cash: Mapped[float] = mapped_column(Double)
    market_value: Mapped[float] = mapped_column(Double)
    equity: Mapped[float] = mapped_column(Double)
    pnl: Mapped[float] = mapped_column(Double)
    realized: Mapped[float] = mapped_column(Double)
    positions: Mapped[int] = mapped_column(Integer)
    blocked: Mapped[str | None] = mapped_column(Text)


class InstitutionalTrendSnapshot(TimestampMixin, Base):
    """The original system's per-ticker snapshot of investor net buying over the last 5, 10, 20
    and 60 sessions, as scraped on ``scrape_date`` (``all_institutional_trend_data.csv``).

    A snapshot, not a daily series: the windows end on the last session before the scrape, and
    the file does not say which sessions they cover, so they are never spread into
    ``investor_flows``. Net buying and volumes are in shares (``NULL``: the file did not give
    it); ``supply_demand_index`` is the original's 0–100 score; ``details`` keeps its other
    columns (ratios in %, trend labels, stages) as a JSON object. One row per instrument and
    scrape date.
    """

    __tablename__ = "institutional_trend_snapshots"
    __table_args__ = (
        UniqueConstraint("instrument_id", "scrape_date"),
        Index("ix_institutional_trend_snapshots_scrape_date", "scrape_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    scrape_date: Mapped[dt.date] = mapped_column(Date)
    data_source: Mapped[str | None] = mapped_column(String(64))
    total_days: Mapped[int | None] = mapped_column(Integer)
    foreign_net_5d: Mapped[int | None] = mapped_column(BigInteger)
    foreign_net_10d: Mapped[int | None] = mapped_column(BigInteger)
    foreign_net_20d: Mapped[int | None] = mapped_column(BigInteger)
    foreign_net_60d: Mapped[int | None] = mapped_column(BigInteger)
    institution_net_5d: Mapped[int | None] = mapped_column(BigInteger)
    institution_net_10d: Mapped[int | None] = mapped_column(BigInteger)
    institution_net_20d: Mapped[int | None] = mapped_column(BigInteger)
    institution_net_60d: Mapped[int | None] = mapped_column(BigInteger)
    volume_5d: Mapped[int | None] = mapped_column(BigInteger)
    volume_10d: Mapped[int | None] = mapped_column(BigInteger)
    volume_20d: Mapped[int | None] = mapped_column(BigInteger)
    volume_60d: Mapped[int | None] = mapped_column(BigInteger)
    supply_demand_index: Mapped[float | None] = mapped_column(Double)
    details: Mapped[Any | None] = mapped_column(NullableJSONType)
    source: Mapped[str] = mapped_column(String(32))


class ApiKey(TimestampMixin, Base):
    """A key of the HTTP API (``quantbeat api-key create``): only its SHA-256 hash is kept
    (``key_hash``, hex), never the key. ``prefix`` — the key's public part after ``qb_`` — finds
    the row; ``scopes`` is a JSON list of ``read``, ``run`` and ``admin``; ``rate_per_minute``
    overrides ``QUANTBEAT_API_RATE_PER_MINUTE`` for this key. A revoked or expired key is
    refused (401) and kept for the record."""

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("name"), UniqueConstraint("prefix"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[Any] = mapped_column(JSONType)
    rate_per_minute: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CryptoSignal(Base):
    """An hourly crypto signal (issue 23, :mod:`quant.crypto.signal`): ``action`` BUY, SELL
    or HOLD for ``instrument_id`` decided at ``at`` (UTC, the end of the last closed hourly
    bar) at ``price`` (KRW, that bar's close) with ``confidence`` 0–1, ``reasons`` and
    ``risk_flags`` (JSON lists), the figures it read (``inputs``), who decided (``analyst``:
    ``gemini`` or ``offline``, ``model``, ``prompt_version``) and whether the market was
    ``simulated``. One per instrument, strategy and hour.

    Its track record: ``return_1h``/``_4h``/``_24h`` — the price's change after it, as
    fractions — filled as the hours pass; ``followed_at`` when the last was (``NULL``:
    still followed)."""

    __tablename__ = "crypto_signals"
    __table_args__ = (
        UniqueConstraint("instrument_id", "strategy", "at"),
        Index("ix_crypto_signals_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[float] = mapped_column(Double)
    price: Mapped[float] = mapped_column(Double)
    reasons: Mapped[Any] = mapped_column(JSONType)
    risk_flags: Mapped[Any] = mapped_column(JSONType)
    inputs: Mapped[Any] = mapped_column(JSONType)
    analyst: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64))
    prompt_version: Mapped[str] = mapped_column(String(32))
    simulated: Mapped[bool] = mapped_column(Boolean)
    return_1h: Mapped[float | None] = mapped_column(Double)
    return_4h: Mapped[float | None] = mapped_column(Double)
    return_24h: Mapped[float | None] = mapped_column(Double)
    followed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class CryptoOrder(Base):
    """A paper order of a crypto portfolio for a signal (:mod:`quant.crypto.paper`), in
    Upbit's shape: ``side`` ``buy`` spending ``krw`` or ``sell`` of ``volume`` coins, placed
    at ``requested_at`` (the signal's hour). ``state``: ``pending`` until the next bar opens,
    then ``filled`` (``fill_price`` KRW per coin with slippage, ``filled_volume`` coins,
    ``fee`` KRW, ``filled_at`` the bar's start) or ``rejected`` (``reason`` names the rule).
    ``body`` is the request Upbit's ``POST /v1/orders`` would have received — never sent."""

    __tablename__ = "crypto_orders"
    __table_args__ = (
        UniqueConstraint("portfolio", "signal_id"),
        Index("ix_crypto_orders_portfolio_state", "portfolio", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    portfolio: Mapped[str] = mapped_column(String(64))
    signal_id: Mapped[int] = mapped_column(ForeignKey("crypto_signals.id", ondelete="CASCADE"))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(8))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    krw: Mapped[float | None] = mapped_column(Double)
    volume: Mapped[float | None] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    body: Mapped[Any | None] = mapped_column(NullableJSONType)
    fill_price: Mapped[float | None] = mapped_column(Double)
    filled_volume: Mapped[float | None] = mapped_column(Double)
    fee: Mapped[float | None] = mapped_column(Double)
    filled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP")
    )


class CryptoBook(Base):
    """The book of a crypto paper portfolio after its last sync: ``capital`` it started with,
    ``cash``, ``fees`` paid, ``realized`` P&L, ``equity`` marked at ``marked_at`` (all KRW),
    ``positions`` (JSON: market → volume, cost, last price) — always the replay of its filled
    orders; ``drift`` lists what differed from the replay at the last reconciliation (empty:
    nothing)."""

    __tablename__ = "crypto_books"

    portfolio: Mapped[str] = mapped_column(String(64), primary_key=True)
    capital: Mapped[float] = mapped_column(Double)
    cash: Mapped[float] = mapped_column(Double)
    fees: Mapped[float] = mapped_column(Double)
    realized: Mapped[float] = mapped_column(Double)
    equity: Mapped[float] = mapped_column(Double)
    positions: Mapped[Any] = mapped_column(JSONType)
    drift: Mapped[Any] = mapped_column(JSONType)
    marked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    reconciled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


#: The ``rules`` of an outcome row the track record has not computed yet (written by the
#: ``signals_outcome_birth`` trigger when the signal is stored).
UNFOLLOWED_RULES = ""

#: The birth-row trigger of migration 0021 by dialect, for schemas made with ``create_all``
#: (tests); migrated databases get it from the migration.
OUTCOME_BIRTH_DDL: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "postgresql",
        (
            "CREATE FUNCTION signal_outcome_birth() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO signal_outcomes (signal_id, rules, state) "
            "SELECT born.id, '', 'pending' FROM born ON CONFLICT (signal_id) DO NOTHING; "
            "RETURN NULL; END $$",
            "CREATE TRIGGER signals_outcome_birth AFTER INSERT ON signals "
            "REFERENCING NEW TABLE AS born FOR EACH STATEMENT "
            "EXECUTE FUNCTION signal_outcome_birth()",
        ),
    ),
    (
        "sqlite",
        (
            "CREATE TRIGGER signals_outcome_birth AFTER INSERT ON signals BEGIN "
            "INSERT OR IGNORE INTO signal_outcomes (signal_id, rules, state) "
            "VALUES (NEW.id, '', 'pending'); END",
        ),
    ),
)


def _attach_outcome_birth_trigger() -> None:
    for dialect, statements in OUTCOME_BIRTH_DDL:
        for statement in statements:
            event.listen(
                SignalOutcome.__table__,
                "after_create",
                DDL(statement).execute_if(dialect=dialect),  # type: ignore[no-untyped-call]
            )


_attach_outcome_birth_trigger()
