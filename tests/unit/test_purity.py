"""quant/ is pure domain code: no Celery, no database sessions, no environment reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

QUANT = Path(__file__).resolve().parents[2] / "quant"
FORBIDDEN_MODULES = (
    "celery",
    "kombu",
    "sqlalchemy",
    "db",
    "workers",
    "tasks",
    "quantbeat",
    "redis",
    "pydantic_settings",
    "dotenv",
)


def _modules() -> list[Path]:
    return sorted(QUANT.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(QUANT.parent)))
def test_quant_module_is_pure(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path}: imports {name}"
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            assert not (isinstance(node.value, ast.Name) and node.value.id == "os"), (
                f"{path}:{node.lineno} reads the environment"
            )


def test_there_is_domain_code_to_check():
    assert len(_modules()) >= 5
