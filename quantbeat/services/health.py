"""Health of a quantbeat deployment: ``quantbeat health``, the ``quantbeat.ops.health`` task and
the HTTP endpoint of ``quantbeat health serve`` all report what :func:`check_health` returns.

Components (each ``healthy``, ``warning`` or ``unhealthy``, with its latency and a sentence
naming the reason):

==================  =========================================================================
``database``        ``SELECT 1`` and its latency (slower than :data:`DB_SLOW_MS`: warning)
``broker``          a ping of the broker (Redis ``PING``; other transports: a connection)
``result_backend``  a ping of the result backend (Redis)
``workers``         ping, then per live worker its queues, active and reserved tasks; per queue
                    its length. A queue no live worker consumes is unhealthy.
``beat``            age of beat's last tick (:data:`BEAT_TICK_KEY`): up to 90 s healthy, up to
                    300 s warning, older or missing unhealthy
``data_freshness``  latest stored candle/flow date vs the KRX session whose data should be in
                    (and the latest hourly crypto bar vs the last closed hour): up to date
                    healthy, one behind warning, more unhealthy, nothing stored warning
``signals``         the latest scan run of every registered scan strategy
                    (:func:`quantbeat.services.strategies.scan_strategy_names`) vs the last
                    trading day
``ai``              Gemini configured (else the offline analyzer: healthy), cooldown (warning),
                    today's quota used (80 %: warning, all: unhealthy)
``outbox``          task messages committed with their rows (backtest runs) but still not
                    published ``QUANTBEAT_OUTBOX_GRACE`` seconds later (warning naming how
                    many; the reaper's sweep publishes them)
``snapshots``       intraday snapshots during a KRX session: the latest at most two
                    ``QUANTBEAT_SNAPSHOT_EVERY`` intervals old (else warning); healthy
                    outside sessions
``spool``           this host's spool (:mod:`quantbeat.infra.spool`): history records workers
                    could not write to the database, waiting for the reaper (warning naming
                    how many), and corrupt files kept aside (warning)
``crypto_jobs``     the latest successful run of each crypto job (:data:`CRYPTO_JOBS`: the
                    volatility check every 5 min) at most two periods old (else, or none
                    yet, warning)
==================  =========================================================================

The overall state is ``unhealthy`` when a critical component (:data:`CRITICAL_COMPONENTS`) is
unhealthy, ``degraded`` when any other component is unhealthy or any is a warning, else
``healthy``; exit codes 0, 1 and 2 (:data:`EXIT_CODES`).

Checks run concurrently, each in a daemon thread, and the report is built when all finished or
the timeout passed: a check still running then is reported unhealthy ("did not finish within
… s"), so a dead service never makes the report wait for socket timeouts. Errors are reported
as masked one-line messages (:func:`quantbeat.infra.masking.mask_text`), never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import redis
from kombu.connection import Connection
from kombu.transport.redis import PRIORITY_STEPS, Channel
from sqlalchemy import Engine, and_, create_engine, func, select, text
from sqlalchemy.engine import make_url

from beat_schedule import KRX_DAILY_AT, KRX_FLOWS_AT
from db.engine import display_url, get_engine
from db.models import DailyCandle, Instrument, IntradayCandle, InvestorFlow, JobRun, ScanRun
from quant.calendar import TradingCalendar, latest_closed_session
from quant.errors import ValidationError
from quant.market.types import Market
from quantbeat.infra import spool
from quantbeat.infra.ai_quota import AiLimiter, seconds_to_reset
from quantbeat.infra.forkstate import after_fork
from quantbeat.infra.keys import BEAT_TICK_KEY
from quantbeat.infra.masking import mask_text
from quantbeat.infra.profile import Mode, resolve_mode
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.infra.sources import KRX_CALENDAR_SPAN, krx_calendar
from quantbeat.services.outbox import unpublished as unpublished_messages
from quantbeat.services.snapshots import snapshot_age
from quantbeat.services.strategies import scan_strategy, scan_strategy_names
from workers.app import app as worker_app
from workers.queues import Queue

# Beat writes the epoch seconds of every tick to BEAT_TICK_KEY (quantbeat.infra.keys) in
# QUANTBEAT_REDIS_URL; the beat component reports their age.
#: Beat ticks at least every 30 s; these ages (seconds) bound healthy and warning.
BEAT_HEALTHY_AGE_S = 90.0
BEAT_WARNING_AGE_S = 300.0
#: A ``SELECT 1`` slower than this (milliseconds) is a warning.
DB_SLOW_MS = 500.0
#: After the scheduled collection time, how long the pipeline has to store the day's data.
DATA_GRACE = dt.timedelta(minutes=30)
#: After the scheduled collection time, how long until the day's scan should have run.
SCAN_GRACE = dt.timedelta(minutes=60)


def scan_due_after(strategy: str) -> tuple[int, int]:
    """When the pipeline that runs ``strategy``'s scan starts (local time): after the flows
    (beat ``krx-flows``) for a strategy that reads investor flows, else after the close
    (``krx-close``); its scan is due :data:`SCAN_GRACE` later."""
    return KRX_FLOWS_AT if scan_strategy(strategy).evaluator.flows else KRX_DAILY_AT


#: A scan still ``running`` longer than this is a warning.
SCAN_RUNNING_WARNING = dt.timedelta(hours=1)
#: Hourly crypto bars are collected at minute 2; the last closed hour is expected after this.
CRYPTO_GRACE = dt.timedelta(minutes=15)
#: Interval of the crypto bars beat collects (beat_schedule: hourly ``60m``).
CRYPTO_INTERVAL = "60m"
#: Share of the daily Gemini quota from which the ai component is a warning.
AI_QUOTA_WARNING = 0.8
#: Default seconds the whole check may take.
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 120.0
#: Components whose failure makes the deployment unhealthy (not just degraded).
CRITICAL_COMPONENTS = frozenset({"database", "broker", "result_backend", "workers"})


class Status(StrEnum):
    """A component's state."""

    HEALTHY = "healthy"
    WARNING = "warning"
    UNHEALTHY = "unhealthy"


