"""Outcomes of the fault scenarios, for the README's reliability table.

Every fault test records one :class:`Outcome` per scenario with :func:`record` (the
``outcome`` fixture of tests/faults/conftest.py): what was sent, what completed, how many
business rows were duplicated or lost, and how long recovery took. ``make faults`` runs the
suite and ``scripts/faults_table.py`` renders the records into the README between the
``<!-- faults:start -->`` and ``<!-- faults:end -->`` markers.

Records are JSON files under ``$QUANTBEAT_FAULTS_DIR`` (default ``var/faults``), one per
scenario, overwritten by each run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def outcomes_dir() -> Path:
    """Where outcome records are written (created on demand)."""
    return Path(os.environ.get("QUANTBEAT_FAULTS_DIR", ROOT / "var" / "faults"))


@dataclass(frozen=True)
class Outcome:
    """One scenario's result. ``number`` orders the table (issue 9's numbering); ``sent`` and
    ``completed`` count units of work (tasks, runs, messages), ``duplicates`` and ``lost``
    count business rows (or runs) applied twice / never applied; ``recovery_s`` is the time
    from the fault to the system working again (``None`` when the scenario has no recovery)."""

    number: int
    scenario: str
    sent: int
    completed: int
    duplicates: int
    lost: int
    recovery_s: float | None = None
    notes: str = ""


def record(outcome: Outcome) -> Path:
    """Write ``outcome`` as ``<number>-<slug>.json``; return the path."""
    directory = outcomes_dir()
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", outcome.scenario.lower()).strip("-")[:60]
    path = directory / f"{outcome.number:02d}-{slug}.json"
    path.write_text(json.dumps(asdict(outcome), indent=2) + "\n", encoding="utf-8")
    return path


def load_all(directory: Path | None = None) -> list[Outcome]:
    """Every recorded outcome, by scenario number."""
    directory = directory or outcomes_dir()
    found = [
        Outcome(**json.loads(p.read_text(encoding="utf-8")))
        for p in sorted(directory.glob("*.json"))
    ]
    return sorted(found, key=lambda o: (o.number, o.scenario))


def render_table(outcomes: list[Outcome]) -> str:
    """The markdown table of ``outcomes``."""
    lines = [
        "| # | scenario | sent | completed | duplicates | lost | recovery | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        recovery = "–" if o.recovery_s is None else f"{o.recovery_s:.1f} s"
        lines.append(
            f"| {o.number} | {o.scenario} | {o.sent:,} | {o.completed:,} | {o.duplicates} "
            f"| {o.lost} | {recovery} | {o.notes} |"
        )
    return "\n".join(lines)
