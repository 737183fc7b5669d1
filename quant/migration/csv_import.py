"""Parse the earlier system's CSV files into quantbeat's canonical frames, line by line.

The migration plan's Phase 1 moves four kinds of file into the database (see :class:`CsvKind`):
``daily_prices.csv`` (daily OHLCV), ``korean_stocks_list.csv`` (the instrument list),
``all_institutional_trend_data.csv`` (net buying per investor group) and ``signals_log.csv``
(logged trading signals). This module is the *parsing* half of ``quantbeat import csv``: it reads
a file given by path and returns data; it opens no database and reads no environment.

Contract, for every kind
------------------------

* **Streaming.** :func:`iter_chunks` reads the file with the :mod:`csv` module and yields one
  :class:`ParsedChunk` per ``chunk_rows`` data rows, so memory stays bounded for files with
  millions of rows (only a compact index of the keys kept so far grows: 16 bytes per kept row).
  :func:`read_csv` is the same, collected into one :class:`ParsedCsv`.
* **Nothing is lost.** Every data row ends up either in ``good`` or in ``rejects``:
  ``chunk.rows == len(chunk.good) + len(chunk.rejects)``. Completely blank lines are not rows;
  they are counted in ``ParsedChunk.blank_lines``.
* **Line numbers** are 1-based physical lines of the file: the header is line 1 (unless blank
  lines precede it), the first data row line 2. A quoted field spanning several lines moves the
  following rows' numbers accordingly; a rejected multi-line record carries the line it starts on.
* **Whole-file problems raise** :class:`quant.errors.ValidationError` naming the file: bytes that
  decode in none of the encodings, no header, a header that fits no kind, required columns
  missing (the message lists them, with the accepted header spellings, and names the optional
  ones), two headers meaning the same column, or a CSV syntax error that makes the rest of the
  file unreadable (rows before it have already been yielded).
* **Row problems reject the row** (a :class:`RejectedLine` with a reason code, see
  :data:`REJECT_REASONS`) and the rest of the file is still read.

Encodings and headers
---------------------

A file starting with the UTF-8 byte-order mark is read as ``utf-8-sig``; otherwise the whole file
is checked as ``utf-8`` and, failing that, ``cp949`` (the Windows Korean code page, a superset of
EUC-KR); :attr:`CsvLayout.encoding` says which one was used. Header cells are matched after NFKC
normalisation, lower-casing and dropping everything that is not a letter or digit, so
``Trade Date``, ``trade_date`` and ``TRADE-DATE`` are the same header; :data:`FIELD_ALIASES` and
:data:`FLOW_GROUP_ALIASES` list the accepted spellings (English and Korean).

Values
------

* Dates: ``2024-01-02``, ``2024/01/02``, ``2024.01.02`` (month and day may have one digit) and
  ``20240102``; a trailing time of day (``2024-01-02 15:30:00``) is dropped, a time zone is not
  accepted. Years outside 1900–2100 and impossible days (``2024-02-30``) are ``bad_date``.
* Numbers: plain decimals, an optional sign, exponents, and thousands separators in the exact
  ``1,234,567`` form. Empty cells and ``nan``/``na``/``n/a``/``null``/``none``/``-`` are
  *missing*. ``inf`` parses and is then rejected as ``non_finite``.
* Markets (column values or ``default_market``): :class:`quant.market.types.Market` names in any
  case, and ``코스피``/``유가증권``/``유가증권시장`` (KOSPI), ``코스닥``/``코스닥시장`` (KOSDAQ),
  ``코넥스`` (KONEX), ``업비트`` (UPBIT).
* Tickers of KRX markets (KOSPI, KOSDAQ, KONEX) are 6-character codes: digits are zero-padded
  (``5930`` → ``005930``; a spreadsheet's ``5930.0`` too), a broker's ``A005930`` loses its
  ``A``, and the newer alphanumeric codes (``0001A0``) are kept upper-cased. Anything else is
  ``bad_ticker``. Other markets' tickers are only stripped and upper-cased (``KRW-BTC``).
* A row's market comes from its market column; when that cell is blank (or the file has none),
  from ``ticker_markets`` (ticker → market, e.g. from a parsed stocks file), then from
  ``default_market``; when still unknown the row is rejected ``missing_market``. A file with no
  market column at all needs ``default_market`` or ``ticker_markets`` (else ValidationError).

Duplicates
----------

Every row is first judged on its own (key, numbers, the value checks of
:mod:`quant.market.quality`). Among the rows that pass, the *first* one per key in file order is
kept and every later one is rejected ``duplicate_row``, naming the kept line; this holds across
chunk boundaries, so the result does not depend on ``chunk_rows``. Keys: ``(market, ticker,
trade_date)`` for daily prices and investor flows, ``(market, ticker)`` for stocks and
``(market, ticker, trade_date, strategy)`` for signals.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from quant.errors import ValidationError
from quant.market.quality import Rejection, check_daily_candles, check_investor_flows
from quant.market.types import (
    DAILY_CANDLE_COLUMNS,
    INVESTOR_FLOW_COLUMNS,
    Instrument,
    ListingStatus,
    Market,
)

__all__ = [
    "DATE_FORMATS",
    "FIELD_ALIASES",
    "FLOW_GROUP_ALIASES",
    "FLOW_KRW_SUFFIXES",
    "FLOW_SHARE_SUFFIXES",
    "REJECT_REASONS",
    "SIGNAL_COLUMNS",
    "STOCK_COLUMNS",
    "TRADED_VALUE_UNKNOWN_NOTE",
    "CsvKind",
    "CsvLayout",
    "FlowUnit",
    "ParsedChunk",
    "ParsedCsv",
    "RejectedLine",
    "detect_encoding",
    "detect_kind",
    "inspect_csv",
    "instruments_from_frame",
    "iter_chunks",
    "normalise_header",
    "normalise_ticker",
    "parse_date",
    "parse_market",
    "read_csv",
]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_E = TypeVar("_E", bound=StrEnum)


class CsvKind(StrEnum):
    """What a CSV file holds, and so which frame :func:`iter_chunks` makes of it.

    * ``DAILY_PRICES`` → :data:`quant.market.types.DAILY_CANDLE_COLUMNS`
    * ``STOCKS`` → :data:`STOCK_COLUMNS` (see :func:`instruments_from_frame`)
    * ``INSTITUTIONAL_TREND`` → :data:`quant.market.types.INVESTOR_FLOW_COLUMNS`
    * ``SIGNALS`` → :data:`SIGNAL_COLUMNS`
    """

    DAILY_PRICES = "daily_prices"
    STOCKS = "stocks"
    INSTITUTIONAL_TREND = "institutional_trend"
    SIGNALS = "signals"


class FlowUnit(StrEnum):
    """The unit of a net-buying column: a count of shares, or an amount of Korean won."""

    SHARES = "shares"
    KRW = "krw"


#: Columns of a STOCKS frame, in order, all ``str``: ``market`` (a :class:`Market` value),
#: ``ticker``, ``name``, ``currency`` (ISO code; from a currency column, else ``USD`` for the US
#: market and ``KRW`` otherwise) and ``listing_status`` (a :class:`ListingStatus` value; from a
#: listing-status column, else ``listed``). One row per ``(market, ticker)``.
STOCK_COLUMNS: Final[tuple[str, ...]] = ("market", "ticker", "name", "currency", "listing_status")

#: Columns of a SIGNALS frame, in order. ``trade_date`` is a ``datetime.date`` (the signal's
#: day); ``market``/``ticker`` as everywhere; ``strategy``, ``grade``, ``status`` and ``reason``
#: are ``str`` or ``None`` when the file has no such column or the cell is blank (text is kept as
#: written, only stripped); ``score`` (points, as logged) and ``entry_price`` (instrument
#: currency per share, > 0) are float64, NaN when absent; ``extra`` is a ``dict[str, str | None]``
#: of every other column of the file (header as written → cell, ``None`` when blank).
SIGNAL_COLUMNS: Final[tuple[str, ...]] = (
    "trade_date",
    "market",
    "ticker",
    "strategy",
    "score",
    "grade",
    "entry_price",
    "status",
    "reason",
    "extra",
)

#: Accepted header spellings per canonical column (matched after :func:`normalise_header`).
#: ``name`` and ``change`` are recognised in price and flow files but not imported.
FIELD_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "trade_date": (
        "trade_date",
        "date",
        "날짜",
        "일자",
        "거래일",
        "거래일자",
        "기준일",
        "기준일자",
        "signal_date",
        "신호일",
        "신호일자",
    ),
    "market": ("market", "시장", "시장구분", "market_type"),
    "ticker": ("ticker", "code", "종목코드", "티커", "symbol", "단축코드", "stock_code", "코드"),
    "name": ("name", "종목명", "stock_name", "회사명", "종목이름"),
    "open": ("open", "시가", "open_price", "opening_price"),
    "high": ("high", "고가", "high_price"),
    "low": ("low", "저가", "low_price"),
    "close": ("close", "종가", "close_price", "closing_price", "current_price", "현재가"),
    "volume": ("volume", "거래량", "vol"),
    "traded_value": ("traded_value", "거래대금", "trading_value", "value", "amount", "turnover"),
    "change": ("change", "등락률", "등락율", "change_rate", "change_pct", "pct_change"),
    "currency": ("currency", "통화"),
    "listing_status": ("listing_status", "상장상태"),
    "strategy": (
        "strategy",
        "signal_type",
        "전략",
        "유형",
        "type",
        "signal",
        "신호",
        "신호유형",
        "시그널",
    ),
    "score": ("score", "점수", "total_score"),
    "grade": ("grade", "등급"),
    "entry_price": ("entry_price", "진입가", "entry", "진입가격", "매수가", "buy_price"),
    "status": ("status", "상태"),
    "reason": ("reason", "사유", "이유", "근거"),
}

#: Accepted header spellings of the three investor groups' net buying (INSTITUTIONAL_TREND).
#: A header is either exactly one of these (its unit is then not stated, see
#: :func:`inspect_csv`) or one of these followed by a unit suffix (:data:`FLOW_KRW_SUFFIXES`,
#: :data:`FLOW_SHARE_SUFFIXES`), e.g. ``foreign_net_buy_krw``, ``외국인순매수거래대금``,
#: ``기관_수량``, ``individual_net_shares``.
FLOW_GROUP_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "foreign": (
        "foreign",
        "외국인",
        "외국인순매수",
        "외국인합계",
        "foreign_net_buy",
        "foreign_net",
        "foreign_buy",
        "foreigner",
        "외인",
        "외인순매수",
    ),
    "institution": (
        "institution",
        "기관",
        "기관순매수",
        "기관합계",
        "inst_net_buy",
        "institution_net_buy",
        "institution_net",
        "inst_net",
        "inst_buy",
        "inst",
    ),
    "individual": (
        "individual",
        "개인",
        "개인순매수",
        "개인합계",
        "individual_net_buy",
        "individual_net",
        "indiv",
        "retail",
    ),
}

#: Header suffixes that state a net-buying column is in Korean won.
FLOW_KRW_SUFFIXES: Final[tuple[str, ...]] = (
    "krw",
    "won",
    "amount",
    "value",
    "금액",
    "거래대금",
    "대금",
    "원",
)
#: Header suffixes that state a net-buying column counts shares.
FLOW_SHARE_SUFFIXES: Final[tuple[str, ...]] = (
    "shares",
    "share",
    "qty",
    "quantity",
    "volume",
    "수량",
    "거래량",
    "주식수",
    "주",
)

#: The note of a daily-prices file without a traded-value column (the original system's
#: ``daily_prices.csv``): its bars are stored with ``traded_value`` NULL (unknown, never 0),
#: and these checks cannot run on them.
TRADED_VALUE_UNKNOWN_NOTE: Final[str] = (
    "no traded-value column: traded_value is stored as NULL (unknown, never 0); on these bars "
    "the quality check 'traded value >= 0' cannot run, the closing bet cannot pass its "
    "traded-value minimum nor earn traded-value points or an S/A/B grade (it fails "
    "'traded_value' as unknown), the supply score's flow/traded-value ratios are incomplete, "
    "and the closing-bet backtest takes no entry on them"
)

#: Accepted date spellings (see :func:`parse_date`).
DATE_FORMATS: Final[str] = "YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD or YYYYMMDD"

#: Reason codes of :class:`RejectedLine`, in the order they are tried (the first that applies
#: is reported). The value-check reasons come from :mod:`quant.market.quality`.
REJECT_REASONS: Final[Mapping[str, str]] = {
    "wrong_field_count": "the row has a different number of fields than the header",
    "missing_key": "the ticker or the date cell is blank",
    "bad_date": "the date is not a real date in an accepted format",
    "bad_market": "the market cell names no known market",
    "missing_market": "no market column value, no ticker_markets entry and no default_market",
    "bad_ticker": "the ticker is not a valid code for its market",
    "missing_value": "a required cell (a price, volume, net buying figure, name) is blank",
    "bad_number": "a number cell is not a number",
    "bad_value": "a text cell (currency, listing status) has an unknown value",
    "non_finite": "a number is infinite (quality check)",
    "non_positive_price": "a price is <= 0 (quality check)",
    "high_below_low": "high < low (quality check)",
    "open_outside_range": "open outside [low, high] (quality check)",
    "close_outside_range": "close outside [low, high] (quality check)",
    "negative_volume": "volume or traded value < 0 (quality check)",
    "non_integer": "net buying is not a whole number (quality check)",
    "out_of_range": "net buying beyond the range of a 64-bit integer (quality check)",
    "duplicate_row": "an earlier valid row with the same key was kept",
}

_FLOW_GROUPS: Final[tuple[str, ...]] = ("foreign", "institution", "individual")
_FLOW_VALUE_COLUMNS: Final[tuple[str, ...]] = tuple(
    c for c in INVESTOR_FLOW_COLUMNS if c not in ("market", "ticker", "trade_date")
)
_KRX: Final[frozenset[Market]] = frozenset({Market.KOSPI, Market.KOSDAQ, Market.KONEX})
_NA_TOKENS: Final[frozenset[str]] = frozenset({"", "nan", "na", "n/a", "#n/a", "null", "none", "-"})
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DATE_SEPARATED = re.compile(
    r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?"
)
_DATE_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})(?:\.0+)?")
_KRX_DIGITS = re.compile(r"(\d{1,6})(?:\.0+)?")
_KRX_PREFIXED = re.compile(r"A(\d{6})")
_KRX_CODE = re.compile(r"[0-9][0-9A-Z]{5}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MARKET_ALIASES: Final[Mapping[str, Market]] = {
    "코스피": Market.KOSPI,
    "유가증권": Market.KOSPI,
    "유가증권시장": Market.KOSPI,
    "코스닥": Market.KOSDAQ,
    "코스닥시장": Market.KOSDAQ,
    "코넥스": Market.KONEX,
    "코넥스시장": Market.KONEX,
    "업비트": Market.UPBIT,
}
_LISTING_ALIASES: Final[Mapping[str, ListingStatus]] = {
    "listed": ListingStatus.LISTED,
    "상장": ListingStatus.LISTED,
    "정상": ListingStatus.LISTED,
    "suspended": ListingStatus.SUSPENDED,
    "거래정지": ListingStatus.SUSPENDED,
    "정지": ListingStatus.SUSPENDED,
    "delisted": ListingStatus.DELISTED,
    "상장폐지": ListingStatus.DELISTED,
    "폐지": ListingStatus.DELISTED,
}
# Keys are (group id << 22) | day ordinal; ordinals of years 1..9999 stay below 2**22.
_DAY_BITS: Final[int] = 22
_SCAN_BLOCK: Final[int] = 1 << 20
# Parse caches (distinct date cells, distinct market/ticker cells) stop growing at this size.
_CACHE_LIMIT: Final[int] = 1 << 16


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """One data row that was not imported.

    ``line`` is the 1-based line of the file where the row starts (header = line 1),
    ``reason`` a code from :data:`REJECT_REASONS`, ``detail`` a sentence naming the column and the
    offending value, and ``raw`` the row as read: header (as written) → cell. Fields beyond the
    header's width appear as ``__extra_1``, ``__extra_2`` …; a short row lacks the trailing keys.
    """

    line: int
    reason: str
    detail: str
    raw: dict[str, str]


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """What :func:`inspect_csv` learned from a file's header.

    ``headers`` are the header cells as written (BOM and surrounding spaces removed; a blank
    header becomes ``column_<n>``, a repeated one gets ``#2``, ``#3`` …). ``columns`` maps each
    canonical input column (a key of :data:`FIELD_ALIASES`, or an investor-flow column such as
    ``foreign_net_krw``) to its 0-based position. ``ignored`` are the headers not imported (for
    SIGNALS they go to ``extra``). ``missing_optional`` names the optional canonical columns the
    file lacks. ``notes`` are sentences for the operator (an assumed unit, empty flow columns).
    """

    path: Path
    kind: CsvKind
    encoding: str
    delimiter: str
    header_line: int
    headers: tuple[str, ...]
    columns: Mapping[str, int]
    ignored: tuple[str, ...]
    missing_optional: tuple[str, ...]
    notes: tuple[str, ...]

    def header_of(self, column: str) -> str:
        """The header, as written in the file, of canonical ``column``.

        Raises:
            KeyError: the file has no such column.
        """
        return self.headers[self.columns[column]]


@dataclass(frozen=True, slots=True)
class ParsedChunk:
    """Up to ``chunk_rows`` consecutive data rows of a file, parsed.

    ``good`` has the kind's canonical columns (see :class:`CsvKind`) in file order; ``rejects``
    are in line order. ``rows`` counts the data rows read for this chunk, and always equals
    ``len(good) + len(rejects)``. ``first_line``/``last_line`` are the lines where the chunk's
    first and last rows start (0 for the row-less chunk that only reports blank lines at the end
    of a file); ``blank_lines`` counts the empty lines skipped since the previous chunk.
    """

    good: pd.DataFrame
    rejects: list[RejectedLine]
    rows: int
    first_line: int
    last_line: int
    blank_lines: int = 0


@dataclass(frozen=True, slots=True)
class ParsedCsv:
    """A whole file, parsed: its layout, all good rows, all rejections and the row count
    (``rows == len(good) + len(rejects)``)."""

    layout: CsvLayout
    good: pd.DataFrame
    rejects: list[RejectedLine]
    rows: int
    blank_lines: int = 0


# --------------------------------------------------------------------------- small parsers


def normalise_header(header: str) -> str:
    """Header ``header`` as it is matched against aliases: NFKC, BOM dropped, lower case, only
    letters and digits kept (``"Trade Date"``, ``"trade_date"`` and ``"\\ufeffTRADE-DATE"`` all
    give ``"tradedate"``)."""
    text = unicodedata.normalize("NFKC", header).replace("\ufeff", "").lower()
    return "".join(ch for ch in text if ch.isalnum())


def parse_date(text: str) -> dt.date | None:
    """The date written as ``text`` in one of :data:`DATE_FORMATS` (an optional time of day is
    dropped), or ``None`` when it is no such date (bad format, impossible day, year outside
    1900–2100)."""
    text = text.strip()
    match = _DATE_SEPARATED.fullmatch(text)
    if match is not None:
        year, month, day = match.group(1), match.group(3), match.group(4)
    else:
        match = _DATE_COMPACT.fullmatch(text)
        if match is None:
            return None
        year, month, day = match.group(1), match.group(2), match.group(3)
    if not 1900 <= int(year) <= 2100:
        return None
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        return None


def parse_market(text: str) -> Market:
    """The market named ``text``: a :class:`Market` value in any case or a Korean name
    (``코스피``, ``유가증권시장``, ``코스닥``, ``코넥스``, ``업비트`` …).

    Raises:
        quant.errors.ValidationError: ``text`` names no known market.
    """
    key = "".join(unicodedata.normalize("NFKC", text).split())
    alias = _MARKET_ALIASES.get(key)
    return alias if alias is not None else Market.parse(key)


def normalise_ticker(text: str, market: Market) -> str | None:
    """Ticker ``text`` in quantbeat's form for ``market``, or ``None`` when it is not valid there.

    KRX markets: 6-character codes; up to six digits are zero-padded (``"5930"`` → ``"005930"``,
    also ``"5930.0"``), ``"A005930"`` → ``"005930"``, alphanumeric codes starting with a digit
    (``"0001a0"`` → ``"0001A0"``) are kept. Other markets: stripped, upper-cased, no spaces.
    """
    ticker = unicodedata.normalize("NFKC", text).strip().upper()
    if not ticker:
        return None
    if market not in _KRX:
        return None if any(ch.isspace() for ch in ticker) else ticker
    digits = _KRX_DIGITS.fullmatch(ticker)
    if digits is not None:
        return digits.group(1).zfill(6)
    prefixed = _KRX_PREFIXED.fullmatch(ticker)
    if prefixed is not None:
        return prefixed.group(1)
    return ticker if _KRX_CODE.fullmatch(ticker) else None


def _parse_numbers(cells: Sequence[str]) -> tuple[FloatArray, BoolArray, BoolArray]:
    """(values, missing, bad) for a column of cells: NaN where missing or bad.

    A cell is a number when Python's ``float`` reads it, after removing thousands separators
    of the exact ``1,234,567`` form; it is missing when blank or one of :data:`_NA_TOKENS`.
    """
    try:  # Fast path: NumPy converts str with float()'s rules, in C.
        values = np.asarray(cells, dtype=np.float64)
    except ValueError:
        pass
    else:
        if not np.isnan(values).any():
            return values, np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=bool)
    values = np.full(len(cells), np.nan, dtype=np.float64)
    missing = np.zeros(len(cells), dtype=bool)
    bad = np.zeros(len(cells), dtype=bool)
    for i, cell in enumerate(cells):
        text = cell.strip()
        if text.lower() in _NA_TOKENS:
            missing[i] = True
            continue
        if "," in text and _THOUSANDS.fullmatch(text):
            text = text.replace(",", "")
        try:
            values[i] = float(text)
        except ValueError:
            bad[i] = True
    return values, missing, bad


# --------------------------------------------------------------------------- encodings


def _decode_error(path: Path, encoding: str) -> UnicodeDecodeError | None:
    """The first decoding error of the whole file in ``encoding`` (offsets in the file)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with path.open("rb") as handle:
        while True:
            block = handle.read(_SCAN_BLOCK)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                return UnicodeDecodeError(
                    exc.encoding, exc.object, offset + exc.start, offset + exc.end, exc.reason
                )
            if not block:
                return None
            offset += len(block)


def detect_encoding(path: str | Path) -> str:
    """The encoding of the file at ``path``: ``"utf-8-sig"`` when it starts with the UTF-8 BOM,
    else ``"utf-8"`` when all of it decodes as UTF-8, else ``"cp949"``. The whole file is read
    once (in 1 MiB blocks), so a late stray byte is found before any row is imported.

    Raises:
        quant.errors.ValidationError: the file decodes in none of them (the message gives the
            first bad byte offset for each), or is not readable.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(len(codecs.BOM_UTF8))
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read: {exc}", field="path", value=str(path)) from exc
    candidates = ("utf-8-sig",) if head == codecs.BOM_UTF8 else ("utf-8", "cp949")
    failures: list[str] = []
    for encoding in candidates:
        error = _decode_error(path, encoding)
        if error is None:
            return encoding
        failures.append(f"{encoding} fails at byte {error.start} ({error.reason})")
    raise ValidationError(
        f"{path}: not a text file in a supported encoding: {'; '.join(failures)}",
        field="encoding",
        value=str(path),
    )


# --------------------------------------------------------------------------- layout

_KIND_REQUIRED: Final[Mapping[CsvKind, tuple[str, ...]]] = {
    CsvKind.DAILY_PRICES: (
        "trade_date",
        "ticker",
        "open",
        "high",
        "low",
        "close",
        "volume",
    ),
    CsvKind.STOCKS: ("ticker", "name"),
    CsvKind.INSTITUTIONAL_TREND: ("trade_date", "ticker", "foreign", "institution"),
    CsvKind.SIGNALS: ("trade_date", "ticker"),
}
_KIND_OPTIONAL: Final[Mapping[CsvKind, tuple[str, ...]]] = {
    CsvKind.DAILY_PRICES: ("market", "traded_value"),
    CsvKind.STOCKS: ("market", "currency", "listing_status"),
    CsvKind.INSTITUTIONAL_TREND: ("market", "individual"),
    CsvKind.SIGNALS: (
        "market",
        "strategy",
        "score",
        "grade",
        "entry_price",
        "status",
        "reason",
    ),
}
# Recognised in the file but not imported (so they are not reported as unknown).
_KIND_UNUSED: Final[Mapping[CsvKind, tuple[str, ...]]] = {
    CsvKind.DAILY_PRICES: ("name", "change"),
    CsvKind.STOCKS: (),
    CsvKind.INSTITUTIONAL_TREND: ("name",),
    CsvKind.SIGNALS: (),
}

_ALIAS_INDEX: Final[Mapping[str, Mapping[str, str]]] = {
    name: {normalise_header(a): name for a in aliases} for name, aliases in FIELD_ALIASES.items()
}
_FLOW_INDEX: Final[Mapping[str, str]] = {
    normalise_header(alias): group
    for group, aliases in FLOW_GROUP_ALIASES.items()
    for alias in aliases
}
_UNIT_SUFFIXES: Final[tuple[tuple[str, FlowUnit], ...]] = tuple(
    sorted(
        [(normalise_header(s), FlowUnit.KRW) for s in FLOW_KRW_SUFFIXES]
        + [(normalise_header(s), FlowUnit.SHARES) for s in FLOW_SHARE_SUFFIXES],
        key=lambda pair: -len(pair[0]),
    )
)


def _field_of(normalised: str, fields: Iterable[str]) -> str | None:
    for name in fields:
        if normalised in _ALIAS_INDEX[name]:
            return name
    return None


def _flow_column(normalised: str) -> tuple[str, FlowUnit | None] | None:
    """(group, unit stated by the header or None) of a net-buying header, else None."""
    group = _FLOW_INDEX.get(normalised)
    if group is not None:
        return group, None
    for suffix, unit in _UNIT_SUFFIXES:
        if normalised.endswith(suffix):
            group = _FLOW_INDEX.get(normalised[: -len(suffix)])
            if group is not None:
                return group, unit
    return None


def _kind_fields(kind: CsvKind) -> tuple[str, ...]:
    names = (*_KIND_REQUIRED[kind], *_KIND_OPTIONAL[kind], *_KIND_UNUSED[kind])
    return tuple(n for n in names if n in FIELD_ALIASES)


def detect_kind(headers: Sequence[str]) -> CsvKind | None:
    """The kind of file whose header cells are ``headers``, or ``None`` when unclear.

    Tried in order: DAILY_PRICES (open, high, low and close all present); SIGNALS (a date plus
    any of strategy, score, grade, entry price, status); INSTITUTIONAL_TREND (a date plus a
    foreign or institution net-buying column); STOCKS (ticker and name, no date).
    """
    found: set[str] = set()
    for header in headers:
        normalised = normalise_header(header)
        for name, index in _ALIAS_INDEX.items():
            if normalised in index:
                found.add(name)
        flow = _flow_column(normalised)
        if flow is not None:
            found.add(flow[0])
    if {"open", "high", "low", "close"} <= found:
        return CsvKind.DAILY_PRICES
    if "trade_date" in found and found & {"strategy", "score", "grade", "entry_price", "status"}:
        return CsvKind.SIGNALS
    if "trade_date" in found and found & {"foreign", "institution"}:
        return CsvKind.INSTITUTIONAL_TREND
    if {"ticker", "name"} <= found and "trade_date" not in found:
        return CsvKind.STOCKS
    return None


def _describe(requirement: str) -> str:
    if requirement in FIELD_ALIASES:
        return f"{requirement} (one of: {', '.join(FIELD_ALIASES[requirement])})"
    aliases = ", ".join(FLOW_GROUP_ALIASES[requirement])
    return f"{requirement} net buying (one of: {aliases}; optionally with a unit suffix)"


def _display_headers(cells: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out: list[str] = []
    for position, cell in enumerate(cells, start=1):
        name = cell.replace("\ufeff", "").strip() or f"column_{position}"
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}#{count}")
    return tuple(out)


def _read_header(path: Path, encoding: str, delimiter: str) -> tuple[int, list[str]]:
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            for row in reader:
                if _is_blank(row):
                    continue
                return reader.line_num, row
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValidationError(
            f"{path}: cannot read the header as {encoding}: {exc}", field="header", value=str(path)
        ) from exc
    raise ValidationError(f"{path}: the file is empty (no header line)", field="header", value="")


def _check_reading(encoding: object, delimiter: object) -> None:
    """Refuse an ``encoding`` Python does not know or a ``delimiter`` the csv module cannot
    use (not one character, a quote, a line break), before the file is opened.

    Raises:
        quant.errors.ValidationError: naming the option and the value.
    """
    if encoding is not None:
        try:
            if not isinstance(encoding, str):
                raise LookupError(encoding)
            codecs.lookup(encoding)
        except LookupError:
            raise ValidationError(
                f"encoding {encoding!r} is not a known text encoding (e.g. utf-8, cp949)",
                field="encoding",
                value=encoding,
            ) from None
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValidationError(
            f"delimiter must be one character other than a quote or a line break, got "
            f"{delimiter!r}",
            field="delimiter",
            value=delimiter,
        )


def _option(enum: type[_E], value: object, name: str) -> _E | None:
    """``value`` (``None``, a member or its value) as a member of ``enum``.

    Raises:
        quant.errors.ValidationError: another value; the message lists the accepted ones.
    """
    if value is None:
        return None
    try:
        return enum(value)  # type: ignore[arg-type]  # anything else is refused below
    except ValueError:
        accepted = ", ".join(str(m.value) for m in enum)
        raise ValidationError(
            f"{name} must be one of {accepted}, got {value!r}", field=name, value=value
        ) from None


def _market_option(value: object, name: str) -> Market | None:
    """A market option (``default_market``, a ``ticker_markets`` value): ``None``, a
    :class:`Market` or a market name.

    Raises:
        quant.errors.ValidationError: anything else; the message names ``name``.
    """
    if value is None or isinstance(value, Market):
        return value
    if not isinstance(value, str):
        raise ValidationError(
            f"{name} must be a market name, got {value!r}", field=name, value=value
        )
    try:
        return parse_market(value)
    except ValidationError as exc:
        raise ValidationError(f"{name}: {exc}", field=name, value=value) from None


def _is_blank(row: Sequence[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def inspect_csv(
    path: str | Path,
    kind: CsvKind | None = None,
    *,
    flow_unit: FlowUnit | None = None,
    encoding: str | None = None,
    delimiter: str = ",",
) -> CsvLayout:
    """Read the header of the CSV file at ``path`` and decide how its columns are imported.

    ``kind`` ``None`` means :func:`detect_kind`. ``encoding`` ``None`` means
    :func:`detect_encoding`. For INSTITUTIONAL_TREND each net-buying column's unit comes from
    its header suffix when there is one; otherwise from ``flow_unit``; otherwise it is read as
    :attr:`FlowUnit.SHARES` and a note says so. Net-buying columns of the unit(s) the file does
    not have are left empty (``<NA>``) in the frame, never filled with zeros; a note says which.

    Raises:
        quant.errors.ValidationError: the file cannot be decoded or is empty; the kind cannot be
            detected; required columns are missing (the message names them with their accepted
            spellings, and the optional columns); two headers mean the same column; a header's
            unit suffix contradicts ``flow_unit``.
    """
    path = Path(path)
    kind = _option(CsvKind, kind, "kind")
    flow_unit = _option(FlowUnit, flow_unit, "flow_unit")
    _check_reading(encoding, delimiter)
    encoding = encoding or detect_encoding(path)
    header_line, cells = _read_header(path, encoding, delimiter)
    headers = _display_headers(cells)
    if kind is None:
        kind = detect_kind(headers)
        if kind is None:
            raise ValidationError(
                f"{path}: cannot tell what the file holds from its header {list(headers)}; "
                f"name the kind ({', '.join(k.value for k in CsvKind)})",
                field="kind",
                value=list(headers),
            )
    kind = CsvKind(kind)
    fields = _kind_fields(kind)
    columns: dict[str, int] = {}
    used_by: dict[str, str] = {}
    ignored: list[str] = []
    notes: list[str] = []
    conflicts: list[str] = []

    def claim(name: str, position: int) -> None:
        if name in columns and name in _KIND_UNUSED[kind]:
            ignored.append(headers[position])  # two spellings of a column we do not import
            return
        if name in columns:
            conflicts.append(f"{used_by[name]!r} and {headers[position]!r} both mean {name}")
            return
        columns[name] = position
        used_by[name] = headers[position]

    for position, header in enumerate(headers):
        normalised = normalise_header(header)
        name = _field_of(normalised, fields)
        if name is not None:
            claim(name, position)
            continue
        flow = _flow_column(normalised) if kind is CsvKind.INSTITUTIONAL_TREND else None
        if flow is None:
            ignored.append(header)
            continue
        group, stated = flow
        if stated is not None and flow_unit is not None and stated is not flow_unit:
            raise ValidationError(
                f"{path}: column {header!r} is in {stated.value} by its name but flow_unit "
                f"says {flow_unit.value}",
                field=header,
                value=flow_unit.value,
            )
        unit = stated or flow_unit or FlowUnit.SHARES
        if stated is None:
            how = "as flow_unit says" if flow_unit is not None else "the default, not checked"
            notes.append(f"column {header!r} states no unit; read as {unit.value} ({how})")
        claim(f"{group}_net_{unit.value}", position)

    if conflicts:
        raise ValidationError(
            f"{path}: ambiguous header: {'; '.join(conflicts)}", field="columns", value=conflicts
        )
    unused = set(_KIND_UNUSED[kind])
    for name in list(columns):
        if name in unused:
            ignored.append(used_by[name])
            del columns[name]
    ignored.sort(key=headers.index)

    def present(requirement: str) -> bool:
        if requirement in _FLOW_GROUPS:
            return any(f"{requirement}_net_{u.value}" in columns for u in FlowUnit)
        return requirement in columns

    missing = [r for r in _KIND_REQUIRED[kind] if not present(r)]
    optional = _KIND_OPTIONAL[kind]
    if missing:
        raise ValidationError(
            f"{path}: cannot import as {kind.value}: missing required column(s) "
            f"{'; '.join(_describe(r) for r in missing)}. Optional: "
            f"{', '.join(optional) or 'none'}. Headers found: {list(headers)}",
            field="columns",
            value=missing,
        )
    if kind is CsvKind.DAILY_PRICES and "traded_value" not in columns:
        notes.append(TRADED_VALUE_UNKNOWN_NOTE)
    if kind is CsvKind.INSTITUTIONAL_TREND:
        empty = [c for c in _FLOW_VALUE_COLUMNS if c not in columns]
        if empty:
            notes.append(f"not in the file, left empty (<NA>): {', '.join(empty)}")
    return CsvLayout(
        path=path,
        kind=kind,
        encoding=encoding,
        delimiter=delimiter,
        header_line=header_line,
        headers=headers,
        columns=columns,
        ignored=tuple(ignored),
        missing_optional=tuple(o for o in optional if not present(o)),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- duplicate index


class _KeptKeys:
    """The keys of the rows kept so far, with their lines: a sorted int64 array (exact keys,
    16 bytes per kept row) plus a small dict of (market, ticker[, strategy]) group ids."""

    def __init__(self) -> None:
        self._groups: dict[str, int] = {}
        self._keys: IntArray = np.empty(0, dtype=np.int64)
        self._lines: IntArray = np.empty(0, dtype=np.int64)

    def claim(self, groups: Sequence[str], days: IntArray, lines: IntArray) -> IntArray:
        """For candidate rows in file order: the line of the kept row each duplicates (0 when
        none; such a row is kept from now on)."""
        codes, uniques = pd.factorize(pd.Series(groups, dtype=object))
        unique_ids = np.fromiter(
            (self._groups.setdefault(str(g), len(self._groups)) for g in uniques),
            dtype=np.int64,
            count=len(uniques),
        )
        ids = unique_ids[codes]
        keys = (ids << _DAY_BITS) | days
        twin = np.zeros(len(keys), dtype=np.int64)
        if self._keys.size and keys.size:
            pos = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
            hit = self._keys[pos] == keys
            twin[hit] = self._lines[pos[hit]]
        fresh = np.flatnonzero(twin == 0)
        fresh_lines = pd.Series(lines[fresh])
        first = fresh_lines.groupby(keys[fresh]).transform("first").to_numpy(dtype=np.int64)
        repeat = first != lines[fresh]
        twin[fresh[repeat]] = first[repeat]
        kept = fresh[~repeat]
        order = np.argsort(keys[kept], kind="stable")
        new_keys, new_lines = keys[kept][order], lines[kept][order]
        at = np.searchsorted(self._keys, new_keys)
        self._keys = np.insert(self._keys, at, new_keys)
        self._lines = np.insert(self._lines, at, new_lines)
        return twin


# --------------------------------------------------------------------------- chunk parser


class _Verdicts:
    """Per-row reason and detail; the first reason set for a row wins."""

    def __init__(self, n: int) -> None:
        self.reason: list[str] = [""] * n
        self.detail: list[str] = [""] * n

    def ok(self) -> BoolArray:
        return np.array([r == "" for r in self.reason], dtype=bool)

    def set(self, i: int, reason: str, detail: str) -> None:
        if not self.reason[i]:
            self.reason[i] = reason
            self.detail[i] = detail

    def flag(
        self,
        mask: BoolArray,
        reason: str,
        template: str,
        header: str = "",
        cells: Sequence[object] = (),
    ) -> None:
        """Set ``reason`` on the rows of ``mask``; the detail is ``template`` formatted with
        ``h`` (the header) and ``v`` (the row's cell)."""
        for i in np.flatnonzero(mask):
            row = int(i)
            value = cells[row] if cells else None
            self.set(row, reason, template.format(h=header, v=value))


class _ChunkParser:
    """Turns the raw rows of one chunk into a :class:`ParsedChunk`; keeps the state that spans
    chunks (kept keys, parse caches)."""

    def __init__(
        self,
        layout: CsvLayout,
        default_market: Market | None,
        ticker_markets: Mapping[str, Market],
    ) -> None:
        self.layout = layout
        self.kind = layout.kind
        self.default_market = default_market
        self.ticker_markets = ticker_markets
        self.kept = _KeptKeys()
        self._dates: dict[str, tuple[dt.date | None, int]] = {}
        self._keys: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        self._markets: dict[str, Market | None] = {}
        self._tickers: dict[tuple[str, Market], str | None] = {}
        self._table: list[list[str]] = []

    # -- helpers

    def _header(self, column: str) -> str:
        return self.layout.header_of(column)

    def _text(self, column: str) -> list[str]:
        """The stripped cells of canonical ``column`` ("" for every row when absent)."""
        position = self.layout.columns.get(column)
        if position is None:
            return [""] * len(self._table)
        return [row[position].strip() for row in self._table]

    def _cells(self, column: str) -> list[str]:
        """The cells of canonical ``column`` as read (the file must have it)."""
        position = self.layout.columns[column]
        return [row[position] for row in self._table]

    def _date(self, text: str) -> tuple[dt.date | None, int]:
        """(date, ordinal; 0 when invalid) of a stripped cell, cached."""
        found = self._dates.get(text)
        if found is None:
            day = parse_date(text)
            found = (day, 0 if day is None else day.toordinal())
            if len(self._dates) < _CACHE_LIMIT:
                self._dates[text] = found
        return found

    def _market(self, text: str) -> Market | None:
        if text not in self._markets:
            try:
                self._markets[text] = parse_market(text)
            except ValidationError:
                self._markets[text] = None
        return self._markets[text]

    def _ticker(self, text: str, market: Market) -> str | None:
        key = (text, market)
        if key not in self._tickers:
            self._tickers[key] = normalise_ticker(text, market)
        return self._tickers[key]

    def _resolve_market(self, ticker_text: str) -> Market | None:
        if self.ticker_markets:
            for market in (Market.KOSPI, Market.UPBIT):  # KRX padding, then as written
                ticker = self._ticker(ticker_text, market)
                if ticker is not None and ticker in self.ticker_markets:
                    return self.ticker_markets[ticker]
        return self.default_market

    def _raw(self, row: Sequence[str]) -> dict[str, str]:
        headers = self.layout.headers
        raw = dict(zip(headers, row, strict=False))
        for k, extra in enumerate(row[len(headers) :], start=1):
            raw[f"__extra_{k}"] = extra
        return raw

    # -- the pass over one chunk

    def parse(self, lines: list[int], rows: list[list[str]], blank_lines: int) -> ParsedChunk:
        """Judge ``rows`` (starting at ``lines``) and return the chunk."""
        layout = self.layout
        width = len(layout.headers)
        n = len(rows)
        verdicts = _Verdicts(n)
        self._table = []
        for i, row in enumerate(rows):
            cells = row
            if len(cells) > width and not any(c.strip() for c in cells[width:]):
                cells = cells[:width]  # trailing empty fields, e.g. a final comma
            if len(cells) != width:
                verdicts.set(
                    i,
                    "wrong_field_count",
                    f"the row has {len(row)} fields, the header has {width}",
                )
                cells = (cells + [""] * width)[:width]
            self._table.append(cells)

        # Key: ticker, date, market.
        ticker_text = self._text("ticker")
        verdicts.flag(
            np.array([t == "" for t in ticker_text], dtype=bool),
            "missing_key",
            "column {h!r} is blank",
            self._header("ticker"),
        )
        dates: list[dt.date | None] = [None] * n
        ordinals: list[int] = [0] * n
        if "trade_date" in layout.columns:
            date_text = self._text("trade_date")
            parsed = [self._date(t) for t in date_text]
            dates = [d for d, _ in parsed]
            ordinals = [o for _, o in parsed]
            blank_date = np.array([t == "" for t in date_text], dtype=bool)
            header = self._header("trade_date")
            verdicts.flag(blank_date, "missing_key", "column {h!r} is blank", header)
            verdicts.flag(
                np.array([d is None for d in dates], dtype=bool) & ~blank_date,
                "bad_date",
                "column {h!r}: {v!r} is not a valid date (" + DATE_FORMATS + ")",
                header,
                date_text,
            )
        market_text = self._text("market")
        markets: list[str] = [""] * n
        tickers: list[str] = [""] * n
        for i in range(n):
            if verdicts.reason[i]:
                continue
            market_value, ticker, reason, detail = self._key(market_text[i], ticker_text[i])
            if reason:
                verdicts.set(i, reason, detail)
                continue
            markets[i] = market_value
            tickers[i] = ticker

        keys = pd.DataFrame(
            {"market": markets, "ticker": tickers, "trade_date": pd.Series(dates, dtype=object)}
        )
        if self.kind is CsvKind.DAILY_PRICES:
            good = self._daily(keys, verdicts)
        elif self.kind is CsvKind.INSTITUTIONAL_TREND:
            good = self._flows(keys, verdicts)
        elif self.kind is CsvKind.STOCKS:
            good = self._stocks(keys, verdicts)
        else:
            good = self._signals(keys, verdicts)

        # Among the rows valid on their own, the first per key (in the whole file) is kept.
        candidates = np.flatnonzero(verdicts.ok())
        strategies: list[str | None] = (
            list(good["strategy"]) if self.kind is CsvKind.SIGNALS else [None] * n
        )
        groups = [
            f"{markets[i]}\x1f{tickers[i]}\x1f{strategies[i] or ''}" for i in candidates.tolist()
        ]
        days = np.asarray(ordinals, dtype=np.int64)[candidates]
        twins = self.kept.claim(groups, days, np.asarray(lines, dtype=np.int64)[candidates])
        for j in np.flatnonzero(twins).tolist():
            i = int(candidates[j])
            key = [markets[i], tickers[i], dates[i], strategies[i]]
            what = " ".join(str(v) for v in key if v)
            verdicts.set(
                i, "duplicate_row", f"same key ({what}) as line {int(twins[j])}, which was kept"
            )
        keep = verdicts.ok()
        good = good.loc[keep].reset_index(drop=True)
        rejects = [
            RejectedLine(lines[i], verdicts.reason[i], verdicts.detail[i], self._raw(rows[i]))
            for i in np.flatnonzero(~keep).tolist()
        ]
        self._table = []
        return ParsedChunk(
            good=good,
            rejects=rejects,
            rows=n,
            first_line=lines[0] if lines else 0,
            last_line=lines[-1] if lines else 0,
            blank_lines=blank_lines,
        )

    def _key(self, written: str, ticker_text: str) -> tuple[str, str, str, str]:
        """(market, ticker, reject reason, detail) for a row's market and ticker cells."""
        cache_key = (written, ticker_text)
        found = self._keys.get(cache_key)
        if found is None:
            found = self._resolve_key(written, ticker_text)
            if len(self._keys) < _CACHE_LIMIT:
                self._keys[cache_key] = found
        return found

    def _resolve_key(self, written: str, ticker_text: str) -> tuple[str, str, str, str]:
        if written:
            market = self._market(written)
            if market is None:
                known = ", ".join(m.value for m in Market)
                return (
                    "",
                    "",
                    "bad_market",
                    f"column {self._header('market')!r}: {written!r} is not a known market "
                    f"(known: {known}, 코스피, 코스닥, 코넥스)",
                )
        else:
            market = self._resolve_market(ticker_text)
            if market is None:
                return (
                    "",
                    "",
                    "missing_market",
                    f"ticker {ticker_text!r}: no market in the row, no ticker_markets entry and "
                    "no default_market",
                )
        ticker = self._ticker(ticker_text, market)
        if ticker is None:
            return (
                "",
                "",
                "bad_ticker",
                f"column {self._header('ticker')!r}: {ticker_text!r} is not a valid "
                f"{market.value} ticker",
            )
        return market.value, ticker, "", ""

    def _numbers(
        self, columns: Sequence[str], verdicts: _Verdicts, *, required: bool
    ) -> dict[str, FloatArray]:
        """Parse the number columns of ``columns`` the file has; flag blanks (when
        ``required``) and non-numbers."""
        values: dict[str, FloatArray] = {}
        for column in columns:
            if column not in self.layout.columns:
                continue
            cells = self._cells(column)
            parsed, missing, bad = _parse_numbers(cells)
            header = self._header(column)
            if required:
                verdicts.flag(missing, "missing_value", "column {h!r} is blank", header)
            verdicts.flag(bad, "bad_number", "column {h!r}: {v!r} is not a number", header, cells)
            values[column] = parsed
        return values

    def _value_checks(
        self,
        frame: pd.DataFrame,
        verdicts: _Verdicts,
        check: Callable[[pd.DataFrame], tuple[pd.DataFrame, list[Rejection]]],
    ) -> None:
        """Run a :mod:`quant.market.quality` check on the rows still valid, in rounds that hold
        each key at most once (so its own duplicate rule never fires here: duplicates are
        decided afterwards among valid rows), and record its rejections per row."""
        rows = np.flatnonzero(verdicts.ok())
        if rows.size == 0:
            return
        candidates = frame.iloc[rows].reset_index(drop=True)
        key_columns = ["market", "ticker", "trade_date"]
        if candidates.duplicated(subset=key_columns).any():
            occurrence = candidates.groupby(key_columns, sort=False).cumcount().to_numpy()
        else:
            occurrence = np.zeros(len(candidates), dtype=np.int64)
        for round_number in range(int(occurrence.max()) + 1):
            in_round = occurrence == round_number
            part = candidates.loc[in_round].reset_index(drop=True)
            _, rejections = check(part)
            if not rejections:
                continue
            where = {
                key: int(row)
                for key, row in zip(
                    zip(part["market"], part["ticker"], part["trade_date"], strict=True),
                    rows[in_round].tolist(),
                    strict=True,
                )
            }
            for rejection in rejections:
                row = where[(rejection.market, rejection.ticker, rejection.trade_date)]
                verdicts.set(row, rejection.reason, rejection.detail)

    # -- kinds

    def _daily(self, keys: pd.DataFrame, verdicts: _Verdicts) -> pd.DataFrame:
        number_columns = DAILY_CANDLE_COLUMNS[3:]
        values = self._numbers(number_columns, verdicts, required=True)
        out = keys.copy()
        n = len(out)
        for column in number_columns:
            # A file without a traded-value column: 0 only while checking, NaN (unknown) below.
            out[column] = values.get(column, np.zeros(n, dtype=np.float64))
        out = out.loc[:, list(DAILY_CANDLE_COLUMNS)]
        self._value_checks(out, verdicts, check_daily_candles)
        if "traded_value" not in values:
            out["traded_value"] = np.full(n, np.nan)
        return out

    def _flows(self, keys: pd.DataFrame, verdicts: _Verdicts) -> pd.DataFrame:
        values = self._numbers(_FLOW_VALUE_COLUMNS, verdicts, required=True)
        out = keys.copy()
        n = len(out)
        for column in _FLOW_VALUE_COLUMNS:
            # Columns the file lacks are zeros only while checking; they become <NA> below.
            out[column] = values.get(column, np.zeros(n, dtype=np.float64))
        self._value_checks(out, verdicts, check_investor_flows)
        for column in _FLOW_VALUE_COLUMNS:
            if column in values:
                number = values[column]
                storable = np.isfinite(number) & (np.abs(number) < 2.0**63)  # others rejected
                whole = np.where(storable, np.round(number), 0.0)
                out[column] = pd.array(whole.astype(np.int64), dtype="Int64")
            else:
                out[column] = pd.array([None] * n, dtype="Int64")
        return out.loc[:, list(INVESTOR_FLOW_COLUMNS)]

    def _stocks(self, keys: pd.DataFrame, verdicts: _Verdicts) -> pd.DataFrame:
        n = len(keys)
        names = self._text("name")
        verdicts.flag(
            np.array([t == "" for t in names], dtype=bool),
            "missing_value",
            "column {h!r} is blank",
            self._header("name"),
        )
        currency = ["USD" if m == Market.US.value else "KRW" for m in keys["market"]]
        if "currency" in self.layout.columns:
            for i, cell in enumerate(self._text("currency")):
                if not cell:
                    continue
                code = cell.upper()
                if _CURRENCY.fullmatch(code) is None:
                    verdicts.set(
                        i,
                        "bad_value",
                        f"column {self._header('currency')!r}: {cell!r} is not a 3-letter "
                        "currency code",
                    )
                currency[i] = code
        status = [ListingStatus.LISTED.value] * n
        if "listing_status" in self.layout.columns:
            accepted = ", ".join(s.value for s in ListingStatus)
            for i, cell in enumerate(self._text("listing_status")):
                if not cell:
                    continue
                parsed = _LISTING_ALIASES.get(cell.lower())
                if parsed is None:
                    verdicts.set(
                        i,
                        "bad_value",
                        f"column {self._header('listing_status')!r}: {cell!r} is not one of "
                        f"{accepted} (or 상장, 거래정지, 상장폐지)",
                    )
                    continue
                status[i] = parsed.value
        return pd.DataFrame(
            {
                "market": keys["market"],
                "ticker": keys["ticker"],
                "name": names,
                "currency": currency,
                "listing_status": status,
            },
            columns=list(STOCK_COLUMNS),
        )

    def _signals(self, keys: pd.DataFrame, verdicts: _Verdicts) -> pd.DataFrame:
        n = len(keys)
        values = self._numbers(("score", "entry_price"), verdicts, required=False)
        score = values.get("score", np.full(n, np.nan))
        entry = values.get("entry_price", np.full(n, np.nan))
        for column, array in (("score", score), ("entry_price", entry)):
            if column in values:
                verdicts.flag(
                    np.isinf(array),
                    "non_finite",
                    "column {h!r}: {v} is not a finite number",
                    self._header(column),
                    array.tolist(),
                )
        if "entry_price" in values:
            verdicts.flag(
                entry <= 0,
                "non_positive_price",
                "column {h!r}: {v} must be > 0",
                self._header("entry_price"),
                entry.tolist(),
            )

        def optional_text(column: str) -> list[str | None]:
            if column not in self.layout.columns:
                return [None] * n
            return [t or None for t in self._text(column)]

        mapped = set(self.layout.columns.values())
        extra = [(p, h) for p, h in enumerate(self.layout.headers) if p not in mapped]
        extras: list[dict[str, str | None]] = [
            {h: (row[p].strip() or None) for p, h in extra} for row in self._table
        ]
        return pd.DataFrame(
            {
                "trade_date": keys["trade_date"],
                "market": keys["market"],
                "ticker": keys["ticker"],
                "strategy": optional_text("strategy"),
                "score": score,
                "grade": optional_text("grade"),
                "entry_price": entry,
                "status": optional_text("status"),
                "reason": optional_text("reason"),
                "extra": pd.Series(extras, dtype=object),
            },
            columns=list(SIGNAL_COLUMNS),
        )


# --------------------------------------------------------------------------- public readers


def _empty_frame(kind: CsvKind) -> pd.DataFrame:
    if kind is CsvKind.DAILY_PRICES:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in DAILY_CANDLE_COLUMNS})
        frame[list(DAILY_CANDLE_COLUMNS[3:])] = frame[list(DAILY_CANDLE_COLUMNS[3:])].astype(
            "float64"
        )
    elif kind is CsvKind.INSTITUTIONAL_TREND:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in INVESTOR_FLOW_COLUMNS})
        for column in _FLOW_VALUE_COLUMNS:
            frame[column] = frame[column].astype("Int64")
    elif kind is CsvKind.STOCKS:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in STOCK_COLUMNS})
    else:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in SIGNAL_COLUMNS})
        frame[["score", "entry_price"]] = frame[["score", "entry_price"]].astype("float64")
    return frame


