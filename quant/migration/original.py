"""Parse the original system's own files (seed 002, Phase 1) into records, line by line.

The original system (point10890-crypto/closing_bet, first commit 3772829; the same code is
exported in tygwan/algo-quant ``references/PART_*.md``) keeps its state in a folder of files;
``docs/original_files.md`` records their layouts and sources. This module reads the four that
the generic CSV parser (:mod:`quant.migration.csv_import`) cannot import as they are meant:

* ``all_institutional_trend_data.csv`` — one row per ticker: net buying over the last 5, 10,
  20 and 60 sessions *as scraped on* ``scrape_date`` → :class:`TrendSnapshot` (a dated
  snapshot, never a daily flow);
* ``signals_log.csv`` — the VCP signal tracker's log (entry price, ``OPEN``/``CLOSED``) →
  :class:`OriginalSignal` (strategy ``vcp``);
* ``jongga_v2_results_YYYYMMDD.json`` — the closing-bet engine's results of a day →
  :class:`OriginalSignal` (strategy ``closing_bet``, grades S/A/B/C) and, when the engine's LLM
  left a reason or news, an :class:`OriginalAnalysis`;
* ``kr_ai_analysis.json`` (and its dated copies ``kr_ai_analysis_YYYYMMDD.json``) — the AI
  recommendations of the day's VCP signals → :class:`OriginalAnalysis`.

``daily_prices.csv`` and ``korean_stocks_list.csv`` are read by the generic parser (it accepts
the original's ``current_price`` as the close and a missing traded value as unknown);
:func:`original_kind` and :func:`find_original_files` name all six.

Contract
--------

Pure: reads the file it is given, opens no database and reads no environment. Every row
(CSV data row, or element of a JSON file's ``signals`` list) ends up either in ``records`` or
in ``rejects`` (``ParsedOriginal.reconciles``). A rejected row is a
:class:`quant.migration.csv_import.RejectedLine`: the 1-based line where it starts (for JSON,
the line of the element's opening brace), a reason code of :data:`ORIGINAL_REJECT_REASONS` and
a detail naming the file, the field and the bad value. Whole-file problems (unreadable bytes,
no header, a required column missing, JSON that does not parse or has no ``signals`` list, no
date anywhere) raise :class:`quant.errors.ValidationError` naming the file.

Tickers are KRX codes, zero-padded (the original wrote them through pandas, which drops the
leading zeros: ``5930`` is ``005930``). Markets: the JSON of the closing bet names them; the
CSV files and the AI file do not (``market`` is ``None``): the importer takes it from the
stocks list or the stored instruments. Numbers accept the forms of
:mod:`quant.migration.csv_import` (``1,234``, ``nan`` and blanks are missing).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from quant.errors import ValidationError
from quant.market.types import Market
from quant.migration.csv_import import (
    RejectedLine,
    detect_encoding,
    normalise_header,
    normalise_ticker,
    parse_date,
    parse_market,
)

__all__ = [
    "AI_PROMPT_VERSION",
    "JONGGA_LLM_MODEL",
    "ORIGINAL_REJECT_REASONS",
    "SOURCE_AI",
    "SOURCE_JONGGA",
    "SOURCE_SIGNALS_LOG",
    "SOURCE_TREND",
    "TREND_WINDOWS",
    "OriginalAnalysis",
    "OriginalFile",
    "OriginalSignal",
    "ParsedOriginal",
    "TrendSnapshot",
    "find_original_files",
    "original_kind",
    "parse_original",
    "read_ai_analysis",
    "read_institutional_trend",
    "read_jongga_v2",
    "read_signals_log",
]

#: ``source`` of the rows made from each file.
SOURCE_SIGNALS_LOG: Final[str] = "original_signals_log"
SOURCE_JONGGA: Final[str] = "original_jongga_v2"
SOURCE_AI: Final[str] = "original_kr_ai"
SOURCE_TREND: Final[str] = "original_trend"
#: ``prompt_version`` of the original's analyses (its prompts are not versioned).
AI_PROMPT_VERSION: Final[str] = "original"
#: ``model`` of the analysis the closing-bet engine's LLM left in a jongga result.
JONGGA_LLM_MODEL: Final[str] = "original-jongga-v2-llm"
#: The net-buying windows of a trend snapshot, in sessions.
TREND_WINDOWS: Final[tuple[int, ...]] = (5, 10, 20, 60)

#: Reason codes of the rows this module rejects.
ORIGINAL_REJECT_REASONS: Final[Mapping[str, str]] = {
    "wrong_field_count": "the row has a different number of fields than the header",
    "missing_key": "the ticker or the date is blank",
    "bad_date": "the date is not a real date in an accepted format",
    "bad_ticker": "the ticker is not a KRX code",
    "bad_market": "the market names no known market",
    "missing_value": "a required value (entry price, status, grade, recommendation) is blank",
    "bad_number": "a number field is not a number (or not finite)",
    "non_integer": "a share count is not a whole number",
    "non_positive_price": "a price is <= 0",
    "bad_value": "a text value is not one of the accepted values",
    "no_data": "the original wrote a placeholder, not data (a failed scrape: total_days 0 "
    "or data_source fallback_estimation; an AI result without any analysis)",
    "duplicate_row": "an earlier row of the file has the same key; the first one is kept",
}

_KRX: Final[Market] = Market.KOSPI  # tickers are normalised with KRX rules
_NA: Final[frozenset[str]] = frozenset({"", "nan", "na", "n/a", "#n/a", "null", "none", "-"})
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_JONGGA_NAME = re.compile(r"jongga_v2_results_(\d{8})\.json")
_AI_NAME = re.compile(r"kr_ai_analysis(?:_(\d{8}))?\.json")
_SIGNAL_STATUSES: Final[frozenset[str]] = frozenset({"OPEN", "CLOSED"})
_JONGGA_GRADES: Final[frozenset[str]] = frozenset({"S", "A", "B", "C"})
_JONGGA_STATUSES: Final[frozenset[str]] = frozenset({"PENDING", "EXECUTED", "CANCELLED", "EXPIRED"})
_ACTIONS: Final[frozenset[str]] = frozenset({"BUY", "HOLD", "SELL"})


class OriginalFile(StrEnum):
    """The original system's files, in the order a folder is imported (instruments first)."""

    STOCKS_LIST = "stocks_list"
    DAILY_PRICES = "daily_prices"
    INSTITUTIONAL_TREND = "institutional_trend"
    SIGNALS_LOG = "signals_log"
    JONGGA_V2 = "jongga_v2"
    AI_ANALYSIS = "ai_analysis"


