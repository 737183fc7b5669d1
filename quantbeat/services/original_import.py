"""``quantbeat import original``: migrate a folder of the original system's files.

The original system keeps its state in files (``docs/original_files.md``).
:func:`import_original` finds them in a folder (and its ``history/`` subfolder) and imports each
in order: ``korean_stocks_list.csv`` → instruments, ``daily_prices.csv`` → daily candles (both
through :func:`quantbeat.services.importer.import_csv`; the prices' market comes from the stocks
list, the traded value is unknown: NULL), ``all_institutional_trend_data.csv`` → dated
``institutional_trend_snapshots``, ``signals_log.csv`` → ``vcp`` signals,
``jongga_v2_results_YYYYMMDD.json`` → ``closing_bet`` signals (and the analyses the engine's LLM
left), ``kr_ai_analysis*.json`` → ``ai_analyses``. Signals keep the original's entry price and
status; their outcomes are computed by the track-record rules, not taken from the file.

Every file is one ``import_runs`` row (``kind`` ``original_<kind>`` for the four parsed here)
and one reject file ``<file>.rejects.csv`` (line, reason, detail, then the row as read), and
reconciles: rows read = inserted + updated + unchanged + rejected, checked before commit
(:class:`quantbeat.services.importer.ReconciliationError` otherwise). The four small files are
each one transaction; a dry run does the same writes and rolls them back (for the price file,
instruments only the folder's stocks list names are created inside the rolled-back
transactions, so a dry run of a fresh folder reports what a real run would do). A re-import
changes nothing: all writes are upserts on business keys that skip identical rows.

Instruments: a row's market comes from the file (the closing-bet JSON), else from the stored
instruments with that ticker in KOSPI, KOSDAQ or KONEX, else from the folder's stocks list. A
ticker found nowhere is rejected ``unknown_instrument``; one stored in two markets,
``ambiguous_instrument``. With ``create_instruments`` a ticker whose market is known is created
(name from the file, else the ticker).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from db.engine import display_url, get_engine
from db.models import ImportRun
from db.original import (
    KRX_MARKETS,
    instruments_by_ticker,
    upsert_original_analyses,
    upsert_original_signals,
    upsert_trend_snapshots,
)
from db.store import UpsertCounts, instrument_ids, upsert_instruments
from quant.errors import ConfigError, ValidationError
from quant.market.types import Instrument as InstrumentRecord
from quant.market.types import ListingStatus, Market
from quant.migration.csv_import import CsvKind, RejectedLine, read_csv
from quant.migration.original import (
    SOURCE_TREND,
    OriginalAnalysis,
    OriginalFile,
    OriginalSignal,
    ParsedOriginal,
    TrendSnapshot,
    find_original_files,
    original_kind,
    parse_original,
)
from quantbeat.services.importer import (
    ImportReport,
    ReconciliationError,
    default_reject_file,
    import_csv,
)

__all__ = [
    "ORIGINAL_IMPORT_REJECT_REASONS",
    "OriginalFileReport",
    "OriginalImportReport",
    "import_original",
]

#: Reasons a row the parser accepted is still rejected here.
ORIGINAL_IMPORT_REJECT_REASONS: Final[dict[str, str]] = {
    "unknown_instrument": "the ticker is stored in no KRX market and not in the stocks list "
    "(import korean_stocks_list.csv first, or pass --create-instruments)",
    "ambiguous_instrument": "the ticker is stored in two markets and the file names none",
}

_RECORD = OriginalSignal | TrendSnapshot | OriginalAnalysis


@dataclass(frozen=True, slots=True)
class OriginalFileReport:
    """What became of one original file. ``rows_read == inserted + updated + unchanged +
    rejected`` (:attr:`reconciles`); for a dry run the counts are what a real run would do.
    ``analyses`` counts the analyses written beside a closing-bet file's signals (not rows).
    ``notes`` include what cannot be checked (a price file without traded value)."""

    kind: OriginalFile
    path: Path
    run_id: int
    dry_run: bool
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    rejects_by_reason: dict[str, int]
    reject_file: Path
    notes: tuple[str, ...] = ()
    analyses: UpsertCounts | None = None
    instruments_created: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        """Whether rows read = inserted + updated + unchanged + rejected."""
        stored = self.inserted + self.updated + self.unchanged
        return self.rows_read == stored + self.rejected


@dataclass(frozen=True, slots=True)
class OriginalImportReport:
    """All files of one ``quantbeat import original`` call, in import order."""

    path: Path
    dry_run: bool
    files: tuple[OriginalFileReport, ...]

    @property
    def reconciles(self) -> bool:
        """Whether every file reconciles."""
        return all(f.reconciles for f in self.files)


def import_original(
    path: str | Path,
    *,
    dry_run: bool = False,
    only: Sequence[OriginalFile | str] | None = None,
    stocks_file: str | Path | None = None,
    create_instruments: bool = False,
    database_url: str | None = None,
    progress: Callable[[OriginalFile, Path], None] | None = None,
) -> OriginalImportReport:
    """Import the original system's files at ``path`` (a folder, or one file named as the
    original names it) — see the module docstring.

    ``only`` restricts a folder to some kinds (:class:`OriginalFile` values); ``stocks_file``
    is the stocks list to take markets from (default: ``korean_stocks_list.csv`` in the
    folder, or beside the file). ``progress(kind, path)`` is called before each file.

    Raises:
        quant.errors.ValidationError: ``path`` is neither a folder nor an original file name;
            ``only`` names an unknown kind; a file is unreadable or lacks required columns (the
            files before it stay imported; its run is recorded ``failed``);
            ``daily_prices.csv`` with no stocks list to give its markets.
        ReconciliationError: counts do not add up (a bug; that file is rolled back).
        quant.errors.ConfigError: the database is not migrated.
    """
    root = Path(path)
    kinds = _kinds(only)
    if root.is_dir():
        files = find_original_files(root)
        folder = root
    else:
        kind = original_kind(root)
        if kind is None or not root.is_file():
            raise ValidationError(
                f"{root}: not a folder and not one of the original's files (korean_stocks_list."
                "csv, daily_prices.csv, all_institutional_trend_data.csv, signals_log.csv, "
                "jongga_v2_results_YYYYMMDD.json, kr_ai_analysis[_YYYYMMDD].json)",
                field="path",
                value=str(root),
            )
        files = [(kind, root)]
        folder = root.parent
    if kinds is not None:
        files = [(k, p) for k, p in files if k in kinds]
    stocks = Path(stocks_file) if stocks_file is not None else folder / "korean_stocks_list.csv"
    stocks_path = stocks if stocks.is_file() else None
    catalogue = _catalogue(stocks_path)
    engine = get_engine(database_url)
    _check_schema(engine)
    reports: list[OriginalFileReport] = []
    for kind, file in files:
        if progress is not None:
            progress(kind, file)
        if kind is OriginalFile.STOCKS_LIST:
            reports.append(_from_csv(kind, import_csv(file, kind=CsvKind.STOCKS, dry_run=dry_run,
                                                      database_url=database_url)))  # fmt: skip
        elif kind is OriginalFile.DAILY_PRICES:
            if stocks_path is None:
                raise ValidationError(
                    f"{file}: the original's daily_prices.csv names no market; put "
                    "korean_stocks_list.csv beside it or pass --stocks-file",
                    field="stocks_file",
                    value=str(file),
                )
            report = import_csv(
                file,
                kind=CsvKind.DAILY_PRICES,
                dry_run=dry_run,
                stocks_file=stocks_path,
                database_url=database_url,
                create_instruments=create_instruments,
                create_listed_instruments=True,
            )
            reports.append(_from_csv(kind, report))
        else:
            reports.append(
                _import_parsed(engine, file, kind, catalogue, dry_run, create_instruments)
            )
    return OriginalImportReport(path=root, dry_run=dry_run, files=tuple(reports))


def _kinds(only: Sequence[OriginalFile | str] | None) -> set[OriginalFile] | None:
    if not only:
        return None
    out: set[OriginalFile] = set()
    for value in only:
        try:
            out.add(OriginalFile(value))
        except ValueError:
            accepted = ", ".join(k.value for k in OriginalFile)
            raise ValidationError(
                f"--only must be one of {accepted}, got {value!r}", field="only", value=value
            ) from None
    return out


def _check_schema(engine: Engine) -> None:
    names = ("import_runs", "institutional_trend_snapshots")
    missing = [t for t in names if not inspect(engine).has_table(t)]
    if missing:
        raise ConfigError(
            f"the database {display_url(str(engine.url))} has no {' or '.join(missing)} "
            "table: it is not migrated to the current schema; run `quantbeat db upgrade`"
        )


def _from_csv(kind: OriginalFile, report: ImportReport) -> OriginalFileReport:
    return OriginalFileReport(
        kind=kind,
        path=report.path,
        run_id=report.run_id,
        dry_run=report.dry_run,
        rows_read=report.rows_read,
        inserted=report.inserted,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=report.rejected,
        rejects_by_reason=dict(report.rejects_by_reason),
        reject_file=report.reject_file,
        notes=tuple(report.notes),
        instruments_created=report.created_instruments,
        seconds=report.seconds,
    )


@dataclass(frozen=True, slots=True)
class _Catalogue:
    """The stocks list: ticker → (market, name) of its good rows (first market listed)."""

    by_ticker: dict[str, tuple[str, str]] = field(default_factory=dict)


def _catalogue(path: Path | None) -> _Catalogue:
    if path is None:
        return _Catalogue()
    parsed = read_csv(path, CsvKind.STOCKS)
    out: dict[str, tuple[str, str]] = {}
    for market, ticker, name in parsed.good[["market", "ticker", "name"]].itertuples(
        index=False, name=None
    ):
        out.setdefault(str(ticker), (str(market), str(name)))
    return _Catalogue(out)


# --------------------------------------------------------------------------- parsed files


def _import_parsed(
    engine: Engine,
    file: Path,
    kind: OriginalFile,
    catalogue: _Catalogue,
    dry_run: bool,
    create_instruments: bool,
) -> OriginalFileReport:
    started = time.perf_counter()
    run_id = _start_run(engine, file, kind, dry_run)
    reject_path = default_reject_file(file)
    try:
        parsed = parse_original(file, kind)
        with Session(engine, expire_on_commit=False) as session:
            session.begin()
            try:
                outcome = _store(session, parsed, catalogue, create_instruments)
            except BaseException:
                session.rollback()
                raise
            if dry_run:
                session.rollback()
            else:
                session.commit()
        rejects = sorted([*parsed.rejects, *outcome.rejects], key=lambda r: r.line)
        _write_rejects(reject_path, rejects)
    except BaseException as exc:
        _finish_run(engine, run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    reasons = dict(sorted(Counter(r.reason for r in rejects).items()))
    report = OriginalFileReport(
        kind=kind,
        path=file,
        run_id=run_id,
        dry_run=dry_run,
        rows_read=parsed.rows,
        inserted=outcome.counts.inserted,
        updated=outcome.counts.updated,
        unchanged=outcome.counts.unchanged,
        rejected=len(rejects),
        rejects_by_reason=reasons,
        reject_file=reject_path,
        notes=tuple(parsed.notes) + tuple(outcome.notes),
        analyses=outcome.analyses,
        instruments_created=tuple(sorted(outcome.created)),
        seconds=time.perf_counter() - started,
    )
    _finish_run(engine, run_id, status="succeeded", error=None, report=report, parsed=parsed)
    return report


@dataclass(slots=True)
class _Stored:
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    analyses: UpsertCounts | None = None
    rejects: list[RejectedLine] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def _raw_of(record: _RECORD, parsed: ParsedOriginal) -> dict[str, str]:
    return parsed.raws.get(record.line) or {"ticker": record.ticker}


def _store(
    session: Session, parsed: ParsedOriginal, catalogue: _Catalogue, create_instruments: bool
) -> _Stored:
    out = _Stored()
    records: list[_RECORD]
    if parsed.kind is OriginalFile.INSTITUTIONAL_TREND:
        records = list(parsed.snapshots)
    elif parsed.kind is OriginalFile.AI_ANALYSIS:
        records = list(parsed.analyses)
    else:
        records = list(parsed.signals)
    ids = _resolve(session, records, parsed, catalogue, create_instruments, out)
    kept = [(r, ids[i]) for i, r in enumerate(records) if i in ids]
    if parsed.kind is OriginalFile.INSTITUTIONAL_TREND:
        out.counts = upsert_trend_snapshots(
            session, [(r, i) for r, i in kept if isinstance(r, TrendSnapshot)], source=SOURCE_TREND
        )
    elif parsed.kind is OriginalFile.AI_ANALYSIS:
        out.counts = upsert_original_analyses(
            session, [(r, i) for r, i in kept if isinstance(r, OriginalAnalysis)]
        )
    else:
        signals = [(r, i) for r, i in kept if isinstance(r, OriginalSignal)]
        out.counts = upsert_original_signals(session, signals)
        if parsed.analyses:
            by_line = {r.line: i for r, i in signals}
            pairs = [(a, by_line[a.line]) for a in parsed.analyses if a.line in by_line]
            out.analyses = upsert_original_analyses(session, pairs)
    stored = out.counts.inserted + out.counts.updated + out.counts.unchanged
    if parsed.rows != stored + len(parsed.rejects) + len(out.rejects):
        raise ReconciliationError(
            f"{parsed.path}: {parsed.rows} rows read but {stored} stored + "
            f"{len(parsed.rejects) + len(out.rejects)} rejected"
        )
    return out


def _resolve(
    session: Session,
    records: Sequence[_RECORD],
    parsed: ParsedOriginal,
    catalogue: _Catalogue,
    create_instruments: bool,
    out: _Stored,
) -> dict[int, int]:
    """Instrument id per record index; rejected records get no entry (see module docstring)."""
    stored = instruments_by_ticker(session, [r.ticker for r in records if r.market is None])
    market_of: dict[int, str] = {}
    for n, record in enumerate(records):
        where = f"{parsed.path.name} line {record.line}"
        if record.market is not None:
            market_of[n] = record.market
            continue
        found = stored.get(record.ticker, [])
        if len(found) > 1:
            markets = ", ".join(m for m, _ in found)
            out.rejects.append(
                RejectedLine(
                    record.line,
                    "ambiguous_instrument",
                    f"{where}: ticker {record.ticker} is stored in {markets} and the file "
                    "names no market",
                    _raw_of(record, parsed),
                )
            )
        elif found:
            market_of[n] = found[0][0]
        elif record.ticker in catalogue.by_ticker:
            market_of[n] = catalogue.by_ticker[record.ticker][0]
        else:
            out.rejects.append(
                RejectedLine(
                    record.line,
                    "unknown_instrument",
                    f"{where}: ticker {record.ticker} is stored in no market of "
                    f"{', '.join(KRX_MARKETS)} and not in the stocks list; import "
                    "korean_stocks_list.csv first or pass --create-instruments",
                    _raw_of(record, parsed),
                )
            )
    pairs = {(market_of[n], records[n].ticker) for n in market_of}
    ids = instrument_ids(session, pairs)
    missing = pairs - set(ids)
    creatable: list[InstrumentRecord] = []
    for market, ticker in sorted(missing):
        listed = catalogue.by_ticker.get(ticker)
        if listed is not None and listed[0] == market:
            creatable.append(InstrumentRecord(Market(market), ticker, listed[1][:200]))
        elif create_instruments:
            names = (getattr(r, "name", None) for r in records if r.ticker == ticker)
            name = next((n for n in names if isinstance(n, str) and n), None)
            creatable.append(
                InstrumentRecord(Market(market), ticker, (name or ticker)[:200], "KRW",
                                 ListingStatus.LISTED)
            )  # fmt: skip
    if creatable:
        ids |= upsert_instruments(session, creatable, source="original_import", refresh=False)
        out.created |= {f"{i.market.value}:{i.ticker}" for i in creatable}
    result: dict[int, int] = {}
    for n, market in market_of.items():
        ident = ids.get((market, records[n].ticker))
        if ident is None:
            where = f"{parsed.path.name} line {records[n].line}"
            out.rejects.append(
                RejectedLine(
                    records[n].line,
                    "unknown_instrument",
                    f"{where}: instrument {market}:{records[n].ticker} does not exist; import "
                    "korean_stocks_list.csv first or pass --create-instruments",
                    _raw_of(records[n], parsed),
                )
            )
            continue
        result[n] = ident
    return result


# --------------------------------------------------------------------------- runs and rejects


def _start_run(engine: Engine, file: Path, kind: OriginalFile, dry_run: bool) -> int:
    try:
        digest: str | None = hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:
        digest = None
    with Session(engine) as session, session.begin():
        run = ImportRun(
            path=str(file.resolve()),
            kind=f"original_{kind.value}",
            file_sha256=digest,
            encoding=None,
            dry_run=dry_run,
            status="running",
            started_at=dt.datetime.now(dt.UTC),
            rows_read=0,
            inserted=0,
            updated=0,
            unchanged=0,
            rejected=0,
            blank_lines=0,
            reject_file=None,
            notes={"options": {"kind": kind.value}},
        )
        session.add(run)
        session.flush()
        return int(run.id)


def _finish_run(
    engine: Engine,
    run_id: int,
    *,
    status: str,
    error: str | None,
    report: OriginalFileReport | None = None,
    parsed: ParsedOriginal | None = None,
) -> None:
    try:
        with Session(engine) as session, session.begin():
            run = session.get(ImportRun, run_id)
            if run is None:  # pragma: no cover - deleted underneath us
                return
            run.status = status
            run.error = error
            run.finished_at = dt.datetime.now(dt.UTC)
            run.updated_at = dt.datetime.now(dt.UTC)
            if report is not None:
                run.encoding = parsed.encoding if parsed is not None else None
                run.rows_read = report.rows_read
                run.inserted = report.inserted
                run.updated = report.updated
                run.unchanged = report.unchanged
                run.rejected = report.rejected
                run.reject_file = str(report.reject_file)
                notes: dict[str, Any] = {
                    "options": {"kind": report.kind.value},
                    "rejects_by_reason": report.rejects_by_reason,
                    "notes": list(report.notes),
                    "created_instruments": list(report.instruments_created),
                }
                if report.analyses is not None:
                    notes["analyses"] = report.analyses.as_dict()
                run.notes = notes
    except Exception:
        if status == "succeeded":
            raise


def _write_rejects(path: Path, rejects: Sequence[RejectedLine]) -> None:
    """``line, reason, detail`` and the row as read (the union of the rejects' fields), UTF-8
    with BOM so spreadsheet programs read Korean text. Always written (header only when
    nothing was rejected)."""
    headers: list[str] = []
    for r in rejects:
        for key in r.raw:
            if key not in headers:
                headers.append(key)
    reserved = {"line", "reason", "detail"}
    shown = [h if h not in reserved else f"{h}#2" for h in headers]
    try:
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "reason", "detail", *shown])
            for r in rejects:
                writer.writerow([r.line, r.reason, r.detail, *(r.raw.get(h, "") for h in headers)])
    except OSError as exc:
        raise ValidationError(
            f"cannot write the reject file {str(path)!r}: {exc.strerror or exc}",
            field="reject_file",
            value=str(path),
        ) from exc
