"""``quantbeat import csv`` without services: option checks (before any database work), what
the command hands to the importer, and the closing reconciliation table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from quant.errors import ValidationError
from quant.market.types import Market
from quant.migration.csv_import import CsvKind, FlowUnit
from quantbeat.cli import importer as cli_import
from quantbeat.cli.importer import import_app, print_report
from quantbeat.services import importer
from quantbeat.services.importer import ImportReport, default_reject_file, import_csv

PRICES = "date,ticker,market,open,high,low,close,volume,traded_value\n"


def report(**overrides: Any) -> ImportReport:
    values: dict[str, Any] = {
        "run_id": 42,
        "path": Path("/data/daily_prices.csv"),
        "kind": CsvKind.DAILY_PRICES,
        "encoding": "cp949",
        "dry_run": False,
        "rows_read": 1_234_567,
        "inserted": 1_000_000,
        "updated": 200_000,
        "unchanged": 34_000,
        "rejected": 567,
        "blank_lines": 3,
        "reject_file": Path("/data/daily_prices.csv.rejects.csv"),
        "rejects_by_reason": {"bad_date": 500, "duplicate_row": 67},
        "instruments_created": 12,
        "notes": ("column 'foreign' states no unit; read as shares",),
        "seconds": 12.5,
    }
    values.update(overrides)
    return ImportReport(**values)


def lines_of(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(import_app, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def never_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad options must be refused before the importer (and the database) is reached."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("import_csv was called despite a bad option")

    monkeypatch.setattr(cli_import, "import_csv", refuse)


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "daily_prices.csv"
    path.write_text(PRICES + "2024-01-02,005930,KOSPI,100,110,95,105,1000,102000\n")
    return path


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--kind", "prices", "--kind must be one of daily_prices, stocks"),
        ("--flow-unit", "lots", "--flow-unit must be one of shares, krw"),
        ("--market", "NASDAQ", "unknown market 'NASDAQ'"),
        ("--stocks-file", "/nonexistent/stocks.csv", "--stocks-file '/nonexistent/stocks.csv'"),
        ("--chunk-rows", "0", "--chunk-rows must be >= 1, got 0"),
    ],
)
def test_bad_options_are_validation_errors_naming_the_value(
    never_import: None, prices: Path, option: str, value: str, named: str
):
    result = invoke("csv", str(prices), option, value)
    assert isinstance(result.exception, ValidationError), result.output
    assert named in str(result.exception)


def test_a_missing_file_is_a_validation_error(never_import: None, tmp_path: Path):
    result = invoke("csv", str(tmp_path / "nope.csv"))
    assert isinstance(result.exception, ValidationError)
    assert "nope.csv" in str(result.exception)
    assert "not found" in str(result.exception)


def test_help_lists_the_command_and_its_options():
    assert "csv" in invoke("--help").output
    text = invoke("csv", "--help").output
    for option in ("--kind", "--dry-run", "--flow-unit", "--market", "--stocks-file", "--rejects"):
        assert option in text


def test_options_reach_the_importer_and_the_reconciliation_is_printed(
    monkeypatch: pytest.MonkeyPatch, prices: Path, tmp_path: Path
):
    stocks = tmp_path / "stocks.csv"
    stocks.write_text("ticker,name\n005930,삼성전자\n")
    seen: dict[str, Any] = {}

    def fake_import(path: Path, **kwargs: Any) -> ImportReport:
        seen.update(kwargs, path=path)
        kwargs["progress"](10, 20)
        kwargs["progress"](20, 20)
        return report(dry_run=True)

    monkeypatch.setattr(cli_import, "import_csv", fake_import)
    result = invoke(
        "csv",
        str(prices),
        "--kind",
        "DAILY_PRICES",
        "--dry-run",
        "--flow-unit",
        "krw",
        "--market",
        "코스닥",
        "--stocks-file",
        str(stocks),
        "--rejects",
        str(tmp_path / "r.csv"),
        "--chunk-rows",
        "1000",
    )

    assert result.exit_code == 0, result.output
    assert seen["path"] == prices
    assert seen["kind"] is CsvKind.DAILY_PRICES
    assert seen["dry_run"] is True
    assert seen["flow_unit"] is FlowUnit.KRW
    assert seen["default_market"] is Market.KOSDAQ
    assert seen["stocks_file"] == stocks
    assert seen["reject_file"] == tmp_path / "r.csv"
    assert seen["chunk_rows"] == 1000
    lines = lines_of(result.output)
    assert "20/20 lines" in " ".join(lines)  # the progress bar reached the end
    assert "quantbeat import csv — daily_prices (DRY RUN: nothing was written)" in lines
    assert (
        "reconciliation ok 1,234,567 read = 1,000,000 + 200,000 + 34,000 + 567 (= 1,234,567)"
        in (lines)
    )


def test_reconciliation_table():
    console = Console(record=True, width=200)
    print_report(report(), console)
    lines = lines_of(console.export_text())
    assert lines[0] == "quantbeat import csv — daily_prices"
    assert "file /data/daily_prices.csv (cp949)" in lines
    assert "rows read 1,234,567" in lines
    assert "inserted 1,000,000" in lines
    assert "updated 200,000" in lines
    assert "unchanged 34,000 already stored" in lines
    assert "rejected 567 bad_date 500, duplicate_row 67" in lines
    assert (
        "reconciliation ok 1,234,567 read = 1,000,000 + 200,000 + 34,000 + 567 (= 1,234,567)"
        in (lines)
    )
    assert "blank lines 3 skipped, not rows" in lines
    assert "instruments created 12 named by the file, not listed before" in lines
    assert "reject file /data/daily_prices.csv.rejects.csv" in lines
    assert "run id 42 import_runs" in lines
    assert "note: column 'foreign' states no unit; read as shares" in lines


def test_a_mismatch_is_shown_as_such():
    console = Console(record=True, width=200)
    bad = report(unchanged=34_001)
    assert not bad.reconciles
    print_report(bad, console)
    assert any(
        line.startswith("reconciliation MISMATCH") for line in lines_of(console.export_text())
    )


# --------------------------------------------------------------------------- importer options


def test_importer_refuses_bad_options_before_touching_the_database(
    monkeypatch: pytest.MonkeyPatch, prices: Path
):
    def no_database(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the database was reached despite a bad option")

    monkeypatch.setattr(importer, "get_engine", no_database)
    with pytest.raises(ValidationError, match="kind must be one of"):
        import_csv(prices, kind="prices")
    with pytest.raises(ValidationError, match="flow_unit must be one of"):
        import_csv(prices, flow_unit="lots")
    with pytest.raises(ValidationError, match="unknown market"):
        import_csv(prices, default_market="NASDAQ")
    with pytest.raises(ValidationError, match="is the input file itself"):
        import_csv(prices, reject_file=prices)
    with pytest.raises(ValidationError, match="chunk_rows must be >= 1"):
        import_csv(prices, chunk_rows=0)


def test_default_reject_file_sits_beside_the_input():
    assert default_reject_file("/data/daily_prices.csv") == Path(
        "/data/daily_prices.csv.rejects.csv"
    )


def test_reject_file_headers_never_repeat_line_reason_or_detail():
    assert importer._reject_headers(["date", "reason", "detail", "reason#2", "x"]) == [
        "date",
        "reason#2",
        "detail#2",
        "reason#2#2",
        "x",
    ]


@pytest.mark.parametrize(
    ("content", "lines"),
    [(b"", 0), (b"a\n", 1), (b"a\nb", 2), (b"a\r\nb\r\n", 2), (b"a\n\n\n", 3)],
)
def test_progress_total_counts_physical_lines(tmp_path: Path, content: bytes, lines: int):
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    digest, counted = importer._digest(path)
    assert counted == lines
    assert digest is not None
    assert len(digest) == 64
    assert importer._digest(tmp_path / "missing.csv") == (None, 0)