def _typed(frame: pd.DataFrame, kind: CsvKind) -> pd.DataFrame:
    """``frame`` with the kind's column dtypes (also when empty)."""
    if frame.empty:
        return _empty_frame(kind)
    if kind is CsvKind.DAILY_PRICES:
        columns = list(DAILY_CANDLE_COLUMNS[3:])
        frame[columns] = frame[columns].astype("float64")
    elif kind is CsvKind.SIGNALS:
        frame[["score", "entry_price"]] = frame[["score", "entry_price"]].astype("float64")
    return frame


def iter_chunks(
    path: str | Path,
    kind: CsvKind | None = None,
    chunk_rows: int = 50_000,
    *,
    default_market: Market | str | None = None,
    ticker_markets: Mapping[str, Market | str] | None = None,
    flow_unit: FlowUnit | None = None,
    encoding: str | None = None,
    delimiter: str = ",",
) -> Iterator[ParsedChunk]:
    """Parse the CSV file at ``path`` in chunks of ``chunk_rows`` data rows.

    The header is read, and whole-file problems raised, when this function is *called*; the
    returned iterator then reads the rows lazily. ``kind``, ``flow_unit``, ``encoding`` and
    ``delimiter`` are as in :func:`inspect_csv`; ``default_market`` and ``ticker_markets``
    supply the market of rows without one (see the module docstring). Each chunk satisfies
    ``chunk.rows == len(chunk.good) + len(chunk.rejects)``; together the chunks hold every
    data row of the file exactly once, and the result does not depend on ``chunk_rows``.

    Raises:
        quant.errors.ValidationError: ``chunk_rows`` < 1; ``default_market`` or a
            ``ticker_markets`` value names no market; any whole-file problem of
            :func:`inspect_csv`; the file has no market column and neither ``default_market``
            nor ``ticker_markets`` is given; while iterating, a CSV syntax error or an
            undecodable byte (naming the line; earlier chunks stay valid).
    """
    layout, parser = _prepare(
        path, kind, chunk_rows, default_market, ticker_markets, flow_unit, encoding, delimiter
    )
    return _chunks(layout, parser, chunk_rows)


