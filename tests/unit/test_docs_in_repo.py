"""The documents the code cites live in the repository: no module points outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("quant", "quantbeat", "db", "workers", "tasks", "benchmarks", "scripts")


def _sources() -> list[Path]:
    files = [p for d in CODE for p in (ROOT / d).rglob("*.py")]
    return [*files, ROOT / "celeryconfig.py", ROOT / "beat_schedule.py"]


def test_no_module_cites_a_path_outside_the_repository():
    wrong = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _sources()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "../shared" in line
    ]
    assert wrong == []


def test_every_cited_doc_exists():
    cited = {
        match
        for path in _sources()
        for match in re.findall(r"\bdocs/[\w.-]+\.md", path.read_text())
    }
    assert cited, "the domain rules cite docs/domain.md"
    missing = sorted(doc for doc in cited if not (ROOT / doc).is_file())
    assert missing == []
