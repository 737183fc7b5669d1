"""Property-based conformance of the HTTP API to its own OpenAPI document (schemathesis).

Every operation of ``/api/v1/openapi.json`` (plus ``/health`` and ``/health/live``) is called
with inputs schemathesis generates from the document — valid ones and invalid ones — through
the real app (``create_app``) on PostgreSQL and Redis holding the SIMULATED market of
tests/support/dashboard_data.py, with an API key of scope ``admin`` on every request. Each
answer must be:

* no server error (``not_a_server_error``);
* a status code the operation documents (``status_code_conformance``), with a documented
  content type (``content_type_conformance``) and the headers it documents
  (``response_headers_conformance``), and a body matching the documented schema of that
  status and content type (``response_schema_conformance``);
* a 4xx for input that violates the document (``negative_data_rejection``);
* a 405 naming the allowed methods in ``Allow`` for a method the path does not serve
  (``unsupported_method``, ``allow_header_conformance``);
* a refusal, not a 2xx, when the request goes without the key or with a wrong one on an
  operation whose security the document declares (``ignored_auth``).

Excluded default checks, and why:

* ``positive_data_acceptance`` (a 2xx for every input the document allows): the document
  cannot express the business rules behind a 404 or 422 on schema-valid input — an opaque
  cursor must be one this API gave out, a date range must be ordered, a backtest needs known
  instruments and a strategy's own parameters, an unknown id is 404 — so it would fail on
  correct answers;
* ``missing_required_header``: no operation declares a required header (the key's
  headers are security schemes, which ``ignored_auth`` covers);
* ``use_after_free``, ``ensure_resource_availability``, ``object_level_authorization``:
  stateful checks, which need OpenAPI links between operations (none are declared) or a
  second identity's resources (every key here sees the same data: keys carry scopes, not
  owners).

Generated values are mixed with known ones (schemathesis dictionaries: the seeded signal ids,
scan and backtest runs, portfolio, dates, instruments, task ids), so positive cases also reach
rows and the response schemas are checked against real content, not just empty lists and 404s.

Not generated: the server-sent-event streams (``…/events``, ``text/event-stream``: an open
stream would hold a case until its run ends; tests/integration/test_api_backtests.py covers
them), and the dashboard's HTML routes, which are not in the document.

The session's worker (tests/support/services.py) runs: the indicator routes answer a cache
miss through a cpu worker (without one every such case would wait 15 s for its 503), and an
accepted backtest or a replayed dead letter runs as it would in production. A backtest run
recorded without a message stays ``queued`` for DELETE to cancel. When the module ends, every
run left unfinished is cancelled (its message revoked), the test broker purged and the
indicator cache emptied, so nothing it sent reaches a later test. /health and /health/detail
may answer their documented 503 (unhealthy: no beat here, the SIMULATED data months old);
every other operation must answer no 5xx at all.

Reproducible: derandomized hypothesis, a fixed schemathesis seed, no example database; at
most ``MAX_EXAMPLES`` fuzzed cases per operation plus the coverage phase's deterministic
boundary cases and the 405 probes (about 2,200 cases; ``pytest -s`` prints them by operation
and status).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from _pytest.nodeid import coerce_node_id
from _pytest.nodes import Node
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from sqlalchemy import select

from db.backtests import FINAL_STATES, create_run
from db.engine import session_scope
from db.models import BacktestRun, DeadLetter, Instrument, JobRun, ScanRun, Signal
from db.scans import finish_run, start_run
from quantbeat.api.app import API_PREFIX, create_app
from quantbeat.infra.settings import get_settings
from quantbeat.services import api_keys, backtests
from quantbeat.services.indicators import forget_service, indicator_cache
from tests.support import dashboard_data
from tests.support.services import WorkerProcess
from workers.app import app as worker_app

pytestmark = pytest.mark.integration

# schemathesis 4.32 renames the running test node through ``Node._nodeid``, an attribute
# pytest 9.2 replaced with a structured ``_id``: give it back as a view of ``_id``.
if not hasattr(Node, "_nodeid"):
    setattr(  # noqa: B010 (a property on pytest's class, not an instance attribute)
        Node,
        "_nodeid",
        property(
            lambda node: str(node._id),
            lambda node, value: setattr(node, "_id", coerce_node_id(value)),
        ),
    )

#: Fuzzed cases per operation (the coverage phase adds its boundary cases).
MAX_EXAMPLES = 30
SEED = 20260630

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]


def _known_values(facts: dict[str, Any]) -> dict[str, list[Any]]:
    """Values of the seeded rows, by dictionary name."""
    with session_scope() as session:
        signal_ids = session.scalars(select(Signal.id).order_by(Signal.id.desc()).limit(5)).all()
        scan_ids = session.scalars(select(ScanRun.id)).all()
        instruments = [
            f"{market}:{ticker}"
            for market, ticker in session.execute(
                select(Instrument.market, Instrument.ticker).order_by(Instrument.id).limit(5)
            ).all()
        ]
        tasks = session.scalars(select(JobRun.task_id)).all()
        letters = session.scalars(select(DeadLetter.id)).all()
    end: dt.date = facts["end"]
    return {
        "ids": [*signal_ids, *scan_ids, *letters],
        "runs": [*scan_ids, dashboard_data.BACKTEST_ID, facts["queued_run"]],
        "dates": [end.isoformat(), (end - dt.timedelta(days=30)).isoformat(), "2026-03-02"],
        "instruments": instruments,
        "tasks": list(tasks),
        "portfolios": [dashboard_data.PORTFOLIO],
        "strategies": ["vcp", "closing_bet", "sma_crossover"],
        "markets": ["KOSPI", "KOSDAQ"],
        "phases": ["preliminary", "final"],
    }


@pytest.fixture(scope="module")
def seeded(database: str, worker: WorkerProcess) -> Iterator[dict[str, Any]]:
    """The dashboard's SIMULATED market with the closing bet's final and preliminary
    decisions of its last session, an admin key, and a queued backtest run no worker will
    see (recorded without a message: DELETE cancels it). On teardown: every run left
    unfinished cancelled, the broker purged, the indicator cache emptied."""
    facts = dashboard_data.seed(database)
    queued = uuid.uuid4().hex
    end: dt.date = facts["end"]
    with session_scope() as session:
        # the closing bet's decisions of the last session: its evening (final) scan, and
        # the buy-window (preliminary) one at 15:10 KST
        for params in (
            {"markets": ["KOSPI", "KOSDAQ"]},
            {"phase": "preliminary", "as_of": f"{end.isoformat()}T15:10:00+09:00"},
        ):
            run = start_run(session, strategy="closing_bet", trade_date=end, params=params,
                            total=25, chunks=1, data_version=None)  # fmt: skip
            finish_run(session, run, state="completed")
        create_run(session, queued, strategy="sma_crossover", total=1,
                   spec={"strategy": "sma_crossover", "instruments": ["KOSPI:900000"],
                         "start": "2026-03-02", "end": "2026-04-10"})  # fmt: skip
    forget_service()
    indicator_cache().clear()
    token, _ = api_keys.create("schemathesis", ["admin"], rate_per_minute=10_000_000)
    yield {**facts, "token": token, "queued_run": queued}
    with session_scope() as session:
        left = session.scalars(
            select(BacktestRun.id).where(BacktestRun.state.not_in(FINAL_STATES))
        ).all()
    for run_id in left:
        backtests.cancel(run_id, wait=0.0)
    worker_app.control.purge()
    indicator_cache().clear()


@pytest.fixture(scope="module")
def api_schema(seeded: dict[str, Any]) -> Any:
    """The app's OpenAPI document as a schemathesis schema, the seeded values as
    dictionaries."""
    known = _known_values(seeded)
    bind = {
        "path.signal_id": "ids",
        "path.letter_id": "ids",
        "path.run_id": "runs",
        "path.date": "dates",
        "query.date": "dates",
        "path.instrument": "instruments",
        "path.task_id": "tasks",
        "path.name": "portfolios",
        "query.strategy": "strategies",
        "query.market": "markets",
        "query.phase": "phases",
        "body.strategy": "strategies",
        "body.instruments[*]": "instruments",
        "body.start": "dates",
        "body.end": "dates",
    }
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # The key is sent on every case (the test's headers); no generated key beside it:
            # a random X-API-Key next to the valid Bearer key would be ignored (the Bearer
            # key is read first), which ignored_auth takes for a generated key accepted.
            "generation": {
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
            "dictionaries": {name: {"values": values} for name, values in known.items() if values},
            # /health and /health/detail answer 503 by design while the deployment is
            # unhealthy, as it is here (no beat, the SIMULATED data months old).
            "operations": [
                {
                    "include-path-regex": "/health",
                    "checks": {
                        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}
                    },
                }
            ],
            "parameters": {
                key: {"dictionary": name, "probability": 0.5}
                for key, name in bind.items()
                if known[name]
            },
        }
    )
    app = create_app(get_settings())
    return schemathesis.openapi.from_asgi(f"{API_PREFIX}/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=r"/events$")


@pytest.fixture(scope="module")
def answers() -> Iterator[Counter[tuple[str, int]]]:
    """``(operation, status) -> cases``. On teardown: printed (``pytest -s``), and every
    read operation must have answered 200 at least once, so its response schema was
    checked against a real answer (the seeding and the dictionaries reach the rows)."""
    tally: Counter[tuple[str, int]] = Counter()
    yield tally
    operations = sorted({label for label, _ in tally})
    print(f"\nschemathesis: {sum(tally.values())} cases over {len(operations)} operations")
    for label in operations:
        codes = {code: n for (op, code), n in sorted(tally.items()) if op == label}
        print(f"  {label}: {codes}")
    reads = [op for op in operations if op.startswith("GET /api/v1/")]
    answered = [op for op in reads if tally[(op, 200)] > 0]
    assert answered == reads, sorted(set(reads) - set(answered))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_openapi_document(
    case: Case[Any], seeded: dict[str, Any], answers: Counter[tuple[str, int]]
) -> None:
    key = {"Authorization": f"Bearer {seeded['token']}"}
    response = case.call_and_validate(headers=key, checks=CHECKS)
    answers[(case.operation.label, response.status_code)] += 1
