PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test chaos lint prod bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Where `make run` and `make prod` listen: `make run PORT=8010`, `make run HOST=0.0.0.0`.
HOST ?= 127.0.0.1
PORT ?= 8000

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py synccatalog --demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# The real agent clients the door tests drive, pinned by their package-lock.json.
CODEX := tests/clients/codex/node_modules/.bin/codex

$(CODEX): tests/clients/codex/package-lock.json
	cd tests/clients/codex && npm ci --ignore-scripts --no-audit --no-fund

# Claude Code's native binary comes in a platform package; with install scripts off, its
# install.cjs puts it in place of the placeholder, and --version proves it runs.
CLAUDE_CODE := tests/clients/claude-code/node_modules/.bin/claude

$(CLAUDE_CODE): tests/clients/claude-code/package-lock.json
	cd tests/clients/claude-code && npm ci --ignore-scripts --no-audit --no-fund \
	  && node node_modules/@anthropic-ai/claude-code/install.cjs \
	  && node_modules/.bin/claude --version \
	  || { rm -f node_modules/.bin/claude; exit 1; }

# The suite in TEST_WORKERS pytest-xdist processes, each with its own test database and
# Redis database (tests/xdist_workers.py), a file at a time: a module's browser, live
# servers and collectstatic stay in one process. On a two-core machine two workers took
# 4.4 min where one took 7; three were hardly quicker (4.3 min).
# `make test TEST_WORKERS=0` runs it in this process alone.
TEST_WORKERS ?= 2

test: $(STAMP) $(CODEX) $(CLAUDE_CODE)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Redis and PostgreSQL stopped and started again under load (also part of `make test`).
chaos: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_outages.py tests/gateway/test_outages.py

# Production on this machine: N uvicorn workers (WEB_CONCURRENCY) sharing PostgreSQL
# and Redis. Set SECRET_KEY, DATABASE_URL, REDIS_URL and ALLOWED_HOSTS first (README).
WEB_CONCURRENCY ?= 2
PROMETHEUS_MULTIPROC_DIR ?= /tmp/switchboard-prometheus-$(PORT)

# glibc's allocator: two arenas for the database threads instead of eight per core.
# (Run D also fixed the mmap threshold at 128 KB so that 250 KB agent bodies went back
# to the system when freed; once nothing kept a request's body in a reference cycle,
# that cost 1-1.8 ms of CPU per agent request in page faults for 5 MB less: run E.)
MALLOC_ENV := MALLOC_ARENA_MAX=2

prod: export DEBUG = false
prod: export PROMETHEUS_MULTIPROC_DIR := $(PROMETHEUS_MULTIPROC_DIR)
prod: $(STAMP)
	mkdir -p $(PROMETHEUS_MULTIPROC_DIR)
	$(BIN)/python manage.py check --deploy --fail-level ERROR
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput
	rm -rf $(PROMETHEUS_MULTIPROC_DIR) && mkdir -p $(PROMETHEUS_MULTIPROC_DIR)
	$(MALLOC_ENV) $(BIN)/uvicorn console.asgi:application --host $(HOST) --port $(PORT) \
		--workers $(WEB_CONCURRENCY) --loop uvloop --http httptools --lifespan off \
		--proxy-headers --no-access-log --timeout-graceful-shutdown 30

# Switchboard against LiteLLM proxy (installed from PyPI into its own venv) on this
# machine; see BENCHMARKS.md. BENCH_ARGS passes options to bench/run.py, e.g.
# BENCH_ARGS="--suites agent" for the agent-sized scenarios only, "--suites classic"
# for the small requests only.
LITELLM_VENV := bench/.litellm-venv

$(LITELLM_VENV)/bin/litellm:
	$(PY) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/pip install --quiet 'litellm[proxy]'

bench: $(STAMP) $(LITELLM_VENV)/bin/litellm
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy accounts billing chat console gateway

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