class Overall(StrEnum):
    """The deployment's state."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_SEVERITY = {Status.HEALTHY: 0, Status.WARNING: 1, Status.UNHEALTHY: 2}
#: Process exit code per overall state (``quantbeat health``).
EXIT_CODES: dict[Overall, int] = {Overall.HEALTHY: 0, Overall.DEGRADED: 1, Overall.UNHEALTHY: 2}


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe of ``statuses`` (healthy for none)."""
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.HEALTHY)


@dataclass(frozen=True)
class ComponentHealth:
    """One component's state. ``latency_ms``: how long its probe took (milliseconds);
    ``message``: a sentence naming the reason; ``details``: JSON-safe facts behind it."""

    name: str
    status: Status
    message: str
    latency_ms: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def critical(self) -> bool:
        """True if this component being unhealthy makes the deployment unhealthy."""
        return self.name in CRITICAL_COMPONENTS

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``status``, ``critical``, ``latency_ms``, ``message``, ``details``."""
        return {
            "status": self.status.value,
            "critical": self.critical,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "message": self.message,
            "details": dict(self.details),
        }


def overall_status(components: Sequence[ComponentHealth]) -> Overall:
    """Unhealthy if a critical component is unhealthy; degraded if anything else is not
    healthy; healthy otherwise."""
    if any(c.critical and c.status is Status.UNHEALTHY for c in components):
        return Overall.UNHEALTHY
    if any(c.status is not Status.HEALTHY for c in components):
        return Overall.DEGRADED
    return Overall.HEALTHY


@dataclass(frozen=True)
class HealthReport:
    """Every component's state at ``checked_at`` (UTC); ``duration_ms`` for the whole check."""

    components: tuple[ComponentHealth, ...]
    checked_at: dt.datetime
    duration_ms: float

    @property
    def status(self) -> Overall:
        return overall_status(self.components)

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 unhealthy."""
        return EXIT_CODES[self.status]

    def component(self, name: str) -> ComponentHealth:
        """The component called ``name``; raises KeyError if there is none."""
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def reasons(self) -> list[str]:
        """``"<component>: <message>"`` for every component that is not healthy, unhealthy
        (critical first) before warnings."""
        bad = [c for c in self.components if c.status is not Status.HEALTHY]
        bad.sort(key=lambda c: (-_SEVERITY[c.status], not c.critical))
        return [f"{c.name}: {c.message}" for c in bad]

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``status``, ``exit_code``, ``checked_at`` (ISO, UTC),
        ``duration_ms``, ``reasons`` and ``components`` (name → :meth:`ComponentHealth.as_dict`)."""
        return {
            "status": self.status.value,
            "exit_code": self.exit_code,
            "checked_at": self.checked_at.isoformat(),
            "duration_ms": round(self.duration_ms, 1),
            "reasons": self.reasons,
            "components": {c.name: c.as_dict() for c in self.components},
        }


@dataclass(frozen=True)
class CheckContext:
    """What every check gets: the settings, its time budget (seconds) and the moment checked
    (aware, UTC)."""

    settings: Settings
    timeout: float
    now: dt.datetime

    @property
    def io_timeout(self) -> float:
        """Socket timeout for one probe (seconds): under the check's budget, so a silent
        service is reported with its own error rather than as a timed-out check."""
        return max(0.2, self.timeout * 0.8)


Check = Callable[[CheckContext], ComponentHealth]


# --- running the checks -------------------------------------------------------------------------
def describe_error(exc: BaseException) -> str:
    """One masked line for an error: its type and message (a SQLAlchemy error's driver error,
    without the SQL and the link SQLAlchemy appends)."""
    inner = getattr(exc, "orig", None)
    shown = inner if isinstance(inner, BaseException) else exc
    text = " ".join(str(shown).split()) or "(no message)"
    # Masked before the type is prefixed: "OSError: password=x" would read as the pair
    # ("OSError", "password=x") and leave x visible.
    return f"{type(shown).__name__}: {mask_text(text)}"[:500]


def check_timeout(value: object, *, field: str = "timeout") -> float:
    """``value`` as a timeout in seconds (0 < t ≤ 120); raises ValidationError otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))  # an int may exceed float
    ):
        raise ValidationError(f"{field} must be a number of seconds, got {value!r}", field=field)
    if not 0 < value <= MAX_TIMEOUT:
        raise ValidationError(
            f"{field} must be above 0 and at most {MAX_TIMEOUT:g} s, got {value!r}",
            field=field,
            value=value,
        )
    return float(value)


def run_checks(
    checks: Sequence[tuple[str, Check]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    settings: Settings | None = None,
    now: dt.datetime | None = None,
) -> HealthReport:
    """Run ``checks`` concurrently and return the report within about ``timeout`` seconds.

    A check that raises is reported unhealthy with the masked error; one still running when
    ``timeout`` passes is reported unhealthy as timed out (its daemon thread is abandoned).
    A check's ``latency_ms`` is its own if it set one, else how long it ran.

    Raises:
        quant.errors.ValidationError: ``timeout`` is not in (0, 120].
    """
    budget = check_timeout(timeout)
    ctx = CheckContext(settings or get_settings(), budget, now or dt.datetime.now(dt.UTC))
    results: dict[str, ComponentHealth] = {}
    lock = threading.Lock()
    started = time.perf_counter()

    def run_one(name: str, check: Check) -> None:
        t0 = time.perf_counter()
        try:
            found = replace(check(ctx), name=name)
        except Exception as exc:
            found = ComponentHealth(name, Status.UNHEALTHY, f"check failed: {describe_error(exc)}")
        if found.latency_ms is None:
            found = replace(found, latency_ms=(time.perf_counter() - t0) * 1000.0)
        with lock:
            results[name] = found

    threads = [
        threading.Thread(target=run_one, args=(name, check), name=f"health-{name}", daemon=True)
        for name, check in checks
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        done = dict(results)
    components = tuple(
        done.get(name)
        or ComponentHealth(
            name,
            Status.UNHEALTHY,
            f"{name} check did not finish within {budget:g} s",
            latency_ms=budget * 1000.0,
            details={"timed_out": True},
        )
        for name, _ in checks
    )
    return HealthReport(components, ctx.now, (time.perf_counter() - started) * 1000.0)


def check_health(
    settings: Settings | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    now: dt.datetime | None = None,
) -> HealthReport:
    """Every default check (:data:`DEFAULT_CHECKS`; on the embedded profile
    :data:`EMBEDDED_CHECKS`) within ``timeout`` seconds; see :func:`run_checks`. Modules and
    the KRX calendar are loaded first, outside the timeout: the timeout is for services that
    do not answer, not for a cold start."""
    _warm_up()
    settings = settings or get_settings()
    checks = EMBEDDED_CHECKS if resolve_mode(settings) is Mode.EMBEDDED else DEFAULT_CHECKS
    return run_checks(checks, timeout=timeout, settings=settings, now=now)


def _warm_up() -> None:
    krx_calendar()


# --- clients --------------------------------------------------------------------------------------
def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _redis(url: str, timeout: float) -> Any:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _ping_redis(url: str, timeout: float) -> float:
    """PING the Redis at ``url``; returns the round trip in milliseconds (raises on failure)."""
    client = _redis(url, timeout)
    try:
        t0 = time.perf_counter()
        client.ping()
        return (time.perf_counter() - t0) * 1000.0
    finally:
        client.close()


_engines: dict[tuple[str, int], Engine] = {}
_engines_lock = threading.Lock()


def _engine(url: str, timeout: float) -> Engine:
    """A small engine of its own per URL, with connect and statement timeouts, so health
    checks neither wait on the application's pool nor hang on a dead server."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return get_engine(url)
    seconds = max(1, math.ceil(timeout))
    key = (url, seconds)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            connect_args: dict[str, Any] = {}
            if backend == "postgresql":
                connect_args = {
                    "connect_timeout": seconds,
                    "options": f"-c statement_timeout={seconds * 1000}",
                }
            engine = create_engine(
                url,
                pool_size=1,
                max_overflow=2,
                pool_timeout=seconds,
                pool_pre_ping=True,
                pool_recycle=600,
                connect_args=connect_args,
            )
            _engines[key] = engine
        return engine


