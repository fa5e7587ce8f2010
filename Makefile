# Herald: `make run` serves the app, `make test` runs every test (README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export DJANGO_SETTINGS_MODULE ?= config.settings.dev

.PHONY: run test test-fast test-js test-postgres screenshots lint audit bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: requirements.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	touch $@

$(VENV)/.dev-installed: requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.lock
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py herald_demo
	$(BIN)/python manage.py collectstatic --noinput -v 0
	@echo "Herald on http://$(HOST):$(PORT)/ with one background worker (Ctrl-C stops both)"
	$(BIN)/python -m config.serve --worker -b $(HOST) -p $(PORT)

# Tests always use config.settings.test, whatever DJANGO_SETTINGS_MODULE the shell exports.
# `make test` runs everything: the browser client's unit tests, then every pytest tier.
test: $(VENV)/.dev-installed
	bash .ci/system-deps
	node --test tests/js/
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests that start no process (no daphne, redis-server or browser): about a minute.
test-fast: $(VENV)/.dev-installed
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python -m pytest -m "not processes" $(PYTEST_ARGS)

# The browser client's unit tests (Node's built-in runner, no packages).
test-js:
	node --test tests/js/

# Refresh the README's screenshots (docs/screenshots/): the one browser test that takes them.
screenshots: $(VENV)/.dev-installed
	bash .ci/system-deps
	HERALD_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots DJANGO_SETTINGS_MODULE=config.settings.test \
		$(BIN)/python -m pytest tests/e2e -k screenshots

# The suite on PostgreSQL, but for the browser tests (the same pages and API over either
# database; they run in `make test`): keeps CI's two passes within its time.
test-postgres: $(VENV)/.dev-installed
	DJANGO_SETTINGS_MODULE=config.settings.test DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
		$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

# ruff, and the apps' layers (import-linter; the contracts are in pyproject.toml).
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Known-vulnerable pinned dependencies (pip-audit; .ci/audit says what is ignored and why).
audit: $(VENV)/.dev-installed
	bash .ci/audit

# The benchmark (docs/performance.md): its own Redis, database and servers; about
# 8 minutes on 2 cores. Not part of `make test` or CI. BENCH_ARGS="--rounds 1" for a quick look.
bench: $(VENV)/.dev-installed
	bash .ci/system-deps
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The combined-fault checker (docs/reliability.md): CHAOS_SEEDS (20) consecutive seeds from
# CHAOS_FIRST_SEED (1), CHAOS_SECONDS (20) of faults each, about 15 minutes on 2 cores;
# CHAOS_SEED=N runs one seed (a failure prints the command). PostgreSQL when DATABASE_URL is one.
chaos: $(VENV)/.dev-installed
	bash .ci/system-deps
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

# Regenerate the lock files from pyproject.toml (needs uv: `pip install uv`).
lock:
	uv pip compile --python-version 3.11 pyproject.toml -o requirements.lock
	uv pip compile --python-version 3.11 pyproject.toml --extra dev -o requirements-dev.lock

clean:
	rm -rf $(VENV) staticfiles
