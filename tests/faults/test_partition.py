"""Fault scenario 16 (issue 16, "two hosts and a partition"): a worker on a host of its own is
cut off from Redis and PostgreSQL for 30 s in the middle of its tasks, then reconnected.

Two "hosts" on one machine: a network namespace (``qbtest-w<n>``) joined to the root namespace
by a veth pair on 10.213.<n>.0/24. The root end (10.213.<n>.1) carries a throwaway Redis
(broker, results, shared state) and a throwaway PostgreSQL, both bound to that address only;
one production ``io`` worker (``workers.app``, threads pool, 4 threads) runs inside the
namespace (10.213.<n>.2) and reaches them over the link only. The test process — the other
host — sends the tasks and watches Redis and the database from the root namespace.

The tasks are production ``quantbeat.collect.crypto_candles`` over the SIMULATED crypto market,
each a 6-hour range of 1-minute bars for four tickers (1,440 ``intraday_candles`` rows, unique
on instrument, interval and bar start, written in one transaction), so the rows every task
must write are known in advance. Once tasks are stored and others are running, the link is
cut for 30 s and more tasks are sent meanwhile; then the link is restored. Two ways of
cutting, each on its own namespace, link and servers, run in parallel:

* ``link``: the root end is set down (``ip link set … down``): the worker's end loses its
  carrier, as when a cable is pulled;
* ``blackhole``: both ends drop every packet they receive (nftables ingress hooks on the two
  veth devices): every send seems to leave and vanishes, as behind a failed switch or
  firewall; nothing is reset, TCP retransmits with exponential backoff.

Pass: every task sent completes (result SUCCESS, job run ``succeeded``) and its message is
acknowledged, every business row exists exactly once and none was rewritten, no task's rows
are ever partly stored, nothing is written during the cut, nothing is dead-lettered or
redelivered (retries the worker decided are allowed and counted), the worker process that was
cut off is the one that finishes (same process, its hostname on every job run) and it answers
ping again. The outcome notes say how long it took to answer and to finish.

The workers keep the production visibility timeout (2 h) and time limits: a 30 s partition is
far inside both, so Redis never hands their unacknowledged messages to anyone else, and the
tasks they were running resume on their own TCP connections once packets flow again (a
statement stalled past PostgreSQL's ``statement_timeout`` is cancelled by the server and the
task retried). A partition longer than the visibility timeout is the whole-worker loss of
scenario 1 (redelivery, no duplicate rows thanks to the business keys).

The namespaces, veth pairs and nftables tables are removed in the fixture's teardown, also
after a failure (and before the test, if a killed run left them); without the right to create
a namespace the test skips.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from tests.faults.outcomes import Outcome
from tests.faults.servers import ThrowawayPostgres, ThrowawayRedis
from tests.faults.test_server_faults import (
    client_for,
    compare,
    dead_letters,
    expected_rows,
    job_runs,
    rewritten_rows,
    stored_rows,
    wait_until,
)
from tests.support.services import WorkerProcess, start_worker

pytestmark = pytest.mark.integration

#: One "host" per way of cutting it off, each a namespace with its own veth link and /24.
MODES = {"link": "link down", "blackhole": "packets silently dropped"}
NFT_TABLE = "qbtest_cut"

TASK = "quantbeat.collect.crypto_candles"
TICKERS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"]
FIRST_HOUR = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)
SPAN_H = 6
BEFORE_CUT = 24  # tasks sent before the cut
DURING_CUT = 6  # tasks sent from the other host while the worker is cut off
CUT_AFTER_STORED = 4  # cut once this many tasks are stored (and others are running)
CUT_S = 30.0


# --- the link -----------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Link:
    """A veth link between the root namespace and the namespace ``qbtest-w<n>``: the root end
    ``qbtest-h<n>`` is 10.213.<n>.1, the namespace's end ``qbtest-w<n>`` is 10.213.<n>.2."""

    n: int

    @property
    def namespace(self) -> str:
        return f"qbtest-w{self.n}"

    @property
    def host_if(self) -> str:
        return f"qbtest-h{self.n}"

    @property
    def worker_if(self) -> str:
        return f"qbtest-w{self.n}"

    @property
    def network(self) -> str:
        return f"10.213.{self.n}.0/24"

    @property
    def host_ip(self) -> str:
        return f"10.213.{self.n}.1"

    @property
    def worker_ip(self) -> str:
        return f"10.213.{self.n}.2"

    @property
    def prefix(self) -> tuple[str, ...]:
        """The command prefix that runs a program in the namespace."""
        return ("ip", "netns", "exec", self.namespace)

    def create(self) -> None:
        """Create the namespace and the link (both ends up, addresses assigned).

        Raises:
            PermissionError: ``ip netns add`` was refused (no CAP_NET_ADMIN, a sandbox).
            RuntimeError: another ``ip`` command failed.
        """
        added = _ip("netns", "add", self.namespace, check=False)
        if added.returncode != 0:
            raise PermissionError(f"`ip netns add {self.namespace}`: {added.stderr.strip()}")
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.worker_if)
        _ip("link", "set", self.worker_if, "netns", self.namespace)
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.namespace, "addr", "add", f"{self.worker_ip}/24", "dev", self.worker_if)
        _ip("-n", self.namespace, "link", "set", self.worker_if, "up")
        _ip("-n", self.namespace, "link", "set", "lo", "up")

    def in_use(self) -> str:
        """The routes this machine already has into the link's network ("" if none)."""
        found = _ip("-4", "route", "show", "to", "match", self.worker_ip, check=False).stdout
        return "\n".join(line for line in found.splitlines() if not line.startswith("default"))

    def cut(self, mode: str) -> None:
        """``link``: set the root end down — the namespace's end loses its carrier (as when a
        cable is pulled); the root namespace still reaches 10.213.<n>.1, a local address.
        ``blackhole``: both ends drop every packet they receive (nftables ``netdev`` ingress
        hooks on the two veth devices only), so every send seems to leave and vanishes, as
        behind a failed switch or firewall."""
        if mode == "link":
            _ip("link", "set", self.host_if, "down")
        else:
            _nft(None, self.host_if)
            _nft(self.namespace, self.worker_if)

    def restore(self) -> None:
        """Undo either cut (harmless when there was none)."""
        _ip("link", "set", self.host_if, "up", check=False)
        _nft_delete(None, self.host_if)
        _nft_delete(self.namespace, self.worker_if)

    def remove(self) -> None:
        """Stop every process left in the namespace (only this test starts any), delete the
        namespace (which deletes the veth pair) and the root end if it is still there."""
        if self.namespace in _ip("netns", "list", check=False).stdout.split():
            for pid in _ip("netns", "pids", self.namespace, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "delete", self.namespace, check=False)
        if _ip("link", "show", self.host_if, check=False).returncode == 0:
            _nft_delete(None, self.host_if)
            _ip("link", "delete", self.host_if, check=False)