def forget_engines() -> None:
    """Dispose of the health checks' engines (tests)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@after_fork
def forget_engines_after_fork() -> None:
    """Drop the health checks' engines in a forked child without touching their pooled
    connections: those sockets are the parent's (the driver does not close a connection
    opened by another process when it is garbage-collected)."""
    with _engines_lock:
        _engines.clear()


# --- database, broker, result backend -------------------------------------------------------------
def check_database(ctx: CheckContext) -> ComponentHealth:
    """``SELECT 1`` on ``QUANTBEAT_DATABASE_URL``; latency is the query's round trip."""
    shown = display_url(ctx.settings.database_url)
    try:
        with _engine(ctx.settings.database_url, ctx.io_timeout).connect() as conn:
            t0 = time.perf_counter()
            conn.execute(text("SELECT 1")).scalar_one()
            ms = (time.perf_counter() - t0) * 1000.0
    except Exception as exc:
        return ComponentHealth(
            "database",
            Status.UNHEALTHY,
            f"cannot reach the database {shown}: {describe_error(exc)}",
            details={"url": shown},
        )
    if ms > DB_SLOW_MS:
        return ComponentHealth(
            "database",
            Status.WARNING,
            f"the database answers SELECT 1 slowly ({ms:.0f} ms, over {DB_SLOW_MS:.0f} ms)",
            ms,
            {"url": shown},
        )
    return ComponentHealth(
        "database", Status.HEALTHY, f"SELECT 1 in {ms:.1f} ms", ms, {"url": shown}
    )


def _kombu_connection(url: str, **options: Any) -> Any:
    return Connection(url, **options)  # type: ignore[no-untyped-call]


def _connect_kombu(url: str, timeout: float) -> float:
    """Open and close a kombu connection to ``url``; milliseconds taken (raises on failure)."""
    t0 = time.perf_counter()
    with _kombu_connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    return (time.perf_counter() - t0) * 1000.0


def _probe_broker(url: str, timeout: float) -> float:
    """Milliseconds to reach the broker at ``url`` (raises on failure)."""
    if _scheme(url) in ("redis", "rediss"):
        return _ping_redis(url, timeout)
    return _connect_kombu(url, timeout)


def check_broker(ctx: CheckContext) -> ComponentHealth:
    """A ping of ``QUANTBEAT_BROKER_URL``."""
    url = ctx.settings.broker_url
    shown = mask_text(url)
    if _scheme(url) == "memory":
        return ComponentHealth(
            "broker",
            Status.WARNING,
            "the broker is in-process (memory://): no worker outside this process can reach it",
            details={"url": shown},
        )
    try:
        ms = _probe_broker(url, ctx.io_timeout)
    except Exception as exc:
        return ComponentHealth(
            "broker",
            Status.UNHEALTHY,
            f"cannot reach the broker {shown}: {describe_error(exc)}",
            details={"url": shown},
        )
    return ComponentHealth("broker", Status.HEALTHY, f"answers in {ms:.1f} ms", ms, {"url": shown})


def check_result_backend(ctx: CheckContext) -> ComponentHealth:
    """A ping of ``QUANTBEAT_RESULT_BACKEND`` (Redis; ``rpc://`` rides on the broker)."""
    url = ctx.settings.result_backend
    shown = mask_text(url)
    scheme = _scheme(url)
    if scheme == "rpc":
        return ComponentHealth(
            "result_backend",
            Status.HEALTHY,
            "results travel over the broker (rpc://)",
            details={"url": shown},
        )
    if scheme not in ("redis", "rediss"):
        return ComponentHealth(
            "result_backend",
            Status.WARNING,
            f"the health check cannot probe a {scheme or 'schemeless'} result backend",
            details={"url": shown},
        )
    try:
        ms = _ping_redis(url, ctx.io_timeout)
    except Exception as exc:
        return ComponentHealth(
            "result_backend",
            Status.UNHEALTHY,
            f"cannot reach the result backend {shown}: {describe_error(exc)}",
            details={"url": shown},
        )
    return ComponentHealth(
        "result_backend", Status.HEALTHY, f"answers in {ms:.1f} ms", ms, {"url": shown}
    )


# --- workers ------------------------------------------------------------------------------------
def queue_names() -> list[str]:
    """The queues workers must consume (:class:`workers.queues.Queue`)."""
    return [q.value for q in Queue]


