"""Celery beat's schedule, in Asia/Seoul time (``celeryconfig.timezone``).

Every entry names an explicitly named task (a test checks they are registered) and expires:
a tick that could not be delivered in time is dropped rather than run late next to the next
one. KRX jobs use :class:`workers.schedules.krx_session_schedule`, so they fire on KRX
sessions only — weekends and holidays (lunar ones included) send nothing. Several beats may
run (celery-redbeat: one ticks, the others wait for its lock), and every message carries its
scheduled time so a duplicate tick is a no-op (workers/beat.py). An entry can be switched off
without a deploy: ``quantbeat settings set schedule.<entry>.enabled false``.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab, schedule

from quantbeat.infra.settings import get_settings
from workers.schedules import krx_session_schedule

_ONE_HOUR = 3600

#: The regular session: 09:00–15:30 KST.
KRX_OPEN_AT, KRX_CLOSE_AT = (9, 0), (15, 30)
#: The closing bet's decision in the buy window (QUANTBEAT_CLOSING_BET_AT, default 15:10).
_HOUR, _MINUTE = get_settings().closing_bet_at.split(":")
_CLOSING_BET_AT = (int(_HOUR), int(_MINUTE))
#: The regular session ends 15:30 KST; closing prices are final minutes later.
KRX_DAILY_AT = (15, 40)
#: KRX publishes investor-by-stock trading (foreign/institution/individual) in the evening.
KRX_FLOWS_AT = (18, 10)
#: After both pipelines and the track record's evening update: step the paper portfolios.
KRX_PORTFOLIO_AT = (21, 0)
#: After both scans: the walk-forward backtest of each strategy's own signals
#: (tasks.backtests.nightly).
KRX_NIGHTLY_BACKTEST_AT = (20, 30)
#: After both pipelines' scans: the day's new signals get their outcome rows (the krx_close
#: pipeline also follows every open signal right after collecting the day's bars).
KRX_TRACK_RECORD_AT = (20, 45)
#: After the portfolios: the day's summary message (quantbeat.notify.daily_summary).
KRX_DAILY_SUMMARY_AT = (21, 10)
#: After both pipelines: datasets behind the day's session are announced (data.stale).
KRX_FRESHNESS_AT = (19, 30)

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # One chain per tick for both markets (scans rank the whole universe, so they run once):
    # candles -> scan indicators -> VCP scan; flows -> closing-bet scan (see tasks.pipeline).
    "krx-close": {
        "task": "quantbeat.pipeline.krx_close",
        "schedule": krx_session_schedule(*KRX_DAILY_AT),
        "options": {"expires": _ONE_HOUR},
    },
    "krx-flows": {
        "task": "quantbeat.pipeline.krx_flows",
        "schedule": krx_session_schedule(*KRX_FLOWS_AT),
        "options": {"expires": _ONE_HOUR},
    },
    # The day so far of every instrument and index, every QUANTBEAT_SNAPSHOT_EVERY minutes
    # (read when this module is imported) through the session, 09:00–15:30.
    "market-snapshots": {
        "task": "quantbeat.market.snapshot",
        "schedule": krx_session_schedule(
            *KRX_OPEN_AT, every=get_settings().snapshot_every, until=KRX_CLOSE_AT
        ),
        "options": {"expires": 5 * 60},
    },
    # The closing bet decided in the buy window, before the 15:20 closing auction: snapshot,
    # preliminary signals, the news of every candidate, decided again (tasks.pipeline).
    "closing-bet-window": {
        "task": "quantbeat.pipeline.closing_window",
        "schedule": krx_session_schedule(*_CLOSING_BET_AT),
        "options": {"expires": 5 * 60},
    },
    # Paper portfolios, stepped through the day once its bars and signal outcomes are stored
    # (the pipelines update the track record; this is the day's last word).
    "portfolio-update": {
        "task": "quantbeat.portfolio.update",
        "schedule": krx_session_schedule(*KRX_PORTFOLIO_AT),
        "options": {"expires": _ONE_HOUR},
    },
    # Each scheduled strategy walked forward over the universe on its own daily signals.
    "backtest-nightly": {
        "task": "quantbeat.backtest.nightly",
        "schedule": krx_session_schedule(*KRX_NIGHTLY_BACKTEST_AT),
        "options": {"expires": _ONE_HOUR},
    },
    # The track record: every stored signal followed on the day's bars (tasks.track), a
    # safety net behind the krx_close pipeline's step, and the day's new signals entered.
    "track-record": {
        "task": "quantbeat.track.update",
        "schedule": krx_session_schedule(*KRX_TRACK_RECORD_AT),
        "options": {"expires": _ONE_HOUR},
    },
    # The day in one message to the subscribers: new, open and closed signals, the track
    # record's KPIs, the paper portfolios (once per day; a re-run sends nothing new).
    "daily-summary": {
        "task": "quantbeat.notify.daily_summary",
        "schedule": krx_session_schedule(*KRX_DAILY_SUMMARY_AT),
        "options": {"expires": _ONE_HOUR},
    },
    # Candles or flows still missing for the day's session: a data.stale event.
    "data-freshness": {
        "task": "quantbeat.notify.check_freshness",
        "schedule": krx_session_schedule(*KRX_FRESHNESS_AT),
        "options": {"expires": _ONE_HOUR},
    },
    # The notification dispatcher is woken by every commit that records an event; this
    # sweep delivers what a lost wake-up or a backoff left waiting.
    "notify-sweep": {
        "task": "quantbeat.notify.dispatch",
        "schedule": schedule(run_every=15.0),
        "kwargs": {"sweep": True},
        "options": {"expires": 15},
    },
    # Crypto trades 24/7: the last closed hour, every hour.
    "collect-crypto-candles-hourly": {
        "task": "quantbeat.collect.crypto_candles",
        "schedule": crontab(minute=2),
        "kwargs": {"interval": "60m"},
        "options": {"expires": 50 * 60},
    },
    # The crypto volatility check (issue 23): the last hour of each signal market against its
    # trailing 30 days; an unusual one is announced once per market and hour.
    "crypto-volatility-5m": {
        "task": "quantbeat.crypto.volatility_check",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 4 * 60},
    },
    # The hourly crypto signal (issue 23), after the hour's candles (minute 2): BUY/SELL/HOLD
    # per signal market from Gemini or the offline rules, then the returns of earlier ones.
    "crypto-signal-hourly": {
        "task": "quantbeat.crypto.signal",
        "schedule": crontab(minute=4),
        "options": {"expires": 50 * 60},
    },
    # The crypto paper portfolio: the signals' orders, fills from the next bar, the book
    # reconciled with its ledger. Paper only: no live order is ever sent.
    "crypto-order-sync-hourly": {
        "task": "quantbeat.crypto.order_sync",
        "schedule": crontab(minute=8),
        "options": {"expires": 50 * 60},
    },
    # Job runs left "started" by a dead worker: requeued (idempotent) or marked lost.
    "reap-orphans": {
        "task": "quantbeat.ops.reap",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 4 * 60},
    },
    # Job runs of workers whose heartbeat stopped (kill -9, a lost host): given up within
    # QUANTBEAT_WORKER_DEAD_AFTER + 15 s, without the grace above.
    "reap-dead-workers": {
        "task": "quantbeat.ops.reap_dead_workers",
        "schedule": schedule(run_every=15.0),
        "options": {"expires": 15},
    },
    # Candle months written since they were packed (imports, corrections; collections pack
    # their own): packed for the universe loads (db.candle_months).
    "pack-candles": {
        "task": "quantbeat.ops.pack_candles",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 9 * 60},
    },
    # Every night, away from the sessions and the evening jobs: a verified backup (dump +
    # manifest), the newest QUANTBEAT_BACKUP_KEEP kept (quantbeat.services.backups).
    "backup-nightly": {
        "task": "quantbeat.ops.backup",
        "schedule": crontab(hour=3, minute=30),
        "options": {"expires": _ONE_HOUR},
    },
    # Listings change slowly; Monday morning, before the open.
    "refresh-universe-weekly": {
        "task": "quantbeat.collect.universe",
        "schedule": crontab(hour=7, minute=30, day_of_week="mon"),
        "options": {"expires": _ONE_HOUR},
    },
}