def _prepare(
    path: str | Path,
    kind: CsvKind | None,
    chunk_rows: int,
    default_market: Market | str | None,
    ticker_markets: Mapping[str, Market | str] | None,
    flow_unit: FlowUnit | None,
    encoding: str | None,
    delimiter: str,
) -> tuple[CsvLayout, _ChunkParser]:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValidationError(
            f"chunk_rows must be an integer >= 1, got {chunk_rows!r}",
            field="chunk_rows",
            value=chunk_rows,
        )
    default = _market_option(default_market, "default_market")
    if not isinstance(ticker_markets, Mapping | None):
        raise ValidationError(
            f"ticker_markets must map tickers to markets, got {ticker_markets!r}",
            field="ticker_markets",
            value=ticker_markets,
        )
    lookup: dict[str, Market] = {}
    for ticker, market in (ticker_markets or {}).items():
        if not isinstance(ticker, str):
            raise ValidationError(
                f"ticker_markets: ticker {ticker!r} is not a string",
                field="ticker_markets",
                value=ticker,
            )
        parsed = _market_option(market, f"ticker_markets[{ticker!r}]")
        if parsed is not None:
            lookup[ticker.strip().upper()] = parsed
    layout = inspect_csv(path, kind, flow_unit=flow_unit, encoding=encoding, delimiter=delimiter)
    if "market" not in layout.columns and default is None and not lookup:
        raise ValidationError(
            f"{layout.path}: the file has no market column "
            f"(one of: {', '.join(FIELD_ALIASES['market'])}); pass default_market or "
            "ticker_markets",
            field="market",
            value=None,
        )
    return layout, _ChunkParser(layout, default, lookup)


