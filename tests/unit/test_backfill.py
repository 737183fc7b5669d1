"""The one backfill planner and the one pipeline definition: pure plans, no broker."""

from __future__ import annotations

import datetime as dt

import pytest

from quant.errors import ValidationError
from quantbeat.services.args import parse_interval, parse_moment, parse_tickers
from quantbeat.services.backfill import plan_backfill
from quantbeat.services.collect import floor_to_interval
from quantbeat.services.dispatch import TaskCall
from quantbeat.services.pipeline import (
    PIPELINES,
    pipeline_scans,
    pipeline_steps,
)
from quantbeat.services.strategies import scan_strategy, scan_strategy_names

#: Twelve sessions around Chuseok 2026 (24-26 Sep closed): the planner takes the calendar's
#: sessions as given and never assumes weekdays.
S = [dt.date(2026, 9, d) for d in (16, 17, 18, 21, 22, 23, 28, 29, 30)] + [
    dt.date(2026, 10, d) for d in (1, 2, 6)
]


def _range(start: dt.date, end: dt.date, dataset: str, market: str | None = None) -> TaskCall:
    return TaskCall(
        "quantbeat.collect.daily_range",
        {"start": start.isoformat(), "end": end.isoformat(), "market": market, "dataset": dataset},
    )


def test_sessions_split_into_chunks_dataset_by_dataset():
    plan = plan_backfill(S, chunk_sessions=5, datasets=("candles", "flows"), market="KOSPI")
    chunks = [(S[0], S[4]), (S[5], S[9]), (S[10], S[11])]  # the last chunk is short
    assert plan == [
        *(_range(a, b, "candles", "KOSPI") for a, b in chunks),
        *(_range(a, b, "flows", "KOSPI") for a, b in chunks),
    ]


def test_a_chunk_as_large_as_the_range_is_one_task_per_dataset():
    assert plan_backfill(S, chunk_sessions=260, datasets=("flows",)) == [
        _range(S[0], S[-1], "flows")
    ]
    assert plan_backfill(S[3:4], chunk_sessions=1, datasets=("candles",)) == [
        _range(S[3], S[3], "candles")
    ]


def test_no_session_no_task():
    assert plan_backfill([], chunk_sessions=20) == []


@pytest.mark.parametrize("size", [0, -1, 261])
def test_a_chunk_size_out_of_bounds_is_refused(size):
    with pytest.raises(ValidationError, match=str(size)) as caught:
        plan_backfill(S, chunk_sessions=size)
    assert caught.value.field == "chunk_sessions"


def test_an_unknown_dataset_is_refused():
    with pytest.raises(ValidationError, match="'trades'"):
        plan_backfill(S, datasets=("candles", "trades"))


# --- the pipeline ---------------------------------------------------------------------------
def test_every_scan_strategy_runs_in_exactly_one_pipeline():
    scans = [s for p in PIPELINES for s in pipeline_scans(p)]
    scheduled = [s for s in scan_strategy_names() if scan_strategy(s).scheduled]
    assert sorted(scans) == sorted(scheduled)
    # the strategies that read investor flows wait for them; the others run after the close
    assert pipeline_scans("krx_flows") == [s for s in scheduled if scan_strategy(s).evaluator.flows]
    assert "closing_bet" in pipeline_scans("krx_flows")


def test_krx_close_collects_computes_the_gate_precomputes_reads_news_then_scans():
    steps = pipeline_steps("krx_close", "2026-11-20", "KOSPI")
    day = {"trade_date": "2026-11-20", "market": "KOSPI"}
    assert steps == [
        TaskCall("quantbeat.collect.daily_candles", day),
        TaskCall("quantbeat.market.collect_reference", {"end": "2026-11-20"}),
        TaskCall("quantbeat.market.gate", {"trade_date": "2026-11-20"}),
        TaskCall("quantbeat.indicators.precompute", day),
        TaskCall("quantbeat.news.collect", {"trade_date": "2026-11-20"}),
        TaskCall("quantbeat.track.update", {"as_of": "2026-11-20"}),
        *(
            TaskCall("quantbeat.scans.run", {"strategy": s, "analyze": True, **day})
            for s in pipeline_scans("krx_close")
        ),
    ]
    assert "vcp" in pipeline_scans("krx_close")


