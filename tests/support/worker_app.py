"""The production Celery app plus a few test-only tasks, for integration tests that need to
observe the base task's retry, fail-fast and history behaviour through a real worker.

Start with ``celery -A tests.support.worker_app worker``. The tasks are named in the ``ops``
area so they route like production housekeeping tasks (``io`` queue).
"""

from __future__ import annotations

from typing import Any

from quant.errors import PermanentError, TransientError
from workers.app import app

__all__ = ["app"]


@app.task(name="quantbeat.ops.test_flaky", bind=True)
def flaky(self: Any, fail_times: int, **secrets: Any) -> dict[str, Any]:
    """Raise TransientError on the first ``fail_times`` executions, then succeed."""
    retries = int(self.request.retries or 0)
    if retries < fail_times:
        raise TransientError(f"simulated transient failure {retries + 1}/{fail_times}")
    return {"retries": retries}


@app.task(name="quantbeat.ops.test_permanent")
def permanent(reason: str) -> None:
    """Always fail with a PermanentError."""
    raise PermanentError(f"simulated permanent failure: {reason}")


@app.task(name="quantbeat.ops.test_infra_down")
def infra_down() -> None:
    """Always fail the way a dropped database connection does (OperationalError)."""
    from sqlalchemy.exc import OperationalError

    raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
