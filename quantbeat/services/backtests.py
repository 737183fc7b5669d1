"""Asynchronous backtest runs: submit, watch, cancel, report.

``submit_backtest(spec) → run_id`` validates the spec (strategy, parameters, execution
settings, dates, instruments) before anything is enqueued, records the run as ``queued`` in
PostgreSQL and sends ``quantbeat.backtest.run`` to the ``cpu`` queue with the run's soft and
hard time limits. The worker (:func:`execute_run`) claims the run, loads the candles, builds
the signals instrument by instrument — publishing progress and checking for a cancel request
between instruments (at most every :data:`CHECK_EVERY` s) — simulates, computes the metrics
and stores trades, equity and metrics in one transaction.

States: ``queued`` → ``running`` → ``completed`` | ``failed`` | ``cancelled`` |
``timed_out``. PostgreSQL holds runs and results; Redis (``QUANTBEAT_REDIS_URL``) only the
live state: progress, ETA and the cancel flag (in-process with ``memory://``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
import redis
import structlog
from billiard.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticError
from sqlalchemy.orm import Session

from db.backtests import (
    FINAL_STATES,
    claim,
    create_run,
    finish,
    get_run,
    latest_completed,
    list_runs,
    load_equity,
    load_trades,
    request_cancel,
    requeue,
    set_progress,
    store_result,
)
from db.candles import (
    DailyBars,
    align,
    concat_bars,
    read_daily_bars,
    resolve_instrument,
    resolve_instruments,
    universe,
)
from db.engine import session_scope
from db.heartbeats import worker_dead_reason
from db.jobs import end_if_still_started, get_job_run
from db.outbox import add_message
from db.scans import data_version, load_flows
from db.store import iso_utc, unstorable_at
from quant.backtest.engine import Market, simulate
from quant.backtest.memory import MemoryEstimate, estimate_backtest_bytes, human_bytes, max_sessions
from quant.backtest.metrics import compute_metrics
from quant.backtest.strategies import Strategy
from quant.backtest.strategies import get as get_strategy
from quant.backtest.trade_kpis import trade_kpis
from quant.errors import ConfigError, NotFound, PermanentError, QuantbeatError, ValidationError
from quant.market.types import KRX_MARKETS
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.masking import mask_text
from quantbeat.infra.settings import get_settings
from quantbeat.infra.sources import latest_krx_session
from quantbeat.services import notify
from quantbeat.services.collect import collect_crypto_daily
from quantbeat.services.export import S3Target, artifacts_for, export_artifacts
from quantbeat.services.outbox import publish as publish_outbox
from quantbeat.services.strategies import scan_strategy, scan_strategy_names
from workers.app import app as worker_app
from workers.retry import as_transient

log = structlog.get_logger(__name__)

#: Seconds between cancel checks (and progress writes) while a run works: cancel takes
#: effect within this plus one instrument's work.
CHECK_EVERY = 0.2
#: Calendar days of candles loaded before ``start`` so indicators are warm at ``start``.
WARMUP_DAYS = 400
#: Live state lives this long in Redis after the last update (seconds).
STATE_TTL = 7 * 86_400
#: Most instruments one run may cover.
MAX_INSTRUMENTS = 5_000
#: Instruments whose candles are read in one query.
LOAD_CHUNK = 250
#: The task that executes a run.
TASK_NAME = "quantbeat.backtest.run"
#: The earliest ``start`` a spec may give (its warm-up reaches :data:`WARMUP_DAYS` before).
EARLIEST_START = dt.date(1900, 1, 1)


class BacktestSpec(BaseModel):
    """What to backtest. Prices and cash are in the instruments' currency (KRW).

    ``instruments``: ``MARKET:TICKER`` (or a bare ticker listed on one market). ``params``
    override the strategy's defaults; ``execution`` overrides its execution rules (fees,
    slippage, sizing, accounts, max_positions …, see :class:`quant.backtest.engine.
    ExecutionConfig`). ``soft_time_limit``/``time_limit`` in seconds (default: settings).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str = Field(max_length=64)
    instruments: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_INSTRUMENTS
    )
    start: dt.date = Field(ge=EARLIEST_START)
    end: dt.date
    initial_cash: float = Field(default=100_000_000.0, gt=0, allow_inf_nan=False)
    params: dict[str, Any] = Field(default_factory=dict)
    execution: dict[str, Any] = Field(default_factory=dict)
    soft_time_limit: int | None = Field(default=None, ge=1)
    time_limit: int | None = Field(default=None, ge=2)
    label: str | None = Field(default=None, max_length=200)

    @field_validator("strategy", "instruments", "params", "execution", "label")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        """Everything in the spec can be stored (PostgreSQL refuses NUL, lone surrogates and
        non-finite numbers in JSON)."""
        where = unstorable_at(value, info.field_name or "")
        if where is not None:
            raise ValueError(
                f"{where} holds a NUL character, a lone surrogate or a non-finite number"
            )
        return value


def parse_spec(data: Mapping[str, Any] | BacktestSpec) -> BacktestSpec:
    """A spec from a mapping (JSON), with errors naming the bad field.

    Raises:
        quant.errors.ValidationError: a missing, unknown or ill-typed field.
    """
    if isinstance(data, BacktestSpec):
        return data
    try:
        return BacktestSpec.model_validate(dict(data))
    except PydanticError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 200 else f"{shown[:200]}…"
        raise ValidationError(
            f"backtest spec field {where}: {first['msg']} (got {shown})",
            field=where,
            value=first.get("input"),
        ) from None


@dataclass(frozen=True)
class ResolvedSpec:
    """A validated spec with its instruments resolved to ``(id, "MARKET:TICKER")``."""

    spec: BacktestSpec
    instruments: list[tuple[int, str]]
    soft_time_limit: int
    time_limit: int

    def as_json(self) -> dict[str, Any]:
        data = self.spec.model_dump(mode="json")
        data["instruments"] = [name for _, name in self.instruments]
        data["soft_time_limit"] = self.soft_time_limit
        data["time_limit"] = self.time_limit
        return data