def test_krx_flows_collects_flows_then_runs_the_scans_that_need_them():
    steps = pipeline_steps("krx_flows")  # beat's tick: latest closed session, both markets
    day = {"trade_date": None, "market": None}
    assert steps == [
        TaskCall("quantbeat.collect.investor_flows", day),
        TaskCall("quantbeat.news.collect", {"trade_date": None}),
        TaskCall("quantbeat.scans.run", {"strategy": "closing_bet", "analyze": True, **day}),
    ]


def test_catch_up_collects_incrementally_up_to_the_day():
    collect, *rest = pipeline_steps("krx_close", "2026-11-20", None, catch_up=True)
    assert collect == TaskCall(
        "quantbeat.collect.daily_candles",
        {"trade_date": None, "market": None, "until": "2026-11-20"},
    )
    assert all(
        step.kwargs.get("trade_date", step.kwargs.get("end", step.kwargs.get("as_of")))
        == "2026-11-20"
        for step in rest
    )
    # without a day there is nothing to catch up to: beat's incremental collection
    assert pipeline_steps("krx_close", catch_up=True)[0].kwargs == {
        "trade_date": None,
        "market": None,
    }


def test_an_unknown_pipeline_is_refused():
    with pytest.raises(ValidationError, match="'krx_open'"):
        pipeline_steps("krx_open")


# --- argument parsers the CLI and the tasks share -------------------------------------------
def test_moments_need_a_zone_and_come_back_in_utc():
    assert parse_moment("2026-11-20T09:00:00+09:00", field="start") == dt.datetime(
        2026, 11, 20, 0, 0, tzinfo=dt.UTC
    )
    for bad in ("2026-11-20T09:00:00", "yesterday", 20261120):
        with pytest.raises(ValidationError, match="start") as caught:
            parse_moment(bad, field="start")
        assert repr(bad) in str(caught.value)


def test_intervals_and_tickers():
    assert parse_interval("60m") == "60m"
    with pytest.raises(ValidationError, match="'61m'"):
        parse_interval("61m")
    assert parse_tickers(None) is None
    assert parse_tickers(["KRW-BTC"]) == ["KRW-BTC"]
    for bad in ("KRW-BTC", ["KRW-BTC", ""], [1]):
        with pytest.raises(ValidationError, match="tickers"):
            parse_tickers(bad)


def test_floor_to_interval():
    moment = dt.datetime(2026, 11, 20, 13, 47, 12, tzinfo=dt.UTC)
    assert floor_to_interval(moment, 60) == dt.datetime(2026, 11, 20, 13, 0, tzinfo=dt.UTC)
    assert floor_to_interval(moment, 15) == dt.datetime(2026, 11, 20, 13, 45, tzinfo=dt.UTC)
    assert floor_to_interval(moment, 240) == dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def test_the_buy_window_snapshots_decides_analyses_all_candidates_at_15_10():
    from quantbeat.services.pipeline import WINDOW_ANALYSES, window_steps

    steps = window_steps("2026-11-20")
    at = "2026-11-20T15:10:00+09:00"
    assert [s.task for s in steps] == [
        "quantbeat.market.snapshot",
        "quantbeat.news.collect",
        "quantbeat.scans.preliminary",
        "quantbeat.ai.analyze_candidates",
    ]
    assert steps[0].kwargs == {"at": at}
    decide = {"strategy": "closing_bet", "trade_date": "2026-11-20", "as_of": at}
    assert steps[1].kwargs == {"trade_date": "2026-11-20"}
    # the first decision is not announced: the one with the news scores (the analyses'
    # re-decision) is the window's last word
    assert steps[2].kwargs == {**decide, "announce": False}
    assert steps[3].kwargs == {**decide, "top": WINDOW_ANALYSES, "phase": "preliminary"}
