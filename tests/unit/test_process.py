"""Worker process hooks, called directly (the integration suite runs them in real workers)."""

from __future__ import annotations

import resource

import structlog

from db.engine import forget_engines, get_engine
from workers import process


def test_after_fork_replaces_inherited_pools_without_closing_them():
    forget_engines()
    engine = get_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connects
    inherited = engine.pool
    # _after_fork also caps this process' address space (a pool child's memory cap); this
    # process is pytest's, and every process it starts later would inherit the cap: Debian's
    # chromedriver, which reserves gigabytes of address space at start, then died with SIGTRAP
    # (status -5) in the browser tests that ran after this one on the same xdist worker.
    saved = resource.getrlimit(resource.RLIMIT_AS)
    try:
        process._after_fork()
        assert engine.pool is not inherited
        assert resource.getrlimit(resource.RLIMIT_AS)[0] != saved[0]  # the cap was set
    finally:
        resource.setrlimit(resource.RLIMIT_AS, saved)
        forget_engines()


def test_task_context_is_bound_and_cleared():
    class FakeTask:
        name = "quantbeat.collect.daily_candles"

    process._bind_task_context(task_id="abc", task=FakeTask())
    assert structlog.contextvars.get_contextvars() == {
        "task_id": "abc",
        "task_name": "quantbeat.collect.daily_candles",
    }
    process._clear_task_context()
    assert structlog.contextvars.get_contextvars() == {}


def test_published_argument_reprs_are_masked():
    headers = {"argsrepr": "['x']", "kwargsrepr": "{'api_key': 'AIza-secret'}"}
    body: tuple[list[str], dict[str, str], dict[str, str]] = (
        ["2026-11-20"],
        {"api_key": "AIza-secret", "market": "KOSPI"},
        {},
    )
    process._mask_argument_reprs(body=body, headers=headers)
    assert "AIza-secret" not in headers["kwargsrepr"]
    assert "'market': 'KOSPI'" in headers["kwargsrepr"]
    assert headers["argsrepr"] == "['2026-11-20']"
    assert body[1]["api_key"] == "AIza-secret"  # the task still receives its real arguments
