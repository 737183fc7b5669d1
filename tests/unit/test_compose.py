"""docker-compose.yml keeps the deployment's invariants: one beat, durable Redis, healthchecks,
migrations before workers, one queue per worker service, authenticated Flower, Prometheus
scraping every worker."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from quant.errors import ConfigError
from quantbeat.infra.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS_FILE = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"

EXPECTED_SERVICES = {
    "api",
    "postgres",
    "redis",
    "redis-cache",
    "migrate",
    "worker-io",
    "worker-cpu",
    "worker-ai",
    "beat",
    "flower",
    "prometheus",
    "health",
}
WORKER_QUEUES = {"worker-io": "io", "worker-cpu": "cpu", "worker-ai": "ai"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    found = document.get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services mapping"
    return found


def _argv(service: dict[str, Any]) -> list[str]:
    """The service's command as an argument list, whether written as a list or a string."""
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    """The service's environment as a mapping, whether written as a list or a mapping."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return env
    result: dict[str, Any] = {}
    for entry in env:
        key, sep, value = str(entry).partition("=")
        result[key] = value if sep else None
    return result


def _option(argv: list[str], name: str) -> list[str]:
    """Every value given for ``--name value`` or ``--name=value``."""
    values = []
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(name + "="):
            values.append(arg.split("=", 1)[1])
    return values


def _is_long_running(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) != "no"


def test_all_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = EXPECTED_SERVICES - services.keys()
    assert not missing, f"missing services: {sorted(missing)}"


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    argv = _argv(services["redis"])
    assert _option(argv, "--appendonly") == ["yes"]
    assert _option(argv, "--maxmemory-policy") == ["noeviction"]
    assert _option(argv, "--maxmemory"), "redis needs a maxmemory for noeviction to mean anything"


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    long_running = {name for name, svc in services.items() if _is_long_running(svc)}
    assert long_running >= EXPECTED_SERVICES - {"migrate"}
    for name in sorted(long_running):
        check = services[name].get("healthcheck")
        assert isinstance(check, dict), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"
        assert check.get("test"), f"{name} healthcheck has no test"


def test_migrate_is_one_shot(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert _argv(migrate) == ["db", "upgrade"]
    assert str(migrate.get("restart")) == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_beat_runs_redbeat_with_a_standby(services: dict[str, dict[str, Any]]) -> None:
    """One beat service, replicated for failover: `quantbeat beat` uses redbeat's lock, so
    only one replica ticks (tests/faults/test_beat_ha.py shows the outcome)."""
    beats = [name for name, svc in services.items() if _argv(svc)[:1] == ["beat"]]
    assert beats == ["beat"], f"one service runs beat, found {beats}"
    replicas = (services["beat"].get("deploy") or {}).get("replicas", 1)
    assert int(replicas) == 2


def test_health_endpoint_is_served(services: dict[str, dict[str, Any]]) -> None:
    health = services["health"]
    assert _argv(health)[:2] == ["health", "serve"]
    assert "8008" in " ".join(_argv(health))
    assert "/health/live" in str(health["healthcheck"]["test"])


def test_flower_state_is_on_a_volume(services: dict[str, dict[str, Any]]) -> None:
    mounts = [str(v) for v in services["flower"].get("volumes", [])]
    assert any("/var/lib/quantbeat" in m for m in mounts), mounts


def test_workers_wait_for_migrations_and_stores(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKER_QUEUES:
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name} needs long-form depends_on with conditions"
        assert depends.get("migrate", {}).get("condition") == "service_completed_successfully"
        assert depends.get("redis", {}).get("condition") == "service_healthy"
        assert depends.get("postgres", {}).get("condition") == "service_healthy"


def test_each_worker_consumes_exactly_its_queue(services: dict[str, dict[str, Any]]) -> None:
    for name, queue in WORKER_QUEUES.items():
        argv = _argv(services[name])
        assert argv[:1] == ["worker"], f"{name} does not run a worker: {argv}"
        queues = _option(argv, "--queues") + _option(argv, "-Q")
        assert queues == [queue], f"{name} must consume only {queue!r}, got {queues}"
    other_workers = [
        name
        for name, svc in services.items()
        if _argv(svc)[:1] == ["worker"] and name not in WORKER_QUEUES
    ]
    assert not other_workers, f"unexpected worker services: {other_workers}"


def test_worker_healthcheck_pings_its_own_node(services: dict[str, dict[str, Any]]) -> None:
    for name in WORKER_QUEUES:
        test = services[name]["healthcheck"]["test"]
        command = test if isinstance(test, str) else " ".join(test)
        assert "inspect ping" in command
        # `$$` in the file is compose's escape for a literal `$` the container shell expands.
        assert "celery@$$HOSTNAME" in command


def test_flower_is_published_and_authenticated(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    assert _argv(flower)[:1] == ["flower"]
    published = [str(port) for port in flower.get("ports", [])]
    assert any(port.split(":")[-2:] == ["5555", "5555"] for port in published), published
    env = _environment(flower)
    assert "QUANTBEAT_FLOWER_BASIC_AUTH" in env
    # Passed through by name: a default here would be a password committed to the repository.
    assert env["QUANTBEAT_FLOWER_BASIC_AUTH"] in (None, "")


def test_app_services_share_stores(services: dict[str, dict[str, Any]]) -> None:
    app_services = ["migrate", "beat", "flower", *WORKER_QUEUES]
    urls = {
        name: (
            _environment(services[name]).get("QUANTBEAT_DATABASE_URL"),
            _environment(services[name]).get("QUANTBEAT_BROKER_URL"),
        )
        for name in app_services
    }
    assert len(set(urls.values())) == 1, urls
    database_url, broker_url = next(iter(urls.values()))
    assert str(database_url).startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in str(database_url)
    assert broker_url == "redis://:${REDIS_PASSWORD:-}@redis:6379/0"


def test_the_cache_has_its_own_evicting_redis(services: dict[str, dict[str, Any]]) -> None:
    argv = _argv(services["redis-cache"])
    assert _option(argv, "--maxmemory-policy") == ["allkeys-lru"]
    assert _option(argv, "--maxmemory")
    assert _option(argv, "--appendonly") == ["no"]
    for name in WORKER_QUEUES:
        assert _environment(services[name]).get("QUANTBEAT_CACHE_URL") == (
            "redis://:${REDIS_PASSWORD:-}@redis-cache:6379/0"
        )
        # the broker's Redis never holds the cache
        assert "redis-cache" not in str(_environment(services[name]).get("QUANTBEAT_BROKER_URL"))


_SUBSTITUTION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """``value`` with compose's ``${VAR}`` / ``${VAR:-default}`` substituted from ``env``."""
    return _SUBSTITUTION.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def test_no_password_has_a_default(services: dict[str, dict[str, Any]]) -> None:
    """Unset, a password is empty (and production refuses it), never a value committed here."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    defaults = {
        name: default
        for name, default in _SUBSTITUTION.findall(text)
        if "PASSWORD" in name or "AUTH" in name
    }
    assert set(defaults) >= {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}
    assert all(default == "" for default in defaults.values()), defaults
    assert _environment(services["postgres"])["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-}"


def test_every_redis_requires_the_password_off_the_command_line(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("redis", "redis-cache"):
        redis = services[name]
        assert "REDIS_PASSWORD" not in " ".join(_argv(redis)), f"{name}: password in argv"
        script = " ".join(str(part) for part in redis["entrypoint"])
        assert "requirepass" in script
        assert "exec docker-entrypoint.sh redis-server /tmp/redis-auth.conf" in script
        assert _environment(redis)["REDIS_PASSWORD"] == "${REDIS_PASSWORD:-}"
        check = " ".join(redis["healthcheck"]["test"])
        assert 'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli ping' in check, name
    for name in ("migrate", "beat", "flower", "health", *WORKER_QUEUES):
        env = _environment(services[name])
        for key in ("QUANTBEAT_BROKER_URL", "QUANTBEAT_RESULT_BACKEND", "QUANTBEAT_REDIS_URL"):
            assert str(env[key]).startswith("redis://:${REDIS_PASSWORD:-}@redis:6379/"), (name, key)


def _published(port: object) -> tuple[str, str]:
    """(host address, container port) of a ``ports`` entry, defaults substituted."""
    parts = _interpolate(str(port), {}).split(":")
    assert len(parts) == 3, f"{port!r} publishes on every interface (no host address)"
    return parts[0], parts[2]


def test_every_published_port_is_on_loopback_by_default(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {
        name: [_published(port) for port in svc.get("ports", [])] for name, svc in services.items()
    }
    assert published["flower"] == [("127.0.0.1", "5555")]
    assert [str(p) for p in services["flower"]["ports"]] == ["127.0.0.1:5555:5555"]
    assert published["health"] == [("127.0.0.1", "8008")]
    assert published["api"] == [("127.0.0.1", "8080")]
    assert published["prometheus"] == [("127.0.0.1", "9090")]
    for name, ports in published.items():
        for address, _ in ports:
            assert address == "127.0.0.1", f"{name} publishes on {address}"


def test_endpoints_listen_on_the_container_interface(
    services: dict[str, dict[str, Any]],
) -> None:
    """Inside a container the default 127.0.0.1 would be unreachable from the published port
    and from Prometheus: each endpoint says 0.0.0.0 explicitly."""
    assert _option(_argv(services["flower"]), "--address") == ["0.0.0.0"]
    assert _option(_argv(services["health"]), "--host") == ["0.0.0.0"]
    assert _option(_argv(services["api"]), "--host") == ["0.0.0.0"]
    for name in WORKER_QUEUES:
        assert _environment(services[name]).get("QUANTBEAT_METRICS_ADDRESS") == "0.0.0.0"


def _quantbeat_settings(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The service's QUANTBEAT_* settings as init arguments, ``${...}`` substituted."""
    out = {}
    for key, value in _environment(service).items():
        if key.startswith("QUANTBEAT_"):
            given = env.get(key) if value is None else _interpolate(str(value), env)
            if given is not None:
                out[key.removeprefix("QUANTBEAT_").lower()] = given
    return out


