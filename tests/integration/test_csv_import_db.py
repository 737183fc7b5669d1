"""``quantbeat import csv`` into the real PostgreSQL test database: every good row lands with
its values, every bad one is in the reject file with its line and reason, the counts reconcile
and are stored, re-runs add nothing, dry runs write nothing.

The database starts empty, so most tests import as a migration does with
``--create-instruments`` (:func:`import_csv` here); without it a row naming an unknown
instrument is rejected (``test_unknown_instruments_are_rejected_unless_created_by_request``)."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, func, literal_column, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from db import migrate, store
from db.engine import create_engine_for, get_engine
from db.models import DailyCandle, ImportRun, Instrument, InvestorFlow, Signal
from quant.errors import ConfigError, ValidationError
from quant.migration.csv_import import CsvKind
from quantbeat.cli.importer import import_app
from quantbeat.services import importer
from quantbeat.services.importer import (
    ImportReport,
    ReconciliationError,
    default_reject_file,
)
from quantbeat.services.importer import import_csv as import_csv_as_is

pytestmark = pytest.mark.integration


def import_csv(path: str | Path, **options: Any) -> ImportReport:
    """:func:`quantbeat.services.importer.import_csv`, creating unknown instruments."""
    return import_csv_as_is(path, create_instruments=True, **options)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PARSER_SAMPLES = FIXTURES / "csv"
SAMPLES = FIXTURES / "csv_import"

#: The good rows of malformed_daily_prices.csv, as they must be stored (by ticker and date).
MALFORMED_GOOD = [
    ("KOSPI", "0001A0", dt.date(2024, 1, 10), 1000.0, 1100.0, 990.0, 1050.0, 5000.0, 5100000.0),
    ("KOSPI", "005930", dt.date(2024, 1, 2), 100.0, 110.0, 95.0, 105.0, 1000.0, 102000.0),
    ("KOSPI", "005930", dt.date(2024, 1, 3), 105.0, 112.0, 101.0, 110.0, 1200.0, 130000.0),
    ("KOSDAQ", "035720", dt.date(2024, 1, 2), 50.5, 55.0, 49.0, 54.0, 300.0, 15900.0),
    ("KOSDAQ", "035720", dt.date(2024, 1, 3), 54.0, 56.0, 52.0, 55.0, 310.0, 17050.0),
]
#: (line, reason) of every bad row of malformed_daily_prices.csv.
MALFORMED_REJECTS = [
    (4, "bad_date"),
    (5, "non_positive_price"),
    (6, "bad_number"),
    (7, "duplicate_row"),
    (11, "high_below_low"),
    (12, "missing_value"),
    (13, "negative_volume"),
    (14, "bad_market"),
    (16, "bad_date"),
    (17, "non_finite"),
    (18, "wrong_field_count"),
    (19, "missing_key"),
]


def copy_sample(tmp_path: Path, folder: Path, name: str) -> Path:
    """A sample copied to ``tmp_path`` (the reject file is written beside it)."""
    target = tmp_path / name
    shutil.copyfile(folder / name, target)
    return target


def read_rejects(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def stored_candles(url: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            select(
                Instrument.market,
                Instrument.ticker,
                DailyCandle.trade_date,
                DailyCandle.open,
                DailyCandle.high,
                DailyCandle.low,
                DailyCandle.close,
                DailyCandle.volume,
                DailyCandle.traded_value,
            )
            .join(Instrument, Instrument.id == DailyCandle.instrument_id)
            .order_by(Instrument.ticker, DailyCandle.trade_date)
        ).all()
    return [tuple(r) for r in rows]


def candle_versions(url: str) -> list[tuple[Any, ...]]:
    """(id, updated_at, xmin) of every candle: moves when a row is rewritten."""
    with get_engine(url).connect() as conn:
        xmin = literal_column("xmin::text", type_=String)
        rows = conn.execute(
            select(DailyCandle.id, DailyCandle.updated_at, xmin).order_by(DailyCandle.id)
        ).all()
    return [tuple(r) for r in rows]


def count(url: str, model: type[Any]) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def instrument_names(url: str) -> dict[str, str]:
    with get_engine(url).connect() as conn:
        return {t: n for t, n in conn.execute(select(Instrument.ticker, Instrument.name))}


def run_row(url: str, run_id: int) -> ImportRun:
    with Session(get_engine(url)) as session:
        run = session.get(ImportRun, run_id)
    assert run is not None
    return run


def all_runs(url: str) -> list[ImportRun]:
    with Session(get_engine(url)) as session:
        return list(session.scalars(select(ImportRun).order_by(ImportRun.id)))


def totals(report: ImportReport) -> tuple[int, int, int, int, int]:
    return (report.rows_read, report.inserted, report.updated, report.unchanged, report.rejected)


# --------------------------------------------------------------------------- daily prices


def test_malformed_prices_keep_every_good_row_and_reject_every_bad_one(
    clean_db: str, tmp_path: Path
):
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")
    # Chunks of 4 rows: the duplicate (line 7) sits in another chunk than its original.
    report = import_csv(path, chunk_rows=4)

    assert totals(report) == (17, 5, 0, 0, 12)
    assert report.reconciles
    assert report.blank_lines == 1
    assert report.instruments_created == 3
    assert stored_candles(clean_db) == MALFORMED_GOOD

    rows = read_rejects(report.reject_file)
    assert report.reject_file == tmp_path / "malformed_daily_prices.csv.rejects.csv"
    assert rows[0] == [
        "line",
        "reason",
        "detail",
        "date",
        "ticker",
        "market",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "traded_value",
    ]
    assert [(int(r[0]), r[1]) for r in rows[1:]] == MALFORMED_REJECTS
    by_line = {int(r[0]): r for r in rows[1:]}
    # The raw row is kept as written, after line, reason and detail.
    raw = ["2024-01-04", "005930", "KOSPI", "-5", "112", "101", "110", "1200", "130000"]
    assert by_line[5][3:] == raw
    assert "'2024-13-01'" in by_line[4][2]
    assert "as line 2" in by_line[7][2]
    assert by_line[18][-1] == "surplus"  # the surplus field follows the row's columns
    assert report.rejects_by_reason == {
        "bad_date": 2,
        "bad_market": 1,
        "bad_number": 1,
        "duplicate_row": 1,
        "high_below_low": 1,
        "missing_key": 1,
        "missing_value": 1,
        "negative_volume": 1,
        "non_finite": 1,
        "non_positive_price": 1,
        "wrong_field_count": 1,
    }

    run = run_row(clean_db, report.run_id)
    assert (run.status, run.kind, run.encoding, run.dry_run) == (
        "succeeded",
        "daily_prices",
        "utf-8",
        False,
    )
    assert (run.rows_read, run.inserted, run.updated, run.unchanged, run.rejected) == (
        17,
        5,
        0,
        0,
        12,
    )
    assert run.blank_lines == 1
    assert run.reject_file == str(report.reject_file)
    assert run.file_sha256 is not None
    assert len(run.file_sha256) == 64
    assert run.finished_at is not None
    assert run.error is None
    assert run.notes["rejects_by_reason"]["bad_date"] == 2
    assert run.notes["chunks"] == 5


def test_rerun_imports_nothing_twice(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")
    first = import_csv(path)
    versions = candle_versions(clean_db)
    instruments = count(clean_db, Instrument)

    second = import_csv(path, chunk_rows=3)

    assert totals(first) == (17, 5, 0, 0, 12)
    assert totals(second) == (17, 0, 0, 5, 12)
    assert second.instruments_created == 0
    assert candle_versions(clean_db) == versions  # not one row rewritten
    assert count(clean_db, Instrument) == instruments
    assert stored_candles(clean_db) == MALFORMED_GOOD
    runs = all_runs(clean_db)
    assert [(r.id, r.status, r.inserted, r.unchanged) for r in runs] == [
        (first.run_id, "succeeded", 5, 0),
        (second.run_id, "succeeded", 0, 5),
    ]


def test_a_changed_value_counts_as_updated(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")
    import_csv(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            "20240110,0001A0,KOSPI,1000,1100,990,1050,", "20240110,0001A0,KOSPI,1000,1100,990,1060,"
        ),
        encoding="utf-8",
    )

    report = import_csv(path)

    assert totals(report) == (17, 0, 1, 4, 12)
    assert stored_candles(clean_db)[0][6] == 1060.0


def test_korean_parser_sample_lands_with_its_values(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, PARSER_SAMPLES, "daily_prices_ko.csv")
    report = import_csv(path)
    assert (report.kind, report.encoding) == (CsvKind.DAILY_PRICES, "utf-8-sig")
    assert totals(report) == (3, 3, 0, 0, 0)
    assert stored_candles(clean_db) == [
        ("KOSPI", "005930", dt.date(2024, 1, 2), 100.0, 110.0, 95.0, 105.0, 1000.0, 102000.0),
        ("KOSPI", "005930", dt.date(2024, 1, 3), 105.0, 112.0, 101.0, 110.0, 1200.0, 130000.0),
        ("KOSDAQ", "035720", dt.date(2024, 1, 2), 50.0, 55.0, 49.0, 54.0, 300.0, 15900.0),
    ]
    assert read_rejects(report.reject_file)[1:] == []  # header only


def test_missing_columns_fail_cleanly(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "missing_columns_daily_prices.csv")

    with pytest.raises(ValidationError) as caught:
        import_csv(path, kind="daily_prices")

    message = str(caught.value)
    assert "missing required column(s)" in message
    for column in ("high", "low"):
        assert f"{column} (one of:" in message
    assert "Optional: market, traded_value" in message  # unknown traded value: stored NULL
    assert count(clean_db, DailyCandle) == 0
    assert count(clean_db, Instrument) == 0
    assert not (tmp_path / "missing_columns_daily_prices.csv.rejects.csv").exists()
    [run] = all_runs(clean_db)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.startswith("ValidationError: ")
    assert "high (one of:" in run.error
    assert run.finished_at is not None
    assert (run.rows_read, run.inserted, run.rejected) == (0, 0, 0)


def test_dry_run_writes_nothing_but_reports_the_same_counts(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")

    dry = import_csv(path, dry_run=True, chunk_rows=4)

    assert count(clean_db, DailyCandle) == 0
    assert count(clean_db, Instrument) == 0
    assert dry.dry_run
    assert [int(r[0]) for r in read_rejects(dry.reject_file)[1:]] == [
        line for line, _ in MALFORMED_REJECTS
    ]
    real = import_csv(path, chunk_rows=4)
    assert totals(dry) == totals(real) == (17, 5, 0, 0, 12)
    assert dry.instruments_created == real.instruments_created == 3
    again = import_csv(path, dry_run=True)
    assert totals(again) == (17, 0, 0, 5, 12)
    runs = all_runs(clean_db)
    assert [(r.dry_run, r.status, r.inserted, r.unchanged) for r in runs] == [
        (True, "succeeded", 5, 0),
        (False, "succeeded", 5, 0),
        (True, "succeeded", 0, 5),
    ]


def test_an_error_midway_keeps_committed_chunks_and_a_rerun_completes(
    clean_db: str, tmp_path: Path
):
    good = [
        "2024-01-02,005930,KOSPI,100,110,95,105,1000,102000",
        "2024-01-03,005930,KOSPI,105,112,101,110,1200,130000",
        "2024-01-04,005930,KOSPI,bad,112,101,110,1200,130000",
        "2024-01-05,005930,KOSPI,110,115,108,112,900,100000",
    ]
    header = "date,ticker,market,open,high,low,close,volume,traded_value"
    runaway = '2024-01-08,005930,KOSPI,"' + "x" * 200_000 + "\n"
    path = tmp_path / "prices.csv"
    path.write_text("\n".join([header, *good, runaway]), encoding="utf-8")

    with pytest.raises(ValidationError, match="line 6: unreadable CSV"):
        import_csv(path, chunk_rows=2)

    # The two complete chunks (lines 2-5) are committed; their reject is on file.
    assert [c[2] for c in stored_candles(clean_db)] == [
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 3),
        dt.date(2024, 1, 5),
    ]
    assert [(r[0], r[1]) for r in read_rejects(tmp_path / "prices.csv.rejects.csv")[1:]] == [
        ("4", "bad_number")
    ]
    [failed] = all_runs(clean_db)
    assert failed.status == "failed"
    assert "unreadable CSV" in (failed.error or "")
    assert (failed.rows_read, failed.inserted, failed.rejected) == (4, 3, 1)

    path.write_text(
        "\n".join([header, *good, "2024-01-08,005930,KOSPI,112,113,100,101,800,90000\n"]),
        encoding="utf-8",
    )
    rerun = import_csv(path, chunk_rows=2)
    assert totals(rerun) == (5, 1, 0, 3, 1)
    assert count(clean_db, DailyCandle) == 4


def test_a_reconciliation_mismatch_is_raised_and_rolled_back(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real_upsert = store.upsert_daily_candles

    def loses_a_row(*args: Any, **kwargs: Any) -> Any:
        counts = real_upsert(*args, **kwargs)
        return type(counts)(counts.inserted - 1, counts.updated, counts.unchanged)

    monkeypatch.setattr(importer, "upsert_daily_candles", loses_a_row)
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")

    with pytest.raises(ReconciliationError, match="17 rows read but 4 inserted"):
        import_csv(path)

    assert count(clean_db, DailyCandle) == 0
    [run] = all_runs(clean_db)
    assert run.status == "failed"
    assert "ReconciliationError" in (run.error or "")


def test_an_unmigrated_database_is_a_config_error(database: str, tmp_path: Path):
    name = "quantbeat_test_import_unmigrated"
    admin = create_engine_for(database.rsplit("/", 1)[0] + "/postgres")
    url = database.rsplit("/", 1)[0] + f"/{name}"
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        migrate.upgrade(url, "0002")
        with pytest.raises(ConfigError, match=r"no import_runs or signals table.*db upgrade"):
            import_csv(path, database_url=url)
        assert not default_reject_file(path).exists()
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------- other kinds


def test_stocks_list_upserts_instruments(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, PARSER_SAMPLES, "korean_stocks_list_cp949.csv")
    report = import_csv(path)
    assert (report.kind, report.encoding) == (CsvKind.STOCKS, "cp949")
    assert totals(report) == (4, 4, 0, 0, 0)
    with get_engine(clean_db).connect() as conn:
        rows = conn.execute(
            select(
                Instrument.market, Instrument.ticker, Instrument.name, Instrument.source
            ).order_by(Instrument.ticker)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("KOSPI", "0001A0", "신규상장", "csv_import"),
        ("KOSPI", "000660", "SK하이닉스", "csv_import"),
        ("KOSPI", "005930", "삼성전자", "csv_import"),
        ("KOSDAQ", "035720", "카카오", "csv_import"),
    ]
    assert totals(import_csv(path)) == (4, 0, 0, 4, 0)

    renamed = path.read_text(encoding="cp949").replace("신규상장", "새이름")
    path.write_text(renamed, encoding="cp949")
    assert totals(import_csv(path)) == (4, 0, 1, 3, 0)
    assert instrument_names(clean_db)["0001A0"] == "새이름"


def test_prices_use_names_from_a_stocks_file_and_leave_existing_instruments_alone(
    clean_db: str, tmp_path: Path
):
    stocks = copy_sample(tmp_path, PARSER_SAMPLES, "korean_stocks_list_cp949.csv")
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "date,ticker,open,high,low,close,volume,traded_value\n"
        "2024-01-02,5930,100,110,95,105,1000,102000\n"
        "2024-01-02,35720,50,55,49,54,300,15900\n"
        "2024-01-02,777777,10,11,9,10,5,50\n",
        encoding="utf-8",
    )
    # No market column: the stocks file gives 005930 → KOSPI and 035720 → KOSDAQ; the
    # unlisted 777777 takes the default market.
    report = import_csv(prices, stocks_file=stocks, default_market="KOSPI")
    assert totals(report) == (3, 3, 0, 0, 0)
    assert report.instruments_created == 3
    names = instrument_names(clean_db)
    assert names == {"005930": "삼성전자", "035720": "카카오", "777777": "777777"}
    assert [c[:2] for c in stored_candles(clean_db)] == [
        ("KOSPI", "005930"),
        ("KOSDAQ", "035720"),
        ("KOSPI", "777777"),
    ]
    # Now the stocks list itself: the instruments exist with the same values.
    assert totals(import_csv(stocks)) == (4, 2, 0, 2, 0)


def flows(url: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            select(
                Instrument.market,
                Instrument.ticker,
                InvestorFlow.trade_date,
                InvestorFlow.foreign_net_shares,
                InvestorFlow.institution_net_shares,
                InvestorFlow.individual_net_shares,
                InvestorFlow.foreign_net_krw,
                InvestorFlow.institution_net_krw,
                InvestorFlow.individual_net_krw,
                InvestorFlow.source,
            )
            .join(Instrument, Instrument.id == InvestorFlow.instrument_id)
            .order_by(Instrument.ticker, InvestorFlow.trade_date)
        ).all()
    return [tuple(r) for r in rows]


def test_investor_flows_in_both_units_then_a_one_unit_legacy_file(clean_db: str, tmp_path: Path):
    both = copy_sample(tmp_path, SAMPLES, "flows_both_units.csv")
    report = import_csv(both)
    assert totals(report) == (3, 3, 0, 0, 0)
    assert flows(clean_db) == [
        ("KOSPI", "000020", dt.date(2026, 1, 5), -4000, 250, 3750, -40_000_000, 2_500_000,
         37_500_000, "csv_import"),
        ("KOSPI", "000020", dt.date(2026, 1, 6), -9100, 120, 8980, -91_000_000, 1_200_000,
         89_800_000, "csv_import"),
        ("KOSDAQ", "035720", dt.date(2026, 1, 5), 1200, -40, -1160, 60_000_000, -2_000_000,
         -58_000_000, "csv_import"),
    ]  # fmt: skip
    assert totals(import_csv(both)) == (3, 0, 0, 3, 0)

    # The old system's file: shares of foreign and institution only, no market column.
    legacy = copy_sample(tmp_path, PARSER_SAMPLES, "all_institutional_trend_data.csv")
    stocks = copy_sample(tmp_path, PARSER_SAMPLES, "korean_stocks_list_cp949.csv")
    report = import_csv(legacy, default_market="KOSPI", stocks_file=stocks)

    # Line 2 completes the stored KOSPI 000020 flow of 2026-01-05: its shares change, its KRW
    # and individual figures stay. Line 4 (KOSDAQ 035720, 2026-01-05 per the stocks file)
    # matches the stored flow exactly. Lines 3 and 5 are bad rows.
    assert totals(report) == (4, 0, 1, 1, 2)
    assert [(int(r[0]), r[1]) for r in read_rejects(report.reject_file)[1:]] == [
        (3, "missing_value"),
        (5, "non_integer"),
    ]
    stored = flows(clean_db)
    assert stored[0][3:9] == (-5100, 300, 3750, -40_000_000, 2_500_000, 37_500_000)
    assert stored[2][3:9] == (1200, -40, -1160, 60_000_000, -2_000_000, -58_000_000)


def test_a_one_unit_flow_without_a_stored_row_is_stored_with_the_rest_unknown(
    clean_db: str, tmp_path: Path
):
    legacy = copy_sample(tmp_path, PARSER_SAMPLES, "all_institutional_trend_data.csv")
    report = import_csv(legacy, default_market="KOSPI")
    assert totals(report) == (4, 2, 0, 0, 2)
    assert report.rejects_by_reason == {"missing_value": 1, "non_integer": 1}
    rows = read_rejects(report.reject_file)
    assert [(int(r[0]), r[1]) for r in rows[1:]] == [(3, "missing_value"), (5, "non_integer")]
    stored = flows(clean_db)
    assert len(stored) == 2
    first = stored[0]
    # Shares of foreign and institution as the file gives them; everything else unknown.
    assert first[3:9] == (-5100, 300, None, None, None, None)
    assert count(clean_db, Instrument) == 2
    assert totals(import_csv(legacy, default_market="KOSPI")) == (4, 0, 0, 2, 2)  # idempotent


def signals(url: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            select(
                Signal.trade_date,
                Instrument.ticker,
                Signal.strategy,
                Signal.score,
                Signal.grade,
                Signal.entry_price,
                Signal.status,
                Signal.reasons,
                Signal.inputs,
                Signal.source,
            )
            .join(Instrument, Instrument.id == Signal.instrument_id)
            .order_by(Signal.trade_date, Instrument.ticker, Signal.strategy)
        ).all()
    return [tuple(r) for r in rows]


def test_signals_log_sample(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, PARSER_SAMPLES, "signals_log.csv")
    report = import_csv(path)
    assert totals(report) == (3, 2, 0, 0, 1)
    assert signals(clean_db) == [
        (dt.date(2026, 2, 11), "009830", "legacy", 68.0, None, 49650.0, "CLOSED", None,
         {"name": "라마바", "contraction_ratio": "2.3", "ai_reason": None}, "csv_import"),
        (dt.date(2026, 2, 11), "068270", "legacy", 71.0, None, 243500.0, "OPEN", None,
         {"name": "가나다", "contraction_ratio": "1.44", "ai_reason": "첫 줄\n둘째 줄"},
         "csv_import"),
    ]  # fmt: skip
    names = instrument_names(clean_db)
    assert names == {"009830": "라마바", "068270": "가나다"}  # from the file's name column
    assert [(int(r[0]), r[1]) for r in read_rejects(report.reject_file)[1:]] == [(5, "bad_number")]
    assert totals(import_csv(path)) == (3, 0, 0, 2, 1)


def test_signals_with_strategies_and_rejects_found_after_parsing(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "signals_strategies.csv")
    # Chunks of 2 rows, so rejects found after parsing are located across chunks and after a
    # record spanning two lines.
    report = import_csv(path, chunk_rows=2)

    assert totals(report) == (7, 4, 0, 0, 3)
    rows = read_rejects(report.reject_file)
    assert rows[0][:3] == ["line", "reason", "detail"]
    assert rows[0][3:] == [
        "signal_date",
        "ticker",
        "market",
        "strategy",
        "score",
        "grade",
        "entry_price",
        "status",
        "reason#2",  # the file's own "reason" column, renamed beside the reject reason
        "note",
    ]
    assert [(int(r[0]), r[1], r[-1]) for r in rows[1:]] == [
        (6, "duplicate_row", "fourth"),
        (7, "value_too_long", "fifth"),
        (8, "non_positive_price", "sixth"),
    ]
    assert "SUPERLONGGRADEOVER16" in rows[2][2]
    assert signals(clean_db) == [
        (dt.date(2026, 2, 11), "000660", "legacy", 55.0, "C", None, "CLOSED",
         ["no strategy in the log"], {"note": "third"}, "csv_import"),
        (dt.date(2026, 2, 11), "005930", "closing_bet", 64.0, "B", 71200.0, "OPEN", None,
         {"note": "second"}, "csv_import"),
        (dt.date(2026, 2, 11), "005930", "vcp", 82.5, "A", 71000.0, "OPEN",
         ["pivot breakout\non volume"], {"note": "first"}, "csv_import"),
        (dt.date(2026, 2, 12), "035720", "vcp", 61.0, "B", 50000.0, "OPEN", None,
         {"note": "seventh"}, "csv_import"),
    ]  # fmt: skip
    again = import_csv(path)
    assert totals(again) == (7, 0, 0, 4, 3)


# --------------------------------------------------------------------------- the command


def invoke(*args: str, create: bool = True) -> Any:
    extra = ["--create-instruments"] if create else []
    return CliRunner().invoke(import_app, [*args, *extra], env={"COLUMNS": "200"})


def test_import_csv_command_end_to_end(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")
    rejects = tmp_path / "out" / "rejects.csv"
    rejects.parent.mkdir()

    result = invoke("csv", str(path), "--rejects", str(rejects), "--chunk-rows", "4")

    assert result.exit_code == 0, result.output
    assert stored_candles(clean_db) == MALFORMED_GOOD
    assert [(int(r[0]), r[1]) for r in read_rejects(rejects)[1:]] == MALFORMED_REJECTS
    [run] = all_runs(clean_db)
    assert run.reject_file == str(rejects)
    assert "importing malformed_daily_prices.csv" in result.output  # the progress bar
    assert "19/19" in result.output  # physical lines done / total


def test_import_csv_command_prints_the_reconciliation(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "malformed_daily_prices.csv")
    invoke("csv", str(path))
    path.write_text(
        path.read_text(encoding="utf-8").replace(",1050,5000,5100000\n", ",1060,5000,5100000\n", 1),
        encoding="utf-8",
    )

    result = invoke("csv", str(path), "--dry-run")

    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    assert "quantbeat import csv — daily_prices (DRY RUN: nothing was written)" in lines
    assert "rows read 17" in lines
    assert "inserted 0 would be new" in lines
    assert "updated 1 would be changed" in lines
    assert "unchanged 4 already stored" in lines
    assert any(line.startswith("rejected 12 bad_date 2, bad_market 1,") for line in lines)
    assert "reconciliation ok 17 read = 0 + 1 + 4 + 12 (= 17)" in lines
    assert f"reject file {path}.rejects.csv" in lines
    run_id = all_runs(clean_db)[-1].id
    assert f"run id {run_id} import_runs" in lines
    assert stored_candles(clean_db)[0][6] == 1050.0  # the dry run changed nothing


def test_import_csv_command_refuses_a_file_with_missing_columns(clean_db: str, tmp_path: Path):
    path = copy_sample(tmp_path, SAMPLES, "missing_columns_daily_prices.csv")
    result = invoke("csv", str(path), "--kind", "daily_prices")
    assert isinstance(result.exception, ValidationError)
    assert "high (one of:" in str(result.exception)
    assert count(clean_db, DailyCandle) == 0
    assert [r.status for r in all_runs(clean_db)] == ["failed"]


def test_unknown_instruments_are_rejected_unless_created_by_request(clean_db: str, tmp_path: Path):
    """A price row naming an instrument the database does not have (a typo, a wrong market)
    is rejected, naming it; with --create-instruments it is created and listed."""
    path = tmp_path / "prices.csv"
    path.write_text(
        "market,ticker,date,open,high,low,close,volume,traded_value\n"
        "KOSPI,005930,2024-01-02,100,110,95,105,1000,102000\n"
        "KOSPI,999999,2024-01-02,10,11,9,10,100,1000\n"
        "KOSPI,999999,2024-01-03,10,11,9,10,100,1000\n",
        encoding="utf-8",
    )
    with Session(get_engine(clean_db)) as session, session.begin():
        session.add(Instrument(market="KOSPI", ticker="005930", name="Samsung", currency="KRW",
                               listing_status="listed", source="test"))  # fmt: skip

    report = import_csv_as_is(path)
    assert (report.rows_read, report.inserted, report.rejected) == (3, 1, 2)
    assert report.rejects_by_reason == {"unknown_instrument": 2}
    assert (report.instruments_created, report.created_instruments) == (0, ())
    rows = read_rejects(default_reject_file(path))[1:]
    assert [(int(r[0]), r[1]) for r in rows] == [
        (3, "unknown_instrument"),
        (4, "unknown_instrument"),
    ]
    assert "instrument KOSPI:999999 does not exist" in rows[0][2]
    assert "--create-instruments" in rows[0][2]
    assert count(clean_db, Instrument) == 1  # nothing invented

    result = invoke("csv", str(path), create=False)  # the CLI says the same
    assert result.exit_code == 0, result.output
    assert "unknown_instrument 2" in " ".join(result.output.split())
    assert count(clean_db, Instrument) == 1

    result = invoke("csv", str(path))  # --create-instruments
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    assert "instruments created 1 named by the file, not listed before: KOSPI:999999" in lines
    assert count(clean_db, Instrument) == 2
    assert all_runs(clean_db)[-1].notes["created_instruments"] == ["KOSPI:999999"]
