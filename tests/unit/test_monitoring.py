"""The monitoring configuration (issue 22): the alert rules pass ``promtool check rules`` and
their unit tests (``promtool test rules``), Alertmanager's configuration passes
``amtool check-config``, every Grafana panel's PromQL parses (checked by promtool as a rule
expression) and every metric any of them names is one the code exports — read from the
exporters themselves, not from a list kept by hand."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from quantbeat.infra import metrics
from quantbeat.services.ops_metrics import OpsCollector
from workers.metrics import WorkerCollector

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
#: Series Prometheus itself adds to every target, and the API/Flower families scraped too.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: PromQL words that look like identifiers but are not metric names.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "irate", "increase",
    "deriv", "delta", "histogram_quantile", "absent", "and", "or", "unless", "offset",
    "on", "ignoring", "group_left", "group_right", "bool", "topk", "bottomk", "clamp_min",
    "clamp_max", "time", "vector", "scalar", "label_replace", "max_over_time",
    "min_over_time", "avg_over_time", "sum_over_time", "changes", "resets", "le", "humanize",
}  # fmt: skip


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (make test installs Debian's prometheus)")
    return found


def _families(collector: Any) -> list[Metric]:
    return list(collector.collect())


def exported_names() -> set[str]:
    """Every sample name the exporters can produce: the registry's metrics (with their
    ``_total``/``_bucket``/``_sum``/``_count`` samples) and the scrape-time collectors."""
    names: set[str] = set()
    for metric in metrics.ALL_METRICS:
        for family in metric.describe():
            base = family.name
            if family.type == "counter":
                names |= {base + "_total", base + "_created"}
            elif family.type == "histogram":
                names |= {base + "_bucket", base + "_sum", base + "_count", base + "_created"}
            else:
                names.add(base)

    class _App:  # the broker read fails at once: the families are still described
        connection_for_read = None

    for family in _families(WorkerCollector(_App(), "probe@host", timeout=0.01)):
        names.add(family.name)
    for family in _families(OpsCollector(timeout=0.5)):
        names.add(family.name)
    return names


def _expressions_in_rules() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]


def _dashboard_expressions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        exprs = [
            str(target["expr"])
            for panel in board["panels"]
            for target in panel.get("targets", [])
            if target.get("expr")
        ]
        found[path.name] = exprs
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (identifiers that are not PromQL words, label
    names inside braces, durations or strings)."""
    stripped = re.sub(r'"[^"]*"', '""', expr)  # strings
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)  # label matchers
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)  # ranges
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)  # grouping
    stripped = re.sub(r"\b\d+(\.\d+)?(ms|[smhdwy]|e[+-]?\d+)?\b", "", stripped)  # numbers
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped))
    return {w for w in words if w not in PROMQL_WORDS}


def test_the_alert_rules_check_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS / "tests",
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # every alert has at least one unit test
    tests = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    covered = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts == covered


def test_a_broken_rule_is_caught_by_promtool(tmp_path: Path) -> None:
    # the check above can fail: a rule with a syntax error does not pass it
    promtool = _promtool()
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n"
        "        expr: sum(rate(quantbeat_task_total[5m]) > \n"
    )
    checked = subprocess.run(
        [promtool, "check", "rules", str(bad)], capture_output=True, text=True, check=False
    )
    assert checked.returncode != 0


def test_every_metric_the_rules_and_dashboards_read_is_exported() -> None:
    exported = exported_names() | SCRAPE_SERIES
    assert {"quantbeat_task_total", "quantbeat_queue_length", "quantbeat_health_status"} <= (
        exported
    )
    used: dict[str, set[str]] = {"alerts.yml": set()}
    for expr in _expressions_in_rules():
        used["alerts.yml"] |= metric_names(expr)
    for name, exprs in _dashboard_expressions().items():
        used[name] = set().union(*(metric_names(e) for e in exprs)) if exprs else set()
    unknown = {where: sorted(names - exported) for where, names in used.items()}
    assert all(not names for names in unknown.values()), unknown
    assert len(used) > 1  # the dashboards were read too


def test_the_name_check_sees_an_unknown_metric() -> None:
    assert metric_names('sum by (queue) (rate(quantbeat_typo_total{queue="io"}[5m]))') == {
        "quantbeat_typo_total"
    }
    assert metric_names("max(a_b offset 1h) > 0.95 and c_d > 1e3") == {"a_b", "c_d"}


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    promtool = _promtool()
    exprs = [e for exprs in _dashboard_expressions().values() for e in exprs]
    assert len(exprs) >= 10
    # promtool parses rule expressions: each panel query becomes a recording rule
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:expr_{k}", "expr": e.replace("$__rate_interval", "5m")}
                    for k, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (make test installs prometheus-alertmanager)")
    checked = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
