"""Preliminary and final signals of one day are kept side by side (issue 17 item 4): writing
one phase's signals never deletes or changes the other's, and candidates are read per
phase."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from db.engine import session_scope
from db.models import Signal
from db.scans import replace_signals
from db.store import ensure_instruments
from quantbeat.services.scans import candidates

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 20)


def _row(ident: int, score: float, grade: str) -> dict[str, object]:
    return {"instrument_id": ident, "score": score, "grade": grade, "entry_price": 1000.0,
            "status": None, "reasons": ["test"], "inputs": {}}  # fmt: skip


def test_phases_are_kept_apart(clean_db: str) -> None:
    with session_scope() as session:
        ids = ensure_instruments(session, "KOSPI", ["005930", "000660", "035420"], source="t")
    a, b, c = (ids[("KOSPI", t)] for t in ("005930", "000660", "035420"))
    with session_scope() as session:
        replace_signals(session, trade_date=DAY, strategy="closing_bet", covered=[a, b, c],
                        rows=[_row(a, 12, "S"), _row(b, 9, "A")], phase="preliminary")  # fmt: skip
    with session_scope() as session:
        # the final decision drops a, keeps b with another grade, adds c
        replace_signals(session, trade_date=DAY, strategy="closing_bet", covered=[a, b, c],
                        rows=[_row(b, 7, "B"), _row(c, 10, "S")])  # fmt: skip
    preliminary = candidates("closing_bet", DAY, phase="preliminary")
    final = candidates("closing_bet", DAY)
    assert [(x.instrument, x.grade) for x in preliminary] == [
        ("KOSPI:005930", "S"),
        ("KOSPI:000660", "A"),
    ]
    assert [(x.instrument, x.grade) for x in final] == [
        ("KOSPI:035420", "S"),
        ("KOSPI:000660", "B"),
    ]
    # rewriting the preliminary phase leaves the final rows as they are
    with session_scope() as session:
        replace_signals(session, trade_date=DAY, strategy="closing_bet", covered=[a, b, c],
                        rows=[], phase="preliminary")  # fmt: skip
    assert candidates("closing_bet", DAY, phase="preliminary") == []
    assert len(candidates("closing_bet", DAY)) == 2
    with session_scope() as session:
        phases = sorted(session.execute(select(Signal.phase)).scalars())
    assert phases == ["final", "final"]
