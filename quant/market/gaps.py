"""Gap detection: sessions an instrument should have a row for but does not.

An instrument is expected to have a row for every session from its first stored session in
the window up to the window's end; every run of consecutive missing sessions is one
:class:`Gap`. An instrument with no row in the window is not judged here (it may be newly
listed, or listed only in an old import): :func:`without_rows` names those separately.
Silent gaps fake profits in backtests, so they are reported, and can be backfilled.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class Gap:
    """Consecutive missing sessions of one instrument: ``first``..``last`` (inclusive)."""

    market: str
    ticker: str
    first: date
    last: date
    sessions: int


def find_gaps(
    stored: Mapping[tuple[str, str], Iterable[date]], sessions: Sequence[date]
) -> list[Gap]:
    """Gaps of every instrument in ``stored`` over the window ``sessions`` (ascending).

    ``stored`` maps (market, ticker) to the dates it has rows for (dates outside the window
    are ignored); instruments with none in the window are skipped. Sorted by market, ticker,
    first missing session.
    """
    if not sessions:
        return []
    gaps: list[Gap] = []
    for (market, ticker), dates in sorted(stored.items()):
        have = {d for d in dates if sessions[0] <= d <= sessions[-1]}
        if not have:
            continue
        start = bisect.bisect_left(sessions, min(have))
        run: list[date] = []
        for day in sessions[start:]:
            if day in have:
                if run:
                    gaps.append(Gap(market, ticker, run[0], run[-1], len(run)))
                    run = []
            else:
                run.append(day)
        if run:
            gaps.append(Gap(market, ticker, run[0], run[-1], len(run)))
    return gaps


def without_rows(
    stored: Mapping[tuple[str, str], Iterable[date]], sessions: Sequence[date]
) -> list[tuple[str, str]]:
    """Instruments in ``stored`` with no row at all within the window, sorted."""
    if not sessions:
        return sorted(stored)
    return sorted(
        key
        for key, dates in stored.items()
        if not any(sessions[0] <= d <= sessions[-1] for d in dates)
    )


def covering_ranges(gaps: Iterable[Gap], sessions: Sequence[date]) -> list[tuple[date, date]]:
    """The fewest session ranges (within ``sessions``) that cover every gap: what a backfill
    must collect. Overlapping or adjacent gaps of different instruments merge."""
    index = {d: i for i, d in enumerate(sessions)}
    spans = sorted((index[g.first], index[g.last]) for g in gaps if g.first in index)
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(sessions[lo], sessions[hi]) for lo, hi in merged]
