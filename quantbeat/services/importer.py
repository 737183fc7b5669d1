"""The database half of ``quantbeat import csv``: the earlier system's CSV files into quantbeat.

:mod:`quant.migration.csv_import` parses a file in chunks (pure, no database); this module
stores each chunk and accounts for every row. :func:`import_csv` is the one entry point.

What happens to a file
----------------------

1. An :class:`db.models.ImportRun` row is written first (status ``running``, in a transaction of
   its own) with the file's path, SHA-256 and the options; it is finished at the end with the
   counts and ``succeeded`` or ``failed`` (and the error). Every call is a new run.
2. The parser reads the file in chunks of ``chunk_rows`` data rows. **Each chunk is one
   transaction**: a crash or an error mid-file keeps the chunks already committed, and since
   every write is an upsert on the business key, a re-run of the same file skips nothing and
   duplicates nothing (it reports the rows already stored as ``unchanged``).
3. Instruments. ``stocks`` files are upserted into ``instruments`` by ``(market, ticker)``
   (name, currency and listing status are compared; ``source`` keeps who created the row).
   A row of a price, flow or signal file that names an instrument the database does not
   have is **rejected** (reason ``unknown_instrument``, the detail names ``MARKET:TICKER``):
   a typo or a wrong market must not invent an instrument. With ``create_instruments``
   (``quantbeat import csv --create-instruments``) such instruments are **created** instead
   (with the name, currency and status from ``stocks_file`` when it lists them, else the name
   from a signals file's name column, else the ticker as name; listed; source
   ``csv_import``); existing ones are left untouched either way. The report lists the
   instruments created (a later ``stocks`` import fills in the names).
4. Good rows are upserted: ``daily_prices`` → ``daily_candles``
   (:func:`db.store.upsert_daily_candles`), ``institutional_trend`` → ``investor_flows``
   (:func:`db.store.upsert_investor_flows`), ``signals`` → ``signals`` (key trade date,
   strategy, instrument; :func:`db.store.upsert_frame`; a blank strategy becomes ``legacy``,
   the reason text becomes ``reasons = [text]`` and the file's other columns ``inputs``, a
   JSON object of header → text); all with ``source = "csv_import"``. On PostgreSQL this is
   the bulk COPY path.
5. Rejected rows — the parser's, plus the few the database could not take (see
   :data:`IMPORT_REJECT_REASONS`) — go to the **reject file** (UTF-8 with BOM, so spreadsheet
   programs read Korean text): columns ``line``, ``reason``, ``detail``, then the file's own
   columns as written, then any surplus fields of a too-long row. A raw column whose header is
   ``line``, ``reason`` or ``detail`` is written as ``reason#2`` and so on. The reject file is
   always written (header only when nothing was rejected), replacing an earlier one; the
   reject counts per reason are also kept in ``ImportRun.notes``. CSV rejects are not written
   to ``data_rejections`` (that table is keyed for provider rows and has no line numbers; a
   badly broken file of a million rows would flood it).
6. **Reconciliation**: ``rows_read = inserted + updated + unchanged + rejected`` is checked for
   every chunk before it is committed and for the whole file; a mismatch is a bug and raises
   :class:`ReconciliationError` (the chunk is rolled back).

The reject file is written after each chunk's transaction has ended, so after an error
midway it holds exactly the rejects of the committed chunks, as the run's counts do. A process
killed outright leaves its run ``running``.

A **dry run** does all of the above — the same upserts, so the inserted/updated/unchanged
counts are real — but rolls back every chunk's transaction; only the ``ImportRun`` row (with
``dry_run = true``) and the reject file are kept.

Investor flows and units
------------------------

``investor_flows`` stores every group's net buying in shares *and* in KRW. The old system's
trend files usually hold one unit (and often no individual column). The parser leaves the
absent columns empty rather than inventing zeros, and so does this importer: a flow row whose
file lacks some of the six columns **updates** those it has on an already-stored flow row
(for example one collected from KRX), counted as ``updated`` or ``unchanged``; when no flow
row is stored for that instrument and day it is **inserted with the missing figures NULL**
(unknown), never zero.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, TypeVar, cast

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, bindparam, func, inspect, select, tuple_, update
from sqlalchemy.orm import Session

from db.engine import display_url, get_engine
from db.models import ImportRun, Instrument, InvestorFlow, Signal
from db.store import (
    BATCH_ROWS,
    UpsertCounts,
    insert_for,
    instrument_ids,
    upsert_daily_candles,
    upsert_frame,
    upsert_investor_flows,
    upsert_rows,
)
from quant.errors import ConfigError, ValidationError
from quant.market.types import INVESTOR_FLOW_COLUMNS, ListingStatus, Market
from quant.migration.csv_import import (
    FIELD_ALIASES,
    SIGNAL_COLUMNS,
    CsvKind,
    CsvLayout,
    FlowUnit,
    ParsedChunk,
    RejectedLine,
    inspect_csv,
    iter_chunks,
    normalise_header,
    parse_market,
    read_csv,
)
from quantbeat.services.indicators import invalidate_stored

__all__ = [
    "IMPORT_REJECT_REASONS",
    "LEGACY_STRATEGY",
    "SOURCE",
    "ImportReport",
    "ReconciliationError",
    "default_reject_file",
    "import_csv",
]

#: ``source`` of every row this importer writes.
SOURCE: Final[str] = "csv_import"
#: Strategy of a migrated signal whose file gives none.
LEGACY_STRATEGY: Final[str] = "legacy"

#: Reasons a row the parser accepted is still rejected here (in addition to the parser's
#: :data:`quant.migration.csv_import.REJECT_REASONS`).
IMPORT_REJECT_REASONS: Final[Mapping[str, str]] = {
    "value_too_long": "a text value is longer than its database column allows",
    "duplicate_row": "a blank strategy (stored as 'legacy') collides with an earlier row",
    "unknown_instrument": "the row names an instrument the database does not have (import "
    "its stocks list first, or pass --create-instruments)",
}

_FLOW_VALUES: Final[tuple[str, ...]] = tuple(
    c for c in INVESTOR_FLOW_COLUMNS if c not in ("market", "ticker", "trade_date")
)
_SIGNAL_COMPARE: Final[tuple[str, ...]] = (
    "score",
    "grade",
    "entry_price",
    "status",
    "reasons",
    "inputs",
    "source",
)
_RESERVED_REJECT_COLUMNS: Final[tuple[str, ...]] = ("line", "reason", "detail")
_HASH_BLOCK: Final[int] = 1 << 20
_NAMES: Final[frozenset[str]] = frozenset(normalise_header(a) for a in FIELD_ALIASES["name"])


class ReconciliationError(RuntimeError):
    """``rows read != inserted + updated + unchanged + rejected``: rows were lost or counted
    twice. Always a bug in quantbeat, never a property of the input."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :func:`import_csv` did with one file.

    Counts are rows of the file: ``rows_read == inserted + updated + unchanged + rejected``
    (see :attr:`reconciles`); ``blank_lines`` are not rows. ``inserted``/``updated``/
    ``unchanged`` are what the upserts did (for a dry run: would have done, then rolled back).
    ``instruments_created`` counts instruments a price, flow or signal file named that did not
    exist, created because ``create_instruments`` was set, and ``created_instruments`` names
    them (``MARKET:TICKER``, sorted); without it such rows are rejected ``unknown_instrument``
    (``stocks`` files count their instruments in ``inserted``/``updated`` instead).
    ``rejects_by_reason`` maps reason codes to counts. ``run_id`` is the ``import_runs`` row.
    """

    run_id: int
    path: Path
    kind: CsvKind
    encoding: str
    dry_run: bool
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    blank_lines: int
    reject_file: Path
    rejects_by_reason: Mapping[str, int]
    instruments_created: int
    notes: tuple[str, ...]
    seconds: float
    created_instruments: tuple[str, ...] = ()

    @property
    def reconciles(self) -> bool:
        """Whether rows read = inserted + updated + unchanged + rejected."""
        return self.rows_read == self.inserted + self.updated + self.unchanged + self.rejected


def default_reject_file(path: str | Path) -> Path:
    """Where the rejects of ``path`` go by default: ``<path>.rejects.csv`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".rejects.csv")


def import_csv(
    path: str | Path,
    *,
    kind: CsvKind | str | None = None,
    dry_run: bool = False,
    flow_unit: FlowUnit | str | None = None,
    default_market: Market | str | None = None,
    stocks_file: str | Path | None = None,
    reject_file: str | Path | None = None,
    chunk_rows: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
    database_url: str | None = None,
    create_instruments: bool = False,
    create_listed_instruments: bool = False,
) -> ImportReport:
    """Import the CSV file at ``path`` into the database (see the module docstring).

    ``kind`` ``None`` detects it from the header; ``flow_unit`` is the unit of flow columns
    whose header states none; ``default_market`` is the market of rows without one;
    ``stocks_file`` is a stocks list (``korean_stocks_list.csv``) that supplies the market of
    tickers in a file without a market column and the names of instruments the import has to
    create. Rejected rows go to ``reject_file`` (default :func:`default_reject_file`).
    ``create_instruments``: create the instruments a price, flow or signal file names that the
    database does not have (default: reject those rows, ``unknown_instrument``).
    ``create_listed_instruments``: create only those of them that ``stocks_file`` lists (the
    others are still rejected) — what ``quantbeat import original --dry-run`` needs, since the
    folder's stocks list is rolled back before its price file is read.
    ``progress(lines_done, lines_total)`` is called after each chunk, in physical lines of the
    file. ``database_url`` defaults to the configured one.

    Returns the :class:`ImportReport`; the same counts are in the ``import_runs`` row
    ``report.run_id``.

    Raises:
        quant.errors.ValidationError: an option is invalid (no run is recorded); or the file is
            unreadable, of an unknown kind, missing required columns (the message names them),
            or unreadable CSV midway — then the run is recorded ``failed`` with the error;
            chunks before a midway error stay committed.
        ReconciliationError: the counts do not add up (a bug; the chunk is rolled back).
        quant.errors.ConfigError: the database is not migrated (no ``import_runs`` table).
        sqlalchemy.exc.OperationalError: the database is unreachable.
    """
    options = _Options.parse(
        path, kind, flow_unit, default_market, stocks_file, reject_file, chunk_rows, dry_run,
        create_instruments, create_listed_instruments,
    )  # fmt: skip
    engine = get_engine(database_url)
    sha256, lines_total = _digest(options.path)
    run_id = _start_run(engine, options, sha256)
    importer = _Importer(engine, options, lines_total, progress)
    try:
        report = importer.run(run_id)
    except BaseException as exc:
        _finish_run(engine, run_id, importer, status="failed", error=_describe(exc))
        raise
    _finish_run(engine, run_id, importer, status="succeeded", error=None)
    return report


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class _Options:
    path: Path
    kind: CsvKind | None
    flow_unit: FlowUnit | None
    default_market: Market | None
    stocks_file: Path | None
    reject_file: Path
    chunk_rows: int
    dry_run: bool
    create_instruments: bool = False
    create_listed_instruments: bool = False

    @classmethod
    def parse(
        cls,
        path: str | Path,
        kind: CsvKind | str | None,
        flow_unit: FlowUnit | str | None,
        default_market: Market | str | None,
        stocks_file: str | Path | None,
        reject_file: str | Path | None,
        chunk_rows: int,
        dry_run: bool,
        create_instruments: bool = False,
        create_listed_instruments: bool = False,
    ) -> _Options:
        path = Path(path)
        rejects = Path(reject_file) if reject_file is not None else default_reject_file(path)
        if rejects.resolve() == path.resolve():
            raise ValidationError(
                f"the reject file {str(rejects)!r} is the input file itself",
                field="reject_file",
                value=str(rejects),
            )
        if chunk_rows < 1:
            raise ValidationError(
                f"chunk_rows must be >= 1, got {chunk_rows}", field="chunk_rows", value=chunk_rows
            )
        market = parse_market(default_market) if isinstance(default_market, str) else default_market
        return cls(
            path=path,
            kind=_choice(CsvKind, kind, "kind"),
            flow_unit=_choice(FlowUnit, flow_unit, "flow_unit"),
            default_market=market,
            stocks_file=Path(stocks_file) if stocks_file is not None else None,
            reject_file=rejects,
            chunk_rows=chunk_rows,
            dry_run=dry_run,
            create_instruments=create_instruments,
            create_listed_instruments=create_listed_instruments,
        )

    def as_notes(self) -> dict[str, Any]:
        """The options, JSON-ready, for ``ImportRun.notes``."""
        return {
            "kind": self.kind.value if self.kind else None,
            "flow_unit": self.flow_unit.value if self.flow_unit else None,
            "default_market": self.default_market.value if self.default_market else None,
            "stocks_file": str(self.stocks_file) if self.stocks_file else None,
            "chunk_rows": self.chunk_rows,
        }


_E = TypeVar("_E", CsvKind, FlowUnit)


def _choice(enum: type[_E], value: _E | str | None, name: str) -> _E | None:
    if value is None or isinstance(value, enum):
        return value
    try:
        return enum(value.strip().lower())
    except ValueError:
        accepted = ", ".join(e.value for e in enum)
        raise ValidationError(
            f"{name} must be one of {accepted}, got {value!r}", field=name, value=value
        ) from None


def _digest(path: Path) -> tuple[str | None, int]:
    """(SHA-256 hex, physical line count) of the file, or (None, 0) when it cannot be read
    (the parser then raises the error that names the problem)."""
    digest = hashlib.sha256()
    newlines = 0
    last = b""
    try:
        with path.open("rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
                newlines += block.count(b"\n")
                last = block
    except OSError:
        return None, 0
    lines = newlines + (1 if last and not last.endswith(b"\n") else 0)
    return digest.hexdigest(), lines


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------- import_runs


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _start_run(engine: Engine, options: _Options, sha256: str | None) -> int:
    missing = [t for t in ("import_runs", "signals") if not inspect(engine).has_table(t)]
    if missing:
        raise ConfigError(
            f"the database {display_url(str(engine.url))} has no {' or '.join(missing)} "
            "table: it is not migrated to the current schema; run `quantbeat db upgrade`"
        )
    with Session(engine) as session, session.begin():
        run = ImportRun(
            path=str(options.path.resolve()),
            kind=options.kind.value if options.kind else None,
            file_sha256=sha256,
            encoding=None,
            dry_run=options.dry_run,
            status="running",
            started_at=_now(),
            rows_read=0,
            inserted=0,
            updated=0,
            unchanged=0,
            rejected=0,
            blank_lines=0,
            reject_file=None,
            notes={"options": options.as_notes()},
        )
        session.add(run)
        session.flush()
        return int(run.id)


def _finish_run(
    engine: Engine, run_id: int, importer: _Importer, *, status: str, error: str | None
) -> None:
    totals = importer.totals
    layout = importer.layout
    notes: dict[str, Any] = {
        "options": importer.options.as_notes(),
        "rejects_by_reason": dict(sorted(totals.reasons.items())),
        "instruments_created": len(totals.created),
        "created_instruments": sorted(f"{m}:{t}" for m, t in totals.created)[:1000],
        "chunks": totals.chunks,
        "lines_total": importer.lines_total,
        "database": engine.dialect.name,
    }
    if layout is not None:
        notes |= {
            "headers": list(layout.headers),
            "columns": dict(layout.columns),
            "ignored_headers": list(layout.ignored),
            "missing_optional": list(layout.missing_optional),
            "parser_notes": list(layout.notes),
        }
    notes["notes"] = list(importer.notes)
    try:
        with Session(engine) as session, session.begin():
            run = session.get(ImportRun, run_id)
            if run is None:  # pragma: no cover - deleted underneath us
                return
            run.kind = layout.kind.value if layout is not None else run.kind
            run.encoding = layout.encoding if layout is not None else None
            run.status = status
            run.finished_at = _now()
            run.rows_read = totals.rows
            run.inserted = totals.counts.inserted
            run.updated = totals.counts.updated
            run.unchanged = totals.counts.unchanged
            run.rejected = totals.rejected
            run.blank_lines = totals.blank_lines
            run.reject_file = str(importer.reject_path) if importer.reject_path else None
            run.error = error
            run.notes = notes
            run.updated_at = _now()
    except Exception:
        if status == "succeeded":
            raise
        # Finishing a failed run must not hide the error that failed it.


# --------------------------------------------------------------------------- the import


@dataclass(slots=True)
class _Totals:
    rows: int = 0
    rejected: int = 0
    blank_lines: int = 0
    chunks: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    reasons: Counter[str] = field(default_factory=Counter)
    created: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Extra:
    """A row the parser accepted but the import rejects: its index in ``chunk.good``."""

    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class _Outcome:
    counts: UpsertCounts
    extra: list[_Extra]
    created: set[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _Catalogue:
    """What ``stocks_file`` says: ticker → market, and (market, ticker) → name etc."""

    ticker_markets: dict[str, Market]
    instruments: dict[tuple[str, str], tuple[str, str, str]]  # name, currency, listing status
    notes: tuple[str, ...]


class _Importer:
    def __init__(
        self,
        engine: Engine,
        options: _Options,
        lines_total: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.engine = engine
        self.options = options
        self.lines_total = lines_total
        self.progress = progress
        self.totals = _Totals()
        self.layout: CsvLayout | None = None
        self.reject_path: Path | None = None
        self.notes: list[str] = []
        self.catalogue = _Catalogue({}, {}, ())
        self.legacy_keys: set[tuple[str, str, dt.date]] = set()

    # -- driver

    def run(self, run_id: int) -> ImportReport:
        started = time.perf_counter()
        options = self.options
        if options.stocks_file is not None:
            self.catalogue = _read_catalogue(options.stocks_file, options.default_market)
            self.notes.extend(self.catalogue.notes)
        self.layout = inspect_csv(options.path, options.kind, flow_unit=options.flow_unit)
        chunks = iter_chunks(
            options.path,
            self.layout.kind,
            options.chunk_rows,
            default_market=options.default_market,
            ticker_markets=self.catalogue.ticker_markets or None,
            flow_unit=options.flow_unit,
            encoding=self.layout.encoding,
        )
        layout = self.layout
        self.reject_path = options.reject_file
        locator = _RowLocator(layout)
        try:
            with _RejectWriter(options.reject_file, layout.headers) as writer:
                lines_done = 0
                for chunk in chunks:
                    self._chunk(chunk, locator, writer)
                    lines_done = max(lines_done, chunk.last_line)
                    if self.progress is not None:
                        self.progress(min(lines_done, self.lines_total), self.lines_total)
        finally:
            locator.close()
        totals = self.totals
        _reconcile(totals.rows, totals.counts, totals.rejected, where=str(options.path))
        if self.progress is not None:
            self.progress(self.lines_total, self.lines_total)
        return ImportReport(
            run_id=run_id,
            path=options.path,
            kind=layout.kind,
            encoding=layout.encoding,
            dry_run=options.dry_run,
            rows_read=totals.rows,
            inserted=totals.counts.inserted,
            updated=totals.counts.updated,
            unchanged=totals.counts.unchanged,
            rejected=totals.rejected,
            blank_lines=totals.blank_lines,
            reject_file=options.reject_file,
            rejects_by_reason=dict(sorted(totals.reasons.items())),
            instruments_created=len(totals.created),
            notes=(*layout.notes, *self.notes),
            seconds=time.perf_counter() - started,
            created_instruments=tuple(sorted(f"{m}:{t}" for m, t in totals.created)),
        )

    def _chunk(self, chunk: ParsedChunk, locator: _RowLocator, writer: _RejectWriter) -> None:
        first_row = self.totals.rows  # index of this chunk's first data row in the file
        with _transaction(self.engine, commit=not self.options.dry_run) as session:
            outcome = self._store(session, chunk.good)
            extra_rejects = self._locate(chunk, outcome.extra, locator, first_row)
            rejected = len(chunk.rejects) + len(extra_rejects)
            _reconcile(
                chunk.rows,
                outcome.counts,
                rejected,
                where=f"{self.options.path} lines {chunk.first_line}-{chunk.last_line}",
            )
        if (
            not self.options.dry_run
            and self.layout is not None
            and self.layout.kind is CsvKind.DAILY_PRICES
        ):
            # After the commit: cached indicators of these instruments are now stale.
            invalidate_stored(chunk.good)
        # Written once the chunk's transaction has ended, so the reject file and the counts
        # always describe the same rows, even if a later chunk fails.
        rejects = sorted([*chunk.rejects, *extra_rejects], key=lambda r: r.line)
        writer.write(rejects)
        totals = self.totals
        totals.rows += chunk.rows
        totals.rejected += rejected
        totals.blank_lines += chunk.blank_lines
        totals.chunks += 1
        totals.counts = totals.counts + outcome.counts
        totals.reasons.update(r.reason for r in rejects)
        totals.created |= outcome.created

    def _locate(
        self, chunk: ParsedChunk, extra: list[_Extra], locator: _RowLocator, first_row: int
    ) -> list[RejectedLine]:
        """The rejected lines of ``extra`` (indexes into ``chunk.good``), found in the file."""
        if not extra:
            return []
        rows = locator.rows(first_row, chunk.rows)
        parser_lines = {r.line for r in chunk.rejects}
        good_rows = [(line, cells) for line, cells in rows if line not in parser_lines]
        if len(good_rows) != len(chunk.good):
            raise ReconciliationError(
                f"{self.options.path}: chunk at line {chunk.first_line} has {len(chunk.good)} "
                f"good rows but {len(good_rows)} rows were found in the file"
            )
        out = []
        for item in extra:
            line, cells = good_rows[item.index]
            out.append(RejectedLine(line, item.reason, item.detail, _raw(self.layout, cells)))
        return out

    # -- per kind

    def _store(self, session: Session, good: pd.DataFrame) -> _Outcome:
        assert self.layout is not None
        kind = self.layout.kind
        extra = _too_long(good, self.layout)
        if kind is CsvKind.SIGNALS:
            extra += self._legacy_collisions(good, {e.index for e in extra})
        keep = _without(good, extra)
        if kind is CsvKind.STOCKS:
            return _Outcome(_upsert_stocks(session, keep), extra, set())
        if not self.options.create_instruments:
            unknown = _unknown_instruments(session, keep)
            if self.options.create_listed_instruments:
                listed = self.catalogue.instruments
                unknown = [
                    u
                    for u in unknown
                    if (keep.at[u.index, "market"], keep.at[u.index, "ticker"]) not in listed
                ]
            extra += unknown
            keep = _without(keep, unknown)
        if kind is CsvKind.INSTITUTIONAL_TREND:
            counts, incomplete, created = _store_flows(session, keep, self.catalogue)
            return _Outcome(counts, extra + incomplete, created)
        ids, created = _ensure_instruments(session, keep, self.catalogue, self._names(keep))
        if kind is CsvKind.DAILY_PRICES:
            counts = upsert_daily_candles(session, keep, ids, source=SOURCE)
        else:
            counts = _upsert_signals(session, keep, ids)
        return _Outcome(counts, extra, created)

    def _names(self, good: pd.DataFrame) -> dict[tuple[str, str], str]:
        """Instrument names a SIGNALS file gives in a name column (kept in ``extra``)."""
        assert self.layout is not None
        if self.layout.kind is not CsvKind.SIGNALS or good.empty:
            return {}
        header = next((h for h in self.layout.ignored if normalise_header(h) in _NAMES), None)
        if header is None:
            return {}
        out: dict[tuple[str, str], str] = {}
        for market, ticker, extra in zip(
            good["market"], good["ticker"], good["extra"], strict=True
        ):
            name = extra.get(header) if isinstance(extra, dict) else None
            if isinstance(name, str) and name:
                out.setdefault((str(market), str(ticker)), name[: _width(Instrument, "name")])
        return out

    def _legacy_collisions(self, good: pd.DataFrame, skipped: set[int]) -> list[_Extra]:
        """Signals whose strategy is blank or ``legacy``: the first per (market, ticker, date)
        in the file is kept (parser rule), a later one would hit the same database key."""
        out: list[_Extra] = []
        strategies = good["strategy"].tolist()
        for i, (market, ticker, day) in enumerate(
            zip(good["market"], good["ticker"], good["trade_date"], strict=True)
        ):
            if i in skipped or (strategies[i] or LEGACY_STRATEGY) != LEGACY_STRATEGY:
                continue
            key = (str(market), str(ticker), day)
            if key in self.legacy_keys:
                out.append(
                    _Extra(
                        i,
                        "duplicate_row",
                        f"an earlier row for {market} {ticker} {day} has a blank or "
                        f"{LEGACY_STRATEGY!r} strategy; both are stored as {LEGACY_STRATEGY!r}",
                    )
                )
            else:
                self.legacy_keys.add(key)
        return out


# --------------------------------------------------------------------------- storing


@contextmanager
def _transaction(engine: Engine, *, commit: bool) -> Iterator[Session]:
    """A session in one transaction, committed at the end when ``commit``, else rolled back
    (dry run); rolled back on error either way."""
    with Session(engine, expire_on_commit=False) as session:
        session.begin()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        if commit:
            session.commit()
        else:
            session.rollback()


def _reconcile(rows: int, counts: UpsertCounts, rejected: int, *, where: str) -> None:
    stored = counts.inserted + counts.updated + counts.unchanged
    if rows != stored + rejected:
        raise ReconciliationError(
            f"{where}: {rows} rows read but {counts.inserted} inserted + {counts.updated} "
            f"updated + {counts.unchanged} unchanged + {rejected} rejected = {stored + rejected}"
        )


def _without(frame: pd.DataFrame, extra: Sequence[_Extra]) -> pd.DataFrame:
    """``frame`` without the rows of ``extra``, keeping the original index."""
    if not extra:
        return frame
    return frame.drop(index=[e.index for e in extra])


def _too_long(good: pd.DataFrame, layout: CsvLayout) -> list[_Extra]:
    """Rows with a text value longer than its column (they would fail the whole chunk)."""
    limits: dict[str, tuple[int, str]] = {"ticker": (_width(Instrument, "ticker"), "ticker")}
    if layout.kind is CsvKind.STOCKS:
        limits["name"] = (_width(Instrument, "name"), "name")
    if layout.kind is CsvKind.SIGNALS:
        for column in ("strategy", "grade", "status"):
            limits[column] = (_width(Signal, column), column)
    out: list[_Extra] = []
    seen: set[int] = set()
    for column, (limit, canonical) in limits.items():
        if good.empty:
            break
        lengths = good[column].map(lambda v: len(v) if isinstance(v, str) else 0)
        position = layout.columns.get(canonical)
        header = layout.headers[position] if position is not None else canonical
        for index in np.flatnonzero(lengths.to_numpy() > limit).tolist():
            if index in seen:
                continue
            seen.add(index)
            value = good[column].iloc[index]
            out.append(
                _Extra(
                    int(index),
                    "value_too_long",
                    f"column {header!r}: {value!r} has {len(value)} characters; "
                    f"the database keeps at most {limit}",
                )
            )
    return out


def _width(model: type[Instrument] | type[Signal], column: str) -> int:
    length = getattr(model.__table__.c[column].type, "length", None)
    assert isinstance(length, int)
    return length


def _upsert_stocks(session: Session, frame: pd.DataFrame) -> UpsertCounts:
    rows = [
        {
            "market": market,
            "ticker": ticker,
            "name": name,
            "currency": currency,
            "listing_status": status,
            "source": SOURCE,
        }
        for market, ticker, name, currency, status in frame[
            ["market", "ticker", "name", "currency", "listing_status"]
        ].itertuples(index=False, name=None)
    ]
    return upsert_rows(
        session,
        Instrument.__table__,  # type: ignore[arg-type]
        rows,
        key=("market", "ticker"),
        # ``source`` is not compared: it keeps who created the instrument.
        compare=("name", "currency", "listing_status"),
    )


def _unknown_instruments(session: Session, frame: pd.DataFrame) -> list[_Extra]:
    """Rows of ``frame`` naming an instrument the database does not have (indexes are the
    frame's labels: positions in the chunk's good rows)."""
    if frame.empty:
        return []
    pairs = list(dict.fromkeys(zip(frame["market"], frame["ticker"], strict=True)))
    known = instrument_ids(session, pairs)
    if len(known) == len(pairs):
        return []
    return [
        _Extra(
            int(label),
            "unknown_instrument",
            f"instrument {market}:{ticker} does not exist; import its stocks list first "
            "(quantbeat import csv <stocks file>) or pass --create-instruments",
        )
        for label, market, ticker in zip(frame.index, frame["market"], frame["ticker"], strict=True)
        if (market, ticker) not in known
    ]


def _ensure_instruments(
    session: Session,
    frame: pd.DataFrame,
    catalogue: _Catalogue,
    names: Mapping[tuple[str, str], str] | None = None,
) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
    """Ids of the instruments ``frame`` names, creating the missing ones (existing rows are
    left as they are) with the stocks file's details, else a name from ``names``, else the
    ticker as name. Returns the ids and the pairs created."""
    if frame.empty:
        return {}, set()
    pairs = list(dict.fromkeys(zip(frame["market"], frame["ticker"], strict=True)))
    ids = instrument_ids(session, pairs)
    missing = [p for p in pairs if p not in ids]
    created: set[tuple[str, str]] = set()
    if missing:
        rows = []
        for market, ticker in missing:
            name, currency, status = catalogue.instruments.get(
                (market, ticker),
                (
                    (names or {}).get((market, ticker), ticker),
                    "USD" if market == Market.US.value else "KRW",
                    ListingStatus.LISTED.value,
                ),
            )
            rows.append(
                {
                    "market": market,
                    "ticker": ticker,
                    "name": name,
                    "currency": currency,
                    "listing_status": status,
                    "source": SOURCE,
                }
            )
        table = Instrument.__table__
        stmt = (
            insert_for(session, table)  # type: ignore[arg-type]
            .on_conflict_do_nothing(index_elements=["market", "ticker"])
            .returning(table.c.market, table.c.ticker, table.c.id)
        )
        for start in range(0, len(rows), BATCH_ROWS):
            for market, ticker, ident in session.execute(stmt, rows[start : start + BATCH_ROWS]):
                ids[(market, ticker)] = int(ident)
                created.add((market, ticker))
        # Rows another writer inserted meanwhile (ON CONFLICT DO NOTHING returned nothing).
        ids |= instrument_ids(session, [p for p in missing if p not in ids])
    return ids, created


def _store_flows(
    session: Session, frame: pd.DataFrame, catalogue: _Catalogue
) -> tuple[UpsertCounts, list[_Extra], set[tuple[str, str]]]:
    """Instruments are created as needed; complete rows (all six values) are upserted; the
    others update the figures they have on stored rows, or are inserted with the missing
    figures NULL (see the module docstring)."""
    if frame.empty:
        return UpsertCounts(), [], set()
    is_complete = frame[list(_FLOW_VALUES)].notna().all(axis=1)
    ids, created = _ensure_instruments(session, frame, catalogue)
    complete = frame.loc[is_complete].reset_index(drop=True)
    counts = upsert_investor_flows(session, complete, ids, source=SOURCE)
    partial = frame.loc[~is_complete]
    if partial.empty:
        return counts, [], created
    merged, extra = _merge_flows(session, partial, ids)
    return counts + merged, extra, created


def _merge_flows(
    session: Session, partial: pd.DataFrame, ids: Mapping[tuple[str, str], int]
) -> tuple[UpsertCounts, list[_Extra]]:
    """Update the columns ``partial`` has on stored flow rows; insert the rows that have no
    stored row, with the columns the file lacks left NULL."""
    table = cast(Table, InvestorFlow.__table__)
    present = [c for c in _FLOW_VALUES if partial[c].notna().all()]
    absent = [c for c in _FLOW_VALUES if c not in present]
    rows = partial.assign(
        instrument_id=[
            ids.get((m, t), -1) for m, t in zip(partial["market"], partial["ticker"], strict=True)
        ]
    )
    keys: list[tuple[int, dt.date]] = list(
        zip(rows["instrument_id"].tolist(), rows["trade_date"].tolist(), strict=True)
    )
    stored: dict[tuple[int, dt.date], tuple[Any, ...]] = {}
    key_columns = tuple_(table.c.instrument_id, table.c.trade_date)
    for start in range(0, len(keys), BATCH_ROWS):
        result = session.execute(
            select(table.c.instrument_id, table.c.trade_date, *(table.c[c] for c in present)).where(
                key_columns.in_(keys[start : start + BATCH_ROWS])
            )
        )
        for ident, day, *current in result:
            stored[(int(ident), day)] = tuple(current)
    changes: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    unchanged = 0
    new_values: list[list[int]] = rows[present].astype("int64").to_numpy().tolist()
    for position, key in enumerate(keys):
        found = stored.get(key)
        if found is None:
            inserts.append(
                {
                    "instrument_id": key[0],
                    "trade_date": key[1],
                    **dict(zip(present, new_values[position], strict=True)),
                    **dict.fromkeys(absent),
                    "source": SOURCE,
                }
            )
            continue
        new = new_values[position]
        if list(found) == new:
            unchanged += 1
            continue
        changes.append(
            {
                "b_id": key[0],
                "b_day": key[1],
                **{f"b_{c}": v for c, v in zip(present, new, strict=True)},
            }
        )
    if changes:
        stmt = (
            update(table)
            .where(
                table.c.instrument_id == bindparam("b_id"),
                table.c.trade_date == bindparam("b_day"),
            )
            .values({**{c: bindparam(f"b_{c}") for c in present}, "updated_at": func.now()})
        )
        session.connection().execute(stmt, changes)
    if inserts:
        add = insert_for(session, table).on_conflict_do_nothing(
            index_elements=["instrument_id", "trade_date"]
        )
        session.execute(add, inserts)
    return UpsertCounts(len(inserts), len(changes), unchanged), []


def _upsert_signals(
    session: Session, frame: pd.DataFrame, ids: Mapping[tuple[str, str], int]
) -> UpsertCounts:
    """Upsert SIGNALS rows: through COPY on PostgreSQL (:func:`db.store.upsert_frame`, JSON
    as text), through :func:`db.store.upsert_rows` elsewhere (SQLAlchemy's JSON type encodes
    the objects)."""
    if frame.empty:
        return UpsertCounts()

    def number(value: Any) -> float | None:
        return None if pd.isna(value) else float(value)

    records: list[dict[str, Any]] = [
        {
            "trade_date": day,
            "strategy": strategy or LEGACY_STRATEGY,
            "instrument_id": ids[(market, ticker)],
            "score": number(score),
            "grade": grade,
            "entry_price": number(entry),
            "status": status,
            "reasons": [reason] if reason else None,
            "inputs": dict(extra) if extra else None,
            "source": SOURCE,
            "phase": "final",
        }
        for day, market, ticker, strategy, score, grade, entry, status, reason, extra in frame[
            list(SIGNAL_COLUMNS)
        ].itertuples(index=False, name=None)
    ]
    table = cast(Table, Signal.__table__)
    key = ("trade_date", "strategy", "phase", "instrument_id")
    if session.get_bind().dialect.name != "postgresql":
        return upsert_rows(session, table, records, key=key, compare=_SIGNAL_COMPARE)
    rows = pd.DataFrame.from_records(records, columns=[*key, *_SIGNAL_COMPARE])
    for column in ("reasons", "inputs"):
        rows[column] = pd.Series(
            [None if v is None else json.dumps(v, ensure_ascii=False) for v in rows[column]],
            dtype=object,
        )
    return upsert_frame(session, table, rows, key=key, compare=_SIGNAL_COMPARE)


def _read_catalogue(path: Path, default_market: Market | None) -> _Catalogue:
    """The stocks list at ``path``: markets of tickers and names of instruments."""
    parsed = read_csv(path, CsvKind.STOCKS, default_market=default_market)
    ticker_markets: dict[str, Market] = {}
    instruments: dict[tuple[str, str], tuple[str, str, str]] = {}
    ambiguous: set[str] = set()
    for market, ticker, name, currency, status in parsed.good[
        ["market", "ticker", "name", "currency", "listing_status"]
    ].itertuples(index=False, name=None):
        instruments[(market, ticker)] = (str(name)[:200], str(currency), str(status))
        if ticker in ticker_markets and ticker_markets[ticker].value != market:
            ambiguous.add(ticker)
        ticker_markets.setdefault(ticker, Market(market))
    notes = [f"stocks file {path}: {len(instruments)} instruments"]
    if parsed.rejects:
        notes.append(f"stocks file {path}: {len(parsed.rejects)} rows rejected, not used")
    if ambiguous:
        sample = ", ".join(sorted(ambiguous)[:5])
        notes.append(
            f"stocks file {path}: {len(ambiguous)} ticker(s) listed in two markets "
            f"({sample}); the first market listed is used"
        )
    return _Catalogue(ticker_markets, instruments, tuple(notes))


# --------------------------------------------------------------------------- rejects


def _raw(layout: CsvLayout | None, cells: Sequence[str]) -> dict[str, str]:
    """A row as read, header → cell, as :class:`RejectedLine` holds it."""
    headers = layout.headers if layout is not None else ()
    raw = dict(zip(headers, cells, strict=False))
    for k, surplus in enumerate(cells[len(headers) :], start=1):
        raw[f"__extra_{k}"] = surplus
    return raw


class _RowLocator:
    """The data rows of a file with the line each starts on, read with the parser's rules
    (blank rows skipped, the first non-blank row is the header). Only read when a row the
    parser accepted is rejected later (the good frame carries no line numbers)."""

    def __init__(self, layout: CsvLayout) -> None:
        self._layout = layout
        self._rows: Iterator[tuple[int, list[str]]] | None = None
        self._handle: IO[str] | None = None
        self._position = 0

    def rows(self, start: int, count: int) -> list[tuple[int, list[str]]]:
        """(line, cells) of data rows ``start`` … ``start + count - 1`` (0-based, increasing
        between calls)."""
        if self._rows is None:
            self._rows = self._read()
        if start < self._position:
            raise ReconciliationError(f"row {start} was requested after row {self._position}")
        for _ in range(start - self._position):
            next(self._rows)
        out = [next(self._rows) for _ in range(count)]
        self._position = start + count
        return out

    def _read(self) -> Iterator[tuple[int, list[str]]]:
        layout = self._layout
        self._handle = layout.path.open(encoding=layout.encoding, newline="")
        reader = csv.reader(self._handle, delimiter=layout.delimiter)
        previous = 0
        header_seen = False
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                continue
            yield start, row

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class _RejectWriter:
    """The reject file: ``line, reason, detail`` and the rejected row's own columns."""

    def __init__(self, path: Path, headers: Sequence[str]) -> None:
        self.path = path
        self.headers = tuple(headers)
        self._handle: IO[str] | None = None

    def __enter__(self) -> _RejectWriter:
        try:
            self._handle = self.path.open("w", encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise ValidationError(
                f"cannot write the reject file {str(self.path)!r}: {exc.strerror or exc}",
                field="reject_file",
                value=str(self.path),
            ) from exc
        self._writer = csv.writer(self._handle)
        self._writer.writerow([*_RESERVED_REJECT_COLUMNS, *_reject_headers(self.headers)])
        self._handle.flush()
        return self

    def write(self, rejects: Sequence[RejectedLine]) -> None:
        assert self._handle is not None
        for r in rejects:
            surplus = [v for k, v in r.raw.items() if k.startswith("__extra_")]
            self._writer.writerow(
                [r.line, r.reason, r.detail, *(r.raw.get(h, "") for h in self.headers), *surplus]
            )
        self._handle.flush()

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.close()


def _reject_headers(headers: Sequence[str]) -> list[str]:
    """The raw headers, with those that would repeat ``line``/``reason``/``detail`` (or each
    other after renaming) given the parser's ``#2``, ``#3`` … suffix."""
    taken = set(_RESERVED_REJECT_COLUMNS)
    out: list[str] = []
    for header in headers:
        name, n = header, 1
        while name in taken:
            n += 1
            name = f"{header}#{n}"
        taken.add(name)
        out.append(name)
    return out
