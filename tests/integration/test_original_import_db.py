"""``quantbeat import original`` into the real PostgreSQL test database: the hand-made folder
of the original system's files (tests/fixtures/original) lands with its values, every file
reconciles, a dry run writes nothing but reports what a real run does, a re-import changes
nothing, and the CLI prints the same."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from db.engine import get_engine
from db.models import (
    AiAnalysis,
    DailyCandle,
    ImportRun,
    InstitutionalTrendSnapshot,
    Instrument,
    InvestorFlow,
    Signal,
)
from quant.migration.original import OriginalFile
from quantbeat.cli.importer import import_app
from quantbeat.services.original_import import OriginalImportReport, import_original

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "original"

#: file → (read, stored, rejected) of a first import into an empty database.
EXPECTED = {
    "korean_stocks_list.csv": (6, 5, 1),
    "daily_prices.csv": (11, 6, 5),
    "all_institutional_trend_data.csv": (7, 3, 4),
    "signals_log.csv": (9, 4, 5),
    "jongga_v2_results_20250106.json": (7, 3, 4),
    "kr_ai_analysis.json": (6, 2, 4),
    "kr_ai_analysis_20250106.json": (6, 2, 4),  # history/: the same day again
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(FIXTURES, target)
    return target


def counts(database: str) -> dict[str, int]:
    with Session(get_engine(database)) as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (
                Instrument,
                DailyCandle,
                InvestorFlow,
                InstitutionalTrendSnapshot,
                Signal,
                AiAnalysis,
            )
        }


def summary(report: OriginalImportReport) -> dict[str, tuple[int, int, int, int, int]]:
    return {
        f.path.name: (f.rows_read, f.inserted, f.updated, f.unchanged, f.rejected)
        for f in report.files
    }


def test_folder_import_dry_run_and_reimport(clean_db: str, folder: Path):
    dry = import_original(folder, dry_run=True, database_url=clean_db)
    assert dry.reconciles
    assert counts(clean_db) == dict.fromkeys(counts(clean_db), 0)  # nothing written

    first = import_original(folder, database_url=clean_db)
    assert first.reconciles
    for name, (read, kept, rejected) in EXPECTED.items():
        report = summary(first)[name]
        assert report[0] == read, name
        assert report[4] == rejected, name
        assert report[1] + report[2] + report[3] == kept, name
    # The history copy of the day's AI file is the same analyses: already stored.
    assert summary(first)["kr_ai_analysis_20250106.json"][1:4] == (0, 0, 2)
    # A dry run reports what the real run then did, except for the history copy of the AI
    # file: in the dry run its day's analyses had been rolled back, so they count as new.
    assert summary(dry) == summary(first) | {"kr_ai_analysis_20250106.json": (6, 2, 0, 0, 4)}
    stored = counts(clean_db)
    assert stored == {
        "instruments": 5,
        "daily_candles": 6,
        "investor_flows": 0,  # snapshots are not daily flows
        "institutional_trend_snapshots": 3,
        "signals": 4 + 3,
        "ai_analyses": 2 + 1,  # kr_ai analyses + the jongga LLM analysis
    }

    again = import_original(folder, database_url=clean_db)
    assert again.reconciles
    for f in again.files:
        assert (f.inserted, f.updated) == (0, 0), f.path.name
    assert counts(clean_db) == stored

    with Session(get_engine(clean_db)) as session:
        runs = session.scalars(select(ImportRun).order_by(ImportRun.id)).all()
        assert len(runs) == 3 * len(EXPECTED)
        assert all(r.status == "succeeded" for r in runs)
        assert all(r.rows_read == r.inserted + r.updated + r.unchanged + r.rejected for r in runs)
        assert sum(r.dry_run for r in runs) == len(EXPECTED)
        assert {r.kind for r in runs} >= {"original_signals_log", "original_jongga_v2"}


def test_stored_values(clean_db: str, folder: Path):
    import_original(folder, database_url=clean_db)
    with Session(get_engine(clean_db)) as session:
        # daily_prices.csv: close from current_price, traded value unknown (NULL, never 0).
        bars = session.execute(
            select(Instrument.ticker, DailyCandle.trade_date, DailyCandle.close,
                   DailyCandle.traded_value)
            .join(Instrument).order_by(Instrument.ticker, DailyCandle.trade_date)
        ).all()  # fmt: skip
        assert [(t, d, c) for t, d, c, _ in bars][:2] == [
            ("000660", dt.date(2025, 1, 2), 173900.0),
            ("000660", dt.date(2025, 1, 3), 176000.0),
        ]
        assert all(v is None for *_, v in bars)
        # signals_log.csv → vcp signals with the original's entry price and status.
        vcp = session.execute(
            select(Instrument.ticker, Signal.trade_date, Signal.entry_price, Signal.status,
                   Signal.source, Signal.inputs)
            .join(Instrument).where(Signal.strategy == "vcp")
            .order_by(Signal.trade_date, Instrument.ticker)
        ).all()  # fmt: skip
        assert [(t, d, e, s) for t, d, e, s, _, _ in vcp] == [
            ("005930", dt.date(2025, 1, 2), 53400.0, "CLOSED"),
            ("000660", dt.date(2025, 1, 3), 176000.0, "OPEN"),
            ("035720", dt.date(2025, 1, 3), 37900.0, "OPEN"),
            ("005930", dt.date(2025, 1, 6), 55900.0, "OPEN"),
        ]
        assert {s for *_, s, _ in vcp} == {"original_signals_log"}
        assert vcp[0][5]["exit_price"] == 55900.0
        # jongga_v2 → closing_bet signals with their grades, and the LLM's analysis.
        bets = session.execute(
            select(Instrument.market, Instrument.ticker, Signal.grade, Signal.score)
            .join(Instrument).where(Signal.strategy == "closing_bet")
            .order_by(Instrument.ticker)
        ).all()  # fmt: skip
        assert bets == [
            ("KOSPI", "000660", "A", 9.0),
            ("KOSPI", "005930", "S", 11.0),
            ("KOSDAQ", "247540", "B", 8.0),
        ]
        # trend file → dated snapshots (unknown windows NULL).
        snaps = session.execute(
            select(Instrument.ticker, InstitutionalTrendSnapshot.scrape_date,
                   InstitutionalTrendSnapshot.foreign_net_5d,
                   InstitutionalTrendSnapshot.foreign_net_60d)
            .join(Instrument).order_by(Instrument.ticker)
        ).all()  # fmt: skip
        assert snaps == [
            ("000660", dt.date(2025, 1, 6), 90000, 1500000),
            ("005930", dt.date(2025, 1, 6), 120000, -2000000),
            ("091990", dt.date(2025, 1, 6), None, 200),
        ]
        analyses = session.execute(
            select(AiAnalysis.model, AiAnalysis.analyzer, AiAnalysis.recommendation,
                   AiAnalysis.confidence, AiAnalysis.strategy)
            .order_by(AiAnalysis.model)
        ).all()  # fmt: skip
        assert analyses == [
            ("original-fallback", "offline", "HOLD", 0.5, "vcp"),
            ("original-gemini+openai", "gemini", "BUY", 0.75, "vcp"),
            ("original-jongga-v2-llm", "original", None, None, "closing_bet"),
        ]


def test_reject_files_name_line_reason_and_value(clean_db: str, folder: Path):
    report = import_original(folder, database_url=clean_db)
    by_name = {f.path.name: f for f in report.files}
    signals = by_name["signals_log.csv"]
    assert signals.rejects_by_reason == {
        "bad_number": 1,
        "bad_value": 1,
        "duplicate_row": 1,
        "non_positive_price": 1,
        "unknown_instrument": 1,
    }
    with signals.reject_file.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["line"], r["reason"]) for r in rows] == [
        ("5", "non_positive_price"),
        ("6", "bad_value"),
        ("8", "duplicate_row"),
        ("9", "bad_number"),
        ("10", "unknown_instrument"),
    ]
    assert "signals_log.csv line 10" in rows[-1]["detail"]
    assert "999999" in rows[-1]["detail"]
    assert rows[-1]["entry_price"] == "1000.0"  # the row as read
    prices = by_name["daily_prices.csv"]
    assert any("traded_value is stored as NULL" in n for n in prices.notes)


def test_only_and_single_file(clean_db: str, folder: Path):
    report = import_original(
        folder, only=[OriginalFile.STOCKS_LIST, "signals_log"], database_url=clean_db
    )
    assert [f.kind for f in report.files] == [OriginalFile.STOCKS_LIST, OriginalFile.SIGNALS_LOG]
    single = import_original(folder / "signals_log.csv", database_url=clean_db)
    assert [(f.inserted, f.unchanged, f.rejected) for f in single.files] == [(0, 4, 5)]


def test_cli_prints_the_reconciliation(clean_db: str, folder: Path):
    result = CliRunner().invoke(
        import_app, ["original", str(folder), "--dry-run"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.output
    assert "signals_log.csv" in result.output
    assert "MISMATCH" not in result.output
    assert counts(clean_db)["signals"] == 0
