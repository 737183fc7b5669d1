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


def test_vcp_volume_ratio_is_stored_and_unconfirmed_closes_rank_after_breakouts(
    clean_db: str,
) -> None:
    """Issue 18 item 4: the scan's store path keeps the volume ratio with the signal, and a
    close above the pivot without the breakout volume is not ranked with confirmed breakouts:
    the candidates list (the CLI's top list) and the AI analysis's top N put breakouts first,
    whatever the scores."""
    from quantbeat.services.ai import top_candidates

    with session_scope() as session:
        ids = ensure_instruments(session, "KOSPI", ["005930", "000660", "035420"], source="t")
    a, b, c = (ids[("KOSPI", t)] for t in ("005930", "000660", "035420"))

    def vcp(ident: int, score: float, status: str, ratio: float | None) -> dict[str, object]:
        return {**_row(ident, score, "Strong"), "status": status, "volume_ratio": ratio}

    rows = [vcp(a, 86.0, "unconfirmed", 1.2), vcp(b, 81.0, "breakout", 2.4),
            vcp(c, 84.0, "forming", 0.7)]  # fmt: skip
    with session_scope() as session:
        replace_signals(session, trade_date=DAY, strategy="vcp", covered=[a, b, c], rows=rows)
    with session_scope() as session:
        stored = {
            ident: ratio
            for ident, ratio in session.execute(select(Signal.instrument_id, Signal.volume_ratio))
        }
    assert stored == {a: 1.2, b: 2.4, c: 0.7}
    ranked = candidates("vcp", DAY)
    assert [(x.instrument, x.status, x.volume_ratio) for x in ranked] == [
        ("KOSPI:000660", "breakout", 2.4),  # the only confirmed breakout, lowest score
        ("KOSPI:005930", "unconfirmed", 1.2),
        ("KOSPI:035420", "forming", 0.7),
    ]
    assert top_candidates("vcp", DAY, 1) == ["KOSPI:000660"]
    # a re-scan that changes only the ratio updates the row (it is compared on upsert)
    rows[0] = vcp(a, 86.0, "unconfirmed", 1.3)
    with session_scope() as session:
        counts = replace_signals(
            session, trade_date=DAY, strategy="vcp", covered=[a, b, c], rows=rows
        )
    assert counts.updated == 1
    assert candidates("vcp", DAY)[1].volume_ratio == 1.3