def validate_spec(
    spec: Mapping[str, Any] | BacktestSpec, *, today: dt.date | None = None
) -> ResolvedSpec:
    """Check everything a run needs before it is enqueued.

    Raises:
        quant.errors.ValidationError: unknown strategy, bad parameters or execution settings,
            ``start`` not before ``end``, ``end`` in the future, a time limit pair out of
            order, unknown instruments (all of them listed), or an estimated memory above
            ``QUANTBEAT_BACKTEST_MAX_BYTES`` (:func:`check_memory`).
    """
    parsed = parse_spec(spec)
    strategy = get_strategy(parsed.strategy)
    strategy.params(parsed.params)
    try:
        strategy.execution_with(parsed.execution)
    except ValidationError as exc:  # the engine names the setting alone: say where it is
        field = exc.field or "execution"
        if not field.startswith("execution"):
            field = f"execution.{field}"
        raise ValidationError(str(exc), field=field, value=exc.value) from None
    today = today or dt.date.today()
    if parsed.start >= parsed.end:
        raise ValidationError(
            f"backtest start {parsed.start} must be before end {parsed.end}", field="start"
        )
    if parsed.end > today:
        raise ValidationError(
            f"backtest end {parsed.end} is in the future (today is {today})", field="end"
        )
    settings = get_settings()
    soft = parsed.soft_time_limit or settings.backtest_soft_time_limit
    hard = parsed.time_limit or max(settings.backtest_time_limit, soft + 1)
    if soft >= hard:
        raise ValidationError(
            f"soft_time_limit {soft} s must be below time_limit {hard} s", field="time_limit"
        )
    if hard > settings.backtest_time_limit:
        raise ValidationError(
            f"time_limit {hard} s exceeds QUANTBEAT_BACKTEST_TIME_LIMIT "
            f"({settings.backtest_time_limit} s)",
            field="time_limit",
        )
    resolved: list[tuple[int, str]] = []
    unknown: list[str] = []
    seen: set[int] = set()
    with session_scope() as session:
        known = resolve_instruments(session, parsed.instruments)
        for name in parsed.instruments:
            try:
                ident, full = known[name] if name in known else resolve_instrument(session, name)
            except NotFound:
                unknown.append(name)
                continue
            except ValidationError as exc:  # a bare ticker on several markets
                raise ValidationError(str(exc), field="instruments", value=name) from None
            if ident not in seen:
                seen.add(ident)
                resolved.append((ident, full))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ValidationError(
            f"unknown instrument(s) in the backtest spec: {shown}{more}",
            field="instruments",
            value=unknown,
        )
    periods_per_year([name for _, name in resolved])  # one calendar per run
    check_memory(strategy, [name for _, name in resolved], parsed.start, parsed.end)
    return ResolvedSpec(parsed, resolved, soft, hard)


#: Markets that trade every day of the year (their daily bars are UTC days).
ALWAYS_OPEN_MARKETS = frozenset({"UPBIT"})


def periods_per_year(instruments: Sequence[str]) -> int:
    """The annualization of a run over ``instruments`` (``MARKET:TICKER``): 365 when every
    one trades 24/7 (crypto: a bar per calendar day), 252 for KRX sessions.

    Raises:
        quant.errors.ValidationError: crypto and KRX instruments mixed in one run (their
            calendars differ: a crypto column would be aligned to KRX sessions, or KRX
            columns padded with weekends).
    """
    crypto = sorted(n for n in instruments if n.split(":", 1)[0] in ALWAYS_OPEN_MARKETS)
    always = {name in crypto for name in instruments}
    if always == {True, False}:
        raise ValidationError(
            "a backtest covers either 24/7 crypto markets or KRX sessions, not both: "
            f"{', '.join(crypto[:5])} with KRX instruments",
            field="instruments",
            value=crypto[:5],
        )
    return 365 if always == {True} else 252


def memory_estimate(
    strategy: Strategy, instruments: Sequence[str], start: dt.date, end: dt.date
) -> MemoryEstimate:
    """The estimated memory of a run of ``strategy`` over ``instruments`` (``MARKET:TICKER``)
    from ``start`` (plus :data:`WARMUP_DAYS` before it) to ``end``: see
    :mod:`quant.backtest.memory`."""
    markets = {name.split(":", 1)[0] for name in instruments}
    bars = max_sessions(start - dt.timedelta(days=WARMUP_DAYS), end, markets)
    return estimate_backtest_bytes(
        bars,
        len(instruments),
        signal_bytes_per_cell=strategy.signal_bytes_per_cell,
        flows=strategy.needs_flows,
        load_chunk=LOAD_CHUNK,
    )


def check_memory(
    strategy: Strategy, instruments: Sequence[str], start: dt.date, end: dt.date
) -> MemoryEstimate:
    """:func:`memory_estimate`, refused above ``QUANTBEAT_BACKTEST_MAX_BYTES``.

    Raises:
        quant.errors.ValidationError: the estimate exceeds the limit (the message names the
            estimate, the limit, the instrument count and the span).
    """
    estimate = memory_estimate(strategy, instruments, start, end)
    limit = get_settings().backtest_max_bytes
    if estimate.peak > limit:
        raise ValidationError(
            f"backtest needs an estimated {human_bytes(estimate.peak)} ({estimate.peak:,} B) "
            f"of memory for {estimate.instruments:,} instruments x up to {estimate.bars:,} "
            f"sessions ({start} … {end} plus {WARMUP_DAYS} warm-up days), above "
            f"QUANTBEAT_BACKTEST_MAX_BYTES={limit:,} ({human_bytes(limit)}); shorten the span "
            "or split the instruments over several runs",
            field="instruments",
            value={
                "estimate_bytes": estimate.peak,
                "limit_bytes": limit,
                "instruments": estimate.instruments,
                "start": start.isoformat(),
                "end": end.isoformat(),
            },
        )
    return estimate


# --------------------------------------------------------------------------------------------
# Live state (Redis, or in-process for memory://)
# --------------------------------------------------------------------------------------------


class StateStore(Protocol):
    def update(self, run_id: str, fields: Mapping[str, Any]) -> None: ...
    def read(self, run_id: str) -> dict[str, str]: ...
    def request_cancel(self, run_id: str) -> None: ...
    def cancel_requested(self, run_id: str) -> bool: ...