def queue_lengths(app: Any, names: Sequence[str], timeout: float) -> dict[str, int | None]:
    """Messages waiting in each queue of the app's broker.

    Redis: the sum of ``LLEN`` over the queue's list and kombu's priority-suffixed lists
    (``<queue>\\x06\\x16<priority>``), under the transport's ``global_keyprefix``. AMQP and
    others: a passive ``queue_declare`` (an undeclared queue has 0). ``None``: unknown.
    """
    url = str(app.conf.broker_url)
    options = dict(app.conf.broker_transport_options or {})
    if _scheme(url) in ("redis", "rediss"):
        prefix = str(options.get("global_keyprefix", ""))
        steps = list(options.get("priority_steps", PRIORITY_STEPS))
        client = _redis(url, timeout)
        try:
            pipe = client.pipeline()
            for name in names:
                for pri in steps:
                    key = name if not pri else f"{name}{Channel.sep}{pri}"
                    pipe.llen(prefix + key)
            sizes = pipe.execute()
        finally:
            client.close()
        per = len(steps)
        return {name: int(sum(sizes[i * per : (i + 1) * per])) for i, name in enumerate(names)}
    out: dict[str, int | None] = {}
    with _kombu_connection(url, connect_timeout=timeout, transport_options=options) as conn:
        for name in names:
            try:
                channel = conn.channel()
                try:
                    out[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
                finally:
                    channel.close()
            except Exception as exc:
                out[name] = 0 if "NOT_FOUND" in str(exc) else None
    return out


def assess_workers(
    queues: Sequence[str],
    answered: Sequence[str],
    consumes: Mapping[str, Sequence[str]],
    active: Mapping[str, int],
    reserved: Mapping[str, int],
    lengths: Mapping[str, int | None],
) -> ComponentHealth:
    """The workers component from what the broadcast found: ``answered`` (workers that
    answered ping), ``consumes`` (worker → queues), ``active``/``reserved`` (worker → tasks)
    and ``lengths`` (queue → waiting messages, ``None`` unknown). A queue that no worker
    answering ping consumes is unhealthy."""

    def length(q: str) -> str:
        n = lengths.get(q)
        return "unknown" if n is None else str(n)

    consumers = {q: sorted(w for w in answered if q in consumes.get(w, ())) for q in queues}
    details: dict[str, Any] = {
        "workers": {
            w: {
                "queues": sorted(consumes.get(w, ())),
                "active": active.get(w),
                "reserved": reserved.get(w),
            }
            for w in sorted(answered)
        },
        "queues": {q: {"length": lengths.get(q), "consumers": consumers[q]} for q in queues},
    }
    dead = [q for q in queues if not consumers[q]]
    if dead:
        if len(dead) == 1:
            message = f"no worker answers ping for queue {dead[0]} (queue length {length(dead[0])})"
        else:
            message = (
                f"no worker answers ping for queues {', '.join(dead)} (queue lengths "
                + ", ".join(f"{q} {length(q)}" for q in dead)
                + ")"
            )
        if answered:
            message += f"; {len(answered)} worker(s) answer for the other queues"
        return ComponentHealth("workers", Status.UNHEALTHY, message, details=details)
    busy = sum(active.get(w, 0) for w in answered)
    held = sum(reserved.get(w, 0) for w in answered)
    per_queue = "; ".join(
        f"{q}: {len(consumers[q])} worker(s), {length(q)} waiting" for q in queues
    )
    return ComponentHealth(
        "workers",
        Status.HEALTHY,
        f"{len(answered)} worker(s) answer ping, {busy} task(s) active, {held} reserved; "
        f"{per_queue}",
        details=details,
    )


def check_workers(ctx: CheckContext) -> ComponentHealth:
    """Ping every worker through the broker, ask the ones that answered for their queues and
    active/reserved tasks, and measure every queue's length."""
    queues = queue_names()
    url = ctx.settings.broker_url
    try:
        _probe_broker(url, min(ctx.io_timeout, 2.0))
    except Exception as exc:
        # Celery's own broadcast would retry a dead broker for seconds: answer at once.
        return ComponentHealth(
            "workers",
            Status.UNHEALTHY,
            f"cannot ask the workers: the broker is unreachable ({describe_error(exc)}); "
            f"queues {', '.join(queues)} have no known consumer",
            details={"queues": {q: {"length": None, "consumers": []} for q in queues}},
        )
    app = worker_app
    wait = min(1.0, max(0.2, ctx.timeout / 4))
    replies = app.control.ping(timeout=wait) or []
    answered = sorted({name for reply in replies for name in reply})
    consumes: dict[str, list[str]] = {}
    active: dict[str, int] = {}
    reserved: dict[str, int] = {}
    if answered:
        # With destination and limit, each broadcast returns once every worker answered.
        inspect = app.control.inspect(destination=answered, timeout=wait, limit=len(answered))
        for worker, found in (inspect.active_queues() or {}).items():
            consumes[worker] = [str(q.get("name")) for q in found or ()]
        active = {w: len(tasks or ()) for w, tasks in (inspect.active() or {}).items()}
        reserved = {w: len(tasks or ()) for w, tasks in (inspect.reserved() or {}).items()}
    try:
        lengths = queue_lengths(app, queues, ctx.io_timeout)
    except Exception:
        lengths = dict.fromkeys(queues)
    return assess_workers(queues, answered, consumes, active, reserved, lengths)


# --- beat ---------------------------------------------------------------------------------------
def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def assess_beat(raw: bytes | str | None, now: float) -> ComponentHealth:
    """The beat component from the value of :data:`BEAT_TICK_KEY` (epoch seconds as text, or
    ``None`` when absent) at epoch ``now``: age ≤ 90 s healthy, ≤ 300 s warning, else (or
    missing, or not a number) unhealthy."""
    if raw is None:
        return ComponentHealth(
            "beat", Status.UNHEALTHY, f"beat has never ticked (no {BEAT_TICK_KEY} in Redis)"
        )
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    try:
        tick = float(text)
        if not math.isfinite(tick):
            raise ValueError(text)
    except ValueError:
        return ComponentHealth(
            "beat",
            Status.UNHEALTHY,
            f"beat's last tick {text[:40]!r} in {BEAT_TICK_KEY} is not epoch seconds",
        )
    age = max(0.0, now - tick)
    details = {
        "last_tick": dt.datetime.fromtimestamp(tick, dt.UTC).isoformat(),
        "age_s": round(age, 1),
    }
    if age <= BEAT_HEALTHY_AGE_S:
        return ComponentHealth(
            "beat", Status.HEALTHY, f"beat ticked {_ago(age)} ago", None, details
        )
    status = Status.WARNING if age <= BEAT_WARNING_AGE_S else Status.UNHEALTHY
    return ComponentHealth(
        "beat",
        status,
        f"beat has not ticked for {_ago(age)} (it ticks at least every 30 s; "
        f"last tick {details['last_tick']})",
        None,
        details,
    )


def check_beat(ctx: CheckContext) -> ComponentHealth:
    """Read beat's last tick from ``QUANTBEAT_REDIS_URL``."""
    url = ctx.settings.redis_url
    if _scheme(url) == "memory":
        return ComponentHealth(
            "beat",
            Status.WARNING,
            "QUANTBEAT_REDIS_URL is memory://: beat's ticks cannot be seen from here",
        )
    client = _redis(url, ctx.io_timeout)
    try:
        raw = client.get(BEAT_TICK_KEY)
    finally:
        client.close()
    return assess_beat(raw, ctx.now.timestamp())


# --- data freshness -------------------------------------------------------------------------------
def _time_after(at: tuple[int, int], grace: dt.timedelta) -> dt.time:
    moment = dt.datetime.combine(dt.date(2000, 1, 1), dt.time(*at)) + grace
    return moment.time()


def expected_session(
    calendar: TradingCalendar, now_local: dt.datetime, at: tuple[int, int], grace: dt.timedelta
) -> dt.date:
    """The latest KRX session whose job scheduled at ``at`` (local hour, minute) plus
    ``grace`` has passed at ``now_local`` (exchange-local time)."""
    return latest_closed_session(calendar, now_local, close=_time_after(at, grace))


def sessions_behind(calendar: TradingCalendar, latest: dt.date, expected: dt.date) -> int:
    """Sessions after ``latest`` up to ``expected`` (0 when ``latest`` is not older)."""
    if latest >= expected:
        return 0
    start = max(latest + dt.timedelta(days=1), KRX_CALENDAR_SPAN[0])
    return max(1, len(calendar.sessions(start, expected)))


def assess_dataset(
    label: str, latest: dt.date | None, expected: dt.date, behind: int
) -> tuple[Status, str]:
    """A KRX dataset's freshness: up to date healthy, one session behind warning, more
    unhealthy, nothing stored warning."""
    if latest is None:
        return Status.WARNING, f"no {label} stored yet"
    if behind <= 0:
        return Status.HEALTHY, f"{label} up to date ({latest})"
    status = Status.WARNING if behind == 1 else Status.UNHEALTHY
    sessions = "one session" if behind == 1 else f"{behind} sessions"
    return status, f"{label} {sessions} behind: latest {latest}, expected {expected}"


def expected_crypto_bar(now: dt.datetime) -> dt.datetime:
    """Start (UTC) of the last hourly bar that should be stored at ``now``."""
    moment = (now - CRYPTO_GRACE).astimezone(dt.UTC)
    return moment.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)