def _nft(namespace: str | None, device: str) -> None:
    """Drop every packet arriving on ``device`` (a table of its own, bound to that device)."""
    rules = (
        f"table netdev {NFT_TABLE}_{device.replace('-', '_')} {{\n  chain drop_in {{\n"
        f'    type filter hook ingress device "{device}" priority 0; policy drop;\n  }}\n}}\n'
    )
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "nft", "-f", "-"], input=rules, text=True, check=True, timeout=30)


def _nft_delete(namespace: str | None, device: str) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    table = f"{NFT_TABLE}_{device.replace('-', '_')}"
    subprocess.run(
        [*prefix, "nft", "delete", "table", "netdev", table],
        capture_output=True,
        timeout=30,
        check=False,
    )


#: Held while a run owns the namespaces: the names and networks are fixed, so two runs on one
#: machine (two checkouts' suites) take turns instead of removing each other's links.
LOCK_FILE = Path(tempfile.gettempdir()) / "quantbeat-test-partition.lock"
LOCK_WAIT_S = 600.0


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Hold :data:`LOCK_FILE` (``flock``); skip the test if another run keeps it longer than
    :data:`LOCK_WAIT_S`."""
    with LOCK_FILE.open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another run held {LOCK_FILE} for {LOCK_WAIT_S:.0f} s")
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def links() -> Iterator[dict[str, Link]]:
    """One link per cut mode (namespaces ``qbtest-w1``, ``qbtest-w2``). Skips when network
    namespaces cannot be created here; everything is removed after the test, whatever
    happened."""
    if shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("iproute2 (`ip`) and nftables (`nft`) are needed to build the two hosts")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN); not running as root")
    made = {mode: Link(n) for n, mode in enumerate(MODES, start=1)}
    with machine_lock():
        for link in made.values():
            link.remove()  # left over by a run killed before its teardown
            if link.in_use():
                pytest.skip(f"{link.network} is already routed on this machine: {link.in_use()}")
        try:
            for link in made.values():
                try:
                    link.create()
                except PermissionError as exc:
                    pytest.skip(f"network namespaces are not permitted here: {exc}")
            yield made
        finally:
            for link in made.values():
                link.remove()


# --- helpers ------------------------------------------------------------------------------------


def task_kwargs(index: int) -> dict[str, Any]:
    """Task ``index``: the 1-minute bars of :data:`TICKERS` in its 6-hour span."""
    start = FIRST_HOUR + dt.timedelta(hours=SPAN_H * index)
    end = start + dt.timedelta(hours=SPAN_H)
    return {
        "interval": "1m",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "tickers": TICKERS,
    }


def rows_per_task(engine: Engine) -> Counter[int]:
    """How many 1-minute rows the database holds per task index (by the span its bar is in)."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT floor(extract(epoch FROM ts - :first) / :span)::int AS task, count(*) "
                "FROM intraday_candles WHERE interval = '1m' GROUP BY task"
            ),
            {"first": FIRST_HOUR, "span": SPAN_H * 3600},
        ).all()
    return Counter({int(task): int(n) for task, n in found})