class RedisState:
    """Live run state in Redis: hash ``qb:bt:{run_id}`` and flag ``qb:bt:{run_id}:cancel``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def update(self, run_id: str, fields: Mapping[str, Any]) -> None:
        key = f"qb:bt:{run_id}"
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(key, mapping={k: _text(v) for k, v in fields.items()})
        pipe.expire(key, STATE_TTL)
        pipe.execute()

    def read(self, run_id: str) -> dict[str, str]:
        raw = self._client.hgetall(f"qb:bt:{run_id}")
        return {_str(k): _str(v) for k, v in raw.items()}

    def request_cancel(self, run_id: str) -> None:
        self._client.set(f"qb:bt:{run_id}:cancel", "1", ex=STATE_TTL)

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self._client.exists(f"qb:bt:{run_id}:cancel"))


class MemoryState:
    """The same, in this process (the embedded run's worker threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, str]] = {}
        self._cancel: set[str] = set()

    def update(self, run_id: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            self._data.setdefault(run_id, {}).update({k: _text(v) for k, v in fields.items()})

    def read(self, run_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._data.get(run_id, {}))

    def request_cancel(self, run_id: str) -> None:
        with self._lock:
            self._cancel.add(run_id)

    def cancel_requested(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._cancel


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_stores: dict[str, StateStore] = {}
_stores_lock = threading.Lock()


def state_store(redis_url: str | None = None) -> StateStore:
    """The process-wide live-state store for ``redis_url`` (default: settings)."""
    url = redis_url or get_settings().redis_url
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            if url.startswith("memory://"):
                store = MemoryState()
            else:
                store = RedisState(
                    redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
                )
            _stores[url] = store
        return store


@after_fork
def forget_state_stores() -> None:
    """Drop cached clients (registered to run in every forked child)."""
    with _stores_lock:
        _stores.clear()


# --------------------------------------------------------------------------------------------
# Client API
# --------------------------------------------------------------------------------------------


def submit_backtest(
    spec: Mapping[str, Any] | BacktestSpec,
    *,
    origin: str = "api",
    app: Any = None,
    run_id: str | None = None,
) -> str:
    """Validate ``spec``, record the run as ``queued`` together with its task message (one
    transaction, :mod:`quantbeat.services.outbox`), then publish the message; returns the run
    id. If the broker cannot be reached the run stays ``queued`` with its message in the
    outbox, and the reaper's sweep publishes it within ``QUANTBEAT_OUTBOX_GRACE`` seconds of
    the broker's return: a committed run always reaches a worker.

    ``run_id`` (32 characters) is a business key: a run of that id recorded before is not
    recorded or sent again (its message is published if it is still waiting). Default: a
    new UUID4.

    Raises:
        quant.errors.ValidationError: the spec is invalid (nothing is recorded or enqueued).
        sqlalchemy errors: the database is unreachable (nothing is recorded or enqueued).
    """
    return _submit(validate_spec(spec), origin=origin, app=app, run_id=run_id)[0]


def _submit(
    resolved: ResolvedSpec, *, origin: str, app: Any, run_id: str | None
) -> tuple[str, bool]:
    """:func:`submit_backtest` of a validated spec: ``(run_id, created)`` (``created``
    ``False``: a run of that id was recorded before, and nothing new was)."""
    run_id = run_id or uuid.uuid4().hex
    task_id = f"backtest-{run_id}"
    with session_scope() as session:
        created = create_run(
            session,
            run_id,
            strategy=resolved.spec.strategy,
            spec=resolved.as_json(),
            total=len(resolved.instruments),
            origin=origin,
        )
        if created:
            add_message(
                session,
                task_id=task_id,
                task_name=TASK_NAME,
                args=[run_id],
                options={
                    "soft_time_limit": resolved.soft_time_limit,
                    "time_limit": resolved.time_limit,
                },
            )
    if created:
        _mirror(
            run_id,
            {
                "state": "queued",
                "done": 0,
                "total": len(resolved.instruments),
                "submitted": time.time(),
            },
        )
    sent = publish_outbox([task_id], app=app or worker_app)
    log.info("backtest.submitted", run_id=run_id, strategy=resolved.spec.strategy,
             instruments=len(resolved.instruments), created=created,
             published=bool(sent["published"]), waiting=bool(sent["failed"]))  # fmt: skip
    return run_id, created


#: Characters an idempotency key may hold (printable ASCII, no spaces), 1 to 200 of them.
IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,200}$")


def idempotent_run_id(owner: str, key: str) -> str:
    """The run id an idempotency ``key`` of ``owner`` (who submits: e.g. an API key's id)
    stands for: a UUID5 hex, the same for every submission with that owner and key, and
    different for different owners."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"quantbeat.backtest.idempotency|{owner}|{key}").hex


def submit_idempotent(
    spec: Mapping[str, Any] | BacktestSpec,
    *,
    key: str,
    owner: str,
    origin: str = "api",
    app: Any = None,
) -> tuple[str, bool]:
    """:func:`submit_backtest` under a client's idempotency ``key``: the first submission
    records and enqueues the run (id :func:`idempotent_run_id`), every later one with the
    same ``owner``, key and spec returns the same run id and records or sends nothing again.
    Returns ``(run_id, created)``.

    Raises:
        quant.errors.ValidationError: the spec is invalid; ``key`` is not 1–200 printable
            ASCII characters (field ``idempotency_key``); or the key was used before with a
            different spec (field ``idempotency_key``: nothing is recorded or enqueued).
    """
    if not isinstance(key, str) or not IDEMPOTENCY_KEY.match(key):
        shown = repr(key)[:80]
        raise ValidationError(
            f"idempotency key must be 1 to 200 printable ASCII characters without spaces, "
            f"got {shown}",
            field="idempotency_key",
            value=key if isinstance(key, str) and len(key) <= 200 else None,
        )
    resolved = validate_spec(spec)
    run_id, created = _submit(
        resolved, origin=origin, app=app, run_id=idempotent_run_id(owner, key)
    )
    if not created:
        with session_scope() as session:
            stored = dict(get_run(session, run_id).spec or {})
        if stored != resolved.as_json():
            raise ValidationError(
                f"idempotency key {key!r} was used before for backtest {run_id} with a "
                "different spec; use a new key for a new backtest",
                field="idempotency_key",
                value=key,
            )
    return run_id, created


def _mirror(run_id: str, fields: Mapping[str, Any]) -> None:
    """Write live state to Redis, best effort: PostgreSQL is the authority, and a Redis
    failure must not fail a call whose database work is committed."""
    try:
        state_store().update(run_id, fields)
    except Exception as exc:
        log.warning("backtest.state_not_mirrored", run_id=run_id,
                    error=f"{type(exc).__name__}: {exc}")  # fmt: skip


def nightly_run_id(backtest: str, trade_date: dt.date, days: int) -> str:
    """The run id of the nightly backtest of strategy ``backtest`` up to ``trade_date`` over
    ``days`` calendar days: a UUID5 hex, the same for every submission, so a nightly task that
    runs twice (a redelivery, a duplicate tick, an operator re-run) records and runs each
    backtest once."""
    key = f"quantbeat.backtest.nightly|{backtest}|{trade_date.isoformat()}|{days}"
    return uuid.uuid5(uuid.NAMESPACE_URL, key).hex


#: Calendar days the nightly backtest covers: the allowed range (default: settings).
NIGHTLY_DAYS_RANGE = (30, 7_300)


def nightly_backtests(
    trade_date: dt.date | None = None, days: int | None = None, *, app: Any = None
) -> dict[str, Any]:
    """The nightly walk-forward backtest: for each scheduled scan strategy that has a
    backtest counterpart (:func:`quantbeat.services.strategies.scan_strategy`), one run of
    that strategy over the whole listed KRX universe (KOSPI and KOSDAQ) from ``trade_date −
    days`` to ``trade_date`` (default: the latest KRX session and
    ``QUANTBEAT_BACKTEST_NIGHTLY_DAYS``), trading its *own daily signals*: each bar's signals
    use only the bars up to it (:mod:`quant.backtest.strategies`, the look-ahead tests), the
    engine fills them afterwards, with the dated sell tax. Nothing about ``trade_date``'s
    candidates selects the instruments (the run this replaces backtested the day's
    candidates over the previous two years: selection on the future), so a candidate chosen
    on the last day changes no earlier day's result. The universe is the instruments listed
    now (delisted ones are left out: a survivorship bias the report states).

    Each run's summary carries ``trade_kpis`` (:mod:`quant.backtest.trade_kpis`), the
    track record's KPI terms; :func:`nightly_expectations` reads them for the side-by-side
    view (expected vs realized). Submits with origin ``beat`` (``app``: the Celery app to
    send through, default :data:`workers.app.app`). Returns ``{"trade_date": ISO, "runs":
    {backtest strategy: run_id | None}, "errors": {backtest strategy: message}}`` (``None``:
    an empty universe or a refused spec, e.g. over the memory limit, with its message in
    ``errors``; the other strategies still run).

    Idempotent: each run's id is :func:`nightly_run_id` of its strategy, day and span, so
    running this twice for the same day records and runs each backtest once.

    Raises:
        quant.errors.ValidationError: ``days`` is not an integer in :data:`NIGHTLY_DAYS_RANGE`.
    """
    settings = get_settings()
    day = trade_date or latest_krx_session(settings)
    span = days if days is not None else settings.backtest_nightly_days
    low, high = NIGHTLY_DAYS_RANGE
    if not isinstance(span, int) or isinstance(span, bool) or not low <= span <= high:
        raise ValidationError(
            f"days must be an integer in [{low}, {high}], got {span!r}", field="days", value=span
        )
    markets = [m.value for m in KRX_MARKETS]
    with session_scope() as session:
        names = [name for _, name in universe(session, markets)]
    start = day - dt.timedelta(days=span)
    runs: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for name in scan_strategy_names():
        scan = scan_strategy(name)
        if scan.backtest is None or not scan.scheduled:
            continue
        if not names:
            runs[scan.backtest] = None
            errors[scan.backtest] = f"no listed {'/'.join(markets)} instruments"
            continue
        try:
            runs[scan.backtest] = submit_backtest(
                {
                    "strategy": scan.backtest,
                    "instruments": names,
                    "start": start.isoformat(),
                    "end": day.isoformat(),
                    "label": (
                        f"nightly walk-forward {name}: its daily signals over the "
                        f"{len(names)} listed {'+'.join(markets)} instruments, "
                        f"{start.isoformat()} … {day.isoformat()}"
                    )[:200],
                },
                origin="beat",
                app=app,
                run_id=nightly_run_id(scan.backtest, day, span),
            )
        except ValidationError as exc:
            runs[scan.backtest] = None
            errors[scan.backtest] = str(exc)
            log.error("backtest.nightly_refused", strategy=scan.backtest, error=str(exc))
    _nightly_crypto(day, span, settings, runs, errors, app)
    log.info("backtest.nightly", trade_date=day.isoformat(), runs=runs, errors=errors)
    return {"trade_date": day.isoformat(), "runs": runs, "errors": errors}


#: The backtest strategy of the crypto signal in the nightly walk-forward run.
CRYPTO_BACKTEST = "crypto_trend"


def _nightly_crypto(
    day: dt.date,
    span: int,
    settings: Any,
    runs: dict[str, str | None],
    errors: dict[str, str],
    app: Any,
) -> None:
    """The crypto leg of the nightly walk-forward run: :data:`CRYPTO_BACKTEST` over
    ``QUANTBEAT_CRYPTO_SIGNAL_MARKETS`` on UTC days up to the last closed one before
    ``day`` (the KRX session's UTC day is still open at the nightly's 20:30 KST), after
    collecting the daily crypto bars it reads (warm-up included)."""
    end = day - dt.timedelta(days=1)
    start = end - dt.timedelta(days=span)
    tickers = list(settings.crypto_signal_markets)
    names = [f"UPBIT:{t}" for t in tickers]
    try:
        collect_crypto_daily(start - dt.timedelta(days=WARMUP_DAYS), end, tickers=tickers)
        runs[CRYPTO_BACKTEST] = submit_backtest(
            {
                "strategy": CRYPTO_BACKTEST,
                "instruments": names,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "label": (
                    f"nightly walk-forward crypto signal (daily leg) over {', '.join(names)}, "
                    f"UTC days {start.isoformat()} … {end.isoformat()}, 365-day year"
                )[:200],
            },
            origin="beat",
            app=app,
            run_id=nightly_run_id(CRYPTO_BACKTEST, day, span),
        )
    except QuantbeatError as exc:
        runs[CRYPTO_BACKTEST] = None
        errors[CRYPTO_BACKTEST] = str(exc)
        log.error("backtest.nightly_refused", strategy=CRYPTO_BACKTEST, error=str(exc))


def nightly_expectations(
    backtest: str, trade_date: dt.date, days: int | None = None
) -> dict[str, Any]:
    """What the nightly walk-forward backtest of ``backtest`` (a backtest strategy name,
    e.g. ``vcp_breakout``) up to ``trade_date`` expects, in the track record's KPI terms —
    the *expected* column beside the live track record's *realized* one: ``{"run_id",
    "state", "start", "end", "kpis"}`` where ``kpis`` is the run's ``trade_kpis`` summary
    (:func:`quant.backtest.trade_kpis.trade_kpis`; ``None`` until the run has completed).

    Raises:
        quant.errors.NotFound: no nightly run of that strategy, day and span was recorded.
    """
    span = days if days is not None else get_settings().backtest_nightly_days
    run_id = nightly_run_id(backtest, trade_date, span)
    with session_scope() as session:
        run = get_run(session, run_id)
        state = run.state
        spec = dict(run.spec)
        summary = dict(run.summary or {})
    return {
        "run_id": run_id,
        "strategy": backtest,
        "state": state,
        "start": spec.get("start"),
        "end": spec.get("end"),
        "kpis": summary.get("trade_kpis") if state == "completed" else None,
    }


def latest_expectations(backtest: str) -> dict[str, Any] | None:
    """The newest completed nightly walk-forward run of ``backtest`` (a backtest strategy
    name) as :func:`nightly_expectations` returns it, ``None`` when there is none yet."""
    with session_scope() as session:
        run = latest_completed(session, backtest, origin="beat")
        if run is None:
            return None
        spec = dict(run.spec)
        return {
            "run_id": run.id,
            "strategy": backtest,
            "state": run.state,
            "start": spec.get("start"),
            "end": spec.get("end"),
            "kpis": dict(run.summary or {}).get("trade_kpis"),
        }


def status(run_id: str) -> dict[str, Any]:
    """The run's state, progress (fraction and ``n/m`` instruments), ETA (s), times (ISO 8601
    UTC), error (masked: :func:`quantbeat.infra.masking.mask_text`) and, once completed, its
    metrics.

    Raises:
        quant.errors.NotFound: no such run.
    """
    with session_scope() as session:
        run = get_run(session, run_id)
        row = {
            "run_id": run.id,
            "strategy": run.strategy,
            "state": run.state,
            "origin": run.origin,
            "attempts": run.attempts,
            "done": run.done,
            "total": run.total,
            "submitted_at": iso_utc(run.submitted_at),
            "started_at": iso_utc(run.started_at),
            "finished_at": iso_utc(run.finished_at),
            "duration_ms": run.duration_ms,
            "error": None if run.error is None else mask_text(run.error),
            "metrics": run.metrics,
            "summary": run.summary,
            "data_version": run.data_version,
            "label": (run.spec or {}).get("label"),
        }
    live = _live(run_id) if row["state"] not in FINAL_STATES else {}
    progress = 1.0 if row["state"] == "completed" else 0.0
    eta: float | None = 0.0 if row["state"] in FINAL_STATES else None
    phase = row["state"]
    if live:
        row["done"] = int(float(live.get("done", str(row["done"]))))
        row["total"] = int(float(live.get("total", str(row["total"]))))
        progress = float(live.get("progress", 0.0))
        eta = float(live["eta"]) if live.get("eta") not in (None, "", "null") else None
        phase = live.get("phase", phase)
    row["progress"] = round(progress, 4)
    row["instruments"] = f"{row['done']}/{row['total']}"
    row["eta_seconds"] = None if eta is None else round(eta, 1)
    row["phase"] = phase
    return row


def _live(run_id: str) -> dict[str, str]:
    """The run's live state, ``{}`` when the store cannot be read (logged): PostgreSQL is
    the authority, the live state only adds progress and ETA."""
    try:
        return state_store().read(run_id)
    except Exception as exc:
        log.warning("backtest.live_state_unreadable", run_id=run_id,
                    error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return {}


def live_progress(run_id: str, *, confirm: bool = False) -> dict[str, Any]:
    """The run's ``{"state", "progress", "eta_seconds"}`` (``progress`` a fraction 0–1,
    ``eta_seconds`` ``None`` while unknown) for a watcher polling it often: read from the
    live state alone (Redis, no database work) while that says the run is ``queued`` or
    ``running``; from PostgreSQL (:func:`status`) when the live state is missing (expired,
    lost, unreadable), says the run has ended, or ``confirm`` asks for the authority.

    Raises:
        quant.errors.NotFound: no such run (only when PostgreSQL is read).
    """
    live = {} if confirm else _live(run_id)
    if live.get("state") in ("queued", "running"):
        eta = _number(live.get("eta"))
        return {
            "state": live["state"],
            "progress": round(min(max(_number(live.get("progress")) or 0.0, 0.0), 1.0), 4),
            "eta_seconds": None if eta is None else round(max(eta, 0.0), 1),
        }
    row = status(run_id)
    return {k: row[k] for k in ("state", "progress", "eta_seconds")}


def progress_percent(fraction: Any) -> float:
    """A progress fraction (0–1; ``None`` as 0) as the percentage the API and the dashboard
    show: clamped to 0–100, two decimals."""
    return round(min(max(float(fraction or 0.0), 0.0), 1.0) * 100.0, 2)


def progress_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The live figures of a run as its server-sent events carry them — ``{"state",
    "progress" (percent, :func:`progress_percent`), "eta_s" (seconds, ``None`` while
    unknown)}`` — from a :func:`status` or :func:`live_progress` row (``progress`` a
    fraction, ``eta_seconds``)."""
    return {
        "state": row["state"],
        "progress": progress_percent(row.get("progress")),
        "eta_s": row.get("eta_seconds"),
    }