def _chunks(layout: CsvLayout, parser: _ChunkParser, chunk_rows: int) -> Iterator[ParsedChunk]:
    path = layout.path
    lines: list[int] = []
    rows: list[list[str]] = []
    blank = 0
    with path.open(encoding=layout.encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=layout.delimiter)
        previous = 0
        header_seen = False
        try:
            for row in reader:
                start, previous = previous + 1, reader.line_num
                if _is_blank(row):
                    if header_seen:
                        blank += 1
                    continue
                if not header_seen:  # the first non-blank row is the header
                    header_seen = True
                    continue
                lines.append(start)
                rows.append(row)
                if len(rows) >= chunk_rows:
                    yield _typed_chunk(parser.parse(lines, rows, blank), layout.kind)
                    lines, rows, blank = [], [], 0
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"{path}: line {previous + 1}: unreadable CSV ({exc}); rows before this line "
                "were parsed, the rest of the file was not",
                field=f"{path}:{previous + 1}",
                value=str(exc),
            ) from exc
    if rows or blank:
        yield _typed_chunk(parser.parse(lines, rows, blank), layout.kind)


def _typed_chunk(chunk: ParsedChunk, kind: CsvKind) -> ParsedChunk:
    return ParsedChunk(
        good=_typed(chunk.good, kind),
        rejects=chunk.rejects,
        rows=chunk.rows,
        first_line=chunk.first_line,
        last_line=chunk.last_line,
        blank_lines=chunk.blank_lines,
    )


