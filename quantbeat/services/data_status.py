"""The state of the stored data in one report (the dashboard's "data status" page, the API's
``/data/status``): freshness as ``quantbeat health`` judges it, the latest day or moment
every dataset holds, the gaps ``quantbeat data gaps`` reports (read-only: nothing is ever
backfilled from here) and how the recent jobs went."""

from __future__ import annotations

import datetime as dt
from typing import Any

from db.engine import session_scope
from db.status import latest_stored
from db.store import iso_utc
from quant.errors import ValidationError
from quant.market.types import KRX_MARKETS, SIMULATED_SOURCE
from quantbeat.infra.settings import Settings, get_settings
from quantbeat.infra.sources import latest_krx_session
from quantbeat.services.collect import DATASETS, last_sessions
from quantbeat.services.gaps import (
    DEFAULT_WINDOW_SESSIONS,
    crypto_gaps,
    crypto_gaps_dict,
    crypto_window,
    krx_gaps,
    krx_gaps_dict,
)
from quantbeat.services.health import CRYPTO_INTERVAL, check_data_freshness, run_checks
from quantbeat.services.jobs import jobs_summary

#: Hours of job history the report counts by default, and at most.
DEFAULT_JOB_HOURS = 24
MAX_JOB_HOURS = 24 * 30
#: Seconds the freshness check may take (as ``quantbeat health``'s default).
FRESHNESS_TIMEOUT = 5.0


def data_status(
    *,
    sessions: int = DEFAULT_WINDOW_SESSIONS,
    gap_limit: int = 30,
    job_hours: int = DEFAULT_JOB_HOURS,
    settings: Settings | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The report: ``{"checked_at", "simulated" (any dataset's latest data is),
    "freshness" (the ``data_freshness`` health component: status, message, details),
    "latest": {dataset: {"latest", "simulated"}} (:func:`db.status.latest_stored`),
    "gaps": {"candles", "flows" (both KRX markets, the ``sessions`` sessions up to the
    latest closed one), "crypto" (hourly bars, the default window of ``data gaps``)} with at
    most ``gap_limit`` gaps listed each, "jobs": runs per state started in the last
    ``job_hours`` hours and dead-letter counts}``.

    Raises:
        quant.errors.ValidationError: ``sessions`` not in 1..260, ``gap_limit`` not in
            0..1000, ``job_hours`` not in 1..720 (each names its field).
    """
    _bounded("sessions", sessions, 1, DEFAULT_WINDOW_SESSIONS)
    _bounded("gap_limit", gap_limit, 0, 1000)
    _bounded("job_hours", job_hours, 1, MAX_JOB_HOURS)
    settings = settings or get_settings()
    now = now or dt.datetime.now(dt.UTC)
    freshness = run_checks(
        [("data_freshness", check_data_freshness)],
        timeout=FRESHNESS_TIMEOUT,
        settings=settings,
        now=now,
    ).component("data_freshness")
    with session_scope() as session:
        latest = latest_stored(session, simulated_source=SIMULATED_SOURCE)
    end = latest_krx_session(settings)
    start = last_sessions(end, sessions)[0]
    gaps: dict[str, Any] = {
        name: krx_gaps_dict(
            krx_gaps(DATASETS[name], KRX_MARKETS, start=start, end=end), limit=gap_limit
        )
        for name in ("candles", "flows")
    }
    first, last = crypto_window(CRYPTO_INTERVAL)
    gaps["crypto"] = crypto_gaps_dict(crypto_gaps(CRYPTO_INTERVAL, first, last), limit=gap_limit)
    return {
        "checked_at": now.astimezone(dt.UTC).isoformat(),
        "simulated": any(d["simulated"] for d in latest.values()),
        "freshness": freshness.as_dict(),
        "latest": {
            name: {"latest": iso_utc(d["latest"]), "simulated": d["simulated"]}
            for name, d in latest.items()
        },
        "gaps": gaps,
        "jobs": jobs_summary(now - dt.timedelta(hours=job_hours)),
    }


def _bounded(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValidationError(
            f"{field} must be {low}..{high}, got {value}", field=field, value=value
        )
