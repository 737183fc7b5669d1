"""``quantbeat jobs list|show`` over job runs recorded by real task executions."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from quant.errors import PermanentError
from quantbeat.cli import main as cli

pytestmark = pytest.mark.integration

FAKE_KEY = "AIzaSyD-" + "y" * 31


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ids(out: str) -> list[str]:
    return [row["task_id"] for row in json.loads(out)]


def test_jobs_list_filters_and_show_prints_everything(celery_app, worker, clean_db, capsys):
    flaky = celery_app.send_task(
        "quantbeat.ops.test_flaky", kwargs={"fail_times": 1, "api_key": FAKE_KEY}
    )
    assert flaky.get(timeout=60) == {"retries": 1}
    # Brackets in stored text are printed as they are, never read as rich markup.
    failed = celery_app.send_task("quantbeat.ops.test_permanent", args=["bad [/b] row"])
    with pytest.raises(PermanentError):
        failed.get(timeout=60)

    code, out, _ = _cli(capsys, "jobs", "list", "--json")
    assert code == 0
    assert _ids(out) == [failed.id, flaky.id]  # most recent first

    code, out, _ = _cli(capsys, "jobs", "list", "--failed", "--json")
    assert _ids(out) == [failed.id]
    code, out, _ = _cli(capsys, "jobs", "list", "--state", "succeeded", "--json")
    assert _ids(out) == [flaky.id]
    code, out, _ = _cli(capsys, "jobs", "list", "--task", "quantbeat.ops.test_f*", "--json")
    assert _ids(out) == [flaky.id]
    code, out, _ = _cli(
        capsys, "jobs", "list", "--task", "quantbeat.ops.test_permanent", "--task",
        "quantbeat.ops.test_flaky", "--limit", "1", "--json",
    )  # fmt: skip
    assert _ids(out) == [failed.id]
    code, out, _ = _cli(capsys, "jobs", "list", "--task", "quantbeat.collect.*", "--json")
    assert _ids(out) == []
    code, out, _ = _cli(capsys, "jobs", "list", "--since", "1h", "--json")
    assert set(_ids(out)) == {flaky.id, failed.id}
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    code, out, _ = _cli(capsys, "jobs", "list", "--since", later, "--json")
    assert _ids(out) == []

    code, out, _ = _cli(capsys, "jobs", "list")
    assert code == 0
    assert "quantbeat.ops.test_permanent" in out
    assert "simulated permanent failure: bad [/b] row" in out
    assert "succeeded" in out

    code, out, _ = _cli(capsys, "jobs", "show", flaky.id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["task_name"] == "quantbeat.ops.test_flaky"
    assert (shown["state"], shown["attempts"], shown["retries"]) == ("succeeded", 2, 1)
    assert shown["kwargs"] == {"fail_times": 1, "api_key": "***"}
    assert (shown["queue"], shown["worker"]) == ("io", worker.hostname)
    assert shown["result"] == {"retries": 1}
    assert shown["finished_at"] >= shown["started_at"]
    assert shown["duration_ms"] >= 0
    # Every execution is kept: the retried first one and the one that succeeded.
    executions = shown["executions"]
    assert [(e["attempt"], e["state"]) for e in executions] == [(1, "retrying"), (2, "succeeded")]
    assert "simulated transient failure" in executions[0]["error"]
    assert executions[1]["result"] == {"retries": 1}
    assert all(e["worker"] == worker.hostname and e["finished_at"] for e in executions)

    code, out, _ = _cli(capsys, "jobs", "show", str(shown["id"]))  # by row id, as a table
    assert code == 0
    assert flaky.id in out
    assert '"api_key": "***"' in out
    assert FAKE_KEY not in out
    assert "executions" in out
    assert "retrying" in out

    code, out, _ = _cli(capsys, "jobs", "show", failed.id, "--json")
    assert "PermanentError: simulated permanent failure: bad [/b] row" in json.loads(out)["error"]
    code, out, _ = _cli(capsys, "jobs", "show", failed.id)
    assert code == 0
    assert '"bad [/b] row"' in out
    assert "bad [/b] row" in out.split("executions", 1)[1]  # the attempt's error, as text

    code, _, err = _cli(capsys, "jobs", "show", "no-such-task")
    assert code == cli.EXIT_USAGE
    assert "'no-such-task'" in err
    code, _, err = _cli(capsys, "jobs", "list", "--since", "yesterday")
    assert code == cli.EXIT_USAGE
    assert "--since" in err
    assert "'yesterday'" in err