_FIXED_NAMES: Final[Mapping[str, OriginalFile]] = {
    "korean_stocks_list.csv": OriginalFile.STOCKS_LIST,
    "daily_prices.csv": OriginalFile.DAILY_PRICES,
    "all_institutional_trend_data.csv": OriginalFile.INSTITUTIONAL_TREND,
    "signals_log.csv": OriginalFile.SIGNALS_LOG,
}


def original_kind(path: str | Path) -> OriginalFile | None:
    """The kind of original file ``path`` names (by its file name, as the original wrote
    it), or ``None`` for any other name."""
    name = Path(path).name
    if name in _FIXED_NAMES:
        return _FIXED_NAMES[name]
    if _JONGGA_NAME.fullmatch(name):
        return OriginalFile.JONGGA_V2
    if _AI_NAME.fullmatch(name):
        return OriginalFile.AI_ANALYSIS
    return None


def find_original_files(directory: str | Path) -> list[tuple[OriginalFile, Path]]:
    """The original files in ``directory`` and its ``history/`` subfolder, in import order
    (:class:`OriginalFile` order, then by name). Other files are not listed.

    Raises:
        quant.errors.ValidationError: ``directory`` is not a directory.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ValidationError(f"{root}: not a directory", field="directory", value=str(root))
    found: list[tuple[OriginalFile, Path]] = []
    for folder in (root, root / "history"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            kind = original_kind(path)
            if kind is not None and path.is_file():
                found.append((kind, path))
    order = list(OriginalFile)
    found.sort(key=lambda item: (order.index(item[0]), item[1].name, str(item[1])))
    return found


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class TrendSnapshot:
    """One row of ``all_institutional_trend_data.csv``.

    ``foreign_net``/``institution_net``/``volume`` map a window in sessions (5, 10, 20, 60) to
    shares; a window the file does not give is absent (unknown), never 0.
    ``supply_demand_index`` is the original's 0–100 score; ``details`` its other columns
    (numbers as numbers, text as text). ``market`` is always ``None`` (the file has none).
    """

    line: int
    ticker: str
    market: str | None
    scrape_date: dt.date
    data_source: str | None
    total_days: int | None
    foreign_net: Mapping[int, int]
    institution_net: Mapping[int, int]
    volume: Mapping[int, int]
    supply_demand_index: float | None
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OriginalSignal:
    """A signal of the original: ``trade_date`` its day, ``strategy`` ``vcp`` or
    ``closing_bet``, ``score`` in the original's points (for ``vcp`` the supply/demand index
    0–100, for ``closing_bet`` the 0–12 checklist total), ``entry_price`` KRW per share (> 0),
    ``status`` as the original wrote it (``OPEN``/``CLOSED``; ``PENDING`` …), ``inputs`` the
    other values (JSON-ready), ``name`` the instrument name when the file gives one.
    ``line`` is where the row starts in the file."""

    line: int
    trade_date: dt.date
    ticker: str
    market: str | None
    name: str | None
    strategy: str
    score: float | None
    grade: str | None
    entry_price: float
    status: str | None
    reasons: list[str] | None
    inputs: dict[str, Any]
    source: str


@dataclass(frozen=True, slots=True)
class OriginalAnalysis:
    """An AI analysis of the original: ``recommendation`` ``BUY``/``HOLD``/``SELL`` (``None``
    when the analysis gave only a reason), ``confidence`` 0–1 (the original's 0–100 / 100),
    ``catalyst`` its one-line reason, ``analyzer`` ``gemini``/``openai`` or ``offline`` (the
    original's keyword fallback, no model), ``details`` everything else (JSON-ready)."""

    line: int
    trade_date: dt.date
    ticker: str
    market: str | None
    name: str | None
    strategy: str
    model: str
    analyzer: str
    recommendation: str | None
    confidence: float | None
    catalyst: str | None
    news_count: int
    details: dict[str, Any]
    source: str


@dataclass(slots=True)
class ParsedOriginal:
    """A parsed original file: ``rows`` read, the ``signals``/``snapshots``/``analyses`` made of
    the good ones, and the ``rejects``. For every kind each row gives one record or one reject
    — except JONGGA_V2, where a row gives a signal plus, optionally, an analysis of it
    (``analyses`` then are extra records of accepted rows, not rows)."""

    kind: OriginalFile
    path: Path
    rows: int = 0
    signals: list[OriginalSignal] = field(default_factory=list)
    snapshots: list[TrendSnapshot] = field(default_factory=list)
    analyses: list[OriginalAnalysis] = field(default_factory=list)
    rejects: list[RejectedLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    #: The accepted rows as read (header or key → text), by line: for rejections made later
    #: (an instrument the database does not have) to show the row.
    raws: dict[int, dict[str, str]] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        """Rows that made a record (signals, snapshots, or analyses of the AI file)."""
        if self.kind is OriginalFile.INSTITUTIONAL_TREND:
            return len(self.snapshots)
        if self.kind is OriginalFile.AI_ANALYSIS:
            return len(self.analyses)
        return len(self.signals)

    @property
    def reconciles(self) -> bool:
        """Whether rows read = accepted + rejected."""
        return self.rows == self.accepted + len(self.rejects)


class _Reject(Exception):
    """A row is rejected (control flow inside the parsers, never escapes)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- value helpers


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _NA


def _number(value: object, where: str) -> float | None:
    """``value`` as a finite float, ``None`` when missing; :class:`_Reject` when bad."""
    if _missing(value):
        return None
    if isinstance(value, bool):
        raise _Reject("bad_number", f"{where}: {value!r} is not a number")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        if "," in text and _THOUSANDS.fullmatch(text):
            text = text.replace(",", "")
        try:
            number = float(text)
        except ValueError:
            raise _Reject("bad_number", f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise _Reject("bad_number", f"{where}: {value!r} is not a finite number")
    return number


def _whole(value: object, where: str) -> int | None:
    number = _number(value, where)
    if number is None:
        return None
    if number != round(number) or abs(number) >= 2.0**63:
        raise _Reject("non_integer", f"{where}: {value!r} is not a whole number of shares")
    return int(number)


def _ticker(value: object, where: str) -> str:
    if _missing(value):
        raise _Reject("missing_key", f"{where} is blank")
    ticker = normalise_ticker(str(value), _KRX)
    if ticker is None:
        raise _Reject("bad_ticker", f"{where}: {value!r} is not a KRX code")
    return ticker


def _date(value: object, where: str) -> dt.date:
    if _missing(value):
        raise _Reject("missing_key", f"{where} is blank")
    day = parse_date(str(value))
    if day is None:
        raise _Reject("bad_date", f"{where}: {value!r} is not a date (YYYY-MM-DD)")
    return day


def _optional_date(value: object, where: str) -> str | None:
    if _missing(value):
        return None
    day = parse_date(str(value))
    if day is None:
        raise _Reject("bad_date", f"{where}: {value!r} is not a date (YYYY-MM-DD)")
    return day.isoformat()


def _text(value: object) -> str | None:
    if _missing(value):
        return None
    return str(value).strip()


def _price(value: object, where: str) -> float:
    number = _number(value, where)
    if number is None:
        raise _Reject("missing_value", f"{where} is blank")
    if number <= 0:
        raise _Reject("non_positive_price", f"{where}: {value!r} must be > 0")
    return number


def _json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


# --------------------------------------------------------------------------- CSV files


@dataclass(frozen=True, slots=True)
class _CsvRows:
    encoding: str
    headers: tuple[str, ...]
    columns: Mapping[str, int]  # normalised header -> position
    rows: Iterator[tuple[int, list[str]]]


def _open_csv(path: Path, required: Sequence[str], what: str) -> tuple[_CsvRows, Any]:
    encoding = detect_encoding(path)
    handle = path.open(encoding=encoding, newline="")
    reader = csv.reader(handle)
    header: list[str] | None = None
    header_line = 0
    previous = 0
    for row in reader:
        previous = reader.line_num
        if row and any(c.strip() for c in row):
            header = row
            header_line = previous
            break
    if header is None:
        handle.close()
        raise ValidationError(f"{path}: empty file, no header", field="header", value=str(path))
    headers = tuple(h.replace("\ufeff", "").strip() for h in header)
    columns: dict[str, int] = {}
    for position, h in enumerate(headers):
        columns.setdefault(normalise_header(h), position)
    missing = [r for r in required if normalise_header(r) not in columns]
    if missing:
        handle.close()
        raise ValidationError(
            f"{path}: not the original's {what}: missing column(s) {', '.join(missing)}; "
            f"headers found: {list(headers)}",
            field="columns",
            value=missing,
        )

    def rows() -> Iterator[tuple[int, list[str]]]:
        last = header_line
        try:
            for row in reader:
                start, last = last + 1, reader.line_num
                if not row or not any(c.strip() for c in row):
                    continue
                yield start, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"{path}: line {last + 1}: unreadable CSV ({exc})",
                field=f"{path}:{last + 1}",
                value=str(exc),
            ) from exc
        finally:
            handle.close()

    return _CsvRows(encoding, headers, columns, rows()), handle


def _raw(headers: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    raw = dict(zip(headers, cells, strict=False))
    for k, surplus in enumerate(cells[len(headers) :], start=1):
        raw[f"__extra_{k}"] = surplus
    return raw


def _cell(table: _CsvRows, cells: Sequence[str], header: str) -> str | None:
    position = table.columns.get(normalise_header(header))
    if position is None:
        return None
    return cells[position]


def read_signals_log(path: str | Path) -> ParsedOriginal:
    """Parse the original's ``signals_log.csv`` (see the module docstring).

    Columns (signal_tracker.py): ``signal_date``, ``ticker``, ``foreign_5d``, ``inst_5d``,
    ``score``, ``contraction_ratio``, ``entry_price``, ``status``, ``exit_price``,
    ``exit_date``, ``return_pct``, ``hold_days``; ``signal_date``, ``ticker``, ``entry_price``
    and ``status`` are required. A row needs a valid date and ticker, an entry price > 0 and
    status ``OPEN`` or ``CLOSED``; other number columns must be numbers when present. The first
    row per (signal_date, ticker) is kept (the original's own key), later ones are
    ``duplicate_row``.

    Raises:
        quant.errors.ValidationError: unreadable file, no header, a required column missing.
    """
    path = Path(path)
    table, _ = _open_csv(path, ("signal_date", "ticker", "entry_price", "status"), "signals_log")
    out = ParsedOriginal(OriginalFile.SIGNALS_LOG, path, encoding=table.encoding)
    known = {
        normalise_header(h)
        for h in (
            "signal_date",
            "ticker",
            "entry_price",
            "status",
            "score",
            "name",
            "foreign_5d",
            "inst_5d",
            "contraction_ratio",
            "exit_price",
            "exit_date",
            "return_pct",
            "hold_days",
        )
    }
    others = [h for h in table.headers if normalise_header(h) not in known]
    seen: dict[tuple[dt.date, str], int] = {}
    for line, cells in table.rows:
        out.rows += 1
        raw = _raw(table.headers, cells)
        where = f"{path.name} line {line}"
        try:
            if len(cells) != len(table.headers):
                raise _Reject(
                    "wrong_field_count",
                    f"{where}: {len(cells)} fields, the header has {len(table.headers)}",
                )

            def cell(header: str, cells: Sequence[str] = cells) -> str | None:
                return _cell(table, cells, header)

            day = _date(cell("signal_date"), f"{where}: signal_date")
            ticker = _ticker(cell("ticker"), f"{where}: ticker")
            entry = _price(cell("entry_price"), f"{where}: entry_price")
            status_text = _text(cell("status"))
            if status_text is None:
                raise _Reject("missing_value", f"{where}: status is blank")
            status = status_text.upper()
            if status not in _SIGNAL_STATUSES:
                raise _Reject("bad_value", f"{where}: status {status_text!r} is not OPEN or CLOSED")
            score = _number(cell("score"), f"{where}: score")
            inputs: dict[str, Any] = {
                "foreign_5d_shares": _whole(cell("foreign_5d"), f"{where}: foreign_5d"),
                "inst_5d_shares": _whole(cell("inst_5d"), f"{where}: inst_5d"),
                "contraction_ratio": _number(
                    cell("contraction_ratio"), f"{where}: contraction_ratio"
                ),
                "original_status": status,
                "exit_price": _number(cell("exit_price"), f"{where}: exit_price"),
                "exit_date": _optional_date(cell("exit_date"), f"{where}: exit_date"),
                "return_pct": _number(cell("return_pct"), f"{where}: return_pct"),
                "hold_days": _number(cell("hold_days"), f"{where}: hold_days"),
                "score_is": "supply_demand_index (0-100) of the original",
            }
            for header in others:
                inputs[header] = _text(cells[table.headers.index(header)])
            key = (day, ticker)
            if key in seen:
                raise _Reject(
                    "duplicate_row",
                    f"{where}: {ticker} on {day} was already read at line {seen[key]}",
                )
            seen[key] = line
        except _Reject as bad:
            out.rejects.append(RejectedLine(line, bad.reason, bad.detail, raw))
            continue
        out.signals.append(
            OriginalSignal(
                line=line,
                trade_date=day,
                ticker=ticker,
                market=None,
                name=_text(cell("name")),
                strategy="vcp",
                score=score,
                grade=None,
                entry_price=entry,
                status=status,
                reasons=[
                    "Imported from the original system's signals_log.csv (VCP forming + "
                    "foreign buying); its exit fields are the original tracker's."
                ],
                inputs=_json_ready(inputs),
                source=SOURCE_SIGNALS_LOG,
            )
        )
        out.raws[line] = raw
    return out


_TREND_REQUIRED: Final[tuple[str, ...]] = ("ticker", "scrape_date")
_TREND_FIGURES: Final[Mapping[str, str]] = {
    **{f"foreign_net_buy_{w}d": f"foreign_net_{w}" for w in TREND_WINDOWS},
    **{f"institutional_net_buy_{w}d": f"institution_net_{w}" for w in TREND_WINDOWS},
    **{f"total_volume_{w}d": f"volume_{w}" for w in TREND_WINDOWS},
}


def read_institutional_trend(path: str | Path) -> ParsedOriginal:
    """Parse the original's ``all_institutional_trend_data.csv`` into dated snapshots.

    Columns (scripts/all_institutional_trend_data.py, ``InstitutionalData``): ``ticker``,
    ``scrape_date``, ``data_source``, ``total_days``, ``institutional_net_buy_{60,20,10,5}d``,
    ``foreign_net_buy_{60,20,10,5}d``, ``total_volume_{60,20,10,5}d`` (shares),
    ``institutional_ratio_*``/``foreign_ratio_*`` (%), ``price_change_60d`` (%), trend labels,
    ``supply_demand_index`` (0–100), stages and scores. ``ticker`` and ``scrape_date`` are
    required, the figures optional (a missing column stays unknown). A row whose
    ``total_days`` is 0 or whose ``data_source`` is ``fallback_estimation`` is the original's
    placeholder for a failed scrape (all its figures are invented zeros): rejected ``no_data``.
    The first row per (ticker, scrape_date) is kept.

    Raises:
        quant.errors.ValidationError: unreadable file, no header, a required column missing.
    """
    path = Path(path)
    table, _ = _open_csv(path, _TREND_REQUIRED, "all_institutional_trend_data")
    out = ParsedOriginal(OriginalFile.INSTITUTIONAL_TREND, path, encoding=table.encoding)
    mapped = {
        normalise_header(h)
        for h in (*_TREND_REQUIRED, *_TREND_FIGURES, "data_source", "total_days")
    } | {normalise_header("supply_demand_index")}
    absent = [h for h in _TREND_FIGURES if normalise_header(h) not in table.columns]
    if absent:
        out.notes.append(f"not in the file, stored as unknown (NULL): {', '.join(absent)}")
    seen: dict[tuple[str, dt.date], int] = {}
    for line, cells in table.rows:
        out.rows += 1
        raw = _raw(table.headers, cells)
        where = f"{path.name} line {line}"
        try:
            if len(cells) != len(table.headers):
                raise _Reject(
                    "wrong_field_count",
                    f"{where}: {len(cells)} fields, the header has {len(table.headers)}",
                )

            def cell(header: str, cells: Sequence[str] = cells) -> str | None:
                return _cell(table, cells, header)

            ticker = _ticker(cell("ticker"), f"{where}: ticker")
            day = _date(cell("scrape_date"), f"{where}: scrape_date")
            source = _text(cell("data_source"))
            total_days = _whole(cell("total_days"), f"{where}: total_days")
            if total_days == 0 or source == "fallback_estimation":
                raise _Reject(
                    "no_data",
                    f"{where}: a failed scrape's placeholder (total_days {total_days}, "
                    f"data_source {source!r}); its zeros are not data",
                )
            figures = {
                target: _whole(cell(header), f"{where}: {header}")
                for header, target in _TREND_FIGURES.items()
            }
            index = _number(cell("supply_demand_index"), f"{where}: supply_demand_index")
            details: dict[str, Any] = {}
            for position, header in enumerate(table.headers):
                if normalise_header(header) in mapped:
                    continue
                text = cells[position]
                try:
                    details[header] = _number(text, header)
                except _Reject:
                    details[header] = _text(text)
            key = (ticker, day)
            if key in seen:
                raise _Reject(
                    "duplicate_row",
                    f"{where}: {ticker} scraped on {day} was already read at line {seen[key]}",
                )
            seen[key] = line
        except _Reject as bad:
            out.rejects.append(RejectedLine(line, bad.reason, bad.detail, raw))
            continue

        def window(prefix: str, figures: Mapping[str, int | None] = figures) -> dict[int, int]:
            return {w: v for w in TREND_WINDOWS if (v := figures[f"{prefix}_{w}"]) is not None}

        out.snapshots.append(
            TrendSnapshot(
                line=line,
                ticker=ticker,
                market=None,
                scrape_date=day,
                data_source=source,
                total_days=total_days,
                foreign_net=window("foreign_net"),
                institution_net=window("institution_net"),
                volume=window("volume"),
                supply_demand_index=index,
                details=_json_ready(details),
            )
        )
        out.raws[line] = raw
    return out


# --------------------------------------------------------------------------- JSON files


def _load_json(path: Path) -> tuple[dict[str, Any], list[tuple[int, Any]]]:
    """The top-level object and its ``signals`` elements with the line each starts on."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read: {exc}", field="path", value=str(path)) from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{path}: line {exc.lineno}: not JSON ({exc.msg})",
            field=f"{path}:{exc.lineno}",
            value=exc.msg,
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("signals"), list):
        raise ValidationError(
            f"{path}: not the original's result file: no top-level 'signals' list",
            field="signals",
            value=str(path),
        )
    elements: list[Any] = document["signals"]
    return document, list(zip(_element_lines(text, len(elements)), elements, strict=True))


def _element_lines(text: str, count: int) -> list[int]:
    """The line of each element of the top-level ``signals`` array (0 when not found)."""
    decoder = json.JSONDecoder()
    match = re.search(r'"signals"\s*:\s*\[', text)
    lines: list[int] = []
    if match is not None:
        position = match.end()
        try:
            while len(lines) < count:
                while text[position] in " \t\r\n,":
                    position += 1
                lines.append(text.count("\n", 0, position) + 1)
                _, position = decoder.raw_decode(text, position)
        except (ValueError, IndexError):
            lines = []
    return lines if len(lines) == count else [0] * count


def _element_raw(element: Any) -> dict[str, str]:
    if not isinstance(element, dict):
        return {"element": json.dumps(element, ensure_ascii=False)[:500]}
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)[:500]
        for k, v in element.items()
    }