@pytest.mark.parametrize("name", ["migrate", "flower", "worker-io"])
def test_the_stack_starts_only_with_its_passwords_set(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    assert _environment(service)["QUANTBEAT_ENV"] == "production"
    with pytest.raises(ConfigError) as refused:
        load_settings(**_quantbeat_settings(service, {}))
    message = str(refused.value)
    for variable in (
        "QUANTBEAT_DATABASE_URL",
        "QUANTBEAT_BROKER_URL",
        "QUANTBEAT_RESULT_BACKEND",
        "QUANTBEAT_REDIS_URL",
        "QUANTBEAT_CACHE_URL",
    ):
        assert variable in message
    secrets = {
        "POSTGRES_PASSWORD": "pg-9f3b2c1d8e7a6b5c",
        "REDIS_PASSWORD": "rd-4e5f6a7b8c9d0e1f",
        "QUANTBEAT_FLOWER_BASIC_AUTH": "ops:fl-0a1b2c3d4e5f",
    }
    settings = load_settings(**_quantbeat_settings(service, secrets))
    assert settings.env == "production"
    assert settings.production_problems() == []


def _scrape_jobs() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in document["scrape_configs"]}


def test_every_worker_replica_is_scraped_on_its_metrics_port(
    services: dict[str, dict[str, Any]],
) -> None:
    jobs = _scrape_jobs()
    for name in WORKER_QUEUES:
        port = str(_environment(services[name]).get("QUANTBEAT_METRICS_PORT"))
        assert port.isdigit(), f"{name}: QUANTBEAT_METRICS_PORT={port!r}"
        assert port != "0", f"{name} serves no metrics"
        assert port in [str(p) for p in services[name].get("expose", [])], name
        # DNS discovery finds every replica of a scaled service (a static target finds one).
        discovered = [
            (sd["names"], int(sd["port"]))
            for job in jobs.values()
            for sd in job.get("dns_sd_configs", [])
        ]
        assert ([name], int(port)) in discovered, f"no scrape job for {name}:{port}"


