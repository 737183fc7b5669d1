"""The coverage floors of ``make test`` (issue 22): the suite's combined data (every test,
worker and CLI process, see ``[tool.coverage]`` in pyproject.toml) must cover ``quant/`` at
least 90 % and the whole project at least 85 %.

Prints one line per floor — ``coverage <scope>: <measured> % (floor <floor> %) met|missed`` —
and exits 1 if a floor is missed or there is no data (a suite that ran without coverage), 0
otherwise. Run from the repository root: ``.venv/bin/python scripts/coverage_floors.py``.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import coverage
from coverage.exceptions import NoDataError

#: (scope, include pattern or None for everything measured, floor in percent)
FLOORS: tuple[tuple[str, str | None, float], ...] = (
    ("quant/", "quant/*", 90.0),
    ("project", None, 85.0),
)


def measure(include: str | None, config: str = "pyproject.toml") -> float:
    """The total line coverage in percent of the files matching ``include`` (all measured
    files when ``None``), read from the combined data file named by ``config``.

    Raises:
        coverage.exceptions.NoDataError: no data file, or no measured file matches.
    """
    cov = coverage.Coverage(config_file=config)
    cov.load()
    return float(cov.report(include=include, file=io.StringIO()))


def main(argv: list[str] | None = None) -> int:
    """Print each floor's line; 1 if any is missed or nothing was measured, else 0."""
    config = (argv or sys.argv[1:] or ["pyproject.toml"])[0]
    if not Path(config).is_file():
        print(f"coverage: no configuration file {config!r}", file=sys.stderr)
        return 1
    failed = False
    for scope, include, floor in FLOORS:
        try:
            measured = measure(include, config)
        except NoDataError as exc:
            print(f"coverage {scope}: no data ({exc}); run the suite with --cov", file=sys.stderr)
            return 1
        met = measured >= floor
        failed |= not met
        verdict = "met" if met else "missed"
        shown = math.floor(measured * 10) / 10  # never rounded up past a floor it misses
        print(f"coverage {scope}: {shown:.1f} % (floor {floor:.0f} %) {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
