"""Render the fault scenarios' recorded outcomes into the README (``make faults``).

Reads the JSON records the fault tests wrote (tests/faults/outcomes.py) and replaces the text
between ``<!-- faults:start -->`` and ``<!-- faults:end -->`` in README.md. Exits 1 when no
outcome was recorded or any scenario lost or duplicated something.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.outcomes import load_all, outcomes_dir, render_table  # noqa: E402

START, END = "<!-- faults:start -->", "<!-- faults:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="print the table, change nothing")
    options = parser.parse_args()
    outcomes = load_all()
    if not outcomes:
        print(f"faults: no outcomes recorded in {outcomes_dir()}", file=sys.stderr)
        return 1
    table = render_table(outcomes)
    print(table)
    if not options.check:
        text = options.readme.read_text(encoding="utf-8")
        if START not in text or END not in text:
            print(f"faults: {options.readme} has no {START} … {END} markers", file=sys.stderr)
            return 1
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        options.readme.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
        print(f"faults: {len(outcomes)} scenarios written to {options.readme}")
    bad = [o for o in outcomes if o.lost or o.duplicates]
    for o in bad:
        print(
            f"faults: scenario {o.number} lost {o.lost}, duplicated {o.duplicates}", file=sys.stderr
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
