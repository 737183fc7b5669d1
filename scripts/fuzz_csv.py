"""Coverage-guided fuzzing (atheris, libFuzzer) of the CSV parser of ``quantbeat import csv``.

Runs :func:`quant.migration.csv_import.read_csv` on mutated files, starting from the CSV
fixtures, with options chosen by the fuzzer (kind, default market, chunk size). The
contract is that of ``tests/unit/fuzz/test_fuzz_csv.py``: a parsed result in which every row
is accounted for, or a :class:`quant.errors.ValidationError`. Anything else is a crash:
libFuzzer stops, prints the traceback and writes the input to ``crash-<sha1>`` in the
working directory (re-run it with ``scripts/fuzz_csv.py crash-<sha1>``).

    .venv/bin/pip install atheris          # in the dev extras; Linux wheels
    .venv/bin/python scripts/fuzz_csv.py --seconds 300
    .venv/bin/python scripts/fuzz_csv.py crash-1a2b...   # replay one input

The corpus of interesting inputs grows in ``<QUANTBEAT_DATA_DIR or var>/fuzz/csv`` and is
reused by the next run. Not part of the test suite (hypothesis covers the same contract
there, reproducibly).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402
import numpy  # noqa: E402, F401  (loaded first: only quantbeat's own code is instrumented)
import pandas  # noqa: E402, F401

with atheris.instrument_imports(include=["quant"]):
    from quant.errors import ValidationError
    from quant.migration import csv_import
    from quant.migration.csv_import import CsvKind, read_csv

FIXTURES = ROOT / "tests" / "fixtures" / "csv"
_KINDS = [None, *CsvKind]
_MARKETS = [None, "KOSPI", "UPBIT", "코스닥", "bogus"]
_FILE = Path(tempfile.mkdtemp(prefix="qb-fuzz-csv-")) / "input.csv"


def one_input(data: bytes) -> None:
    """Parse one fuzzer input: the first 3 bytes choose the options, the rest is the file."""
    provider = atheris.FuzzedDataProvider(data)
    kind = _KINDS[provider.ConsumeIntInRange(0, len(_KINDS) - 1)]
    market = _MARKETS[provider.ConsumeIntInRange(0, len(_MARKETS) - 1)]
    chunk_rows = provider.ConsumeIntInRange(1, 8)
    _FILE.write_bytes(provider.ConsumeBytes(len(data)))
    try:
        parsed = read_csv(_FILE, kind, default_market=market, chunk_rows=chunk_rows)
    except ValidationError:
        return
    if parsed.rows != len(parsed.good) + len(parsed.rejects):
        raise AssertionError(f"rows {parsed.rows} != good + rejects")
    for reject in parsed.rejects:
        if reject.reason not in csv_import.REJECT_REASONS:
            raise AssertionError(f"unknown reject reason {reject.reason!r}")


def _corpus() -> Path:
    folder = Path(os.environ.get("QUANTBEAT_DATA_DIR", ROOT / "var")) / "fuzz" / "csv"
    folder.mkdir(parents=True, exist_ok=True)
    for seed in FIXTURES.glob("*.csv"):
        target = folder / f"seed-{seed.name}"
        if not target.exists():
            # three option bytes (kind: detect, market: KOSPI, chunk rows 2), then the file
            target.write_bytes(b"\x00\x01\x01" + seed.read_bytes())
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("inputs", nargs="*", help="replay these inputs instead of fuzzing")
    options, rest = parser.parse_known_args()
    if options.inputs:
        argv = [sys.argv[0], *rest, *options.inputs]
    else:
        argv = [sys.argv[0], *rest, f"-max_total_time={options.seconds}", str(_corpus())]
    atheris.Setup(argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(_FILE.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
