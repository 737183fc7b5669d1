"""Worker process hooks, called directly (the integration suite runs them in real workers)."""

from __future__ import annotations

import structlog

from db.engine import forget_engines, get_engine
from workers import process


def test_after_fork_replaces_inherited_pools_without_closing_them():
    forget_engines()
    engine = get_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connects
    inherited = engine.pool
    process._after_fork()
    assert engine.pool is not inherited
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
