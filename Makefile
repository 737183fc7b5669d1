# quantbeat — the two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TEST_ENV := var/test-services.env
# Test processes (pytest-xdist; each has its own database and Redis: tests/support/parallel.py).
TEST_PROCS ?= 2
# Let Python cache compiled modules (some environments set PYTHONDONTWRITEBYTECODE=1): the
# suite starts dozens of worker and CLI processes, and each would otherwise compile every
# module it imports from source (6 s instead of 2 s per start, measured).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run dashboard test quick test-quick coverage faults lint format check-services benchmarks clean help

help:
	@echo "make run    - install into .venv and run the main job on the embedded default"
	@echo "make dashboard - make run, then serve the dashboard on http://127.0.0.1:8080 (Ctrl-C stops)"
	@echo "make test   - install, prepare PostgreSQL/Redis for tests, lint, run the whole suite"
	@echo "              under coverage, and check the floors (quant/ 90 %, the project 85 %)"
	@echo "make quick  - lint and the unit tests only (no services; about 2 minutes; alias test-quick)"
	@echo "make coverage - the per-file coverage report of the last make test"
	@echo "make faults - run the fault scenarios and write their outcome table into README.md"
	@echo "make lint   - ruff + mypy"
	@echo "make format - ruff format + fixes"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev,yfinance]'
	$(PY) -m quant.kernels
	$(PY) scripts/warm_bytecode.py
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/quantbeat run --embedded

# The newcomer's dashboard: the embedded job, then the API and dashboard on its SQLite file at
# 127.0.0.1 without API keys (open mode: loopback only) until stopped.
dashboard: run
	$(VENV)/bin/quantbeat api --open

check-services: $(STAMP)
	@mkdir -p var
	$(PY) scripts/test_services.py --env-file $(TEST_ENV)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

# The whole suite under coverage ([tool.coverage] in pyproject.toml: worker and CLI
# subprocesses write their own data files, which pytest-cov combines with its own at the
# end), then the floors: quant/ >= 90 %, the whole project >= 85 %, both figures printed.
test: check-services lint
	rm -rf var/coverage && mkdir -p var/coverage
	set -a && . ./$(TEST_ENV) && set +a && $(PY) -m pytest -n $(TEST_PROCS) --dist loadfile --durations=25 --cov --cov-report=
	$(PY) scripts/coverage_floors.py

quick: lint
	$(PY) -m pytest tests/unit -q -n $(TEST_PROCS)

test-quick: quick

# The per-file report of the last `make test`'s coverage data (least covered last), and
# the floors again.
coverage:
	$(VENV)/bin/coverage report --skip-covered --sort=cover
	$(PY) scripts/coverage_floors.py

faults: check-services
	rm -rf var/faults
	set -a && . ./$(TEST_ENV) && set +a && $(PY) -m pytest tests/faults
	$(PY) scripts/faults_table.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf var/quantbeat.sqlite* var/celerybeat-schedule* .pytest_cache .mypy_cache .ruff_cache