def _number(text: str | None) -> float | None:
    """A live-state figure as a finite float, ``None`` when absent or not one."""
    try:
        number = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def list_backtests(
    *, limit: int = 20, state: str | None = None, strategy: str | None = None
) -> list[dict[str, Any]]:
    """The newest runs first (id, strategy, state, instruments, submitted, key metrics)."""
    with session_scope() as session:
        runs = list_runs(session, limit=limit, state=state, strategy=strategy)
        return [
            {
                "run_id": r.id,
                "strategy": r.strategy,
                "state": r.state,
                "instruments": f"{r.done}/{r.total}",
                "submitted_at": iso_utc(r.submitted_at),
                "total_return": (r.metrics or {}).get("total_return"),
                "sharpe": (r.metrics or {}).get("sharpe"),
                "trades": (r.metrics or {}).get("trades"),
                "origin": r.origin,
            }
            for r in runs
        ]


def cancel(run_id: str, *, wait: float = 2.0, app: Any = None) -> str:
    """Cancel a run: a queued one at once (and its message revoked), a running one
    cooperatively — its worker stops at its next check — and a running one whose worker is
    dead (:func:`cancel_orphan`: its heartbeat is stale) at once, its message revoked. Waits
    up to ``wait`` seconds for the run to reach a final state and returns the state seen last.

    Raises:
        quant.errors.NotFound: no such run.
    """
    state_store().request_cancel(run_id)
    with session_scope() as session:
        state = request_cancel(session, run_id)
    if state == "running" and cancel_orphan(run_id):
        state = "cancelled"
    if state == "cancelled":
        state_store().update(run_id, {"state": "cancelled", "phase": "cancelled", "eta": 0})
        try:
            (app or worker_app).control.revoke(f"backtest-{run_id}")
        except Exception as exc:  # the DB state already stops it; revoking is an optimisation
            log.warning("backtest.revoke_failed", run_id=run_id, error=str(exc))
    deadline = time.monotonic() + wait
    while state not in FINAL_STATES and time.monotonic() < deadline:
        time.sleep(0.05)
        state = _db_state(run_id)
    return state