def read_csv(
    path: str | Path,
    kind: CsvKind | None = None,
    *,
    default_market: Market | str | None = None,
    ticker_markets: Mapping[str, Market | str] | None = None,
    flow_unit: FlowUnit | None = None,
    encoding: str | None = None,
    delimiter: str = ",",
    chunk_rows: int = 50_000,
) -> ParsedCsv:
    """The whole file at ``path`` parsed into one :class:`ParsedCsv` (all good rows in
    memory: for very large files iterate :func:`iter_chunks` instead). Arguments, result rules
    and errors are those of :func:`iter_chunks`.

    Raises:
        quant.errors.ValidationError: as :func:`iter_chunks`.
    """
    layout, parser = _prepare(
        path, kind, chunk_rows, default_market, ticker_markets, flow_unit, encoding, delimiter
    )
    goods: list[pd.DataFrame] = []
    rejects: list[RejectedLine] = []
    rows = blank = 0
    for chunk in _chunks(layout, parser, chunk_rows):
        if not chunk.good.empty:
            goods.append(chunk.good)
        rejects.extend(chunk.rejects)
        rows += chunk.rows
        blank += chunk.blank_lines
    good = pd.concat(goods, ignore_index=True) if goods else _empty_frame(layout.kind)
    return ParsedCsv(layout=layout, good=good, rejects=rejects, rows=rows, blank_lines=blank)


def instruments_from_frame(frame: pd.DataFrame) -> list[Instrument]:
    """The :class:`Instrument` of each row of a STOCKS frame (:data:`STOCK_COLUMNS`).

    Raises:
        quant.errors.ValidationError: the frame lacks a column or holds an unknown market or
            listing status (frames from :func:`iter_chunks` never do).
    """
    missing = [c for c in STOCK_COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"stocks frame lacks columns {missing}", field="columns", value=missing
        )
    out: list[Instrument] = []
    for market, ticker, name, currency, status in frame.loc[:, list(STOCK_COLUMNS)].itertuples(
        index=False, name=None
    ):
        try:
            listing = ListingStatus(status)
        except ValueError:
            raise ValidationError(
                f"unknown listing status {status!r} for {ticker}",
                field="listing_status",
                value=status,
            ) from None
        out.append(
            Instrument(
                market=parse_market(str(market)),
                ticker=str(ticker),
                name=str(name),
                currency=str(currency),
                listing_status=listing,
            )
        )
    return out
