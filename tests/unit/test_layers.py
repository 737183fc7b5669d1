"""The import order of the four layers (README "Code layout", DEVELOPERS.md "Layers").

* **L0** ``quant`` — pure domain code (``test_purity.py`` checks what it may import).
* **L1** infrastructure — ``db``, ``workers`` (but ``workers.beat``), ``celeryconfig``,
  ``beat_schedule``, ``quantbeat.infra``.
* **L2** services — ``quantbeat.services``: one module per capability; only they open
  database sessions or send tasks.
* **L3** entry points — ``tasks``, ``quantbeat.cli`` (with ``quantbeat.__main__``),
  ``workers.beat``, ``quantbeat.api``: each may import any lower layer, never another entry
  point (every ``tasks`` module counts as an entry point of its own).

Every ``import`` statement of every module is read from its source (function-local and
``TYPE_CHECKING`` imports included): an import against the order or a cycle of modules (or of
packages) fails, with no allow-list.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("quant", "quantbeat", "db", "workers", "tasks")
SINGLE_MODULES = ("celeryconfig", "beat_schedule")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if "migrations" in rel.parts:
                continue  # Alembic revision scripts are loaded by Alembic, not imported
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    for name in SINGLE_MODULES:
        found[name] = ROOT / f"{name}.py"
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name lives in (``None`` if not ours)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import statement in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name``
            # imports mod (the name resolves to it).
            targets = [f"{source}.{alias.name}" for alias in node.names] or [source]
        for target in targets:
            resolved = _resolve(target)
            if resolved is not None and resolved != module:
                yield resolved, node.lineno


GRAPH: dict[str, dict[str, int]] = {
    module: dict(sorted(_imports(module), key=lambda x: x[1])) for module in MODULES
}

ENTRY_POINTS = ("quantbeat.cli", "quantbeat.api", "workers.beat")


def layer(module: str) -> int:
    """The layer of a module (0–3)."""
    if module == "quant" or module.startswith("quant."):
        return 0
    if module.startswith("quantbeat.services"):
        return 2
    if module == "tasks" or module.startswith("tasks.") or module == "quantbeat.__main__":
        return 3
    if any(module == e or module.startswith(e + ".") for e in ENTRY_POINTS):
        return 3
    return 1


def entry_point(module: str) -> str | None:
    """The entry point a layer-3 module belongs to: each ``tasks`` module is its own, the CLI
    package (and ``python -m quantbeat``) one, beat and the HTTP API one each."""
    if module == "quantbeat.__main__":
        return "quantbeat.cli"
    if module.startswith("tasks"):
        return module
    for e in ENTRY_POINTS:
        if module == e or module.startswith(e + "."):
            return e
    return None


def test_every_package_is_found() -> None:
    for required in ("quant.errors", "db.engine", "workers.app", "tasks.collect"):
        assert required in MODULES
    assert len(MODULES) > 100


def test_the_walk_sees_function_local_imports(tmp_path: Path) -> None:
    # The graph reads imports inside functions too: workers.app imports a module of its own
    # package at the top and celeryconfig is imported nowhere but by string.
    assert "workers.metrics" in GRAPH["workers.app"]
    assert any(MODULES[m].read_text().count("    from ") for m in MODULES)


def test_layer_order() -> None:
    wrong = [
        f"{module}:{line} (L{layer(module)}) imports {target} (L{layer(target)})"
        for module, targets in GRAPH.items()
        for target, line in targets.items()
        if layer(target) > layer(module)
    ]
    assert wrong == []


def test_entry_points_never_import_each_other() -> None:
    wrong = [
        f"{module}:{line} imports the entry point {target}"
        for module, targets in GRAPH.items()
        for target, line in targets.items()
        if layer(module) == 3 and layer(target) == 3 and entry_point(module) != entry_point(target)
    ]
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    item = stack.pop()
                    on_stack.discard(item)
                    component.append(item)
                    if item == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_cycle() -> None:
    graph = {module: set(targets) for module, targets in GRAPH.items()}
    assert _cycles(graph) == []


def _unit(module: str) -> str:
    """Package-level unit: the top-level package, ``quantbeat``'s sub-packages one each."""
    parts = module.split(".")
    if parts[0] == "quantbeat" and len(parts) > 1:
        return ".".join(parts[:2])
    if module == "workers.beat":
        return module
    return parts[0]


def test_no_package_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        graph[_unit(module)]
        for target in targets:
            if _unit(target) != _unit(module):
                graph[_unit(module)].add(_unit(target))
    assert _cycles(dict(graph)) == []


@pytest.mark.parametrize("package", ["tasks", "quantbeat/cli"])
def test_entry_points_open_no_session_and_send_no_task(package: str) -> None:
    """Sessions and sends belong to services: an entry point parses, calls, summarizes."""
    target = ROOT / package
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    wrong = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for word in ("session_scope", "send_task(", "apply_async(", "chord(", "chain("):
                if word in code:
                    wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert wrong == []


#: Most statement lines a task body may have (docstring excluded): parse, call, summarize.
MAX_TASK_BODY_LINES = 25


def test_every_task_body_is_short():
    long_ones = []
    for path in sorted((ROOT / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or not any(
                "task" in ast.unparse(d) for d in node.decorator_list
            ):
                continue
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            lines = (body[-1].end_lineno or 0) - body[0].lineno + 1 if body else 0
            if lines > MAX_TASK_BODY_LINES:
                long_ones.append(f"{path.name}:{node.name} ({lines} lines)")
    assert long_ones == []
