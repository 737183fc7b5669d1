"""Session-wide test configuration.

Before any quantbeat module reads settings, every store the code could touch is pointed at the
test services prepared by ``make test`` (scripts/test_services.py): a dedicated PostgreSQL
database and two Redis database numbers. A developer's own ``.env`` or shell settings for
their real stack never leak into tests.
"""

from __future__ import annotations

import os

import pytest

# The shared check modules' asserts explain their failures like a test module's do.
pytest.register_assert_rewrite("tests.support.candle_reads")

from tests.support import notify_env, parallel  # noqa: E402

# Under pytest-xdist (`make test` runs `pytest -n 2`) every worker but the first gets its own
# database and Redis server (tests/support/parallel.py).
TEST_DATABASE_URL = parallel.database_url(
    os.environ.get(
        "QUANTBEAT_TEST_DATABASE_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_test",
    )
)
TEST_REDIS_URL = parallel.redis_url(
    os.environ.get("QUANTBEAT_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
)
parallel.export(TEST_DATABASE_URL, TEST_REDIS_URL)
TEST_BROKER_URL = f"{TEST_REDIS_URL}/14"
TEST_RESULT_BACKEND = f"{TEST_REDIS_URL}/15"

TEST_ENV = {
    "QUANTBEAT_ENV": "test",
    "QUANTBEAT_DATABASE_URL": TEST_DATABASE_URL,
    "QUANTBEAT_BROKER_URL": TEST_BROKER_URL,
    "QUANTBEAT_RESULT_BACKEND": TEST_RESULT_BACKEND,
    "QUANTBEAT_REDIS_URL": f"{TEST_REDIS_URL}/6",
    # Small, fast retries so retry behaviour is observable within a test.
    "QUANTBEAT_RETRY_BACKOFF_BASE": "0.2",
    "QUANTBEAT_RETRY_BACKOFF_MAX": "2",
    "QUANTBEAT_MAX_RETRIES": "3",
    "QUANTBEAT_SIM_UNIVERSE_SIZE": "300",
    # A stored-setting change reaches the test workers within half a second.
    "QUANTBEAT_STORED_SETTINGS_CHECK_EVERY": "0.5",
    # Test workers serve no Prometheus endpoint unless a test asks for one (a fixed port would
    # be taken by the first of them).
    "QUANTBEAT_METRICS_PORT": "0",
    "QUANTBEAT_LOG_LEVEL": "INFO",
    # The notification fakes the session's workers deliver to (tests/support/notify_env.py).
    **notify_env.environment(),
}
os.environ.update(TEST_ENV)
os.environ.pop("QUANTBEAT_GEMINI_API_KEY", None)


#: The service fixtures (database, redis_stores, clean_db, worker, celery_app) for
#: tests/integration and tests/faults.
pytest_plugins = ["tests.support.services"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--live", action="store_true", default=False, help="run tests that need the internet"
    )


#: The two-beat test (fault scenario 6) needs over two minutes of wall-clock time: it starts in
#: the background when collected (tests/faults/beat_experiment.py) and runs last. Under xdist
#: only the first worker starts it; the test, wherever it runs, reads the outcome the
#: experiment writes to a file.
BEAT_HA_TEST = "test_beat_ha_two_beats.py::test_two_beats_run_each_minute_once"
BEAT_EXPERIMENT = pytest.StashKey[object]()


def _start_beat_experiment(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = [item for item in items if item.nodeid.endswith(BEAT_HA_TEST)]
    if not chosen or config.getoption("collectonly"):
        return
    items[:] = [item for item in items if item not in chosen] + chosen
    if parallel.worker_id() not in ("", "gw0"):
        return
    from tests.faults.beat_experiment import start

    config.stash[BEAT_EXPERIMENT] = start(TEST_DATABASE_URL)


def pytest_sessionfinish(session: pytest.Session) -> None:
    experiment = session.config.stash.get(BEAT_EXPERIMENT, None)
    if experiment is not None:
        # Another xdist worker may still wait for its outcome: let it finish, then stop.
        experiment.join()  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _start_beat_experiment(config, items)
    if config.getoption("--live"):
        return
    skip_live = pytest.mark.skip(reason="talks to real external services; run with --live")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip_live)
