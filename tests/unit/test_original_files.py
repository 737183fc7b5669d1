"""The original system's files (hand-made fixtures in tests/fixtures/original) parse row by row:
every row is accepted or rejected with a reason naming the file, the line and the value."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from quant.errors import ValidationError
from quant.migration.csv_import import TRADED_VALUE_UNKNOWN_NOTE, CsvKind, read_csv
from quant.migration.original import (
    OriginalFile,
    find_original_files,
    original_kind,
    parse_original,
    read_ai_analysis,
    read_institutional_trend,
    read_jongga_v2,
    read_signals_log,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "original"


def reasons(parsed: object) -> list[tuple[int, str]]:
    return [(r.line, r.reason) for r in parsed.rejects]  # type: ignore[attr-defined]


def test_files_are_found_by_the_original_names_in_import_order():
    found = [(k.value, p.name) for k, p in find_original_files(FIXTURES)]
    assert found == [
        ("stocks_list", "korean_stocks_list.csv"),
        ("daily_prices", "daily_prices.csv"),
        ("institutional_trend", "all_institutional_trend_data.csv"),
        ("signals_log", "signals_log.csv"),
        ("jongga_v2", "jongga_v2_results_20250106.json"),
        ("ai_analysis", "kr_ai_analysis.json"),
        ("ai_analysis", "kr_ai_analysis_20250106.json"),  # history/
    ]
    assert original_kind("x/jongga_v2_results_2025010.json") is None
    assert original_kind("daily_prices.csv.rejects.csv") is None


def test_signals_log_rows():
    parsed = read_signals_log(FIXTURES / "signals_log.csv")
    assert parsed.rows == 9
    assert parsed.reconciles
    assert reasons(parsed) == [
        (5, "non_positive_price"),
        (6, "bad_value"),
        (8, "duplicate_row"),
        (9, "bad_number"),
    ]
    details = {r.line: r.detail for r in parsed.rejects}
    assert "signals_log.csv line 5: entry_price: '0.0'" in details[5]
    assert "'PENDING'" in details[6]
    assert "line 2" in details[8]
    assert "foreign_5d: 'lots'" in details[9]
    first = parsed.signals[0]
    assert (first.trade_date, first.ticker, first.market) == (dt.date(2025, 1, 2), "005930", None)
    assert (first.strategy, first.status, first.entry_price, first.score) == (
        "vcp",
        "CLOSED",
        53400.0,
        63.2,
    )
    assert first.inputs["exit_price"] == 55900.0
    assert first.inputs["exit_date"] == "2025-01-07"
    assert first.inputs["foreign_5d_shares"] == 120000
    assert parsed.signals[1].inputs["exit_price"] is None  # OPEN: no exit yet, not 0
    assert [s.ticker for s in parsed.signals] == ["005930", "005930", "000660", "035720", "999999"]


def test_institutional_trend_rows_are_dated_snapshots():
    parsed = read_institutional_trend(FIXTURES / "all_institutional_trend_data.csv")
    assert parsed.rows == 7
    assert parsed.reconciles
    assert reasons(parsed) == [(4, "no_data"), (5, "non_integer"), (7, "duplicate_row"),
                               (8, "bad_date")]  # fmt: skip
    assert "fallback_estimation" in parsed.rejects[0].detail
    assert "institutional_net_buy_60d: '12000.5'" in parsed.rejects[1].detail
    samsung = parsed.snapshots[0]
    assert (samsung.ticker, samsung.scrape_date) == ("005930", dt.date(2025, 1, 6))
    assert samsung.foreign_net == {5: 120000, 10: 400000, 20: 800000, 60: -2000000}
    assert samsung.institution_net[60] == 3500000
    assert samsung.volume[20] == 210000000
    assert samsung.supply_demand_index == 63.2
    assert samsung.details["foreign_ratio_20d"] == 0.38
    assert samsung.details["supply_demand_stage"] == "약매집"
    partial = parsed.snapshots[2]  # blank windows stay unknown, never 0
    assert partial.ticker == "091990"
    assert partial.scrape_date == dt.date(2025, 1, 6)
    assert partial.foreign_net == {20: 100, 60: 200}


def test_jongga_v2_rows_become_closing_bet_signals_and_llm_analyses():
    parsed = read_jongga_v2(FIXTURES / "jongga_v2_results_20250106.json")
    assert parsed.rows == 7
    assert parsed.reconciles
    assert [r.reason for r in parsed.rejects] == [
        "bad_value",
        "non_positive_price",
        "missing_key",
        "bad_market",
    ]
    assert all(r.line > 0 for r in parsed.rejects)  # the element's line in the file
    assert "grade 'D'" in parsed.rejects[0].detail
    assert "signals[2]" in parsed.rejects[0].detail
    top = parsed.signals[0]
    assert (top.ticker, top.market, top.grade, top.score, top.entry_price, top.status) == (
        "005930",
        "KOSPI",
        "S",
        11.0,
        55900.0,
        "PENDING",
    )
    assert top.strategy == "closing_bet"
    assert top.inputs["trading_value"] == 1006200000000
    assert top.inputs["stop_price"] == 54223
    no_date = parsed.signals[2]  # no signal_date: the file's date
    assert (no_date.ticker, no_date.trade_date) == ("247540", dt.date(2025, 1, 6))
    assert len(parsed.analyses) == 1  # only the S-grade signal has an LLM reason / news
    analysis = parsed.analyses[0]
    assert analysis.ticker == "005930"
    assert analysis.news_count == 1
    assert analysis.catalyst is not None
    assert "HBM" in analysis.catalyst


def test_ai_analysis_rows():
    parsed = read_ai_analysis(FIXTURES / "kr_ai_analysis.json")
    assert parsed.rows == 6
    assert parsed.reconciles
    assert [r.reason for r in parsed.rejects] == ["bad_value", "no_data", "bad_value"]
    assert "'STRONG BUY'" in parsed.rejects[0].detail
    assert "150" in parsed.rejects[2].detail
    gemini, fallback, unknown = parsed.analyses
    assert (gemini.model, gemini.analyzer, gemini.recommendation, gemini.confidence) == (
        "original-gemini+openai",
        "gemini",
        "BUY",
        0.75,
    )
    assert gemini.details["gpt_recommendation"]["action"] == "HOLD"
    assert gemini.trade_date == dt.date(2025, 1, 6)
    assert gemini.strategy == "vcp"
    assert (fallback.analyzer, fallback.recommendation) == ("offline", "HOLD")
    assert unknown.ticker == "999999"


def test_whole_file_problems_raise_naming_the_file(tmp_path: Path):
    bad = tmp_path / "signals_log.csv"
    bad.write_text("signal_date,ticker,score\n2025-01-02,005930,1\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"signals_log.csv.*entry_price, status"):
        read_signals_log(bad)
    broken = tmp_path / "jongga_v2_results_20250106.json"
    broken.write_text('{"signals": [', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"jongga_v2_results_20250106\.json: line 1"):
        read_jongga_v2(broken)
    undated = tmp_path / "kr_ai_analysis.json"
    undated.write_text('{"signals": []}', encoding="utf-8")
    with pytest.raises(ValidationError, match="no date"):
        read_ai_analysis(undated)
    with pytest.raises(ValidationError, match="no original-file parser"):
        parse_original(FIXTURES / "daily_prices.csv")


def test_ai_file_date_falls_back_to_its_name(tmp_path: Path):
    dated = tmp_path / "kr_ai_analysis_20250107.json"
    dated.write_text(
        '{"signals": [{"ticker": "5930", "analysis_source": "openai",'
        ' "gpt_recommendation": {"action": "sell", "confidence": 40, "source": "openai"}}]}',
        encoding="utf-8",
    )
    parsed = parse_original(dated)
    assert parsed.kind is OriginalFile.AI_ANALYSIS
    (only,) = parsed.analyses
    assert (only.trade_date, only.ticker, only.recommendation, only.analyzer) == (
        dt.date(2025, 1, 7),
        "005930",
        "SELL",
        "openai",
    )


def test_original_daily_prices_read_current_price_as_close_and_traded_value_unknown():
    stocks = read_csv(FIXTURES / "korean_stocks_list.csv", CsvKind.STOCKS)
    assert len(stocks.good) == 5
    assert [r.reason for r in stocks.rejects] == ["bad_ticker"]
    markets = dict(zip(stocks.good["ticker"], stocks.good["market"], strict=True))
    parsed = read_csv(FIXTURES / "daily_prices.csv", CsvKind.DAILY_PRICES, ticker_markets=markets)
    assert TRADED_VALUE_UNKNOWN_NOTE in parsed.layout.notes
    assert parsed.layout.header_of("close") == "current_price"
    assert sorted(r.reason for r in parsed.rejects) == [
        "bad_number",
        "duplicate_row",
        "high_below_low",
        "missing_market",
        "non_positive_price",
    ]
    assert len(parsed.good) == 6
    assert np.isnan(parsed.good["traded_value"].to_numpy()).all()  # unknown, never 0
    first = parsed.good.iloc[0]
    assert (first["ticker"], first["close"], first["volume"]) == ("005930", 53400.0, 12000000.0)
