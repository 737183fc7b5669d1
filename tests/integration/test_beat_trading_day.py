"""Beat drives one simulated KRX trading day (issue 17's first done-when): its 15:10 entry
leaves graded ``preliminary`` closing-bet signals in PostgreSQL before 15:18, and after the
15:40 entry (the day's bars) its 18:10 entry the ``final`` ones, both phases kept. A trader
subscribed on Telegram (a local server speaking the Bot API) receives the preliminary
closing-bet message before the 15:20 auction and, after the 21:10 entry, the daily summary —
each once (issue 19's done-when).

Nothing is called directly: a real ``quantbeat beat`` (celery-redbeat, the production
schedule) sends the entries and real ``quantbeat worker`` processes (``cpu`` prefork, ``io``
and ``ai`` threads) run the pipelines on the simulated market, against PostgreSQL and a
throwaway redis-server. Their clock is faked with Debian's libfaketime (``LD_PRELOAD``): one
offset, kept in a timestamp file every process re-reads each second, so they all share the
same "now" and the test moves it — to just before 15:10, 15:40 and 18:10 of 2026-11-25, a
session with simulated movers. Every other entry of the schedule is switched off through the stored
settings, as an operator would (``schedule.<entry>.enabled``).

The 15:18 deadline is checked in fake time twice: the clock of the worker that stored the
last preliminary decision (``scan_runs.finished_at``) and an upper bound taken by this test
(its real time when it saw the signals, plus the offset). Needs libfaketime and redis-server
(``scripts/test_services.py`` installs libfaketime as root); skips naming what is missing.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import redis
from celery import Celery
from sqlalchemy import text

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
QUANTBEAT = str(Path(sys.executable).with_name("quantbeat"))
#: Debian's libfaketime (package ``libfaketime``, pulled in by ``faketime``).
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
#: Loaded first by the faked processes: works around libfaketime's broken ``time.sleep``.
FAKETIME_SITE = ROOT / "tests" / "support" / "faketime_site"

KST = ZoneInfo("Asia/Seoul")
#: A Wednesday session on which the simulated market (seed 42, the tests' 300 instruments)
#: plants two news-driven movers: closing-bet candidates.
DAY = dt.date(2026, 11, 25)
FIRST = dt.date(2026, 9, 15)  # simulated history from here through the previous session
#: The entries this day exercises; every other one is switched off.
ENTRIES = ("closing-bet-window", "krx-close", "krx-flows", "daily-summary", "notify-sweep")
#: The closing auction: a preliminary message after it could not be traded on.
AUCTION = dt.datetime.combine(DAY, dt.time(15, 20), tzinfo=KST)
#: What the trader's Telegram messages start with (Korean templates, simulated market).
PRELIMINARY_HEADER = "<b>종가베팅 2026-11-25 · 장중 잠정 (15:10)</b>"
FINAL_HEADER = "<b>종가베팅 2026-11-25 · 장마감 확정</b>"
SUMMARY_HEADER = "<b>일일 요약 2026-11-25</b>"
#: The closing auction starts at 15:20; the issue wants the decision stored by 15:18.
DEADLINE = dt.datetime.combine(DAY, dt.time(15, 18), tzinfo=KST)
#: How long (real seconds) a phase may take before the test gives up.
PHASE_TIMEOUT = 120.0


def _at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute, second), tzinfo=KST)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeClock:
    """The processes' shared clock: a libfaketime relative offset (whole seconds) in a
    timestamp file, re-read by every process at most a second later
    (``FAKETIME_CACHE_DURATION=1``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def set(self, moment: dt.datetime) -> None:
        """Make ``moment`` (aware) the fake now (the file is replaced atomically)."""
        self.offset = round(moment.timestamp() - time.time())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{self.offset:+d}\n")
        tmp.replace(self.path)

    def now(self) -> dt.datetime:
        """The fake now (KST), as the processes see it once they re-read the file."""
        return dt.datetime.fromtimestamp(time.time() + self.offset, KST)

    def env(self) -> dict[str, str]:
        """What a process needs to run on this clock."""
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",
            # Timeouts and sleeps stay on the real monotonic clock (see FAKETIME_SITE).
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


class Stack:
    """A redis-server and the quantbeat processes under test; :meth:`stop` ends them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = _free_port()
        self.base = f"redis://127.0.0.1:{self.port}"

    def start_redis(self) -> None:
        server = shutil.which("redis-server")
        assert server is not None
        self.procs["redis"] = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.base)
        self.wait(lambda: _pings(client), "redis-server to answer", 15)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def logs(self) -> str:
        """The tail of every process's log, for failure messages."""
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited ({proc.returncode}):\n{self.logs()}")

    def wait(self, probe: Callable[[], T | None], what: str, timeout: float = PHASE_TIMEOUT) -> T:
        """Poll ``probe`` every 0.25 s until it returns something other than ``None``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = probe()
            if found is not None:
                return found
            time.sleep(0.25)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.logs()}")

    def stop(self) -> None:
        for name, proc in self.procs.items():
            if name != "redis" and proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            if name == "redis" and proc.poll() is None:
                continue
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        redis_proc = self.procs.get("redis")
        if redis_proc is not None and redis_proc.poll() is None:
            redis_proc.terminate()
            redis_proc.wait(10)
        # libfaketime removes its shared memory when a process exits normally; not when one
        # had to be killed.
        for name, proc in self.procs.items():
            if name != "redis":
                for leftover in (f"faketime_shm_{proc.pid}", f"sem.faketime_sem_{proc.pid}"):
                    Path("/dev/shm", leftover).unlink(missing_ok=True)


def _pings(client: Any) -> bool | None:
    try:
        return bool(client.ping()) or None
    except redis.ConnectionError:
        return None


def _missing() -> list[str]:
    """What this test needs and the machine lacks (each with how to install it)."""
    missing = []
    if not LIBFAKETIME.exists():
        missing.append(f"{LIBFAKETIME} (apt-get install faketime)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (apt-get install redis-server)")
    return missing


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(_missing()), reason=f"needs {', '.join(_missing())}"),
]


@pytest.fixture
def switched_off(clean_db: str) -> Iterator[list[str]]:
    """Every schedule entry but :data:`ENTRIES` switched off in the stored settings, as an
    operator would (switched back on afterwards); an empty database before."""
    from beat_schedule import BEAT_SCHEDULE
    from quantbeat.services.settings_store import set_setting, unset_setting

    off = [name for name in BEAT_SCHEDULE if name not in ENTRIES]
    for name in off:
        set_setting(f"schedule.{name}.enabled", False, updated_by="test_beat_trading_day")
    try:
        yield off
    finally:
        for name in off:
            unset_setting(f"schedule.{name}.enabled")


def _seed_history() -> None:
    """Simulated candles, investor flows and reference bars through the session before DAY."""
    from quantbeat.infra.sources import krx_calendar
    from quantbeat.services.market import collect_reference
    from tasks.collect import daily_range

    previous = krx_calendar().previous_session(DAY - dt.timedelta(days=1))
    daily_range(FIRST.isoformat(), previous.isoformat())
    daily_range(FIRST.isoformat(), previous.isoformat(), dataset="flows")
    collect_reference(FIRST, previous)


def _scan_runs(strategy: str, phase: str) -> list[dict[str, Any]]:
    from db.engine import session_scope

    final = phase == "final"
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT id, state, candidates, started_at, finished_at, params FROM scan_runs "
                "WHERE strategy = :s AND trade_date = :d "
                "AND (params->>'phase') IS NOT DISTINCT FROM :p ORDER BY id"
            ),
            {"s": strategy, "d": DAY, "p": None if final else phase},
        ).all()
    return [dict(r._mapping) for r in rows]


def _done(strategy: str, phase: str, runs: int) -> list[dict[str, Any]] | None:
    """The completed runs once ``runs`` of them exist (the decision, then the decision again
    with the news scores); fails at once on a failed run or a first decision that found no
    candidate (nothing to analyse, so no second run would come)."""
    found = _scan_runs(strategy, phase)
    failed = [r for r in found if r["state"] == "failed"]
    assert not failed, f"{strategy} {phase} run failed: {failed}"
    done = [r for r in found if r["state"] == "completed"]
    if done and runs > 1 and done[0]["candidates"] == 0:
        pytest.fail(f"the {phase} {strategy} decision of {DAY} found no candidate: {done[0]}")
    return done if len(done) >= runs else None


def _idle(broker: Any) -> bool | None:
    """Nothing queued, nothing delivered but unacknowledged, and every recorded task
    execution finished (none started or retrying)."""
    from db.engine import session_scope

    queued = sum(
        broker.llen(key) for key in broker.scan_iter() if broker.type(key) == b"list"
    ) + broker.hlen("unacked")
    if queued:
        return None
    with session_scope() as session:
        busy = session.execute(
            text("SELECT count(*) FROM job_runs WHERE state IN ('started', 'retrying')")
        ).scalar_one()
    return True if busy == 0 else None


def _signals(phase: str) -> list[dict[str, Any]]:
    from db.engine import session_scope

    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT instrument_id, grade, entry_price, score FROM signals "
                "WHERE strategy = 'closing_bet' AND trade_date = :d AND phase = :p "
                "ORDER BY instrument_id"
            ),
            {"d": DAY, "p": phase},
        ).all()
    return [dict(r._mapping) for r in rows]


def _slots() -> dict[str, list[dt.datetime]]:
    from db.engine import session_scope

    with session_scope() as session:
        rows = session.execute(
            text("SELECT entry, scheduled_for FROM beat_slots ORDER BY scheduled_for")
        ).all()
    out: dict[str, list[dt.datetime]] = {}
    for entry, scheduled_for in rows:
        if entry != "notify-sweep":  # every 15 s, all day: not one of the day's moments
            out.setdefault(entry, []).append(scheduled_for.astimezone(KST))
    return out


def _messages(fake: Any, header: str) -> list[Any]:
    """The Telegram messages (first parts) starting with ``header``."""
    return [r for r in fake.accepted if header in (r.text or "").split("\n", 1)[0]]


def test_beat_runs_the_closing_bet_in_the_buy_window_and_again_in_the_evening(
    switched_off: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quantbeat.infra.keys import BEAT_TICK_KEY
    from quantbeat.services import notify
    from quantbeat.services.closing_window import compare_phases
    from tests.support import notify_env
    from tests.support.fake_notify import FakeTelegram

    telegram = FakeTelegram(
        tokens=[notify_env.TELEGRAM_TOKEN],
        chats=[notify_env.TELEGRAM_CHAT],
        port=notify_env.TELEGRAM_PORT,
    ).start()
    notify.add(
        "trader",
        "telegram",
        target=notify_env.TELEGRAM_CHAT,
        secret="tg_test",
        filters={
            "event_types": ["signals.published", "daily.summary"],
            "strategies": ["closing_bet"],
        },
    )

    real: dict[str, float] = {"start": time.monotonic()}  # real seconds per stage, reported
    clock = FakeClock(tmp_path / "faketime.rc")
    clock.set(_at(15, 0))  # the processes start before the buy window
    stack = Stack(tmp_path)
    try:
        stack.start_redis()
        env = {
            **os.environ,
            **clock.env(),
            "QUANTBEAT_BROKER_URL": f"{stack.base}/0",
            "QUANTBEAT_RESULT_BACKEND": f"{stack.base}/1",
            "QUANTBEAT_REDIS_URL": f"{stack.base}/2",
            "QUANTBEAT_DATA_DIR": str(tmp_path / "data"),
            "QUANTBEAT_BEAT_MAX_INTERVAL": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(FAKETIME_SITE), str(ROOT), os.environ.get("PYTHONPATH", "")]
            ),
        }
        env.pop("FAKETIME", None)  # it would win over the timestamp file
        hostname = f"trading-day-{uuid.uuid4().hex[:6]}@localhost"
        stack.spawn("worker", [QUANTBEAT, "worker", "--queues", "io,cpu,ai", "--concurrency",
                               "3", "--hostname", hostname], env)  # fmt: skip
        stack.spawn("beat", [QUANTBEAT, "beat"], env)
        _seed_history()  # while the processes start
        control = Celery(broker=f"{stack.base}/0")
        stack.wait(
            lambda: control.control.ping(destination=[hostname], timeout=1.0) or None,
            f"worker {hostname}",
            90,
        )
        broker = redis.Redis.from_url(f"{stack.base}/0")
        state = redis.Redis.from_url(f"{stack.base}/2")
        stack.wait(lambda: state.get(BEAT_TICK_KEY), "beat's first tick", 60)
        assert _slots() == {}, "beat sent an entry before the buy window"
        real["processes ready"] = time.monotonic()

        # 15:10 — the buy-window pipeline: snapshot, news, decision, analyses, decision again.
        clock.set(_at(15, 9, 58))
        window = stack.wait(lambda: _done("closing_bet", "preliminary", 2), "the 15:10 decision")
        seen_by = clock.now()  # an upper bound of when the signals were stored (fake time)
        preliminary = _signals("preliminary")
        stored_at = max(r["finished_at"] for r in window).astimezone(KST)
        assert preliminary, "no preliminary closing-bet signal"
        assert all(s["grade"] for s in preliminary), preliminary
        assert all(s["entry_price"] for s in preliminary), preliminary
        assert _signals("final") == []
        assert all(r["params"]["as_of"] == _at(15, 10).isoformat() for r in window), window
        assert _slots() == {"closing-bet-window": [_at(15, 10)]}
        assert _at(15, 10) <= stored_at < DEADLINE, stored_at
        assert seen_by < DEADLINE, seen_by
        fire_to_signals = (stored_at - _at(15, 10)).total_seconds()
        told = stack.wait(
            lambda: _messages(telegram, PRELIMINARY_HEADER) or None, "the preliminary message"
        )
        told_at = dt.datetime.fromtimestamp(told[0].at + clock.offset, KST)
        assert told_at < AUCTION, told_at  # the trader can still buy at the auction
        assert "[모의 데이터 SIMULATED]" in (told[0].text or "")
        stack.wait(lambda: _idle(broker), "the window's tasks to finish")
        real["15:10 window"] = time.monotonic()

        # 15:40 — the day's bars, reference bars, gate, indicators, news, VCP scan.
        clock.set(_at(15, 39, 58))
        stack.wait(lambda: _done("vcp", "final", 1), "the 15:40 pipeline's VCP scan")
        stack.wait(lambda: _idle(broker), "the 15:40 pipeline to finish")
        real["15:40 close"] = time.monotonic()

        # 18:10 — the day's flows, news, the closing-bet scan, analyses, scan again.
        clock.set(_at(18, 9, 58))
        evening = stack.wait(lambda: _done("closing_bet", "final", 2), "the 18:10 decision")
        stack.wait(lambda: _idle(broker), "the 18:10 pipeline to finish")
        real["18:10 flows"] = time.monotonic()
        final = _signals("final")
        assert final, "no final closing-bet signal"
        assert all(s["grade"] for s in final), final
        assert all(r["finished_at"].astimezone(KST) >= _at(18, 10) for r in evening), evening
        assert _signals("preliminary") == preliminary  # the buy window's record is kept
        assert _slots() == {
            "closing-bet-window": [_at(15, 10)],
            "krx-close": [_at(15, 40)],
            "krx-flows": [_at(18, 10)],
        }
        compared = compare_phases("closing_bet", DAY)
        assert compared["preliminary"] == len(preliminary)
        assert compared["final"] == len(final)
        assert len(compared["kept"]) + len(compared["lost"]) == len(preliminary)
        assert len(compared["kept"]) + len(compared["added"]) == len(final)
        stack.wait(lambda: _messages(telegram, FINAL_HEADER) or None, "the final message")

        # 21:10 — the daily summary, after the close
        clock.set(_at(21, 9, 58))
        summary = stack.wait(
            lambda: _messages(telegram, SUMMARY_HEADER) or None, "the daily summary"
        )
        summary_at = dt.datetime.fromtimestamp(summary[0].at + clock.offset, KST)
        assert summary_at >= _at(21, 10), summary_at
        stack.wait(lambda: _idle(broker), "the summary's tasks to finish")
        time.sleep(1.0)  # a duplicate would be on its way by now
        # once each, whatever beat's sweep and the wake-ups dispatched
        assert len(_messages(telegram, PRELIMINARY_HEADER)) == 1
        assert len(_messages(telegram, FINAL_HEADER)) == 1
        assert len(_messages(telegram, SUMMARY_HEADER)) == 1
        assert telegram.violations == 0
        real["21:10 summary"] = time.monotonic()
    finally:
        stack.stop()
        telegram.stop()
    marks = list(real.items())
    stages = ", ".join(f"{name} {t - marks[i][1]:.1f} s" for i, (name, t) in enumerate(marks[1:]))
    with capsys.disabled():
        print(
            f"\nbeat trading day (simulated, fake clock): 15:10 fire -> {len(preliminary)} graded "
            f"preliminary signals stored at {stored_at:%H:%M:%S} KST "
            f"({fire_to_signals:.1f} s after the fire, fake time; seen by {seen_by:%H:%M:%S}); "
            f"18:10 -> {len(final)} final; kept {len(compared['kept'])}, added "
            f"{len(compared['added'])}, lost {len(compared['lost'])}; Telegram: preliminary "
            f"message at {told_at:%H:%M:%S}, daily summary at {summary_at:%H:%M:%S}; "
            f"real time: {stages}"
        )
