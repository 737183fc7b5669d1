"""Migration of the earlier system's files into quantbeat's records (pure parsing only).

:mod:`quant.migration.csv_import` reads the four CSV files of the migration plan's Phase 1
(``daily_prices.csv``, ``korean_stocks_list.csv``, ``all_institutional_trend_data.csv``,
``signals_log.csv``) into canonical frames plus per-line rejections. Writing them to the database
is the caller's job (``quantbeat import csv``).
"""

from quant.migration.csv_import import (
    SIGNAL_COLUMNS,
    STOCK_COLUMNS,
    CsvKind,
    CsvLayout,
    FlowUnit,
    ParsedChunk,
    ParsedCsv,
    RejectedLine,
    detect_encoding,
    detect_kind,
    inspect_csv,
    instruments_from_frame,
    iter_chunks,
    read_csv,
)

__all__ = [
    "SIGNAL_COLUMNS",
    "STOCK_COLUMNS",
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
    "read_csv",
]
