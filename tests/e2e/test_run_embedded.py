"""``quantbeat run`` on the embedded default, as ``make run`` invokes it: a fresh directory,
no QUANTBEAT_* variables, no services. SQLite is the subject here (the embedded default), not a
stand-in for PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))


def run_quantbeat(
    cwd: Path, *args: str, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTBEAT_")}
    env["COLUMNS"] = "200"
    env.update(settings or {})
    return subprocess.run(
        [QUANTBEAT, "run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


#: The simulated universe of the full-pipeline test. `make run` uses the default 2,500; the
#: pipeline is the same at 600 instruments and the test takes a third of the time (CI's
#: 15-minute budget). Every count below follows from it.
UNIVERSE = 600
SMALL = {"QUANTBEAT_SIM_UNIVERSE_SIZE": str(UNIVERSE)}


def test_first_run_collects_a_year_then_later_runs_change_nothing(tmp_path: Path):
    first = run_quantbeat(tmp_path, "--date", "2026-11-20", settings=SMALL)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "SIMULATED" in out
    assert "embedded mode" in out
    assert "260 (first run: a year of history)" in out
    assert f"new {UNIVERSE * 260:,}" in out  # instruments x 260 sessions
    assert (tmp_path / "var" / "quantbeat.sqlite").exists()
    # the whole pipeline: indicators precomputed, both scans over the universe, top candidates
    assert f"15 scan indicators × {UNIVERSE:,} instruments" in out
    assert "from the cache" in out
    scans = {ln.split()[0]: ln for ln in out.splitlines() if ln.split()[1:2] == ["scan"]}
    assert set(scans) == {"vcp", "closing_bet"}
    assert all(
        f"{UNIVERSE:,}/{UNIVERSE:,} instruments scanned, 0 failed" in ln for ln in scans.values()
    )
    assert "top vcp candidates, 2026-11-20" in out
    # the news of the day (the simulated source) and the offline analysis of the top candidates
    assert "from simulated" in out
    for strategy in ("vcp", "closing_bet"):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{strategy} analysis")]
        assert "top candidates analysed, 0 failed, offline-rules-v1 (offline rules" in line
    # ... and it ends with a backtest of each scanned strategy over the stored history
    assert "backtests over the stored history (SIMULATED data)" in out
    for strategy in ("vcp_breakout", "closing_bet"):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{strategy} backtest")]
        assert f"completed: {UNIVERSE}/{UNIVERSE} instruments" in line
        (report,) = [ln for ln in out.splitlines() if ln.startswith(f"{strategy} report: ")]
        path = tmp_path / report.split(": ", 1)[1].strip()
        assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert any("total_return" in ln for ln in out.splitlines())
    # the year's signals replayed, followed to their exits, and traded by a paper portfolio
    (followed,) = [ln for ln in out.splitlines() if " signals followed: " in ln]
    assert followed.startswith("SIMULATED ")
    closed = int(followed.split(" signals followed: ")[1].split(" closed")[0])  # "N closed, …"
    assert closed > 0, followed
    assert any(ln.startswith("SIMULATED signal history ") for ln in out.splitlines())
    (paper,) = [ln for ln in out.splitlines() if "paper portfolio simulated-paper" in ln]
    assert paper.startswith("SIMULATED ")
    assert int(paper.split("tax ")[1].split(" KRW")[0].replace(",", "")) > 0, paper
    # the crypto volatility check at the day's KRX close (15:30 KST) on the simulated market
    (crypto,) = [ln for ln in out.splitlines() if "crypto volatility KRW-BTC" in ln]
    assert crypto.startswith("SIMULATED crypto volatility KRW-BTC at 2026-11-20T06:30:00"), crypto
    assert "hourly returns of the trailing 30 days" in crypto, crypto
    assert crypto.endswith(("usual", "(crypto.volatility)", "UNUSUAL")), crypto
    # the hourly signals of the six hours up to it, and the paper portfolio they traded
    (signals,) = [ln for ln in out.splitlines() if "crypto signals KRW-BTC" in ln]
    assert signals.startswith(
        "SIMULATED crypto signals KRW-BTC, the hours ending 2026-11-20T01:00:00+00:00 … "
        "2026-11-20T06:00:00+00:00: "
    ), signals
    assert "by offline (crypto-rules-v1)" in signals, signals
    (book,) = [ln for ln in out.splitlines() if "crypto paper portfolio crypto-paper" in ln]
    assert book.startswith("SIMULATED "), book
    assert "no live order is sent" in book
    assert "; reconciled with its ledger; orders in these hours: " in book, book
    # the day's messages, delivered to the file channel make run subscribes, each labelled
    (told,) = [ln for ln in out.splitlines() if "notifications (simulated-file" in ln]
    assert told.startswith("SIMULATED "), told
    messages = [
        json.loads(line)
        for line in (tmp_path / "var" / "notifications" / "simulated-messages.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    types = [m["type"] for m in messages]
    for expected in ("signals.published", "daily.summary", "backtest.finished"):
        assert expected in types, types
    assert all(m["simulated"] and m["text"].startswith("[SIMULATED]") for m in messages)
    assert any("closing bet 2026-11-20 · buy-window (preliminary)" in m["text"] for m in messages)
    assert f"{len(messages)} message(s) this run" in told

    again = run_quantbeat(tmp_path, "--date", "2026-11-20", settings=SMALL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"new 0, changed 0, unchanged {UNIVERSE:,}" in again.stdout
    (line,) = [ln for ln in again.stdout.splitlines() if "candles in database" in ln]
    assert line.split()[-1] == f"{UNIVERSE * 260:,}"
    # the same day again: its events were recorded once, so only the new backtest runs are
    # announced; no decision, summary or trade is told twice
    inbox = (tmp_path / "var" / "notifications" / "simulated-messages.jsonl").read_text(
        encoding="utf-8"
    )
    seen = [json.loads(line) for line in inbox.splitlines()]
    again_types = [m["type"] for m in seen[len(messages) :]]
    assert again_types, again.stdout[-2000:]
    assert set(again_types) == {"backtest.finished"}, again_types


def test_a_holiday_has_no_session(tmp_path: Path):
    # Chuseok 2026: the first run still builds the year of history up to the holiday. The
    # calendar is the subject, not the universe's size: 100 simulated instruments keep it short.
    small = {"QUANTBEAT_SIM_UNIVERSE_SIZE": "100"}
    done = run_quantbeat(tmp_path, "--date", "2026-09-25", settings=small)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "new 26,000" in done.stdout  # 100 instruments x 260 sessions
    again = run_quantbeat(tmp_path, "--date", "2026-09-25", settings=small)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "no KRX session" in again.stdout


def test_bad_date_is_one_line_and_exit_2(tmp_path: Path):
    done = run_quantbeat(tmp_path, "--date", "2026-02-30")
    assert done.returncode == 2
    assert "'2026-02-30'" in done.stderr
    assert "Traceback" not in done.stderr
