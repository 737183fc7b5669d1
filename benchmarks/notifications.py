"""Notifications (issue 19): an event committed → the message delivered to a Telegram-format
fake, through a real ``io`` worker (threads), PostgreSQL and Redis.

Each event is recorded as services record them (``quantbeat.services.notify.record`` in its
own transaction); the commit wakes the dispatcher; the worker fans it out and sends it, paced
by the shared rate limits. The fake (``tests/support/fake_notify.py``) speaks the Bot API,
enforces Telegram's limits itself (1 message/s per chat, 30/s per bot: a message over them is
answered 429 and counted as a violation) and timestamps every arrival.

1. **Latency**: 100 events for 10 subscriptions (10 chats), 4 events/s — one every 2.5 s per
   chat, so no message waits for its chat's limit: committed → received by the fake.
2. **Sustained**: 1,000 events in 60 s, evenly, across 50 subscriptions (50 private chats of
   one bot, each event for one of them: 20 a minute per chat, 16.7/s for the bot). Group chats
   allow 20 messages a minute each, which quantbeat paces at 85 % of (17): 1,000 a minute
   to 50 groups would exceed Telegram's own limit, so they are private chats here.

References measured in the same run: a bare ``sendMessage`` POST to the fake from this
process (what the delivery itself costs) and a broker round trip to the worker
(``control.ping``): what no dispatcher can beat. Also reported: the window a crash cannot
close — a provider's acceptance not yet recorded in the ledger (``unconfirmed_ms``).

Goals: ``event_to_delivery_p95`` < 2 s; ``sustained_1000_per_min``: every message delivered
once, within 75 s of the first event, no limit exceeded (no violation, no 429).

Needs PostgreSQL (``QUANTBEAT_BENCH_DATABASE_URL``, default database
``quantbeat_bench_notify``) and Redis (``QUANTBEAT_BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/7``, flushed).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _support import ensure_database, start_worker, stop_worker  # noqa: E402

DB_URL = os.environ.get(
    "QUANTBEAT_BENCH_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat_bench_notify",
)
REDIS_URL = os.environ.get("QUANTBEAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
TOKEN = "123456:BENCH-notify-token-for-the-fake"
from tests.support.fake_notify import FakeTelegram  # noqa: E402

FAKE = FakeTelegram(tokens=[TOKEN], chats=[str(20_000 + i) for i in range(50)])
os.environ.update(
    {
        "QUANTBEAT_DATABASE_URL": DB_URL,
        "QUANTBEAT_BROKER_URL": REDIS_URL,
        "QUANTBEAT_RESULT_BACKEND": REDIS_URL,
        "QUANTBEAT_REDIS_URL": REDIS_URL,
        "QUANTBEAT_LOG_LEVEL": "WARNING",
        "QUANTBEAT_TELEGRAM_API_URL": FAKE.url,
        "QUANTBEAT_NOTIFY_SECRETS": json.dumps({"bench": TOKEN}),
        "QUANTBEAT_METRICS_PORT": "0",
    }
)

import httpx  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import select, text  # noqa: E402

from db import migrate  # noqa: E402
from db.engine import session_scope  # noqa: E402
from db.models import NotificationDelivery  # noqa: E402
from quantbeat.services import notify  # noqa: E402
from workers.app import app  # noqa: E402

RUN = re.compile(r"run (bench-\d+-\d+)")
LATENCY_EVENTS, LATENCY_CHATS, LATENCY_RATE = 100, 10, 4.0
SUSTAINED_EVENTS, SUSTAINED_CHATS, SUSTAINED_SECONDS = 1_000, 50, 60.0
SUSTAINED_DEADLINE = 75.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _reset(chats: int) -> None:
    with session_scope() as session:
        session.execute(
            text(
                "TRUNCATE notification_deliveries, notification_subscriptions, "
                "notification_leases, events RESTART IDENTITY CASCADE"
            )
        )
    for i in range(chats):
        notify.add(f"chat{i}", "telegram", target=str(20_000 + i), secret="bench",
                   filters={"strategies": [f"s{i}"]}, language="en")  # fmt: skip


def _record(phase: int, i: int, chat: int) -> float:
    """Record one event for subscription ``chat``; returns the time its commit returned."""
    with session_scope() as session:
        notify.record(
            session,
            "backtest.finished",
            key=f"bench:{phase}:{i}",
            payload={
                "run_id": f"bench-{phase}-{i}",
                "strategy": f"s{chat}",
                "state": "completed",
                "kpis": {},
            },
        )
    return time.time()


def _arrivals(phase: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    with FAKE.cond:
        records = list(FAKE.accepted)
    for r in records:
        found = RUN.search(r.text or "")
        if found and found.group(1).startswith(f"bench-{phase}-"):
            out.setdefault(found.group(1), []).append(r.at)
    return out


def _wait_for(phase: int, n: int, timeout: float) -> dict[str, list[float]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _arrivals(phase)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    return _arrivals(phase)


def _floors(hostname: str) -> tuple[float, float, float]:
    """p50 of a bare sendMessage POST to the fake, p95 of it, p50 of a broker round trip."""
    posts = []
    floor = FakeTelegram(tokens=[TOKEN], chats=[str(20_000 + i) for i in range(50)]).start()
    with httpx.Client(timeout=5) as client:
        for i in range(200):
            t0 = time.perf_counter()
            # back to back, so most are answered 429 by the fake's own limits: the same
            # request and parsing work, which is what the floor measures
            client.post(f"{floor.url}/bot{TOKEN}/sendMessage",
                        json={"chat_id": str(20_000 + i % 50), "text": f"floor {i}"})  # fmt: skip
            posts.append(time.perf_counter() - t0)
    floor.stop()  # its own instance: the limits the run is judged by start clean
    pings = []
    for _ in range(20):
        t0 = time.perf_counter()
        app.control.ping(destination=[hostname], timeout=2.0)
        pings.append(time.perf_counter() - t0)
    return statistics.median(posts), _pct(posts, 0.95), statistics.median(pings)


def _unconfirmed() -> list[float]:
    with session_scope() as session:
        rows = session.execute(
            select(NotificationDelivery.unconfirmed_ms).where(NotificationDelivery.state == "sent")
        ).scalars()
        return [float(v) for v in rows if v is not None]


def main() -> None:
    ensure_database(DB_URL)
    migrate.upgrade(DB_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    FAKE.start()
    worker = start_worker("bench-notify", queues="io", pool="threads", concurrency=16)
    try:
        hostname = next(iter(app.control.ping(timeout=2.0)[0]))
        post_p50, post_p95, ping_p50 = _floors(hostname)
        print(f"floors: bare sendMessage POST p50 {post_p50 * 1000:.2f} ms, p95 "
              f"{post_p95 * 1000:.2f} ms; broker round trip (ping) p50 "
              f"{ping_p50 * 1000:.1f} ms")  # fmt: skip

        # 1. latency
        _reset(LATENCY_CHATS)
        committed: dict[str, float] = {}
        start = time.monotonic()
        for i in range(LATENCY_EVENTS):
            target = start + i / LATENCY_RATE
            time.sleep(max(0.0, target - time.monotonic()))
            committed[f"bench-1-{i}"] = _record(1, i, i % LATENCY_CHATS)
        got = _wait_for(1, LATENCY_EVENTS, 30)
        latency = [got[k][0] - committed[k] for k in committed if k in got]
        p50, p95 = statistics.median(latency), _pct(latency, 0.95)
        print(f"latency: {len(latency)}/{LATENCY_EVENTS} delivered, committed → received "
              f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max "
              f"{max(latency) * 1000:.0f} ms ({p95 / max(post_p95, 1e-9):.0f}× a bare POST's "
              f"p95)")  # fmt: skip

        # 2. sustained
        _reset(SUSTAINED_CHATS)
        FAKE.violations = 0
        before = len(FAKE.received)
        committed = {}
        sent_at: list[float] = []

        def produce() -> None:
            t0 = time.monotonic()
            for i in range(SUSTAINED_EVENTS):
                target = t0 + i * SUSTAINED_SECONDS / SUSTAINED_EVENTS
                time.sleep(max(0.0, target - time.monotonic()))
                committed[f"bench-2-{i}"] = _record(2, i, i % SUSTAINED_CHATS)
            sent_at.append(time.monotonic() - t0)

        first = time.time()
        producer = threading.Thread(target=produce)
        producer.start()
        producer.join()
        got = _wait_for(2, SUSTAINED_EVENTS, SUSTAINED_DEADLINE - (time.time() - first) + 5)
        delivered = len(got)
        duplicates = sum(len(v) - 1 for v in got.values())
        with FAKE.cond:
            answers = [r.status for r in FAKE.received[before:]]
        too_many = answers.count(429)
        last = max((v[0] for v in got.values()), default=first) - first
        lat2 = [got[k][0] - committed[k] for k in committed if k in got]
        print(f"sustained: {SUSTAINED_EVENTS} events recorded in {sent_at[0]:.1f} s across "
              f"{SUSTAINED_CHATS} chats; {delivered} delivered ({duplicates} duplicates), last "
              f"{last:.1f} s after the first event; committed → received p50 "
              f"{statistics.median(lat2) * 1000:.0f} ms, p95 {_pct(lat2, 0.95) * 1000:.0f} ms; "
              f"429 answers {too_many}, limit violations {FAKE.violations}")  # fmt: skip
        window = _unconfirmed()
        print(f"unconfirmed window (provider accepted, ledger not yet): p50 "
              f"{statistics.median(window):.2f} ms, p99 {_pct(window, 0.99):.2f} ms, max "
              f"{max(window):.2f} ms over {len(window)} deliveries")  # fmt: skip
        ok_latency = len(latency) == LATENCY_EVENTS and p95 < 2.0
        ok_sustained = (
            delivered == SUSTAINED_EVENTS
            and duplicates == 0
            and too_many == 0
            and FAKE.violations == 0
            and last <= SUSTAINED_DEADLINE
        )
        print(f"goal event_to_delivery_p95: {p95:.3f} s (target < 2 s) "
              f"{'met' if ok_latency else 'missed'}")  # fmt: skip
        print(f"goal sustained_1000_per_min: {delivered}/{SUSTAINED_EVENTS} delivered once in "
              f"{last:.1f} s, {FAKE.violations} limit violations, {too_many} 429s (target all "
              f"within {SUSTAINED_DEADLINE:.0f} s, none over a limit) "
              f"{'met' if ok_sustained else 'missed'}")  # fmt: skip
    finally:
        stop_worker(worker)
        FAKE.stop()


if __name__ == "__main__":
    main()
