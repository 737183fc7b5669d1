"""CSV import (parsing half): headers, encodings, line numbers, rejections, chunking, units."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from quant.errors import ValidationError
from quant.market.types import DAILY_CANDLE_COLUMNS, INVESTOR_FLOW_COLUMNS, Market
from quant.migration.csv_import import (
    FIELD_ALIASES,
    FLOW_GROUP_ALIASES,
    REJECT_REASONS,
    SIGNAL_COLUMNS,
    STOCK_COLUMNS,
    CsvKind,
    FlowUnit,
    ParsedCsv,
    detect_encoding,
    detect_kind,
    inspect_csv,
    instruments_from_frame,
    iter_chunks,
    normalise_header,
    normalise_ticker,
    parse_date,
    read_csv,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "csv"
D2, D3, D4 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)

ENGLISH_DAILY = """\
date,ticker,market,open,high,low,close,volume,traded_value
2024-01-02,005930,KOSPI,100,110,95,105,1000,102000
2024-01-03,005930,KOSPI,105,112,101,110,1200,130000
2024-01-02,035720,KOSDAQ,50,55,49,54,300,15900
"""

EXPECTED_DAILY = pd.DataFrame(
    {
        "market": ["KOSPI", "KOSPI", "KOSDAQ"],
        "ticker": ["005930", "005930", "035720"],
        "trade_date": [D2, D3, D2],
        "open": [100.0, 105.0, 50.0],
        "high": [110.0, 112.0, 55.0],
        "low": [95.0, 101.0, 49.0],
        "close": [105.0, 110.0, 54.0],
        "volume": [1000.0, 1200.0, 300.0],
        "traded_value": [102000.0, 130000.0, 15900.0],
    },
    columns=list(DAILY_CANDLE_COLUMNS),
)


def write(tmp_path: Path, text: str, name: str = "file.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def reasons(parsed: ParsedCsv) -> list[tuple[int, str]]:
    return [(r.line, r.reason) for r in parsed.rejects]


def assert_accounted(parsed: ParsedCsv) -> None:
    assert parsed.rows == len(parsed.good) + len(parsed.rejects)


# --------------------------------------------------------------------------- headers, encodings


def test_english_headers_give_the_canonical_daily_frame(tmp_path: Path):
    parsed = read_csv(write(tmp_path, ENGLISH_DAILY))
    assert parsed.layout.kind is CsvKind.DAILY_PRICES
    assert parsed.layout.encoding == "utf-8"
    assert parsed.rejects == []
    assert parsed.rows == 3
    pd.testing.assert_frame_equal(parsed.good, EXPECTED_DAILY)


def test_korean_headers_with_bom_give_the_same_frame():
    parsed = read_csv(FIXTURES / "daily_prices_ko.csv")
    assert parsed.layout.encoding == "utf-8-sig"
    assert parsed.layout.kind is CsvKind.DAILY_PRICES
    assert parsed.layout.headers[0] == "날짜"  # BOM gone
    assert set(parsed.layout.ignored) == {"종목명", "등락률"}
    assert parsed.rejects == []
    pd.testing.assert_frame_equal(parsed.good, EXPECTED_DAILY)


@pytest.mark.parametrize(
    "header",
    [
        "date,ticker,market,open,high,low,close,volume,traded_value",
        "Date,Ticker,Market,Open,High,Low,Close,Volume,Traded Value",
        " DATE , CODE , MARKET ,OPEN,HIGH,LOW,CLOSE,VOLUME,TRADED-VALUE",
        "일자,티커,시장,시가,고가,저가,종가,거래량,거래대금",
        "날짜,종목코드,시장,시가,고가,저가,종가,거래량,trading_value",
        "trade_date,symbol,market,open,high,low,close,volume,traded_value",
    ],
)
def test_header_spellings_are_case_space_and_language_insensitive(tmp_path: Path, header: str):
    body = ENGLISH_DAILY.split("\n", 1)[1]
    parsed = read_csv(write(tmp_path, f"{header}\n{body}"))
    pd.testing.assert_frame_equal(parsed.good, EXPECTED_DAILY)


def test_bom_is_reported_and_stripped(tmp_path: Path):
    plain = read_csv(write(tmp_path, ENGLISH_DAILY, "plain.csv"))
    bom = read_csv(write(tmp_path, ENGLISH_DAILY, "bom.csv", encoding="utf-8-sig"))
    assert (plain.layout.encoding, bom.layout.encoding) == ("utf-8", "utf-8-sig")
    assert bom.layout.headers == plain.layout.headers
    pd.testing.assert_frame_equal(bom.good, plain.good)
    # Told "utf-8", the BOM survives decoding as U+FEFF and is still dropped from the header.
    forced = read_csv(tmp_path / "bom.csv", encoding="utf-8")
    assert forced.layout.encoding == "utf-8"
    assert forced.layout.headers == plain.layout.headers
    pd.testing.assert_frame_equal(forced.good, plain.good)


def test_cp949_korean_stock_list():
    path = FIXTURES / "korean_stocks_list_cp949.csv"
    with pytest.raises(UnicodeDecodeError):
        path.read_text(encoding="utf-8")  # the fixture really is not UTF-8
    parsed = read_csv(path)
    assert parsed.layout.encoding == "cp949"
    assert parsed.layout.kind is CsvKind.STOCKS
    assert parsed.rejects == []
    expected = pd.DataFrame(
        {
            "market": ["KOSPI", "KOSPI", "KOSDAQ", "KOSPI"],
            "ticker": ["005930", "000660", "035720", "0001A0"],
            "name": ["삼성전자", "SK하이닉스", "카카오", "신규상장"],
            "currency": ["KRW"] * 4,
            "listing_status": ["listed"] * 4,
        },
        columns=list(STOCK_COLUMNS),
    )
    pd.testing.assert_frame_equal(parsed.good, expected)
    instruments = instruments_from_frame(parsed.good)
    assert [(i.market, i.ticker, i.name) for i in instruments][:2] == [
        (Market.KOSPI, "005930", "삼성전자"),
        (Market.KOSPI, "000660", "SK하이닉스"),
    ]


def test_same_text_in_cp949_and_utf8_parses_identically(tmp_path: Path):
    text = "종목코드,종목명,시장\n5930,삼성전자,코스피\n35720,카카오,코스닥\n"
    a = read_csv(write(tmp_path, text, "a.csv", "cp949"))
    b = read_csv(write(tmp_path, text, "b.csv", "utf-8"))
    assert (a.layout.encoding, b.layout.encoding) == ("cp949", "utf-8")
    pd.testing.assert_frame_equal(a.good, b.good)


def test_undecodable_file_is_a_validation_error_naming_it(tmp_path: Path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"date,ticker\n\xff\xff\xff,\x80\n")
    with pytest.raises(ValidationError, match=r"garbage\.csv.*utf-8 fails at byte 12"):
        detect_encoding(path)


def test_late_bad_byte_is_found_before_any_row_is_read(tmp_path: Path):
    # 100 ASCII rows, then one cp949-encoded Korean byte pair: the whole file is scanned before
    # any row is parsed, so the encoding is decided up front, not midway through.
    rows = "".join("2024-01-02,005930,KOSPI,1,1,1,1,1,1\n" for _ in range(100))
    data = ENGLISH_DAILY.split("\n", 1)[0].encode() + b"\n" + rows.encode() + "가\n".encode("cp949")
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    assert detect_encoding(path) == "cp949"


def test_empty_file_and_unknown_header_are_errors(tmp_path: Path):
    with pytest.raises(ValidationError, match="empty"):
        read_csv(write(tmp_path, "\n\n", "empty.csv"))
    with pytest.raises(ValidationError, match="cannot tell what the file holds"):
        read_csv(write(tmp_path, "foo,bar\n1,2\n", "unknown.csv"))


def test_two_headers_meaning_the_same_column_is_an_error(tmp_path: Path):
    text = "date,날짜,ticker,market,open,high,low,close,volume,traded_value\n"
    with pytest.raises(ValidationError, match=r"'date' and '날짜' both mean trade_date"):
        read_csv(write(tmp_path, text))


def test_aliases_do_not_collide_within_a_kind():
    seen: dict[str, str] = {}
    for name, aliases in FIELD_ALIASES.items():
        for alias in aliases:
            assert seen.setdefault(normalise_header(alias), name) == name, alias
    for group, aliases in FLOW_GROUP_ALIASES.items():
        for alias in aliases:
            assert normalise_header(alias) not in seen, (group, alias)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02", D2),
        ("2024/01/02", D2),
        ("20240102", D2),
        ("2024.01.02", D2),
        ("2024-1-2", D2),
        ("2024-01-02 15:30:00", D2),
        ("2024-01-02T00:00", D2),
        ("20240102.0", D2),
        ("2024-02-29", dt.date(2024, 2, 29)),
        ("2024-02-30", None),
        ("2023-02-29", None),
        ("2024-13-01", None),
        ("2024-01/02", None),
        ("02/01/2024", None),
        ("2024-01-02+09:00", None),
        ("1899-12-31", None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_date(text: str, expected: dt.date | None):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "market", "expected"),
    [
        ("5930", Market.KOSPI, "005930"),
        ("005930", Market.KOSPI, "005930"),
        (" 660 ", Market.KOSDAQ, "000660"),
        ("5930.0", Market.KOSPI, "005930"),
        ("A005930", Market.KOSPI, "005930"),
        ("0001a0", Market.KOSPI, "0001A0"),
        ("00680K", Market.KOSPI, "00680K"),
        ("1234567", Market.KOSPI, None),
        ("AAPL", Market.KOSPI, None),
        ("5930.5", Market.KOSPI, None),
        ("", Market.KOSPI, None),
        ("krw-btc", Market.UPBIT, "KRW-BTC"),
        ("aapl", Market.US, "AAPL"),
        ("BRK B", Market.US, None),
    ],
)
def test_normalise_ticker(text: str, market: Market, expected: str | None):
    assert normalise_ticker(text, market) == expected


def test_tickers_are_zero_padded_in_files(tmp_path: Path):
    text = ENGLISH_DAILY.replace("005930", "5930").replace("035720", "35720")
    parsed = read_csv(write(tmp_path, text))
    assert list(parsed.good["ticker"]) == ["005930", "005930", "035720"]
    assert all(isinstance(t, str) for t in parsed.good["ticker"])


# --------------------------------------------------------------------------- rejections

MALFORMED = """\
date,ticker,market,open,high,low,close,volume,traded_value
2024-01-02,005930,KOSPI,100,110,95,105,1000,102000
2024-02-30,005930,KOSPI,100,110,95,105,1000,102000
2024-01-03,005930,KOSPI,-100,110,95,105,1000,102000
2024-01-02,5930,KOSPI,101,111,96,106,1001,102001
2024-01-04,005930,KOSPI,abc,110,95,105,1000,102000
2024-01-04,005930,KOSPI,100,110,95,105,1000,102000
2024-01-05,005930,KOSPI,100,90,95,105,1000,102000
,005930,KOSPI,100,110,95,105,1000,102000
2024-01-05,,KOSPI,100,110,95,105,1000,102000
2024-01-05,005930,NYSE,100,110,95,105,1000,102000
2024-01-05,1234567,KOSPI,100,110,95,105,1000,102000
2024-01-05,000660,KOSPI,100,110,95,,1000,102000
2024-01-05,000660,KOSPI,100,110,95,105,1000
2024-01-05,000660,KOSPI,100,110,95,105,inf,102000
2024-01-05,000660,KOSPI,"1,000","1,100",950,"1,050",5,5250
2024-01-06,000660,KOSPI,1000,1100,950,1050,5,5250,,
"""
MALFORMED_REJECTS = [
    (3, "bad_date"),
    (4, "non_positive_price"),
    (5, "duplicate_row"),
    (6, "bad_number"),
    (8, "high_below_low"),
    (9, "missing_key"),
    (10, "missing_key"),
    (11, "bad_market"),
    (12, "bad_ticker"),
    (13, "missing_value"),
    (14, "wrong_field_count"),
    (15, "non_finite"),
]


def test_malformed_file_keeps_every_good_row_and_rejects_every_bad_one(tmp_path: Path):
    parsed = read_csv(write(tmp_path, MALFORMED))
    assert reasons(parsed) == MALFORMED_REJECTS
    assert_accounted(parsed)
    assert parsed.rows == 16
    good = parsed.good
    assert list(zip(good["ticker"], good["trade_date"], good["open"], strict=True)) == [
        ("005930", D2, 100.0),
        ("005930", D4, 100.0),  # line 7: line 6 (same key) was rejected, so this one is kept
        ("000660", dt.date(2024, 1, 5), 1000.0),
        ("000660", dt.date(2024, 1, 6), 1000.0),  # trailing empty fields are tolerated
    ]
    assert all(reason in REJECT_REASONS for _, reason in reasons(parsed))


def test_rejections_name_the_column_the_value_and_keep_the_raw_row(tmp_path: Path):
    parsed = read_csv(write(tmp_path, MALFORMED))
    by_line = {r.line: r for r in parsed.rejects}
    assert "'2024-02-30'" in by_line[3].detail
    assert "'date'" in by_line[3].detail
    assert "as line 2" in by_line[5].detail
    assert "'open'" in by_line[6].detail
    assert "'abc'" in by_line[6].detail
    assert "'NYSE'" in by_line[11].detail
    assert by_line[14].detail == "the row has 8 fields, the header has 9"
    assert by_line[6].raw == {
        "date": "2024-01-04",
        "ticker": "005930",
        "market": "KOSPI",
        "open": "abc",
        "high": "110",
        "low": "95",
        "close": "105",
        "volume": "1000",
        "traded_value": "102000",
    }


def test_extra_non_empty_fields_are_rejected_and_kept_in_raw(tmp_path: Path):
    text = ENGLISH_DAILY + "2024-01-04,005930,KOSPI,1,1,1,1,1,1,surprise\n"
    parsed = read_csv(write(tmp_path, text))
    assert reasons(parsed) == [(5, "wrong_field_count")]
    assert parsed.rejects[0].raw["__extra_1"] == "surprise"


def test_missing_required_columns_name_the_file_and_the_columns(tmp_path: Path):
    text = "date,ticker,market,open,high,low,close\n2024-01-02,005930,KOSPI,1,1,1,1\n"
    path = write(tmp_path, text, "daily_prices.csv")
    with pytest.raises(ValidationError) as caught:
        read_csv(path, CsvKind.DAILY_PRICES)
    message = str(caught.value)
    assert "daily_prices.csv" in message
    assert "volume (one of:" in message
    assert "거래량" in message
    assert "Optional: market, traded_value" in message
    assert caught.value.value == ["volume"]


@pytest.mark.parametrize(
    ("kind", "header", "missing"),
    [
        (CsvKind.STOCKS, "ticker,market", ["name"]),
        (CsvKind.INSTITUTIONAL_TREND, "date,ticker,market,foreign_buy", ["institution"]),
        (CsvKind.INSTITUTIONAL_TREND, "date,market,개인", ["ticker", "foreign", "institution"]),
        (CsvKind.SIGNALS, "ticker,market,score", ["trade_date"]),
    ],
)
def test_missing_required_columns_per_kind(
    tmp_path: Path, kind: CsvKind, header: str, missing: list[str]
):
    with pytest.raises(ValidationError, match="missing required column") as caught:
        read_csv(write(tmp_path, header + "\n"), kind)
    assert caught.value.value == missing


# --------------------------------------------------------------------------- line numbers, chunks

SEVEN_ROWS = """\
date,ticker,market,open,high,low,close,volume,traded_value
2024-01-02,000001,KOSPI,10,11,9,10,1,10
2024-01-02,000002,KOSPI,10,11,9,10,1,10
2024-01-02,000001,KOSPI,10,11,9,10,1,10
2024-01-03,000001,KOSPI,0,11,9,10,1,10

