"""A large database for query-plan checks (tests/integration/test_query_plans.py and
benchmarks/query_plans.py): built in SQL with ``generate_series`` (SIMULATED values, no
meaning), its candle months packed, then analyzed; and the check of one
``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` plan."""

from __future__ import annotations

from typing import Any

import psycopg

from db import candle_months
from db.engine import session_scope
from quant.outcomes import DEFAULT_RULES

#: Tables with millions of rows in a deployment: never read by a sequential scan.
LARGE_TABLES = ("daily_candles", "candle_months", "signals", "signal_outcomes", "job_runs")
INSTRUMENTS = 5_000
SESSIONS = 1_000
SIGNALS_PER_DAY = 250  # per strategy
JOB_RUNS = 1_000_000
LAST_DAY = "2026-11-30"
#: The current rules of the two strategies' outcomes (the track record recomputes others).
VCP_RULES = DEFAULT_RULES.version("vcp")
CLOSING_BET_RULES = DEFAULT_RULES.version("closing_bet")

_BUILD = f"""
SET synchronous_commit = off;
INSERT INTO instruments (market, ticker, name, currency, listing_status, source)
SELECT CASE WHEN i % 2 = 0 THEN 'KOSPI' ELSE 'KOSDAQ' END, lpad(i::text, 6, '0'),
       'SIMULATED ' || i, 'KRW', 'listed', 'simulated'
FROM generate_series(1, {INSTRUMENTS}) AS i;

CREATE TEMP TABLE days AS
SELECT d::date AS day, row_number() OVER (ORDER BY d) AS k
FROM generate_series(DATE '{LAST_DAY}' - 1500, DATE '{LAST_DAY}', INTERVAL '1 day') AS d
WHERE extract(isodow FROM d) < 6
ORDER BY d DESC LIMIT {SESSIONS};

INSERT INTO daily_candles (instrument_id, trade_date, open, high, low, close, volume,
                           traded_value, source, quality_flags)
SELECT i.id, d.day, 1000 + (i.id % 97) + d.k % 13, 1020 + (i.id % 97) + d.k % 13,
       990 + (i.id % 97) + d.k % 13, 1005 + (i.id % 97) + d.k % 17,
       10000 + (i.id * d.k) % 5000, 1.0e7 + (i.id * d.k) % 100000, 'simulated', NULL
FROM instruments AS i CROSS JOIN days AS d;

INSERT INTO scan_runs (strategy, trade_date, state, params, total, scanned, failed,
                       candidates, chunks, chunks_failed, started_at, finished_at)
SELECT s, d.day, 'completed', '{{}}', {INSTRUMENTS}, {INSTRUMENTS}, 0, {SIGNALS_PER_DAY}, 10,
       0, d.day + TIME '16:00', d.day + TIME '16:05'
FROM days AS d CROSS JOIN (VALUES ('vcp'), ('closing_bet')) AS st(s);

INSERT INTO signals (trade_date, strategy, instrument_id, score, grade, entry_price, status,
                     reasons, inputs, source, gate, phase)
SELECT d.day, st.s, 1 + ((d.k * 7919 + n * 104729) % {INSTRUMENTS}), 50 + n % 50,
       CASE WHEN st.s = 'vcp' THEN 'Good' ELSE 'A' END, 1005 + n % 17, 'breakout',
       '[]', '{{}}', 'scan', 'GREEN', 'final'
FROM days AS d CROSS JOIN (VALUES ('vcp'), ('closing_bet')) AS st(s)
CROSS JOIN generate_series(1, {SIGNALS_PER_DAY}) AS n
ON CONFLICT DO NOTHING;

INSERT INTO signal_outcomes (signal_id, rules, state, reason, entry_date, entry_price,
                             exit_date, exit_price, evaluated_through)
SELECT s.id, CASE WHEN s.strategy = 'vcp' THEN '{VCP_RULES}' ELSE '{CLOSING_BET_RULES}' END,
       'closed', 'target', s.trade_date, s.entry_price, s.trade_date + 5,
       s.entry_price * 1.05, s.trade_date + 5
FROM signals AS s WHERE s.trade_date < DATE '{LAST_DAY}' - 30
ON CONFLICT (signal_id) DO UPDATE SET rules = excluded.rules, state = excluded.state,
    reason = excluded.reason, entry_date = excluded.entry_date,
    entry_price = excluded.entry_price, exit_date = excluded.exit_date,
    exit_price = excluded.exit_price, evaluated_through = excluded.evaluated_through;

INSERT INTO job_runs (task_id, task_name, queue, args, kwargs, state, attempts, retries,
                      worker, started_at, finished_at, duration_ms)
SELECT 'task-' || n, (ARRAY['quantbeat.collect.daily', 'quantbeat.scans.chunk',
                            'quantbeat.notify.deliver', 'quantbeat.scans.run'])[1 + n % 4],
       'io', '[]', '{{}}',
       CASE WHEN n % 97 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 0, 'w1@host',
       TIMESTAMPTZ '{LAST_DAY} 00:00+00' - (n || ' seconds')::interval,
       TIMESTAMPTZ '{LAST_DAY} 00:00+00' - (n || ' seconds')::interval + INTERVAL '1 second',
       1000
FROM generate_series(1, {JOB_RUNS}) AS n;
"""


def build_large_database(url: str) -> None:
    """Fill the migrated, empty database at ``url`` (see the module docstring) and analyze
    it, as autovacuum would have."""
    plain = url.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(_BUILD)
    pack_candles(url)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def pack_candles(url: str) -> candle_months.PackReport:
    """Pack the candle months listed stale (as the collection after a write does)."""
    return candle_months.pack(lambda: session_scope(url))


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found += _nodes(child)
    return found


def large_tables_read(plan: dict[str, Any]) -> set[str]:
    """The :data:`LARGE_TABLES` a plan reads."""
    return {str(n.get("Relation Name")) for n in _nodes(plan["Plan"])} & set(LARGE_TABLES)


def plan_problems(plan: dict[str, Any], sql: str) -> list[str]:
    """One sentence per problem of a plan (``EXPLAIN (FORMAT JSON)``'s first element): a
    sequential scan of a :data:`LARGE_TABLES` table, or a read of one that uses no index."""
    nodes = _nodes(plan["Plan"])
    problems = [
        f"sequential scan of {n['Relation Name']} ({n.get('Actual Rows', '?')} rows) in: {sql}"
        for n in nodes
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in LARGE_TABLES
    ]
    reads_large = any(n.get("Relation Name") in LARGE_TABLES for n in nodes)
    indexed = any("Index" in n["Node Type"] for n in nodes)
    if reads_large and not indexed:
        problems.append(f"no index used in: {sql}")
    return problems