def cancel_orphan(run_id: str) -> bool:
    """End a ``running`` run ``cancelled`` when the worker that started it is dead (its
    heartbeat older than ``QUANTBEAT_WORKER_DEAD_AFTER``, stopped, or restarted since; see
    :func:`db.heartbeats.worker_dead_reason`): no worker will see its cancel flag. Its job
    run ends ``cancelled`` too, so the reaper does not send it again. Returns whether it
    was cancelled here (``False``: its worker is alive or unknown, or the run moved on)."""
    task_id = f"backtest-{run_id}"
    dead_after = get_settings().worker_dead_after
    with session_scope() as session:
        job = get_job_run(session, task_id)
        if job is None or job.state != "started":
            return False
        reason = worker_dead_reason(session, job.worker, job.started_at, dead_after=dead_after)
        if reason is None:
            return False
        error = f"cancelled while its worker was dead ({reason})"
        if not finish(session, run_id, state="cancelled", error=error):
            return False
        end_if_still_started(
            session,
            task_id=task_id,
            attempts=job.attempts,
            state="cancelled",
            error=error,
            finished_at=dt.datetime.now(dt.UTC),
        )
    log.info("backtest.cancelled_orphan", run_id=run_id, reason=reason)
    return True


def wait(run_id: str, *, timeout: float = 600.0, poll: float = 0.1) -> dict[str, Any]:
    """Poll until the run reaches a final state; returns :func:`status`.

    Raises:
        TimeoutError: still unfinished after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        current = status(run_id)
        if current["state"] in FINAL_STATES:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"backtest {run_id} still {current['state']} after {timeout:.0f} s "
                f"({current['instruments']} instruments)"
            )
        time.sleep(poll)


def _db_state(run_id: str) -> str:
    with session_scope() as session:
        return get_run(session, run_id).state


# --------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------


class RunCancelled(QuantbeatError):
    """Raised inside a run when its cancel flag is seen; :func:`execute_run` catches it and
    records the run ``cancelled`` (it never reaches a caller)."""


class Progress:
    """Publishes a run's progress and watches its cancel flag, at most every
    :data:`CHECK_EVERY` seconds (always on the first and the last instrument)."""

    def __init__(self, store: StateStore, run_id: str, total: int) -> None:
        self.store = store
        self.run_id = run_id
        self.total = total
        self.started = time.monotonic()
        self._last = 0.0
        self.done = 0

    def check(self) -> None:
        if self.store.cancel_requested(self.run_id):
            raise RunCancelled(self.run_id)

    def report(self, fraction: float, done: int, phase: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < CHECK_EVERY:
            return
        self._last = now
        self.check()
        self.done = done
        elapsed = now - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        self.store.update(
            self.run_id,
            {
                "state": "running",
                "phase": phase,
                "progress": round(fraction, 4),
                "done": done,
                "total": self.total,
                "eta": "null" if eta is None else round(eta, 2),
                "updated": time.time(),
            },
        )


@dataclass
class LoadedMarket:
    market: Any  # quant.backtest.engine.Market
    flows: dict[str, np.ndarray[Any, Any]]
    start_index: int


def load_market(
    instruments: Sequence[tuple[int, str]],
    start: dt.date,
    end: dt.date,
    *,
    flows: bool,
    on_instrument: Callable[[int], None] | None = None,
) -> LoadedMarket:
    """Daily candles of ``instruments`` from ``start − WARMUP_DAYS`` to ``end``, aligned on
    the union of their sessions (NaN where an instrument has no bar), plus their flows.

    Raises:
        quant.errors.ValidationError: no instrument has a candle in the range.
    """
    first = start - dt.timedelta(days=WARMUP_DAYS)
    ids = [ident for ident, _ in instruments]
    parts: list[DailyBars] = []
    with session_scope() as session:
        # by chunks, for progress (and a cancel check) while a big universe loads
        for at in range(0, len(ids), LOAD_CHUNK):
            parts.append(read_daily_bars(session, ids[at : at + LOAD_CHUNK], start=first, end=end))
            if on_instrument is not None:
                on_instrument(min(at + LOAD_CHUNK, len(ids)))
        bars = concat_bars(parts)
        flow_data: dict[int, dict[str, np.ndarray[Any, Any]]] = {}
        if flows:
            timed = {ident: bars.time[lo:hi] for ident, lo, hi in bars.spans()}
            keys = list(timed)
            # flows by chunks as well: their rows are Python objects while they are read
            for at in range(0, len(keys), LOAD_CHUNK):
                flow_data.update(
                    load_flows(session, {k: timed[k] for k in keys[at : at + LOAD_CHUNK]})
                )
    if not len(bars):
        raise ValidationError(
            f"no daily candles between {first} and {end} for the backtest's instruments",
            field="instruments",
        )
    times, rows, cols = align(bars, ids)
    n, m = len(times), len(instruments)
    columns = {}
    for key, values in bars.columns.items():
        matrix = np.full((n, m), np.nan)
        matrix[rows, cols] = values
        columns[key] = matrix
    flow_columns: dict[str, np.ndarray[Any, Any]] = {}
    if flow_data:
        # each instrument's flows are aligned to its bars: in span order they line up with
        # the bars' rows, and one scatter per figure places them all
        order = [ident for ident, _, _ in bars.spans()]
        for key in next(iter(flow_data.values())):
            matrix = np.full((n, m), np.nan)
            matrix[rows, cols] = np.concatenate([flow_data[ident][key] for ident in order])
            flow_columns[key] = matrix
    market = Market(
        times=times,
        symbols=tuple(name for _, name in instruments),
        # "MARKET:TICKER": the market decides the sell tax each sale pays
        markets=tuple(name.split(":", 1)[0] for _, name in instruments),
        **columns,
    )
    start_index = int(np.searchsorted(times, np.datetime64(start, "D")))
    return LoadedMarket(market, flow_columns, start_index)


#: The headline figures a ``backtest.finished`` event carries.
_EVENT_KPIS = ("total_return", "cagr", "sharpe", "max_drawdown", "win_rate", "trades")


def _announce(
    session: Any,
    run_id: str,
    state: str,
    *,
    spec: Mapping[str, Any],
    kpis: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Record ``backtest.finished`` for run ``run_id`` in ``session``'s transaction."""
    figures = {
        k: v
        for k, v in (kpis or {}).items()
        if k in _EVENT_KPIS and (v is None or isinstance(v, int | float))
    }
    notify.record(
        session,
        "backtest.finished",
        key=f"backtest.finished:{run_id}",
        payload={
            "run_id": run_id,
            "strategy": str(spec.get("strategy", "?")),
            "state": state,
            "start": spec.get("start"),
            "end": spec.get("end"),
            "kpis": figures,
            "error": None if error is None else mask_text(error)[:500],
        },
        simulated=get_settings().market_source == "simulated",
    )


