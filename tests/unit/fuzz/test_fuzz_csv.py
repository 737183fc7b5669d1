"""Fuzzing the CSV parser of ``quantbeat import csv`` (:mod:`quant.migration.csv_import`).

The contract checked on every input: :func:`read_csv` either returns a :class:`ParsedCsv` in
which every data row is accounted for (``rows == len(good) + len(rejects)``, each reject with
a known reason and a line number inside the file, every good price finite and positive), or
raises :class:`quant.errors.ValidationError` whose message names the file. Never another
exception type, never a hang (2 s per example).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from quant.errors import ValidationError
from quant.market.types import DAILY_CANDLE_COLUMNS, INVESTOR_FLOW_COLUMNS
from quant.migration.csv_import import (
    FIELD_ALIASES,
    FLOW_GROUP_ALIASES,
    FLOW_KRW_SUFFIXES,
    FLOW_SHARE_SUFFIXES,
    REJECT_REASONS,
    SIGNAL_COLUMNS,
    STOCK_COLUMNS,
    CsvKind,
    FlowUnit,
    ParsedCsv,
    iter_chunks,
    normalise_header,
    read_csv,
)
from tests.unit.fuzz.common import fuzz

_COLUMNS = {
    CsvKind.DAILY_PRICES: DAILY_CANDLE_COLUMNS,
    CsvKind.INSTITUTIONAL_TREND: INVESTOR_FLOW_COLUMNS,
    CsvKind.STOCKS: STOCK_COLUMNS,
    CsvKind.SIGNALS: SIGNAL_COLUMNS,
}

# --------------------------------------------------------------------------- strategies

_HEADERS = sorted(
    {alias for aliases in FIELD_ALIASES.values() for alias in aliases}
    | {alias for aliases in FLOW_GROUP_ALIASES.values() for alias in aliases}
    | {
        f"{aliases[0]}_{suffix}"
        for aliases in FLOW_GROUP_ALIASES.values()
        for suffix in (*FLOW_KRW_SUFFIXES[:2], *FLOW_SHARE_SUFFIXES[:2])
    }
)
_header = st.one_of(
    st.sampled_from(_HEADERS),
    st.sampled_from(_HEADERS).map(str.upper),
    st.sampled_from(_HEADERS).map(lambda h: f" {h.replace('_', ' ')} "),
    st.sampled_from(["", " ", "\ufeffdate", "line", "reason", "detail", "날짜\x00", "Ｄａｔｅ"]),
    st.text(max_size=12),
)
_date = st.sampled_from(
    [
        "2024-01-02",
        "2024/1/2",
        "2024.01.02",
        "20240102",
        "20240102.0",
        "2024-01-02 15:30:00",
        "2024-01-02T15:30:00.123456",
        "2024-02-30",
        "2024-13-01",
        "0000-01-01",
        "1899-12-31",
        "2101-01-01",
        "9999-12-31",
        "99999999",
        "2024-01-02+09:00",
        "٢٠٢٤-٠١-٠٢",  # Arabic-Indic digits: \d matches them
        "２０２４－０１－０２",
        "2024-1-2 25:61",
        "yesterday",
    ]
)
_number = st.one_of(
    st.sampled_from(
        [
            "100",
            "1,234",
            "1,234,567.5",
            "12,34",
            "-5",
            "+7",
            "0",
            "-0",
            "nan",
            "NaN",
            "inf",
            "-Infinity",
            "1e400",
            "-1e400",
            "1e-400",
            "1" * 400,
            "0x10",
            "1_000",
            "−5",  # U+2212 minus
            "٣",
            "",
            " ",
            "-",
            "n/a",
            "#N/A",
            "None",
            "1.5.5",
            "\x00",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
_ticker = st.sampled_from(
    ["005930", "5930", "5930.0", "A005930", "0001a0", "KRW-BTC", "", "ABC DEF", "１２３", "\x00"]
)
_market = st.sampled_from(
    ["KOSPI", "kosdaq", "코스피", "유가증권시장", "코 스 닥", "업비트", "US", "UPBIT", "NASDAQ", ""]
)
_cell = st.one_of(_date, _number, _ticker, _market, st.text(max_size=20))


# Headers of each kind (so most files get past the header and their rows are judged), in
# any order, with a junk or duplicate column now and then.
_SHAPES = [
    ["date", "ticker", "market", "open", "high", "low", "close", "volume", "traded_value"],
    ["날짜", "종목코드", "시가", "고가", "저가", "종가", "거래량"],
    ["date", "code", "foreign", "institution"],
    ["일자", "종목코드", "시장", "외국인_금액", "기관_수량", "개인"],
    ["ticker", "name", "market", "currency", "listing_status"],
    ["종목코드", "종목명", "시장"],
    ["signal_date", "ticker", "strategy", "score", "grade", "entry_price", "status", "reason"],
]
_shaped_headers = st.tuples(
    st.sampled_from(_SHAPES).flatmap(st.permutations),
    st.lists(_header, max_size=2),
).map(lambda pair: [*pair[0], *pair[1]])


_PLAIN_NUMBER = st.one_of(
    st.integers(min_value=1, max_value=200).map(str),
    st.floats(min_value=0.5, max_value=300, allow_nan=False).map(lambda f: f"{f:.2f}"),
)


def _typed_cell(header: str) -> st.SearchStrategy[str]:
    """Cells that fit the column ``header`` (mostly plausible, sometimes adversarial), so
    rows get past the key checks and reach the value and duplicate checks."""
    name = normalise_header(header)
    if any(normalise_header(a) == name for a in FIELD_ALIASES["trade_date"]):
        return st.one_of(st.sampled_from(["2024-01-02", "2024-01-03", "20240104"]), _date)
    if any(normalise_header(a) == name for a in FIELD_ALIASES["ticker"]):
        return st.one_of(st.sampled_from(["005930", "000660", "5930"]), _ticker)
    if any(normalise_header(a) == name for a in FIELD_ALIASES["market"]):
        return st.one_of(st.just("KOSPI"), _market)
    if any(normalise_header(a) == name for a in FIELD_ALIASES["name"]):
        return st.one_of(st.just("삼성전자"), st.text(max_size=10))
    return st.one_of(_PLAIN_NUMBER, _PLAIN_NUMBER, _PLAIN_NUMBER, _number)


def _quote(cell: str, quoted: bool) -> str:
    if quoted or any(c in cell for c in ',"\n\r'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    """A CSV text: a header of known and junk column names, then rows of dates, numbers,
    tickers, markets and arbitrary text, with stray quotes, blank lines, ragged rows, mixed
    delimiters and line endings."""
    headers = draw(st.one_of(_shaped_headers, st.lists(_header, min_size=1, max_size=10)))
    width = len(headers)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [",".join(_quote(h, draw(st.booleans())) for h in headers)]
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        shape = draw(st.sampled_from(["row", "row", "row", "ragged", "blank", "raw"]))
        if shape == "blank":
            lines.append(draw(st.sampled_from(["", " ", ",,,", '""'])))
            continue
        if shape == "raw":
            lines.append(draw(st.text(max_size=40)))
            continue
        n = width if shape == "row" else draw(st.integers(min_value=0, max_value=width + 3))
        cells = [
            draw(_cell if draw(st.integers(0, 7)) == 0 else _typed_cell(headers[i]))
            if i < width
            else draw(_cell)
            for i in range(n)
        ]
        quoted = [draw(st.booleans()) for _ in cells]
        lines.append(",".join(_quote(c, q) for c, q in zip(cells, quoted, strict=True)))
    text = newline.join(lines)
    if draw(st.booleans()):
        text += newline
    if draw(st.booleans()):  # a stray quote or delimiter somewhere
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.sampled_from(['"', ";", "\t", "\x00", "\ufeff"])) + text[at:]
    return text


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """``csv_texts`` encoded as UTF-8, UTF-8 with BOM, CP949, UTF-16 or Latin-1, sometimes
    with raw bytes spliced in."""
    text = draw(csv_texts())
    encoding = draw(
        st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "cp949", "utf-16", "latin-1"])
    )
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=6)) + data[at:]
    return data


# --------------------------------------------------------------------------- contract


@contextmanager
def _file(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="qb-fuzz-csv-") as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(data)
        yield path


def _check(parsed: ParsedCsv, path: Path, data: bytes) -> None:
    assert parsed.rows == len(parsed.good) + len(parsed.rejects)
    assert list(parsed.good.columns) == list(_COLUMNS[parsed.layout.kind])
    physical_lines = data.count(b"\n") + data.count(b"\r") + 1
    for reject in parsed.rejects:
        assert reject.reason in REJECT_REASONS, reject
        assert 1 <= reject.line <= physical_lines, (reject, physical_lines)
        assert isinstance(reject.detail, str)
        assert reject.detail
    good = parsed.good
    if parsed.layout.kind is CsvKind.DAILY_PRICES and not good.empty:
        prices = good[["open", "high", "low", "close"]].to_numpy(dtype=float)
        assert (prices > 0).all()
        assert all(math.isfinite(v) for v in prices.ravel())
        assert (good["high"] >= good["low"]).all()
    if not good.empty and "trade_date" in good.columns:
        assert all(1900 <= d.year <= 2100 for d in good["trade_date"])
    key = {
        CsvKind.DAILY_PRICES: ["market", "ticker", "trade_date"],
        CsvKind.INSTITUTIONAL_TREND: ["market", "ticker", "trade_date"],
        CsvKind.STOCKS: ["market", "ticker"],
        CsvKind.SIGNALS: ["market", "ticker", "trade_date", "strategy"],
    }[parsed.layout.kind]
    assert not good.duplicated(subset=key).any()


def _parse(path: Path, data: bytes, **options: object) -> ParsedCsv | None:
    try:
        parsed = read_csv(path, **options)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc
    else:
        _check(parsed, path, data)
        return parsed
    assert str(path) in str(error) or error.field is not None, error
    return None


_KIND = st.sampled_from([None, *CsvKind])
_DEFAULT_MARKET = st.sampled_from([None, "KOSPI", "UPBIT", "코스닥"])


@pytest.mark.filterwarnings("error::RuntimeWarning")  # e.g. a float → int64 cast overflowing
@fuzz(max_examples=400)
@given(data=csv_files(), kind=_KIND, default_market=_DEFAULT_MARKET, chunk_rows=st.integers(1, 4))
@example(  # duplicate header spellings of one column
    data=b"date,\xeb\x82\xa0\xec\xa7\x9c,ticker,open,high,low,close,volume\n",
    kind=None,
    default_market="KOSPI",
    chunk_rows=1,
)
@example(  # found by this test: 1e30 passed the checks and was cast to int64 as -2**63
    data=b"date,ticker,foreign,institution\n2024-01-02,005930,1e30,5\n",
    kind=None,
    default_market="KOSPI",
    chunk_rows=1,
)
def test_any_csv_file_parses_or_raises_validation_error(
    data: bytes, kind: CsvKind | None, default_market: str | None, chunk_rows: int
) -> None:
    with _file(data) as path:
        parsed = _parse(path, data, kind=kind, default_market=default_market, chunk_rows=chunk_rows)
        if parsed is not None and chunk_rows > 1:
            # The result does not depend on the chunk size.
            again = read_csv(path, kind=kind, default_market=default_market, chunk_rows=1)
            assert again.rows == parsed.rows
            assert [(r.line, r.reason) for r in again.rejects] == [
                (r.line, r.reason) for r in parsed.rejects
            ]
            pd.testing.assert_frame_equal(again.good, parsed.good)


@fuzz(max_examples=150)
@given(data=st.binary(max_size=400), kind=_KIND)
def test_random_bytes_parse_or_raise_validation_error(data: bytes, kind: CsvKind | None) -> None:
    with _file(data) as path:
        _parse(path, data, kind=kind, default_market="KOSPI")


_HEADER_LINE = "date,ticker,market,open,high,low,close,volume\n2024-01-02,005930,KOSPI,1,2,1,2,3\n"


@fuzz(max_examples=120)
@given(
    delimiter=st.one_of(st.text(max_size=3), st.integers(), st.none()),
    encoding=st.one_of(
        st.none(), st.sampled_from(["utf-8", "cp949", "latin-1", "utf-16", "nope", ""])
    ),
    chunk_rows=st.one_of(st.integers(-3, 3), st.floats(), st.text(max_size=2)),
    flow_unit=st.sampled_from([None, *FlowUnit, "krw", "bogus", 3]),
    default_market=st.one_of(_DEFAULT_MARKET, st.text(max_size=6), st.integers()),
    ticker_markets=st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=6), st.one_of(_market, st.integers()), max_size=3),
    ),
    kind=st.one_of(_KIND, st.text(max_size=8)),
)
def test_any_options_parse_or_raise_validation_error(
    delimiter: object,
    encoding: str | None,
    chunk_rows: object,
    flow_unit: object,
    default_market: object,
    ticker_markets: object,
    kind: object,
) -> None:
    """Wrong-typed or impossible options of the Python API (a two-character or empty
    delimiter, an unknown encoding, a float chunk size, a bogus kind or market) are refused
    with a ValidationError naming the option."""
    data = _HEADER_LINE.encode()
    options = {
        "delimiter": delimiter,
        "encoding": encoding,
        "chunk_rows": chunk_rows,
        "flow_unit": flow_unit,
        "default_market": default_market,
        "ticker_markets": ticker_markets,
        "kind": kind,
    }
    with _file(data) as path:
        parsed = _parse(path, data, **options)
        if parsed is None:
            return
        try:
            chunks = list(iter_chunks(path, **options))  # type: ignore[arg-type]
        except ValidationError:
            pytest.fail("iter_chunks refused options read_csv accepted")
        assert sum(c.rows for c in chunks) == parsed.rows


def test_net_buying_beyond_int64_is_rejected_out_of_range_not_wrapped(tmp_path: Path) -> None:
    """Regression (found by the fuzz test above): a net-buying figure of 1e30 passed the
    quality checks and became -9223372036854775808 in the frame (a float → int64 cast)."""
    path = tmp_path / "flows.csv"
    path.write_text(
        "date,ticker,foreign,institution\n"
        "2024-01-02,005930,1e30,5\n"
        "2024-01-03,005930,-9223372036854775808,5\n"
        "2024-01-04,005930,9223372036854774784,-7\n",
        encoding="utf-8",
    )
    parsed = read_csv(path, default_market="KOSPI")
    assert [(r.line, r.reason) for r in parsed.rejects] == [
        (2, "out_of_range"),
        (3, "out_of_range"),
    ]
    assert "64-bit" in parsed.rejects[0].detail
    assert parsed.good["foreign_net_shares"].tolist() == [9223372036854774784]
