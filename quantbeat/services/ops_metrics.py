"""The deployment's operational state as Prometheus metrics, for the alert rules
(``deploy/prometheus/alerts.yml``): served by every worker's ``/metrics`` endpoint
(``tasks.ops`` adds :class:`OpsCollector` with :func:`workers.metrics.add_collector`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import structlog
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from db import candle_months
from db.engine import session_scope
from db.models import DeadLetter
from quantbeat.services import health

log = structlog.get_logger(__name__)


#: Components whose state the ops collector exports (the others need no alert of their own:
#: database, broker and workers have ``up``, ``quantbeat_broker_up`` and the queue lengths).
OPS_COMPONENTS: tuple[str, ...] = ("beat", "data_freshness", "signals", "ai", "spool", "outbox")
#: Seconds an ops reading is reused: scrapes come every 15 s from every Prometheus, and the
#: checks read the database and Redis.
OPS_TTL = 30.0
#: Seconds the ops checks may take at a scrape (a dead service reads as unhealthy, not a hang).
OPS_TIMEOUT = 3.0
_STATUS_VALUE = {"healthy": 0.0, "warning": 1.0, "unhealthy": 2.0}


class OpsCollector:
    """The deployment's operational state for alerting, from the health checks
    (:mod:`quantbeat.services.health`) run at most every :data:`OPS_TTL` seconds:

    * ``quantbeat_health_status{component}``: 0 healthy, 1 warning, 2 unhealthy, for
      :data:`OPS_COMPONENTS`;
    * ``quantbeat_beat_last_tick_age_seconds``: seconds since beat's last tick (absent when
      beat never ticked: the status says so);
    * ``quantbeat_data_sessions_behind{dataset}``: KRX sessions the latest stored candles /
      investor flows are behind the expected one (absent while a dataset is empty);
    * ``quantbeat_ai_quota_used_ratio``: share of today's Gemini requests used (absent
      without a key or when not observable);
    * ``quantbeat_dead_letters_open``: dead letters not replayed yet;
    * ``quantbeat_candle_months_stale``: instrument-months of daily candles written since
      they were packed (:mod:`db.candle_months`; 0 on SQLite): collections pack their own
      and beat the rest every ten minutes, so a count that stays above 0 means packing
      stopped.

    Every worker exports the same values: aggregate with ``max``. A reading that fails
    exports what it could and logs once per change.
    """

    def __init__(self, *, ttl: float = OPS_TTL, timeout: float = OPS_TIMEOUT) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._lock = threading.Lock()
        self._at = -math.inf
        self._cached: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._cached = self._read()
                self._at = time.monotonic()
            yield from self._cached

    def _read(self) -> list[Metric]:
        checks = [(n, c) for n, c in health.DEFAULT_CHECKS if n in OPS_COMPONENTS]
        report = health.run_checks(checks, timeout=self.timeout)
        status = GaugeMetricFamily(
            "quantbeat_health_status",
            "A component's health: 0 healthy, 1 warning, 2 unhealthy (quantbeat health).",
            labels=["component"],
        )
        age = GaugeMetricFamily(
            "quantbeat_beat_last_tick_age_seconds", "Seconds since beat's last tick."
        )
        behind = GaugeMetricFamily(
            "quantbeat_data_sessions_behind",
            "KRX sessions the latest stored dataset is behind the expected session.",
            labels=["dataset"],
        )
        quota = GaugeMetricFamily(
            "quantbeat_ai_quota_used_ratio", "Share of today's Gemini request quota used."
        )
        for component in report.components:
            status.add_metric([component.name], _STATUS_VALUE.get(component.status.value, 2.0))
            details = component.details
            if component.name == "beat" and "age_s" in details:
                age.add_metric([], float(details["age_s"]))
            elif component.name == "data_freshness":
                for dataset in ("candles", "flows"):
                    lag = (details.get(dataset) or {}).get("sessions_behind")
                    if lag is not None:
                        behind.add_metric([dataset], float(lag))
            elif component.name == "ai" and details.get("used_today") is not None:
                rpd = float(details.get("rpd") or 0)
                if rpd > 0:
                    quota.add_metric([], float(details["used_today"]) / rpd)
        dead = GaugeMetricFamily(
            "quantbeat_dead_letters_open", "Dead letters recorded and not replayed yet."
        )
        try:
            dead.add_metric([], float(_open_dead_letters()))
        except Exception as exc:  # the family is exported without a sample
            log.warning("metrics.dead_letters_unavailable", error=f"{type(exc).__name__}: {exc}")
        stale = GaugeMetricFamily(
            "quantbeat_candle_months_stale",
            "Instrument-months of daily candles written since they were packed.",
        )
        try:
            stale.add_metric([], float(_stale_candle_months()))
        except Exception as exc:  # the family is exported without a sample
            log.warning("metrics.candle_months_unavailable", error=f"{type(exc).__name__}: {exc}")
        return [status, age, behind, quota, dead, stale]


def _open_dead_letters() -> int:
    with session_scope() as session:
        count = session.execute(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.replayed_at.is_(None))
        ).scalar_one()
    return int(count)


def _stale_candle_months() -> int:
    with session_scope() as session:
        return candle_months.stale_count(session)
