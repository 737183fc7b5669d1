"""The one settings object, read from ``QUANTBEAT_*`` environment variables and ``.env``.

Every field is documented in ``.env.example`` (a unit test keeps the two in step). Secrets are
:class:`pydantic.SecretStr`: they print as ``**********`` and must be unwrapped explicitly.

Only this module, ``celeryconfig`` and the CLI read the environment; domain code in ``quant/``
receives plain values.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from quant.errors import ConfigError, ValidationError
from quant.gate_config import parse_sector_etfs
from quantbeat.infra.masking import mask_text

QueueFamily = Literal["io", "cpu", "ai"]
#: The HTTP endpoints quantbeat serves (see :meth:`Settings.listen_address`).
Endpoint = Literal["flower", "health", "metrics", "api"]

#: Passwords that ship in examples, images and tutorials: refused with ``QUANTBEAT_ENV=production``
#: (compared case-insensitively) for PostgreSQL, Redis and Flower.
KNOWN_DEFAULT_PASSWORDS = frozenset(
    {
        "quantbeat",
        "postgres",
        "redis",
        "flower",
        "admin",
        "password",
        "passw0rd",
        "secret",
        "changeme",
        "change-me",
        "guest",
        "root",
        "test",
        "123456",
        "12345678",
    }
)
#: Settings holding a Redis URL; ``rediss://`` ones are normalised by :func:`normalize_redis_url`.
REDIS_URL_SETTINGS = ("broker_url", "result_backend", "redis_url", "cache_url")
#: The same store settings as :data:`quantbeat.infra.profile.STORE_SETTINGS` (given: deployed).
_STORE_SETTINGS = frozenset({"database_url", "broker_url", "result_backend", "redis_url"})
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_TLS_QUERY_KEYS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
#: Longest indicator cache TTL (seconds): a year; Redis refuses expiries beyond ~2.9e8 years and
#: anything near that is a typo.
MAX_CACHE_TTL = 366 * 86_400
_SETTINGS_FIELD = re.compile(r'field "(?P<field>[A-Za-z0-9_]+)"')


def is_loopback(address: str) -> bool:
    """True if ``address`` (an IP literal or host name) only accepts connections from this
    host: ``localhost`` or a loopback IP (127.0.0.0/8, ``::1``). Any other name is treated as
    reachable from elsewhere."""
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(value: str, *, field: str) -> str:
    """``value`` as a listen address: an IPv4/IPv6 literal (brackets dropped) or a host name.
    ``0.0.0.0`` / ``::`` (every interface) must be written out: an empty value is refused.

    Raises:
        ValueError: empty, or neither an IP address nor a host name; the message names
            ``field``.
    """
    host = value.strip().strip("[]")
    if not host:
        raise ValueError(f"{field} is empty: give an address, e.g. 127.0.0.1 or 0.0.0.0")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise ValueError(f"{field} must be an IP address or a host name, got {value!r}")
    return host


def address_option(value: str, option: str) -> str:
    """``value`` of a listen-address command option (``--address``, ``--host``), normalised
    by :func:`check_address`.

    Raises:
        quant.errors.ValidationError: not an IP address or host name; the message names
            ``option``.
    """
    try:
        return check_address(value, field=option)
    except ValueError as exc:
        raise ValidationError(str(exc), field=option, value=value) from None


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def normalize_redis_url(url: str, *, field: str) -> str:
    """A Redis URL every client reads the same way.

    ``rediss://`` (TLS): without ``ssl_cert_reqs`` kombu (the broker) would connect without
    checking the server's certificate and Celery's result backend would refuse the URL, while
    redis-py verifies it; ``ssl_cert_reqs=required`` is therefore appended when absent, so that
    every client verifies (give ``ssl_ca_certs=/path/ca.pem`` for a private CA, or
    ``ssl_cert_reqs=none`` explicitly to turn verification off). ``redis://`` with ``ssl_*``
    options is refused (the clients disagree on it: Celery raises, redis-py ignores TLS). Any
    other URL (``memory://``, ``amqp://``, ...) is returned unchanged.

    Raises:
        ValueError: a ``redis://`` URL carrying TLS options; the message names ``field``.
    """
    scheme = _scheme(url)
    if scheme not in ("redis", "rediss"):
        return url
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    tls = [key for key in _TLS_QUERY_KEYS if key in query]
    if scheme == "redis" and tls:
        raise ValueError(
            f"{field} has TLS options ({', '.join(tls)}) on a redis:// URL: use rediss://"
        )
    if scheme == "rediss" and "ssl_cert_reqs" not in query:
        separator = "&" if urlsplit(url).query else "?"
        if url.endswith(("?", "&")):
            separator = ""
        return f"{url}{separator}ssl_cert_reqs=required"
    return url


def _url_password(url: str) -> str | None:
    """The percent-decoded password of ``url`` (``None`` when it has none or cannot be read)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return None if password is None else unquote(password)


def _weak(password: str | None) -> str | None:
    """Why ``password`` may not be used in production, or ``None`` if it may."""
    if password is None or password == "":
        return "has no password"
    if password.lower() in KNOWN_DEFAULT_PASSWORDS:
        return "uses a known default password"
    return None


def flower_auth_problems(credentials: str) -> list[str]:
    """What is wrong with ``QUANTBEAT_FLOWER_BASIC_AUTH`` (``user:password``, comma-separated
    for several users) in production: an entry that is not ``user:password``, an empty password,
    a password equal to its user name or a known default. Passwords are never quoted."""
    problems = []
    for number, entry in enumerate(credentials.split(","), start=1):
        user, sep, password = entry.partition(":")
        label = f"entry {number} (user {user!r})" if user else f"entry {number}"
        if not sep or not user:
            problems.append(f"QUANTBEAT_FLOWER_BASIC_AUTH {label} is not user:password")
            continue
        weak = _weak(password)
        if weak is None and password == user:
            weak = "uses the user name as its password"
        if weak is not None:
            problems.append(f"QUANTBEAT_FLOWER_BASIC_AUTH {label} {weak}")
    return problems


class Settings(BaseSettings):
    """quantbeat configuration. Durations are seconds unless a name says otherwise."""

    model_config = SettingsConfigDict(
        env_prefix="QUANTBEAT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- deployment -------------------------------------------------------------------------
    env: Literal["development", "test", "production"] = "development"
    # Where commands run (quantbeat.infra.profile): "embedded" (a SQLite file under data_dir,
    # in-process broker and worker), "distributed" (the URLs below), or "auto": distributed
    # as soon as any of QUANTBEAT_DATABASE_URL/BROKER_URL/RESULT_BACKEND/REDIS_URL is set.
    mode: Literal["auto", "embedded", "distributed"] = "auto"
    timezone: str = "Asia/Seoul"
    data_dir: Path = Path("var")
    # Files derived from installed libraries only (the KRX calendar built from
    # exchange_calendars), shared by every checkout and data directory of this user (default
    # $XDG_CACHE_HOME/quantbeat, else ~/.cache/quantbeat). Unwritable: rebuilt per process.
    cache_dir: Path | None = None

    # --- stores -----------------------------------------------------------------------------
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/quantbeat"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=30.0, gt=0)
    db_echo: bool = False
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"
    result_expires: int = Field(default=86_400, ge=60)

    # Redis for shared state other than the broker: global rate limits, cooldowns, caches.
    # "memory://" keeps them in-process (the embedded run).
    redis_url: str = "redis://127.0.0.1:6379/2"

    # --- reliability ------------------------------------------------------------------------
    # Redis emulates acks: an unacked message is handed out again after this many seconds, so
    # it must exceed the longest hard time limit plus the longest retry delay (checked below).
    # The floor is low so a fault test can watch a whole-worker kill be redelivered in seconds
    # (with time limits to match); the check below is what keeps a deployment safe.
    visibility_timeout: int = Field(default=7_200, ge=10)
    max_retries: int = Field(default=5, ge=0)
    # Deliveries of one task id (retries and redeliveries after a lost worker) after which the
    # message is dead-lettered instead of run again.
    max_attempts: int = Field(default=8, ge=1)
    # Largest task message body (its JSON, bytes) a client may publish and a worker accepts:
    # larger ones are refused at publish (ValidationError) and dead-lettered ``oversized``
    # at consume, before anything else reads them (masking, history, attempt counting).
    max_message_bytes: int = Field(default=262_144, ge=4_096)

    # --- operations -------------------------------------------------------------------------
    # Stored settings (strategy parameters, schedule switches) are cached this long per process.
    stored_settings_ttl: float = Field(default=3_600.0, gt=0)
    # How often a process asks Redis whether another process changed a stored setting.
    stored_settings_check_every: float = Field(default=5.0, ge=0)
    # Beat: the longest sleep between ticks, and the Redis lock that lets one beat run at a
    # time (a standby beat takes over at most this long after the active one died).
    beat_max_interval: float = Field(default=30.0, gt=0)
    beat_lock_timeout: int = Field(default=150, ge=10)
    # Reaper: a job run left "started" whose worker is gone, or that no live worker is
    # running, for at least this long is requeued (idempotent tasks) or marked failed.
    reaper_grace: float = Field(default=300.0, ge=10)
    # Worker heartbeats (workers/heartbeat.py): every worker's main process records that it is
    # alive this often (seconds; 0 disables them, e.g. for a worker on SQLite). A job run
    # "started" on a worker not heard from for QUANTBEAT_WORKER_DEAD_AFTER seconds (at least
    # twice the interval) is orphaned at once: requeued or marked lost by the beat entry
    # reap-dead-workers (every 15 s), without the grace above.
    heartbeat_interval: float = Field(default=10.0, ge=0, le=300)
    worker_dead_after: float = Field(default=30.0, ge=2, le=3_600)
    # Outbox: a committed message still unpublished this many seconds later (its client died
    # or the broker was down) is published by the reaper's housekeeping sweep.
    outbox_grace: float = Field(default=30.0, ge=1)
    retry_backoff_base: float = Field(default=2.0, gt=0)
    retry_backoff_max: int = Field(default=600, ge=1)
    worker_max_tasks_per_child: int = Field(default=200, ge=1)
    worker_max_memory_per_child_kib: int = Field(default=1_048_576, ge=65_536)
    # Address space (bytes) a prefork pool child may add after it starts (RLIMIT_AS, set in
    # the child): an allocation beyond it raises MemoryError, which fails the task at once
    # (dead letter ``out_of_memory``) instead of the kernel's OOM killer taking the child.
    # 0 disables the cap.
    child_max_bytes: int = Field(default=3_221_225_472, ge=0)
    # Deaths by SIGKILL (the OOM killer, or an operator) of pool children running one task id
    # after which its message is dead-lettered ``worker_killed`` instead of requeued.
    max_child_kills: int = Field(default=2, ge=1)

    # --- time limits per task family (soft raises inside the task, hard kills the child) -----
    io_soft_time_limit: int = Field(default=300, ge=1)
    io_time_limit: int = Field(default=360, ge=1)
    cpu_soft_time_limit: int = Field(default=3_600, ge=1)
    cpu_time_limit: int = Field(default=3_720, ge=1)
    ai_soft_time_limit: int = Field(default=120, ge=1)
    ai_time_limit: int = Field(default=180, ge=1)

    # --- database time limits (PostgreSQL; seconds) -------------------------------------------
    # Every connection gets these as statement_timeout / lock_timeout: the values of the family
    # of the task using it (io, cpu, ai), or the client ones outside tasks (CLI, beat, the
    # worker's own bookkeeping). A statement or lock wait that runs out is a transient error:
    # the task retries, then dead-letters. cpu is longer: backtests read years of bars.
    db_connect_timeout: int = Field(default=5, ge=1, le=300)
    io_statement_timeout: float = Field(default=30.0, gt=0)
    io_lock_timeout: float = Field(default=5.0, gt=0)
    cpu_statement_timeout: float = Field(default=300.0, gt=0)
    cpu_lock_timeout: float = Field(default=10.0, gt=0)
    ai_statement_timeout: float = Field(default=30.0, gt=0)
    ai_lock_timeout: float = Field(default=5.0, gt=0)
    client_statement_timeout: float = Field(default=120.0, gt=0)
    client_lock_timeout: float = Field(default=10.0, gt=0)

    # --- HTTP clients of data providers (seconds) -------------------------------------------
    # Each phase of one request (connect, write, each read, pool wait) of Upbit, KRX (pykrx),
    # Yahoo and news feeds; and the longest a provider's own retry loop may run, waits
    # included, before it gives up and the task's Celery retry takes over.
    http_timeout: float = Field(default=10.0, gt=0, le=300)
    provider_retry_max: float = Field(default=60.0, gt=0)
    # S3 export: connect and read timeout of each request (boto retries twice on top).
    s3_timeout: float = Field(default=30.0, gt=0, le=600)

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    # --- market data ------------------------------------------------------------------------
    market_source: Literal["simulated", "krx"] = "simulated"
    # Market Gate (domain notes §7): the sector ETFs ranked as "code:name" pairs, comma
    # separated (default: the original system's eight), and how far back a first collection
    # of index/ETF/FX bars reaches (calendar days; KODEX 200's MA200 needs ~290).
    sector_etfs: str = (
        "069500:KOSPI200,091160:반도체,305720:2차전지,091170:자동차,102780:IT,102960:은행,"
        "117680:철강,102970:증권"
    )
    reference_backfill_days: int = Field(default=400, ge=30, le=7_300)
    # Intraday snapshots of the day so far, every this many minutes during KRX sessions
    # (09:00–15:30 KST; beat entry market-snapshots).
    snapshot_every: int = Field(default=10, ge=1, le=60)
    # The closing bet's buy-window decision (KST, HH:MM): the closing auction starts 15:20,
    # so it must leave time to order (domain notes §8).
    closing_bet_at: str = "15:10"
    sim_seed: int = Field(default=42, ge=0)
    sim_universe_size: int = Field(default=2_500, ge=1, le=20_000)
    # Fault injection for tests and drills: this fraction of simulated rows is corrupted.
    sim_corrupt_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    # Crypto: "simulated" or "upbit"; tickers to collect (empty: every KRW market listed).
    crypto_source: Literal["simulated", "upbit"] = "simulated"
    crypto_tickers: list[str] = Field(default_factory=list)
    # How far back an incremental crypto run looks when nothing is stored yet, in hours.
    crypto_lookback_hours: int = Field(default=48, ge=1)
    # The markets of the crypto jobs (issue 23): the volatility check, the hourly signal.
    crypto_signal_markets: list[str] = Field(default_factory=lambda: ["KRW-BTC"], min_length=1)
    # An hour is unusual at this many sigmas of the trailing 30 days' hourly returns
    # (quant.crypto.volatility).
    volatility_sigma: float = Field(default=3.0, gt=0, le=100)
    # The crypto paper portfolio's starting cash (KRW; quant.crypto.paper).
    crypto_paper_capital: float = Field(default=10_000_000.0, gt=0, le=1e15)
    upbit_base_url: str = "https://api.upbit.com"
    # Global request rates per provider (requests per second, across all workers and hosts),
    # and how long a task may wait for its turn before a Celery retry takes over (seconds).
    provider_rates: dict[str, float] = Field(
        default_factory=lambda: {"krx": 1.0, "upbit": 8.0, "yfinance": 1.0}
    )
    rate_limit_max_wait: float = Field(default=10.0, ge=0)
    # Pace at this fraction of each provider rate: providers count arrivals, and a request
    # delayed on its way (a busy host) lets the next ones bunch up behind it.
    rate_limit_headroom: float = Field(default=0.9, ge=0.5, le=1.0)

    # --- indicator cache ----------------------------------------------------------------------
    # Seconds an indicator/candle cache entry lives, per bar interval (an interval not listed
    # gets one bar's length; 1d gets a day). New candles invalidate entries at once anyway.
    cache_ttl: dict[str, int] = Field(
        default_factory=lambda: {
            "1m": 60,
            "3m": 180,
            "5m": 300,
            "10m": 600,
            "15m": 900,
            "30m": 1_800,
            "60m": 3_600,
            "240m": 14_400,
            "1d": 86_400,
        }
    )
    # Redis of the indicator cache (default: QUANTBEAT_REDIS_URL). In production give it a
    # Redis of its own with maxmemory and allkeys-lru: the broker's Redis must never evict,
    # and must never fill up with cache entries either.
    cache_url: str | None = None
    # Redis socket timeout for cache calls; after a cache failure it is bypassed this long.
    cache_timeout: float = Field(default=0.5, gt=0)
    cache_retry_after: float = Field(default=5.0, ge=0)
    # A batch of indicator requests answers within this many seconds (late items: Timeout).
    indicator_batch_timeout: float = Field(default=5.0, gt=0)
    # On a miss, once an instrument's candles are loaded, these indicators (with default
    # parameters) are computed and cached too: a chart usually adds several. [] disables.
    indicator_prefetch: list[str] = Field(
        default_factory=lambda: ["sma", "ema", "rsi", "macd", "bbands", "atr", "obv"]
    )

    # --- backtests ------------------------------------------------------------------------------
    # Default soft/hard time limits of one backtest run (seconds); a spec may ask for less.
    backtest_soft_time_limit: int = Field(default=3_600, ge=1)
    backtest_time_limit: int = Field(default=3_720, ge=1)
    # Calendar days of history the nightly backtest of the day's signals covers.
    backtest_nightly_days: int = Field(default=730, ge=30)
    # Largest estimated memory of one backtest run (bytes: its (bars x instruments) arrays at
    # their peak, quant.backtest.memory): a bigger spec is refused at submit and by the worker
    # before it loads anything. Keep it below the cpu worker's memory limit per child.
    backtest_max_bytes: int = Field(default=1_073_741_824, ge=1_048_576)
    # Where `quantbeat backtest report` writes reports (default: <data_dir>/reports).
    report_dir: Path | None = None
    # Backups (`quantbeat db backup`, the nightly quantbeat.ops.backup): a directory (default
    # <data_dir>/backups) or, when backup_url is set, s3://bucket/prefix; the newest
    # backup_keep complete backups are kept there.
    backup_dir: Path | None = None
    backup_url: str | None = None
    backup_keep: int = Field(default=7, ge=1, le=1000)
    # S3-compatible export of a run's artifacts (s3://bucket/prefix), and a non-AWS endpoint
    # (MinIO, Ceph); credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID, ...).
    backtest_export_url: str | None = None
    s3_endpoint_url: str | None = None

    # --- credentials and external services --------------------------------------------------
    krx_id: str | None = None
    krx_pw: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-3.5-flash"
    # A non-default Gemini endpoint (a proxy, or the fake server in tests).
    gemini_base_url: str | None = None
    gemini_timeout: float = Field(default=30.0, gt=0)
    # The project's quota, shared by every ai worker on every host: requests per minute and
    # per day (the day resets at midnight Pacific, as Google's does).
    gemini_rpm: int = Field(default=5, ge=1)
    gemini_rpd: int = Field(default=20, ge=1)
    # Shared cooldown after a 429/503/504 that gave no Retry-After (seconds).
    ai_cooldown: float = Field(default=30.0, gt=0)
    # Candidates per strategy the pipeline analyses after a scan.
    ai_top_n: int = Field(default=5, ge=0, le=200)
    # News: RSS/Atom feed URLs, and/or a directory (or file) of feeds and JSON lines; the
    # simulated market gets the simulated news source. Items this many days back are used.
    news_feeds: list[str] = Field(default_factory=list)
    news_dir: Path | None = None
    news_lookback_days: int = Field(default=3, ge=1, le=30)
    flower_basic_auth: SecretStr | None = None
    flower_port: int = Field(default=5555, ge=1, le=65_535)
    # Prometheus: port of a worker's /metrics endpoint (0: none; two workers on one host need
    # different ports, `quantbeat worker --metrics-port`), and where a prefork worker keeps
    # its processes' shared metric files (default <data_dir>/prometheus; one folder per node).
    metrics_port: int = Field(default=9808, ge=0, le=65_535)
    metrics_dir: Path | None = None
    # Flower's persistent task history (a shelve file; default <data_dir>/flower/flower.db),
    # how often it is saved besides at shutdown (seconds), and how many tasks it keeps.
    flower_db: Path | None = None
    flower_state_save_interval: float = Field(default=60.0, gt=0)
    flower_max_tasks: int = Field(default=10_000, ge=1)
    # `quantbeat health serve`: port of GET /health and /health/live (container healthchecks).
    health_port: int = Field(default=8008, ge=0, le=65_535)

    # --- notifications (README "Notifications") -----------------------------------------
    # Secrets subscriptions refer to by name (`quantbeat notify add --secret NAME`): bot
    # tokens, Slack/Discord webhook URLs, webhook signing secrets. A JSON object in the
    # environment: QUANTBEAT_NOTIFY_SECRETS='{"tg_main": "123:ABC…", "ops_slack": "https://…"}'.
    # Never stored in the database, never logged.
    notify_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # The Telegram Bot API's base URL (a local Bot API server, or the fake in tests).
    telegram_api_url: str = "https://api.telegram.org"
    # Seconds one provider request may take.
    notify_timeout: float = Field(default=10.0, gt=0)
    # Attempts of one delivery before it is recorded failed (transient errors: 429, 5xx,
    # timeouts), and its backoff: base x 2^(attempt-1) seconds, at most notify_backoff_max,
    # never shorter than a provider's retry_after.
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    notify_backoff_base: float = Field(default=2.0, gt=0)
    notify_backoff_max: float = Field(default=600.0, gt=0)
    # Seconds a dispatcher's lease on a subscription lasts without renewal: a dispatcher that
    # died mid-send is taken over after this (its unconfirmed part is sent again).
    notify_lease_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)
    # Where `file` subscriptions with a relative target write (default <data_dir>/notifications).
    notify_file_dir: Path | None = None
    # SMTP for `email` subscriptions: security starttls (587), tls (implicit, 465) or none
    # (local relays only); a CA bundle to trust besides the system's (a private relay).
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "quantbeat@localhost"
    smtp_ca_file: Path | None = None
    # Messages per second to the SMTP relay (all e-mail subscriptions together).
    smtp_rate: float = Field(default=5.0, gt=0)

    # --- HTTP API and dashboard (README "HTTP API and dashboard") ---------------------------
    # `quantbeat api`: its port; requests per minute one API key may make (a key's own
    # rate, `quantbeat api-key create --rate`, wins); browser origins allowed to call it
    # (CORS; none by default: same-origin only), as a JSON list.
    api_port: int = Field(default=8080, ge=0, le=65_535)
    api_rate_per_minute: int = Field(default=600, ge=1)
    api_cors_origins: list[str] = Field(default_factory=list)
    # Seconds GET responses may be cached by clients and proxies (Cache-Control max-age).
    api_cache_seconds: int = Field(default=15, ge=0, le=86_400)
    # Without a key, the dashboard and the read API answer only on a loopback address with
    # this set (the newcomer's `quantbeat api --open` on the embedded database); never in
    # production.
    api_open: bool = False

    # --- network exposure ---------------------------------------------------------------------
    # Address Flower, `quantbeat health serve` and the workers' /metrics listen on: loopback
    # unless told otherwise (none of them speaks TLS; put a TLS reverse proxy in front, see the
    # README). 0.0.0.0 or :: listens on every interface. Each endpoint may have its own
    # (unset: QUANTBEAT_BIND_ADDRESS); command options (--address, --host, --metrics-address)
    # win over both.
    bind_address: str = "127.0.0.1"
    flower_address: str | None = None
    health_address: str | None = None
    metrics_address: str | None = None
    api_address: str | None = None

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Asia/Seoul or UTC)"
            ) from None
        return value

    @field_validator("provider_rates")
    @classmethod
    def _check_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for provider, rate in value.items():
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(
                    f"rate of {provider!r} must be a finite number of requests per second > 0, "
                    f"got {rate!r}"
                )
        return value

    @field_validator("gemini_api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        # QUANTBEAT_GEMINI_API_KEY= (empty, as in a copied .env.example) means no key: the
        # offline analyzer, not a Gemini client failing on every analysis.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("cache_ttl")
    @classmethod
    def _check_ttls(cls, value: dict[str, int]) -> dict[str, int]:
        # quant.indicators loads TA-Lib and numba: only when this setting is validated.
        from quant.indicators.request import INTERVALS  # noqa: PLC0415 (TA-Lib, numba)

        for interval, seconds in value.items():
            if interval not in INTERVALS:
                raise ValueError(
                    f"unknown interval {interval!r} (intervals: {', '.join(INTERVALS)})"
                )
            if not 1 <= seconds <= MAX_CACHE_TTL:
                raise ValueError(
                    f"TTL of {interval} must be from 1 s to {MAX_CACHE_TTL:,} s (366 days), "
                    f"got {seconds}"
                )
        return value

    @field_validator("closing_bet_at")
    @classmethod
    def _check_closing_bet_at(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{2}):(\d{2})", value.strip())
        if not match or not ("09:00" <= value.strip() <= "15:19") or int(match[2]) > 59:
            raise ValueError(
                f"QUANTBEAT_CLOSING_BET_AT must be HH:MM between 09:00 and 15:19 KST (before the "
                f"closing auction), got {value!r}"
            )
        return value.strip()

    @field_validator("sector_etfs")
    @classmethod
    def _check_sector_etfs(cls, value: str) -> str:
        try:
            parse_sector_etfs(value)
        except ValidationError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("indicator_prefetch")
    @classmethod
    def _check_prefetch(cls, value: list[str]) -> list[str]:
        from quant.indicators import INDICATORS  # noqa: PLC0415 (TA-Lib, numba)

        unknown = [name for name in value if name not in INDICATORS]
        if unknown:
            raise ValueError(
                f"unknown indicator {unknown[0]!r} (indicators: {', '.join(INDICATORS)})"
            )
        return value

    @field_validator("bind_address", "flower_address", "health_address", "metrics_address")
    @classmethod
    def _check_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return check_address(value, field=f"QUANTBEAT_{str(info.field_name).upper()}")

    @field_validator(*REDIS_URL_SETTINGS)
    @classmethod
    def _check_redis_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return normalize_redis_url(value, field=f"QUANTBEAT_{str(info.field_name).upper()}")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        families: tuple[QueueFamily, ...] = ("io", "cpu", "ai")
        for family in families:
            soft, hard = self.time_limits(family)
            if soft >= hard:
                raise ValueError(
                    f"QUANTBEAT_{family.upper()}_SOFT_TIME_LIMIT={soft} must be below "
                    f"QUANTBEAT_{family.upper()}_TIME_LIMIT={hard}"
                )
        for prefix in (*families, "client"):
            statement, lock = self.db_timeouts(prefix)
            if lock > statement:
                raise ValueError(
                    f"QUANTBEAT_{prefix.upper()}_LOCK_TIMEOUT={lock:g} must not exceed "
                    f"QUANTBEAT_{prefix.upper()}_STATEMENT_TIMEOUT={statement:g}: a lock wait "
                    "is part of its statement"
                )
        if self.backtest_soft_time_limit >= self.backtest_time_limit:
            raise ValueError(
                f"QUANTBEAT_BACKTEST_SOFT_TIME_LIMIT={self.backtest_soft_time_limit} must be "
                f"below QUANTBEAT_BACKTEST_TIME_LIMIT={self.backtest_time_limit}"
            )
        if self.max_attempts < self.max_retries + 2:
            raise ValueError(
                f"QUANTBEAT_MAX_ATTEMPTS={self.max_attempts} must be at least "
                f"QUANTBEAT_MAX_RETRIES + 2 = {self.max_retries + 2}: every retry is an "
                "attempt, and one redelivery (a lost worker) must not dead-letter a task that "
                "still has retries left"
            )
        if self.heartbeat_interval and self.worker_dead_after < 2 * self.heartbeat_interval:
            raise ValueError(
                f"QUANTBEAT_WORKER_DEAD_AFTER={self.worker_dead_after:g} must be at least twice "
                f"QUANTBEAT_HEARTBEAT_INTERVAL={self.heartbeat_interval:g}: one late heartbeat "
                "must not declare a live worker dead"
            )
        needed = self.longest_hard_time_limit + self.retry_backoff_max
        if self.visibility_timeout <= needed:
            raise ValueError(
                f"QUANTBEAT_VISIBILITY_TIMEOUT={self.visibility_timeout} must exceed the longest "
                f"hard time limit plus QUANTBEAT_RETRY_BACKOFF_MAX ({needed} s); otherwise Redis "
                "hands running or delayed tasks to a second worker"
            )
        if self.env == "production" and self.deployed:
            problems = self.production_problems()
            if problems:
                raise ValueError(
                    "QUANTBEAT_ENV=production refuses default or empty passwords: "
                    + "; ".join(problems)
                )
        return self

    @property
    def deployed(self) -> bool:
        """True unless these settings select the embedded profile (``QUANTBEAT_MODE``, or
        ``auto`` with no store URL given; :func:`quantbeat.infra.profile.resolve_mode`)."""
        if self.mode != "auto":
            return self.mode == "distributed"
        return bool(_STORE_SETTINGS & self.model_fields_set)

    def production_problems(self) -> list[str]:
        """Every setting a production deployment may not keep, one sentence each naming the
        variable (never the secret): a PostgreSQL URL whose password is empty or a known
        default (:data:`KNOWN_DEFAULT_PASSWORDS`), a Redis URL (broker, result backend,
        ``QUANTBEAT_REDIS_URL``, ``QUANTBEAT_CACHE_URL``) without a password or with a known
        default, and Flower basic auth with a weak entry (:func:`flower_auth_problems`; a
        *missing* one is refused by ``quantbeat flower`` itself: other processes do not need
        it). Checked at load when ``QUANTBEAT_ENV=production`` on a deployment."""
        problems = []
        if _scheme(self.database_url).startswith("postgres"):
            weak = _weak(_url_password(self.database_url))
            if weak is not None:
                problems.append(f"QUANTBEAT_DATABASE_URL {weak}")
        for name in REDIS_URL_SETTINGS:
            url = getattr(self, name)
            if url is None or _scheme(url) not in ("redis", "rediss"):
                continue
            weak = _weak(_url_password(url))
            if weak is not None:
                problems.append(f"QUANTBEAT_{name.upper()} {weak} (Redis AUTH)")
        if self.flower_basic_auth is not None:
            problems += flower_auth_problems(self.flower_basic_auth.get_secret_value())
        return problems

    def listen_address(self, endpoint: Endpoint) -> str:
        """The address ``endpoint`` listens on: its own setting (``QUANTBEAT_FLOWER_ADDRESS``,
        ``QUANTBEAT_HEALTH_ADDRESS``, ``QUANTBEAT_METRICS_ADDRESS``,
        ``QUANTBEAT_API_ADDRESS``), else
        ``QUANTBEAT_BIND_ADDRESS`` (default 127.0.0.1)."""
        own: str | None = getattr(self, f"{endpoint}_address")
        return own if own is not None else self.bind_address

    def api_open_on(self, address: str) -> bool:
        """Whether the API listening on ``address`` serves without keys: open mode asked for
        (``QUANTBEAT_API_OPEN``), a loopback address, and not production."""
        return self.api_open and is_loopback(address) and self.env != "production"

    @property
    def cache_path(self) -> Path:
        """The directory of derived caches (``QUANTBEAT_CACHE_DIR``, else the user's cache)."""
        if self.cache_dir is not None:
            return self.cache_dir
        xdg = os.environ.get("XDG_CACHE_HOME")
        return (Path(xdg) if xdg else Path.home() / ".cache") / "quantbeat"

    @property
    def notify_file_path(self) -> Path:
        """Where ``file`` subscriptions with a relative target write."""
        return self.notify_file_dir or self.data_dir / "notifications"

    @property
    def backup_path(self) -> Path:
        """The directory backups are written to when no ``backup_url`` is set."""
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

    @property
    def reports_path(self) -> Path:
        """The directory reports are written to."""
        return self.report_dir if self.report_dir is not None else self.data_dir / "reports"

    @property
    def flower_db_path(self) -> Path:
        """The file Flower keeps its task history in."""
        if self.flower_db is not None:
            return self.flower_db
        return self.data_dir / "flower" / "flower.db"

    def time_limits(self, family: str) -> tuple[int, int]:
        """(soft, hard) time limit in seconds for a task family."""
        soft: int = getattr(self, f"{family}_soft_time_limit")
        hard: int = getattr(self, f"{family}_time_limit")
        return soft, hard

    def db_timeouts(self, family: str | None) -> tuple[float, float]:
        """(statement_timeout, lock_timeout) in seconds for database work of a task family
        (``io``, ``cpu``, ``ai``); ``None`` (or ``"client"``) gives the client values."""
        prefix = family if family in ("io", "cpu", "ai") else "client"
        statement: float = getattr(self, f"{prefix}_statement_timeout")
        lock: float = getattr(self, f"{prefix}_lock_timeout")
        return statement, lock

    @property
    def longest_hard_time_limit(self) -> int:
        return max(
            self.io_time_limit, self.cpu_time_limit, self.ai_time_limit, self.backtest_time_limit
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``, applying ``overrides`` last.

    Raises:
        quant.errors.ConfigError: a variable has an invalid value (also a list or object
            setting that is not JSON); the message names it.
    """

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:  # a list/dict variable that is not JSON (before validation)
        raise ConfigError(f"invalid configuration: {_not_json(exc)}") from None
    except PydanticValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            where = f"QUANTBEAT_{loc.upper()}" if loc else "settings"
            given = err.get("input")
            # Masked: a URL given to a setting may carry its password.
            shown = (
                "" if loc == "" or isinstance(given, dict) else f" (got {mask_text(repr(given))})"
            )
            problems.append(f"{where}: {err['msg']}{shown}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def _not_json(exc: SettingsError) -> str:
    """``QUANTBEAT_<FIELD>: ... is not JSON (got <masked value>)`` from pydantic-settings'
    parse error of a list or object variable (``QUANTBEAT_CRYPTO_TICKERS=KRW-BTC``)."""
    match = _SETTINGS_FIELD.search(str(exc))
    where = f"QUANTBEAT_{match['field'].upper()}" if match else "a QUANTBEAT_ variable"
    cause = exc.__cause__
    got = f" (got {mask_text(repr(cause.doc))})" if isinstance(cause, json.JSONDecodeError) else ""
    return (
        f"{where}: a list or object setting must be written as JSON, e.g. "
        f'["KRW-BTC", "KRW-ETH"] or {{"krx": 1.0}}{got}'
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests and the embedded runner call
    :func:`reset_settings` after changing the environment."""
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings so the next :func:`get_settings` reads the environment again."""
    get_settings.cache_clear()