def execute_run(run_id: str) -> dict[str, Any]:
    """Run one backtest in this worker (the body of ``quantbeat.backtest.run``).

    Idempotent: a finished run is left alone; a run redelivered after its worker died is
    taken over (``attempts`` + 1) and stores its result once. Returns ``{"run_id", "state",
    ...}``; soft time limit → ``timed_out``, cancel → ``cancelled``, bad data → ``failed``.
    """
    store = state_store()
    with session_scope() as session:
        claimed = claim(session, run_id)
        if claimed is None:  # finished already (a redelivery after the result was stored)
            return {"run_id": run_id, "state": get_run(session, run_id).state, "skipped": True}
        attempt, cancel_requested = claimed
        run = get_run(session, run_id)
        spec_json = dict(run.spec)
    store.update(
        run_id,
        {
            "state": "running",
            "attempt": attempt,
            "pid": os.getpid(),
            "started": time.time(),
            "phase": "starting",
            "progress": 0,
        },
    )
    log.info("backtest.started", run_id=run_id, attempt=attempt)
    tracker = Progress(store, run_id, len(spec_json["instruments"]))
    try:
        if cancel_requested:
            raise RunCancelled(run_id)
        tracker.check()
        result = _execute(run_id, spec_json, tracker, attempt)
    except RunCancelled:
        with session_scope() as session:
            finish(session, run_id, state="cancelled", attempt=attempt,
                   error="cancelled while running", done=tracker.done)  # fmt: skip
        store.update(run_id, {"state": "cancelled", "phase": "cancelled", "eta": 0})
        log.info("backtest.cancelled", run_id=run_id, done=tracker.done)
        return {"run_id": run_id, "state": "cancelled", "done": tracker.done}
    except SoftTimeLimitExceeded:
        with session_scope() as session:
            finish(session, run_id, state="timed_out", attempt=attempt,
                   error="soft time limit exceeded", done=tracker.done)  # fmt: skip
        store.update(run_id, {"state": "timed_out", "phase": "timed_out", "eta": 0})
        log.warning("backtest.timed_out", run_id=run_id, done=tracker.done)
        return {"run_id": run_id, "state": "timed_out", "done": tracker.done}
    except (ValidationError, NotFound) as exc:
        with session_scope() as session:
            finish(session, run_id, state="failed", attempt=attempt, error=str(exc)[:2000])
            _announce(session, run_id, "failed", error=str(exc), spec=spec_json)
        store.update(run_id, {"state": "failed", "phase": "failed", "eta": 0})
        log.error("backtest.failed", run_id=run_id, error=str(exc))
        return {"run_id": run_id, "state": "failed", "error": str(exc)}
    except Exception as exc:
        if as_transient(exc) is not None:
            raise  # retried with backoff by the base task; the next attempt takes over
        with session_scope() as session:
            finish(session, run_id, state="failed", attempt=attempt,
                   error=f"{type(exc).__name__}: {exc}"[:2000])  # fmt: skip
            _announce(session, run_id, "failed", error=f"{type(exc).__name__}: {exc}",
                      spec=spec_json)  # fmt: skip
        store.update(run_id, {"state": "failed", "phase": "failed", "eta": 0})
        raise
    with session_scope() as session:
        set_progress(session, run_id, tracker.total, tracker.total)
    return result