def _utc_stamp(moment: dt.datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return f"{aware.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def assess_crypto(latest: dt.datetime | None, now: dt.datetime) -> tuple[Status, str]:
    """Hourly crypto bars: the last closed hour stored healthy, one hour behind warning, more
    unhealthy, none stored warning."""
    if latest is None:
        return Status.WARNING, "no crypto candles stored yet"
    expected = expected_crypto_bar(now)
    if latest.tzinfo is None:
        latest = latest.replace(tzinfo=dt.UTC)
    hours = max(0, int((expected - latest) // dt.timedelta(hours=1)))
    stamp = f"{latest.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if hours == 0:
        return Status.HEALTHY, f"crypto {CRYPTO_INTERVAL} bars up to date ({stamp})"
    status = Status.WARNING if hours == 1 else Status.UNHEALTHY
    return status, f"crypto {CRYPTO_INTERVAL} bars {hours} h behind: latest {stamp}"


def check_data_freshness(ctx: CheckContext) -> ComponentHealth:
    """Latest daily candle and investor-flow date vs the expected KRX session, and the latest
    hourly crypto bar vs the last closed hour."""
    per_crypto = (
        select(func.max(IntradayCandle.ts))
        .where(
            and_(
                IntradayCandle.instrument_id == Instrument.id,
                IntradayCandle.interval == CRYPTO_INTERVAL,
            )
        )
        .scalar_subquery()
    )
    with _engine(ctx.settings.database_url, ctx.io_timeout).connect() as conn:
        candles = conn.execute(select(func.max(DailyCandle.trade_date))).scalar()
        flows = conn.execute(select(func.max(InvestorFlow.trade_date))).scalar()
        crypto = conn.execute(
            select(func.max(per_crypto)).where(Instrument.market == Market.UPBIT.value)
        ).scalar()
    calendar = krx_calendar()
    local = ctx.now.astimezone(ZoneInfo(ctx.settings.timezone))
    findings: list[tuple[Status, str]] = []
    details: dict[str, Any] = {}
    for label, key, latest, at in (
        ("candles", "candles", candles, KRX_DAILY_AT),
        ("investor flows", "flows", flows, KRX_FLOWS_AT),
    ):
        expected = expected_session(calendar, local, at, DATA_GRACE)
        behind = 0 if latest is None else sessions_behind(calendar, latest, expected)
        findings.append(assess_dataset(label, latest, expected, behind))
        details[key] = {
            "latest": None if latest is None else latest.isoformat(),
            "expected": expected.isoformat(),
            "sessions_behind": None if latest is None else behind,
            "status": findings[-1][0].value,
        }
    if isinstance(crypto, str):  # SQLite returns text from max() over a subquery
        crypto = dt.datetime.fromisoformat(crypto)
    if resolve_mode(ctx.settings) is Mode.EMBEDDED:
        # `quantbeat run` collects the KRX day, and crypto only for the volatility check at
        # the day's close; crypto is collected hourly by beat in a deployment.
        if crypto is None:
            findings.append((Status.HEALTHY, "crypto not collected (embedded: beat collects "
                             "it in a deployment)"))  # fmt: skip
        else:
            stamp = _utc_stamp(crypto)
            findings.append((Status.HEALTHY, f"crypto {CRYPTO_INTERVAL} bars up to {stamp}, "
                             "collected by `quantbeat run` (embedded: beat collects them "
                             "hourly in a deployment)"))  # fmt: skip
    else:
        findings.append(assess_crypto(crypto, ctx.now))
    details["crypto"] = {
        "interval": CRYPTO_INTERVAL,
        "latest": None if crypto is None else crypto.isoformat(),
        "expected": expected_crypto_bar(ctx.now).isoformat(),
        "status": findings[-1][0].value,
    }
    status = worst([s for s, _ in findings])
    return ComponentHealth(
        "data_freshness", status, "; ".join(m for _, m in findings), details=details
    )


# --- recent signals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanSummary:
    """The latest scan run of a strategy (see :class:`db.models.ScanRun`)."""

    trade_date: dt.date
    state: str
    candidates: int
    started_at: dt.datetime
    error: str | None = None


def assess_scan(
    strategy: str,
    run: ScanSummary | None,
    expected: dt.date,
    behind: int,
    now: dt.datetime,
) -> tuple[Status, str]:
    """Did ``strategy``'s scan run for the ``expected`` trading day? Completed (or running
    for less than an hour) healthy; still running after that, or missing for one session,
    warning; failed, or missing for more sessions, unhealthy; never run warning."""
    if run is None:
        return Status.WARNING, f"no {strategy} scan has run yet"
    if run.trade_date < expected:
        last = f"latest {run.trade_date}, {run.state}"
        if behind <= 1:
            return Status.WARNING, f"no {strategy} scan for {expected} ({last})"
        return (
            Status.UNHEALTHY,
            f"no {strategy} scan for {behind} sessions up to {expected} ({last})",
        )
    if run.state == "completed":
        return (
            Status.HEALTHY,
            f"{strategy} scan of {run.trade_date} completed with {run.candidates} candidate(s)",
        )
    if run.state == "running":
        started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=dt.UTC)
        age = (now - started).total_seconds()
        if age <= SCAN_RUNNING_WARNING.total_seconds():
            return Status.HEALTHY, f"{strategy} scan of {run.trade_date} running for {_ago(age)}"
        return (
            Status.WARNING,
            f"{strategy} scan of {run.trade_date} still running after {_ago(age)}",
        )
    error = f": {mask_text(run.error)[:200]}" if run.error else ""
    return Status.UNHEALTHY, f"{strategy} scan of {run.trade_date} {run.state}{error}"


#: The crypto jobs beat runs, with their period (issue 23; seed 001's scheduler jobs).
CRYPTO_JOBS: dict[str, dt.timedelta] = {
    "quantbeat.crypto.volatility_check": dt.timedelta(minutes=5),
    "quantbeat.crypto.signal": dt.timedelta(hours=1),
    "quantbeat.crypto.order_sync": dt.timedelta(hours=1),
}


def assess_crypto_job(
    task: str, period: dt.timedelta, latest: dt.datetime | None, now: dt.datetime
) -> tuple[Status, str]:
    """A crypto job's freshness: its latest successful run at most two periods (plus a
    minute) old healthy; older, or none yet, warning."""
    short = task.rsplit(".", 1)[-1]
    every = _ago(period.total_seconds())
    if latest is None:
        return Status.WARNING, f"{short} has not succeeded yet (every {every})"
    if latest.tzinfo is None:
        latest = latest.replace(tzinfo=dt.UTC)
    age = max(0.0, (now - latest).total_seconds())
    if age <= 2 * period.total_seconds() + 60:
        return Status.HEALTHY, f"{short} {_ago(age)} ago"
    return Status.WARNING, f"{short} last succeeded {_ago(age)} ago (every {every})"


def _latest_successes(ctx: CheckContext) -> dict[str, dt.datetime | None]:
    with _engine(ctx.settings.database_url, ctx.io_timeout).connect() as conn:
        found: dict[str, dt.datetime | None] = {}
        for task in CRYPTO_JOBS:
            value = conn.execute(
                select(func.max(JobRun.finished_at)).where(
                    JobRun.task_name == task, JobRun.state == "succeeded"
                )
            ).scalar()
            found[task] = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return found


def check_crypto_jobs(ctx: CheckContext) -> ComponentHealth:
    """The crypto jobs' freshness (:data:`CRYPTO_JOBS`, see :func:`assess_crypto_job`)."""
    latest = _latest_successes(ctx)
    findings = [assess_crypto_job(t, p, latest[t], ctx.now) for t, p in CRYPTO_JOBS.items()]
    details: dict[str, Any] = {}
    for task, (status, _) in zip(CRYPTO_JOBS, findings, strict=True):
        when = latest[task]
        details[task] = {
            "latest": None if when is None else when.isoformat(),
            "status": status.value,
        }
    return ComponentHealth(
        "crypto_jobs", worst([s for s, _ in findings]), "; ".join(m for _, m in findings), None,
        details,
    )  # fmt: skip


def check_crypto_jobs_embedded(ctx: CheckContext) -> ComponentHealth:
    """On the embedded default ``quantbeat run`` runs the volatility check once per run:
    healthy, with the latest successful runs in the details."""
    latest = _latest_successes(ctx)
    seen = "; ".join(
        f"{t.rsplit('.', 1)[-1]} {'never' if v is None else _utc_stamp(v)}"
        for t, v in latest.items()
    )
    return ComponentHealth(
        "crypto_jobs",
        Status.HEALTHY,
        f"embedded: `quantbeat run` runs them once per run ({seen}); beat runs them on "
        "their schedule in a deployment",
        0.0,
        {t: {"latest": None if v is None else v.isoformat()} for t, v in latest.items()},
    )


def check_signals(ctx: CheckContext) -> ComponentHealth:
    """The latest scan run of every scheduled scan strategy vs the trading day it should
    cover (the latest session whose pipeline (:func:`scan_due_after`) plus
    :data:`SCAN_GRACE` has passed)."""
    calendar = krx_calendar()
    local = ctx.now.astimezone(ZoneInfo(ctx.settings.timezone))
    findings: list[tuple[Status, str]] = []
    details: dict[str, Any] = {}
    with _engine(ctx.settings.database_url, ctx.io_timeout).connect() as conn:
        for strategy in scan_strategy_names():
            if not scan_strategy(strategy).scheduled:
                continue
            expected = expected_session(calendar, local, scan_due_after(strategy), SCAN_GRACE)
            row = conn.execute(
                select(
                    ScanRun.trade_date,
                    ScanRun.state,
                    ScanRun.candidates,
                    ScanRun.started_at,
                    ScanRun.error,
                )
                .where(ScanRun.strategy == strategy)
                .order_by(
                    ScanRun.trade_date.desc(),
                    (ScanRun.state == "completed").desc(),
                    ScanRun.started_at.desc(),
                )
                .limit(1)
            ).first()
            run = None if row is None else ScanSummary(*row)
            behind = 0 if run is None else sessions_behind(calendar, run.trade_date, expected)
            findings.append(assess_scan(strategy, run, expected, behind, ctx.now))
            details[strategy] = {
                "expected": expected.isoformat(),
                "latest": None if run is None else run.trade_date.isoformat(),
                "state": None if run is None else run.state,
                "candidates": None if run is None else run.candidates,
                "status": findings[-1][0].value,
            }
    return ComponentHealth(
        "signals", worst([s for s, _ in findings]), "; ".join(m for _, m in findings), None, details
    )


# --- AI provider ----------------------------------------------------------------------------------
def assess_ai(
    *, model: str, used: int | None, rpd: int, cooldown_left: float, reset_in: float
) -> ComponentHealth:
    """Gemini's state: the day's quota used up unhealthy; a cooldown running, or
    :data:`AI_QUOTA_WARNING` of the quota used, warning. ``used`` ``None``: not observable."""
    details: dict[str, Any] = {
        "provider": "gemini",
        "model": model,
        "used_today": used,
        "rpd": rpd,
        "cooldown_s": round(cooldown_left, 1),
    }
    if used is None:
        quota = "today's quota use is kept in-process (QUANTBEAT_REDIS_URL=memory://)"
    else:
        quota = f"{used}/{rpd} requests used today"
    if used is not None and used >= rpd:
        return ComponentHealth(
            "ai",
            Status.UNHEALTHY,
            f"Gemini's daily quota of {rpd} requests is used up (resets at midnight Pacific, "
            f"in {reset_in / 3600:.1f} h)",
            None,
            details,
        )
    problems = []
    if cooldown_left > 0:
        problems.append(f"cooling down for {cooldown_left:.0f} s after a throttling answer")
    if used is not None and used >= AI_QUOTA_WARNING * rpd:
        problems.append(f"{used}/{rpd} of today's requests used")
    if problems:
        return ComponentHealth(
            "ai", Status.WARNING, f"Gemini ({model}): " + "; ".join(problems), None, details
        )
    return ComponentHealth(
        "ai", Status.HEALTHY, f"Gemini ({model}): {quota}, no cooldown", None, details
    )


def check_ai(ctx: CheckContext) -> ComponentHealth:
    """Whether Gemini is configured, cooling down, and how much of today's quota is used."""
    s = ctx.settings
    if s.gemini_api_key is None:
        return ComponentHealth(
            "ai",
            Status.HEALTHY,
            "no Gemini key (QUANTBEAT_GEMINI_API_KEY): the offline rule-based analyzer is used",
            details={"provider": "offline"},
        )
    if _scheme(s.redis_url) == "memory":
        return assess_ai(
            model=s.gemini_model,
            used=None,
            rpd=s.gemini_rpd,
            cooldown_left=0.0,
            reset_in=seconds_to_reset(ctx.now),
        )
    client = _redis(s.redis_url, ctx.io_timeout)
    try:
        limiter = AiLimiter(rpm=s.gemini_rpm, rpd=s.gemini_rpd, redis_client=client)
        used, left = limiter.used_today(), limiter.cooldown_left()
    finally:
        client.close()
    return assess_ai(
        model=s.gemini_model,
        used=used,
        rpd=s.gemini_rpd,
        cooldown_left=left,
        reset_in=seconds_to_reset(ctx.now),
    )


def assess_spool(found: spool.SpoolStatus, now: dt.datetime) -> ComponentHealth:
    """The spool's state: empty healthy; records waiting, or corrupt files kept aside,
    warning (the message names how many and where)."""
    details: dict[str, Any] = {
        "directory": str(found.directory),
        "waiting": found.waiting,
        "corrupt": found.corrupt,
    }
    problems = []
    if found.waiting:
        age = ""
        if found.oldest is not None:
            details["oldest"] = found.oldest.isoformat()
            age = f", the oldest written {_ago(max(0.0, (now - found.oldest).total_seconds()))} ago"
        problems.append(
            f"{found.waiting} history record(s) wait in the spool {found.directory}{age}: "
            "the database refused them; the reaper (quantbeat.ops.reap) replays them"
        )
    if found.corrupt:
        problems.append(
            f"{found.corrupt} corrupt spool file(s) kept aside in "
            f"{found.directory / spool.CORRUPT_DIR} (see the log's spool.corrupt)"
        )
    if not problems:
        return ComponentHealth(
            "spool", Status.HEALTHY, "no record waits in the spool", 0.0, details
        )
    return ComponentHealth("spool", Status.WARNING, "; ".join(problems), None, details)


def check_spool(ctx: CheckContext) -> ComponentHealth:
    """This host's spool under ``QUANTBEAT_DATA_DIR`` (see :func:`assess_spool`)."""
    return assess_spool(spool.status(spool.spool_dir(ctx.settings.data_dir)), ctx.now)


def assess_outbox(
    waiting: int, oldest: dt.datetime | None, now: dt.datetime, grace: float
) -> ComponentHealth:
    """The task outbox: no message left unpublished past ``grace`` seconds healthy; any
    warning (the message names how many and since when; the reaper's sweep publishes them
    once the broker answers)."""
    details: dict[str, Any] = {"waiting": waiting, "grace_s": grace}
    if not waiting:
        return ComponentHealth(
            "outbox", Status.HEALTHY, "every committed task message was published", 0.0, details
        )
    age = ""
    if oldest is not None:
        details["oldest"] = oldest.isoformat()
        age = f", the oldest committed {_ago(max(0.0, (now - oldest).total_seconds()))} ago"
    return ComponentHealth(
        "outbox",
        Status.WARNING,
        f"{waiting} committed task message(s) not yet published{age}: the broker was "
        "unreachable or their client died; the reaper (quantbeat.ops.reap) publishes them",
        None,
        details,
    )


def check_outbox(ctx: CheckContext) -> ComponentHealth:
    """Messages of the task outbox still unpublished ``QUANTBEAT_OUTBOX_GRACE`` seconds after
    their commit (see :func:`assess_outbox`)."""
    waiting, oldest = unpublished_messages(older_than=ctx.settings.outbox_grace)
    return assess_outbox(waiting, oldest, ctx.now, ctx.settings.outbox_grace)


def assess_snapshots(
    session_open: bool, latest: dt.datetime | None, now: dt.datetime, every_minutes: int
) -> ComponentHealth:
    """Freshness of intraday snapshots: outside a KRX session healthy; during one, the latest
    snapshot at most two intervals (plus a minute) old healthy, older or none warning."""
    details: dict[str, Any] = {
        "session_open": session_open,
        "latest": None if latest is None else latest.isoformat(),
        "every_minutes": every_minutes,
    }
    if not session_open:
        return ComponentHealth("snapshots", Status.HEALTHY, "no KRX session is open", 0.0, details)
    if latest is None:
        return ComponentHealth(
            "snapshots",
            Status.WARNING,
            "a KRX session is open and no intraday snapshot was ever taken "
            "(beat entry market-snapshots, task quantbeat.market.snapshot)",
            None,
            details,
        )
    age = max(0.0, (now - latest).total_seconds())
    limit = (2 * every_minutes + 1) * 60.0
    if age <= limit:
        return ComponentHealth(
            "snapshots", Status.HEALTHY, f"latest snapshot {_ago(age)} ago", 0.0, details
        )
    return ComponentHealth(
        "snapshots",
        Status.WARNING,
        f"latest intraday snapshot {_ago(age)} ago during a session (expected every "
        f"{every_minutes} min)",
        None,
        details,
    )


def check_snapshots(ctx: CheckContext) -> ComponentHealth:
    """Intraday snapshots' freshness (see :func:`assess_snapshots`)."""
    session_open, latest = snapshot_age(ctx.now)
    return assess_snapshots(session_open, latest, ctx.now, ctx.settings.snapshot_every)


def check_snapshots_embedded(ctx: CheckContext) -> ComponentHealth:
    """The embedded default has no beat taking a snapshot every few minutes: ``quantbeat
    run`` takes the buy window's. Healthy, with the latest snapshot and whether a session
    is open in the details."""
    session_open, latest = snapshot_age(ctx.now)
    seen = "none yet" if latest is None else _utc_stamp(latest)
    return ComponentHealth(
        "snapshots",
        Status.HEALTHY,
        f"embedded: `quantbeat run` takes the buy window's snapshot (latest: {seen}); beat "
        f"takes one every {ctx.settings.snapshot_every} min of a session in a deployment",
        0.0,
        {"session_open": session_open, "latest": None if latest is None else latest.isoformat()},
    )


#: The checks of :func:`check_health`, in report order.
DEFAULT_CHECKS: tuple[tuple[str, Check], ...] = (
    ("database", check_database),
    ("broker", check_broker),
    ("result_backend", check_result_backend),
    ("workers", check_workers),
    ("beat", check_beat),
    ("data_freshness", check_data_freshness),
    ("signals", check_signals),
    ("ai", check_ai),
    ("spool", check_spool),
    ("outbox", check_outbox),
    ("snapshots", check_snapshots),
    ("crypto_jobs", check_crypto_jobs),
)


def _in_process(name: str, message: str) -> Check:
    """A component the embedded profile runs inside each command: nothing to probe."""

    def check(ctx: CheckContext) -> ComponentHealth:
        return ComponentHealth(
            name, Status.HEALTHY, f"embedded: {message}", 0.0, {"embedded": True}
        )

    return check


#: The checks on the embedded profile (:mod:`quantbeat.infra.profile`): the SQLite database,
#: the data and signals ``quantbeat run`` produced and the analyzer are checked as in a
#: deployment; broker, result backend, workers and beat live inside each command.
EMBEDDED_CHECKS: tuple[tuple[str, Check], ...] = (
    ("database", check_database),
    ("broker", _in_process("broker", "in-memory, inside each command (nothing to reach)")),
    (
        "result_backend",
        _in_process("result_backend", "in-memory, inside each command (nothing to reach)"),
    ),
    (
        "workers",
        _in_process("workers", "a worker starts inside each command that sends tasks"),
    ),
    ("beat", _in_process("beat", "no schedule: `quantbeat run` runs the daily pipeline")),
    ("data_freshness", check_data_freshness),
    ("signals", check_signals),
    ("ai", check_ai),
    ("spool", check_spool),
    ("outbox", check_outbox),
    ("snapshots", check_snapshots_embedded),
    ("crypto_jobs", check_crypto_jobs_embedded),
)


# --- HTTP endpoint --------------------------------------------------------------------------------
class CachedHealth:
    """The latest report, reused for ``ttl`` seconds so frequent probes do not hammer the
    services; concurrent callers wait for one check instead of each starting their own."""

    def __init__(self, produce: Callable[[], HealthReport], ttl: float = 5.0) -> None:
        self._produce = produce
        self.ttl = ttl
        self._lock = threading.Lock()
        self._report: HealthReport | None = None
        self._at = 0.0

    def get(self) -> HealthReport:
        with self._lock:
            if self._report is None or time.monotonic() - self._at > self.ttl:
                self._report = self._produce()
                self._at = time.monotonic()
            return self._report


def make_server(host: str, port: int, cache: CachedHealth) -> ThreadingHTTPServer:
    """An HTTP server (not started) answering ``GET /health`` with the JSON report (200 when
    healthy or degraded, 503 when unhealthy) and ``GET /health/live`` with 200 while the
    process runs. ``port`` 0 picks a free port (``server.server_address`` has it)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "quantbeat-health"

        def _send(self, code: int, body: dict[str, Any], *, head: bool = False) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def _answer(self, head: bool) -> None:
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path == "/health/live":
                self._send(200, {"status": "alive"}, head=head)
            elif path == "/health":
                try:
                    report = cache.get()
                except Exception as exc:  # a bug in a check must not kill the endpoint
                    self._send(
                        503, {"status": "unhealthy", "error": describe_error(exc)}, head=head
                    )
                    return
                code = 503 if report.status is Overall.UNHEALTHY else 200
                self._send(code, report.as_dict(), head=head)
            else:
                self._send(404, {"error": f"no such path {path!r}; try /health"}, head=head)

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
