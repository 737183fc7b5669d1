from __future__ import annotations

import datetime as dt

from quant.market.gaps import Gap, covering_ranges, find_gaps, without_rows

S = [dt.date(2026, 11, d) for d in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13)]  # sessions


def test_runs_of_missing_sessions_are_gaps():
    stored = {
        ("KOSPI", "A"): S,  # complete
        ("KOSPI", "B"): [S[0], S[1], S[4], S[5], S[9]],  # two holes
        ("KOSPI", "C"): S[3:8],  # listed late (starts at S[3]), stops early
        ("KOSPI", "D"): [],  # no row in the window: not judged, named separately
    }
    assert find_gaps(stored, S) == [
        Gap("KOSPI", "B", S[2], S[3], 2),
        Gap("KOSPI", "B", S[6], S[8], 3),
        Gap("KOSPI", "C", S[8], S[9], 2),
    ]
    assert without_rows(stored, S) == [("KOSPI", "D")]


def test_dates_outside_the_window_are_ignored():
    stored = {("KOSDAQ", "X"): [dt.date(2026, 10, 30), *S]}
    assert find_gaps(stored, S) == []
    assert find_gaps(stored, []) == []


def test_covering_ranges_merge_overlapping_and_adjacent_gaps():
    gaps = [
        Gap("KOSPI", "B", S[2], S[3], 2),
        Gap("KOSPI", "C", S[4], S[4], 1),  # adjacent to B's: one range
        Gap("KOSPI", "D", S[7], S[9], 3),
        Gap("KOSPI", "E", S[8], S[8], 1),  # inside D's
    ]
    assert covering_ranges(gaps, S) == [(S[2], S[4]), (S[7], S[9])]
