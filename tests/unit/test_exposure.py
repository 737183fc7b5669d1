"""Exposure and defaults (issue 16, item 5): every HTTP endpoint listens on loopback unless told
otherwise, `flower --no-auth` only on loopback, and ``QUANTBEAT_ENV=production`` refuses empty
or default passwords, naming every offending setting and never the secret."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from kombu.connection import Connection

from quant.errors import ConfigError, ValidationError
from quantbeat.cli import main as cli
from quantbeat.cli import processes
from quantbeat.cli.processes import flower_problems
from quantbeat.infra.settings import (
    address_option,
    check_address,
    flower_auth_problems,
    is_loopback,
    load_settings,
    normalize_redis_url,
    reset_settings,
)
from quantbeat.services import health as service
from workers import metrics

STRONG = "Xq7-r2Lp9-vT4k"
#: A deployment's store URLs with strong passwords.
GOOD = {
    "database_url": f"postgresql+psycopg://quantbeat:{STRONG}@db:5432/quantbeat",
    "broker_url": f"redis://:{STRONG}@redis:6379/0",
    "result_backend": f"redis://:{STRONG}@redis:6379/1",
    "redis_url": f"redis://:{STRONG}@redis:6379/2",
}


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch):
    for name in (
        "QUANTBEAT_BIND_ADDRESS",
        "QUANTBEAT_FLOWER_ADDRESS",
        "QUANTBEAT_HEALTH_ADDRESS",
        "QUANTBEAT_METRICS_ADDRESS",
        "QUANTBEAT_FLOWER_BASIC_AUTH",
        "QUANTBEAT_CACHE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield
    reset_settings()


# --- listen addresses ---------------------------------------------------------------------------
def test_every_endpoint_listens_on_loopback_by_default():
    settings = load_settings()
    assert settings.bind_address == "127.0.0.1"
    for endpoint in ("flower", "health", "metrics"):
        assert settings.listen_address(endpoint) == "127.0.0.1"


def test_bind_address_and_per_endpoint_addresses(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QUANTBEAT_BIND_ADDRESS", "10.0.0.5")
    monkeypatch.setenv("QUANTBEAT_METRICS_ADDRESS", "0.0.0.0")
    monkeypatch.setenv("QUANTBEAT_FLOWER_ADDRESS", "[::1]")
    settings = load_settings()
    assert settings.listen_address("health") == "10.0.0.5"
    assert settings.listen_address("metrics") == "0.0.0.0"
    assert settings.listen_address("flower") == "::1"


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.10.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("192.168.1.20", False),
        ("flower.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(address: str, loopback: bool):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("bad", ["", "   ", "a b", "http://x", "host:5555", "-x", "a..b"])
def test_an_address_that_is_neither_ip_nor_host_name_is_refused(
    bad: str, monkeypatch: pytest.MonkeyPatch
):
    with pytest.raises(ValueError, match="QUANTBEAT_BIND_ADDRESS"):
        check_address(bad, field="QUANTBEAT_BIND_ADDRESS")
    with pytest.raises(ValidationError, match="--address"):
        address_option(bad, "--address")
    monkeypatch.setenv("QUANTBEAT_HEALTH_ADDRESS", bad)
    with pytest.raises(ConfigError, match="QUANTBEAT_HEALTH_ADDRESS"):
        load_settings()


# --- flower -------------------------------------------------------------------------------------
@pytest.fixture
def flower_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[list[str]]:
    """The argv `quantbeat flower` hands to Celery (Flower itself is not started)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(processes, "_celery", lambda _app, argv: calls.append(argv))
    monkeypatch.setenv("QUANTBEAT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    return calls


def test_flower_listens_on_loopback_unless_told(
    flower_argv: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    monkeypatch.setenv("QUANTBEAT_FLOWER_BASIC_AUTH", f"ops:{STRONG}")
    assert cli.main(["flower"]) == 0
    assert "--address=127.0.0.1" in flower_argv[-1]
    assert cli.main(["flower", "--address", "0.0.0.0"]) == 0
    assert "--address=0.0.0.0" in flower_argv[-1]
    monkeypatch.setenv("QUANTBEAT_FLOWER_ADDRESS", "10.1.2.3")
    reset_settings()
    assert cli.main(["flower"]) == 0
    assert "--address=10.1.2.3" in flower_argv[-1]
    # never on argv (visible in `ps`)
    assert not any(STRONG in arg for argv in flower_argv for arg in argv)
    capsys.readouterr()


def test_flower_no_auth_only_on_loopback(
    flower_argv: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    assert cli.main(["flower", "--no-auth"]) == 0
    assert "--address=127.0.0.1" in flower_argv[-1]
    assert cli.main(["flower", "--no-auth", "--address", "::1"]) == 0
    for address in ("0.0.0.0", "::", "192.168.1.20"):
        assert cli.main(["flower", "--no-auth", "--address", address]) == cli.EXIT_CONFIG
        err = capsys.readouterr().err
        assert "--no-auth" in err
        assert "loopback" in err
        assert address in err
    monkeypatch.setenv("QUANTBEAT_BIND_ADDRESS", "0.0.0.0")
    reset_settings()
    assert cli.main(["flower", "--no-auth"]) == cli.EXIT_CONFIG
    assert len(flower_argv) == 2, "Flower started where it should not have"


def test_flower_problems():
    assert flower_problems(None, address="127.0.0.1", no_auth=True, production=False) == []
    assert flower_problems("a:b", address="0.0.0.0", no_auth=False, production=False) == []
    (missing,) = flower_problems(None, address="127.0.0.1", no_auth=False, production=False)
    assert "QUANTBEAT_FLOWER_BASIC_AUTH is not set" in missing
    assert len(flower_problems(None, address="0.0.0.0", no_auth=True, production=True)) == 2
    (malformed,) = flower_problems("nocolon", address="::1", no_auth=False, production=False)
    assert "user:password" in malformed
    # production: weak credentials too, and never the password itself
    weak = flower_problems("admin:admin", address="::1", no_auth=False, production=True)
    assert weak
    assert all("admin:admin" not in p for p in weak)
    assert flower_problems(f"ops:{STRONG}", address="::1", no_auth=True, production=True) == []


@pytest.mark.parametrize(
    ("credentials", "bad_entries"),
    [
        (f"ops:{STRONG}", []),
        (f"ops:{STRONG},viewer:{STRONG}2", []),
        ("admin:admin", [1]),
        ("admin:Password", [1]),
        ("admin:", [1]),
        ("ops:ops", [1]),
        (f"ops:{STRONG},guest:guest", [2]),
        ("justauser", [1]),
        (f":{STRONG}", [1]),
    ],
)
def test_flower_auth_problems_name_each_weak_entry(credentials: str, bad_entries: list[int]):
    problems = flower_auth_problems(credentials)
    assert [int(p.split("entry ")[1].split()[0]) for p in problems] == bad_entries
    for problem in problems:
        assert "QUANTBEAT_FLOWER_BASIC_AUTH" in problem
        assert STRONG not in problem


def test_flower_in_production_refuses_to_run_unprotected(
    flower_argv: list[list[str]], monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    monkeypatch.setenv("QUANTBEAT_ENV", "production")
    for key, value in GOOD.items():
        monkeypatch.setenv(f"QUANTBEAT_{key.upper()}", value)
    assert cli.main(["flower", "--no-auth"]) == cli.EXIT_CONFIG
    assert "QUANTBEAT_ENV=production" in capsys.readouterr().err
    monkeypatch.setenv("QUANTBEAT_FLOWER_BASIC_AUTH", "admin:changeme")
    reset_settings()
    assert cli.main(["flower"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "QUANTBEAT_FLOWER_BASIC_AUTH entry 1" in err
    assert "changeme" not in err
    monkeypatch.setenv("QUANTBEAT_FLOWER_BASIC_AUTH", f"ops:{STRONG}")
    reset_settings()
    assert cli.main(["flower"]) == 0
    assert flower_argv
    assert "--address=127.0.0.1" in flower_argv[-1]


# --- health serve and metrics ---------------------------------------------------------------------
class _Served(Exception):
    """Raised by the fake server to stop `health serve` once it is bound."""


def test_health_serve_binds_loopback_unless_told(monkeypatch: pytest.MonkeyPatch, capsys: Any):
    bound: list[str] = []

    def fake_make_server(host: str, port: int, cache: object) -> object:
        bound.append(host)
        raise _Served

    monkeypatch.setattr(service, "make_server", fake_make_server)
    monkeypatch.setenv("QUANTBEAT_DEBUG", "1")
    for argv, expected in (
        (["health", "serve", "--port", "0"], "127.0.0.1"),
        (["health", "serve", "--port", "0", "--host", "0.0.0.0"], "0.0.0.0"),
    ):
        with pytest.raises(_Served):
            cli.main(argv)
        assert bound[-1] == expected
    monkeypatch.setenv("QUANTBEAT_HEALTH_ADDRESS", "::1")
    reset_settings()
    with pytest.raises(_Served):
        cli.main(["health", "serve", "--port", "0"])
    assert bound[-1] == "::1"
    monkeypatch.delenv("QUANTBEAT_DEBUG")
    assert cli.main(["health", "serve", "--host", "not an address"]) == cli.EXIT_USAGE
    assert "--host" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _outward_address() -> str | None:
    """An address of this host other than loopback (None when there is none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if is_loopback(address) or address == "0.0.0.0" else address


@pytest.mark.parametrize("configured", [None, "0.0.0.0"])
def test_worker_metrics_endpoint_binds_the_configured_address(
    configured: str | None, monkeypatch: pytest.MonkeyPatch
):
    port = _free_port()
    monkeypatch.setenv("QUANTBEAT_METRICS_PORT", str(port))
    if configured is not None:
        monkeypatch.setenv("QUANTBEAT_METRICS_ADDRESS", configured)
    reset_settings()
    sender = SimpleNamespace(app=object(), hostname="exposure@test", pool_cls="threads")
    metrics._prepare(sender=sender)
    metrics._serve(sender=sender)
    try:
        server = metrics._state.server
        assert server is not None
        assert server.server_address[0] == (configured or "127.0.0.1")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"quantbeat_worker_up" in answer.read()
        outward = _outward_address()
        if outward is not None:
            with socket.socket() as sock:
                sock.settimeout(2)
                reached = sock.connect_ex((outward, port)) == 0
            assert reached is (configured == "0.0.0.0")
    finally:
        metrics._stop()


def test_worker_metrics_address_option(monkeypatch: pytest.MonkeyPatch, capsys: Any):
    calls: list[list[str]] = []
    monkeypatch.setattr(processes, "_celery", lambda _app, argv: calls.append(argv))
    monkeypatch.delenv("QUANTBEAT_METRICS_ADDRESS", raising=False)
    assert cli.main(["worker", "--queues", "io", "--metrics-address", "0.0.0.0"]) == 0
    assert load_settings().listen_address("metrics") == "0.0.0.0"
    monkeypatch.delenv("QUANTBEAT_METRICS_ADDRESS")
    assert cli.main(["worker", "--queues", "io", "--metrics-address", "x y"]) == cli.EXIT_USAGE
    assert "--metrics-address" in capsys.readouterr().err
    assert len(calls) == 1


# --- production passwords -------------------------------------------------------------------------
def _production(**overrides: str) -> Any:
    return load_settings(env="production", **{**GOOD, **overrides})


def test_production_with_strong_passwords_starts():
    settings = _production(
        cache_url=f"rediss://:{STRONG}@cache:6380/0", flower_basic_auth=f"ops:{STRONG}"
    )
    assert settings.production_problems() == []


def test_development_keeps_its_defaults():
    for env in ("development", "test"):
        settings = load_settings(
            env=env,
            database_url="postgresql+psycopg://quantbeat:quantbeat@db/quantbeat",
            broker_url="redis://redis:6379/0",
            flower_basic_auth="admin:admin",
        )
        assert settings.env == env


def test_production_names_every_offending_setting_and_no_secret():
    with pytest.raises(ConfigError) as refused:
        load_settings(
            env="production",
            database_url="postgresql+psycopg://quantbeat:quantbeat@db:5432/quantbeat",
            broker_url="redis://redis:6379/0",
            result_backend="redis://:@redis:6379/1",
            redis_url="rediss://:changeme@redis:6380/2",
            cache_url="redis://cache:6379/0",
            flower_basic_auth="admin:admin",
        )
    message = str(refused.value)
    assert "QUANTBEAT_ENV=production" in message
    for variable in (
        "QUANTBEAT_DATABASE_URL uses a known default password",
        "QUANTBEAT_BROKER_URL has no password",
        "QUANTBEAT_RESULT_BACKEND has no password",
        "QUANTBEAT_REDIS_URL uses a known default password",
        "QUANTBEAT_CACHE_URL has no password",
        "QUANTBEAT_FLOWER_BASIC_AUTH entry 1 (user 'admin') uses a known default password",
    ):
        assert variable in message
    assert "changeme" not in message
    assert ":quantbeat@" not in message


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql+psycopg://postgres@db:5432/quantbeat",
        "postgresql+psycopg://quantbeat:@db:5432/quantbeat",
        "postgresql+psycopg://quantbeat:QuantBeat@db:5432/quantbeat",
        "postgresql+psycopg://quantbeat:%71uantbeat@db:5432/quantbeat",  # percent-encoded
        "postgresql://postgres:postgres@db/quantbeat",
    ],
)
def test_production_refuses_a_default_database_password(database_url: str):
    with pytest.raises(ConfigError, match="QUANTBEAT_DATABASE_URL") as refused:
        _production(database_url=database_url)
    assert "QUANTBEAT_BROKER_URL" not in str(refused.value)


@pytest.mark.parametrize("field", ["broker_url", "result_backend", "redis_url", "cache_url"])
def test_production_refuses_every_redis_url_without_password(field: str):
    with pytest.raises(ConfigError, match=f"QUANTBEAT_{field.upper()} has no password"):
        _production(**{field: "redis://redis:6379/3"})
    # an ACL user with no password is no better
    with pytest.raises(ConfigError, match=f"QUANTBEAT_{field.upper()} has no password"):
        _production(**{field: "redis://quantbeat@redis:6379/3"})
    assert _production(**{field: f"redis://quantbeat:{STRONG}@redis:6379/3"})


def test_production_checks_only_what_it_can_check():
    # RabbitMQ, rpc:// results and in-process Redis have no Redis password to check.
    settings = _production(
        broker_url=f"amqp://quantbeat:{STRONG}@rabbit:5672//", result_backend="rpc://"
    )
    assert settings.production_problems() == []


@pytest.mark.parametrize(
    "environment",
    [
        {},  # auto, nothing given: the embedded profile (SQLite, in-memory broker)
        {"mode": "embedded"},
    ],
)
def test_production_does_not_refuse_the_embedded_profile(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    for name in ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "REDIS_URL"):
        monkeypatch.delenv(f"QUANTBEAT_{name}", raising=False)
    settings = load_settings(env="production", **environment)
    assert not settings.deployed
    assert settings.production_problems()  # the defaults would be refused on a deployment
    with pytest.raises(ConfigError, match="QUANTBEAT_DATABASE_URL"):
        load_settings(env="production", mode="distributed")


def test_production_refusal_stops_every_command(monkeypatch: pytest.MonkeyPatch, capsys: Any):
    started: list[list[str]] = []
    monkeypatch.setattr(processes, "_celery", lambda _app, argv: started.append(argv))
    monkeypatch.setenv("QUANTBEAT_ENV", "production")
    monkeypatch.setenv("QUANTBEAT_BROKER_URL", "redis://:redis@127.0.0.1:1/0")
    for argv in (["worker", "--queues", "io"], ["beat"], ["health", "--json"], ["db", "current"]):
        reset_settings()
        assert cli.main(argv) == cli.EXIT_CONFIG, argv
        err = capsys.readouterr().err
        assert "QUANTBEAT_BROKER_URL uses a known default password" in err
        assert "QUANTBEAT_DATABASE_URL has no password" in err
        assert ":redis@" not in err
    assert started == []


# --- Redis URLs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@h:6379/0", "redis://:pw@h:6379/0"),
        ("rediss://:pw@h:6380/0", "rediss://:pw@h:6380/0?ssl_cert_reqs=required"),
        (
            "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem",
            "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required",
        ),
        ("rediss://h/0?ssl_cert_reqs=none", "rediss://h/0?ssl_cert_reqs=none"),
        ("memory://", "memory://"),
        ("amqp://u:p@rabbit//", "amqp://u:p@rabbit//"),
        ("rpc://", "rpc://"),
    ],
)
def test_rediss_urls_verify_the_server_in_every_client(url: str, expected: str):
    assert normalize_redis_url(url, field="X") == expected


def test_tls_options_on_plain_redis_are_refused_without_echoing_the_password():
    with pytest.raises(ConfigError, match=r"QUANTBEAT_REDIS_URL.*rediss://") as refused:
        load_settings(redis_url=f"redis://:{STRONG}@h/0?ssl_cert_reqs=required")
    assert STRONG not in str(refused.value)


def test_every_redis_client_reads_password_and_tls_from_the_url():
    """redis-py (rate limits, cache, quota, stored settings, backtest state, health, redbeat),
    kombu (the broker) and Celery's result backend all take AUTH and TLS from the URL."""
    url = normalize_redis_url(
        f"rediss://:{STRONG}@cache.internal:6380/3?ssl_ca_certs=/etc/ca.pem", field="X"
    )
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    assert kwargs["password"] == STRONG
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    broker = Connection(url)
    assert broker.password == STRONG
    tls = broker.ssl
    assert isinstance(tls, dict)
    assert tls["ssl_cert_reqs"] == ssl.CERT_REQUIRED  # verified, not kombu's CERT_NONE default
    assert tls["ssl_ca_certs"] == "/etc/ca.pem"
    backend = Celery(broker="memory://", backend=url).backend
    assert backend.connparams["password"] == STRONG
    assert backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert backend.connparams["ssl_ca_certs"] == "/etc/ca.pem"