def _date_from_name(path: Path, pattern: re.Pattern[str]) -> dt.date | None:
    match = pattern.fullmatch(path.name)
    if match is None or match.group(1) is None:
        return None
    return parse_date(match.group(1))


def read_jongga_v2(path: str | Path) -> ParsedOriginal:
    """Parse the original's ``jongga_v2_results_YYYYMMDD.json`` (engine/generator.py
    ``save_result_to_json``; each signal is ``engine/models.py`` ``Signal.to_dict()``).

    Each element of ``signals`` becomes a ``closing_bet`` signal of its ``signal_date`` (else
    the file's ``date``, else the date in the file name): ``stock_code``, ``market``
    (KOSPI/KOSDAQ), ``grade`` (S/A/B/C), ``score.total`` (the 0–12 checklist points),
    ``entry_price`` (> 0) and ``status`` (PENDING/EXECUTED/CANCELLED/EXPIRED); the rest
    (score details, checklist, stop/target, sizing, trading value, flows, themes) goes to
    ``inputs``. When the engine's LLM left ``score.llm_reason`` or ``news_items``, the signal
    also gets an analysis (model :data:`JONGGA_LLM_MODEL`).

    Raises:
        quant.errors.ValidationError: unreadable file, not JSON, no ``signals`` list.
    """
    path = Path(path)
    document, elements = _load_json(path)
    out = ParsedOriginal(OriginalFile.JONGGA_V2, path)
    file_day = parse_date(str(document.get("date") or "")) or _date_from_name(path, _JONGGA_NAME)
    named_day = _date_from_name(path, _JONGGA_NAME)
    if file_day is not None and named_day is not None and file_day != named_day:
        out.notes.append(
            f"the file's date {file_day} differs from its name's {named_day}; "
            "signals without a signal_date take the file's date"
        )
    seen: dict[tuple[dt.date, str], int] = {}
    for number, (line, element) in enumerate(elements):
        out.rows += 1
        where = f"{path.name} line {line} (signals[{number}])"
        try:
            if not isinstance(element, dict):
                raise _Reject("bad_value", f"{where}: {element!r} is not an object")
            ticker = _ticker(element.get("stock_code"), f"{where}: stock_code")
            if _missing(element.get("signal_date")):
                if file_day is None:
                    raise _Reject("missing_key", f"{where}: no signal_date and no file date")
                day = file_day
            else:
                day = _date(element.get("signal_date"), f"{where}: signal_date")
            market_text = _text(element.get("market"))
            market: str | None = None
            if market_text is not None:
                try:
                    market = parse_market(market_text).value
                except ValidationError:
                    raise _Reject(
                        "bad_market", f"{where}: market {market_text!r} is no known market"
                    ) from None
            grade = _text(element.get("grade"))
            if grade is None:
                raise _Reject("missing_value", f"{where}: grade is blank")
            if grade.upper() not in _JONGGA_GRADES:
                raise _Reject("bad_value", f"{where}: grade {grade!r} is not S, A, B or C")
            grade = grade.upper()
            score_field = element.get("score")
            detail = score_field if isinstance(score_field, dict) else {}
            score = _number(
                detail.get("total") if isinstance(score_field, dict) else score_field,
                f"{where}: score.total",
            )
            entry = _price(element.get("entry_price"), f"{where}: entry_price")
            status = _text(element.get("status"))
            if status is not None and status.upper() not in _JONGGA_STATUSES:
                raise _Reject(
                    "bad_value",
                    f"{where}: status {status!r} is not one of "
                    f"{', '.join(sorted(_JONGGA_STATUSES))}",
                )
            for number_field in ("stop_price", "target_price", "trading_value", "change_pct"):
                _number(element.get(number_field), f"{where}: {number_field}")
            key = (day, ticker)
            if key in seen:
                raise _Reject(
                    "duplicate_row",
                    f"{where}: {ticker} on {day} was already read at line {seen[key]}",
                )
            seen[key] = line
        except _Reject as bad:
            out.rejects.append(RejectedLine(line, bad.reason, bad.detail, _element_raw(element)))
            continue
        skip = {"stock_code", "stock_name", "market", "signal_date", "grade", "entry_price",
                "status", "news_items"}  # fmt: skip
        inputs = {k: v for k, v in element.items() if k not in skip}
        name = _text(element.get("stock_name"))
        out.signals.append(
            OriginalSignal(
                line=line,
                trade_date=day,
                ticker=ticker,
                market=market,
                name=name,
                strategy="closing_bet",
                score=score,
                grade=grade,
                entry_price=entry,
                status=status.upper() if status else None,
                reasons=None,
                inputs=_json_ready(inputs),
                source=SOURCE_JONGGA,
            )
        )
        out.raws[line] = _element_raw(element)
        reason = _text(detail.get("llm_reason"))
        news = element.get("news_items")
        news_list = news if isinstance(news, list) else []
        if reason is not None or news_list:
            out.analyses.append(
                OriginalAnalysis(
                    line=line,
                    trade_date=day,
                    ticker=ticker,
                    market=market,
                    name=name,
                    strategy="closing_bet",
                    model=JONGGA_LLM_MODEL,
                    analyzer="original",
                    recommendation=None,
                    confidence=None,
                    catalyst=reason,
                    news_count=len(news_list),
                    details=_json_ready(
                        {"news_items": news_list, "themes": element.get("themes") or []}
                    ),
                    source=SOURCE_JONGGA,
                )
            )
    return out


