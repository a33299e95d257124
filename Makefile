# Every target sets up what it needs: a fresh machine with Python 3.11+, make and pip suffices.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run test lint typecheck pytest test-packages lock clean

help:  ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(STAMP)  ## Create .venv with the pinned runtime and test dependencies.

run: $(STAMP)  ## Serve on NEURON_BIND (default 127.0.0.1:8000) with gunicorn.
	$(BIN)/gunicorn -c gunicorn.conf.py service.wsgi:app

test: lint typecheck pytest  ## Lint, type-check and run every test (what CI runs).

lint: $(STAMP)  ## ruff: style and common bugs.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict over service/.
	$(BIN)/mypy

pytest: $(STAMP) test-packages  ## Unit and integration tests (real gunicorn, PostgreSQL, haproxy).
	$(BIN)/pytest

test-packages:  ## Install Debian's postgresql and haproxy for the tests if missing (as root).
	bash deploy/scripts/test-packages.sh

lock:  ## Re-pin requirements*.lock from pyproject.toml in a throw-away venv.
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet .
	.lock-venv/bin/pip freeze --exclude neuron-service > requirements.lock
	.lock-venv/bin/pip install --quiet '.[test]'
	.lock-venv/bin/pip freeze --exclude neuron-service > requirements-test.lock
	rm -rf .lock-venv

clean:  ## Remove the venv, caches and the local model directory.
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

-include bench/bench.mk deploy/container.mk