2024-01-03,000001,KOSPI,10,11,9,10,1,10
2024-01-03,000002,KOSPI,x,11,9,10,1,10
2024-01-02,000002,KOSPI,10,11,9,10,1,10
"""


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 50_000])
def test_chunking_does_not_change_the_result(tmp_path: Path, chunk_rows: int):
    path = write(tmp_path, SEVEN_ROWS)
    whole = read_csv(path)
    assert whole.rows == 7
    assert whole.blank_lines == 1
    assert reasons(whole) == [
        (4, "duplicate_row"),
        (5, "non_positive_price"),
        (8, "bad_number"),
        (9, "duplicate_row"),
    ]
    assert whole.rejects[0].detail.endswith("as line 2, which was kept")
    assert whole.rejects[-1].detail.endswith("as line 3, which was kept")

    chunks = list(iter_chunks(path, chunk_rows=chunk_rows))
    assert len(chunks) == -(-7 // chunk_rows)
    for chunk in chunks:
        assert chunk.rows == len(chunk.good) + len(chunk.rejects)
        assert chunk.rows <= chunk_rows
    good = pd.concat([c.good for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(good, whole.good)
    assert [r for c in chunks for r in c.rejects] == whole.rejects
    assert sum(c.rows for c in chunks) == 7
    assert sum(c.blank_lines for c in chunks) == 1


def test_chunk_line_ranges_with_two_rows_per_chunk(tmp_path: Path):
    chunks = list(iter_chunks(write(tmp_path, SEVEN_ROWS), chunk_rows=2))
    assert [(c.first_line, c.last_line) for c in chunks] == [(2, 3), (4, 5), (7, 8), (9, 9)]


def test_a_quoted_newline_keeps_line_numbers_right(tmp_path: Path):
    text = (
        "date,ticker,market,status,score,reason\n"
        '2024-01-02,005930,KOSPI,OPEN,70,"line one\nline two\r\nline three"\n'
        "2024-01-02,000660,KOSPI,OPEN,abc,bad score\n"
        '2024-01-03,000660,KOSPI,OPEN,,"two\nlines"\n'
        "bad-date,000660,KOSPI,OPEN,1,x\n"
    )
    parsed = read_csv(write(tmp_path, text))
    assert reasons(parsed) == [(5, "bad_number"), (8, "bad_date")]
    assert parsed.good["reason"].tolist() == ["line one\nline two\r\nline three", "two\nlines"]
    chunked = [r for c in iter_chunks(write(tmp_path, text), chunk_rows=1) for r in c.rejects]
    assert chunked == parsed.rejects


def test_a_multi_line_rejected_record_reports_its_first_line(tmp_path: Path):
    text = (
        ENGLISH_DAILY + '2024-01-04,"00\n5930",KOSPI,1,1,1,1,1,1\n2024-01-05,x,KOSPI,1,1,1,1,1,1\n'
    )
    parsed = read_csv(write(tmp_path, text))
    assert reasons(parsed) == [(5, "bad_ticker"), (7, "bad_ticker")]


def test_blank_lines_before_the_header_shift_line_numbers(tmp_path: Path):
    parsed = read_csv(write(tmp_path, "\n\n" + MALFORMED))
    assert parsed.layout.header_line == 3
    assert reasons(parsed) == [(line + 2, reason) for line, reason in MALFORMED_REJECTS]


def test_duplicates_across_chunks_point_at_the_kept_line(tmp_path: Path):
    lines = [ENGLISH_DAILY.split("\n", 1)[0]]
    for i in range(10):
        lines.append(f"2024-01-{2 + i:02d},005930,KOSPI,1,1,1,1,1,1")
    lines.append("2024-01-05,5930,코스피,2,2,2,2,2,2")
    parsed = read_csv(write(tmp_path, "\n".join(lines) + "\n"), chunk_rows=3)
    assert reasons(parsed) == [(12, "duplicate_row")]
    assert "as line 5" in parsed.rejects[0].detail


def test_unreadable_csv_midway_names_the_line_after_yielding_earlier_chunks(tmp_path: Path):
    runaway = '2024-01-05,005930,KOSPI,"' + "x" * 200_000 + "\n2024-01-06,005930,KOSPI,1\n"
    chunks = iter_chunks(write(tmp_path, ENGLISH_DAILY + runaway), chunk_rows=2)
    first = next(chunks)
    assert (first.first_line, first.last_line, len(first.good)) == (2, 3, 2)
    with pytest.raises(ValidationError, match=r"file\.csv: line 5: unreadable CSV"):
        next(chunks)


def test_chunk_rows_must_be_positive(tmp_path: Path):
    with pytest.raises(ValidationError, match="chunk_rows"):
        iter_chunks(write(tmp_path, ENGLISH_DAILY), chunk_rows=0)


def test_errors_are_raised_when_iter_chunks_is_called_not_later(tmp_path: Path):
    path = write(tmp_path, "date,ticker,market,open\n")
    with pytest.raises(ValidationError):
        iter_chunks(path, CsvKind.DAILY_PRICES)


# --------------------------------------------------------------------------- markets

NO_MARKET = """\
date,ticker,open,high,low,close,volume,traded_value
2024-01-02,5930,100,110,95,105,1000,102000
2024-01-02,35720,50,55,49,54,300,15900
"""


def test_a_file_without_market_column_needs_a_default_or_a_lookup(tmp_path: Path):
    path = write(tmp_path, NO_MARKET)
    with pytest.raises(ValidationError, match=r"no market column.*default_market"):
        read_csv(path)
    by_default = read_csv(path, default_market="kospi")
    assert list(by_default.good["market"]) == ["KOSPI", "KOSPI"]
    by_lookup = read_csv(path, ticker_markets={"005930": Market.KOSPI, "035720": "코스닥"})
    assert list(by_lookup.good["market"]) == ["KOSPI", "KOSDAQ"]
    partial = read_csv(path, ticker_markets={"005930": "KOSPI"})
    assert list(partial.good["ticker"]) == ["005930"]
    assert reasons(partial) == [(3, "missing_market")]


def test_blank_market_cells_use_the_default(tmp_path: Path):
    text = ENGLISH_DAILY.replace("KOSDAQ", "")
    assert reasons(read_csv(write(tmp_path, text, "a.csv"))) == [(4, "missing_market")]
    filled = read_csv(write(tmp_path, text, "b.csv"), default_market=Market.KOSDAQ)
    assert list(filled.good["market"]) == ["KOSPI", "KOSPI", "KOSDAQ"]


def test_unknown_default_market_is_an_error(tmp_path: Path):
    with pytest.raises(ValidationError, match="unknown market"):
        read_csv(write(tmp_path, NO_MARKET), default_market="NASDAQ-ish")


# --------------------------------------------------------------------------- detect_kind


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        (["date", "ticker", "open", "high", "low", "close", "volume"], CsvKind.DAILY_PRICES),
        (["날짜", "종목코드", "시가", "고가", "저가", "종가", "거래량"], CsvKind.DAILY_PRICES),
        (["ticker", "name", "market", "sector"], CsvKind.STOCKS),
        (["종목코드", "종목명", "시장"], CsvKind.STOCKS),
        (["date", "ticker", "foreign_buy", "inst_buy"], CsvKind.INSTITUTIONAL_TREND),
        (["일자", "티커", "외국인합계", "기관합계", "개인"], CsvKind.INSTITUTIONAL_TREND),
        (["date", "ticker", "foreign_net_krw", "institution_net_krw"], CsvKind.INSTITUTIONAL_TREND),
        (
            ["ticker", "name", "signal_date", "market", "status", "score", "entry_price"],
            CsvKind.SIGNALS,
        ),
        (["날짜", "종목코드", "전략", "점수", "등급", "진입가"], CsvKind.SIGNALS),
        (["\ufeffDate", "Ticker", "Open", "High", "Low", "Close"], CsvKind.DAILY_PRICES),
        (["ticker", "name", "date"], None),
        (["foo", "bar"], None),
        ([], None),
    ],
)
def test_detect_kind(headers: list[str], kind: CsvKind | None):
    assert detect_kind(headers) == kind


# --------------------------------------------------------------------------- investor flows


def flows(tmp_path: Path, header: str, *rows: str, flow_unit: FlowUnit | None = None) -> ParsedCsv:
    text = "\n".join([header, *rows]) + "\n"
    return read_csv(write(tmp_path, text), CsvKind.INSTITUTIONAL_TREND, flow_unit=flow_unit)


@pytest.mark.parametrize(
    ("header", "flow_unit", "filled"),
    [
        ("date,ticker,market,foreign_buy,inst_buy", None, "shares"),
        ("date,ticker,market,foreign_buy,inst_buy", FlowUnit.KRW, "krw"),
        ("date,ticker,market,foreign_buy,inst_buy", FlowUnit.SHARES, "shares"),
        ("date,ticker,market,foreign_net_buy_krw,inst_net_buy_krw", None, "krw"),
        ("date,ticker,market,foreign_net_shares,institution_net_shares", None, "shares"),
        ("날짜,종목코드,시장,외국인순매수금액,기관순매수금액", None, "krw"),
        ("날짜,종목코드,시장,외국인순매수거래대금,기관순매수거래대금", None, "krw"),
        ("날짜,종목코드,시장,외국인_수량,기관_수량", None, "shares"),
        ("날짜,종목코드,시장,외국인순매수거래량,기관순매수거래량", FlowUnit.SHARES, "shares"),
        ("날짜,종목코드,시장,외국인(원),기관(원)", None, "krw"),
    ],
)
def test_flow_units_from_header_suffix_or_parameter(
    tmp_path: Path, header: str, flow_unit: FlowUnit | None, filled: str
):
    parsed = flows(tmp_path, header, "2024-01-02,005930,KOSPI,-1200,300", flow_unit=flow_unit)
    other = "krw" if filled == "shares" else "shares"
    row = parsed.good.iloc[0]
    assert row[f"foreign_net_{filled}"] == -1200
    assert row[f"institution_net_{filled}"] == 300
    for column in (f"foreign_net_{other}", f"institution_net_{other}", "individual_net_shares"):
        assert row[column] is pd.NA  # absent, not zero
    assumed = [n for n in parsed.layout.notes if "states no unit" in n]
    unsuffixed = "foreign_buy" in header
    assert len(assumed) == (2 if unsuffixed else 0)
    if unsuffixed and flow_unit is None:
        assert "the default" in assumed[0]


def test_flows_in_both_units_and_all_groups(tmp_path: Path):
    header = "date,ticker,market,외국인_수량,기관_수량,개인_수량,외국인_금액,기관_금액,개인_금액"
    parsed = flows(tmp_path, header, "2024-01-02,5930,KOSPI,10,-4,-6,1000,-400,-600")
    assert list(parsed.good.columns) == list(INVESTOR_FLOW_COLUMNS)
    assert parsed.good.iloc[0, 3:].tolist() == [10, -4, -6, 1000, -400, -600]
    assert all(str(t) == "Int64" for t in parsed.good.dtypes.iloc[3:])
    assert not any("left empty" in n for n in parsed.layout.notes)


def test_flow_unit_contradicting_a_header_is_an_error(tmp_path: Path):
    with pytest.raises(ValidationError, match=r"foreign_net_krw.*flow_unit says shares"):
        flows(tmp_path, "date,ticker,market,foreign_net_krw,inst", flow_unit=FlowUnit.SHARES)


def test_flow_rows_blank_non_integer_and_duplicate(tmp_path: Path):
    parsed = read_csv(FIXTURES / "all_institutional_trend_data.csv", default_market="KOSPI")
    assert parsed.layout.kind is CsvKind.INSTITUTIONAL_TREND
    assert reasons(parsed) == [(3, "missing_value"), (5, "non_integer")]
    assert "'inst_buy' is blank" in parsed.rejects[0].detail
    good = parsed.good
    assert list(good["ticker"]) == ["000020", "035720"]
    assert list(good["foreign_net_shares"]) == [-5100, 1200]
    assert list(good["institution_net_shares"]) == [300, -40]
    assert good["foreign_net_krw"].isna().all()
    dup = flows(
        tmp_path,
        "date,ticker,market,foreign,institution",
        "2024-01-02,5930,KOSPI,1,2",
        "2024-01-02,005930,KOSPI,3,4",
    )
    assert reasons(dup) == [(3, "duplicate_row")]


# --------------------------------------------------------------------------- signals


def test_signals_log_with_extra_columns_and_a_multi_line_reason():
    parsed = read_csv(FIXTURES / "signals_log.csv")
    assert parsed.layout.kind is CsvKind.SIGNALS
    assert list(parsed.good.columns) == list(SIGNAL_COLUMNS)
    assert reasons(parsed) == [(5, "bad_number")]
    first, second = parsed.good.to_dict("records")
    assert first["trade_date"] == dt.date(2026, 2, 11)
    assert (first["market"], first["ticker"], first["status"]) == ("KOSPI", "068270", "OPEN")
    assert (first["score"], first["entry_price"]) == (71.0, 243500.0)
    assert first["strategy"] is None
    assert first["grade"] is None
    assert first["reason"] is None
    assert first["extra"] == {
        "name": "가나다",
        "contraction_ratio": "1.44",
        "ai_reason": "첫 줄\n둘째 줄",
    }
    assert second["ticker"] == "009830"
    assert second["extra"]["ai_reason"] is None
    assert set(parsed.layout.missing_optional) == {"strategy", "grade", "reason"}


def test_signals_canonical_korean_columns_and_duplicates_per_strategy(tmp_path: Path):
    text = (
        "날짜,종목코드,시장,전략,점수,등급,진입가,상태,사유,메모\n"
        '2024-01-02,5930,코스피,vcp,81.5,A,"71,000",OPEN,돌파,m1\n'
        "2024-01-02,5930,코스피,closing_bet,60,B,71000,OPEN,,m2\n"
        "2024-01-02,005930,KOSPI,vcp,90,S,71000,OPEN,,m3\n"
        "2024-01-03,5930,코스피,vcp,,,0,OPEN,,m4\n"
        "2024-01-04,5930,코스피,vcp,,,,,,\n"
    )
    parsed = read_csv(write(tmp_path, text))
    assert reasons(parsed) == [(4, "duplicate_row"), (5, "non_positive_price")]
    good = parsed.good
    assert list(good["strategy"]) == ["vcp", "closing_bet", "vcp"]
    assert list(good["grade"]) == ["A", "B", None]
    assert good["entry_price"].tolist()[:2] == [71000.0, 71000.0]
    assert pd.isna(good["entry_price"].iloc[2])
    assert pd.isna(good["score"].iloc[2])
    assert list(good["reason"]) == ["돌파", None, None]
    assert [e["메모"] for e in good["extra"]] == ["m1", "m2", None]


# --------------------------------------------------------------------------- stocks


def test_stock_rows_blank_name_bad_status_and_duplicates(tmp_path: Path):
    text = (
        "ticker,name,market,listing_status,currency\n"
        "5930,삼성전자,KOSPI,상장,\n"
        "660,,KOSPI,,\n"
        "005930,중복,KOSPI,,\n"
        "035720,카카오,KOSDAQ,거래정지,krw\n"
        "000001,이상,KOSPI,unknown,\n"
        "AAPL,Apple,US,,\n"
        "000002,통화,KOSPI,,WON1\n"
    )
    parsed = read_csv(write(tmp_path, text))
    assert reasons(parsed) == [
        (3, "missing_value"),
        (4, "duplicate_row"),
        (6, "bad_value"),
        (8, "bad_value"),
    ]
    good = parsed.good
    assert list(good["ticker"]) == ["005930", "035720", "AAPL"]
    assert list(good["listing_status"]) == ["listed", "suspended", "listed"]
    assert list(good["currency"]) == ["KRW", "KRW", "USD"]


# --------------------------------------------------------------------------- invariants


def test_every_row_is_accounted_for_with_random_chunk_sizes(tmp_path: Path):
    path = write(tmp_path, MALFORMED * 3)  # repeated headers become wrong rows too
    whole = read_csv(path)
    assert_accounted(whole)
    assert whole.rows == 16 * 3 + 2
    for chunk_rows in (1, 4, 5, 13):
        chunks = list(iter_chunks(path, chunk_rows=chunk_rows))
        assert [r for c in chunks for r in c.rejects] == whole.rejects
        assert sum(len(c.good) for c in chunks) == len(whole.good)


def test_inspect_csv_reports_layout_without_reading_rows(tmp_path: Path):
    layout = inspect_csv(FIXTURES / "daily_prices_ko.csv")
    assert layout.columns["close"] == 7
    assert layout.header_of("close") == "종가"
    assert layout.missing_optional == ()


def test_empty_results_have_the_canonical_columns(tmp_path: Path):
    for kind, header, columns in [
        (CsvKind.DAILY_PRICES, ENGLISH_DAILY.split("\n", 1)[0], DAILY_CANDLE_COLUMNS),
        (CsvKind.INSTITUTIONAL_TREND, "date,ticker,market,외국인,기관", INVESTOR_FLOW_COLUMNS),
        (CsvKind.STOCKS, "ticker,name,market", STOCK_COLUMNS),
        (CsvKind.SIGNALS, "date,ticker,market,score", SIGNAL_COLUMNS),
    ]:
        parsed = read_csv(write(tmp_path, header + "\n"), kind)
        assert parsed.rows == 0
        assert parsed.rejects == []
        assert list(parsed.good.columns) == list(columns)
