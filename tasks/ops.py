"""Operations tasks (``io`` queue): the deployment's health as a task.

``quantbeat.ops.health`` returns the same report as ``quantbeat health --json``, seen from a
worker (so it also proves a worker consumes ``io``). See :mod:`quantbeat.services.health`.
"""

from __future__ import annotations

from typing import Any

from quantbeat.services.health import DEFAULT_TIMEOUT, check_health, check_timeout
from quantbeat.services.ops_metrics import OpsCollector
from workers.app import app
from workers.metrics import add_collector

# every worker's /metrics carries the deployment's operational state (the alert rules read it)
add_collector(OpsCollector())

#: A check returns within its timeout (at most 120 s); these limits only catch a stuck one.
HEALTH_SOFT_LIMIT_S = 150
HEALTH_HARD_LIMIT_S = 180


@app.task(
    name="quantbeat.ops.health",
    soft_time_limit=HEALTH_SOFT_LIMIT_S,
    time_limit=HEALTH_HARD_LIMIT_S,
)
def health(timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Check every component within ``timeout`` seconds (0 < timeout ≤ 120) and return
    :meth:`quantbeat.services.health.HealthReport.as_dict`: ``status`` (healthy, degraded,
    unhealthy), ``exit_code``, ``checked_at``, ``duration_ms``, ``reasons`` and
    ``components``. An unhealthy deployment is a result, not an error.

    Raises ValidationError for a bad timeout (not retried).
    """
    return check_health(timeout=check_timeout(timeout)).as_dict()