def _recommendation(
    value: object, where: str
) -> tuple[str | None, float | None, str | None, str | None] | None:
    """(action, confidence 0–1, reason, source) of an original recommendation object, or
    ``None`` when it is absent or says no analysis ran (action ``N/A``)."""
    if not isinstance(value, dict) or not value:
        return None
    action = _text(value.get("action"))
    if action is None or action.upper() == "N/A":
        return None
    if action.upper() not in _ACTIONS:
        raise _Reject("bad_value", f"{where}.action: {action!r} is not BUY, HOLD or SELL")
    confidence = _number(value.get("confidence"), f"{where}.confidence")
    if confidence is not None and not 0 <= confidence <= 100:
        raise _Reject("bad_value", f"{where}.confidence: {confidence!r} is outside 0-100")
    return (
        action.upper(),
        None if confidence is None else confidence / 100.0,
        _text(value.get("reason")),
        _text(value.get("source")),
    )


def read_ai_analysis(path: str | Path) -> ParsedOriginal:
    """Parse the original's ``kr_ai_analysis.json`` (or a dated copy
    ``kr_ai_analysis_YYYYMMDD.json``; kr_ai_analyzer.py ``generate_ai_recommendations``).

    The day is the file's ``signal_date`` (else the date of ``generated_at``, else the date in
    the file name). Each element of ``signals`` (``ticker``, ``name``, ``score``,
    ``contraction_ratio``, ``foreign_5d``, ``inst_5d``, ``entry_price``, ``current_price``,
    ``return_pct``, ``fundamentals``, ``news``, ``gemini_recommendation``,
    ``gpt_recommendation``, ``analysis_source``) becomes one analysis of the ``vcp`` signal of
    that day: model ``original-<analysis_source>``, the Gemini recommendation when Gemini
    answered, else GPT's; ``analyzer`` ``offline`` when the original fell back to its keyword
    rule (``fallback``), else ``gemini``/``openai``. Both recommendations, the news, the
    fundamentals and the signal's figures go to ``details``. An element with no
    recommendation at all (or only ``N/A``: no API key) is rejected ``no_data``.

    Raises:
        quant.errors.ValidationError: unreadable file, not JSON, no ``signals`` list, no date
            in the file or its name.
    """
    path = Path(path)
    document, elements = _load_json(path)
    out = ParsedOriginal(OriginalFile.AI_ANALYSIS, path)
    day = parse_date(str(document.get("signal_date") or ""))
    if day is None:
        day = parse_date(str(document.get("generated_at") or "")[:10])
    if day is None:
        day = _date_from_name(path, _AI_NAME)
    if day is None:
        raise ValidationError(
            f"{path}: no date: signal_date {document.get('signal_date')!r} and generated_at "
            f"{document.get('generated_at')!r} are not dates and the name has none",
            field="signal_date",
            value=document.get("signal_date"),
        )
    seen: dict[str, int] = {}
    for number, (line, element) in enumerate(elements):
        out.rows += 1
        where = f"{path.name} line {line} (signals[{number}])"
        try:
            if not isinstance(element, dict):
                raise _Reject("bad_value", f"{where}: {element!r} is not an object")
            ticker = _ticker(element.get("ticker"), f"{where}: ticker")
            source = str(element.get("analysis_source") or "unknown").strip() or "unknown"
            gemini = _recommendation(
                element.get("gemini_recommendation"), f"{where}: gemini_recommendation"
            )
            gpt = _recommendation(element.get("gpt_recommendation"), f"{where}: gpt_recommendation")
            primary = gemini if gemini is not None and "gemini" in source else gpt or gemini
            if primary is None:
                raise _Reject(
                    "no_data",
                    f"{where}: no recommendation (analysis_source {source!r}): no analysis ran",
                )
            for number_field in ("score", "entry_price", "current_price", "return_pct"):
                value = element.get(number_field)
                if value == "N/A":  # the original's placeholder for "not given"
                    continue
                _number(value, f"{where}: {number_field}")
            if ticker in seen:
                raise _Reject(
                    "duplicate_row",
                    f"{where}: {ticker} was already analysed at line {seen[ticker]}",
                )
            seen[ticker] = line
        except _Reject as bad:
            out.rejects.append(RejectedLine(line, bad.reason, bad.detail, _element_raw(element)))
            continue
        action, confidence, reason, _ = primary
        if source == "fallback":
            analyzer = "offline"
        elif "gemini" in source:
            analyzer = "gemini"
        elif "openai" in source:
            analyzer = "openai"
        else:
            analyzer = "original"
        news = element.get("news")
        news_list = news if isinstance(news, list) else []
        details = {
            k: v for k, v in element.items() if k not in {"ticker", "name", "analysis_source"}
        }
        out.analyses.append(
            OriginalAnalysis(
                line=line,
                trade_date=day,
                ticker=ticker,
                market=None,
                name=_text(element.get("name")),
                strategy="vcp",
                model=f"original-{source}"[:64],
                analyzer=analyzer,
                recommendation=action,
                confidence=confidence,
                catalyst=reason,
                news_count=len(news_list),
                details=_json_ready(details),
                source=SOURCE_AI,
            )
        )
        out.raws[line] = _element_raw(element)
    return out


_READERS = {
    OriginalFile.SIGNALS_LOG: read_signals_log,
    OriginalFile.INSTITUTIONAL_TREND: read_institutional_trend,
    OriginalFile.JONGGA_V2: read_jongga_v2,
    OriginalFile.AI_ANALYSIS: read_ai_analysis,
}


def parse_original(path: str | Path, kind: OriginalFile | None = None) -> ParsedOriginal:
    """Parse ``path`` as the original file ``kind`` (default: by its name).

    Raises:
        quant.errors.ValidationError: the kind is unknown or is one the generic CSV parser
            reads (stocks list, daily prices); any error of the kind's reader.
    """
    chosen = kind if kind is not None else original_kind(path)
    if chosen is None or chosen not in _READERS:
        raise ValidationError(
            f"{path}: no original-file parser for {chosen.value if chosen else 'this name'} "
            f"(parsed here: {', '.join(k.value for k in _READERS)})",
            field="kind",
            value=str(path),
        )
    return _READERS[chosen](path)