def _execute(
    run_id: str, spec_json: Mapping[str, Any], tracker: Progress, attempt: int
) -> dict[str, Any]:
    spec = parse_spec(spec_json)
    strategy = get_strategy(spec.strategy)
    params = strategy.params(spec.params)
    execution = strategy.execution_with(spec.execution)
    with session_scope() as session:
        known = resolve_instruments(session, spec.instruments)
        instruments = [
            known[name] if name in known else resolve_instrument(session, name)
            for name in spec.instruments
        ]
    # Again here: the limit may have been lowered since the run was submitted.
    check_memory(strategy, [name for _, name in instruments], spec.start, spec.end)
    m = len(instruments)
    tracker.report(0.0, 0, "loading", force=True)
    loaded = load_market(
        instruments,
        spec.start,
        spec.end,
        flows=strategy.needs_flows,
        on_instrument=lambda i: tracker.report(0.3 * i / m, 0, "loading"),
    )
    market = loaded.market
    signals = strategy.signals(
        market,
        params,
        loaded.flows,
        progress=lambda done, total: tracker.report(0.3 + 0.6 * done / total, done, "signals"),
    )
    tracker.report(0.9, m, "simulating", force=True)
    if loaded.start_index > 0:  # warm-up bars feed indicators only: no trades before start
        signals.entries[: loaded.start_index] = False
    result = simulate(market, signals, execution, initial_cash=spec.initial_cash)
    s = loaded.start_index
    times = market.times[s:]
    equity = result.equity[s:]
    prev = np.concatenate(([result.initial_cash], equity[:-1]))
    returns = equity / prev - 1.0
    trades = result.trade_rows()
    closed_pnl = np.array([t["pnl"] for t in trades if t["exit_time"] is not None])
    closed_returns = [t["return_pct"] for t in trades if t["exit_time"] is not None]
    ppy = periods_per_year([name for _, name in instruments])
    metrics = compute_metrics(returns, times, closed_pnl, periods_per_year=ppy).as_dict()
    open_trades = sum(1 for t in trades if t["exit_time"] is None)
    summary = {
        "initial_cash": result.initial_cash,
        "final_equity": float(equity[-1]) if len(equity) else result.initial_cash,
        "sessions": len(times),
        "first_day": str(times[0]) if len(times) else None,
        "last_day": str(times[-1]) if len(times) else None,
        "closed_trades": len(closed_pnl),
        "open_trades": open_trades,
        # costs paid by the closed trades (currency units): fees include the sell tax
        "fees_paid": sum(t["fees"] for t in trades if t["exit_time"] is not None),
        "tax_paid": sum(t["tax"] for t in trades if t["exit_time"] is not None),
        # the closed trades in the track record's KPI terms (net returns after costs and tax)
        "trade_kpis": trade_kpis(closed_returns),
        "instruments": m,
        "periods_per_year": ppy,
        "fill": execution.fill,
        "execution": execution.as_dict(),
        "params": params,
        "notes": {k: v for k, v in signals.notes.items()},
    }
    tracker.report(0.95, m, "storing", force=True)
    curve = [
        (dt.date.fromisoformat(str(d)), float(e), int(p))
        for d, e, p in zip(times, equity, result.in_market[s:], strict=True)
    ]
    with session_scope() as session:
        version = data_version(session, spec.end)
        stored = store_result(
            session,
            run_id,
            attempt=attempt,
            metrics=metrics,
            summary=summary,
            trades=trades,
            equity=curve,
            data_version=version,
            total=m,
        )
        if stored:
            _announce(session, run_id, "completed", kpis=metrics, spec=spec_json)
    if not stored:
        # Cancelled (the flag may be in PostgreSQL only, if Redis lost it) or taken over by a
        # later attempt, which then decides the outcome.
        tracker.check()
        with session_scope() as session:
            if get_run(session, run_id).cancel_requested:
                raise RunCancelled(run_id)
        log.warning("backtest.result_not_stored", run_id=run_id, attempt=attempt)
        return {"run_id": run_id, "state": "superseded", "attempt": attempt}
    tracker.store.update(
        run_id, {"state": "completed", "phase": "completed", "progress": 1, "done": m, "eta": 0}
    )
    log.info("backtest.completed", run_id=run_id, trades=len(trades),
             total_return=metrics.get("total_return"))  # fmt: skip
    return {
        "run_id": run_id,
        "state": "completed",
        "trades": len(trades),
        "total_return": metrics.get("total_return"),
        "sharpe": metrics.get("sharpe"),
        "final_equity": summary["final_equity"],
    }


def on_hard_time_limit(args: Any, kwargs: Any) -> None:
    """Called in the worker's parent when the hard limit killed a run's child (the task's
    ``(args, kwargs)``; the run id is ``args[0]`` or ``kwargs["run_id"]``): the run becomes
    ``timed_out`` (its child can no longer say so). Anything else is ignored."""
    run_id = (list(args or []) or [None])[0] or (kwargs or {}).get("run_id")
    if not isinstance(run_id, str):
        return
    with session_scope() as session:
        finish(session, run_id, state="timed_out", error="hard time limit: worker process killed")
    state_store().update(run_id, {"state": "timed_out", "phase": "timed_out", "eta": 0})


def on_worker_lost(
    session: Session, args: Any, kwargs: Any, outcome: str, reason: str
) -> Callable[[], None] | None:
    """Called by the reaper, in the transaction that gives up the job run, when the worker
    running a run died (the task's ``(args, kwargs)``; ``outcome`` ``"requeued"`` or
    ``"lost"``, see :func:`workers.base.on_worker_lost`): the run's row stops saying
    ``running`` in that same transaction — ``requeued``: back to ``queued`` (``re-queued:
    <reason>``) until the next attempt claims it; ``lost``: ``failed``. Returns the action
    that updates the live state once committed (``None``: nothing changed). A run that is
    no longer ``running`` (finished, cancelled), or arguments without a run id, are left
    alone."""
    run_id = (list(args or []) or [None])[0] or (kwargs or {}).get("run_id")
    if not isinstance(run_id, str):
        return None
    if outcome == "requeued":
        changed = requeue(session, run_id, note=f"re-queued: {reason}")
        fields: dict[str, Any] = {
            "state": "queued",
            "phase": f"re-queued: {reason}",
            "progress": 0,
            "eta": "null",
        }
    else:
        changed = finish(session, run_id, state="failed", error=f"worker lost: {reason}")
        fields = {"state": "failed", "phase": "failed", "eta": 0}
    if not changed:
        return None

    def publish() -> None:
        state_store().update(run_id, fields)
        log.warning("backtest.worker_lost", run_id=run_id, outcome=outcome, reason=reason)

    return publish


def on_child_killed(args: Any, kwargs: Any) -> None:
    """Called in the worker's parent when the children running a run were SIGKILLed
    ``QUANTBEAT_MAX_CHILD_KILLS`` times (most likely out of memory) and its message is
    dead-lettered: the run becomes ``failed``, with that error. Anything else is ignored."""
    run_id = (list(args or []) or [None])[0] or (kwargs or {}).get("run_id")
    if not isinstance(run_id, str):
        return
    error = (
        "worker process killed (SIGKILL), most likely out of memory: shorten the span or "
        "split the instruments over several runs"
    )
    with session_scope() as session:
        finish(session, run_id, state="failed", error=error)
    state_store().update(run_id, {"state": "failed", "phase": "failed", "eta": 0})


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    png: Path | None
    exported: list[str]