def test_prometheus_reads_the_mounted_config_and_scrapes_flower_with_credentials(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    mounts = [str(v) for v in prometheus.get("volumes", [])]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    script = " ".join(_argv(prometheus))
    assert "--config.file=/etc/prometheus/prometheus.yml" in script
    # Passed through by name, never with a default (a committed password).
    assert _environment(prometheus).get("QUANTBEAT_FLOWER_BASIC_AUTH") in (None, "")
    flower = [
        job
        for job in _scrape_jobs().values()
        if any("flower:5555" in sc.get("targets", []) for sc in job.get("static_configs", []))
    ]
    assert len(flower) == 1
    auth = flower[0]["basic_auth"]
    for file in (auth["username_file"], auth["password_file"]):
        assert f"> {file}" in script, f"the prometheus service does not write {file}"
    # Prometheus has no authentication of its own: not published beyond loopback by default.
    assert [str(p) for p in prometheus.get("ports", [])] == [
        "${PROMETHEUS_BIND:-127.0.0.1}:9090:9090"
    ]


def _environment_without_quantbeat() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("QUANTBEAT_")}


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (apt-get install docker-compose to validate)",
)
def test_docker_compose_config_validates() -> None:
    result = subprocess.run(
        ["docker-compose", "--file", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=REPO_ROOT,
        env=_environment_without_quantbeat(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr or result.stdout


_SIZE = re.compile(r"^\$\{(?P<var>[A-Z][A-Z0-9_]*):-(?P<size>\d+)(?P<unit>[kmg])\}$")


def _limit_bytes(value: Any, where: str) -> tuple[str, int]:
    """``(variable, default bytes)`` of a ``${VAR:-4g}`` memory limit."""
    found = _SIZE.match(str(value))
    assert found, f"{where}: {value!r} is not ${{VAR:-<size>[kmg]}}"
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}[found["unit"]]
    return found["var"], int(found["size"]) * scale


def test_every_service_has_a_memory_limit_without_swap(
    services: dict[str, dict[str, Any]],
) -> None:
    variables = set()
    for name, service in services.items():
        assert "mem_limit" in service, f"{name} has no mem_limit"
        var, limit = _limit_bytes(service["mem_limit"], f"{name}.mem_limit")
        assert service.get("memswap_limit") == service["mem_limit"], f"{name} may swap"
        assert limit >= 256 * 2**20, f"{name}: {limit} bytes is too little to start"
        variables.add(var)
    assert len(variables) == len(services)  # each overridable on its own


def test_the_cpu_worker_fits_its_concurrency_in_backtests_of_the_largest_allowed_size(
    services: dict[str, dict[str, Any]],
) -> None:
    """Per pool process one backtest of QUANTBEAT_BACKTEST_MAX_BYTES plus the interpreter
    (0.5 GiB), plus the main process (0.3 GiB), must fit under the container's limit."""
    worker = services["worker-cpu"]
    argv = _argv(worker)
    concurrency = int(argv[argv.index("--concurrency") + 1])
    _, limit = _limit_bytes(worker["mem_limit"], "worker-cpu.mem_limit")
    backtest = load_settings().backtest_max_bytes
    assert concurrency * (backtest + 2**29) + 3 * 2**28 <= limit
    # the redis limits leave room above maxmemory (the AOF rewrite forks)
    for name, var in (("redis", "REDIS_MAXMEMORY"), ("redis-cache", "REDIS_CACHE_MAXMEMORY")):
        command = " ".join(_argv(services[name]))
        found = re.search(r"\$\{" + var + r":-(\d+)(mb|gb)\}", command)
        assert found, command
        maxmemory = int(found[1]) * (2**20 if found[2] == "mb" else 2**30)
        assert _limit_bytes(services[name]["mem_limit"], name)[1] >= 1.5 * maxmemory
