"""The daily pipeline, defined once.

Two pipelines follow the KRX day, each a list of steps (task name and arguments, see
:func:`pipeline_steps`) that run one after another:

* ``krx_close`` (after the close): the day's candles → the index, sector-ETF and USD/KRW
  bars and the day's Market Gate → the scan indicators of the universe
  (``quantbeat.indicators.precompute``) → the day's news → the track record followed on the
  day's bars (``quantbeat.track.update``) → the scans that need no investor flows (VCP), each
  starting the AI analysis of its top candidates when it finishes;
* ``krx_flows`` (once KRX publishes investor flows): the flows → the news → the scans that
  need flows (the closing bet), analysed likewise, then re-scanned with the news scores.

Beat runs them as Celery chains (:func:`launch_pipeline`, behind the
``quantbeat.pipeline.*`` tasks); ``quantbeat run`` runs the same steps itself, waiting for
each (:mod:`quantbeat.services.runner`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from celery import chain

from quant.errors import ValidationError
from quantbeat.infra.settings import get_settings
from quantbeat.services.args import parse_date
from quantbeat.services.closing_window import decision_time
from quantbeat.services.dispatch import TaskCall, signature
from quantbeat.services.strategies import scan_strategy, scan_strategy_names

#: The pipelines that take the day's final decisions, in the order of the trading day.
PIPELINES: tuple[str, ...] = ("krx_close", "krx_flows")
#: The buy-window pipeline (QUANTBEAT_CLOSING_BET_AT, 15:10 KST): snapshot → the preliminary
#: decision of the strategies that read news (the closing bet) → the AI analysis of every
#: candidate → the decision again with their news scores.
WINDOW = "closing_window"
#: Candidates the window analyses per strategy: every one passing the hard filters, up to the
#: AI task's own bound.
WINDOW_ANALYSES = 200


def pipeline_scans(name: str) -> list[str]:
    """The registered, scheduled scan strategies pipeline ``name`` runs: ``krx_flows`` those
    that read investor flows (KRX publishes them in the evening), ``krx_close`` the others
    (every scheduled scan strategy runs in exactly one).

    Raises:
        quant.errors.ValidationError: unknown pipeline.
    """
    _check(name)
    flows = name == "krx_flows"
    return [
        s
        for s in scan_strategy_names()
        if scan_strategy(s).scheduled and scan_strategy(s).evaluator.flows == flows
    ]


def pipeline_steps(
    name: str,
    trade_date: str | None = None,
    market: str | None = None,
    *,
    catch_up: bool = False,
) -> list[TaskCall]:
    """The steps of pipeline ``name`` for a trade date (ISO; ``None``: the latest closed
    session, collected incrementally from the last stored one) and a KRX market (``None``:
    both), in order.

    With ``catch_up`` and a ``trade_date``, the collection step collects incrementally up to
    that day (``until``) instead of that day alone. Scans run with ``analyze=True``: when one
    finishes it starts the analysis of its top candidates. Arguments are not validated here
    (the tasks do).

    Raises:
        quant.errors.ValidationError: unknown pipeline.
    """
    _check(name)
    day: dict[str, Any] = {"trade_date": trade_date, "market": market}
    collect = (
        {"trade_date": None, "market": market, "until": trade_date}
        if catch_up and trade_date is not None
        else day
    )
    steps = (
        [
            TaskCall("quantbeat.collect.daily_candles", collect),
            # the index/ETF/USD-KRW bars and the day's Market Gate, before any scan reads it
            TaskCall("quantbeat.market.collect_reference", {"end": trade_date}),
            TaskCall("quantbeat.market.gate", {"trade_date": trade_date}),
            TaskCall("quantbeat.indicators.precompute", day),
        ]
        if name == "krx_close"
        else [TaskCall("quantbeat.collect.investor_flows", collect)]
    )
    steps.append(TaskCall("quantbeat.news.collect", {"trade_date": trade_date}))
    if name == "krx_close":
        # the track record follows every open signal on the bars just collected
        steps.append(TaskCall("quantbeat.track.update", {"as_of": trade_date}))
    steps.extend(
        TaskCall("quantbeat.scans.run", {"strategy": strategy, "analyze": True, **day})
        for strategy in pipeline_scans(name)
    )
    return steps


def launch_pipeline(
    name: str, trade_date: str | None = None, market: str | None = None
) -> dict[str, Any]:
    """Start pipeline ``name`` as a Celery chain: each step runs on its own queue once the
    previous one succeeded; a failed step stops the chain (and is recorded like any task
    failure). Returns ``{"chain": <last task id>, "steps": [task names]}`` at once.

    Raises:
        quant.errors.ValidationError: unknown pipeline.
    """
    steps = pipeline_steps(name, trade_date, market)
    result = chain(*(signature(step) for step in steps)).apply_async()
    return {"chain": result.id, "steps": [step.task for step in steps]}


def window_steps(trade_date: str | None = None) -> list[TaskCall]:
    """The steps of the buy-window pipeline for ``trade_date`` (ISO; ``None``: today in
    ``QUANTBEAT_TIMEZONE``) at its decision time: the snapshot, the news so far, then for each
    scheduled scan
    strategy that reads news (the closing bet) its preliminary decision and the analysis of
    all its candidates, whose callback re-decides it with the news scores."""
    settings = get_settings()
    day = (
        dt.date.fromisoformat(trade_date)
        if trade_date is not None
        else dt.datetime.now(ZoneInfo(settings.timezone)).date()
    )
    at = decision_time(day, settings).isoformat()
    steps = [
        TaskCall("quantbeat.market.snapshot", {"at": at}),
        TaskCall("quantbeat.news.collect", {"trade_date": day.isoformat()}),
    ]
    for name in pipeline_scans("krx_flows"):
        decide = {"strategy": name, "trade_date": day.isoformat(), "as_of": at}
        reads_news = scan_strategy(name).reads_news
        # the window's last decision is announced: this one, or the re-decision with the
        # news scores once the analyses are in
        steps.append(
            TaskCall("quantbeat.scans.preliminary", {**decide, "announce": not reads_news})
        )
        if reads_news:
            steps.append(
                TaskCall(
                    "quantbeat.ai.analyze_candidates",
                    {**decide, "top": WINDOW_ANALYSES, "phase": "preliminary"},
                )
            )
    return steps


def launch_window(trade_date: str | None = None) -> dict[str, Any]:
    """Start the buy-window pipeline (:func:`window_steps`) as a Celery chain. Returns
    ``{"chain": <last task id>, "steps": [task names]}`` at once.

    Raises:
        quant.errors.ValidationError: ``trade_date`` is not an ISO date.
    """
    if trade_date is not None:
        parse_date(trade_date, field="trade_date")
    steps = window_steps(trade_date)
    result = chain(*(signature(step) for step in steps)).apply_async()
    return {"chain": result.id, "steps": [step.task for step in steps]}


def _check(name: str) -> None:
    if name not in PIPELINES:
        raise ValidationError(
            f"pipeline must be one of {', '.join(PIPELINES)}, got {name!r}",
            field="pipeline",
            value=name,
        )
