"""Every process-wide registry is reset in a forked child (quantbeat.infra.forkstate).

The parent fills every registry; a forked child runs the worker's real ``worker_process_init``
handler (:func:`workers.process._after_fork`) and reports what it still holds. A source scan
finds every module-level registry, so a new one must either register a reset or be listed
here as needing none, with the reason.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import quantbeat.infra.notify.base  # noqa: F401  (until a task module imports the notify senders)
import workers.app  # noqa: F401  (the worker's modules, as a worker imports them)
from quantbeat.infra import forkstate
from workers import process
from workers.app import TASK_MODULES

ROOT = Path(__file__).resolve().parents[2]
for _name in TASK_MODULES:  # as a worker does before it forks: services register their resets
    importlib.import_module(_name)

#: (module, attribute) of every registry a forked child must not inherit.
RESET: tuple[tuple[str, str], ...] = (
    ("db.engine", "_engines"),
    ("db.readcache", "_entries"),
    ("quantbeat.infra.ai_quota", "_limiters"),
    ("quantbeat.infra.cache", "_caches"),
    ("quantbeat.infra.notify.base", "_clients"),
    ("quantbeat.infra.ratelimit", "_limiters"),
    ("quantbeat.infra.sources", "_sources"),
    ("quantbeat.infra.sources", "_crypto"),
    ("quantbeat.services.backtests", "_stores"),
    ("quantbeat.services.health", "_engines"),
    ("quantbeat.services.indicators", "_services"),
    ("quantbeat.services.settings_store", "_cache"),
    ("workers.heartbeat", "_running"),
)

#: Module-level state that a child may share with its parent, and why.
NO_RESET: dict[tuple[str, str], str] = {
    ("db.engine", "_sessionmakers"): "factories only; their engines' pools are reset",
    ("db.engine", "_family"): "a context variable, set per task execution",
    ("workers.deadline", "_in_prefork_child"): "a flag the child itself sets at fork",
    ("db.bulk", "_temp_names"): "a counter of temporary table names",
    ("db.readcache", "_dirty"): "weak references to this process's connections, emptied by "
    "db.readcache's own reset (the fork test's stand-in object would not be a set)",
    ("db.events", "_after_commit"): "callbacks registered at import (no connection, no state)",
    ("workers.metrics", "_extra_collectors"): "collectors added at import; only the main "
    "process serves them (a child's copy is never read)",
    ("quantbeat.infra.forkstate", "_resets"): "the registry of resets itself",
    ("quantbeat.infra.metrics", "_warned"): "a flag: warn once per process tree",
    ("quantbeat.api.streams", "_open"): "a count of the event streams this process serves",
    ("quantbeat.api.routes.indicators", "_waiting_limiter"): "made in the API's event loop",
    ("quantbeat.services.api_keys", "_cache"): "checked API keys (data, no connection; 5 s)",
    ("quantbeat.services.api_keys", "_touched"): "when a key's last use was stamped",
    ("quantbeat.services.strategies", "_registry"): "code (strategies), no connection",
    ("workers.base", "_hard_limit_handlers"): "code (handlers), no connection",
    ("workers.base", "_worker_lost_handlers"): "code (handlers), no connection",
    ("workers.base", "_child_killed_handlers"): "code (handlers), no connection",
    ("workers.base", "_direct_writers"): "connections kept per process id: a child opens its own",
    ("workers.metrics", "_started"): "start times of the tasks this process runs",
    ("workers.metrics", "_counted_deaths"): "kept by the main process only",
    ("workers.metrics", "_state"): "the main process's metrics server",
    ("workers.process", "_recorded_time_limits"): "kept by the main process only",
}


def _module_registries() -> set[tuple[str, str]]:
    """Module-level ``_name = {}`` / ``OrderedDict()`` / ``… | None = None`` / objects, in
    quantbeat, db and workers."""
    found = set()
    for package in ("quantbeat", "db", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            for node in ast.parse(path.read_text()).body:
                targets = []
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    targets = [node.target.id]
                    value = node.value
                elif isinstance(node, ast.Assign):
                    targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
                    value = node.value
                else:
                    continue
                for name in targets:
                    if not name.startswith("_") or name.startswith("__") or name.isupper():
                        continue  # public names and _CONSTANTS are not process state
                    empty = (isinstance(value, ast.Dict) and not value.keys) or (
                        isinstance(value, ast.List | ast.Set) and not value.elts
                    )
                    if empty or (isinstance(value, ast.Constant) and value.value in (None, False)):
                        found.add((module, name))
                    elif isinstance(value, ast.Call):
                        func = ast.unparse(value.func)
                        if not any(
                            word in func
                            for word in ("Lock", "compile", "get_logger", "TypeVar", "getLogger")
                        ):
                            found.add((module, name))
    return found


def test_every_module_level_registry_is_accounted_for():
    found = _module_registries()
    listed = set(RESET) | set(NO_RESET)
    assert sorted(found - listed) == [], "register an after_fork reset or list it in NO_RESET"
    assert sorted(listed - found) == [], "stale entries in this test"


def test_the_worker_resets_through_the_registry_only():
    """workers.process names no service: it runs whatever registered."""
    source = (ROOT / "workers" / "process.py").read_text()
    assert "quantbeat.services" not in source
    names = forkstate.registered()
    for module in {m for m, _ in RESET}:
        assert any(n.startswith(module + ".") for n in names), f"{module} registers no reset"


def _fill(module: str, attr: str, engine: Any) -> None:
    mod = importlib.import_module(module)
    current = getattr(mod, attr)
    if module == "db.engine":
        current["test-fork"] = engine
    elif isinstance(current, dict):
        current[("test-fork",)] = object()
    else:
        setattr(mod, attr, object())


def _held(module: str, attr: str) -> Any:
    mod = importlib.import_module(module)
    current = getattr(mod, attr)
    if module == "db.engine":
        engine = current.get("test-fork")
        # dispose(close=False) swaps in a fresh pool: nothing inherited is checked in
        return 0 if engine is None else engine.pool.checkedin()
    if isinstance(current, dict):
        return len(current)
    return current is not None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_holds_nothing_of_its_parent(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'fork.sqlite'}")
    with engine.connect() as conn:
        conn.execute(text("select 1"))
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    saved = {
        key: dict(getattr(importlib.import_module(key[0]), key[1]) or {})
        for key in RESET
        if isinstance(getattr(importlib.import_module(key[0]), key[1]), dict)
    }
    try:
        for module, attr in RESET:
            _fill(module, attr, engine)
            assert _held(module, attr), f"{module}.{attr} was not filled"
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: what a prefork pool child does, then report
            try:
                os.close(read)
                process._after_fork()
                report = {f"{m}.{a}": _held(m, a) for m, a in RESET}
                os.write(write, json.dumps(report).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            report = json.loads(pipe.read() or "{}")
        os.waitpid(pid, 0)
        assert report, "the child reported nothing"
        assert {k: v for k, v in report.items() if v} == {}
        # the parent keeps its own state
        assert _held("quantbeat.infra.cache", "_caches")
    finally:
        for module, attr in RESET:
            mod = importlib.import_module(module)
            current = getattr(mod, attr)
            if isinstance(current, dict):
                current.clear()
                current.update(saved.get((module, attr), {}))
            else:
                setattr(mod, attr, None)
        engine.dispose()
    assert sys.modules["workers.process"] is process