def runs_by_worker(engine: Engine, prefix: str) -> Counter[str]:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT worker FROM job_runs WHERE task_id LIKE :p"), {"p": f"{prefix}%"}
        ).all()
    return Counter(str(w) for (w,) in found)


def first_finish_after(engine: Engine, prefix: str, moment: dt.datetime) -> dt.datetime | None:
    """When the first ``prefix`` task that succeeded after ``moment`` finished."""
    with engine.connect() as conn:
        found: dt.datetime | None = conn.execute(
            text(
                "SELECT min(finished_at) FROM job_runs WHERE task_id LIKE :p "
                "AND state = 'succeeded' AND finished_at > :m"
            ),
            {"p": f"{prefix}%", "m": moment},
        ).scalar_one()
    return found


def redis_client_addresses(server: ThrowawayRedis) -> Counter[str]:
    """How many connections Redis holds, by client address."""
    client = redis.Redis.from_url(server.url(0))
    try:
        return Counter(str(c["addr"]).rsplit(":", 1)[0] for c in client.client_list())
    finally:
        client.close()


def ping_until_answered(app: Any, hostname: str, timeout: float) -> float | None:
    """Seconds until ``hostname`` answers a ping (each ping waits up to 1 s), ``None`` if it
    does not within ``timeout`` s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if app.control.ping(destination=[hostname], timeout=1.0):
            return time.monotonic() - t0
    return None


@dataclass
class Measured:
    """What one partition run saw (filled in by :func:`run_partition`)."""

    ids: list[str] = field(default_factory=list)
    hostname: str = ""
    stored_at_cut: int = 0
    running_at_cut: int = 0
    queued_in_cut: int = 0
    unacked_in_cut: int = 0
    stored_in_cut: int = 0
    ended_in_cut: int = 0
    alive_in_cut: bool = False
    ping_s: float | None = None
    first_task_s: float | None = None
    completed_s: float = 0.0
    ping_after_s: float | None = None
    alive: bool = False
    acknowledged: bool = False
    partial_seen: int = 0
    snapshots: int = 0
    runs: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    hosts: Counter[str] = field(default_factory=Counter)
    stored: Counter[tuple[str, dt.datetime]] = field(default_factory=Counter)
    rewritten: int = 0
    dead_letters: int = 0
    link_addresses: int = 0
    broker_lost: int = 0
    stale_drops: int = 0
    #: the longest duration of a task execution the worker logged (s)
    slowest_s: float = 0.0
    #: the first line of the error of every retry the worker logged
    retry_errors: list[str] = field(default_factory=list)


def run_partition(link: Link, mode: str, tmp_path: Path) -> Measured:
    """The scenario's timeline on throwaway servers behind ``link``; returns what it saw.

    Raises:
        AssertionError: a wait ran out (with the worker's log).
    """
    from db.engine import create_engine_for

    m = Measured()
    total = BEFORE_CUT + DURING_CUT
    wanted = Counter(
        int((ts - FIRST_HOUR).total_seconds() // (SPAN_H * 3600))
        for _, ts in expected_rows(FIRST_HOUR, total * SPAN_H, "1m", TICKERS)
    )
    prefix = f"f16-{uuid.uuid4().hex[:6]}-"
    m.ids = [f"{prefix}{i:03d}" for i in range(total)]
    tmp_path.mkdir(parents=True, exist_ok=True)
    server = ThrowawayRedis(tmp_path / "redis", host=link.host_ip)
    pg = ThrowawayPostgres(dbname="quantbeat_partition", host=link.host_ip, clients=link.network)
    worker: WorkerProcess | None = None
    engine: Engine | None = None
    try:
        server.start()
        pg.start()
        pg.migrate()
        env = {
            "QUANTBEAT_DATABASE_URL": pg.url(),
            "QUANTBEAT_BROKER_URL": server.url(0),
            "QUANTBEAT_RESULT_BACKEND": server.url(1),
            "QUANTBEAT_REDIS_URL": server.url(2),
            "QUANTBEAT_CRYPTO_SOURCE": "simulated",
        }
        worker = start_worker(
            "workers.app", queues="io", tmp_dir=tmp_path, env=env, prefix=link.prefix
        )
        m.hostname = worker.hostname
        client = client_for(server)
        worker.wait_ready(client, timeout=120)
        engine = create_engine_for(pg.url(), pool_size=2, max_overflow=0)
        broker = redis.Redis.from_url(server.url(0))
        log = worker.log
        # The worker's connections come over the link (from 10.213.<n>.2), not over loopback.
        m.link_addresses = redis_client_addresses(server)[link.worker_ip]

        def snapshot() -> int:
            """Tasks all of whose rows are stored; counts tasks seen partly stored."""
            present = rows_per_task(engine)
            m.partial_seen += sum(1 for i, n in present.items() if 0 < n < wanted[i])
            m.snapshots += 1
            return sum(1 for i, n in wanted.items() if present[i] == n)

        def states() -> Counter[str]:
            return Counter(state for state, _, _ in job_runs(engine, prefix).values())

        def ended() -> int:
            return sum(n for state, n in states().items() if state != "started")

        def send(indices: range) -> None:
            with client.producer_or_acquire() as producer:
                for i in indices:
                    client.send_task(
                        TASK, kwargs=task_kwargs(i), task_id=m.ids[i], producer=producer
                    )

        send(range(BEFORE_CUT))
        wait_until(
            lambda: snapshot() >= CUT_AFTER_STORED and states()["started"] >= 1,
            120,
            "tasks stored and others running",
            log,
            lambda: f"stored {snapshot()}, job runs {dict(states())}",
        )
        link.cut(mode)
        cut = time.monotonic()
        # Nothing the worker does reaches PostgreSQL now: the runs still "started" a moment
        # later are the tasks it is in the middle of.
        time.sleep(2.0)
        m.running_at_cut = states()["started"]
        ended_at_cut = ended()
        m.stored_at_cut = snapshot()
        send(range(BEFORE_CUT, total))  # the other host goes on sending
        m.queued_in_cut = int(broker.llen("io"))
        # The messages the worker holds stay in Redis' "unacked" hash: it cannot ack them.
        m.unacked_in_cut = int(broker.hlen("unacked"))
        while time.monotonic() - cut < CUT_S - 1.0:
            snapshot()
            time.sleep(1.0)
        m.stored_in_cut = snapshot() - m.stored_at_cut
        m.ended_in_cut = ended() - ended_at_cut
        m.alive_in_cut = worker.proc.poll() is None
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut)))
        link.restore()
        restored = time.monotonic()
        restored_at = dt.datetime.now(dt.UTC)

        m.ping_s = ping_until_answered(client, worker.hostname, 120)

        def results() -> Counter[str]:
            return Counter(client.AsyncResult(i).state for i in m.ids)

        def acknowledged() -> bool:
            return broker.llen("io") == 0 and broker.hlen("unacked") == 0

        # Complete means acknowledged too: a message left unacknowledged would be handed out
        # again once the visibility timeout expired, long after the test.
        wait_until(
            lambda: (
                snapshot() == total
                and states()["succeeded"] == total
                and results()["SUCCESS"] == total
                and acknowledged()
            ),
            150,
            "every task completed and acknowledged",
            log,
            lambda: (
                f"stored {snapshot()}, runs {dict(states())}, results {dict(results())}, "
                f"queued {broker.llen('io')}, unacknowledged {broker.hlen('unacked')}"
            ),
        )
        m.completed_s = time.monotonic() - restored
        m.acknowledged = acknowledged()
        first = first_finish_after(engine, prefix, restored_at)
        m.first_task_s = None if first is None else (first - restored_at).total_seconds()
        m.ping_after_s = ping_until_answered(client, worker.hostname, 10)
        m.alive = worker.proc.poll() is None
        m.runs = job_runs(engine, prefix)
        m.hosts = runs_by_worker(engine, prefix)
        m.stored = stored_rows(engine, "1m")
        m.rewritten = rewritten_rows(engine, "1m")
        m.dead_letters = dead_letters(engine, prefix)
        m.broker_lost = worker.full_log().count("Connection to broker lost")
        # kombu drops a Redis connection whose BRPOP reply or pub/sub health check is overdue
        m.stale_drops = worker.full_log().count("dropping stale connection")
        m.slowest_s = max(
            float(line.get("duration_ms") or 0) / 1000
            for line in worker.json_lines()
            if line.get("event") == "task.finished"
        )
        m.retry_errors = [
            str(line.get("error", "")).splitlines()[0]
            for line in worker.json_lines()
            if line.get("event") == "task.retry" and str(line.get("task_id")).startswith(prefix)
        ]
        broker.close()
    finally:
        link.restore()
        if worker is not None:
            worker.stop()
        if engine is not None:
            engine.dispose()
        pg.cleanup()
        server.stop()
    return m


# --- scenario 16 --------------------------------------------------------------------------------


def check(mode: str, m: Measured, outcome: Callable[[Outcome], None]) -> None:
    """Record the outcome of the ``mode`` run and assert what it must show."""
    total = len(m.ids)
    expected = expected_rows(FIRST_HOUR, total * SPAN_H, "1m", TICKERS)
    lost, duplicates, unexpected = compare(expected, m.stored)
    succeeded = sum(1 for task_id in m.ids if m.runs.get(task_id, ("",))[0] == "succeeded")
    # Every execution counts an attempt; one that is not a retry is a redelivery.
    redelivered = sum(attempts - 1 - retries for _, attempts, retries in m.runs.values())
    retried = sum(1 for _, _, retries in m.runs.values() if retries > 0)
    why = Counter(error.split(":")[0] for error in m.retry_errors)
    reasons = f" ({', '.join(f'{n}× {e}' for e, n in why.items())})" if why else ""

    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.1f} s"

    outcome(
        Outcome(
            number=16,
            scenario=f"Network partition: worker host cut off for 30 s mid-task ({MODES[mode]})",
            sent=total,
            completed=succeeded,
            duplicates=duplicates,
            lost=lost,
            recovery_s=round(m.completed_s, 1),
            notes=(
                f"worker in its own network namespace, Redis and PostgreSQL over a veth link; "
                f"cut at {m.stored_at_cut}/{BEFORE_CUT} tasks stored, {m.running_at_cut} "
                f"mid-run ({m.unacked_in_cut} messages unacknowledged), {DURING_CUT} more sent "
                f"from the other host during the cut, nothing written during it; after the "
                f"restore the worker answered ping in {seconds(m.ping_s)} and ended its first "
                f"task in {seconds(m.first_task_s)}, the slowest stalled task took "
                f"{m.slowest_s:.0f} s; {redelivered} redelivered, {retried} retried{reasons}, "
                f"{m.broker_lost} broker reconnects ({m.stale_drops} stale Redis connections "
                f"dropped), {m.rewritten} rows rewritten, same worker "
                f"process throughout, nothing left unacknowledged; visibility timeout 2 h "
                f"(production)"
            ),
        )
    )
    assert m.link_addresses > 0, "the worker's Redis connections do not come over the link"
    assert m.running_at_cut >= 1, "no task was running when the link was cut"
    assert m.stored_at_cut < BEFORE_CUT, "every task was stored before the cut"
    assert m.queued_in_cut >= DURING_CUT, "the tasks sent during the cut were not queued"
    assert m.unacked_in_cut >= m.running_at_cut, "running tasks not held as unacknowledged"
    assert (m.stored_in_cut, m.ended_in_cut) == (0, 0), "the worker wrote during the cut"
    assert m.alive_in_cut, "the worker exited during the cut"
    assert m.ping_s is not None, "the worker never answered ping after the restore"
    assert lost == 0, f"{lost} rows missing"
    assert duplicates == 0, f"{duplicates} rows stored twice"
    assert unexpected == 0, f"{unexpected} rows no task should have written"
    assert m.rewritten == 0, f"{m.rewritten} rows were written twice"
    assert m.partial_seen == 0, f"{m.partial_seen} partly stored tasks in {m.snapshots} looks"
    assert succeeded == total, Counter(state for state, _, _ in m.runs.values())
    # Within the visibility timeout nothing is handed out again: every execution after the
    # first is a retry the worker decided and logged (a statement the cut stalled past
    # PostgreSQL's statement_timeout), all on the worker that was cut off, still the same
    # process.
    assert redelivered == 0, m.runs
    assert len(m.retry_errors) == sum(retries for _, _, retries in m.runs.values()), m.runs
    assert m.dead_letters == 0, f"{m.dead_letters} dead letters"
    assert list(m.hosts) == [m.hostname], m.hosts
    assert m.acknowledged, "messages were left queued or unacknowledged"
    assert m.alive, "the worker process did not survive the partition"
    assert m.ping_after_s is not None, "the worker stopped answering ping after the recovery"


def test_worker_hosts_cut_off_for_30_s_mid_task(
    links: dict[str, Link], tmp_path: Path, outcome: Callable[[Outcome], None]
) -> None:
    """Scenario 16, twice at once: one worker host has its link set down, the other has every
    packet on its link dropped, each for 30 s while it runs collection tasks and more are sent
    from the other host. After the link returns, everything completes exactly once on the
    same worker process, which answers ping again; nothing is redelivered. (The two runs share
    nothing but the machine; they run in parallel to halve the wall-clock time.)"""
    measured: dict[str, Measured] = {}
    errors: dict[str, str] = {}

    def run(mode: str) -> None:
        try:
            measured[mode] = run_partition(links[mode], mode, tmp_path / mode)
        except BaseException:
            errors[mode] = traceback.format_exc()

    threads = [threading.Thread(target=run, args=(mode,), name=mode) for mode in MODES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(400)
    assert not any(t.is_alive() for t in threads), "a partition run did not end within 400 s"
    assert not errors, "\n".join(f"{mode}:\n{tb}" for mode, tb in errors.items())
    failures = []
    for mode in MODES:
        try:
            check(mode, measured[mode], outcome)
        except AssertionError as exc:
            failures.append(f"{mode}: {exc}")
    assert not failures, "\n".join(failures)