def report_data(run_id: str) -> Any:
    """The run's :class:`quant.backtest.report.ReportData` (from PostgreSQL).

    Raises:
        quant.errors.NotFound: no such run.
        quant.errors.ValidationError: the run has not completed (no result to report).
    """
    from quant.backtest.report import ReportData  # noqa: PLC0415 (matplotlib: reports only)

    with session_scope() as session:
        run = get_run(session, run_id)
        if run.state != "completed":
            raise ValidationError(
                f"backtest {run_id} is {run.state}: only a completed run has a report",
                field="run_id",
                value=run_id,
            )
        spec = dict(run.spec)
        metrics = dict(run.metrics or {})
        summary = dict(run.summary or {})
        version = run.data_version
        trades = load_trades(session, run_id)
        curve = load_equity(session, run_id)
    instruments = spec.get("instruments", [])
    try:
        strategy_title = get_strategy(spec["strategy"]).title
    except ValidationError:  # a strategy no longer registered: its stored name says enough
        strategy_title = str(spec["strategy"])
    title = (
        f"{strategy_title} — "
        f"{instruments[0] if len(instruments) == 1 else f'{len(instruments)} instruments'} — "
        f"{spec['start']} … {spec['end']}"
    )
    shown_spec = {k: v for k, v in spec.items() if k != "instruments"}
    shown_spec["instruments"] = (
        ", ".join(instruments) if len(instruments) <= 10 else f"{len(instruments)} instruments"
    )
    metrics.update(
        {
            "final_equity": summary.get("final_equity"),
            "open_trades": summary.get("open_trades"),
            "total_fees": summary.get("fees_paid"),
            "sell_tax": summary.get("tax_paid"),
        }
    )
    return ReportData(
        run_id=run_id,
        title=title,
        times=np.array([d for d, _, _ in curve], dtype="datetime64[D]"),
        equity=np.array([e for _, e, _ in curve], dtype=np.float64),
        metrics=metrics,
        trades=trades,
        spec=shown_spec,
        data_version=version,
        simulated=get_settings().market_source == "simulated",
    )


def write_report(
    run_id: str,
    *,
    directory: Path | None = None,
    png: bool = True,
    export: str | None = None,
) -> ReportFiles:
    """Render the run's report (self-contained HTML, and a PNG) into ``directory`` (default:
    settings' report directory) and, with ``export`` (``s3://bucket/prefix``) or
    ``QUANTBEAT_BACKTEST_EXPORT_URL``, upload the artifacts there.

    Raises:
        quant.errors.NotFound / ValidationError: as :func:`report_data`.
        quant.errors.ValidationError: ``export`` is not an ``s3://bucket[/prefix]`` URL
            (checked before anything is rendered).
        quant.errors.ConfigError: ``QUANTBEAT_BACKTEST_EXPORT_URL`` is not such a URL.
        quantbeat.services.export.ExportError: the upload failed (a ``ConfigError``,
            ``TransientError`` or ``PermanentError`` by cause, see that class).
    """
    settings = get_settings()
    target = _export_target(export, settings.backtest_export_url, settings.s3_endpoint_url)
    data = report_data(run_id)
    html = _render_html(data)
    png_bytes = _render_png(data) if png else None
    target_dir = directory or settings.reports_path
    target_dir.mkdir(parents=True, exist_ok=True)
    html_path = _write_atomic(target_dir / f"backtest-{run_id}.html", html.encode("utf-8"))
    png_path = None
    if png_bytes is not None:
        png_path = _write_atomic(target_dir / f"backtest-{run_id}.png", png_bytes)
    exported: list[str] = []
    if target is not None:
        artifacts = artifacts_for(
            html, png_bytes, _trades_csv(data.trades), _equity_csv(data), data.metrics
        )
        exported = export_artifacts(run_id, artifacts, target)
    return ReportFiles(html_path, png_path, exported)


def _render_html(data: Any) -> str:
    """The self-contained HTML report of ``data`` (a ``ReportData``)."""
    from quant.backtest.report import render_html  # noqa: PLC0415 (matplotlib: reports only)

    return render_html(data)


def _render_png(data: Any) -> bytes:
    """The PNG chart of ``data`` (a ``ReportData``)."""
    from quant.backtest.report import render_png  # noqa: PLC0415 (matplotlib: reports only)

    return render_png(data)


def _write_atomic(path: Path, content: bytes) -> Path:
    """Write ``content`` to ``path`` through a temporary file renamed over it: a reader (a
    concurrent request for the same report) sees the whole file or none."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(content)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


class RunNotFinished(PermanentError):
    """A completed run's artifact was asked of a run that has not completed: still queued
    or running (not finished yet), or ended failed, cancelled or timed out (no result)."""


@dataclass(frozen=True)
class ReportFile:
    """One report artifact: its bytes, media type and a file name for it."""

    content: bytes
    media_type: str
    filename: str


#: The formats :func:`report_file` serves, with their media types.
REPORT_FORMATS: Mapping[str, str] = {
    "html": "text/html; charset=utf-8",
    "png": "image/png",
    "csv": "text/csv; charset=utf-8",
}
#: The tables the ``csv`` format serves.
CSV_TABLES = ("trades", "equity")


def report_file(run_id: str, fmt: str = "html", *, table: str = "trades") -> ReportFile:
    """A completed run's report as ``fmt``: ``html`` or ``png``, the files
    :func:`write_report` writes into the report directory (rendered and written there now,
    without any export, when missing: a completed run's result never changes); ``csv``, its
    trades (``table="trades"``, the columns of the exported ``trades.csv``) or its daily
    equity (``table="equity"``), from PostgreSQL.

    Raises:
        quant.errors.ValidationError: an unknown ``fmt`` (field ``format``) or ``table``
            (field ``table``).
        quant.errors.NotFound: no such run.
        RunNotFinished: the run is queued or running (not finished yet), or ended without
            a result (failed, cancelled, timed out).
    """
    if fmt not in REPORT_FORMATS:
        raise ValidationError(
            f"report format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}",
            field="format",
            value=fmt,
        )
    if table not in CSV_TABLES:
        raise ValidationError(
            f"report table must be one of {', '.join(CSV_TABLES)}, got {table!r}",
            field="table",
            value=table,
        )
    with session_scope() as session:
        state = get_run(session, run_id).state
    if state not in FINAL_STATES:
        raise RunNotFinished(
            f"backtest {run_id} is {state}, not finished yet: its report exists once it has "
            "completed"
        )
    if state != "completed":
        raise RunNotFinished(f"backtest {run_id} ended {state}: only a completed run has a report")
    if fmt == "csv":
        data = report_data(run_id)
        text = _trades_csv(data.trades) if table == "trades" else _equity_csv(data)
        return ReportFile(
            text.encode("utf-8"), REPORT_FORMATS["csv"], f"backtest-{run_id}-{table}.csv"
        )
    directory = get_settings().reports_path
    path = directory / f"backtest-{run_id}.{fmt}"
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        data = report_data(run_id)
        content = _render_html(data).encode("utf-8") if fmt == "html" else _render_png(data)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, content)
    return ReportFile(content, REPORT_FORMATS[fmt], path.name)


def _export_target(
    export: str | None, configured: str | None, endpoint_url: str | None
) -> S3Target | None:
    """Where to export: ``export`` (an option) or else ``configured`` (the setting)."""
    url = export or configured
    if not url:
        return None
    try:
        return S3Target.parse(url, endpoint_url=endpoint_url)
    except ValueError as exc:
        if export:
            raise ValidationError(str(exc), field="export", value=export) from None
        raise ConfigError(f"QUANTBEAT_BACKTEST_EXPORT_URL: {exc}") from None


def _trades_csv(trades: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    fields = [
        "symbol",
        "entry_time",
        "exit_time",
        "entry_price",
        "exit_price",
        "quantity",
        "fees",
        "pnl",
        "return_pct",
        "exit_reason",
    ]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in trades:
        writer.writerow(row)
    return out.getvalue()


def _equity_csv(data: Any) -> str:
    lines = ["day,equity"]
    lines += [f"{d},{e:.6f}" for d, e in zip(data.times.astype(str), data.equity, strict=True)]
    return "\n".join(lines) + "\n"


def finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` for NaN/inf/None."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None
